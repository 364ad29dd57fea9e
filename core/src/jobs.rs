//! Jobs: the table of jobs and their lifecycle — admitted, placed as replicas, requeued,
//! reported, in dispute, ended once — and the queue of jobs waiting for a worker.

use std::collections::{BTreeMap, BTreeSet};

use icn_governance::Authorization;
use icn_protocol::governance::{ScopeId, Standing};
use icn_protocol::wire::{Cancel, ExecutionReport, ExecutorKind, JobState, JobView, Outcome, Submission};
use icn_protocol::{Envelope, JobId, PublicKey, TaskId};

use crate::{Command, Core, Refusal};

#[derive(Clone, Debug)]
pub(crate) struct Placement {
    pub worker: PublicKey,
    pub owner: ScopeId,
    pub attempt: u32,
    pub placed_seq: u64,
    /// On the wall clock, from the placement's entry: what fair share charges from.
    pub placed_ms: u64,
    /// On the monotonic clock.
    pub deadline_mono_ms: u64,
}

/// Placements are equal when the journal says the same of them: the deadline is on
/// this process's monotonic clock, which a replay cannot know (and a replayed placement
/// is requeued when the coordinator resumes).
impl PartialEq for Placement {
    fn eq(&self, other: &Self) -> bool {
        (&self.worker, &self.owner, self.attempt, self.placed_seq, self.placed_ms)
            == (&other.worker, &other.owner, other.attempt, other.placed_seq, other.placed_ms)
    }
}

/// A replica's final result, kept for verification.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Received {
    pub worker: PublicKey,
    pub owner: ScopeId,
    pub report: ExecutionReport,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Job {
    pub authorization: Authorization,
    /// Who signed the submission.
    pub submitter: PublicKey,
    pub submission: Submission,
    pub submitted_seq: u64,
    pub submitted_ms: u64,
    /// Replicas placed, replacements included; each placement's attempt number.
    pub attempts: u32,
    /// Replicas lost, late or failed for their own reasons, which were placed again.
    pub requeues: u32,
    /// Replicas in flight, by replica index.
    pub placements: BTreeMap<u32, Placement>,
    /// Replica indexes used so far; the next new replica gets this one.
    pub replicas_placed: u32,
    /// Replica indexes whose attempt was requeued and wait for a worker.
    pub vacant: BTreeSet<u32>,
    /// New replicas wanted to settle a disagreement.
    pub extra: u32,
    /// Results that must agree.
    pub quorum: u32,
    pub reports: Vec<Received>,
    pub disputed: bool,
    /// The accepted result, and the worker whose report it is.
    pub result: Option<(PublicKey, ExecutionReport)>,
    pub failure: Option<String>,
    pub ended: bool,
    /// Ended by a member's cancel.
    pub cancelled: bool,
    /// Workers whose attempt of this job was requeued: its replicas go elsewhere when
    /// another worker can take them (at most `attempts_max` of them).
    pub avoid: BTreeSet<PublicKey>,
    /// Replicas that ran when the job was cancelled, told to stop: the hold stays until
    /// each reports what it used (or its deadline passes), then what ran is paid.
    pub stopping: BTreeMap<u32, Placement>,
    /// What the stopped replicas that reported used, by their owner, with when each was
    /// placed (wall ms of its entry).
    pub stopped: Vec<(ScopeId, crate::settlement::Used, u64)>,
    /// When a member's cancel ended it (wall ms of its entry).
    pub cancelled_ms: Option<u64>,
    /// For a container job, the container terms in force for its scope when it was
    /// admitted: its usage is priced and compared by them.
    pub terms: Option<icn_protocol::governance::ContainerTerms>,
    /// A requeued replica is not placed again before this time (wall ms, from the
    /// requeue's entry): the retry backoff.
    pub not_before_ms: u64,
    /// The latest journal entry about this job: the cause of what follows from it.
    pub last_seq: u64,
    /// When a replica of it last became wanted (admitted, requeued, more replicas
    /// asked for): what placement latency is measured from.
    pub wanted_ms: u64,
}

impl Job {
    /// What the stopped replicas of a cancelled job ran, as paid: the least that any of
    /// them reported (by fuel for wasm, by cost for containers), nothing when none did.
    pub fn least_stopped(&self) -> crate::settlement::Used {
        self.least(self.stopped.iter().map(|(_, used, _)| *used))
    }

