//! The member API: one transport-neutral way to ask the coordinator anything a member
//! may ask — typed requests in, typed views out. The QUIC path is one adapter of it
//! (`server`); an HTTP adapter is another. Nothing here encodes: adapters serialize the
//! answers on their own tasks, never on the core's thread.
//!
//! Reads of the core's state and changes to it go to the core's thread as closures and
//! are answered once the batch they belong to is durable, so a member never hears of a
//! state the journal could still lose. Traces and statements are built off that thread,
//! from the journal's index.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use icn_core::trace::Provenance;
use icn_core::{Core, Now, Refusal};
use icn_protocol::governance::{Ballot, ClearRequest, Proposal};
use icn_protocol::wire::{
    ApiError, COMPLETIONS_MAX, Cancel, ClientRequest, ClientResponse, IdKind, JobState, JobView,
    LIVE_STDERR_WAIT_MS_MAX, LiveStderr, Submission, TraceQuery,
};
use icn_protocol::{Envelope, JobId, PublicKey, Seal};
use tokio::sync::{mpsc, oneshot, watch};

use crate::blobs::{Access, BlobStore, Missing};
use crate::journal::JournalReader;
use crate::limits::{Class, Limits};
use crate::live::LiveLogs;
use crate::modules::Modules;
use crate::server::{Event, Journaled, Reply, now_ms};

/// Journal readers kept open for members' reads, at most.
pub const READERS_MAX: usize = 4;

/// While a followed job waits for stderr, how often its state is looked at again (a
/// cancel or an ending comes without bytes), and how soon once its run's stream ended.
const LIVE_STDERR_RECHECK_MS: u64 = 1_000;
const LIVE_STDERR_ENDED_RECHECK_MS: u64 = 100;

/// Jobs one member may follow at once.
pub const WATCHERS_PER_MEMBER_MAX: usize = 64;
/// Views queued for one follower; one that falls this far behind is let go (it can
/// follow again).
pub const WATCH_UPDATES_MAX: usize = 16;

pub struct MemberApi {
    events: mpsc::Sender<Event>,
    modules: Arc<Modules>,
    blobs: Arc<BlobStore>,
    payload_budget: Arc<tokio::sync::Semaphore>,
    readers: Arc<Readers>,
    seal: watch::Receiver<Seal>,
    /// The keys in standing, as of the last batch that made a decision.
    members: watch::Receiver<crate::server::Members>,
    /// The key output digests are blinded with for members who may not read them.
    blinding: [u8; 32],
    /// How many jobs each member follows now.
    watching: Mutex<HashMap<PublicKey, usize>>,
    /// Running jobs' stderr as their workers send it.
    live: LiveLogs,
    metrics: Arc<crate::metrics::Metrics>,
    /// How often each member may ask, by class of request.
    limits: Arc<Limits>,
}

/// The refusal of `what` a job made to a member who may not read it.
fn private_data(job: &JobId, scope: &icn_protocol::governance::ScopeId, what: &str) -> ApiError {
    ApiError::new(
        "private",
        format!(
            "the {what} of job {job} belongs to scope {scope}: only its submitter and members with standing in {scope} \
             may read it"
        ),
    )
}

fn stopping() -> ApiError {
    ApiError::new("stopping", "the coordinator is stopping; try again when it is back")
}

fn refused(what: &str, refusal: Refusal) -> ApiError {
    ApiError::new(refusal.code(), format!("{what} refused: {refusal}"))
}

/// The refusal of a key that holds no standing (any more).
pub fn not_a_member(key: &PublicKey) -> ApiError {
    ApiError::new(
        "not_a_member",
        format!("key {key} holds no standing in any scope of this commons; a decision must admit it first"),
    )
}

fn unknown_job(job: &JobId) -> ApiError {
    ApiError::new("unknown_job", format!("no job {job} is known to this coordinator"))
}

