//! Settlement: the mutual-credit ledger as jobs move through it. Admission reserves a
//! job's most cost against its scope's account; an accepted result — completed, or failed
//! by the job's own doing — posts what was used to the cooperatives whose workers' results
//! were accepted; a failure no worker could be blamed on the job for voids; members ask for
//! clearing, which nets obligations without moving any position.

use std::collections::{BTreeMap, BTreeSet};

use icn_governance::Genesis;
use icn_ledger::{Clearing, Ledger, TransferId};
use icn_protocol::governance::{
    CLEAR_REQUEST_WINDOW_MS, ClearRequest, Credits, ScopeId, ScopeKind, Standing,
};
use icn_protocol::wire::Usage;
use icn_protocol::{ContentId, Envelope, Fuel, JobId, PublicKey};

use crate::{Core, Now, Record, Refusal};

#[derive(Default)]
pub(crate) struct Settlement {
    ledger: Ledger,
    /// Clearing requests carried out within the last two request windows, by envelope
    /// id, with when they were made and their entry: a replay is refused, and older ones
    /// are refused by their age.
    clearings: BTreeMap<ContentId, (u64, u64)>,
}

/// What a clearing of `federation` did, as members are shown it.
pub fn clearing_view(federation: ScopeId, clearing: Clearing) -> icn_protocol::views::ClearingView {
    let obligations = |list: Vec<icn_ledger::Obligation>| {
        list.into_iter()
            .map(|o| icn_protocol::views::ObligationView {
                debtor: o.debtor,
                creditor: o.creditor,
                amount: o.amount,
            })
            .collect()
    };
    icn_protocol::views::ClearingView {
        federation,
        before: obligations(clearing.before),
        after: obligations(clearing.after),
    }
}

/// A job's one transfer: reserved at admission, posted at completion or voided at failure.
pub fn transfer(job: JobId) -> TransferId {
    TransferId::derive("job", &job.0.0)
}

/// What a run of `job` that used `used` costs, at the price the job was admitted at:
/// fuel at the price schedule for wasm, CPU time and reserved memory at the container
/// terms for a container. Reports are checked to stay within the task's limits, so this
/// stays within the hold; `min` keeps that true at a rounding edge.
pub(crate) fn cost(job: &crate::jobs::Job, used: Used) -> Credits {
    let authorization = &job.authorization;
    match &job.terms {
        Some(terms) => terms.cost(&used.usage, job.submission.limits.memory_bytes),
        None => authorization.price.cost(used.fuel),
    }
    .min(authorization.hold)
}

/// What one run used: its fuel (wasm) and its engine-measured usage (containers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Used {
    pub fuel: Fuel,
    pub usage: Usage,
}

impl Used {
    /// What the report says the run used.
    pub fn of(report: &icn_protocol::wire::ExecutionReport) -> Used {
        Used { fuel: report.fuel, usage: report.usage }
    }

    /// What a run of `job` is charged, the same on every replica that ended the same way:
    /// what it reported, except that a wasm run stopped at one of its limits of fuel or
    /// time pays its whole fuel limit. Fuel is a wasm job's measure, and a time limit
    /// stops a module wherever the worker's speed left it — between two calls out, where
    /// the fuel it burned is not even counted yet — so a run stopped by time is priced as
    /// if it had burned the fuel it was allowed: its fuel limit is what its time limit is
    /// worth. A module that spins until its timeout pays as much as one that spins until
    /// its fuel runs out.
    pub fn charged(job: &crate::jobs::Job, report: &icn_protocol::wire::ExecutionReport) -> Used {
        let used = Used::of(report);
        if job.terms.is_none() && ends_at_a_limit(&report.outcome) {
            return Used { fuel: job.submission.limits.fuel, ..used };
        }
        used
    }
}

/// Whether a wasm run ended at its fuel or its time limit: one ending, as judging and
/// pricing see it, since which of the two a run near both reaches first depends on the
/// worker's speed.
pub(crate) fn ends_at_a_limit(outcome: &icn_protocol::wire::Outcome) -> bool {
    use icn_protocol::wire::{FailureKind, Outcome};
    matches!(outcome, Outcome::Failed { kind: FailureKind::OutOfFuel | FailureKind::Timeout, .. })
}

/// What a cancelled wasm replica that ran from `placed_ms` until its job was cancelled at
/// `cancelled_ms` is charged: what it reported, and no less than the share of its fuel
/// limit that the time it ran (on the coordinator's clock, from the journal's entries)
/// is of its time limit — the same reckoning as a run stopped by its time limit, which
/// pays all of it. So a module that spins without calling out, cancelled just before
/// its timeout, pays nearly what the timeout would have cost.
pub(crate) fn charged_cancelled(
    job: &crate::jobs::Job,
    reported: Used,
    placed_ms: u64,
    cancelled_ms: u64,
) -> Used {
    if job.terms.is_some() {
        return reported;
    }
    let limits = &job.submission.limits;
    let ran_ms = cancelled_ms.saturating_sub(placed_ms).min(limits.timeout_ms);
    let share = u128::from(limits.fuel.0) * u128::from(ran_ms) / u128::from(limits.timeout_ms.max(1));
    let floor = Fuel(u64::try_from(share).expect("at most the fuel limit"));
    Used { fuel: reported.fuel.max(floor), ..reported }
}