    /// What the stopped replica charged least is charged, each counted from when it was
    /// placed until the job was cancelled ([`crate::settlement::charged_cancelled`]).
    pub fn least_charged(&self) -> crate::settlement::Used {
        let cancelled_ms = self.cancelled_ms.unwrap_or_default();
        self.least(self.stopped.iter().map(|(_, used, placed_ms)| {
            crate::settlement::charged_cancelled(self, *used, *placed_ms, cancelled_ms)
        }))
    }

    fn least(&self, used: impl Iterator<Item = crate::settlement::Used>) -> crate::settlement::Used {
        let cost = |used: &crate::settlement::Used| crate::settlement::cost(self, *used);
        used.min_by_key(|used| (cost(used), used.fuel, used.usage)).unwrap_or_default()
    }

    /// Whether nothing of the job was placed yet: it waits for its first replicas.
    pub fn is_fresh(&self) -> bool {
        self.replicas_placed == 0 && self.placed_all()
    }

    /// Whether the job waits for nothing to be placed.
    fn placed_all(&self) -> bool {
        self.vacant.is_empty() && self.extra == 0
    }

    /// The priority class it waits in inside its scope.
    pub fn class(&self) -> &str {
        self.submission.options.priority.as_deref().unwrap_or(icn_protocol::governance::DEFAULT_CLASS)
    }

    /// The replica to report on `task`, if it is in flight as `attempt`.
    pub fn current(&self, task: &TaskId, attempt: u32) -> Option<&Placement> {
        Some(self).filter(|job| !job.ended)?.placements.get(&task.index).filter(|p| p.attempt == attempt)
    }
}

#[derive(Debug, Default, PartialEq)]
pub(crate) struct Jobs {
    map: BTreeMap<JobId, Job>,
    /// Jobs waiting for a worker, by scope and priority class, in submission order (keyed
    /// by their submission entry). A queue that empties leaves the map.
    queues: BTreeMap<ScopeId, BTreeMap<String, BTreeMap<u64, JobId>>>,
    /// Jobs in all the queues.
    queued: usize,
    /// Every job held, by its submission entry: for listing newest first.
    by_seq: BTreeMap<u64, JobId>,
    open: usize,
    /// Open jobs by submitter and by scope (entries at zero leave).
    open_by_submitter: BTreeMap<PublicKey, usize>,
    open_by_scope: BTreeMap<ScopeId, usize>,
    /// Ended jobs still in memory, in the order they ended, with when (wall ms). A
    /// cancelled job whose stopped replicas have not all reported joins when they have.
    ended: std::collections::VecDeque<(JobId, u64)>,
    /// Cancelled jobs whose hold waits for their stopped replicas' usage.
    unsettled: BTreeSet<JobId>,
}

impl Jobs {
    pub fn get(&self, id: &JobId) -> Option<&Job> {
        self.map.get(id)
    }

    /// A job a journaled record is about: it exists, or the journal is not this core's.
    pub fn known(&self, id: &JobId) -> &Job {
        self.map.get(id).expect("a journaled record names a known job")
    }

    fn known_mut(&mut self, id: &JobId) -> &mut Job {
        self.map.get_mut(id).expect("a journaled record names a known job")
    }

    pub fn open(&self) -> usize {
        self.open
    }

    /// Open jobs `submitter` submitted, and open jobs of `scope`.
    pub fn open_of(&self, submitter: &PublicKey, scope: &ScopeId) -> (usize, usize) {
        let of = |count: Option<&usize>| count.copied().unwrap_or(0);
        (of(self.open_by_submitter.get(submitter)), of(self.open_by_scope.get(scope)))
    }

