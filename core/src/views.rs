//! The views members read, made on request from the core's state: plain values, cheap to
//! clone, with no encoding here (the adapters serialize them off the core's thread).
//! Lists that grow with the commons are paged.

use std::collections::BTreeMap;
use std::sync::Arc;

use icn_governance::{Decision, ProposalState, describe_effect};
use icn_protocol::governance::ScopeId;
use icn_protocol::views::{
    AccountView, ClassQueue, DecisionView, MandateView, MemberView, ObligationView, Page, Paged, Person,
    PositionsView, ProposalView, QueueView, ScopeQueue, ScopeSummary, ScopeView, WorkerView,
};
use icn_protocol::wire::{IdKind, JobSummary, JobsQuery};
use icn_protocol::{ContentId, JobId, PublicKey};

use crate::{Core, Refusal};

impl Core {
    fn person(&self, key: &PublicKey) -> Person {
        Person { key: *key, name: self.governance.member_name(key).map(str::to_string) }
    }

    fn name(&self, key: &PublicKey) -> String {
        self.governance.member_name(key).map_or_else(|| key.short(), str::to_string)
    }

    /// Ids of `kind` between `lo` and `hi` (the bounds of a typed prefix) that this core
    /// holds, in order, at most `limit`: jobs in memory, proposals open or closed, and the
    /// keys of members and admitted workers.
    pub fn complete(&self, kind: IdKind, (lo, hi): ([u8; 32], [u8; 32]), limit: usize) -> Vec<[u8; 32]> {
        let ids: Vec<[u8; 32]> = match kind {
            IdKind::Job => self.jobs.ids_between(JobId(ContentId(lo)), JobId(ContentId(hi)), limit),
            IdKind::Proposal => {
                let range = ContentId(lo)..=ContentId(hi);
                let open = self.governance.open.range(range.clone()).map(|(id, _)| id.0);
                let closed = self.governance.closed.range(range).map(|(id, _)| id.0);
                open.chain(closed).collect()
            }
            IdKind::Key => {
                let range = PublicKey(lo)..=PublicKey(hi);
                let members = self.governance.members.range(range.clone()).map(|(key, _)| key.0);
                let workers = self.governance.workers.range(range).map(|(key, _)| key.0);
                members.chain(workers).collect()
            }
        };
        let ids: std::collections::BTreeSet<[u8; 32]> = ids.into_iter().collect();
        ids.into_iter().take(limit).collect()
    }