impl MemberApi {
    pub(crate) fn new(
        events: mpsc::Sender<Event>,
        modules: Arc<Modules>,
        (blobs, payload_budget): (Arc<BlobStore>, Arc<tokio::sync::Semaphore>),
        journal: PathBuf,
        (seal, members): (watch::Receiver<Seal>, watch::Receiver<crate::server::Members>),
        (metrics, limits): (Arc<crate::metrics::Metrics>, Arc<Limits>),
        blinding: [u8; 32],
    ) -> Self {
        let readers = Arc::new(Readers { journal, idle: Mutex::default() });
        MemberApi {
            events,
            modules,
            blobs,
            payload_budget,
            readers,
            seal,
            members,
            blinding,
            watching: Mutex::default(),
            live: LiveLogs::default(),
            metrics,
            limits,
        }
    }

    /// Running jobs' stderr, which task streams feed.
    pub(crate) fn live(&self) -> &LiveLogs {
        &self.live
    }

    /// The latest seal committed, which every answer carries.
    pub fn seal(&self) -> Seal {
        *self.seal.borrow()
    }

    /// The coordinator's metrics, for the adapters' own counts.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Whether `key` holds standing in some scope now, without a trip to the core's
    /// thread: every request of either adapter is checked by it, so a member whose
    /// every standing was revoked is refused from the batch that decided it on.
    pub fn is_member(&self, key: &PublicKey) -> bool {
        self.members.borrow().contains(key)
    }

    /// Resolves when `key` no longer holds any standing (a session then ends).
    pub async fn revoked(&self, key: PublicKey) {
        let mut members = self.members.clone();
        // The sender lives as long as the core's thread; when it goes, so do sessions.
        let _ = members.wait_for(|m| !m.contains(&key)).await;
    }

