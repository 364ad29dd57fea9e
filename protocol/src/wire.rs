//! Wire messages between workers, members' clients and the coordinator, with the
//! limits every receiver checks before it uses one.
//!
//! A connection is authenticated once: the first frame is a signed [`Hello`] whose
//! `channel_binding` is the TLS exporter value of that very QUIC connection, answered by
//! a [`Welcome`] the coordinator signs over the same value. After that, TLS gives the
//! frames integrity, and only what becomes evidence (submissions, execution reports)
//! carries a signature of its own.

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::envelope::{Envelope, Kind, Signed};
use crate::governance::ScopeId;
use crate::identity::PublicKey;
use crate::ids::{ContentId, Fuel, JobId, TaskId};
use crate::seal::Seal;
use crate::views::{
    ClearingView, DecisionView, MemberView, Page, Paged, PositionsView, ProposalView, ScopeSummary,
    ScopeView, Statement, Trace, WorkerView,
};

/// Hard ceiling on one frame of any kind, checked before the frame's bytes are read.
pub const MESSAGE_SIZE_BYTES_MAX: usize = 8 * 1024 * 1024;
pub const MODULE_SIZE_BYTES_MAX: usize = 4 * 1024 * 1024;
pub const INPUT_SIZE_BYTES_MAX: usize = 1024 * 1024;
pub const OUTPUT_SIZE_BYTES_MAX: u64 = 1024 * 1024;
pub const STDERR_SIZE_BYTES_MAX: usize = 4 * 1024;
/// What one [`WorkerMessage::Progress`] carries at most: the stderr a running task wrote
/// since the last one. A worker sends one at most every [`PROGRESS_INTERVAL_MS`].
pub const PROGRESS_STDERR_BYTES_MAX: usize = 16 * 1024;
pub const PROGRESS_INTERVAL_MS: u64 = 200;
/// The longest a member's request for a running job's stderr waits for new bytes.
pub const LIVE_STDERR_WAIT_MS_MAX: u64 = 10_000;
pub const ARGS_COUNT_MAX: usize = 64;
pub const ARG_SIZE_BYTES_MAX: usize = 1024;
pub const TEXT_SIZE_BYTES_MAX: usize = 1024;
pub const FUEL_MAX: u64 = 100_000_000_000;
pub const MEMORY_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;
pub const TIMEOUT_MS_MAX: u64 = 15 * 60 * 1000;
pub const SLOTS_MAX: u32 = 1024;
pub const HEARTBEAT_TASKS_MAX: usize = SLOTS_MAX as usize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Worker,
    Member,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    Wasm,
    /// Docker containers.
    Container,
}

impl std::fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExecutorKind::Wasm => "wasm",
            ExecutorKind::Container => "container",
        })
    }
}

impl std::str::FromStr for ExecutorKind {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self, Error> {
        match text {
            "wasm" => Ok(ExecutorKind::Wasm),
            "container" => Ok(ExecutorKind::Container),
            _ => Err(Error::invalid(format!("executor {text:?} is not one of wasm, container"))),
        }
    }
}

/// What a worker offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub slots: u32,
    /// The most linear memory one task may use on this worker.
    pub memory_bytes: u64,
    pub executors: Vec<ExecutorKind>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub role: Role,
    pub channel_binding: [u8; 32],
    pub agent: String,
    pub capacity: Option<Capacity>,
    /// The highest journal seal this peer has seen from the coordinator: the
    /// coordinator answers with its own seal at that entry, so the peer can tell
    /// whether the history it saw is still there.
    pub seen: Option<Seal>,
    /// A worker's tasks still running from an earlier connection, by attempt: they
    /// resume on this one instead of being counted as lost.
    pub running: Vec<(TaskId, u32)>,
}

impl Signed for Hello {
    const KIND: Kind = Kind::Hello;
}

impl Hello {
    pub fn validate(&self) -> Result<(), Error> {
        check_text("agent", &self.agent)?;
        match (&self.role, &self.capacity) {
            (Role::Worker, None) => Err(Error::invalid("a worker's hello must state its capacity")),
            (Role::Worker, Some(capacity)) => {
                if capacity.slots == 0 || capacity.slots > SLOTS_MAX {
                    return Err(Error::invalid(format!(
                        "slots is {}; it must be between 1 and {SLOTS_MAX}",
                        capacity.slots
                    )));
                }
                if capacity.executors.len() > 8 {
                    return Err(Error::invalid("more than 8 executor kinds"));
                }
                if self.running.len() > capacity.slots as usize {
                    return Err(Error::invalid(format!(
                        "{} tasks said to be running on {} slots",
                        self.running.len(),
                        capacity.slots
                    )));
                }
                Ok(())
            }
            (Role::Member, _) if !self.running.is_empty() => Err(Error::invalid("a member runs no tasks")),
            (Role::Member, _) => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub channel_binding: [u8; 32],
    pub heartbeat_interval_ms: u64,
    /// The coordinator's latest journal seal.
    pub seal: Seal,
    /// The coordinator's seal at the entry of the hello's `seen` seal, when its journal
    /// holds that entry sealed.
    pub known: Option<Seal>,
}

impl Signed for Welcome {
    const KIND: Kind = Kind::Welcome;
}

/// The limits one task runs under. Every one is enforced by the worker's sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    pub fuel: Fuel,
    pub memory_bytes: u64,
    pub timeout_ms: u64,
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Fuel(1_000_000_000),
            memory_bytes: 64 * 1024 * 1024,
            timeout_ms: 10_000,
            output_bytes: 64 * 1024,
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), Error> {
        let within = |name: &str, value: u64, max: u64| {
            if value == 0 || value > max {
                Err(Error::invalid(format!("{name} is {value}; it must be between 1 and {max}")))
            } else {
                Ok(())
            }
        };
        within("fuel", self.fuel.0, FUEL_MAX)?;
        within("memory_bytes", self.memory_bytes, MEMORY_BYTES_MAX)?;
        within("timeout_ms", self.timeout_ms, TIMEOUT_MS_MAX)?;
        within("output_bytes", self.output_bytes, OUTPUT_SIZE_BYTES_MAX)
    }
}

