//! The coordinator's deterministic core: inputs in, journal entries and commands out.
//!
//! No IO, no clock, no randomness: time comes in with each input ([`Now`]), and the shell
//! persists [`Core::take_entries`] before it carries out [`Core::take_commands`]
//! (write-ahead: a worker never hears of a placement the journal could lose). The same
//! core runs under the QUIC shell, in tests and in a simulator.
//!
//! Every change of state goes through one short `apply`, which dispatches each journal
//! record to the concern it is about — the same function that replays the journal at
//! start, so the state rebuilt after a crash is by construction the state that was live:
//!
//! - `jobs` — the job table and its lifecycle: admitted, placed, requeued, reported,
//!   ended once; the queue.
//! - `fleet` — connected workers and their sessions, the placement pool, trust and
//!   quarantine.
//! - `settlement` — the ledger: holds reserved at admission, posted at completion, voided
//!   at failure; clearing.
//! - `scheduling` — placing replicas, judging their results, disputes.
//! - `shares` — recent usage by scope and the governed weights that order the queue.
//! - `effects` — the one place every decided effect is applied.
//!
//! Every collection whose iteration order reaches the journal is ordered (`BTreeMap`),
//! so the same inputs give byte-identical journals.

mod chain;
pub mod driver;
mod effects;
mod fleet;
pub mod gauges;
pub mod index;
mod jobs;
pub mod observe;
mod plant;
pub mod record;
mod refusal;
mod scheduling;
mod settlement;
mod shares;
pub mod store;
pub mod trace;
mod views;

use std::sync::Arc;

use icn_governance::{Event, Governance};
use icn_ledger::Ledger;
use icn_protocol::wire::{Assignment, JobView};
use icn_protocol::{JobId, Keypair, PublicKey};

pub use chain::{
    BadEntry, Entry, GENESIS_HASH, check_link, check_signatures, entry_hash, first_bad, unsealed_tail,
};
pub use driver::{Driver, Durable, StepError, Turn};
/// The founding document a journal begins with (governance's), for shells that start one.
pub use icn_governance::Genesis;
pub use index::{IndexKey, IndexRow};
pub use plant::Plant;
pub use record::Record;
pub use refusal::Refusal;
pub use settlement::{clearing_view, transfer};

use fleet::Fleet;
use jobs::Jobs;
use settlement::Settlement;

/// When an input arrives: wall-clock time, which records carry and governance reads
/// (voting windows, mandate periods), and monotonic time, which every timeout reads, so
/// that a jump of the wall clock never declares a live worker lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    pub wall_ms: u64,
    pub mono_ms: u64,
}

impl Now {
    /// Both clocks at `ms`: for tests and simulations, where they cannot drift apart.
    pub fn at(ms: u64) -> Now {
        Now { wall_ms: ms, mono_ms: ms }
    }
}

/// When the core next needs to run with no input ([`Core::next_wake`]), on each clock:
/// the shell wakes it at whichever comes first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wake {
    pub mono_ms: Option<u64>,
    pub wall_ms: Option<u64>,
}

impl Wake {
    /// How long after `now` the core wants to run: zero when it is due already, `None`
    /// when nothing is due until an input arrives.
    pub fn after(&self, now: Now) -> Option<u64> {
        let mono = self.mono_ms.map(|at| at.saturating_sub(now.mono_ms));
        let wall = self.wall_ms.map(|at| at.saturating_sub(now.wall_ms));
        mono.into_iter().chain(wall).min()
    }
}

/// See [`Core::state`].
#[derive(Debug, PartialEq)]
pub struct State<'a> {
    jobs: &'a jobs::Jobs,
    trust: &'a std::collections::BTreeMap<PublicKey, icn_protocol::governance::Trust>,
    quarantined: &'a std::collections::BTreeSet<PublicKey>,
    shares: &'a shares::Shares,
}