    /// How the shared queue stands: every scope with jobs waiting or running, with its
    /// weight, share, recent usage and jobs, in the order fair share serves them now
    /// (scopes with nothing waiting last).
    pub fn queue(&self) -> QueueView {
        let now_ms = self.clock.wall_ms;
        let mut waiting: BTreeMap<&ScopeId, usize> = BTreeMap::new();
        let mut classes: BTreeMap<&ScopeId, Vec<ClassQueue>> = BTreeMap::new();
        for (scope, class, count) in self.jobs.queues() {
            *waiting.entry(scope).or_default() += count;
            classes.entry(scope).or_default().push(ClassQueue {
                name: class.to_string(),
                weight: self.governance.class_weight(scope, class),
                recent_ms: self.shares.class_recent_ms(scope, class, now_ms).round() as u64,
                waiting: count as u64,
            });
        }
        let active: std::collections::BTreeSet<&ScopeId> =
            waiting.keys().copied().chain(self.shares.busy()).collect();
        let shares = self.shares.shares(&self.governance, active.into_iter());
        let mut scopes: Vec<(bool, f64, ScopeQueue)> = shares
            .into_iter()
            .map(|(scope, share)| {
                let waiting = waiting.get(&scope).copied().unwrap_or(0) as u64;
                let decided = self.governance.scopes.get(&scope).is_some_and(|s| s.classes.is_some());
                let classes = if decided { classes.remove(&scope).unwrap_or_default() } else { vec![] };
                let priority = self.shares.priority(&scope, share, now_ms);
                let set = self.governance.scopes.get(&scope).and_then(|s| s.share);
                let view = ScopeQueue {
                    weight: set.map_or(1, |s| s.weight),
                    decision: set.map(|s| s.decision),
                    share,
                    recent_ms: self.shares.recent_ms(&scope, now_ms).round() as u64,
                    running: self.shares.running(&scope),
                    waiting,
                    classes,
                    scope,
                };
                (waiting == 0, priority, view)
            })
            .collect();
        scopes
            .sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then_with(|| a.2.scope.cmp(&b.2.scope)));
        let pool = self.fleet.pool();
        QueueView {
            slots: pool.candidates().filter(|c| !c.quarantined).map(|c| u64::from(c.slots)).sum(),
            free_slots: pool.free_slots(),
            half_life_ms: self.shares.half_life_ms(),
            scopes: scopes.into_iter().map(|(_, _, view)| view).collect(),
        }
    }

    /// A page of the jobs held, newest first, that pass `query`. The cursor counts down
    /// from the newest submission entry, so pages stay put while jobs are submitted.
    pub fn jobs_list(&self, query: &JobsQuery, page: &Page) -> Paged<JobSummary> {
        // Cursors ascend as submissions go back in time; jobs on earlier pages are skipped
        // before any view is built for them.
        let cursor = |seq: u64| u64::MAX - seq;
        let after_page =
            self.jobs.newest_first().skip_while(|(seq, _)| page.after.is_some_and(|a| cursor(*seq) <= a));
        let matching = after_page.filter_map(|(seq, id)| {
            let job = self.jobs.known(id);
            let keep = query.scope.as_ref().is_none_or(|s| *s == job.submission.scope)
                && query.submitter.is_none_or(|k| k == job.submitter)
                && query.since_ms.is_none_or(|since| job.submitted_ms >= since);
            if !keep {
                return None;
            }
            let view = self.job(id)?;
            if query.state.as_deref().is_some_and(|state| state != view.state.name()) {
                return None;
            }
            let summary = JobSummary {
                job: *id,
                scope: job.submission.scope.clone(),
                submitter: self.person(&job.submitter),
                submitted_ms: job.submitted_ms,
                state: view.state,
                waiting: view.waiting,
                failure: view.failure,
            };
            Some((cursor(seq), summary))
        });
        Paged::of(matching, page)
    }

    /// Members' names by key, shared: traces name people with it off the core's thread.
    pub fn names(&self) -> Arc<BTreeMap<PublicKey, String>> {
        self.names.clone()
    }

    /// Members and their standing, by key; the cursor is the position in that order.
    pub fn members(&self, page: &Page) -> Paged<MemberView> {
        let from = page.after.map_or(0, |after| after as usize + 1);
        let members = self.governance.members.keys().enumerate().skip(from).take(page.limit() + 1).map(
            |(position, key)| {
                let standing = self
                    .governance
                    .scopes
                    .iter()
                    .filter_map(|(id, scope)| {
                        scope.standing.get(key).map(|s| (id.clone(), s.iter().copied().collect()))
                    })
                    .collect();
                (position as u64, MemberView { person: self.person(key), standing })
            },
        );
        Paged::of(members, page)
    }

    pub fn scopes(&self) -> Vec<ScopeSummary> {
        self.governance
            .scopes
            .iter()
            .map(|(id, scope)| ScopeSummary {
                id: id.clone(),
                kind: scope.kind,
                parent: scope.parent.clone(),
                members: scope.standing.len() as u64,
            })
            .collect()
    }

    /// One scope: its rule, prices and policy in force, mandate, account, a page of its
    /// members, and the workers it owns.
    pub fn scope(&self, id: &ScopeId, page: &Page) -> Result<ScopeView, Refusal> {
        let scope = self.governance.scope(id)?;
        let from = page.after.map_or(0, |after| after as usize + 1);
        let members = scope.standing.iter().enumerate().skip(from).take(page.limit() + 1).map(
            |(position, (key, held))| (position as u64, (self.person(key), held.iter().copied().collect())),
        );
        let mandate = scope.mandate.map(|decision| {
            let m = &self.governance.mandates[&decision];
            MandateView {
                decision: m.decision,
                mandate: m.mandate.clone(),
                granted_ms: m.granted_ms,
                expires_ms: m.expires_ms,
                held: m.held,
                spent: m.spent,
                left: m.left(),
                jobs: m.jobs,
            }
        });
        Ok(ScopeView {
            id: id.clone(),
            kind: scope.kind,
            parent: scope.parent.clone(),
            rule: scope.rule,
            prices: self.governance.prices(id),
            policy: self.governance.placement_policy(id),
            mandate,
            account: self.ledger().account(id).ok().map(|a| account(id, a)),
            members: Paged::of(members, page),
            workers: self
                .governance
                .workers
                .iter()
                .filter(|(_, owner)| *owner == id)
                .map(|(k, _)| *k)
                .collect(),
            share: scope.share.map_or((1, None), |s| (s.weight, Some(s.decision))),
            classes: scope.classes.as_ref().map(|set| (set.classes.clone(), set.decision)),
        })
    }

    /// Open proposals, oldest first; the cursor is the proposal's entry.
    pub fn proposals(&self, page: &Page) -> Paged<ProposalView> {
        let mut open: Vec<(u64, &ContentId)> =
            self.governance.open.iter().map(|(id, p)| (p.seq, id)).collect();
        open.sort_unstable();
        let views =
            open.into_iter().map(|(seq, id)| (seq, self.open_proposal(id, &self.governance.open[id])));
        Paged::of(views, page)
    }

    /// A proposal, open or decided.
    pub fn proposal(&self, id: &ContentId) -> Option<ProposalView> {
        if let Some(open) = self.governance.open.get(id) {
            return Some(self.open_proposal(id, open));
        }
        let decision = &self.governance.decisions[self.governance.closed.get(id)?];
        Some(ProposalView {
            id: *id,
            seq: decision.proposal_seq,
            scope: decision.proposal.scope.clone(),
            title: decision.proposal.title.clone(),
            effect: decision.proposal.effect.clone(),
            effect_text: self.effect_text(&decision.proposal.scope, &decision.proposal.effect),
            proposer: self.person(&decision.proposer),
            opened_ms: decision.decided_ms,
            closes_ms: decision.decided_ms,
            rule: decision.record.rule,
            tally: decision.record.tally,
            ballots: vec![],
            reasons: vec![],
            decision: Some(decision.seq),
        })
    }

    fn open_proposal(&self, id: &ContentId, open: &ProposalState) -> ProposalView {
        let scope = &open.proposal.scope;
        let tally = self.governance.decide(id).tally;
        ProposalView {
            id: *id,
            seq: open.seq,
            scope: scope.clone(),
            title: open.proposal.title.clone(),
            effect: open.proposal.effect.clone(),
            effect_text: self.effect_text(scope, &open.proposal.effect),
            proposer: self.person(&open.proposer),
            opened_ms: open.opened_ms,
            closes_ms: open.closes_ms,
            rule: self.governance.scopes[scope].rule,
            tally,
            ballots: open.ballots.iter().map(|(key, (choice, _, _))| (self.person(key), *choice)).collect(),
            reasons: open
                .reasons
                .iter()
                .map(|(key, reason)| icn_protocol::views::Reason {
                    voter: self.person(key),
                    reason: reason.clone(),
                })
                .collect(),
            decision: None,
        }
    }

    /// Decisions, oldest first; the cursor is the decision's entry.
    pub fn decisions(&self, page: &Page) -> Paged<DecisionView> {
        let from = page.after.map_or(0, |after| after + 1);
        let views = self.governance.decisions.range(from..).map(|(seq, d)| (*seq, self.decision_view(d)));
        Paged::of(views, page)
    }

    pub fn decision(&self, seq: u64) -> Option<DecisionView> {
        self.governance.decisions.get(&seq).map(|d| self.decision_view(d))
    }

    fn decision_view(&self, decision: &Decision) -> DecisionView {
        let proposal = &decision.proposal;
        DecisionView {
            seq: decision.seq,
            proposal: decision.proposal_id,
            proposal_seq: decision.proposal_seq,
            scope: proposal.scope.clone(),
            title: proposal.title.clone(),
            effect: proposal.effect.clone(),
            effect_text: self.effect_text(&proposal.scope, &proposal.effect),
            proposer: self.person(&decision.proposer),
            decided_ms: decision.decided_ms,
            accepted: decision.record.accepted,
            tally: decision.record.tally,
            rule: decision.record.rule,
            reason: decision.record.reason.clone(),
            effect_refused: decision.record.effect_refused.clone(),
        }
    }

    fn effect_text(&self, scope: &ScopeId, effect: &icn_protocol::governance::Effect) -> String {
        describe_effect(scope, effect, |key| self.name(key))
    }

    pub fn positions(&self) -> PositionsView {
        let ledger = self.ledger();
        PositionsView {
            accounts: ledger.accounts().iter().map(|(scope, a)| account(scope, a)).collect(),
            obligations: ledger
                .obligations()
                .map(|o| ObligationView { debtor: o.debtor, creditor: o.creditor, amount: o.amount })
                .collect(),
        }
    }

    /// Every worker admitted or with a history, by key; the cursor is the position.
    pub fn workers(&self, page: &Page) -> Paged<WorkerView> {
        Paged::of(self.workers_view().into_iter().enumerate().map(|(i, w)| (i as u64, w)), page)
    }
}

fn account(scope: &ScopeId, a: &icn_ledger::Account) -> AccountView {
    AccountView {
        scope: scope.clone(),
        position: a.position,
        reserved: a.reserved,
        limit: a.limit,
        available: a.available(),
    }
}
