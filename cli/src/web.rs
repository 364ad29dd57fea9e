//! The member's side of the HTTP/JSON API: every request signed with the member's key
//! here, on the member's machine (`icn_protocol::request`), statements sealed into the
//! same envelopes the QUIC client sends. `icn ui` and `icn bench --http` use it.

use std::sync::Arc;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use icn_coordinator::http::EnvelopeJson;
use icn_protocol::governance::{Ballot, Choice, Proposal};
use icn_protocol::request::SignedRequest;
use icn_protocol::wire::{ApiError, Cancel, JobView};
use icn_protocol::{ContentId, Envelope, JobId, Keypair, PublicKey, Signed};
use serde::de::DeserializeOwned;

use crate::client::JobRequest;

/// A refusal as the coordinator sent it: the HTTP status and its `{code, message}`.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: u16,
    pub error: ApiError,
    /// Seconds to wait before asking again, when the coordinator said (`Retry-After`).
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error.message)
    }
}

impl std::error::Error for Refused {}

/// A signed HTTP client of one coordinator's member API.
#[derive(Clone)]
pub struct WebClient {
    base: String,
    key: Arc<Keypair>,
    http: reqwest::Client,
}

/// When a request is made: ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl WebClient {
    /// A client of the API at `base` (such as `http://127.0.0.1:9700`) signing as `key`.
    pub fn new(base: &str, key: Arc<Keypair>) -> WebClient {
        // A coordinator closes a connection idle for its head timeout; ours go a second
        // earlier, so a request never meets a connection the server is closing.
        let idle = std::time::Duration::from_millis(icn_transport::http::HEAD_READ_MS - 1_000);
        let http = reqwest::Client::builder().pool_idle_timeout(idle).build().expect("a TLS backend");
        WebClient { base: base.trim_end_matches('/').to_string(), key, http }
    }

    pub fn member(&self) -> PublicKey {
        self.key.public()
    }

    /// Sends `body` to `target` (a path with its query) signed; the status, the seconds
    /// `Retry-After` asks to wait (if it does) and the body.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Option<u64>, Vec<u8>)> {
        let headers = SignedRequest::sign(&self.key, icn_transport::nonce(), method, target, now_ms(), &body);
        let method = reqwest::Method::from_bytes(method.as_bytes()).context("an HTTP method")?;
        let mut request = self.http.request(method, format!("{}{target}", self.base));
        for (name, value) in headers.pairs() {
            request = request.header(name, value);
        }
        let response = request
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach the coordinator's HTTP API at {}", self.base))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let bytes = response.bytes().await.context("reading the coordinator's answer")?;
        Ok((status, retry_after, bytes.to_vec()))
    }

    /// A signed request whose answer is `T` in JSON; a refusal is a [`Refused`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        target: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<T> {
        let (status, retry_after, bytes) = self.send(method, target, body).await?;
        if !(200..300).contains(&status) {
            let error: ApiError = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                ApiError::new("failed", format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)))
            });
            return Err(Refused { status, error, retry_after }.into());
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("the answer to {method} {target} is not what it should be"))
    }

    pub async fn get<T: DeserializeOwned>(&self, target: &str) -> anyhow::Result<T> {
        self.call("GET", target, Vec::new()).await
    }

    /// Seals `statement` with a fresh nonce and posts it to `target`.
    pub async fn post_signed<M: Signed, T: DeserializeOwned>(
        &self,
        target: &str,
        statement: &M,
    ) -> anyhow::Result<T> {
        let envelope = Envelope::seal(&self.key, icn_transport::nonce(), statement);
        let body = serde_json::to_vec(&EnvelopeJson::of(&envelope)).expect("an envelope encodes as JSON");
        self.call("POST", target, body).await
    }

    /// Uploads a job's input and submits it signed; the job's id.
    pub async fn submit(&self, job: &JobRequest) -> anyhow::Result<JobId> {
        let stored: serde_json::Value = self.call("PUT", "/v1/inputs", job.input.clone()).await?;
        anyhow::ensure!(
            stored["id"].as_str() == Some(job.submission.input.to_string().as_str()),
            "the coordinator stored the input under another id: {stored}"
        );
        let submitted: serde_json::Value = self.post_signed("/v1/jobs", &job.submission).await?;
        let job = submitted["job"].as_str().context("the answer names no job")?;
        Ok(job.parse()?)
    }

    pub async fn put_module(&self, bytes: &[u8]) -> anyhow::Result<ContentId> {
        let stored: serde_json::Value = self.call("PUT", "/v1/modules", bytes.to_vec()).await?;
        Ok(stored["id"].as_str().context("the answer names no module")?.parse()?)
    }

    pub async fn status(&self, job: JobId) -> anyhow::Result<JobView> {
        self.get(&format!("/v1/jobs/{job}")).await
    }

    /// A job's accepted output.
    pub async fn output(&self, job: JobId) -> anyhow::Result<Vec<u8>> {
        let output: serde_json::Value = self.get(&format!("/v1/jobs/{job}/output")).await?;
        let bytes = output["bytes"].as_str().context("the answer carries no bytes")?;
        Ok(BASE64.decode(bytes)?)
    }

    pub async fn vote(
        &self,
        proposal: ContentId,
        choice: Choice,
        reason: Option<String>,
    ) -> anyhow::Result<()> {
        let ballot = Ballot { proposal, choice, reason };
        let _: serde_json::Value =
            self.post_signed(&format!("/v1/proposals/{proposal}/ballots"), &ballot).await?;
        Ok(())
    }

    pub async fn propose(&self, proposal: &Proposal) -> anyhow::Result<ContentId> {
        let made: serde_json::Value = self.post_signed("/v1/proposals", proposal).await?;
        Ok(made["proposal"].as_str().context("the answer names no proposal")?.parse()?)
    }

    pub async fn cancel(&self, job: JobId) -> anyhow::Result<JobView> {
        self.post_signed(&format!("/v1/jobs/{job}/cancel"), &Cancel { job }).await
    }
}