    fn count_open(&mut self, submitter: PublicKey, scope: &ScopeId, opened: bool) {
        fn step<K: Ord>(counts: &mut BTreeMap<K, usize>, key: K, opened: bool) {
            use std::collections::btree_map::Entry;
            match counts.entry(key) {
                Entry::Vacant(vacant) => {
                    assert!(opened, "a job ends only after it was open");
                    vacant.insert(1);
                }
                Entry::Occupied(mut count) if opened => *count.get_mut() += 1,
                Entry::Occupied(count) if *count.get() == 1 => {
                    count.remove();
                }
                Entry::Occupied(mut count) => *count.get_mut() -= 1,
            }
        }
        step(&mut self.open_by_submitter, submitter, opened);
        step(&mut self.open_by_scope, scope.clone(), opened);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Ids of the jobs held between `lo` and `hi`, in order, at most `limit`.
    pub fn ids_between(&self, lo: JobId, hi: JobId, limit: usize) -> Vec<[u8; 32]> {
        self.map.range(lo..=hi).take(limit).map(|(id, _)| id.0.0).collect()
    }

    /// Jobs held, newest first, with their submission entry.
    pub fn newest_first(&self) -> impl Iterator<Item = (u64, &JobId)> {
        self.by_seq.iter().rev().map(|(seq, id)| (*seq, id))
    }

    /// An ended job was ended by a cancel.
    pub fn mark_cancelled(&mut self, id: &JobId, time_ms: u64) {
        if let Some(job) = self.map.get_mut(id) {
            job.cancelled = true;
            job.cancelled_ms = Some(time_ms);
        }
    }

    /// Forgets the oldest ended jobs beyond `kept`.
    pub fn forget_ended_beyond(&mut self, kept: usize) {
        while self.ended.len() > kept {
            let (id, _) = self.ended.pop_front().expect("longer than kept");
            self.forget(&id);
        }
    }

    /// Forgets the jobs that ended before `before_ms`.
    pub fn forget_ended_before(&mut self, before_ms: u64) {
        while self.ended.front().is_some_and(|(_, ended_ms)| *ended_ms < before_ms) {
            let (id, _) = self.ended.pop_front().expect("checked");
            self.forget(&id);
        }
    }

    fn forget(&mut self, id: &JobId) {
        let job = self.map.remove(id).expect("a remembered ended job is in the table");
        self.by_seq.remove(&job.submitted_seq);
        assert!(
            job.ended && job.placements.is_empty() && job.stopping.is_empty(),
            "only an ended job with nothing in flight is forgotten"
        );
    }

    pub fn queue_len(&self) -> usize {
        self.queued
    }

    /// Queues with jobs waiting, by scope and class, and how many each.
    pub fn queues(&self) -> impl Iterator<Item = (&ScopeId, &str, usize)> {
        self.queues.iter().flat_map(|(scope, classes)| {
            classes.iter().map(move |(class, q)| (scope, class.as_str(), q.len()))
        })
    }

    /// The first job in the queue of `scope`'s class `class` after the one keyed `after`
    /// (from the start without it): its key and id.
    pub fn queued_after(&self, scope: &ScopeId, class: &str, after: Option<u64>) -> Option<(u64, JobId)> {
        let queue = self.queues.get(scope)?.get(class)?;
        let range = match after {
            Some(key) => queue.range(key + 1..),
            None => queue.range(..),
        };
        range.map(|(key, id)| (*key, *id)).next()
    }

    /// Jobs of the same scope and class that wait before `id` in the queue.
    /// Jobs waiting in `scope`'s queue of `class` now: those a new one of that class would
    /// wait behind.
    pub fn waiting_in(&self, scope: &ScopeId, class: &str) -> u32 {
        self.queues.get(scope).and_then(|classes| classes.get(class)).map_or(0, |q| q.len() as u32)
    }

    pub fn ahead_in_scope(&self, id: &JobId) -> u32 {
        let job = self.known(id);
        let queue = self.queues.get(&job.submission.scope).and_then(|classes| classes.get(job.class()));
        queue.map_or(0, |q| q.range(..job.submitted_seq).count() as u32)
    }

    /// `id` waits in its scope's and class's queue (again, or still).
    fn enqueue(&mut self, id: &JobId) {
        let job = self.map.get(id).expect("a queued job is held");
        let scope = &job.submission.scope;
        if !self.queues.contains_key(scope) {
            self.queues.insert(scope.clone(), BTreeMap::new());
        }
        let classes = self.queues.get_mut(scope).expect("inserted");
        if !classes.contains_key(job.class()) {
            classes.insert(job.class().to_string(), BTreeMap::new());
        }
        let queue = classes.get_mut(job.class()).expect("inserted");
        if queue.insert(job.submitted_seq, *id).is_none() {
            self.queued += 1;
        }
    }

    /// `id` leaves its queue, if it was in it.
    fn dequeue(&mut self, id: &JobId) {
        let job = self.map.get(id).expect("a queued job is held");
        let scope = &job.submission.scope;
        let Some(classes) = self.queues.get_mut(scope) else { return };
        let Some(queue) = classes.get_mut(job.class()) else { return };
        if queue.remove(&job.submitted_seq).is_some() {
            self.queued -= 1;
        }
        if queue.is_empty() {
            classes.remove(job.class());
            if classes.is_empty() {
                self.queues.remove(scope);
            }
        }
    }

    pub fn admit(
        &mut self,
        seq: u64,
        time_ms: u64,
        envelope: &Envelope,
        submission: Submission,
        authorization: &Authorization,
        terms: Option<icn_protocol::governance::ContainerTerms>,
    ) {
        let id = JobId(envelope.id());
        let job = Job {
            authorization: *authorization,
            submitter: envelope.signer,
            submission,
            submitted_seq: seq,
            submitted_ms: time_ms,
            attempts: 0,
            requeues: 0,
            placements: BTreeMap::new(),
            replicas_placed: 0,
            vacant: BTreeSet::new(),
            extra: 0,
            quorum: 1,
            reports: vec![],
            disputed: false,
            result: None,
            failure: None,
            ended: false,
            cancelled: false,
            cancelled_ms: None,
            avoid: BTreeSet::new(),
            stopping: BTreeMap::new(),
            stopped: Vec::new(),
            terms,
            not_before_ms: 0,
            last_seq: seq,
            wanted_ms: time_ms,
        };
        assert!(self.map.insert(id, job).is_none(), "entry {seq}: job {id} is admitted once");
        self.enqueue(&id);
        self.by_seq.insert(seq, id);
        self.open += 1;
        let job = &self.map[&id];
        let (submitter, scope) = (job.submitter, job.submission.scope.clone());
        self.count_open(submitter, &scope, true);
    }

    pub fn placed(&mut self, seq: u64, task: TaskId, placement: Placement, quorum: u32) {
        let job = self.known_mut(&task.job);
        job.last_seq = seq;
        if !job.vacant.remove(&task.index) {
            assert_eq!(task.index, job.replicas_placed, "entry {seq}: a new replica takes the next index");
            job.replicas_placed += 1;
            job.extra = job.extra.saturating_sub(1);
        }
        job.quorum = quorum;
        job.attempts = placement.attempt;
        job.placements.insert(task.index, placement);
        if job.placed_all() {
            self.dequeue(&task.job);
        }
    }

    /// The replica's attempt is over and it waits for a worker again, other than the one
    /// it was on where it can, and not before `backoff_ms` have passed since `time_ms`.
    pub fn requeued(
        &mut self,
        seq: u64,
        time_ms: u64,
        task: TaskId,
        backoff: impl Fn(u32) -> u64,
    ) -> Option<Placement> {
        let job = self.known_mut(&task.job);
        job.last_seq = seq;
        assert!(!job.ended, "entry {seq}: task {task} of an ended job is requeued");
        let placement = job.placements.remove(&task.index);
        if let Some(p) = &placement {
            job.avoid.insert(p.worker);
        }
        job.vacant.insert(task.index);
        job.requeues += 1;
        job.not_before_ms = time_ms.saturating_add(backoff(job.requeues));
        job.wanted_ms = job.not_before_ms;
        self.enqueue(&task.job);
        placement
    }

    /// A replica's report: its attempt is over; a final result is kept for judging.
    pub fn reported(&mut self, seq: u64, worker: PublicKey, report: ExecutionReport) -> Placement {
        let job = self.known_mut(&report.task.job);
        let placement =
            job.placements.remove(&report.task.index).expect("a journaled report answers a placement");
        job.last_seq = seq;
        let retry = matches!(&report.outcome, Outcome::Failed { kind, .. } if !kind.is_final());
        if retry {
            // It failed there for a reason of the worker's own: elsewhere next time.
            job.avoid.insert(worker);
        } else {
            job.reports.push(Received { worker, owner: placement.owner.clone(), report });
        }
        placement
    }

    pub fn want_replicas(&mut self, seq: u64, time_ms: u64, id: &JobId, count: u32) {
        let job = self.known_mut(id);
        job.last_seq = seq;
        job.wanted_ms = time_ms;
        job.extra += count;
        self.enqueue(id);
    }

    /// An entry about the job that changes nothing else in it.
    pub fn touch(&mut self, seq: u64, id: &JobId) {
        self.known_mut(id).last_seq = seq;
    }

    pub fn dispute(&mut self, seq: u64, id: &JobId) {
        let job = self.known_mut(id);
        job.last_seq = seq;
        job.disputed = true;
        self.dequeue(id);
    }

    /// The job ends: its replicas in flight are released (returned, for the fleet to
    /// free their slots) and it leaves the queue. Ending twice would release the hold
    /// twice, so it is an assertion, not a check.
    pub fn end(
        &mut self,
        seq: u64,
        time_ms: u64,
        id: &JobId,
        result: Option<(PublicKey, ExecutionReport)>,
        failure: Option<String>,
        stopping: bool,
    ) -> Vec<(TaskId, Placement)> {
        let job = self.known_mut(id);
        assert!(!job.ended, "entry {seq}: job {id} ends once");
        if stopping {
            job.stopping = job.placements.clone();
        }
        let unsettled = !job.stopping.is_empty();
        let released: Vec<(TaskId, Placement)> = std::mem::take(&mut job.placements)
            .into_iter()
            .map(|(index, placement)| (TaskId { job: *id, index }, placement))
            .collect();
        job.ended = true;
        job.failure = failure;
        job.result = result.or_else(|| job.reports.last().map(|r| (r.worker, r.report.clone())));
        // What judging needed is done with; an ended job keeps only what its view shows.
        job.reports = Vec::new();
        job.vacant = BTreeSet::new();
        job.last_seq = seq;
        let (submitter, scope) = (job.submitter, job.submission.scope.clone());
        self.dequeue(id);
        self.open -= 1;
        self.count_open(submitter, &scope, false);
        if unsettled {
            self.unsettled.insert(*id);
        } else {
            self.ended.push_back((*id, time_ms));
        }
        released
    }

    /// A stopped replica of a cancelled job reported what it used.
    pub fn stop_reported(&mut self, seq: u64, worker: PublicKey, report: &ExecutionReport) {
        let job = self.known_mut(&report.task.job);
        let placement = job
            .stopping
            .remove(&report.task.index)
            .expect("a journaled stop report answers a stopped replica");
        assert_eq!(placement.worker, worker, "entry {seq}: a stopped replica reports from its worker");
        job.stopped.push((placement.owner, crate::settlement::Used::of(report), placement.placed_ms));
        job.last_seq = seq;
    }

    /// A cancelled job's stopped replicas are settled: it may now leave memory.
    pub fn settled(&mut self, seq: u64, time_ms: u64, id: &JobId) {
        let job = self.known_mut(id);
        job.stopping.clear();
        job.stopped.clear();
        job.last_seq = seq;
        assert!(self.unsettled.remove(id), "entry {seq}: job {id} is settled once");
        self.ended.push_back((*id, time_ms));
    }

    /// Cancelled jobs waiting for their stopped replicas: all of them, or those with a
    /// stopped replica past its deadline.
    pub fn unsettled(&self, overdue_at_mono_ms: Option<u64>) -> Vec<JobId> {
        self.unsettled
            .iter()
            .filter(|id| match overdue_at_mono_ms {
                None => true,
                Some(now) => self.known(id).stopping.values().any(|p| p.deadline_mono_ms < now),
            })
            .copied()
            .collect()
    }

    /// The earliest instants at which `Core::tick` has work with these jobs: on the
    /// monotonic clock, an attempt or a stopped replica past its deadline (one
    /// millisecond after it, as `overdue` counts); on the wall clock, a job's expiry or
    /// deadline, or a requeued replica's backoff ending after `now_wall_ms`.
    pub fn next_due(&self, expiry_ms: u64, now_wall_ms: u64) -> (Option<u64>, Option<u64>) {
        let (mut mono, mut wall) = (None::<u64>, None::<u64>);
        let at =
            |slot: &mut Option<u64>, instant: u64| *slot = Some(slot.map_or(instant, |s| s.min(instant)));
        for job in self.map.values() {
            if job.ended && job.stopping.is_empty() {
                continue;
            }
            for p in job.placements.values().chain(job.stopping.values()) {
                at(&mut mono, p.deadline_mono_ms.saturating_add(1));
            }
            if job.ended {
                continue;
            }
            let expiry = job.submitted_ms.saturating_add(expiry_ms);
            at(&mut wall, job.submission.options.deadline_ms.map_or(expiry, |d| d.min(expiry)));
            if job.not_before_ms > now_wall_ms && !job.placed_all() {
                at(&mut wall, job.not_before_ms);
            }
        }
        (mono, wall)
    }

    /// Every replica in flight and its attempt, in job order.
    pub fn in_flight(&self) -> Vec<(TaskId, u32)> {
        self.map
            .iter()
            .flat_map(|(id, job)| {
                job.placements.iter().map(|(index, p)| (TaskId { job: *id, index: *index }, p.attempt))
            })
            .collect()
    }

    /// Replicas in flight past their deadline, with their attempt and worker.
    pub fn overdue(&self, now_mono_ms: u64) -> Vec<(TaskId, u32, PublicKey)> {
        self.map
            .iter()
            .flat_map(|(id, job)| {
                job.placements
                    .iter()
                    .filter(|(_, p)| p.deadline_mono_ms < now_mono_ms)
                    .map(|(index, p)| (TaskId { job: *id, index: *index }, p.attempt, p.worker))
            })
            .collect()
    }

    /// Jobs that have not ended `expiry_ms` after submission or by their own deadline, in
    /// submission order, with the deadline that passed when it was theirs.
    pub fn expired(&self, now_ms: u64, expiry_ms: u64) -> Vec<(u64, JobId, Option<u64>)> {
        let mut expired: Vec<(u64, JobId, Option<u64>)> = self
            .map
            .iter()
            .filter(|(_, job)| !job.ended)
            .filter_map(|(id, job)| {
                let expiry = job.submitted_ms.saturating_add(expiry_ms);
                let deadline = job.submission.options.deadline_ms.filter(|d| *d < expiry);
                (deadline.unwrap_or(expiry) <= now_ms).then_some((job.submitted_seq, *id, deadline))
            })
            .collect();
        expired.sort_unstable();
        expired
    }

    pub fn view(&self, id: &JobId) -> Option<JobView> {
        let job = self.map.get(id)?;
        let state = match (job.placements.values().next(), job.ended, &job.failure) {
            _ if job.cancelled => JobState::Cancelled,
            (_, true, None) => JobState::Completed,
            (_, true, Some(_)) => JobState::Failed,
            _ if job.disputed => JobState::Disputed,
            (Some(p), false, _) => JobState::Running { worker: p.worker, attempt: p.attempt },
            (None, false, _) => JobState::Queued,
        };
        Some(JobView {
            job: *id,
            scope: job.submission.scope.clone(),
            submitter: job.submitter,
            state,
            attempts: job.attempts,
            result: job.result.clone(),
            failure: job.failure.clone(),
            waiting: None,
        })
    }
}

impl Core {
    /// A member's submission, already verified as signed by `envelope.signer`.
    pub fn submit(
        &mut self,
        now: crate::Now,
        envelope: Envelope,
        submission: Submission,
    ) -> Result<JobId, Refusal> {
        self.clock = now;
        let job = JobId(envelope.id());
        if self.jobs.get(&job).is_some() {
            return Ok(job);
        }
        let authorization = self.admit(now.wall_ms, &envelope.signer, &submission)?;
        let record = crate::Record::JobSubmitted { submission: envelope.clone(), authorization };
        self.record(Some(authorization.decision), envelope.signer, record);
        self.schedule();
        Ok(job)
    }