/// Tunables of the core, each with its unit.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// A worker silent this long is taken as lost and its tasks go elsewhere.
    pub worker_timeout_ms: u64,
    /// Attempts a task gets before its job fails (worker losses, missed deadlines).
    pub attempts_max: u32,
    /// Time allowed beyond a task's own timeout for dispatch and reporting.
    pub deadline_grace_ms: u64,
    /// Jobs the core holds that have not ended; a submission beyond it is refused.
    pub jobs_open_max: usize,
    /// Jobs one member may hold open at once, so one member cannot fill the room.
    pub jobs_open_per_submitter_max: usize,
    /// Jobs one scope may hold open at once, so one scope cannot fill the room.
    pub jobs_open_per_scope_max: usize,
    /// A job without a final result this long after submission fails, and its
    /// reservation is voided, so credit is never held by a job that cannot end.
    pub job_expiry_ms: u64,
    /// Ended jobs kept in memory, the most recent; older ones are answered from the
    /// journal's index, so memory does not grow with history.
    pub ended_jobs_max: usize,
    /// An ended job leaves memory this long after it ended, if not sooner.
    pub ended_job_memory_ms: u64,
    /// A replica requeued for the second time or more waits this long before it is placed
    /// again, doubling with each further requeue (the first is placed again at once).
    pub retry_backoff_ms: u64,
    /// The longest a requeued replica waits.
    pub retry_backoff_max_ms: u64,
    /// Fair share: a scope's recent usage halves every this long.
    pub share_half_life_ms: u64,
    /// Fair share: what each placement costs its scope beyond the slot time it holds.
    pub share_quantum_ms: u64,
}

impl CoreConfig {
    /// How long a replica waits after its job's `requeues`-th requeue: nothing after the
    /// first, then `retry_backoff_ms`, doubling, at most `retry_backoff_max_ms`.
    pub fn backoff_ms(&self, requeues: u32) -> u64 {
        match requeues {
            0 | 1 => 0,
            n => self.retry_backoff_ms.saturating_mul(1 << (n - 2).min(32)).min(self.retry_backoff_max_ms),
        }
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            worker_timeout_ms: 5_000,
            attempts_max: 5,
            deadline_grace_ms: 5_000,
            jobs_open_max: 100_000,
            jobs_open_per_submitter_max: 10_000,
            jobs_open_per_scope_max: 25_000,
            job_expiry_ms: 24 * 3_600_000,
            ended_jobs_max: 10_000,
            ended_job_memory_ms: 3_600_000,
            retry_backoff_ms: 1_000,
            retry_backoff_max_ms: 60_000,
            share_half_life_ms: 3_600_000,
            share_quantum_ms: 1_000,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Dispatch {
        worker: PublicKey,
        session: u64,
        assignment: Assignment,
    },
    /// Close a worker's connection: it was declared lost, or it broke the protocol.
    Disconnect {
        worker: PublicKey,
        session: u64,
        reason: String,
    },
    /// A job's state changed; whoever watches it wants to know.
    JobChanged(JobId),
    /// The job was cancelled: the worker running this attempt is to stop it.
    Stop {
        worker: PublicKey,
        session: u64,
        task: icn_protocol::TaskId,
        attempt: u32,
    },
}

/// Where the chain stands: the next entry's number and the last entry's hash.
#[derive(Clone, Copy, Debug)]
struct Chain {
    next_seq: u64,
    last_hash: [u8; 32],
}

pub struct Core {
    key: Arc<Keypair>,
    config: CoreConfig,
    governance: Governance,
    settlement: Settlement,
    fleet: Fleet,
    jobs: Jobs,
    shares: shares::Shares,
    /// The founding document the journal began with.
    genesis: Option<Genesis>,
    chain: Chain,
    /// The time of the input being handled.
    clock: Now,
    entries: Vec<Entry>,
    commands: Vec<Command>,
    /// Index rows of the entries made or replayed since the shell last took them.
    index: Vec<IndexRow>,
    /// Members' names, shared with traces made off this thread; members only join.
    names: Arc<std::collections::BTreeMap<PublicKey, String>>,
    /// What the records made live since the shell last looked say to its metrics.
    observed: std::collections::VecDeque<observe::Observation>,
    /// Bugs planted for the simulation's tests; none unless the `plant` feature is on
    /// and a test turned one on.
    plants: plant::Plants,
    /// Keys the spot-check draws (`scheduling::draw`), derived from the coordinator's key.
    spot_key: [u8; 32],
}

impl Core {
    pub fn new(key: Arc<Keypair>, config: CoreConfig) -> Self {
        Core {
            spot_key: blake3::derive_key("icn coordinator: spot-check draws", &key.seed()),
            key,
            shares: shares::Shares::new(config.share_half_life_ms.max(1), config.share_quantum_ms),
            config,
            governance: Governance::default(),
            settlement: Settlement::default(),
            fleet: Fleet::default(),
            jobs: Jobs::default(),
            genesis: None,
            chain: Chain { next_seq: 0, last_hash: GENESIS_HASH },
            clock: Now::default(),
            entries: Vec::new(),
            commands: Vec::new(),
            index: Vec::new(),
            names: Arc::default(),
            observed: std::collections::VecDeque::new(),
            plants: plant::Plants::default(),
        }
    }