impl Settlement {
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Every founding scope gets its account, with the credit line the genesis grants.
    pub fn found(&mut self, genesis: &Genesis) {
        for scope in &genesis.scopes {
            self.ledger.open(scope.id.clone());
            if let Some(limit) = scope.credit_limit {
                self.ledger.set_limit(&scope.id, limit).expect("a new account takes any valid limit");
            }
        }
    }

    /// Whether `scope`'s account can hold `hold` more.
    pub fn check_fits(&self, scope: &ScopeId, hold: Credits) -> Result<(), Refusal> {
        let account = self.ledger.account(scope)?;
        if hold.0 > account.available() {
            return Err(Refusal::CreditExhausted {
                scope: scope.clone(),
                available: account.available(),
                position: account.position,
                reserved: account.reserved,
                limit: account.limit,
                hold,
            });
        }
        Ok(())
    }

    /// What setting `scope`'s limit would refuse, without setting it.
    pub fn trial_limit(&self, scope: &ScopeId, limit: Credits) -> Result<(), Refusal> {
        self.ledger.clone().set_limit(scope, limit).map(drop).map_err(Refusal::from)
    }

    /// [`crate::Plant::EffectTwice`]: sets a limit if the ledger takes it.
    pub fn try_limit(&mut self, scope: &ScopeId, limit: Credits) {
        let _ = self.ledger.set_limit(scope, limit);
    }

    pub fn set_limit(&mut self, scope: &ScopeId, limit: Credits) {
        self.ledger.set_limit(scope, limit).expect("checked at close (else effect_refused is set)");
    }

    pub fn reserve(&mut self, job: JobId, scope: &ScopeId, hold: Credits) {
        if hold.0 > 0 {
            self.ledger
                .reserve(transfer(job), scope, hold)
                .expect("a journaled admission fits the account (checked before it was recorded)");
        }
    }

    pub fn post(&mut self, job: JobId, hold: Credits, payees: &[(ScopeId, Credits)]) {
        if hold.0 > 0 {
            self.ledger.post(transfer(job), payees).expect("a completed job's reservation posts");
        }
    }

    /// [`crate::Plant::PostTwice`]: the payees are paid again under a second transfer.
    pub fn post_again(&mut self, job: JobId, payer: &ScopeId, spent: Credits, payees: &[(ScopeId, Credits)]) {
        let again = TransferId::derive("planted: posted twice", &job.0.0);
        if spent.0 > 0 && self.ledger.reserve(again, payer, spent).is_ok() {
            let _ = self.ledger.post(again, payees);
        }
    }

    pub fn void(&mut self, job: JobId, hold: Credits) {
        if hold.0 > 0 {
            self.ledger.void(transfer(job)).expect("a failed job's reservation voids");
        }
    }

    pub fn apply_cleared(
        &mut self,
        seq: u64,
        time_ms: u64,
        request: &Envelope,
        clearing: &Clearing,
        members: impl Fn(&ScopeId) -> BTreeSet<ScopeId>,
    ) {
        let decoded = request.open_trusted::<ClearRequest>().expect("journaled requests decode");
        self.clearings
            .retain(|_, (made_ms, _)| made_ms.saturating_add(2 * CLEAR_REQUEST_WINDOW_MS) >= time_ms);
        self.clearings.insert(request.id(), (decoded.made_ms, seq));
        let done = self.ledger.clear(&members(&decoded.federation)).expect("cleared scopes exist");
        assert_eq!(&done, clearing, "entry {seq}: the journaled clearing differs from a recomputation");
    }
}

impl Core {
    /// A member's request to clear the obligations within a federation.
    pub fn clear(
        &mut self,
        now: Now,
        envelope: Envelope,
        request: ClearRequest,
    ) -> Result<Clearing, Refusal> {
        self.clock = now;
        if let Some((_, seq)) = self.settlement.clearings.get(&envelope.id()) {
            return Err(Refusal::ClearingReplayed { seq: *seq });
        }
        let window_ms = CLEAR_REQUEST_WINDOW_MS;
        if request.made_ms.abs_diff(now.wall_ms) > window_ms {
            return Err(Refusal::ClearingStale { made_ms: request.made_ms, now_ms: now.wall_ms, window_ms });
        }
        let federation = &request.federation;
        if self.governance.scope(federation)?.kind != ScopeKind::Federation {
            return Err(Refusal::NotAFederation { scope: federation.clone() });
        }
        let signer = envelope.signer;
        let may = [Standing::Vote, Standing::Operate]
            .iter()
            .any(|s| self.governance.holds(&signer, federation, *s));
        if !may {
            let member =
                self.governance.member_name(&signer).map_or_else(|| signer.to_string(), str::to_string);
            return Err(Refusal::NoClearingStanding { member, federation: federation.clone() });
        }
        let clearing = self.settlement.ledger.clone().clear(&self.governance.descendants(federation))?;
        self.record(None, signer, Record::Cleared { request: envelope, clearing: clearing.clone() });
        Ok(clearing)
    }