    /// Every check a new submission of `signer` passes before it is journaled, changing
    /// nothing: valid, before its deadline, authorized by a mandate in force with credit
    /// for its hold, and within the open jobs' caps. What authorizes it. `submit` and
    /// `plan` (a dry run) both ask here, so a dry run is refused as the submission would be.
    pub(crate) fn admit(
        &self,
        now_ms: u64,
        signer: &PublicKey,
        submission: &Submission,
    ) -> Result<Authorization, Refusal> {
        submission.validate()?;
        if let Some(deadline_ms) = submission.options.deadline_ms.filter(|d| *d <= now_ms) {
            return Err(Refusal::DeadlinePassed { deadline_ms, now_ms });
        }
        let authorization = self.governance.authorize(now_ms, signer, submission)?;
        self.settlement.check_fits(&submission.scope, authorization.hold)?;
        if self.jobs.open() >= self.config.jobs_open_max {
            return Err(Refusal::TooManyJobs { open: self.jobs.open() });
        }
        let (mine, scope) = self.jobs.open_of(signer, &submission.scope);
        if mine >= self.config.jobs_open_per_submitter_max {
            return Err(Refusal::TooManyJobsOfSubmitter { submitter: *signer, open: mine });
        }
        if scope >= self.config.jobs_open_per_scope_max {
            return Err(Refusal::TooManyJobsOfScope { scope: submission.scope.clone(), open: scope });
        }
        Ok(authorization)
    }