/// What a member asks the commons to run. Signed by the member; the job's id is the
/// content id of that signed envelope. Its input travels apart, as a blob stored by
/// content id beforehand: the submission (and so the journal) holds only its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Submission {
    /// The scope the job is submitted for; its mandate pays.
    pub scope: ScopeId,
    pub executor: ExecutorKind,
    pub module: ContentId,
    /// The content id of the job's stdin.
    pub input: ContentId,
    pub args: Vec<String>,
    pub limits: Limits,
    /// Added after the first release: journals made before it hold submissions without
    /// them, read as the defaults (see [`Signed::decode_payload`]).
    #[serde(default)]
    pub options: JobOptions,
}

/// What a submission may ask beyond its limits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobOptions {
    /// The job must have an accepted result by this time (wall ms since the Unix epoch), or
    /// it fails and its hold is voided.
    pub deadline_ms: Option<u64>,
    /// One of the priority classes its scope decided; `None` is the scope's default class.
    pub priority: Option<String>,
}

/// A submission as it was encoded before [`JobOptions`].
#[derive(Deserialize)]
struct SubmissionV1 {
    scope: ScopeId,
    executor: ExecutorKind,
    module: ContentId,
    input: ContentId,
    args: Vec<String>,
    limits: Limits,
}

/// The content id of an empty input, which every coordinator holds without an upload.
pub fn empty_input() -> ContentId {
    ContentId::of(b"")
}

impl Signed for Submission {
    const KIND: Kind = Kind::Submission;

    /// The current encoding, or the one before [`JobOptions`], whole either way.
    fn decode_payload(bytes: &[u8]) -> Result<Self, Error> {
        crate::decode::<Submission>(bytes).or_else(|current| match crate::decode::<SubmissionV1>(bytes) {
            Ok(v1) => Ok(Submission {
                scope: v1.scope,
                executor: v1.executor,
                module: v1.module,
                input: v1.input,
                args: v1.args,
                limits: v1.limits,
                options: JobOptions::default(),
            }),
            Err(_) => Err(current),
        })
    }
}

/// A member's signed request to stop a job: its submitter, or a member with standing in
/// its scope, may ask. Running replicas are told to stop and the job's hold is voided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancel {
    pub job: JobId,
}

impl Signed for Cancel {
    const KIND: Kind = Kind::Cancel;
}

impl Submission {
    pub fn validate(&self) -> Result<(), Error> {
        if self.args.len() > ARGS_COUNT_MAX {
            return Err(Error::invalid(format!(
                "{} arguments given; at most {ARGS_COUNT_MAX} are accepted",
                self.args.len()
            )));
        }
        if let Some(arg) = self.args.iter().find(|a| a.len() > ARG_SIZE_BYTES_MAX || a.contains('\0')) {
            return Err(Error::invalid(format!(
                "argument {:?}… is longer than {ARG_SIZE_BYTES_MAX} bytes or holds a NUL byte",
                arg.chars().take(16).collect::<String>()
            )));
        }
        if let Some(class) = &self.options.priority {
            crate::governance::check_name("priority class", class)?;
        }
        self.limits.validate()
    }
}

/// One run of a task on one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub task: TaskId,
    pub attempt: u32,
    /// Which of the worker's executors runs it.
    pub executor: ExecutorKind,
    pub module: ContentId,
    /// The content id of its stdin; the bytes come with the assignment.
    pub input: ContentId,
    pub args: Vec<String>,
    pub limits: Limits,
}