    /// A read of the core's state, answered after the batch it falls in is durable.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Core) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        let event = Event::Read(Box::new(move |core: &Core| {
            let value = f(core);
            Box::new(move || drop(reply.send(value))) as Reply
        }));
        self.events.send(event).await.map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())
    }

    /// A change to the core's state, answered once it is durable.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core, Now) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        self.write_journaled(move |core, now, _| f(core, now)).await
    }

    /// A change that may also ask the journal what the core no longer holds.
    async fn write_journaled<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Core, Now, &Journaled) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        let event = Event::Write(Box::new(move |core: &mut Core, now: Now, journaled: &Journaled| {
            let value = f(core, now, journaled);
            Box::new(move || drop(reply.send(value))) as Reply
        }));
        self.events.send(event).await.map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())
    }

    /// Answers `member`'s request. Watching a job is [`MemberApi::watch`].
    /// Answers `member`'s request, spending one of its allowance of requests of its
    /// class first ([`Limits`]); over it, a `rate_limited` refusal that says when to
    /// come back.
    pub async fn handle(&self, member: PublicKey, request: ClientRequest) -> ClientResponse {
        // Members only: a stranger's request spends no member's allowance.
        if self.is_member(&member)
            && let Err(limited) = self.limits.check(&member, Class::of(&request))
        {
            self.refuse(request.kind(), &limited.error);
            return ClientResponse::Error(limited.error);
        }
        self.handle_charged(member, request).await
    }

    /// Answers a request whose allowance its adapter already spent (HTTP does, before it
    /// remembers the request's nonce).
    pub(crate) async fn handle_charged(&self, member: PublicKey, request: ClientRequest) -> ClientResponse {
        let kind = request.kind();
        match self.answer(member, request).await {
            Ok(response) => response,
            Err(error) => {
                self.refuse(kind, &error);
                ClientResponse::Error(error)
            }
        }
    }

    /// Counts a refusal of a `kind` request in `/metrics`.
    pub(crate) fn refuse(&self, kind: &str, error: &ApiError) {
        self.metrics.refused.with_label_values(&[kind, error.code.as_str()]).inc();
    }

    /// The members' rate limits, for the adapters' per-connection buckets.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    async fn answer(&self, member: PublicKey, request: ClientRequest) -> Result<ClientResponse, ApiError> {
        if !self.is_member(&member) {
            return Err(not_a_member(&member));
        }
        if let Some(refusal) = relayed(&request, &member) {
            return Err(refusal);
        }
        Ok(match request {
            ClientRequest::HasModule(cid) if self.modules.is_cached(&cid) => ClientResponse::HasModule(true),
            ClientRequest::HasModule(cid) => {
                let modules = self.modules.clone();
                ClientResponse::HasModule(
                    blocking(move || modules.contains(&cid).map_err(|e| e.to_string())).await?,
                )
            }
            ClientRequest::PutModule(bytes) => {
                self.check_quota(member, bytes.len()).await?;
                let modules = self.modules.clone();
                let stored = blocking(move || modules.put(bytes, &member, now_ms())).await;
                ClientResponse::ModuleStored(stored.map_err(|e| ApiError::new("invalid_module", e.message))?)
            }
            // Held for this member only: whether bytes someone else keeps are stored here
            // is not theirs to learn.
            ClientRequest::HasInput(cid) => ClientResponse::HasInput(self.readable(member, cid).await?),
            ClientRequest::PutInput(bytes) => {
                icn_protocol::wire::check_input(&bytes)
                    .map_err(|e| ApiError::new("invalid_input", e.to_string()))?;
                self.check_quota(member, bytes.len()).await?;
                let budget = crate::server::reserve(&self.payload_budget, &bytes).await;
                let (reply, stored) = oneshot::channel();
                let put = Event::PutInput { bytes, uploader: member, budget, reply };
                self.events.send(put).await.map_err(|_| stopping())?;
                ClientResponse::InputStored(stored.await.map_err(|_| stopping())?)
            }
            ClientRequest::Output(job) => self.output(member, job).await?,
            ClientRequest::Submit(envelope) => ClientResponse::Submitted(self.submit(envelope).await?),
            ClientRequest::Status(job) => ClientResponse::Job(Box::new(self.job_for(member, job).await?)),
            ClientRequest::Watch(job) => {
                return Err(ApiError::new(
                    "invalid",
                    format!("watching job {job} takes a stream of its own"),
                ));
            }
            ClientRequest::Propose(envelope) => {
                let proposal: Proposal = envelope.open().map_err(|e| refused("proposal", e.into()))?;
                let made = self.write(move |core, now| core.propose(now, envelope, proposal)).await?;
                let (proposal, closes_ms) = made.map_err(|e| refused("proposal", e))?;
                ClientResponse::Proposed { proposal, closes_ms }
            }
            ClientRequest::Vote(envelope) => {
                let ballot: Ballot = envelope.open().map_err(|e| refused("ballot", e.into()))?;
                let proposal = ballot.proposal;
                self.write(move |core, now| core.vote(now, envelope, ballot))
                    .await?
                    .map_err(|e| refused("ballot", e))?;
                ClientResponse::Voted { proposal }
            }
            ClientRequest::Complete { kind, prefix } => {
                let bounds = icn_protocol::prefix_bounds(&prefix).map_err(|e| ApiError::new("invalid", e))?;
                let mut ids = self.read(move |core| core.complete(kind, bounds, COMPLETIONS_MAX)).await?;
                if kind == IdKind::Job {
                    // Jobs that left memory are in the journal's index.
                    let readers = self.readers.clone();
                    let (lo, hi) = bounds;
                    let found = blocking(move || {
                        readers.with(|r| r.jobs_between(&lo, &hi, COMPLETIONS_MAX).map_err(|e| e.to_string()))
                    });
                    ids.extend(found.await?);
                    ids.sort_unstable();
                    ids.dedup();
                    ids.truncate(COMPLETIONS_MAX);
                }
                ClientResponse::Completions(ids.iter().map(hex::encode).collect())
            }
            ClientRequest::Cancel(envelope) => {
                let request: Cancel = envelope.open().map_err(|e| refused("cancel", e.into()))?;
                let job = request.job;
                let cancelled = self.write_journaled(move |core, now, journal| {
                    // Ended and forgotten: the journal still knows it.
                    if journal.forgotten(core, &job)? {
                        return Ok(Err(icn_core::Refusal::JobEnded { job, state: "ended".into() }));
                    }
                    Ok(core.cancel(now, envelope, request))
                });
                let view = cancelled
                    .await?
                    .map_err(|e: String| ApiError::new("failed", e))?
                    .map_err(|e| refused("cancel", e))?;
                ClientResponse::Cancelled(Box::new(view))
            }
            ClientRequest::Clear(envelope) => {
                let request: ClearRequest = envelope.open().map_err(|e| refused("clearing", e.into()))?;
                let federation = request.federation.clone();
                let cleared = self.write(move |core, now| core.clear(now, envelope, request)).await?;
                let clearing = cleared.map_err(|e| refused("clearing", e))?;
                ClientResponse::Cleared(icn_core::clearing_view(federation, clearing))
            }
            ClientRequest::Members(page) => {
                ClientResponse::Members(self.read(move |core| core.members(&page)).await?)
            }
            ClientRequest::Scopes => ClientResponse::Scopes(self.read(|core| core.scopes()).await?),
            ClientRequest::Scope(scope, page) => {
                let view = self.read(move |core| core.scope(&scope, &page)).await?;
                ClientResponse::Scope(Box::new(view.map_err(|e| ApiError::new(e.code(), e.to_string()))?))
            }
            ClientRequest::Proposals(page) => {
                ClientResponse::Proposals(self.read(move |core| core.proposals(&page)).await?)
            }
            ClientRequest::Proposal(id) => ClientResponse::Proposal(Box::new(
                self.read(move |core| core.proposal(&id)).await?.ok_or_else(|| {
                    ApiError::new("unknown_proposal", format!("proposal {id} is not known"))
                })?,
            )),
            ClientRequest::Decisions(page) => {
                ClientResponse::Decisions(self.read(move |core| core.decisions(&page)).await?)
            }
            ClientRequest::Decision(seq) => ClientResponse::Decision(Box::new(
                self.read(move |core| core.decision(seq)).await?.ok_or_else(|| {
                    ApiError::new("unknown_decision", format!("entry {seq} is not a decision"))
                })?,
            )),
            ClientRequest::Positions => ClientResponse::Positions(self.read(|core| core.positions()).await?),
            ClientRequest::Jobs(query, page) => {
                if let Some(state) = query.state.as_deref().filter(|s| !JobState::NAMES.contains(s)) {
                    return Err(ApiError::new(
                        "invalid",
                        format!("{state:?} is not a job state; give one of {}", JobState::NAMES.join(", ")),
                    ));
                }
                ClientResponse::Jobs(self.read(move |core| core.jobs_list(&query, &page)).await?)
            }
            ClientRequest::Queue => ClientResponse::Queue(self.read(|core| core.queue()).await?),
            ClientRequest::Plan(envelope) => {
                let submission: Submission = envelope.open().map_err(|e| refused("submission", e.into()))?;
                let signer = envelope.signer;
                let plan = self.read(move |core| core.plan(now_ms(), &signer, &submission)).await?;
                ClientResponse::Plan(Box::new(plan.map_err(|e| refused("submission", e))?))
            }
            ClientRequest::Version => {
                ClientResponse::Version(icn_protocol::wire::VersionView::of(env!("CARGO_PKG_VERSION")))
            }
            ClientRequest::LiveStderr { job, from, wait_ms } => {
                ClientResponse::LiveStderr(Box::new(self.live_stderr(member, job, from, wait_ms).await?))
            }
            ClientRequest::Workers(page) => {
                ClientResponse::Workers(self.read(move |core| core.workers(&page)).await?)
            }
            ClientRequest::Statement(scope, page) => {
                let known = self.read({
                    let scope = scope.clone();
                    move |core| core.governance().scope(&scope).is_ok()
                });
                if !known.await? {
                    return Err(ApiError::new("unknown_scope", format!("scope {scope} does not exist")));
                }
                let statement = self.provenance(true, move |p| p.statement(&scope, &page)).await?;
                ClientResponse::Statement(statement)
            }
            ClientRequest::Entry(seq) => {
                let mut view = self.provenance(true, move |p| p.entry(seq)).await?;
                let readers = self.readers.clone();
                view.seal =
                    blocking(move || readers.with(|r| r.covering_seal(seq).map_err(|e| e.to_string())))
                        .await?;
                ClientResponse::Entry(Box::new(view))
            }
            ClientRequest::Trace(query) => {
                // Lines about a job show its outputs' digests to those who see its results;
                // a decision's lines, which may touch anyone's jobs, show them blinded.
                let blind = match &query {
                    TraceQuery::Job(job) => {
                        let view = self.job(*job).await?;
                        !self.read(move |core| core.sees_job_results(&member, &view)).await?
                    }
                    TraceQuery::Decision(..) => true,
                };
                let trace = self
                    .provenance(blind, move |p| match query {
                        TraceQuery::Job(job) => p.job(&job),
                        TraceQuery::Decision(seq, page) => p.decision(seq, &page),
                    })
                    .await?;
                ClientResponse::Trace(Box::new(trace))
            }
        })
    }

    async fn submit(&self, envelope: Envelope) -> Result<JobId, ApiError> {
        let submission: Submission = envelope.open().map_err(|e| refused("submission", e.into()))?;
        submission.validate().map_err(|e| refused("submission", e.into()))?;
        let (module, input, signer) = (submission.module, submission.input, envelope.signer);
        let (modules, blobs) = (self.modules.clone(), self.blobs.clone());
        // A container job's program is an image id, which workers hold themselves.
        let stored = submission.executor == icn_protocol::wire::ExecutorKind::Wasm;
        let access =
            if (!stored || self.modules.is_cached(&module)) && input == icn_protocol::wire::empty_input() {
                Access::Public
            } else {
                let found = blocking(move || {
                    if stored && !modules.contains(&module).map_err(|e| e.to_string())? {
                        return Ok(None);
                    }
                    Ok(Some(blobs.access(&input).map_err(|e| e.to_string())?))
                });
                found.await?.ok_or_else(|| {
                    ApiError::new(
                        "unknown_module",
                        format!("submission refused: module {module} is not stored here; upload it first"),
                    )
                })?
            };
        let submitted = self.write_journaled(move |core, now, journal| {
            let id = JobId(envelope.id());
            // Sent again after the job ended and left memory: the same job, not a new one.
            if journal.forgotten(core, &id)? {
                return Ok(Ok(id));
            }
            // A job reads its input: only bytes its submitter may read themselves. Whether
            // bytes are stored for someone else is not said either.
            let readable = match &access {
                Access::Public => true,
                Access::Readers(readers) => core.may_read(&signer, readers),
                Access::NotStored => false,
            };
            if !readable {
                return Ok(Err(Refusal::UnknownInput { input }));
            }
            Ok(core.submit(now, envelope, submission))
        });
        let job = submitted
            .await?
            .map_err(|e: String| ApiError::new("failed", e))?
            .map_err(|e| refused("submission", e))?;
        if stored {
            let modules = self.modules.clone();
            blocking(move || modules.touch(&module, now_ms()).map_err(|e| e.to_string())).await?;
        }
        Ok(job)
    }

    /// Whether `member` may read the payload `cid` (and so name it as an input).
    async fn readable(&self, member: PublicKey, cid: icn_protocol::ContentId) -> Result<bool, ApiError> {
        let blobs = self.blobs.clone();
        match blocking(move || blobs.access(&cid).map_err(|e| e.to_string())).await? {
            Access::Public => Ok(true),
            Access::NotStored => Ok(false),
            Access::Readers(readers) => self.read(move |core| core.may_read(&member, &readers)).await,
        }
    }

    /// Refuses an upload of `bytes` that would take `member` past their upload quota.
    async fn check_quota(&self, member: PublicKey, bytes: usize) -> Result<(), ApiError> {
        let retention = self.blobs.retention();
        let (modules, blobs, quota) =
            (self.modules.clone(), self.blobs.clone(), retention.upload_quota_bytes);
        let used = blocking(move || {
            let modules = modules.uploaded_bytes(&member).map_err(|e| e.to_string())?;
            Ok(modules + blobs.uploaded_bytes(&member).map_err(|e| e.to_string())?)
        });
        let used = used.await?;
        if used.saturating_add(bytes as u64) > quota {
            return Err(ApiError::new(
                "quota",
                format!(
                    "upload refused: your uploads stored here take {used} bytes and this one {bytes}, past your quota \
                     of {quota} bytes; inputs go {} days after upload and modules {} days after a job last named \
                     them, or ask the operator for a larger quota (upload_quota_bytes)",
                    retention.retention_ms / 86_400_000,
                    crate::modules::MODULE_UNUSED_RETENTION_MS / 86_400_000
                ),
            ));
        }
        Ok(())
    }

    /// The output a job's accepted result named, from the payload store.
    async fn output(&self, member: PublicKey, job: JobId) -> Result<ClientResponse, ApiError> {
        let view = self.job(job).await?;
        if !self.sees(member, &view).await? {
            return Err(private_data(&job, &view.scope, "output"));
        }
        let Some((_, report)) = view.result.filter(|_| view.state == icn_protocol::wire::JobState::Completed)
        else {
            return Err(ApiError::new(
                "no_output",
                format!(
                    "job {job} has no output: it is {}, and only a completed job has one (`icn status` says why)",
                    view.state.name()
                ),
            ));
        };
        let digest = report.output_digest;
        let blobs = self.blobs.clone();
        let found =
            blocking(move || blobs.fetch_output(&digest, now_ms()).map_err(|e| e.to_string())).await?;
        match found {
            Ok(bytes) => Ok(ClientResponse::Output { job, digest, bytes }),
            Err(Missing::Expired { dropped_ms }) => Err(ApiError::new(
                "expired",
                format!(
                    "the output of job {job} ({} bytes, digest {digest}) was kept until {} and is no longer stored; \
                     the journal's digest still proves what it was",
                    report.output_bytes,
                    icn_protocol::views::when(dropped_ms)
                ),
            )),
            Err(Missing::Unknown) => Err(ApiError::new(
                "missing",
                format!("the output of job {job} (digest {digest}) is not stored at this coordinator"),
            )),
        }
    }

    /// A job's view: from the core while it holds the job, else from the journal's
    /// index (an ended job that left memory).
    pub async fn job(&self, job: JobId) -> Result<JobView, ApiError> {
        if let Some(view) = self.read(move |core| core.job(&job)).await? {
            return Ok(view);
        }
        self.provenance(false, move |p| p.job_view(&job)).await?.ok_or_else(|| unknown_job(&job))
    }

    /// A job's view as `member` may see it: without its stderr when what the job made
    /// is not theirs to read ([`Core::sees_job_data`]).
    pub async fn job_for(&self, member: PublicKey, job: JobId) -> Result<JobView, ApiError> {
        // A job in memory is viewed and redacted in one trip to the core's thread.
        let blinding = self.blinding;
        if let Some(view) =
            self.read(move |core| core.job(&job).map(|view| redact(core, &member, &blinding, view))).await?
        {
            return Ok(view);
        }
        let view =
            self.provenance(false, move |p| p.job_view(&job)).await?.ok_or_else(|| unknown_job(&job))?;
        self.redacted(member, view).await
    }

    async fn sees(&self, member: PublicKey, view: &JobView) -> Result<bool, ApiError> {
        let (scope, submitter) = (view.scope.clone(), view.submitter);
        self.read(move |core| core.sees_job_data(&member, &scope, &submitter)).await
    }

    async fn redacted(&self, member: PublicKey, view: JobView) -> Result<JobView, ApiError> {
        if view.result.is_none() {
            return Ok(view);
        }
        let blinding = self.blinding;
        self.read(move |core| redact(core, &member, &blinding, view)).await
    }

    /// A trace or statement, read from the journal's index on a blocking thread, naming
    /// members as the commons knows them now; output digests in its lines blinded when
    /// `blind` (for a member who may not read them).
    async fn provenance<T: Send + 'static>(
        &self,
        blind: bool,
        build: impl FnOnce(&Provenance<'_, JournalReader>) -> Result<T, String> + Send + 'static,
    ) -> Result<T, ApiError> {
        let names = self.read(|core| core.names()).await?;
        let readers = self.readers.clone();
        let blinding = blind.then_some(self.blinding);
        let built = blocking(move || {
            readers.with(|reader| build(&Provenance::new(reader, &names).blinded(blinding)))
        });
        built.await.map_err(|e| ApiError::new("not_found", e.message))
    }

    /// What `job`'s module wrote to stderr from offset `from` on, as its worker sends it
    /// while it runs: at once when there are bytes or the job is no longer queued or
    /// running, else when some come or `wait_ms` pass (at most
    /// [`LIVE_STDERR_WAIT_MS_MAX`]). Only for those who may read what the job made.
    pub async fn live_stderr(
        &self,
        member: PublicKey,
        job: JobId,
        from: u64,
        wait_ms: u64,
    ) -> Result<LiveStderr, ApiError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(wait_ms.min(LIVE_STDERR_WAIT_MS_MAX));
        loop {
            let changed = self.live.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let in_memory = self
                .read(move |core| {
                    core.job(&job).map(|v| (core.sees_job_data(&member, &v.scope, &v.submitter), v))
                })
                .await?;
            let (sees, view) = match in_memory {
                Some(seen) => seen,
                None => {
                    let view = self.job(job).await?;
                    (self.sees(member, &view).await?, view)
                }
            };
            if !sees {
                return Err(private_data(&job, &view.scope, "stderr"));
            }
            let read = self.live.read(&job, from);
            let open = matches!(view.state, JobState::Queued | JobState::Running { .. });
            let now = tokio::time::Instant::now();
            if !read.bytes.is_empty() || read.skipped > 0 || !open || now >= deadline {
                let crate::live::Read { worker, from, bytes, next, skipped, .. } = read;
                return Ok(LiveStderr { job, state: view.state, worker, from, stderr: bytes, next, skipped });
            }
            // The job's own state changes (it is cancelled, its report is taken) are looked
            // at again every second, and soon after the followed run's stream ends.
            let slice = if read.ended { LIVE_STDERR_ENDED_RECHECK_MS } else { LIVE_STDERR_RECHECK_MS };
            let _ = tokio::time::timeout_at(deadline.min(now + Duration::from_millis(slice)), changed).await;
        }
    }

    /// Follows `job`: its view now and at every change, until it ends or goes into dispute.
    pub async fn watch(&self, member: PublicKey, job: JobId) -> Result<Watching<'_>, ApiError> {
        if !self.is_member(&member) {
            return Err(not_a_member(&member));
        }
        {
            let mut watching = self.watching.lock().expect("watching lock");
            let count = watching.entry(member).or_default();
            if *count >= WATCHERS_PER_MEMBER_MAX {
                return Err(ApiError::new(
                    "too_many_watches",
                    format!("you follow {count} jobs at once, the limit; stop following some first"),
                ));
            }
            *count += 1;
        }
        let mut guard = Watching { api: self, member, job, seen: false, updates: None };
        let (updates, receiver) = mpsc::channel(WATCH_UPDATES_MAX);
        self.events.send(Event::Watch { job, updates }).await.map_err(|_| stopping())?;
        guard.updates = Some(receiver);
        Ok(guard)
    }
}