    /// A member's request to cancel a job, already verified as signed by its signer:
    /// the submitter may, and so may a member with vote or operate standing in the job's
    /// scope. Replicas in flight are told to stop; the hold is voided.
    pub fn cancel(
        &mut self,
        now: crate::Now,
        envelope: Envelope,
        request: Cancel,
    ) -> Result<JobView, Refusal> {
        self.clock = now;
        let id = request.job;
        let job = self.jobs.get(&id).ok_or(Refusal::UnknownJob { job: id })?;
        if job.ended {
            let state = self.job(&id).map_or("ended", |v| v.state.name()).to_string();
            return Err(Refusal::JobEnded { job: id, state });
        }
        let signer = envelope.signer;
        let scope = job.submission.scope.clone();
        let submitter = job.submitter;
        let may = signer == submitter
            || [Standing::Vote, Standing::Operate].iter().any(|s| self.governance.holds(&signer, &scope, *s));
        if !may {
            let member =
                self.governance.member_name(&signer).map_or_else(|| signer.to_string(), str::to_string);
            return Err(Refusal::NoCancelStanding { member, job: id, scope });
        }
        let cause = job.last_seq;
        self.stop_in_flight(&id);
        self.record(Some(cause), signer, crate::Record::JobCancelled { request: envelope });
        self.schedule();
        Ok(self.job(&id).expect("a job just cancelled is held"))
    }