/// An input's size, checked where bytes arrive: a member's upload, a worker's assignment.
pub fn check_input(bytes: &[u8]) -> Result<(), Error> {
    if bytes.len() > INPUT_SIZE_BYTES_MAX {
        return Err(Error::invalid(format!(
            "input is {} bytes; at most {INPUT_SIZE_BYTES_MAX} are accepted",
            bytes.len()
        )));
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum FailureKind {
    /// The module used all the fuel it was given.
    OutOfFuel,
    /// The module tried to grow its memory past the limit.
    MemoryLimit,
    /// The module ran longer than its wall-clock limit.
    Timeout,
    /// The module trapped (unreachable, out-of-bounds access, stack overflow…).
    Trap,
    /// The module wrote more output than its limit.
    OutputTooLarge,
    /// The bytes are not a valid WebAssembly module, or it imports what the sandbox
    /// does not provide.
    InvalidModule,
    /// The worker failed for a reason of its own; the task may succeed elsewhere.
    WorkerError,
    /// The job was cancelled and the worker stopped the run: the report says what it used
    /// until then, which the job pays.
    Cancelled,
}

impl FailureKind {
    /// Whether this failure ends the job: any honest worker would fail the same way, or
    /// the submitter's own limit was reached. Only a worker's own error is retried.
    pub fn is_final(self) -> bool {
        !matches!(self, FailureKind::WorkerError)
    }
}

/// In words, as a member reads it after "the job ...".
impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FailureKind::OutOfFuel => "ran out of fuel",
            FailureKind::MemoryLimit => "went over its memory limit",
            FailureKind::Timeout => "went over its time limit",
            FailureKind::Trap => "trapped",
            FailureKind::OutputTooLarge => "went over its output limit",
            FailureKind::InvalidModule => "is not a module the sandbox can run",
            FailureKind::WorkerError => "hit an error of the worker's own",
            FailureKind::Cancelled => "was stopped because its job was cancelled",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Outcome {
    Exited { code: i32 },
    Failed { kind: FailureKind, detail: String },
}

/// A worker's signed statement of what one task attempt did. The output itself travels
/// beside the signed report, which commits to it by digest and size: the journal keeps
/// the report, the blob store the bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExecutionReport {
    pub task: TaskId,
    pub attempt: u32,
    pub outcome: Outcome,
    pub output_digest: ContentId,
    pub output_bytes: u64,
    /// The tail of stderr, bounded by [`STDERR_SIZE_BYTES_MAX`].
    pub stderr: Vec<u8>,
    pub fuel: Fuel,
    /// What a container's run used, as its engine measured it (zero for wasm, whose
    /// usage is its fuel). Added after the first release: reports signed before it
    /// decode with zero usage (see [`Signed::decode_payload`]).
    #[serde(default)]
    pub usage: Usage,
}

/// What a container's run used, read from the engine: CPU time across all its
/// processes, the most memory its cgroup held, and how long it ran. Containers are
/// priced by it ([`crate::governance::ContainerTerms`]); replicas' usage is compared within
/// the tolerance their scope decided, since container timing is not deterministic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub cpu_ms: u64,
    pub memory_peak_bytes: u64,
    pub wall_ms: u64,
}

/// CPUs one container task may use: its CPU quota.
pub const CONTAINER_CPUS: u64 = 1;
/// A container's exit code when its process was killed by SIGKILL (128 + 9): the kernel's
/// kill at its memory limit when the engine did not record it as one. Its worker keeps no
/// output of such a run, as of one killed for memory.
pub const CONTAINER_SIGKILL_EXIT: i32 = 137;
/// Time a container's wall clock may run past its timeout while the engine stops it.
pub const CONTAINER_STOP_GRACE_MS: u64 = 10_000;

impl Usage {
    /// Checks a reported usage against what the task's limits make possible: a worker
    /// cannot claim more CPU than its quota over its time, nor more memory than its limit.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        let wall_max = limits.timeout_ms + CONTAINER_STOP_GRACE_MS;
        if self.wall_ms > wall_max {
            return Err(Error::invalid(format!(
                "report claims {} ms of wall time; the task's timeout allows at most {wall_max}",
                self.wall_ms
            )));
        }
        if self.cpu_ms > self.wall_ms * CONTAINER_CPUS {
            return Err(Error::invalid(format!(
                "report claims {} ms of CPU in {} ms with a quota of {CONTAINER_CPUS} CPU",
                self.cpu_ms, self.wall_ms
            )));
        }
        if self.memory_peak_bytes > limits.memory_bytes {
            return Err(Error::invalid(format!(
                "report claims a memory peak of {} bytes, over the task's limit of {}",
                self.memory_peak_bytes, limits.memory_bytes
            )));
        }
        Ok(())
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.3} CPU-seconds, {:.1} MiB at most, {:.3} s",
            self.cpu_ms as f64 / 1000.0,
            self.memory_peak_bytes as f64 / (1024.0 * 1024.0),
            self.wall_ms as f64 / 1000.0
        )
    }
}

/// A report as it was encoded before [`Usage`].
#[derive(Deserialize)]
struct ExecutionReportV1 {
    task: TaskId,
    attempt: u32,
    outcome: Outcome,
    output_digest: ContentId,
    output_bytes: u64,
    stderr: Vec<u8>,
    fuel: Fuel,
}

impl Signed for ExecutionReport {
    const KIND: Kind = Kind::ExecutionReport;

    /// The current encoding, or the one before [`Usage`], whole either way.
    fn decode_payload(bytes: &[u8]) -> Result<Self, Error> {
        crate::decode::<ExecutionReport>(bytes).or_else(|current| {
            match crate::decode::<ExecutionReportV1>(bytes) {
                Ok(v1) => Ok(ExecutionReport {
                    task: v1.task,
                    attempt: v1.attempt,
                    outcome: v1.outcome,
                    output_digest: v1.output_digest,
                    output_bytes: v1.output_bytes,
                    stderr: v1.stderr,
                    fuel: v1.fuel,
                    usage: Usage::default(),
                }),
                Err(_) => Err(current),
            }
        })
    }
}

impl ExecutionReport {
    /// Checks the report against the limits its task ran under.
    pub fn validate(&self, limits: &Limits) -> Result<(), Error> {
        if self.output_bytes > limits.output_bytes {
            return Err(Error::invalid(format!(
                "report output is {} bytes, over the task's limit of {}",
                self.output_bytes, limits.output_bytes
            )));
        }
        if self.stderr.len() > STDERR_SIZE_BYTES_MAX {
            return Err(Error::invalid(format!(
                "report stderr is {} bytes; at most {STDERR_SIZE_BYTES_MAX} are accepted",
                self.stderr.len()
            )));
        }
        if self.fuel > limits.fuel {
            return Err(Error::invalid(format!(
                "report claims {} used, over the task's limit of {}",
                self.fuel, limits.fuel
            )));
        }
        if let Outcome::Failed { detail, .. } = &self.outcome {
            check_text("failure detail", detail)?;
        }
        self.usage.validate(limits)
    }

