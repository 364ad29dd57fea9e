//! A member's client: uploads modules, submits signed jobs and follows them.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use icn_coordinator::trace::{Statement, Trace};
use icn_governance::Governance;
use icn_protocol::frame::{read_frame, write_frame};
use icn_protocol::governance::{Ballot, Choice, ClearRequest, Proposal, ScopeId};
use icn_protocol::transport::{self, Session};
use icn_protocol::wire::{
    ClientRequest, ClientResponse, Hello, JobView, MESSAGE_SIZE_BYTES_MAX, Role, Submission, TraceQuery,
};
use icn_protocol::{ContentId, Envelope, JobId, Keypair, PublicKey};
use quinn::Endpoint;

pub struct Client {
    key: Arc<Keypair>,
    session: Session,
    _endpoint: Endpoint,
}

impl Client {
    pub async fn connect(
        addr: SocketAddr,
        coordinator: PublicKey,
        key: Arc<Keypair>,
    ) -> anyhow::Result<Client> {
        let endpoint = transport::client_endpoint()?;
        let hello = Hello { role: Role::Member, channel_binding: [0; 32], agent: agent(), capacity: None };
        let session = transport::connect(&endpoint, addr, coordinator, &key, hello)
            .await
            .with_context(|| format!("cannot reach the coordinator at {addr}"))?;
        Ok(Client { key, session, _endpoint: endpoint })
    }

    /// The QUIC connection, for callers that speak the protocol directly.
    pub fn connection(&self) -> &quinn::Connection {
        &self.session.connection
    }

    async fn request(&self, request: &ClientRequest) -> anyhow::Result<ClientResponse> {
        let (mut send, mut recv) = self.session.connection.open_bi().await?;
        write_frame(&mut send, request).await?;
        send.finish()?;
        read_frame(&mut recv, MESSAGE_SIZE_BYTES_MAX)
            .await?
            .context("the coordinator closed the request without an answer")
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
            ClientResponse::Error(reason) => bail!("module upload refused: {reason}"),
            other => bail!(unexpected(other)),
        }
    }

    /// Signs and submits; returns once the coordinator has journaled the job.
    pub async fn submit(&self, submission: &Submission) -> anyhow::Result<JobId> {
        let envelope = Envelope::seal(&self.key, transport::nonce(), submission);
        match self.request(&ClientRequest::Submit(envelope)).await? {
            ClientResponse::Submitted(job) => Ok(job),
            ClientResponse::Error(reason) => bail!("{reason}"),
            other => bail!(unexpected(other)),
        }
    }

    /// Signs and makes a proposal; returns its id and when voting closes (ms).
    pub async fn propose(&self, proposal: &Proposal) -> anyhow::Result<(ContentId, u64)> {
        let envelope = Envelope::seal(&self.key, transport::nonce(), proposal);
        match self.request(&ClientRequest::Propose(envelope)).await? {
            ClientResponse::Proposed { proposal, closes_ms } => Ok((proposal, closes_ms)),
            ClientResponse::Error(reason) => bail!("{reason}"),
            other => bail!(unexpected(other)),
        }
    }

    /// Signs and casts a ballot.
    pub async fn vote(&self, proposal: ContentId, choice: Choice) -> anyhow::Result<()> {
        let envelope = Envelope::seal(&self.key, transport::nonce(), &Ballot { proposal, choice });
        match self.request(&ClientRequest::Vote(envelope)).await? {
            ClientResponse::Voted { .. } => Ok(()),
            ClientResponse::Error(reason) => bail!("{reason}"),
            other => bail!(unexpected(other)),
        }
    }

    /// The coordinator's governance state now.
    pub async fn governance(&self) -> anyhow::Result<Governance> {
        serde_json::from_str(&self.json(&ClientRequest::Governance).await?)
            .context("the coordinator's governance document does not parse")
    }

    pub async fn trace(&self, query: TraceQuery) -> anyhow::Result<Trace> {
        serde_json::from_str(&self.json(&ClientRequest::Trace(query)).await?)
            .context("the coordinator's trace document does not parse")
    }

    pub async fn workers(&self) -> anyhow::Result<Vec<icn_coordinator::core::WorkerView>> {
        serde_json::from_str(&self.json(&ClientRequest::Workers).await?)
            .context("the coordinator's workers do not parse")
    }

    pub async fn positions(&self) -> anyhow::Result<icn_ledger::Positions> {
        serde_json::from_str(&self.json(&ClientRequest::Positions).await?)
            .context("the coordinator's positions do not parse")
    }

    pub async fn statement(&self, scope: ScopeId) -> anyhow::Result<Statement> {
        serde_json::from_str(&self.json(&ClientRequest::Statement(scope)).await?)
            .context("the coordinator's statement does not parse")
    }

    /// Asks for the obligations within `federation` to be netted; signed by this member.
    pub async fn clear(&self, federation: ScopeId) -> anyhow::Result<icn_ledger::Clearing> {
        let envelope = Envelope::seal(&self.key, transport::nonce(), &ClearRequest { federation });
        serde_json::from_str(&self.json(&ClientRequest::Clear(envelope)).await?)
            .context("the coordinator's clearing does not parse")
    }

    async fn json(&self, request: &ClientRequest) -> anyhow::Result<String> {
        match self.request(request).await? {
            ClientResponse::Json(json) => Ok(json),
            ClientResponse::Error(reason) => bail!("{reason}"),
            other => bail!(unexpected(other)),
        }
    }

    pub async fn status(&self, job: JobId) -> anyhow::Result<JobView> {
        match self.request(&ClientRequest::Status(job)).await? {
            ClientResponse::Job(view) => Ok(*view),
            ClientResponse::Error(reason) => bail!("{reason}"),
            other => bail!(unexpected(other)),
        }
    }

    /// Follows a job until it ends, calling `on_update` at every change.
    pub async fn watch(&self, job: JobId, mut on_update: impl FnMut(&JobView)) -> anyhow::Result<JobView> {
        let (mut send, mut recv) = self.session.connection.open_bi().await?;
        write_frame(&mut send, &ClientRequest::Watch(job)).await?;
        send.finish()?;
        let mut last = None;
        while let Some(response) = read_frame::<_, ClientResponse>(&mut recv, MESSAGE_SIZE_BYTES_MAX).await? {
            match response {
                ClientResponse::Job(view) => {
                    on_update(&view);
                    last = Some(*view);
                }
                ClientResponse::Error(reason) => bail!("{reason}"),
                other => bail!(unexpected(other)),
            }
        }
        last.context("the coordinator ended the watch without a final state")
    }
}

fn unexpected(response: ClientResponse) -> String {
    format!("unexpected answer from the coordinator: {response:?}")
}

pub fn agent() -> String {
    format!("icn/{}", env!("CARGO_PKG_VERSION"))
}
