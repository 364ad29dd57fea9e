//! A member's client: uploads modules, submits signed jobs and follows them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use icn_protocol::governance::{Ballot, Choice, ClearRequest, Proposal, ScopeId};
use icn_protocol::views::{
    ClearingView, DecisionView, MemberView, PAGE_ITEMS_MAX, Page, Paged, PositionsView, ProposalView,
    ScopeSummary, ScopeView, Statement, Trace, WorkerView,
};
use icn_protocol::wire::{
    Answer, ClientRequest, ClientResponse, Hello, IdKind, JobSummary, JobView, JobsQuery, LiveStderr,
    MESSAGE_SIZE_BYTES_MAX, Role, Submission, TraceQuery,
};
use icn_protocol::{ContentId, Envelope, JobId, Keypair, PublicKey, Seal, SealKeeper};
use icn_transport::endpoint::{self as transport, Session};
use quinn::Endpoint;

pub struct Client {
    key: Arc<Keypair>,
    session: Session,
    _endpoint: Endpoint,
    /// The highest journal seal this member has seen from the coordinator.
    seals: Mutex<SealKeeper>,
    /// Where the seal outlives this process, if anywhere.
    seal_file: Option<PathBuf>,
}

impl Client {
    /// Connects with a seal kept in memory only.
    pub async fn connect(
        addr: SocketAddr,
        coordinator: PublicKey,
        key: Arc<Keypair>,
    ) -> anyhow::Result<Client> {
        Self::connect_keeping(addr, coordinator, key, None).await
    }

    /// Connects, checking the coordinator against the seal kept in `seal_file` (if any)
    /// and keeping the highest seal it shows there.
    pub async fn connect_keeping(
        addr: SocketAddr,
        coordinator: PublicKey,
        key: Arc<Keypair>,
        seal_file: Option<PathBuf>,
    ) -> anyhow::Result<Client> {
        let kept = match &seal_file {
            Some(path) => read_seal(path)?,
            None => None,
        };
        let mut seals = SealKeeper::new(coordinator, kept).map_err(|e| {
            anyhow::anyhow!(
                "{e} (in {})",
                seal_file.as_ref().map_or("memory".into(), |p| p.display().to_string())
            )
        })?;
        let endpoint = transport::client_endpoint()?;
        let hello = Hello {
            role: Role::Member,
            channel_binding: [0; 32],
            agent: agent(),
            capacity: None,
            seen: None,
            running: vec![],
        };
        let session = transport::connect(&endpoint, addr, coordinator, &key, hello, &mut seals)
            .await
            .map_err(|e| refuse_history(e.into(), seal_file.as_ref()))
            .with_context(|| format!("cannot use the coordinator at {addr}"))?;
        let client = Client { key, session, _endpoint: endpoint, seals: Mutex::new(seals), seal_file };
        client.save_seal();
        Ok(client)
    }

    /// The highest seal this client has seen: what a member can check a journal
    /// against (`icn journal verify --expect`).
    pub fn seal(&self) -> Option<Seal> {
        self.seals.lock().expect("seal lock").kept()
    }

    /// Checks the seal an answer carries and keeps it if it is the highest yet.
    fn observe(&self, seal: &Seal) -> anyhow::Result<()> {
        let raised =
            self.seals.lock().expect("seal lock").check(seal).map_err(|e| {
                refuse_history(icn_transport::Error::History(e).into(), self.seal_file.as_ref())
            })?;
        if raised {
            self.save_seal();
        }
        Ok(())
    }

    fn save_seal(&self) {
        let (Some(path), Some(seal)) = (&self.seal_file, self.seal()) else { return };
        if let Err(e) = write_seal(path, &seal) {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep the coordinator's seal");
        }
    }

    /// Reads one answer frame; `None` when the stream ended.
    async fn read_answer(
        &self,
        recv: &mut icn_transport::FrameReader<quinn::RecvStream>,
    ) -> anyhow::Result<Option<ClientResponse>> {
        let Some(answer) = recv.read::<Answer>(MESSAGE_SIZE_BYTES_MAX).await? else {
            return Ok(None);
        };
        self.observe(&answer.seal)?;
        Ok(Some(answer.response))
    }

    /// The QUIC connection, for callers that speak the protocol directly.
    pub fn connection(&self) -> &quinn::Connection {
        &self.session.connection
    }

    /// One typed request and its answer, as the member API gives it.
    /// The member's key this client signs with.
    pub fn key(&self) -> &Keypair {
        &self.key
    }