    /// What the run used, in words: a container's CPU time, memory peak and running time,
    /// or a wasm run's fuel.
    pub fn used(&self) -> String {
        if self.usage == Usage::default() { self.fuel.to_string() } else { self.usage.to_string() }
    }

    /// Checks that `output` is the output this report commits to.
    pub fn check_output(&self, output: &[u8]) -> Result<(), Error> {
        if output.len() as u64 != self.output_bytes || ContentId::of(output) != self.output_digest {
            return Err(Error::invalid(format!(
                "the output sent is {} bytes hashing to {}; the signed report names {} bytes hashing to {}",
                output.len(),
                ContentId::of(output).short(),
                self.output_bytes,
                self.output_digest.short()
            )));
        }
        Ok(())
    }
}

/// The code a coordinator closes a worker's connection with when another connection
/// with the same key replaced it: after a network blip the worker itself, else a second
/// worker process sharing the key, which the first then hears of.
pub const CLOSE_REPLACED: u32 = 5;

/// The coordinator's answer to a [`Hello`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum HelloReply {
    /// A signed [`Welcome`].
    Welcome(Envelope),
    Refused(String),
}

/// Worker → coordinator, after the hello.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WorkerMessage {
    Heartbeat {
        running: Vec<(TaskId, u32)>,
        free_slots: u32,
    },
    /// On a task stream: the worker lacks the module and asks for its bytes.
    FetchModule(ContentId),
    /// On a task stream (or one of the worker's own, for a report made while its
    /// connection was down): the signed [`ExecutionReport`] and the output it names.
    Report {
        report: Envelope,
        output: Vec<u8>,
    },
    /// On the control stream: the worker drains — it takes no new task, finishes those it
    /// runs, and stops. Sent again on each connection until it stops.
    Drain,
    /// On a task stream, while its task runs: stderr written since the last progress
    /// (at most [`PROGRESS_STDERR_BYTES_MAX`]), after `skipped` bytes the worker could
    /// not keep. What a member follows live; one replica's word, never part of a result.
    Progress {
        stderr: Vec<u8>,
        skipped: u64,
    },
}

/// Coordinator → worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum CoordinatorMessage {
    /// Opens a task stream: the assignment, its input's bytes, and the journal seal
    /// that covers the placement.
    Assign {
        assignment: Box<Assignment>,
        input: Vec<u8>,
        seal: Seal,
    },
    Module(Vec<u8>),
    /// The coordinator could not serve a module fetch.
    NoModule(String),
    /// The job was cancelled: stop the task on this stream; no report is wanted.
    Cancel,
}

/// Which jobs `icn jobs` lists: every filter given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobsQuery {
    pub scope: Option<ScopeId>,
    /// By state name: queued, running, completed, failed, disputed, cancelled.
    pub state: Option<String>,
    pub submitter: Option<PublicKey>,
    /// Submitted at or after this wall-clock time (ms since the epoch).
    pub since_ms: Option<u64>,
}

/// One line of `icn jobs`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobSummary {
    pub job: JobId,
    pub scope: ScopeId,
    pub submitter: crate::views::Person,
    pub submitted_ms: u64,
    pub state: JobState,
    pub waiting: Option<Waiting>,
    pub failure: Option<String>,
}

impl JobState {
    /// The state's name, as `icn jobs --state` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running { .. } => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Disputed => "disputed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub const NAMES: [&'static str; 6] =
        ["queued", "running", "completed", "failed", "disputed", "cancelled"];
}

/// Ids a prefix completes to, at most: enough to show that it is ambiguous.
pub const COMPLETIONS_MAX: usize = 8;

/// What an id a member types names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum IdKind {
    Job,
    Proposal,
    /// A member's or an admitted worker's key.
    Key,
}

impl std::fmt::Display for IdKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IdKind::Job => "job",
            IdKind::Proposal => "proposal",
            IdKind::Key => "key",
        })
    }
}

