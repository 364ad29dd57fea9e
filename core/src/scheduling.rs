//! Scheduling: placing a job's replicas on workers of distinct cooperatives by the
//! scope's placement policy, taking their reports, judging whether they agree, asking for
//! more replicas when they do not, and opening a dispute when more cannot settle it.

use std::collections::{BTreeMap, BTreeSet};

use icn_placement::{Plan, Policy, Request, Shortfall, Verdict};
use icn_protocol::governance::ScopeId;
use icn_protocol::wire::{Assignment, ExecutionReport, ExecutorKind, FailureKind, Outcome, Waiting};
use icn_protocol::{ContentId, Envelope, Fuel, JobId, PublicKey, TaskId};

use crate::jobs::Received;
use crate::record::Scores;
use crate::settlement::{Used, cost, ends_at_a_limit};
use crate::shares::lowest;
use crate::{Command, Core, Now, Record};

impl Core {
    /// A report already verified as signed by `worker`, the key its connection proved.
    pub fn report(
        &mut self,
        now: Now,
        worker: PublicKey,
        session: u64,
        envelope: Envelope,
        report: ExecutionReport,
    ) {
        self.clock = now;
        let task = report.task;
        let Some(job) = self.jobs.get(&task.job) else {
            // A job this core no longer holds (it ended and was forgotten), or never did:
            // no result either way, and nothing a worker gains by it.
            tracing::debug!(%task, worker = %worker.short(), "report on a job not held ignored");
            return;
        };
        let stopped =
            job.stopping.get(&task.index).filter(|p| p.worker == worker && p.attempt == report.attempt);
        if let Some(placed_seq) = stopped.map(|p| p.placed_seq) {
            // A replica its job's cancel stopped, saying what it used until then.
            self.fleet.seen(&worker, now.mono_ms);
            if let Err(e) = report.validate(&job.submission.limits) {
                return self.misbehaved(worker, session, e.to_string());
            }
            let received = self.record(Some(placed_seq), worker, Record::ReportReceived { report: envelope });
            if self.jobs.known(&task.job).stopping.is_empty() {
                self.settle_cancel(task.job, received);
            }
            return self.schedule();
        }
        let Some(placement) = job.current(&task, report.attempt).filter(|p| p.worker == worker).cloned()
        else {
            // A late report for an attempt that was already requeued, or for a job already
            // decided: not evidence of anything wrong, and not a result either.
            tracing::debug!(%task, attempt = report.attempt, worker = %worker.short(), "stale report ignored");
            return;
        };
        self.fleet.seen(&worker, now.mono_ms);
        if let Err(e) = report.validate(&job.submission.limits) {
            let reason = format!("worker {} sent an invalid report", worker.short());
            self.requeue(task, placement.attempt, reason, true);
            return self.misbehaved(worker, session, e.to_string());
        }
        let retry = matches!(&report.outcome, Outcome::Failed { kind, .. } if !kind.is_final());
        let received =
            self.record(Some(placement.placed_seq), worker, Record::ReportReceived { report: envelope });
        if retry {
            // The report ended its attempt; the replica goes back to the queue.
            let reason = "the worker failed for a reason of its own".to_string();
            self.record_requeue(task, placement.attempt, received, reason, false);
        } else {
            self.verify(task.job, received);
        }
        self.schedule();
    }