    pub async fn request(&self, request: &ClientRequest) -> anyhow::Result<ClientResponse> {
        let (mut send, mut recv) = icn_transport::open(&self.session.connection).await?;
        send.write(request).await?;
        send.get_mut().finish()?;
        self.read_answer(&mut recv).await?.context("the coordinator closed the request without an answer")
    }

    /// Makes sure the coordinator holds the module; returns its content id.
    pub async fn ensure_module(&self, bytes: &[u8]) -> anyhow::Result<ContentId> {
        let cid = ContentId::of(bytes);
        match self.request(&ClientRequest::HasModule(cid)).await? {
            ClientResponse::HasModule(true) => return Ok(cid),
            ClientResponse::HasModule(false) => {}
            other => bail!(unexpected(other)),
        }
        match self.request(&ClientRequest::PutModule(bytes.to_vec())).await? {
            ClientResponse::ModuleStored(stored) if stored == cid => Ok(cid),
            ClientResponse::Error(error) => bail!("module upload refused: {}", error.message),
            other => bail!(unexpected(other)),
        }
    }

    /// Makes sure the coordinator holds a job's input; returns its content id.
    pub async fn ensure_input(&self, bytes: &[u8]) -> anyhow::Result<ContentId> {
        let cid = ContentId::of(bytes);
        if cid == icn_protocol::wire::empty_input() {
            // Every coordinator holds the empty input.
            return Ok(cid);
        }
        match self.request(&ClientRequest::HasInput(cid)).await? {
            ClientResponse::HasInput(true) => return Ok(cid),
            ClientResponse::HasInput(false) => {}
            other => bail!(unexpected(other)),
        }
        match self.request(&ClientRequest::PutInput(bytes.to_vec())).await? {
            ClientResponse::InputStored(stored) if stored == cid => Ok(cid),
            ClientResponse::Error(error) => bail!("input upload refused: {}", error.message),
            other => bail!(unexpected(other)),
        }
    }

    /// Uploads the job's input (once), signs the submission and submits it; returns
    /// once the coordinator has journaled the job.
    pub async fn submit(&self, job: &JobRequest) -> anyhow::Result<JobId> {
        let stored = self.ensure_input(&job.input).await?;
        anyhow::ensure!(
            stored == job.submission.input,
            "the submission names another input than the one given"
        );
        self.submit_signed(&job.submission).await
    }

    /// Signs and submits a submission whose input the coordinator already holds.
    pub async fn submit_signed(&self, submission: &Submission) -> anyhow::Result<JobId> {
        let envelope = Envelope::seal(&self.key, transport::nonce(), submission);
        match self.request(&ClientRequest::Submit(envelope)).await? {
            ClientResponse::Submitted(job) => Ok(job),
            ClientResponse::Error(error) => bail!("{}", error.message),
            other => bail!(unexpected(other)),
        }
    }

    /// Signs and makes a proposal; returns its id and when voting closes (ms).
    pub async fn propose(&self, proposal: &Proposal) -> anyhow::Result<(ContentId, u64)> {
        let envelope = Envelope::seal(&self.key, transport::nonce(), proposal);
        match self.request(&ClientRequest::Propose(envelope)).await? {
            ClientResponse::Proposed { proposal, closes_ms } => Ok((proposal, closes_ms)),
            ClientResponse::Error(error) => bail!("{}", error.message),
            other => bail!(unexpected(other)),
        }
    }

    /// Every job the coordinator holds that passes `query`, newest first, page by page
    /// (at most `most`).
    pub async fn jobs(&self, query: &JobsQuery, most: usize) -> anyhow::Result<Vec<JobSummary>> {
        let request = |page| ClientRequest::Jobs(query.clone(), page);
        let mut jobs = self
            .pages(request, most, |r| match r {
                ClientResponse::Jobs(page) => Some(page),
                _ => None,
            })
            .await?;
        jobs.truncate(most);
        Ok(jobs)
    }

    /// The member this client speaks for.
    pub fn member(&self) -> PublicKey {
        self.key.public()
    }

    /// The ids of `kind` that start with `prefix`, as the coordinator knows them.
    pub async fn complete(&self, kind: IdKind, prefix: &str) -> anyhow::Result<Vec<String>> {
        let request = ClientRequest::Complete { kind, prefix: prefix.to_string() };
        match self.request(&request).await? {
            ClientResponse::Completions(ids) => Ok(ids),
            ClientResponse::Error(error) => bail!("{}", error.message),
            other => bail!(unexpected(other)),
        }
    }