/// Member's client → coordinator, one request per stream.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientRequest {
    HasModule(ContentId),
    PutModule(Vec<u8>),
    /// Whether the coordinator holds a job's input by this content id.
    HasInput(ContentId),
    /// A job's input, stored by its content id before a submission names it.
    PutInput(Vec<u8>),
    /// A job's accepted output.
    Output(JobId),
    /// A signed [`Submission`].
    Submit(Envelope),
    Status(JobId),
    /// Status now and at every change, until the job ends.
    Watch(JobId),
    /// A signed [`crate::governance::Proposal`].
    Propose(Envelope),
    /// A signed [`crate::governance::Ballot`].
    Vote(Envelope),
    /// A signed [`crate::governance::ClearRequest`].
    Clear(Envelope),
    /// Members and the standing each holds.
    Members(Page),
    /// Every scope, where it sits and how many hold standing in it.
    Scopes,
    /// One scope: rule, prices, policy, mandate, account, a page of its members, workers.
    Scope(ScopeId, Page),
    /// Open proposals with their tally so far.
    Proposals(Page),
    /// One proposal, open or decided.
    Proposal(ContentId),
    /// Decisions, oldest first.
    Decisions(Page),
    /// One decision, named by its journal entry.
    Decision(u64),
    /// Every account's position, reservations held and credit limit, and who owes whom.
    Positions,
    /// A page of one scope's account entries with the decision behind each.
    Statement(ScopeId, Page),
    /// The provenance of a job, or of a decision and the jobs it authorized.
    Trace(TraceQuery),
    /// Workers: owner, connection, slots, trust, quarantine.
    Workers(Page),
    /// A signed [`Cancel`].
    Cancel(Envelope),
    /// The ids of one kind that start with a hex prefix (at least [`crate::PREFIX_HEX_MIN`]
    /// digits), at most [`COMPLETIONS_MAX`] of them.
    Complete {
        kind: IdKind,
        prefix: String,
    },
    /// Jobs the coordinator holds (every open job and the latest ended ones), newest
    /// first, paged.
    Jobs(JobsQuery, crate::views::Page),
    /// How the shared queue stands, scope by scope, in fair-share order.
    Queue,
    /// One journal entry, with its hash, link and the seal that vouches for it.
    Entry(u64),
    /// What a running job's module has written to stderr from byte `from` on, waiting up
    /// to `wait_ms` (at most [`LIVE_STDERR_WAIT_MS_MAX`]) for bytes when there are none yet.
    LiveStderr {
        job: JobId,
        from: u64,
        wait_ms: u64,
    },
    /// The coordinator's software version and protocol.
    Version,
    /// A signed [`Submission`] to weigh, not to submit: what it would hold under which
    /// decision, and where it could run now or why it would wait. Nothing is journaled.
    Plan(Envelope),
}

impl ClientRequest {
    /// The request's kind, for metrics and logs: one of a fixed set of names.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientRequest::HasModule(_) => "has_module",
            ClientRequest::PutModule(_) => "put_module",
            ClientRequest::HasInput(_) => "has_input",
            ClientRequest::PutInput(_) => "put_input",
            ClientRequest::Output(_) => "output",
            ClientRequest::Submit(_) => "submit",
            ClientRequest::Status(_) => "status",
            ClientRequest::Watch(_) => "watch",
            ClientRequest::Propose(_) => "propose",
            ClientRequest::Vote(_) => "vote",
            ClientRequest::Clear(_) => "clear",
            ClientRequest::Members(_) => "members",
            ClientRequest::Scopes => "scopes",
            ClientRequest::Scope(..) => "scope",
            ClientRequest::Proposals(_) => "proposals",
            ClientRequest::Proposal(_) => "proposal",
            ClientRequest::Decisions(_) => "decisions",
            ClientRequest::Decision(_) => "decision",
            ClientRequest::Positions => "positions",
            ClientRequest::Statement(..) => "statement",
            ClientRequest::Trace(_) => "trace",
            ClientRequest::Workers(_) => "workers",
            ClientRequest::Cancel(_) => "cancel",
            ClientRequest::Complete { .. } => "complete",
            ClientRequest::Jobs(..) => "jobs",
            ClientRequest::Queue => "queue",
            ClientRequest::Entry(_) => "entry",
            ClientRequest::LiveStderr { .. } => "live_stderr",
            ClientRequest::Version => "version",
            ClientRequest::Plan(_) => "plan",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceQuery {
    Job(JobId),
    /// A decision, named by its journal entry, and a page of the jobs it authorized.
    Decision(u64, Page),
}

/// In JSON, lowercase, as `icn jobs --state` takes it: `"queued"`, `{"running": {…}}`,
/// `"completed"`, `"failed"`, `"disputed"`, `"cancelled"`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running {
        worker: PublicKey,
        attempt: u32,
    },
    Completed,
    Failed,
    /// Replicas disagreed and more could not settle it: a decision of the commons will.
    Disputed,
    /// A member cancelled it; `failure` says who.
    Cancelled,
}

/// What a member sees of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobView {
    pub job: JobId,
    /// The scope it was submitted for, whose mandate pays.
    pub scope: ScopeId,
    /// Who signed the submission.
    pub submitter: PublicKey,
    pub state: JobState,
    pub attempts: u32,
    /// The report of the attempt that ended the job, and who signed it.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Value>>))]
    pub result: Option<(PublicKey, ExecutionReport)>,
    /// Why the job failed, in words, when it failed without a report.
    pub failure: Option<String>,
    /// Why a queued job waits, when it does.
    pub waiting: Option<Waiting>,
}

/// Why a job waits for a worker: the first stage of placement that holds it back, with
/// the counts a member needs to understand it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Waiting {
    /// No connected worker (out of quarantine) offers the executor the job asks for.
    NoExecutor { executor: ExecutorKind },
    /// The job asks more memory than any connected worker offers a task.
    NoMemory { asked_bytes: u64, largest_bytes: u64 },
    /// Replication needs replicas on workers of that many distinct cooperatives; fewer
    /// cooperatives have workers that could take the job.
    TooFewCooperatives { replicas: u32, cooperatives: u32 },
    /// Workers could take it, but their slots are busy; `ahead` jobs wait before it in
    /// its scope's queue.
    SlotsBusy { slots: u32, ahead: u32, scope: ScopeId },
    /// Its last attempt was lost or failed on a worker, more than once: it is tried again,
    /// elsewhere where it can be, once `wait_ms` have passed (the wait doubles each time).
    Backoff { wait_ms: u64, attempts: u32, attempts_max: u32 },
}