    /// Places queued jobs, scope by fair share, then class by class weight inside the
    /// scope, and each class's jobs in submission order:
    /// a job's first replicas by the policy's plan, then replacements for lost replicas
    /// and the extra replicas a disagreement asked for. The next job comes from the
    /// scope whose recent usage is lowest against its share (see `shares`). A job that
    /// cannot be placed now is passed over, so it never delays one that can; fresh jobs
    /// of a shape (scope, executor, memory) that could not be placed in this pass are
    /// passed over without trying (placing only takes slots, so they could not be
    /// either), a scope whose queue was walked to its end is done for the pass, and the
    /// pass ends when no slot is free.
    pub(crate) fn schedule(&mut self) {
        if self.fleet.pool().free_slots() == 0 || self.jobs.queue_len() == 0 {
            return;
        }
        let now_ms = self.clock.wall_ms;
        let mut classes: BTreeMap<ScopeId, Vec<String>> = BTreeMap::new();
        for (scope, class, _) in self.jobs.queues() {
            classes.entry(scope.clone()).or_default().push(class.to_string());
        }
        // One scope waiting: its share is all there is, and no weight needs reading.
        let shares = match classes.len() {
            1 => classes.keys().map(|scope| (scope.clone(), 1.0)).collect(),
            _ => self.shares.shares(&self.governance, classes.keys()),
        };
        let mut after: BTreeMap<(ScopeId, String), u64> = BTreeMap::new();
        let mut done: BTreeSet<(ScopeId, String)> = BTreeSet::new();
        let mut held: BTreeSet<(ScopeId, ExecutorKind, u64)> = BTreeSet::new();
        while self.fleet.pool().free_slots() > 0 {
            let open = |scope: &ScopeId, class: &String| !done.contains(&(scope.clone(), class.clone()));
            let next_scope = lowest(
                shares
                    .iter()
                    .filter(|(scope, _)| classes[*scope].iter().any(|class| open(scope, class)))
                    .map(|(scope, share)| (self.shares.priority(scope, *share, now_ms), scope)),
            );
            let Some(scope) = next_scope else { return };
            let class = lowest(classes[scope].iter().filter(|class| open(scope, class)).map(|class| {
                let weight = self.governance.class_weight(scope, class);
                (self.shares.class_priority(scope, class, weight, now_ms), class)
            }))
            .cloned()
            .expect("a scope is chosen only with a class open");
            let key = (scope.clone(), class);
            let Some((seq, id)) = self.jobs.queued_after(&key.0, &key.1, after.get(&key).copied()) else {
                done.insert(key);
                continue;
            };
            after.insert(key, seq);
            let job = self.jobs.known(&id);
            if job.not_before_ms > now_ms {
                // Backing off after repeated losses; a tick places it when the wait is over.
                continue;
            }
            let fresh = job.is_fresh();
            let shape =
                (job.submission.scope.clone(), job.submission.executor, job.submission.limits.memory_bytes);
            if fresh && held.contains(&shape) {
                continue;
            }
            if !self.place(id) && fresh {
                held.insert(shape);
            }
        }
    }

    /// What placing `id` asks of the pool now: its executor and memory, the replicas a
    /// fresh job's policy wants, and the workers and owners its replicas already used.
    fn request_for(&self, id: &JobId) -> (Request, Policy) {
        let job = self.jobs.known(id);
        let policy = self.policy_for(&job.submission.scope);
        let replicas = if job.is_fresh() { policy.replicas.max(1) } else { 1 };
        let mut request = Request::new(job.submission.executor, job.submission.limits.memory_bytes, replicas);
        for p in job.placements.values() {
            request.exclude_workers.insert(p.worker);
            request.exclude_owners.insert(p.owner.clone());
        }
        for r in &job.reports {
            request.exclude_workers.insert(r.worker);
            request.exclude_owners.insert(r.owner.clone());
        }
        (request, policy)
    }

    /// What submitting `submission` as `signer` would do now, changing nothing: the same
    /// refusal a submission would get ([`Core::admit`]), or the hold and the decision behind
    /// it, where its replicas would go with the workers connected now, or why it would wait.
    pub fn plan(
        &self,
        now_ms: u64,
        signer: &PublicKey,
        submission: &icn_protocol::wire::Submission,
    ) -> Result<icn_protocol::wire::PlanView, crate::Refusal> {
        let authorization = self.admit(now_ms, signer, submission)?;
        let available = self.settlement.ledger().account(&submission.scope).map_or(0, |a| a.available());
        let policy = self.policy_for(&submission.scope);
        let request =
            Request::new(submission.executor, submission.limits.memory_bytes, policy.replicas.max(1));
        let pool = self.fleet.pool();
        let chosen = pool.place(&request);
        let placements = chosen
            .iter()
            .filter_map(|(worker, score)| {
                let owner = self.fleet.worker(worker)?.owner.clone();
                Some(icn_protocol::wire::PlannedPlacement { worker: *worker, owner, score: score.total })
            })
            .collect::<Vec<_>>();
        let class = submission.options.priority.as_deref().unwrap_or(icn_protocol::governance::DEFAULT_CLASS);
        let ahead = self.jobs.waiting_in(&submission.scope, class);
        let waiting = (placements.len() < request.replicas as usize)
            .then(|| waiting_for(pool.shortfall(&request), &request, &submission.scope, ahead));
        Ok(icn_protocol::wire::PlanView {
            scope: submission.scope.clone(),
            decision: authorization.decision,
            hold: authorization.hold,
            available_after: icn_protocol::governance::Credits(
                available.saturating_sub(authorization.hold.0),
            ),
            replicas: request.replicas,
            placements: if waiting.is_some() { Vec::new() } else { placements },
            waiting,
            queued_ahead: ahead,
        })
    }

