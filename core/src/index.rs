//! The journal's index: for each entry, the keys it is filed under, so that a job's
//! trace, a scope's statement, the jobs a decision authorized and the ballots of a
//! proposal are read from the entries they name instead of from a scan of the whole
//! journal. The core files each entry as it applies it (live and on replay alike), the
//! store keeps the rows beside the entries, committed in the same transaction.

use icn_governance::Event;
use icn_protocol::governance::{Ballot, Effect, ScopeId};
use icn_protocol::wire::Submission;
use icn_protocol::{ContentId, JobId};

use crate::{Core, Record};

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IndexKey {
    /// A job's submission (journals written before `JobEntries` existed file every
    /// entry about the job here).
    Job(JobId),
    /// Every entry about the job submitted at this entry, after its submission: keyed by
    /// the submission's sequence number, which grows, so the index's writes land together
    /// instead of at random places as a random job id would put them.
    JobEntries(u64),
    /// Every entry that moved or held a scope's account.
    Scope(ScopeId),
    /// Every job submitted under a decision (or the genesis's founding mandates).
    Decision(u64),
    /// Every ballot cast on a proposal.
    Proposal(ContentId),
    /// Every decision that set a scope's fair-share weight.
    Share(ScopeId),
}

/// One entry filed under one key; for a scope, how its posted position moved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexRow {
    pub key: IndexKey,
    pub seq: u64,
    pub change: i64,
}

impl Core {
    /// Files entry `seq` of `record`; called before the record is applied, while the
    /// state it follows from (a job's scope and hold) is still in place.
    pub(crate) fn file(&mut self, seq: u64, record: &Record) {
        let row = |key, change| IndexRow { key, seq, change };
        if let Some(job) = record.job() {
            let key = match (record, self.jobs.get(&job)) {
                (Record::JobSubmitted { .. }, _) | (_, None) => IndexKey::Job(job),
                (_, Some(state)) => IndexKey::JobEntries(state.submitted_seq),
            };
            self.index.push(row(key, 0));
        }
        match record {
            Record::JobSubmitted { submission, authorization } => {
                self.index.push(row(IndexKey::Decision(authorization.decision), 0));
                let scope =
                    submission.open_trusted::<Submission>().expect("journaled submissions decode").scope;
                if authorization.hold.0 > 0 {
                    self.index.push(row(IndexKey::Scope(scope), 0));
                }
            }
            Record::JobCompleted { job, payees, .. }
            | Record::JobFailedPaid { job, payees, .. }
            | Record::CancelSettled { job, payees, .. } => {
                let payer = self.jobs.known(job).submission.scope.clone();
                let paid_out: i64 = payees.iter().filter(|(p, _)| *p != payer).map(|(_, c)| c.0).sum();
                self.index.push(row(IndexKey::Scope(payer.clone()), -paid_out));
                let mut earned: std::collections::BTreeMap<&ScopeId, i64> = std::collections::BTreeMap::new();
                for (payee, paid) in payees.iter().filter(|(p, _)| *p != payer) {
                    *earned.entry(payee).or_default() += paid.0;
                }
                for (payee, amount) in earned.into_iter().filter(|(_, amount)| *amount > 0) {
                    self.index.push(row(IndexKey::Scope(payee.clone()), amount));
                }
            }
            Record::JobFailed { .. } | Record::JobCancelled { .. } => {
                let job = &record.job().expect("a failure or cancel names its job");
                let state = self.jobs.known(job);
                if state.authorization.hold.0 > 0 {
                    self.index.push(row(IndexKey::Scope(state.submission.scope.clone()), 0));
                }
            }
            Record::Governance(Event::DecisionMade(decided))
                if decided.accepted && decided.effect_refused.is_none() =>
            {
                // Filed before `apply` closes the proposal, while its effect is at hand.
                let effect = &self.governance.open[&decided.proposal].proposal.effect;
                if let Effect::Share { scope, .. } = effect {
                    self.index.push(row(IndexKey::Share(scope.clone()), 0));
                }
            }
            Record::Governance(Event::BallotCast { ballot, .. }) => {
                let proposal = ballot.open_trusted::<Ballot>().expect("journaled ballots decode").proposal;
                self.index.push(row(IndexKey::Proposal(proposal), 0));
            }
            Record::Cleared { clearing, .. } => {
                let touched: std::collections::BTreeSet<&ScopeId> = clearing
                    .before
                    .iter()
                    .chain(&clearing.after)
                    .flat_map(|o| [&o.debtor, &o.creditor])
                    .collect();
                for scope in touched {
                    self.index.push(row(IndexKey::Scope(scope.clone()), 0));
                }
            }
            _ => {}
        }
    }

    /// Index rows of the entries made or replayed since the last call.
    pub fn take_index(&mut self) -> Vec<IndexRow> {
        std::mem::take(&mut self.index)
    }
}
