//! Decided effects: the one place where what governance decided reaches the rest of the
//! core. Governance applies the effects it owns (mandates, admissions, standing,
//! policies, prices) in `Governance::apply`; this module applies the ones the core owns,
//! on replay as live (a credit line, a readmission), and, live only, acts on a decision
//! the moment it is taken (a dispute's verdict, a removed worker's departure).

use icn_governance::{DecisionRecord, Event};
use icn_protocol::governance::{Ballot, Effect, Proposal};
use icn_protocol::{ContentId, Envelope};

use crate::{Command, Core, Now, Record, Refusal};

impl Core {
    /// A member's proposal, already verified as signed by `envelope.signer`; returns its
    /// id and when voting closes.
    pub fn propose(
        &mut self,
        now: Now,
        envelope: Envelope,
        proposal: Proposal,
    ) -> Result<(ContentId, u64), Refusal> {
        self.clock = now;
        if let Effect::ResolveDispute { job, .. } = &proposal.effect
            && !self.jobs.get(job).is_some_and(|j| j.disputed && !j.ended)
        {
            return Err(Refusal::NotInDispute { job: *job });
        }
        let event = self.governance.check_proposal(now.wall_ms, &envelope, &proposal)?;
        let Event::ProposalOpened { closes_ms, .. } = &event else { unreachable!("a proposal opens") };
        let closes_ms = *closes_ms;
        self.record(None, envelope.signer, Record::Governance(event));
        Ok((envelope.id(), closes_ms))
    }

    /// A member's ballot, already verified as signed by `envelope.signer`.
    pub fn vote(&mut self, now: Now, envelope: Envelope, ballot: Ballot) -> Result<(), Refusal> {
        self.clock = now;
        let event = self.governance.check_ballot(now.wall_ms, &envelope, &ballot)?;
        let opened = self.governance.open[&ballot.proposal].seq;
        self.record(Some(opened), envelope.signer, Record::Governance(event));
        Ok(())
    }

    pub(crate) fn apply_governance(&mut self, seq: u64, time_ms: u64, event: &Event) {
        if let Event::Genesis(genesis) = event {
            self.genesis = Some(genesis.clone());
            self.settlement.found(genesis);
        }
        // Read before `apply` closes the proposal.
        let decided = match event {
            Event::DecisionMade(record) if record.accepted && record.effect_refused.is_none() => {
                Some(self.governance.open[&record.proposal].proposal.effect.clone())
            }
            _ => None,
        };
        self.governance.apply(seq, time_ms, event);
        if self.governance.members.len() != self.names.len() {
            self.names = std::sync::Arc::new(self.governance.members.clone());
        }
        if let Some(effect) = decided {
            self.apply_effect(&effect);
            if self.planted(crate::Plant::EffectTwice) && matches!(effect, Effect::CreditLimit { .. }) {
                // The credit line decided before is set again, over this one.
                if let Some(Effect::CreditLimit { scope, limit }) = self.plants.last_effect.replace(effect) {
                    self.settlement.try_limit(&scope, limit);
                }
            }
        }
    }

    /// The state a decided effect changes outside governance.
    fn apply_effect(&mut self, effect: &Effect) {
        match effect {
            Effect::Readmit { key } => self.fleet.readmit(key),
            Effect::CreditLimit { scope, limit } => self.settlement.set_limit(scope, *limit),
            Effect::Mandate(_)
            | Effect::AdmitWorker { .. }
            | Effect::RemoveWorker { .. }
            | Effect::GrantStanding { .. }
            | Effect::RevokeStanding { .. }
            | Effect::PlacementPolicy(_)
            | Effect::PriceSchedule(_)
            | Effect::ResolveDispute { .. }
            | Effect::Share { .. }
            | Effect::PriorityClasses { .. }
            | Effect::ContainerTerms(_) => {}
        }
    }

    /// Counts every proposal whose window closed, records the decision, and acts on it.
    pub(crate) fn close_due_proposals(&mut self) {
        for proposal in self.governance.due(self.clock.wall_ms) {
            let open = &self.governance.open[&proposal];
            let (opened, decided) = (open.seq, open.proposal.clone());
            let record = self.count(&proposal, &decided);
            let accepted = record.accepted && record.effect_refused.is_none();
            let signer = self.key.public();
            let seq = self.record(Some(opened), signer, Record::Governance(Event::DecisionMade(record)));
            if accepted {
                self.act_on(&decided.effect, seq);
            }
        }
    }

    /// The decision on `proposal` as counted; an accepted effect the ledger would refuse
    /// now (a credit line below what the account already uses) is marked refused.
    fn count(&self, proposal: &icn_protocol::ContentId, decided: &Proposal) -> DecisionRecord {
        let mut record = self.governance.decide(proposal);
        if record.accepted
            && let Effect::CreditLimit { scope, limit } = &decided.effect
            && let Err(refused) = self.settlement.trial_limit(scope, *limit)
        {
            record.effect_refused = Some(refused.to_string());
        }
        record
    }

    /// What a decision sets in motion at once, beyond the state it changed: records and
    /// commands, so live only (on replay, the records it made are in the journal).
    fn act_on(&mut self, effect: &Effect, decided: u64) {
        match effect {
            Effect::ResolveDispute { job, output_digest, fuel } => {
                self.resolve(*job, *output_digest, *fuel, decided);
            }
            Effect::RemoveWorker { key } => {
                // Removed by the commons, not for a fault of its own.
                if let Some(session) = self.fleet.worker(key).map(|w| w.session) {
                    let reason = "a decision removed it from the commons".to_string();
                    self.commands.push(Command::Disconnect { worker: *key, session, reason: reason.clone() });
                    self.worker_lost(*key, session, reason, false);
                }
            }
            _ => {}
        }
    }
}