    /// Why a queued job waits: the first stage of placement the connected workers fail.
    pub(crate) fn waiting(&self, id: &JobId) -> Waiting {
        let (request, _) = self.request_for(id);
        let job = self.jobs.known(id);
        if job.not_before_ms > self.clock.wall_ms {
            return Waiting::Backoff {
                wait_ms: job.not_before_ms - self.clock.wall_ms,
                attempts: job.requeues,
                attempts_max: self.config.attempts_max,
            };
        }
        let shortfall = self.fleet.pool().shortfall(&request);
        waiting_for(shortfall, &request, &job.submission.scope, self.jobs.ahead_in_scope(id))
    }

    /// Places what `id` waits for; whether it got all of it.
    fn place(&mut self, id: JobId) -> bool {
        let (mut request, policy) = self.request_for(&id);
        let job = self.jobs.known(&id);
        let pool = self.fleet.pool();
        if job.is_fresh() {
            let plan = if policy.replicas <= 1 {
                pool.place(&request).first().map(|chosen| Plan {
                    chosen: vec![*chosen],
                    quorum: 1,
                    spot_check: false,
                })
            } else {
                icn_placement::plan(pool, &request, &policy, self.draw(id))
            };
            let Some(plan) = plan else { return false };
            for (index, (worker, score)) in plan.chosen.iter().enumerate() {
                self.place_replica(TaskId { job: id, index: index as u32 }, *worker, score, plan.quorum);
            }
            return true;
        }
        let wanted: Vec<(u32, bool)> = job
            .vacant
            .iter()
            .map(|index| (*index, false))
            .chain((0..job.extra).map(|n| (job.replicas_placed + n, true)))
            .collect();
        let quorum = job.quorum;
        let avoid = job.avoid.clone();
        for (index, settling) in wanted {
            // A replica that settles a disagreement goes to the most trusted worker free;
            // one placed again goes elsewhere than where it was lost or failed, if it can.
            let pool = self.fleet.pool();
            let choose = |request: &Request| {
                let chosen = if settling { pool.place_most_trusted(request) } else { pool.place(request) };
                chosen.first().copied()
            };
            let mut elsewhere = request.clone();
            elsewhere.exclude_workers.extend(avoid.iter().copied());
            let Some((worker, score)) = choose(&elsewhere).or_else(|| choose(&request)) else { return false };
            request.exclude_workers.insert(worker);
            let owner = self.fleet.worker(&worker).expect("a pooled worker is connected").owner.clone();
            request.exclude_owners.insert(owner);
            self.place_replica(TaskId { job: id, index }, worker, &score, quorum);
        }
        true
    }

    fn place_replica(&mut self, task: TaskId, worker: PublicKey, score: &icn_placement::Score, quorum: u32) {
        let job = self.jobs.known(&task.job);
        let attempt = job.attempts + 1;
        let cause = job.last_seq;
        let assignment = Assignment {
            task,
            attempt,
            executor: job.submission.executor,
            module: job.submission.module,
            input: job.submission.input,
            args: job.submission.args.clone(),
            limits: job.submission.limits,
        };
        let state = self.fleet.worker(&worker).expect("a pooled worker is connected");
        let (owner, session) = (state.owner.clone(), state.session);
        let scores = Scores::of(score);
        let signer = self.key.public();
        self.record(Some(cause), signer, Record::TaskPlaced { task, attempt, worker, owner, scores, quorum });
        self.commands.push(Command::Dispatch { worker, session, assignment });
    }