    /// The full id a member typed, or the one id its prefix names: ids are 64 hex digits,
    /// and any unique start of one (at least 6) will do.
    pub async fn resolve(&self, kind: IdKind, typed: &str) -> anyhow::Result<String> {
        let typed = typed.trim().to_ascii_lowercase();
        if typed.len() == 64 {
            return Ok(typed);
        }
        let ids = self.complete(kind, &typed).await?;
        pick(kind, &typed, &ids)
    }

    pub async fn resolve_job(&self, typed: &str) -> anyhow::Result<JobId> {
        Ok(self.resolve(IdKind::Job, typed).await?.parse()?)
    }

    /// Signs a request to cancel `job`; the job as it stands once cancelled.
    pub async fn cancel(&self, job: JobId) -> anyhow::Result<JobView> {
        let envelope = Envelope::seal(&self.key, transport::nonce(), &icn_protocol::wire::Cancel { job });
        match self.request(&ClientRequest::Cancel(envelope)).await? {
            ClientResponse::Cancelled(view) => Ok(*view),
            ClientResponse::Error(error) => bail!("{}", error.message),
            other => bail!(unexpected(other)),
        }
    }

    /// Signs and casts a ballot.
    pub async fn vote(&self, proposal: ContentId, choice: Choice) -> anyhow::Result<()> {
        self.vote_because(proposal, choice, None).await
    }

    /// Signs and casts a ballot with the voter's reason.
    pub async fn vote_because(
        &self,
        proposal: ContentId,
        choice: Choice,
        reason: Option<String>,
    ) -> anyhow::Result<()> {
        let envelope = Envelope::seal(&self.key, transport::nonce(), &Ballot { proposal, choice, reason });
        match self.request(&ClientRequest::Vote(envelope)).await? {
            ClientResponse::Voted { .. } => Ok(()),
            ClientResponse::Error(error) => bail!("{}", error.message),
            other => bail!(unexpected(other)),
        }
    }

    /// Answers the request or says why not: the refusal's sentence becomes the error.
    async fn call(&self, request: ClientRequest) -> anyhow::Result<ClientResponse> {
        match self.request(&request).await? {
            ClientResponse::Error(error) => bail!("{}", error.message),
            response => Ok(response),
        }
    }

    /// Every page of a list, one request a page.
    async fn all<T>(
        &self,
        request: impl Fn(Page) -> ClientRequest,
        items: impl Fn(ClientResponse) -> Option<Paged<T>>,
    ) -> anyhow::Result<Vec<T>> {
        self.pages(request, usize::MAX, items).await
    }

    /// Pages of a list until it ends or holds at least `most` items.
    async fn pages<T>(
        &self,
        request: impl Fn(Page) -> ClientRequest,
        most: usize,
        items: impl Fn(ClientResponse) -> Option<Paged<T>>,
    ) -> anyhow::Result<Vec<T>> {
        let mut all = Vec::new();
        let mut page = Page::first(PAGE_ITEMS_MAX);
        loop {
            let response = self.call(request(page)).await?;
            let paged = match items(response) {
                Some(paged) => paged,
                None => bail!("unexpected answer from the coordinator to a list request"),
            };
            all.extend(paged.items);
            match paged.next {
                Some(next) if all.len() < most => page.after = Some(next),
                _ => return Ok(all),
            }
        }
    }

    pub async fn members(&self) -> anyhow::Result<Vec<MemberView>> {
        self.all(ClientRequest::Members, |r| match r {
            ClientResponse::Members(page) => Some(page),
            _ => None,
        })
        .await
    }

    pub async fn scopes(&self) -> anyhow::Result<Vec<ScopeSummary>> {
        match self.call(ClientRequest::Scopes).await? {
            ClientResponse::Scopes(scopes) => Ok(scopes),
            other => bail!(unexpected(other)),
        }
    }

    /// One scope, with the first page of its members.
    pub async fn scope(&self, scope: ScopeId) -> anyhow::Result<ScopeView> {
        match self.call(ClientRequest::Scope(scope, Page::first(PAGE_ITEMS_MAX))).await? {
            ClientResponse::Scope(view) => Ok(*view),
            other => bail!(unexpected(other)),
        }
    }

    /// Open proposals, oldest first.
    pub async fn proposals(&self) -> anyhow::Result<Vec<ProposalView>> {
        self.all(ClientRequest::Proposals, |r| match r {
            ClientResponse::Proposals(page) => Some(page),
            _ => None,
        })
        .await
    }

    pub async fn proposal(&self, id: ContentId) -> anyhow::Result<ProposalView> {
        match self.call(ClientRequest::Proposal(id)).await? {
            ClientResponse::Proposal(view) => Ok(*view),
            other => bail!(unexpected(other)),
        }
    }

