//! What the shell's counters and histograms learn from the records the core makes live
//! (never from a replay): submissions, placements and how long they waited, results
//! that disagreed, jobs ending and credits posted. The shell takes them after each batch;
//! labels stay bounded (scopes, executors, states).

use icn_protocol::governance::ScopeId;
use icn_protocol::wire::ExecutorKind;

use crate::{Core, Record};

/// Observations kept between two takes; past it the oldest are not kept (a shell that
/// never takes them, such as a test's, does not grow memory).
pub const OBSERVATIONS_MAX: usize = 65_536;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    Submitted {
        scope: ScopeId,
    },
    /// A replica was placed, `waited_ms` after it became wanted; `queued_ms` since the
    /// job's submission when it is the job's first.
    Placed {
        scope: ScopeId,
        executor: ExecutorKind,
        waited_ms: u64,
        queued_ms: Option<u64>,
    },
    /// Replicas' results were compared and `dissenting` disagreed with the accepted one.
    Disagreed {
        dissenting: u32,
    },
    /// A job ended (or went to dispute) as `state`, having placed `replicas` replicas.
    Ended {
        scope: ScopeId,
        state: &'static str,
        replicas: u32,
    },
    /// `credits` moved from `scope` to the cooperatives that ran its job.
    Posted {
        scope: ScopeId,
        credits: i64,
    },
}

impl Core {
    /// Notes the admission of `job`, just applied (its scope is read from the admitted
    /// job rather than by decoding the submission again).
    pub(crate) fn observe_admitted(&mut self, job: &icn_protocol::JobId) {
        if let Some(scope) = self.jobs.get(job).map(|j| j.submission.scope.clone()) {
            self.keep(Observation::Submitted { scope });
        }
    }

    /// Notes what `record`, about to be applied at `time_ms`, tells the metrics (an
    /// admission is noted after it is applied: [`Core::observe_admitted`]).
    pub(crate) fn observe(&mut self, time_ms: u64, record: &Record) {
        let observation = match record {
            Record::TaskPlaced { task, attempt, .. } => {
                self.jobs.get(&task.job).map(|job| Observation::Placed {
                    scope: job.submission.scope.clone(),
                    executor: job.submission.executor,
                    waited_ms: time_ms.saturating_sub(job.wanted_ms),
                    queued_ms: (*attempt == 1).then(|| time_ms.saturating_sub(job.submitted_ms)),
                })
            }
            Record::Verified { dissenting, .. } if !dissenting.is_empty() => {
                Some(Observation::Disagreed { dissenting: dissenting.len() as u32 })
            }
            Record::JobCompleted { job, .. } => self.ended(job, "completed"),
            Record::JobFailed { job, .. } | Record::JobFailedPaid { job, .. } => self.ended(job, "failed"),
            Record::DisputeOpened { job, .. } => self.ended(job, "disputed"),
            Record::JobCancelled { request } => {
                let Ok(cancel) = request.open_trusted::<icn_protocol::wire::Cancel>() else { return };
                self.ended(&cancel.job, "cancelled")
            }
            _ => None,
        };
        let Some(observation) = observation else { return };
        self.keep(observation);
        if let Record::JobCompleted { job, payees, .. }
        | Record::JobFailedPaid { job, payees, .. }
        | Record::CancelSettled { job, payees, .. } = record
            && let Some(scope) = self.jobs.get(job).map(|j| j.submission.scope.clone())
        {
            let credits = payees.iter().map(|(_, paid)| paid.0).sum();
            self.keep(Observation::Posted { scope, credits });
        }
    }

    fn ended(&self, id: &icn_protocol::JobId, state: &'static str) -> Option<Observation> {
        let job = self.jobs.get(id)?;
        Some(Observation::Ended { scope: job.submission.scope.clone(), state, replicas: job.replicas_placed })
    }

    fn keep(&mut self, observation: Observation) {
        if self.observed.len() >= OBSERVATIONS_MAX {
            self.observed.pop_front();
        }
        self.observed.push_back(observation);
    }

    /// The observations since the last take.
    pub fn take_observations(&mut self) -> std::collections::VecDeque<Observation> {
        std::mem::take(&mut self.observed)
    }
}