    /// Compares the results in hand: accept, wait, add a replica, or open a dispute.
    fn verify(&mut self, id: JobId, cause: u64) {
        let job = self.jobs.known(&id);
        let reports: Vec<icn_placement::Report> = job.reports.iter().map(|r| judged_report(job, r)).collect();
        let outstanding = (job.placements.len() + job.vacant.len()) as u32 + job.extra;
        let replicas_max = self.policy_for(&job.submission.scope).replicas_max.max(job.replicas_placed);
        let signer = self.key.public();
        let usage = job.terms.map(|terms| move |a: &_, b: &_| terms.agree(a, b));
        let quorum = if self.planted(crate::Plant::ShortQuorum) {
            job.quorum.saturating_sub(1).max(1)
        } else {
            job.quorum
        };
        let counts = icn_placement::Counts { quorum, outstanding, placed: job.replicas_placed, replicas_max };
        let verdict =
            icn_placement::judge(&reports, counts, usage.as_ref().map(|f| f as &dyn Fn(&_, &_) -> bool));
        let record = match verdict {
            Verdict::Pending => return,
            Verdict::Accepted(judged) => {
                return self.accept(id, &judged.agreeing, &judged.dissenting, cause, None);
            }
            Verdict::NeedMore if !self.another_owner_admitted(id) => {
                let reason = format!(
                    "{} results disagree and no admitted worker of another cooperative can break the tie",
                    reports.len()
                );
                Record::DisputeOpened { job: id, reason }
            }
            Verdict::NeedMore => {
                let reason = format!("{} results disagree", reports.len());
                Record::ReplicasWanted { job: id, count: 1, reason }
            }
            Verdict::Dispute => {
                let reason = format!(
                    "{} results disagree and {replicas_max} replicas is the most allowed",
                    reports.len()
                );
                Record::DisputeOpened { job: id, reason }
            }
        };
        self.record(Some(cause), signer, record);
    }

    /// The result the `agreeing` workers reported stands: trust follows, the job ends,
    /// and if it completed, the owners of the agreeing workers are paid.
    fn accept(
        &mut self,
        id: JobId,
        agreeing: &[PublicKey],
        dissenting: &[PublicKey],
        cause: u64,
        by_decision: Option<u64>,
    ) {
        let signer = self.key.public();
        let mut cause = cause;
        if agreeing.len() >= 2 || !dissenting.is_empty() || by_decision.is_some() {
            let verified = Record::Verified {
                job: id,
                agreeing: agreeing.to_vec(),
                dissenting: dissenting.to_vec(),
                by_decision,
            };
            cause = self.record(Some(cause), signer, verified);
        }
        let job = self.jobs.known(&id);
        let received =
            |w: &PublicKey| job.reports.iter().find(|r| r.worker == *w).expect("an agreeing worker reported");
        let accepted = received(&agreeing[0]);
        // Each agreeing cooperative is paid what the accepted run used, whether the job
        // completed or failed by its own doing.
        let used = Used::charged(job, &accepted.report);
        let each = cost(job, used);
        let payees = agreeing.iter().map(|w| (received(w).owner.clone(), each)).collect();
        let (fuel, worker) = (used.fuel, accepted.worker);
        // Agreeing container replicas killed for memory may differ in whether their
        // engine recorded why: the job ends as the one that did says, and is charged as
        // the accepted (median) run used.
        let memory = |r: &&Received| {
            matches!(r.report.outcome, Outcome::Failed { kind: FailureKind::MemoryLimit, .. })
        };
        let ending = match job.terms {
            Some(_) => agreeing.iter().map(received).find(memory).unwrap_or(accepted),
            None => accepted,
        };
        let ended = match &ending.report.outcome {
            Outcome::Exited { .. } => Record::JobCompleted {
                job: id,
                output_digest: accepted.report.output_digest,
                fuel,
                worker,
                payees,
            },
            Outcome::Failed { kind, detail }
                if job.terms.is_none() && ends_at_a_limit(&accepted.report.outcome) =>
            {
                Record::JobFailedPaid {
                    job: id,
                    reason: format!(
                        "it reached a limit: it {kind} ({detail}); a wasm run stopped by its fuel or its time limit \
                         pays its whole fuel limit"
                    ),
                    fuel,
                    worker,
                    payees,
                }
            }
            Outcome::Failed { kind, detail } => Record::JobFailedPaid {
                job: id,
                reason: format!("it {kind} ({detail})"),
                fuel,
                worker,
                payees,
            },
        };
        self.record(Some(cause), signer, ended);
    }