impl Waiting {
    /// Whether the job cannot be placed with the workers connected now, however long
    /// it waits for slots.
    pub fn is_stuck(&self) -> bool {
        !matches!(self, Waiting::SlotsBusy { .. } | Waiting::Backoff { .. })
    }
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waiting::NoExecutor { executor } => {
                write!(f, "no connected worker offers the {executor} executor")
            }
            Waiting::NoMemory { asked_bytes, largest_bytes } => write!(
                f,
                "it asks {} MiB of memory; the largest connected worker offers {} MiB",
                asked_bytes.div_ceil(1 << 20),
                largest_bytes / (1 << 20)
            ),
            Waiting::TooFewCooperatives { replicas, cooperatives } => write!(
                f,
                "replication {replicas} needs {replicas} cooperatives; {cooperatives} {} workers that could take it",
                if *cooperatives == 1 { "has" } else { "have" }
            ),
            Waiting::SlotsBusy { slots, ahead, scope } => {
                write!(
                    f,
                    "all {slots} slots that could take it are busy; {ahead} jobs wait before it in {scope}'s queue"
                )
            }
            Waiting::Backoff { wait_ms, attempts, attempts_max } => write!(
                f,
                "its replicas were lost or failed on workers {attempts} times (at most {attempts_max}); \
                 it is tried again, on another worker where one can take it, in {:.1} s",
                *wait_ms as f64 / 1000.0
            ),
        }
    }
}

/// Every frame the coordinator sends a member: the answer and its latest journal seal,
/// which the member's client keeps to notice a history cut short later.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Answer {
    pub seal: Seal,
    pub response: ClientResponse,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ClientResponse {
    HasModule(bool),
    ModuleStored(ContentId),
    HasInput(bool),
    InputStored(ContentId),
    Output {
        job: JobId,
        digest: ContentId,
        bytes: Vec<u8>,
    },
    Submitted(JobId),
    Job(Box<JobView>),
    Proposed {
        proposal: ContentId,
        closes_ms: u64,
    },
    Voted {
        proposal: ContentId,
    },
    Cleared(ClearingView),
    Members(Paged<MemberView>),
    Scopes(Vec<ScopeSummary>),
    Scope(Box<ScopeView>),
    Proposals(Paged<ProposalView>),
    Proposal(Box<ProposalView>),
    Decisions(Paged<DecisionView>),
    Decision(Box<DecisionView>),
    Positions(PositionsView),
    Statement(Statement),
    Trace(Box<Trace>),
    Workers(Paged<WorkerView>),
    Error(ApiError),
    /// The job as it stands once cancelled.
    Cancelled(Box<JobView>),
    /// Full ids in hex, in order; more than one means the prefix is ambiguous.
    Completions(Vec<String>),
    Jobs(crate::views::Paged<JobSummary>),
    Queue(crate::views::QueueView),
    Entry(Box<crate::views::EntryView>),
    LiveStderr(Box<LiveStderr>),
    Version(VersionView),
    Plan(Box<PlanView>),
}

/// What a submission would do now, had it been sent (`icn submit --dry-run`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlanView {
    pub scope: ScopeId,
    /// The decision whose mandate would pay (its journal entry; the genesis is 0).
    pub decision: u64,
    /// What it would hold until it ends: its limits at the scope's price.
    pub hold: crate::governance::Credits,
    /// What the scope would have left to spend once it holds that.
    pub available_after: crate::governance::Credits,
    /// Replicas its scope's placement policy asks for.
    pub replicas: u32,
    /// Where its replicas would go with the workers connected now, best first.
    pub placements: Vec<PlannedPlacement>,
    /// Why it would wait for a worker instead, when it would.
    pub waiting: Option<Waiting>,
    /// Jobs of its scope that wait already, and would be served before it.
    pub queued_ahead: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlannedPlacement {
    pub worker: PublicKey,
    /// The cooperative that donates it.
    pub owner: ScopeId,
    /// Its placement score now (trust, free capacity and donor fairness together).
    pub score: f64,
}

/// What software a peer runs: its release, and the protocol it speaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionView {
    /// The release, such as 0.1.0.
    pub software: String,
    pub protocol: u16,
}

impl VersionView {
    /// Release `software` (its crate's `CARGO_PKG_VERSION`), speaking this protocol.
    pub fn of(software: &str) -> Self {
        VersionView { software: software.to_string(), protocol: crate::PROTOCOL_VERSION }
    }
}

/// A running job's stderr as its module writes it: bytes `from..next` of the run being
/// followed. One replica's word while it runs; what counts is the stderr of the accepted
/// report, on the job's view once it ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiveStderr {
    pub job: JobId,
    /// The job's state as the bytes were read: the stream ends once it is no longer
    /// queued or running and no bytes are left.
    pub state: JobState,
    /// The worker whose run these bytes are from; it changes when the run starts over
    /// on another worker, whose bytes follow on.
    pub worker: Option<PublicKey>,
    /// Where `stderr` starts, counted over everything followed of this job so far.
    pub from: u64,
    pub stderr: Vec<u8>,
    /// Where to ask from next.
    pub next: u64,
    /// Bytes between the offset asked for and `from` that are no longer kept here, or
    /// that the worker could not keep: the reader fell behind, or the module wrote
    /// faster than it could be sent.
    pub skipped: u64,
}