/// Open journal readers, reused across requests (opening one reads the schema).
struct Readers {
    journal: PathBuf,
    idle: Mutex<Vec<JournalReader>>,
}

impl Readers {
    /// Runs `read` on an idle reader, or a new one. Blocking.
    fn with<T>(&self, read: impl FnOnce(&JournalReader) -> Result<T, String>) -> Result<T, String> {
        let idle = self.idle.lock().expect("readers lock").pop();
        let reader = match idle {
            Some(reader) => reader,
            None => JournalReader::open(&self.journal).map_err(|e| e.to_string())?,
        };
        let result = read(&reader);
        let mut idle = self.idle.lock().expect("readers lock");
        if idle.len() < READERS_MAX {
            idle.push(reader);
        }
        result
    }
}

/// A job being followed; the member's count of followed jobs goes down when it is dropped.
pub struct Watching<'a> {
    api: &'a MemberApi,
    member: PublicKey,
    job: JobId,
    /// Whether a view was given yet.
    seen: bool,
    updates: Option<mpsc::Receiver<JobView>>,
}

impl Watching<'_> {
    /// The next view; `None` when the job ended (after its last view), or is unknown
    /// (before any view). A job the core no longer holds gets its one, final view from
    /// the journal.
    pub async fn next(&mut self) -> Option<JobView> {
        let view = match self.updates.as_mut()?.recv().await {
            Some(view) => Some(view),
            None if !self.seen => self.api.job(self.job).await.ok(),
            None => None,
        };
        let view = match view {
            Some(view) => self.api.redacted(self.member, view).await.ok(),
            None => None,
        };
        self.seen |= view.is_some();
        if view.is_none() {
            self.updates = None;
        }
        view
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        let mut watching = self.api.watching.lock().expect("watching lock");
        if let Some(count) = watching.get_mut(&self.member) {
            *count -= 1;
            if *count == 0 {
                watching.remove(&self.member);
            }
        }
    }
}