    /// Turns a planted bug on, for the simulation's tests only; `false` (and nothing
    /// planted) in a build without the `plant` feature.
    pub fn plant(&mut self, plant: Plant) -> bool {
        self.plants.turn_on(plant)
    }

    /// Whether a planted bug is on; always `false` without the `plant` feature.
    pub(crate) fn planted(&self, plant: Plant) -> bool {
        self.plants.planted(plant)
    }

    /// Rebuilds the state from journal entries already checked, then resumes.
    pub fn recover(&mut self, entries: &[Entry], now: Now) -> Result<(), BadEntry> {
        self.replay(entries)?;
        self.resume(now);
        Ok(())
    }

    /// Applies journal entries already checked, in order; the journal can be replayed in
    /// chunks, so a start never holds more of it than one chunk.
    pub fn replay(&mut self, entries: &[Entry]) -> Result<(), BadEntry> {
        for entry in entries {
            assert_eq!(entry.seq, self.chain.next_seq, "journal entries arrive in order");
            let record = entry.decode_record()?;
            self.clock.wall_ms = entry.time_ms;
            self.apply(entry.seq, entry.time_ms, &record);
            self.chain = Chain { next_seq: entry.seq + 1, last_hash: entry.hash };
        }
        Ok(())
    }

    /// After a replay: tasks that were placed when the coordinator stopped are requeued
    /// (and that is journaled), since no worker is connected yet.
    pub fn resume(&mut self, now: Now) {
        self.clock = now;
        for (task, attempt) in self.jobs.in_flight() {
            self.requeue(task, attempt, "the coordinator restarted while it ran".into(), false);
        }
        // Stopped replicas of cancelled jobs can no longer report on this run's streams.
        for job in self.jobs.unsettled(None) {
            let cause = self.jobs.known(&job).last_seq;
            self.settle_cancel(job, cause);
        }
    }

    /// Starts a new journal from `genesis`, or checks that the journal began from it:
    /// after the first start, only decisions change what the genesis set.
    pub fn found(&mut self, now: Now, genesis: &Genesis) -> Result<(), Refusal> {
        self.clock = now;
        genesis.validate().map_err(Refusal::BadGenesis)?;
        match &self.genesis {
            None if self.chain.next_seq == 0 => {
                let signer = self.key.public();
                self.record(None, signer, Record::Governance(Event::Genesis(genesis.clone())));
                Ok(())
            }
            None => Err(Refusal::NoGenesis),
            Some(journaled) if journaled == genesis => Ok(()),
            Some(_) => Err(Refusal::GenesisChanged),
        }
    }

    /// Entries to persist, the last one sealed. Empty when nothing happened.
    pub fn take_entries(&mut self) -> Vec<Entry> {
        if let Some(last) = self.entries.last_mut() {
            last.seal_with(&self.key);
        }
        std::mem::take(&mut self.entries)
    }

    /// Commands to carry out once the entries are durable.
    pub fn take_commands(&mut self) -> Vec<Command> {
        std::mem::take(&mut self.commands)
    }

    /// Time passes: voting closes on proposals that are due (and their decisions are
    /// acted on), silent workers are lost, overdue attempts are requeued and jobs past
    /// their expiry fail.
    pub fn tick(&mut self, now: Now) {
        self.clock = now;
        self.close_due_proposals();
        self.lose_silent_workers();
        for (task, attempt, worker) in self.jobs.overdue(now.mono_ms) {
            let reason = format!("worker {} missed the deadline", worker.short());
            self.requeue(task, attempt, reason, true);
        }
        for job in self.jobs.unsettled(Some(now.mono_ms)) {
            let cause = self.jobs.known(&job).last_seq;
            self.settle_cancel(job, cause);
        }
        self.expire();
        self.schedule();
    }