    /// The workers connected now that run a replica of `id` are told to stop it (the
    /// job is about to end); each such slot stays taken until a heartbeat no longer names it.
    fn stop_in_flight(&mut self, id: &JobId) {
        let job = self.jobs.known(id);
        let in_flight: Vec<(TaskId, PublicKey, u32)> = job
            .placements
            .iter()
            .map(|(index, p)| (TaskId { job: *id, index: *index }, p.worker, p.attempt))
            .collect();
        for (task, worker, attempt) in in_flight {
            let Some(session) = self.fleet.worker(&worker).map(|w| w.session) else { continue };
            self.fleet.still_running(&worker);
            self.commands.push(Command::Stop { worker, session, task, attempt });
        }
    }

    pub(crate) fn apply_submitted(
        &mut self,
        seq: u64,
        time_ms: u64,
        envelope: &Envelope,
        authorization: &Authorization,
    ) {
        let submission = envelope.open_trusted::<Submission>().expect("journaled submissions decode");
        let scope = &submission.scope;
        self.governance.hold(authorization.decision, authorization.hold);
        self.settlement.reserve(JobId(envelope.id()), scope, authorization.hold);
        // The terms in force now, as when the job was authorized just before this record
        // (live) or at this point of the journal (replay).
        let terms = match submission.executor {
            ExecutorKind::Container => self.governance.container_terms(scope),
            ExecutorKind::Wasm => None,
        };
        self.jobs.admit(seq, time_ms, envelope, submission, authorization, terms);
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_placed(
        &mut self,
        seq: u64,
        time_ms: u64,
        task: TaskId,
        attempt: u32,
        worker: PublicKey,
        owner: &ScopeId,
        quorum: u32,
    ) {
        let timeout_ms = self.jobs.known(&task.job).submission.limits.timeout_ms;
        let deadline_mono_ms =
            self.clock.mono_ms.saturating_add(timeout_ms).saturating_add(self.config.deadline_grace_ms);
        let placement = Placement {
            worker,
            owner: owner.clone(),
            attempt,
            placed_seq: seq,
            placed_ms: time_ms,
            deadline_mono_ms,
        };
        self.jobs.placed(seq, task, placement, quorum);
        self.fleet.occupy(&worker, task);
        let job = self.jobs.known(&task.job);
        self.shares.started(&job.submission.scope, job.class(), time_ms);
    }

    /// A replica's attempt is over: its worker's slot is free and its scope is charged
    /// the slot time it held, unless it ended by the worker's fault.
    fn vacate(&mut self, time_ms: u64, task: &TaskId, placement: &Placement, fault: bool) {
        self.fleet.vacate(&placement.worker, task);
        let job = self.jobs.known(&task.job);
        self.shares.stopped(&job.submission.scope, job.class(), placement.placed_ms, time_ms, !fault);
    }

    pub(crate) fn apply_requeued(&mut self, seq: u64, time_ms: u64, task: TaskId, fault: bool) {
        let backoff = |requeues| self.config.backoff_ms(requeues);
        if let Some(placement) = self.jobs.requeued(seq, time_ms, task, backoff) {
            self.vacate(time_ms, &task, &placement, fault);
            if fault {
                self.fleet.lose_trust(&placement.worker, seq, |trust| trust.missed += 1);
            }
        }
    }

    pub(crate) fn apply_report(&mut self, seq: u64, time_ms: u64, envelope: &Envelope) {
        let report = envelope.open_trusted::<ExecutionReport>().expect("journaled reports decode");
        let task = report.task;
        if self.jobs.known(&task.job).ended {
            // Its slot was freed when the cancel ended the job.
            return self.jobs.stop_reported(seq, envelope.signer, &report);
        }
        let placement = self.jobs.reported(seq, envelope.signer, report);
        self.vacate(time_ms, &task, &placement, false);
    }

    /// Ends job `id` at entry `seq`, freeing the slots of its replicas still in flight.
    pub(crate) fn end(
        &mut self,
        seq: u64,
        id: &JobId,
        result: Option<(PublicKey, ExecutionReport)>,
        failure: Option<String>,
    ) {
        self.end_stopping(seq, id, result, failure, false);
    }

    /// Ends job `id`; with `stopping`, its replicas in flight were told to stop and the
    /// hold waits for what they used.
    pub(crate) fn end_stopping(
        &mut self,
        seq: u64,
        id: &JobId,
        result: Option<(PublicKey, ExecutionReport)>,
        failure: Option<String>,
        stopping: bool,
    ) {
        let time_ms = self.clock.wall_ms;
        for (task, placement) in self.jobs.end(seq, time_ms, id, result, failure, stopping) {
            self.vacate(time_ms, &task, &placement, false);
        }
        self.jobs.forget_ended_beyond(self.config.ended_jobs_max);
    }

    /// Puts a replica back in the queue, if `attempt` is still the one in flight: an
    /// earlier requeue in the same pass may have failed the job and released it.
    /// A job whose replicas were requeued `attempts_max` times fails.
    pub(crate) fn requeue(&mut self, task: TaskId, attempt: u32, reason: String, fault: bool) {
        let Some(placed_seq) =
            self.jobs.get(&task.job).and_then(|j| j.current(&task, attempt)).map(|p| p.placed_seq)
        else {
            return;
        };
        self.record_requeue(task, attempt, placed_seq, reason, fault);
    }

    /// Journals that `task`'s `attempt` goes back to the queue (caused by entry `cause`),
    /// and fails the job once its replicas were requeued `attempts_max` times.
    pub(crate) fn record_requeue(
        &mut self,
        task: TaskId,
        attempt: u32,
        cause: u64,
        reason: String,
        fault: bool,
    ) {
        let signer = self.key.public();
        let record = crate::Record::TaskRequeued { task, attempt, reason, fault };
        let requeued = self.record(Some(cause), signer, record);
        if self.jobs.known(&task.job).requeues >= self.config.attempts_max {
            let reason = format!("replicas were lost {} times, the limit", self.config.attempts_max);
            self.record(Some(requeued), signer, crate::Record::JobFailed { job: task.job, reason });
        }
    }

    /// Jobs without a final result `job_expiry_ms` after submission fail, voiding their hold.
    pub(crate) fn expire(&mut self) {
        let expiry_ms = self.config.job_expiry_ms;
        for (submitted_seq, job, deadline) in self.jobs.expired(self.clock.wall_ms, expiry_ms) {
            let reason = match deadline {
                Some(deadline_ms) => format!(
                    "its deadline ({}) passed without an accepted result; its reservation is voided",
                    icn_protocol::views::when(deadline_ms)
                ),
                None => format!(
                    "expired: no accepted result within {expiry_ms} ms of submission; its reservation is voided"
                ),
            };
            // Replicas still running are told to stop: nothing they report counts now.
            self.stop_in_flight(&job);
            let signer = self.key.public();
            self.record(Some(submitted_seq), signer, crate::Record::JobFailed { job, reason });
        }
    }
}