/// `view` without its stderr when what the job made is not `member`'s to read, and with
/// its output digest blinded when its results are not ([`Core::sees_job_results`]).
fn redact(core: &Core, member: &PublicKey, blinding: &[u8; 32], mut view: JobView) -> JobView {
    let sees_data = core.sees_job_data(member, &view.scope, &view.submitter);
    let sees_results = core.sees_job_results(member, &view);
    let job = view.job;
    if let Some((_, report)) = view.result.as_mut() {
        if !sees_data {
            report.stderr.clear();
        }
        if !sees_results {
            report.output_digest = icn_core::trace::blinded_digest(blinding, &job, &report.output_digest);
        }
    }
    view
}

/// Runs blocking work (SQLite) off the async threads; its error becomes an API error.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(ApiError::new("failed", message)),
        Err(e) => Err(ApiError::new("failed", e.to_string())),
    }
}

/// A member's connection carries only statements the member signed: a signed envelope
/// is evidence of who asked, and a connection relaying another member's envelopes could
/// replay them. The refusal, when `request` carries someone else's.
fn relayed(request: &ClientRequest, member: &PublicKey) -> Option<ApiError> {
    let envelope = match request {
        ClientRequest::Submit(e)
        | ClientRequest::Plan(e)
        | ClientRequest::Propose(e)
        | ClientRequest::Vote(e)
        | ClientRequest::Clear(e)
        | ClientRequest::Cancel(e) => e,
        _ => return None,
    };
    (envelope.signer != *member).then(|| {
        ApiError::new(
            "relayed",
            format!(
                "refused: this connection is member {}'s and cannot carry a statement signed by {}; each member \
                 sends their own",
                member.short(),
                envelope.signer.short()
            ),
        )
    })
}