/// Why a request was refused: a code that does not change between versions, for
/// programs, and a sentence for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiError {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError { code: code.to_string(), message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub(crate) fn check_text(what: &str, text: &str) -> Result<(), Error> {
    if text.len() > TEXT_SIZE_BYTES_MAX {
        return Err(Error::invalid(format!(
            "{what} is {} bytes; at most {TEXT_SIZE_BYTES_MAX} are accepted",
            text.len()
        )));
    }
    if let Some((at, c)) = text.chars().enumerate().find(|(_, c)| unprintable(*c)) {
        return Err(Error::invalid(format!(
            "{what} holds the character U+{:04X} at position {at}: text here is shown on members' terminals \
             and pages, so it holds no control characters (a newline or tab included) and no \
             bidirectional overrides",
            c as u32
        )));
    }
    Ok(())
}

/// Whether `c` may not appear in text the commons stores and shows: a control character
/// (a terminal acts on it: clears the screen, sets the title, starts a fake line) or a
/// bidirectional override or isolate (it reorders what is shown).
pub fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `text` with each unprintable character written as its escape (`\u{1b}`), except those
/// in `kept` (a printer of many lines keeps `\n`).
pub fn printable(text: &str, kept: &[char]) -> String {
    text.chars()
        .map(|c| {
            if unprintable(c) && !kept.contains(&c) { c.escape_unicode().to_string() } else { c.to_string() }
        })
        .collect()
}

impl Outcome {
    /// The outcome with its failure detail made [`printable`], as a worker reports it.
    pub fn printable(self) -> Outcome {
        match self {
            Outcome::Failed { kind, detail } => Outcome::Failed { kind, detail: printable(&detail, &[]) },
            other => other,
        }
    }