    /// When the core next has work that only time brings (see [`Wake`]): a silent
    /// worker to declare lost, an attempt past its deadline, a stopped replica overdue, a
    /// proposal whose window closes, a job past its expiry or deadline, a requeued replica
    /// whose backoff ends. `None`: nothing is due until an input arrives. The shell calls
    /// [`Core::tick`] then, instead of on a fixed interval.
    pub fn next_wake(&self) -> Wake {
        let silent = self.next_silence();
        let (mono_due, wall_due) = self.jobs.next_due(self.config.job_expiry_ms, self.clock.wall_ms);
        let closing = self.governance.open.values().map(|p| p.closes_ms);
        Wake { mono_ms: silent.into_iter().chain(mono_due).min(), wall_ms: closing.chain(wall_due).min() }
    }

    // ---- queries -----------------------------------------------------------------

    pub fn governance(&self) -> &Governance {
        &self.governance
    }

    pub fn ledger(&self) -> &Ledger {
        self.settlement.ledger()
    }

    /// Whether `key` may use the member API now: it holds standing in some scope. A
    /// member whose every standing was revoked keeps their name in the record, and
    /// nothing else: no reads, no uploads, no session.
    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.governance.in_standing(key)
    }

    /// Whether `key` may open a member session now: [`Core::is_member`], or the refusal
    /// that says why not.
    pub fn admit_member(&self, key: &PublicKey) -> Result<(), Refusal> {
        if self.is_member(key) {
            Ok(())
        } else {
            Err(Refusal::Governance(icn_governance::Refusal::NotAMember { key: *key }))
        }
    }

    /// Every key that [`Core::is_member`] admits now, for shells that check it at every
    /// request without a trip to the core's thread. It changes only with a decision.
    pub fn members_in_standing(&self) -> std::collections::BTreeSet<PublicKey> {
        self.governance.scopes.values().flat_map(|s| s.standing.keys().copied()).collect()
    }

    /// Decisions made so far (accepted or not): what [`Core::members_in_standing`]
    /// can change with.
    pub fn decisions_made(&self) -> usize {
        self.governance.decisions.len()
    }

    /// Whether `member` may read a payload these `readers` may read, and so name it as
    /// the input of a job: its uploader, or someone who sees what the job that made it
    /// made ([`Core::sees_job_data`]).
    pub fn may_read(&self, member: &PublicKey, readers: &[store::Reader]) -> bool {
        readers.iter().any(|reader| match reader {
            store::Reader::Uploader(key) => key == member,
            store::Reader::Job { scope, submitter } => self.sees_job_data(member, scope, submitter),
        })
    }

    /// Who may read what a job held in memory makes.
    pub fn output_reader(&self, job: &JobId) -> Option<store::Reader> {
        let job = self.jobs.get(job)?;
        Some(store::Reader::Job { scope: job.submission.scope.clone(), submitter: job.submitter })
    }

    /// Whether `member` may see what a job of `scope` made (its output and its stderr):
    /// its submitter, or a member with standing in `scope` itself. The rest of the
    /// commons, the scopes above included, sees that it ran, under which decision, what
    /// it cost and who ran it — the record — never what it made.
    pub fn sees_job_data(
        &self,
        member: &PublicKey,
        scope: &icn_protocol::governance::ScopeId,
        submitter: &PublicKey,
    ) -> bool {
        member == submitter
            || self
                .governance
                .scope(scope)
                .is_ok_and(|s| s.standing.get(member).is_some_and(|held| !held.is_empty()))
    }

    /// Whether `member` is shown the real output digests of the job `view` shows: it may
    /// read what the job made, or the job is in dispute and `member` is among those who
    /// judge disputes (vote standing in the commons). Others see them blinded.
    pub fn sees_job_results(&self, member: &PublicKey, view: &JobView) -> bool {
        self.sees_job_data(member, &view.scope, &view.submitter)
            || (view.state == icn_protocol::wire::JobState::Disputed
                && self.governance.scopes.iter().any(|(id, scope)| {
                    scope.kind == icn_protocol::governance::ScopeKind::Commons
                        && self.governance.holds(member, id, icn_protocol::governance::Standing::Vote)
                }))
    }