    /// Every decision, oldest first.
    pub async fn decisions(&self) -> anyhow::Result<Vec<DecisionView>> {
        self.all(ClientRequest::Decisions, |r| match r {
            ClientResponse::Decisions(page) => Some(page),
            _ => None,
        })
        .await
    }

    pub async fn decision(&self, seq: u64) -> anyhow::Result<DecisionView> {
        match self.call(ClientRequest::Decision(seq)).await? {
            ClientResponse::Decision(view) => Ok(*view),
            other => bail!(unexpected(other)),
        }
    }

    pub async fn trace(&self, query: TraceQuery) -> anyhow::Result<Trace> {
        match self.call(ClientRequest::Trace(query)).await? {
            ClientResponse::Trace(trace) => Ok(*trace),
            other => bail!(unexpected(other)),
        }
    }

    pub async fn workers(&self) -> anyhow::Result<Vec<WorkerView>> {
        self.all(ClientRequest::Workers, |r| match r {
            ClientResponse::Workers(page) => Some(page),
            _ => None,
        })
        .await
    }

    pub async fn queue(&self) -> anyhow::Result<icn_protocol::views::QueueView> {
        match self.call(ClientRequest::Queue).await? {
            ClientResponse::Queue(queue) => Ok(queue),
            other => bail!(unexpected(other)),
        }
    }

    pub async fn positions(&self) -> anyhow::Result<PositionsView> {
        match self.call(ClientRequest::Positions).await? {
            ClientResponse::Positions(positions) => Ok(positions),
            other => bail!(unexpected(other)),
        }
    }