    /// For a container: its kernel killed it at its memory limit, as its engine recorded
    /// (`MemoryLimit`), or maybe so: an exit by SIGKILL ([`CONTAINER_SIGKILL_EXIT`]) its
    /// worker did not send, which is what a kill the engine missed reads as.
    pub fn container_killed_for_memory(&self) -> bool {
        matches!(
            self,
            Outcome::Exited { code: CONTAINER_SIGKILL_EXIT }
                | Outcome::Failed { kind: FailureKind::MemoryLimit, .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// L2: text that reaches members' terminals holds no control characters or bidi
    /// overrides; a worker's own detail is escaped before it is signed.
    #[test]
    fn text_with_control_or_bidi_characters_is_refused_and_details_are_escaped() {
        for bad in ["clear\u{1b}[2J", "two\nlines", "tab\there", "abc\u{202E}fed", "bell\u{7}"] {
            let refused = check_text("reason", bad).unwrap_err().to_string();
            assert!(refused.contains("holds the character U+"), "{bad:?}: {refused}");
        }
        assert!(check_text("reason", "plain words, ünïcode and emoji 🙂").is_ok());
        let outcome = Outcome::Failed { kind: FailureKind::Trap, detail: "a\u{1b}]0;owned\u{7}\nb".into() };
        let Outcome::Failed { detail, .. } = outcome.printable() else { unreachable!() };
        assert_eq!(detail, "a\\u{1b}]0;owned\\u{7}\\u{a}b");
        assert!(check_text("failure detail", &detail).is_ok());
    }

    fn submission() -> Submission {
        Submission {
            scope: "fed-north".parse().unwrap(),
            executor: ExecutorKind::Wasm,
            module: ContentId::of(b"m"),
            input: empty_input(),
            args: vec!["a".into()],
            limits: Limits::default(),
            options: Default::default(),
        }
    }

    /// A submission signed before `options` existed (as older journals hold them) opens
    /// with the default options; one with options opens with them; bytes beyond either
    /// encoding are refused.
    #[test]
    fn submissions_of_the_earlier_encoding_open_with_default_options() {
        #[derive(Serialize)]
        struct V1<'a>(&'a ScopeId, ExecutorKind, ContentId, ContentId, &'a [String], Limits);
        let s = submission();
        let key = crate::Keypair::from_seed([1; 32]);
        let seal = |payload: Vec<u8>| {
            let mut envelope = Envelope::seal(&key, 1, &s);
            envelope.payload = payload;
            envelope
        };
        let old = crate::encode(&V1(&s.scope, s.executor, s.module, s.input, &s.args, s.limits));
        assert_eq!(seal(old.clone()).open_trusted::<Submission>().unwrap(), s);
        let mut with = s.clone();
        with.options = JobOptions { deadline_ms: Some(5), priority: Some("urgent".into()) };
        assert_eq!(seal(crate::encode(&with)).open_trusted::<Submission>().unwrap(), with);
        let mut longer = old;
        longer.extend_from_slice(&[0, 0, 7]);
        assert!(seal(longer).open_trusted::<Submission>().is_err());
    }

    fn report() -> ExecutionReport {
        ExecutionReport {
            task: TaskId { job: JobId(ContentId::of(b"j")), index: 0 },
            attempt: 1,
            outcome: Outcome::Exited { code: 0 },
            output_digest: ContentId::of(b"42\n"),
            output_bytes: 3,
            stderr: b"warn".to_vec(),
            fuel: Fuel(10),
            usage: Usage::default(),
        }
    }

    /// A report signed before `usage` existed opens with zero usage; one with usage opens
    /// with it; bytes beyond either encoding are refused.
    #[test]
    fn reports_of_the_earlier_encoding_open_with_zero_usage() {
        #[derive(Serialize)]
        struct V1<'a>(TaskId, u32, &'a Outcome, ContentId, u64, &'a [u8], Fuel);
        let r = report();
        let key = crate::Keypair::from_seed([2; 32]);
        let seal = |payload: Vec<u8>| {
            let mut envelope = Envelope::seal(&key, 1, &r);
            envelope.payload = payload;
            envelope
        };
        let old = crate::encode(&V1(
            r.task,
            r.attempt,
            &r.outcome,
            r.output_digest,
            r.output_bytes,
            &r.stderr,
            r.fuel,
        ));
        assert_eq!(seal(old.clone()).open_trusted::<ExecutionReport>().unwrap(), r);
        let mut with = r.clone();
        with.usage = Usage { cpu_ms: 5, memory_peak_bytes: 6, wall_ms: 7 };
        assert_eq!(seal(crate::encode(&with)).open_trusted::<ExecutionReport>().unwrap(), with);
        let mut longer = old;
        longer.extend_from_slice(&[0, 0, 7, 9]);
        assert!(seal(longer).open_trusted::<ExecutionReport>().is_err());
    }

    /// A worker cannot claim more than the task's limits make possible: more CPU than its
    /// quota over the time it ran, more time than its timeout allows, more memory than its
    /// limit.
    #[test]
    fn reported_usage_is_bounded_by_the_tasks_limits() {
        let limits = Limits { memory_bytes: 64 << 20, timeout_ms: 1_000, ..Limits::default() };
        let mut claimed = report();
        claimed.usage = Usage { cpu_ms: 900, memory_peak_bytes: 60 << 20, wall_ms: 1_000 };
        assert!(claimed.validate(&limits).is_ok());
        claimed.usage.cpu_ms = 1_001;
        assert!(claimed.validate(&limits).unwrap_err().to_string().contains("1001 ms of CPU in 1000 ms"));
        claimed.usage = Usage { cpu_ms: 0, memory_peak_bytes: 65 << 20, wall_ms: 10 };
        assert!(claimed.validate(&limits).unwrap_err().to_string().contains("memory peak"));
        claimed.usage =
            Usage { cpu_ms: 0, memory_peak_bytes: 0, wall_ms: 1_000 + CONTAINER_STOP_GRACE_MS + 1 };
        assert!(claimed.validate(&limits).unwrap_err().to_string().contains("wall time"));
    }

    #[test]
    fn container_terms_price_cpu_and_reserved_memory_and_bound_the_hold() {
        let terms = crate::governance::ContainerTerms {
            credits_per_cpu_second: 10,
            credits_per_gib_second: 4,
            usage_tolerance_percent: 20,
        };
        let usage = Usage { cpu_ms: 1_500, memory_peak_bytes: 1 << 20, wall_ms: 2_000 };
        // 1.5 CPU-seconds at 10, plus 0.5 GiB reserved for 2 s at 4: 15 + 4.
        assert_eq!(terms.cost(&usage, 512 << 20), crate::governance::Credits(19));
        // Rounded up, never down: a sliver of use costs a credit.
        assert_eq!(terms.cost(&Usage { cpu_ms: 1, ..Usage::default() }, 0), crate::governance::Credits(1));
        let limits = Limits { memory_bytes: 512 << 20, timeout_ms: 2_000, ..Limits::default() };
        let most = terms.most(&limits);
        let longest = Usage { cpu_ms: 12_000, memory_peak_bytes: 512 << 20, wall_ms: 12_000 };
        assert!(most >= terms.cost(&longest, limits.memory_bytes), "{most:?}");
        assert!(terms.validate().is_ok());
        let loose = crate::governance::ContainerTerms { usage_tolerance_percent: 101, ..terms };
        assert!(loose.validate().unwrap_err().to_string().contains("between 0 and 100"));
    }

    #[test]
    fn submission_limits_name_the_bad_value() {
        assert!(submission().validate().is_ok());
        let big = vec![0; INPUT_SIZE_BYTES_MAX + 1];
        assert!(check_input(&big).unwrap_err().to_string().contains("1048577 bytes"));
        let mut zero_fuel = submission();
        zero_fuel.limits.fuel = Fuel(0);
        assert!(zero_fuel.validate().unwrap_err().to_string().contains("fuel is 0"));
        let mut many = submission();
        many.args = vec!["x".into(); ARGS_COUNT_MAX + 1];
        assert!(many.validate().unwrap_err().to_string().contains("65 arguments"));
    }

    #[test]
    fn report_must_match_its_output_and_limits() {
        let output = b"42\n".to_vec();
        let report = ExecutionReport {
            task: TaskId { job: JobId(ContentId::of(b"j")), index: 0 },
            attempt: 1,
            outcome: Outcome::Exited { code: 0 },
            output_digest: ContentId::of(&output),
            output_bytes: output.len() as u64,
            stderr: vec![],
            fuel: Fuel(10),
            usage: Default::default(),
        };
        assert!(report.validate(&Limits::default()).is_ok());
        assert!(report.check_output(&output).is_ok());
        let lie = report.check_output(b"43\n").unwrap_err().to_string();
        assert!(lie.contains("the signed report names 3 bytes"), "{lie}");
        let mut large = report.clone();
        large.output_bytes = Limits::default().output_bytes + 1;
        assert!(
            large.validate(&Limits::default()).unwrap_err().to_string().contains("over the task's limit")
        );
        let mut greedy = report;
        greedy.fuel = Fuel(Limits::default().fuel.0 + 1);
        assert!(
            greedy.validate(&Limits::default()).unwrap_err().to_string().contains("over the task's limit")
        );
    }
}