    pub fn journal_len(&self) -> u64 {
        self.chain.next_seq
    }

    /// What a member sees of a job held in memory, with why it waits when it does.
    pub fn job(&self, id: &JobId) -> Option<JobView> {
        let mut view = self.jobs.view(id)?;
        if view.state == icn_protocol::wire::JobState::Queued {
            view.waiting = Some(self.waiting(id));
        }
        Some(view)
    }

    /// What a replay of the journal must rebuild exactly, beside the governance and the
    /// ledger: the jobs held (open, and ended ones not yet forgotten), trust and
    /// quarantine. Compared by checks and tests; connections are not in it.
    pub fn state(&self) -> State<'_> {
        State {
            jobs: &self.jobs,
            trust: self.fleet.trust(),
            quarantined: self.fleet.quarantined(),
            shares: &self.shares,
        }
    }

    /// Jobs held in memory: open ones, and ended ones not yet forgotten.
    pub fn jobs_in_memory(&self) -> usize {
        self.jobs.len()
    }

    pub fn queue_len(&self) -> usize {
        self.jobs.queue_len()
    }

    // ---- the one way state changes ------------------------------------------------

    /// Makes an entry of `record` and applies it; returns its sequence number.
    fn record(&mut self, cause: Option<u64>, signer: PublicKey, record: Record) -> u64 {
        let seq = self.chain.next_seq;
        let now_ms = self.clock.wall_ms;
        let entry = Entry::new(seq, self.chain.last_hash, cause, now_ms, signer, &record);
        self.observe(now_ms, &record);
        self.apply(seq, now_ms, &record);
        self.chain = Chain { next_seq: seq + 1, last_hash: entry.hash };
        self.entries.push(entry);
        if let Some(job) = record.job() {
            if matches!(record, Record::JobSubmitted { .. }) {
                // After apply: the admitted job holds its decoded submission.
                self.observe_admitted(&job);
            }
            self.commands.push(Command::JobChanged(job));
        }
        seq
    }

    /// The one place state changes: live, right after a record is made, and at start,
    /// for every record in the journal. Each record goes to the concern it is about.
    fn apply(&mut self, seq: u64, time_ms: u64, record: &Record) {
        // By the entry's time, not the clock's, so a replay forgets exactly what was
        // forgotten live.
        self.jobs.forget_ended_before(time_ms.saturating_sub(self.config.ended_job_memory_ms));
        self.file(seq, record);
        match record {
            Record::JobSubmitted { submission, authorization } => {
                self.apply_submitted(seq, time_ms, submission, authorization)
            }
            Record::TaskPlaced { task, attempt, worker, owner, quorum, .. } => {
                self.apply_placed(seq, time_ms, *task, *attempt, *worker, owner, *quorum)
            }
            Record::TaskRequeued { task, fault, .. } => self.apply_requeued(seq, time_ms, *task, *fault),
            Record::ReportReceived { report } => self.apply_report(seq, time_ms, report),
            Record::Verified { job, agreeing, dissenting, by_decision } => {
                self.apply_verified(seq, *job, agreeing, dissenting, by_decision.is_some())
            }
            Record::ReplicasWanted { job, count, .. } => self.jobs.want_replicas(seq, time_ms, job, *count),
            Record::DisputeOpened { job, .. } => self.jobs.dispute(seq, job),
            Record::JobCompleted { job, fuel, worker, payees, .. } => {
                self.apply_paid(seq, *job, *fuel, *worker, payees, None)
            }
            Record::JobFailedPaid { job, reason, fuel, worker, payees } => {
                self.apply_paid(seq, *job, *fuel, *worker, payees, Some(reason))
            }
            Record::JobFailed { job, reason } => self.apply_failed(seq, *job, reason),
            Record::JobCancelled { request } => self.apply_cancelled(seq, time_ms, request),
            Record::CancelSettled { job, fuel, payees } => {
                self.apply_cancel_settled(seq, time_ms, *job, *fuel, payees)
            }
            Record::Governance(event) => self.apply_governance(seq, time_ms, event),
            Record::Cleared { request, clearing } => {
                let members = |federation: &_| self.governance.descendants(federation);
                self.settlement.apply_cleared(seq, time_ms, request, clearing, members)
            }
        }
    }
}