    pub(crate) fn apply_verified(
        &mut self,
        seq: u64,
        job: JobId,
        agreeing: &[PublicKey],
        dissenting: &[PublicKey],
        by_decision: bool,
    ) {
        // Evidence of honesty: independent results agreeing, or a verdict.
        if agreeing.len() >= 2 || by_decision {
            for worker in agreeing {
                self.fleet.gain_trust(worker);
            }
        }
        for worker in dissenting {
            self.fleet.lose_trust(worker, seq, |trust| trust.disagreements += 1);
        }
        self.jobs.touch(seq, &job);
    }

    /// A decision settled a dispute: the reports with the decided result win, the others
    /// lose trust, and the winners' owners are paid.
    pub(crate) fn resolve(&mut self, id: JobId, output_digest: ContentId, fuel: Fuel, decided: u64) {
        let Some(job) = self.jobs.get(&id).filter(|j| j.disputed && !j.ended) else {
            tracing::warn!(job = %id, "a dispute decision for a job that is not in dispute changes nothing");
            return;
        };
        let (winners, losers): (Vec<&Received>, Vec<&Received>) = job.reports.iter().partition(|r| {
            r.report.output_digest == output_digest && Used::charged(job, &r.report).fuel == fuel
        });
        let losers: Vec<PublicKey> = losers.iter().map(|r| r.worker).collect();
        let winners: Vec<PublicKey> = match job.terms {
            // A container's winners are paid the median of their usage, as when they agree.
            Some(_) if !winners.is_empty() => {
                let reports: Vec<icn_placement::Report> =
                    winners.iter().map(|r| judged_report(job, r)).collect();
                icn_placement::median_first(&reports.iter().collect::<Vec<_>>())
            }
            _ => winners.iter().map(|r| r.worker).collect(),
        };
        if winners.is_empty() {
            let reason =
                format!("the decided result (output {}, {fuel}) matches no report", output_digest.short());
            let signer = self.key.public();
            self.record(Some(decided), signer, Record::JobFailed { job: id, reason });
            return;
        }
        self.accept(id, &winners, &losers, decided, Some(decided));
    }

    fn draw(&self, id: JobId) -> f64 {
        if self.planted(crate::Plant::PublicDraw) { public_draw(id) } else { draw(&self.spot_key, id) }
    }

    /// Whether any admitted worker belongs to a cooperative not yet involved in `id`.
    fn another_owner_admitted(&self, id: JobId) -> bool {
        let job = self.jobs.known(&id);
        let involved: BTreeSet<&ScopeId> =
            job.reports.iter().map(|r| &r.owner).chain(job.placements.values().map(|p| &p.owner)).collect();
        self.governance
            .workers
            .iter()
            .any(|(key, owner)| !involved.contains(owner) && !self.fleet.is_quarantined(key))
    }

    /// The placement policy for jobs of `scope`: replication when a decision asked for it.
    fn policy_for(&self, scope: &ScopeId) -> Policy {
        let base = self.fleet.policy();
        match self.governance.placement_policy(scope) {
            Some(p) => {
                Policy { replicas: p.replicas, quorum: p.quorum, replicas_max: p.replicas_max(), ..base }
            }
            None => Policy { replicas: 1, quorum: 1, replicas_max: 1, ..base },
        }
    }
}

/// A received report as judging sees it: its result and the fuel it is charged.
fn judged_report(job: &crate::jobs::Job, r: &Received) -> icn_placement::Report {
    icn_placement::Report {
        worker: r.worker,
        owner: r.owner.clone(),
        digest: result_key(job.terms.is_some(), &r.report),
        fuel: Used::charged(job, &r.report).fuel.0,
        usage: r.report.usage,
    }
}