    /// A job's accepted result is paid for: it completed, or it failed by its own doing
    /// (`failure`, which then ends it as failed).
    pub(crate) fn apply_paid(
        &mut self,
        seq: u64,
        job: JobId,
        fuel: Fuel,
        worker: PublicKey,
        payees: &[(ScopeId, Credits)],
        failure: Option<&str>,
    ) {
        let state = self.jobs.known(&job);
        assert!(!state.ended, "entry {seq}: job {job} is paid for after it ended");
        let accepted = state.reports.iter().find(|r| r.worker == worker).map(|r| (worker, r.report.clone()));
        let usage = accepted.as_ref().map_or_else(Usage::default, |(_, report)| report.usage);
        self.pay(seq, job, Used { fuel, usage }, payees);
        self.end(seq, &job, accepted, failure.map(str::to_string));
    }

    /// `job`'s hold is settled: each payee gets what `used` costs at the job's price (as
    /// journaled), the rest is released; no payee voids the hold.
    fn pay(&mut self, seq: u64, job: JobId, used: Used, payees: &[(ScopeId, Credits)]) {
        let state = self.jobs.known(&job);
        let authorization = state.authorization;
        let each = cost(state, used);
        assert!(
            payees.iter().all(|(_, paid)| *paid == each),
            "entry {seq}: a journaled payment differs from the usage times the price"
        );
        let spent = Credits(payees.iter().map(|(_, paid)| paid.0).sum());
        assert!(spent <= authorization.hold, "entry {seq}: payments exceed the hold");
        self.governance.release(authorization.decision, authorization.hold, spent);
        if payees.is_empty() {
            self.settlement.void(job, authorization.hold);
        } else {
            self.settlement.post(job, authorization.hold, payees);
            if self.planted(crate::Plant::PostTwice) {
                let payer = self.jobs.known(&job).submission.scope.clone();
                self.settlement.post_again(job, &payer, spent, payees);
            }
        }
        for (payee, paid) in payees {
            self.fleet.earn(payee, paid.0.max(0) as u64);
        }
    }

    /// A cancelled job ends; its replicas' slots come free, and its hold is voided, or,
    /// when replicas ran, kept until they said what they used.
    pub(crate) fn apply_cancelled(&mut self, seq: u64, time_ms: u64, request: &Envelope) {
        let job = request.open_trusted::<icn_protocol::wire::Cancel>().expect("journaled cancels decode").job;
        let by = self
            .governance
            .member_name(&request.signer)
            .map_or_else(|| request.signer.short(), str::to_string);
        let reason = format!("cancelled by {by}");
        let state = self.jobs.known(&job);
        assert!(!state.ended, "entry {seq}: job {job} is cancelled after it ended");
        if state.placements.is_empty() {
            self.apply_failed(seq, job, &reason);
        } else {
            // Replicas ran: they are told to stop, and the hold stays until they say what
            // they used (`CancelSettled`).
            self.end_stopping(seq, &job, None, Some(reason), true);
        }
        self.jobs.mark_cancelled(&job, time_ms);
    }

    /// What a cancelled job's stopped replicas used is paid; the rest of the hold is
    /// released.
    pub(crate) fn apply_cancel_settled(
        &mut self,
        seq: u64,
        time_ms: u64,
        job: JobId,
        fuel: Fuel,
        payees: &[(ScopeId, Credits)],
    ) {
        let state = self.jobs.known(&job);
        let least = state.least_stopped();
        // At least what the least of them reported: journals made before a cancelled
        // wasm run was charged for its time settled exactly that.
        assert!(
            fuel >= least.fuel,
            "entry {seq}: a cancel settles at least the least fuel its stopped replicas reported"
        );
        self.pay(seq, job, Used { fuel, ..least }, payees);
        self.jobs.settled(seq, time_ms, &job);
        self.jobs.forget_ended_beyond(self.config.ended_jobs_max);
    }

    /// A cancelled job's stopped replicas have all reported, or the rest are overdue or
    /// gone: the least any of them used is what ran, and each cooperative whose worker
    /// reported is paid it (as agreeing replicas are paid each).
    pub(crate) fn settle_cancel(&mut self, id: JobId, cause: u64) {
        let job = self.jobs.known(&id);
        let least = job.least_charged();
        let fuel = least.fuel;
        let each = cost(job, least);
        let payees: Vec<(ScopeId, Credits)> = if each.0 > 0 {
            job.stopped.iter().map(|(owner, _, _)| (owner.clone(), each)).collect()
        } else {
            vec![]
        };
        let signer = self.key.public();
        self.record(Some(cause), signer, Record::CancelSettled { job: id, fuel, payees });
    }

    pub(crate) fn apply_failed(&mut self, seq: u64, job: JobId, reason: &str) {
        let state = self.jobs.known(&job);
        assert!(!state.ended, "entry {seq}: job {job} fails after it ended");
        let authorization = state.authorization;
        self.governance.release(authorization.decision, authorization.hold, Credits(0));
        self.settlement.void(job, authorization.hold);
        self.end(seq, &job, None, Some(reason.to_string()));
    }
}