    /// A scope's whole statement, every page of it.
    pub async fn statement(&self, scope: ScopeId) -> anyhow::Result<Statement> {
        let mut all = Statement { scope: scope.clone(), lines: vec![], next: None };
        let mut page = Page::first(PAGE_ITEMS_MAX);
        loop {
            let statement = match self.call(ClientRequest::Statement(scope.clone(), page)).await? {
                ClientResponse::Statement(statement) => statement,
                other => bail!(unexpected(other)),
            };
            all.lines.extend(statement.lines);
            match statement.next {
                Some(next) => page.after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Asks for the obligations within `federation` to be netted; signed by this member.
    pub async fn clear(&self, federation: ScopeId) -> anyhow::Result<ClearingView> {
        let made_ms = icn_coordinator::server::now_ms();
        let envelope = Envelope::seal(&self.key, transport::nonce(), &ClearRequest { federation, made_ms });
        match self.call(ClientRequest::Clear(envelope)).await? {
            ClientResponse::Cleared(clearing) => Ok(clearing),
            other => bail!(unexpected(other)),
        }
    }

    /// A completed job's output, checked against the digest its accepted report named.
    pub async fn output(&self, job: JobId) -> anyhow::Result<Vec<u8>> {
        match self.call(ClientRequest::Output(job)).await? {
            ClientResponse::Output { digest, bytes, .. } => {
                anyhow::ensure!(
                    ContentId::of(&bytes) == digest,
                    "the coordinator sent an output that does not hash to the accepted digest {digest}"
                );
                Ok(bytes)
            }
            other => bail!(unexpected(other)),
        }
    }

    pub async fn status(&self, job: JobId) -> anyhow::Result<JobView> {
        match self.request(&ClientRequest::Status(job)).await? {
            ClientResponse::Job(view) => Ok(*view),
            ClientResponse::Error(error) => bail!("{}", error.message),
            other => bail!(unexpected(other)),
        }
    }

    /// What `job` would do if it were submitted now, signed but not submitted.
    pub async fn plan(&self, job: &JobRequest) -> anyhow::Result<icn_protocol::wire::PlanView> {
        let envelope = Envelope::seal(&self.key, transport::nonce(), &job.submission);
        match self.call(ClientRequest::Plan(envelope)).await? {
            ClientResponse::Plan(plan) => Ok(*plan),
            other => bail!(unexpected(other)),
        }
    }

    /// The coordinator's software version and protocol. A coordinator that does not know
    /// the question is older than this request.
    pub async fn version(&self) -> anyhow::Result<icn_protocol::wire::VersionView> {
        match self.request(&ClientRequest::Version).await? {
            ClientResponse::Version(version) => Ok(version),
            ClientResponse::Error(error) if error.code == "bad_request" => {
                bail!(
                    "the coordinator does not say its version: it is older than `icn version` ({})",
                    error.message
                )
            }
            ClientResponse::Error(error) => bail!("{}", error.message),
            other => bail!(unexpected(other)),
        }
    }

    /// What a running job's module wrote to stderr from offset `from` on, waiting up to
    /// `wait_ms` for bytes when none are there yet.
    pub async fn live_stderr(&self, job: JobId, from: u64, wait_ms: u64) -> anyhow::Result<LiveStderr> {
        match self.call(ClientRequest::LiveStderr { job, from, wait_ms }).await? {
            ClientResponse::LiveStderr(live) => Ok(*live),
            other => bail!(unexpected(other)),
        }
    }

    /// Follows a job until it ends, calling `on_update` at every change.
    pub async fn watch(&self, job: JobId, mut on_update: impl FnMut(&JobView)) -> anyhow::Result<JobView> {
        let (mut send, mut recv) = icn_transport::open(&self.session.connection).await?;
        send.write(&ClientRequest::Watch(job)).await?;
        send.get_mut().finish()?;
        let mut last = None;
        while let Some(response) = self.read_answer(&mut recv).await? {
            match response {
                ClientResponse::Job(view) => {
                    on_update(&view);
                    last = Some(*view);
                }
                ClientResponse::Error(error) => bail!("{}", error.message),
                other => bail!(unexpected(other)),
            }
        }
        last.context("the coordinator ended the watch without a final state")
    }
}

/// Where a member's kept seal of coordinator `coordinator` lives: `$ICN_STATE_DIR`, else
/// `$XDG_STATE_HOME/icn`, else `~/.local/state/icn`.
pub fn seal_file(coordinator: &PublicKey) -> Option<PathBuf> {
    let dir = std::env::var_os("ICN_STATE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("icn")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".local/state/icn")))?;
    Some(dir.join(format!("seal-{coordinator}")))
}

pub fn read_seal(path: &std::path::Path) -> anyhow::Result<Option<Seal>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(icn_protocol::decode(&bytes).with_context(|| {
            format!("the kept seal {} does not read; remove it to start over", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read the kept seal {}", path.display())),
    }
}

/// Writes the kept seal to a temporary file and renames it into place, so a crash
/// leaves the old seal or the new one.
fn write_seal(path: &std::path::Path, seal: &Seal) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, icn_protocol::encode(seal))?;
    std::fs::rename(&temporary, path)
}

/// A history error, with what the member can do about it.
fn refuse_history(error: anyhow::Error, seal_file: Option<&PathBuf>) -> anyhow::Error {
    let is_history = error
        .downcast_ref::<icn_transport::Error>()
        .is_some_and(|e| matches!(e, icn_transport::Error::History(_)));
    if !is_history {
        return error;
    }
    let forget = seal_file.map_or(String::new(), |path| {
        format!(
            " If the operator confirms those entries are lost for good, remove {} to accept this history.",
            path.display()
        )
    });
    anyhow::anyhow!(
        "{error}. This client refuses it: jobs, payments or decisions it showed you are no longer in its record. \
         Tell the operator.{forget}"
    )
}

/// A job to submit: the submission to sign and the input bytes it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRequest {
    pub submission: Submission,
    pub input: Vec<u8>,
}

impl JobRequest {
    /// A submission of `module` on `input`; the submission names the input's content id.
    pub fn new(
        scope: icn_protocol::governance::ScopeId,
        executor: icn_protocol::wire::ExecutorKind,
        module: ContentId,
        input: &[u8],
        args: Vec<String>,
        limits: icn_protocol::wire::Limits,
    ) -> Self {
        let submission = Submission {
            scope,
            executor,
            module,
            input: ContentId::of(input),
            args,
            limits,
            options: Default::default(),
        };
        JobRequest { submission, input: input.to_vec() }
    }
}

fn unexpected(response: ClientResponse) -> String {
    format!("unexpected answer from the coordinator: {response:?}")
}

pub fn agent() -> String {
    format!("icn/{}", env!("CARGO_PKG_VERSION"))
}

/// The one id a typed prefix names among the `ids` that start with it; none or several is
/// an error that says so, listing the matches (16 digits each) to tell them apart.
pub fn pick(kind: IdKind, typed: &str, ids: &[String]) -> anyhow::Result<String> {
    match ids {
        [] => bail!("no {kind} known here starts with {typed}"),
        [one] => Ok(one.clone()),
        many => bail!(
            "{typed} is the start of {}{} {kind}s: {}; type more of the id",
            if many.len() >= icn_protocol::wire::COMPLETIONS_MAX { "at least " } else { "" },
            many.len(),
            many.iter().map(|id| &id[..16]).collect::<Vec<_>>().join(", ")
        ),
    }
}