/// What replicas must match on to agree: how the run ended and what it printed. A wasm
/// run that reached its fuel limit and one that reached its time limit end the same way:
/// near both, which comes first depends on the worker's speed, and neither honest worker
/// is wrong. So do a container killed for going over its memory limit and one that exited
/// 137 (killed by SIGKILL, which its worker did not send): the engine does not always
/// record a kill for memory (one in the container's first milliseconds is neither in its
/// `OOMKilled` flag nor among its events), and a worker keeps the output of neither.
fn result_key(container: bool, report: &ExecutionReport) -> ContentId {
    let ending = match &report.outcome {
        outcome if !container && ends_at_a_limit(outcome) => "failed at a limit".to_string(),
        outcome if container && outcome.container_killed_for_memory() => {
            "killed: memory limit or SIGKILL".to_string()
        }
        Outcome::Exited { code } => format!("exited {code}"),
        Outcome::Failed { kind, .. } => format!("failed {kind:?}"),
    };
    let mut bytes = ending.into_bytes();
    bytes.extend_from_slice(&report.output_digest.0);
    ContentId::of(&bytes)
}

/// Why a job of `scope` placing `request` waits, in a member's terms, when the pool falls
/// short by `shortfall`; `ahead` jobs of its scope wait before it.
fn waiting_for(shortfall: Shortfall, request: &Request, scope: &ScopeId, ahead: u32) -> Waiting {
    match shortfall {
        Shortfall::Executor => Waiting::NoExecutor { executor: request.executor },
        Shortfall::Memory { largest_bytes } => {
            Waiting::NoMemory { asked_bytes: request.memory_bytes, largest_bytes }
        }
        Shortfall::Owners { owners } => {
            Waiting::TooFewCooperatives { replicas: request.replicas, cooperatives: owners }
        }
        Shortfall::Slots { slots } => Waiting::SlotsBusy { slots, ahead, scope: scope.clone() },
    }
}

/// A number in [0, 1) fixed by the job's id and a key only this coordinator holds: the
/// spot-check draw. Not chosen by anyone, the same for every core with this key (so two
/// runs journal alike), and unknown to workers: a worker that could compute it from the
/// job's id alone would know when it runs unchecked, and lie exactly then (the chaos
/// simulation's `Learner` did, until the draw was keyed).
fn draw(key: &[u8; 32], job: JobId) -> f64 {
    let hash = blake3::keyed_hash(key, &job.0.0);
    unit(hash.as_bytes())
}

/// The spot-check draw before it was keyed (`Plant::PublicDraw`): from the id alone.
fn public_draw(job: JobId) -> f64 {
    unit(&job.0.0)
}

fn unit(bytes: &[u8; 32]) -> f64 {
    let bytes: [u8; 8] = bytes[..8].try_into().expect("32 bytes hold eight");
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use icn_protocol::wire::{CONTAINER_SIGKILL_EXIT, ExecutionReport, FailureKind, Outcome};
    use icn_protocol::{ContentId, Fuel, TaskId};

    use super::result_key;

    fn report(outcome: Outcome, output: &[u8]) -> ExecutionReport {
        ExecutionReport {
            task: TaskId { job: icn_protocol::JobId(ContentId::of(b"job")), index: 0 },
            attempt: 1,
            outcome,
            output_digest: ContentId::of(output),
            output_bytes: output.len() as u64,
            stderr: vec![],
            fuel: Fuel(0),
            usage: Default::default(),
        }
    }

    fn memory() -> Outcome {
        Outcome::Failed { kind: FailureKind::MemoryLimit, detail: "over 32 MiB".into() }
    }

    /// One honest container replica's engine recorded the kernel's kill for memory, the
    /// other's did not: one result. The same two endings of a wasm run, or with different
    /// outputs, or a container's other exits, are not.
    #[test]
    fn a_container_killed_for_memory_is_one_result_however_its_engine_recorded_it() {
        let sigkill = Outcome::Exited { code: CONTAINER_SIGKILL_EXIT };
        let key =
            |container, outcome: Outcome, output: &[u8]| result_key(container, &report(outcome, output));
        assert_eq!(key(true, memory(), b""), key(true, sigkill.clone(), b""));
        assert_ne!(key(false, memory(), b""), key(false, sigkill.clone(), b""), "wasm has no SIGKILL");
        assert_ne!(key(true, memory(), b""), key(true, sigkill.clone(), b"forged"), "outputs still count");
        assert_ne!(key(true, memory(), b""), key(true, Outcome::Exited { code: 1 }, b""));
        assert_ne!(key(true, sigkill, b""), key(true, Outcome::Exited { code: 0 }, b""));
        let timeout = Outcome::Failed { kind: FailureKind::Timeout, detail: String::new() };
        assert_ne!(key(true, memory(), b""), key(true, timeout, b""));
    }
}
