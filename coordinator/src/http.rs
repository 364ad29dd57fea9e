//! The HTTP/JSON adapter of the member API, beside the QUIC one: the same typed requests
//! and views, so a script or a browser can do what `icn` does.
//!
//! Every request under `/v1` is signed by the member's key on the member's side
//! ([`icn_protocol::request`]: four headers over the method, path, time and body
//! digest); the coordinator never holds a member's key. A request's nonce is refused if
//! it was seen within the clock window, and its time if it is outside it. Statements
//! that become evidence (submissions, proposals, ballots, cancels, clearing requests)
//! travel as the very envelopes the QUIC path carries, in JSON ([`EnvelopeJson`]), so
//! they are idempotent by envelope id as they are there. Errors are `{code, message}`
//! with a status that fits the code; every list is paged; `/openapi.json` is generated
//! from these handlers and the views' own types.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use icn_protocol::governance::{Ballot, ClearRequest, Proposal, ScopeId};
use icn_protocol::request::{
    Claims, NONCE_HEADER, REQUEST_CLOCK_SKEW_MS_MAX, RequestHeaders, SIGNATURE_HEADER, SIGNER_HEADER,
    TIME_HEADER,
};
use icn_protocol::views::{
    DecisionView, EntryView, MemberView, Page, Paged, PositionsView, ProposalView, QueueView, ScopeSummary,
    ScopeView, Statement, Trace, WorkerView,
};
use icn_protocol::wire::{
    ApiError, Cancel, ClientRequest, ClientResponse, IdKind, JobState, JobSummary, JobView, JobsQuery,
    LiveStderr, MODULE_SIZE_BYTES_MAX, PlanView, Submission, TraceQuery, VersionView,
};
use icn_protocol::{ContentId, Envelope, JobId, Kind, PROTOCOL_VERSION, PublicKey, Signature, Signed};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::api::MemberApi;
use crate::limits::Class;
use crate::server::now_ms;

/// The largest body of a request that carries a signed statement (JSON).
pub const STATEMENT_BODY_BYTES_MAX: usize = 64 * 1024;
/// The largest body of an input upload.
pub const INPUT_BODY_BYTES_MAX: usize = icn_protocol::wire::INPUT_SIZE_BYTES_MAX;
/// The largest body of a module upload.
pub const MODULE_BODY_BYTES_MAX: usize = MODULE_SIZE_BYTES_MAX;
/// Nonces remembered at once, over all members. A request's nonce is kept until its
/// time leaves the clock window; only a member's request that passed its signature is
/// remembered, so only members can fill it.
pub const NONCES_MAX: usize = 1 << 18;
/// Nonces remembered for one signer: at most this many signed requests within two clock
/// windows; past it that signer (and no one else) is asked to slow down.
pub const NONCES_PER_SIGNER_MAX: usize = 8192;
/// How long a request's body may take to arrive once its head was accepted.
pub const BODY_READ_MS: u64 = 30_000;
/// The bodies being read at once, in KiB: a member's uploads wait for room past it.
pub const BODIES_KIB_MAX: usize = 64 * 1024;

/// A refusal as HTTP says it: the status that fits its code, and the JSON body.
/// A refusal, and for one over a rate limit, the seconds until the client may ask again
/// (`Retry-After`).
struct Refused(ApiError, Option<u64>);

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused(error, None)
    }
}

impl From<crate::limits::Limited> for Refused {
    fn from(limited: crate::limits::Limited) -> Self {
        let seconds = limited.retry_after_seconds();
        Refused(limited.error, Some(seconds))
    }
}

fn refused(code: &str, message: impl Into<String>) -> Refused {
    Refused(ApiError::new(code, message), None)
}

/// The HTTP status of a refusal with `code`: the codes are the member API's, stable
/// across versions.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "unsigned" | "bad_signature" | "stale_request" => StatusCode::UNAUTHORIZED,
        "not_a_member"
        | "no_standing"
        | "relayed"
        | "not_in_electorate"
        | "executor_not_allowed"
        | "worker_not_admitted"
        | "private" => StatusCode::FORBIDDEN,
        "not_found" | "missing" | "no_route" => StatusCode::NOT_FOUND,
        code if code.starts_with("unknown_") => StatusCode::NOT_FOUND,
        "replayed" | "duplicate_ballot" | "job_ended" | "voting_closed" | "no_output" | "not_in_dispute"
        | "stale" => StatusCode::CONFLICT,
        "expired" => StatusCode::GONE,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
        "too_many_jobs" | "too_many_watches" | "too_many_ballots" | "rate_limited" => {
            StatusCode::TOO_MANY_REQUESTS
        }
        "stopping" | "busy" => StatusCode::SERVICE_UNAVAILABLE,
        "slow_request" => StatusCode::REQUEST_TIMEOUT,
        "failed" => StatusCode::INTERNAL_SERVER_ERROR,
        "invalid" | "invalid_input" | "invalid_module" | "bad_request" | "malformed" | "wrong_kind"
        | "mismatch" => StatusCode::BAD_REQUEST,
        // A refusal by the commons' rules: the request was understood and is not allowed now.
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).expect("views encode as JSON");
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = json(status_of(&self.0.code), &self.0);
        if let Some(seconds) = self.1 {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A signed statement in JSON: the envelope the QUIC path carries, its payload (the
/// statement's canonical encoding, postcard) in base64.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeJson {
    /// The protocol version; 1 when left out.
    #[serde(default)]
    pub version: Option<u16>,
    pub kind: Kind,
    pub signer: PublicKey,
    /// A number the signer never used before for a statement.
    pub seq: u64,
    /// The statement's canonical encoding (postcard), base64.
    pub payload: String,
    pub signature: Signature,
}

impl EnvelopeJson {
    pub fn of(envelope: &Envelope) -> EnvelopeJson {
        EnvelopeJson {
            version: Some(envelope.version),
            kind: envelope.kind,
            signer: envelope.signer,
            seq: envelope.seq,
            payload: BASE64.encode(&envelope.payload),
            signature: envelope.signature,
        }
    }

    fn envelope(self) -> Result<Envelope, Refused> {
        let payload = BASE64
            .decode(self.payload.as_bytes())
            .map_err(|e| refused("malformed", format!("the envelope's payload is not base64: {e}")))?;
        Ok(Envelope {
            version: self.version.unwrap_or(PROTOCOL_VERSION),
            kind: self.kind,
            signer: self.signer,
            seq: self.seq,
            payload,
            signature: self.signature,
        })
    }
}

/// Bytes uploaded as they are (a module, an input).
pub struct Binary;

impl utoipa::PartialSchema for Binary {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .into()
    }
}
impl ToSchema for Binary {}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Stored {
    /// The content id the bytes are stored by.
    pub id: ContentId,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Held {
    pub id: ContentId,
    pub stored: bool,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Submitted {
    pub job: JobId,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Proposed {
    pub proposal: ContentId,
    /// When voting closes (ms since the Unix epoch).
    pub closes_ms: u64,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Voted {
    pub proposal: ContentId,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Output {
    pub job: JobId,
    pub digest: ContentId,
    /// The output's bytes, base64.
    pub bytes: String,
    /// The output as text, when it is UTF-8.
    pub text: Option<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Logs {
    pub job: JobId,
    /// The worker whose report ended the job, when one did.
    pub worker: Option<PublicKey>,
    /// The tail of the job's stderr as text (invalid UTF-8 replaced); empty when the
    /// job made none, or when it is not yours to read.
    pub stderr: String,
}

/// A running job's stderr as its module writes it (`GET /v1/jobs/{job}/logs/live`).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct LiveLogs {
    pub job: JobId,
    /// The job's state as the bytes were read; follow on while it is queued or running,
    /// or while bytes still come.
    pub state: JobState,
    /// The worker whose run is followed: one replica's word while the job runs.
    pub worker: Option<PublicKey>,
    /// The byte offset `stderr` starts at.
    pub from: u64,
    /// The bytes as text (invalid UTF-8 replaced).
    pub stderr: String,
    /// The offset to ask from next (`?from=`).
    pub next: u64,
    /// Bytes before `from` that are no longer kept: the reader fell behind.
    pub skipped: u64,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LiveParams {
    /// The byte offset to read from: 0, then each answer's `next`.
    pub from: Option<u64>,
    /// How long to wait for bytes when there are none yet, in ms (at most 10000).
    pub wait_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct Completions {
    /// Full ids in hex; more than one means the prefix is ambiguous.
    pub ids: Vec<String>,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct SealJson {
    pub seq: u64,
    pub hash: ContentId,
    pub signature: Signature,
    /// The coordinator's key, which signed the seal.
    pub coordinator: PublicKey,
}

/// A page of a list: the items after the cursor `after` (a `next` the previous page
/// gave), at most `limit`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    pub after: Option<u64>,
    #[param(minimum = 1)]
    pub limit: Option<u32>,
}

impl PageParams {
    fn page(&self) -> Page {
        Page { after: self.after, limit: self.limit }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct JobsParams {
    /// Only jobs of this scope.
    #[param(value_type = Option<String>)]
    pub scope: Option<ScopeId>,
    /// Only jobs in this state: queued, running, completed, failed, disputed, cancelled.
    pub state: Option<String>,
    /// Only jobs this key submitted.
    #[param(value_type = Option<String>)]
    pub submitter: Option<PublicKey>,
    /// Only jobs submitted at or after this time (ms since the Unix epoch).
    pub since_ms: Option<u64>,
    pub after: Option<u64>,
    #[param(minimum = 1)]
    pub limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CompleteParams {
    /// job, proposal or key.
    pub kind: String,
    /// At least 6 hex digits.
    pub prefix: String,
}

/// What the adapter keeps: the member API, the nonces seen within the window, and the
/// room for bodies being read.
pub struct Http {
    api: Arc<MemberApi>,
    coordinator: PublicKey,
    nonces: Mutex<Nonces>,
    bodies: Arc<tokio::sync::Semaphore>,
}

/// Nonces seen, each until its request's time leaves the clock window, with how many
/// each signer holds.
#[derive(Default)]
struct Nonces {
    seen: HashSet<(PublicKey, u64)>,
    by_expiry: BTreeSet<(u64, PublicKey, u64)>,
    per_signer: HashMap<PublicKey, usize>,
}

/// Whether a signed request's nonce may be answered.
#[derive(Debug, PartialEq, Eq)]
enum Nonce {
    Fresh,
    Replayed,
    /// Its time left the window (while its body was read, say).
    Stale,
    /// Its signer holds as many nonces as one signer may.
    SignerBusy,
    /// All members together hold as many as may be remembered.
    Full,
}

impl Nonces {
    /// Remembers `(signer, nonce)` until `expires_ms` (its time plus the window) unless
    /// it was seen, its time is out of the window at `now_ms`, or there is no room. A
    /// nonce is forgotten only once its expiry is past, so a replay in the window's last
    /// millisecond is still known.
    fn check(&mut self, signer: PublicKey, nonce: u64, expires_ms: u64, now_ms: u64) -> Nonce {
        while let Some(&first) = self.by_expiry.first() {
            if first.0 >= now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&(first.1, first.2));
            if let std::collections::hash_map::Entry::Occupied(mut count) = self.per_signer.entry(first.1) {
                *count.get_mut() -= 1;
                if *count.get() == 0 {
                    count.remove();
                }
            }
        }
        if expires_ms < now_ms {
            return Nonce::Stale;
        }
        if self.seen.contains(&(signer, nonce)) {
            return Nonce::Replayed;
        }
        let held = self.per_signer.get(&signer).copied().unwrap_or(0);
        if held >= NONCES_PER_SIGNER_MAX {
            return Nonce::SignerBusy;
        }
        if self.seen.len() >= NONCES_MAX {
            return Nonce::Full;
        }
        self.seen.insert((signer, nonce));
        self.by_expiry.insert((expires_ms, signer, nonce));
        *self.per_signer.entry(signer).or_default() += 1;
        Nonce::Fresh
    }

    fn len(&self) -> usize {
        self.seen.len()
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, Refused> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.to_string()))
            .map_err(|_| refused("bad_signature", format!("header {name} is not plain text"))),
    }
}

/// What the four signature headers claim; refused as unsigned when one is missing.
fn claims(headers: &HeaderMap) -> Result<Claims, Refused> {
    let [signer, nonce, time, signature] =
        [SIGNER_HEADER, NONCE_HEADER, TIME_HEADER, SIGNATURE_HEADER].map(|name| header_text(headers, name));
    let (Some(signer), Some(nonce), Some(time), Some(signature)) = (signer?, nonce?, time?, signature?)
    else {
        return Err(refused(
            "unsigned",
            format!(
                "this request is not signed: every request under /v1 carries the headers {SIGNER_HEADER}, \
                 {NONCE_HEADER}, {TIME_HEADER} and {SIGNATURE_HEADER}, made with your key (icn ui and the \
                 examples do it; /openapi.json says how)"
            ),
        ));
    };
    Claims::read(&RequestHeaders { signer, nonce, time, signature })
        .map_err(|e| refused("bad_signature", format!("the request's signature headers do not hold: {e}")))
}

fn stale(time_ms: u64, now: u64) -> Refused {
    refused(
        "stale_request",
        format!(
            "the request was signed for {time_ms} ms since the epoch, {} s from this coordinator's clock ({now}); \
             at most {} s are accepted — check your clock and sign the request again",
            time_ms.abs_diff(now) / 1000,
            REQUEST_CLOCK_SKEW_MS_MAX / 1000
        ),
    )
}

fn too_large(body_max: usize) -> Refused {
    refused("too_large", format!("the body is larger than the {body_max} bytes this request may carry"))
}

impl Http {
    /// Checks a request as a stranger's would be checked, cheapest first and everything
    /// from its head before a byte of its body is read: the signature headers, the time,
    /// that the signer holds standing, the declared length; then reads the body (at most
    /// `body_max` bytes, within [`BODY_READ_MS`]), checks the signature over it and
    /// remembers the nonce, for that member. The member and the body.
    async fn authenticate(&self, request: Request, body_max: usize) -> Result<(PublicKey, Bytes), Refused> {
        let (parts, body) = request.into_parts();
        if let Some(connection) = parts.extensions.get::<icn_transport::http::ConnectionId>() {
            // Before any signature is checked: one connection cannot keep this busy.
            self.api.limits().check_http_connection(connection.0).map_err(|limited| {
                self.api.refuse("connection", &limited.error);
                Refused::from(limited)
            })?;
        }
        let claims = claims(&parts.headers)?;
        let now = now_ms();
        if claims.time_ms.abs_diff(now) > REQUEST_CLOCK_SKEW_MS_MAX {
            return Err(stale(claims.time_ms, now));
        }
        let member = claims.signer;
        if !self.api.is_member(&member) {
            return Err(Refused(crate::api::not_a_member(&member), None));
        }
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .map(|v| v.to_str().ok().and_then(|v| v.parse::<u64>().ok()));
        let room = match declared {
            Some(None) => return Err(refused("malformed", "the content-length header is not a number")),
            Some(Some(length)) if length > body_max as u64 => return Err(too_large(body_max)),
            Some(Some(length)) => length as usize,
            None => body_max,
        };
        let kib = u32::try_from(room.div_ceil(1024)).expect("bodies are at most a few MiB");
        let _room = if kib == 0 {
            None
        } else {
            let wait = Duration::from_millis(BODY_READ_MS);
            match tokio::time::timeout(wait, self.bodies.clone().acquire_many_owned(kib)).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    return Err(refused(
                        "busy",
                        "the coordinator is reading as many uploads as it can; try again shortly",
                    ));
                }
            }
        };
        let reading = axum::body::to_bytes(body, body_max);
        let body = match tokio::time::timeout(Duration::from_millis(BODY_READ_MS), reading).await {
            Err(_) => {
                return Err(refused(
                    "slow_request",
                    format!("the body did not arrive within {} s; send it again", BODY_READ_MS / 1000),
                ));
            }
            Ok(Err(_)) => return Err(too_large(body_max)),
            Ok(Ok(body)) => body,
        };
        let target = parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str());
        claims
            .verify(parts.method.as_str(), target, &body)
            .map_err(|e| refused("bad_signature", format!("the request's signature does not hold: {e}")))?;
        // Signed by the member, so spent from the member's own allowance, and before a
        // nonce of it is remembered: a flood fills no memory.
        let class = match (&parts.method, parts.uri.path()) {
            (&Method::PUT, _) => Class::Upload,
            (&Method::GET | &Method::HEAD, _) => Class::Read,
            _ => Class::Write,
        };
        self.api.limits().check(&member, class).map_err(|limited| {
            self.api.refuse(class.name(), &limited.error);
            Refused::from(limited)
        })?;
        let nonce = claims.nonce;
        let (outcome, remembered) = {
            let mut nonces = self.nonces.lock().expect("nonces lock");
            let outcome = nonces.check(member, nonce, claims.time_ms + REQUEST_CLOCK_SKEW_MS_MAX, now_ms());
            (outcome, nonces.len())
        };
        self.api.metrics().http_nonces.set(remembered as i64);
        match outcome {
            Nonce::Fresh => Ok((member, body)),
            Nonce::Stale => Err(stale(claims.time_ms, now_ms())),
            Nonce::Replayed => Err(refused(
                "replayed",
                format!(
                    "this request (nonce {nonce} of {}) was received before; a request is answered once — sign \
                     a new one with a fresh nonce",
                    member.short()
                ),
            )),
            Nonce::SignerBusy => Err(refused(
                "busy",
                format!(
                    "key {} sent more than {NONCES_PER_SIGNER_MAX} requests within {} s; slow down and try again \
                     shortly",
                    member.short(),
                    2 * REQUEST_CLOCK_SKEW_MS_MAX / 1000
                ),
            )),
            Nonce::Full => Err(refused(
                "busy",
                "the coordinator is answering as many requests as it can; try again shortly",
            )),
        }
    }

    /// Authenticates `request`, makes the member API request from its body and asks it.
    async fn ask(
        &self,
        request: Request,
        body_max: usize,
        make: impl FnOnce(PublicKey, Bytes) -> Result<ClientRequest, Refused>,
    ) -> Result<ClientResponse, Refused> {
        let (member, body) = self.authenticate(request, body_max).await?;
        let request = make(member, body)?;
        // Its allowance was spent when it was authenticated.
        match self.api.handle_charged(member, request).await {
            ClientResponse::Error(error) => Err(Refused(error, None)),
            response => Ok(response),
        }
    }
}

type Shared = State<Arc<Http>>;

fn parse<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, Refused>
where
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e| refused("invalid", format!("{what} {text:?}: {e}")))
}

fn path<T>(found: Result<Path<T>, axum::extract::rejection::PathRejection>) -> Result<T, Refused> {
    found
        .map(|Path(value)| value)
        .map_err(|e| refused("invalid", format!("the path does not name a resource: {e}")))
}

fn query<T: serde::de::DeserializeOwned>(request: &Request) -> Result<T, Refused> {
    axum::extract::Query::<T>::try_from_uri(request.uri())
        .map(|q| q.0)
        .map_err(|e| refused("invalid", format!("the query is not understood: {}", e.body_text())))
}

/// A statement from a JSON body: an envelope of the `kind` this route takes.
fn statement(body: &[u8], kind: Kind) -> Result<Envelope, Refused> {
    let json: EnvelopeJson = serde_json::from_slice(body).map_err(|e| {
        refused("malformed", format!("the body is not a signed {kind:?} envelope in JSON: {e}"))
    })?;
    if json.kind != kind {
        return Err(refused(
            "wrong_kind",
            format!("this route takes a signed {kind:?}, not a {:?}", json.kind),
        ));
    }
    json.envelope()
}

/// The statement inside an envelope, unchecked: only to compare with the path it was
/// sent to (the member API verifies the signature).
fn peek<T: Signed>(envelope: &Envelope) -> Result<T, Refused> {
    envelope.open_trusted::<T>().map_err(|e| refused("malformed", format!("the envelope's payload: {e}")))
}

fn wrong(response: ClientResponse) -> Refused {
    refused("failed", format!("the member API answered with an unexpected {response:?}"))
}

macro_rules! expect {
    ($response:expr, $pattern:pat => $value:expr) => {
        match $response {
            $pattern => $value,
            other => return Err(wrong(other)),
        }
    };
}

type Answer = Result<Response, Refused>;

#[utoipa::path(put, path = "/v1/modules", tag = "uploads", request_body(content = Binary, content_type = "application/octet-stream", description = "a wasm module, at most 4 MiB"),
    responses((status = 201, body = Stored), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn put_module(State(http): Shared, request: Request) -> Answer {
    let response =
        http.ask(request, MODULE_BODY_BYTES_MAX, |_, body| Ok(ClientRequest::PutModule(body.to_vec())));
    let id = expect!(response.await?, ClientResponse::ModuleStored(id) => id);
    Ok(json(StatusCode::CREATED, &Stored { id }))
}

#[utoipa::path(get, path = "/v1/modules/{id}", tag = "uploads", params(("id" = String, Path, description = "a module's content id")),
    responses((status = 200, body = Held), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn has_module(
    State(http): Shared,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    request: Request,
) -> Answer {
    let id: ContentId = parse("module id", &path(id)?)?;
    let stored = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::HasModule(id))).await?, ClientResponse::HasModule(s) => s);
    Ok(json(StatusCode::OK, &Held { id, stored }))
}

#[utoipa::path(put, path = "/v1/inputs", tag = "uploads", request_body(content = Binary, content_type = "application/octet-stream", description = "a job's input, at most 1 MiB"),
    responses((status = 201, body = Stored), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn put_input(State(http): Shared, request: Request) -> Answer {
    let response =
        http.ask(request, INPUT_BODY_BYTES_MAX, |_, body| Ok(ClientRequest::PutInput(body.to_vec())));
    let id = expect!(response.await?, ClientResponse::InputStored(id) => id);
    Ok(json(StatusCode::CREATED, &Stored { id }))
}

#[utoipa::path(get, path = "/v1/inputs/{id}", tag = "uploads", params(("id" = String, Path, description = "an input's content id")),
    responses((status = 200, body = Held), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn has_input(
    State(http): Shared,
    id: Result<Path<String>, axum::extract::rejection::PathRejection>,
    request: Request,
) -> Answer {
    let id: ContentId = parse("input id", &path(id)?)?;
    let stored = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::HasInput(id))).await?, ClientResponse::HasInput(s) => s);
    Ok(json(StatusCode::OK, &Held { id, stored }))
}

#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body(content = EnvelopeJson, description = "a signed Submission"),
    responses((status = 201, body = Submitted), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn submit(State(http): Shared, request: Request) -> Answer {
    let response = http.ask(request, STATEMENT_BODY_BYTES_MAX, |_, body| {
        let envelope = statement(&body, Submission::KIND)?;
        Ok(ClientRequest::Submit(envelope))
    });
    let job = expect!(response.await?, ClientResponse::Submitted(job) => job);
    Ok(json(StatusCode::CREATED, &Submitted { job }))
}

#[utoipa::path(post, path = "/v1/jobs/plan", tag = "jobs", request_body(content = EnvelopeJson, description = "a signed Submission, weighed and not submitted"),
    responses((status = 200, body = PlanView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn plan(State(http): Shared, request: Request) -> Answer {
    let response = http.ask(request, STATEMENT_BODY_BYTES_MAX, |_, body| {
        Ok(ClientRequest::Plan(statement(&body, Submission::KIND)?))
    });
    let plan = expect!(response.await?, ClientResponse::Plan(p) => p);
    Ok(json(StatusCode::OK, &plan))
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobsParams),
    responses((status = 200, body = Paged<JobSummary>), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn jobs(State(http): Shared, request: Request) -> Answer {
    let params: JobsParams = query(&request)?;
    let filter = JobsQuery {
        scope: params.scope,
        state: params.state,
        submitter: params.submitter,
        since_ms: params.since_ms,
    };
    let page = Page { after: params.after, limit: params.limit };
    let listed = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Jobs(filter, page))).await?, ClientResponse::Jobs(p) => p);
    Ok(json(StatusCode::OK, &listed))
}

type PathText = Result<Path<String>, axum::extract::rejection::PathRejection>;

#[utoipa::path(get, path = "/v1/jobs/{job}", tag = "jobs", params(("job" = String, Path, description = "a job's id")),
    responses((status = 200, body = JobView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn job(State(http): Shared, job: PathText, request: Request) -> Answer {
    let job: JobId = parse("job id", &path(job)?)?;
    let view = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Status(job))).await?, ClientResponse::Job(v) => v);
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(get, path = "/v1/jobs/{job}/output", tag = "jobs", params(("job" = String, Path, description = "a job's id")),
    responses((status = 200, body = Output), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn output(State(http): Shared, job: PathText, request: Request) -> Answer {
    let job: JobId = parse("job id", &path(job)?)?;
    let response = http.ask(request, 0, |_, _| Ok(ClientRequest::Output(job))).await?;
    let (job, digest, bytes) =
        expect!(response, ClientResponse::Output { job, digest, bytes } => (job, digest, bytes));
    let text = String::from_utf8(bytes.clone()).ok();
    Ok(json(StatusCode::OK, &Output { job, digest, bytes: BASE64.encode(&bytes), text }))
}

#[utoipa::path(get, path = "/v1/jobs/{job}/logs", tag = "jobs", params(("job" = String, Path, description = "a job's id")),
    responses((status = 200, body = Logs), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn logs(State(http): Shared, job: PathText, request: Request) -> Answer {
    let job: JobId = parse("job id", &path(job)?)?;
    let view = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Status(job))).await?, ClientResponse::Job(v) => v);
    let (worker, stderr) = match &view.result {
        Some((worker, report)) => (Some(*worker), String::from_utf8_lossy(&report.stderr).into_owned()),
        None => (None, String::new()),
    };
    Ok(json(StatusCode::OK, &Logs { job, worker, stderr }))
}

#[utoipa::path(get, path = "/v1/version", tag = "commons",
    responses((status = 200, body = VersionView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn version(State(http): Shared, request: Request) -> Answer {
    let view = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Version)).await?, ClientResponse::Version(v) => v);
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(get, path = "/v1/jobs/{job}/logs/live", tag = "jobs",
    params(("job" = String, Path, description = "a job's id"), LiveParams),
    responses((status = 200, body = LiveLogs), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn live_logs(State(http): Shared, job: PathText, request: Request) -> Answer {
    let job: JobId = parse("job id", &path(job)?)?;
    let params: LiveParams = query(&request)?;
    let (from, wait_ms) = (params.from.unwrap_or(0), params.wait_ms.unwrap_or(0));
    let response = http.ask(request, 0, |_, _| Ok(ClientRequest::LiveStderr { job, from, wait_ms }));
    let live = expect!(response.await?, ClientResponse::LiveStderr(l) => l);
    let LiveStderr { job, state, worker, from, stderr, next, skipped } = *live;
    let stderr = String::from_utf8_lossy(&stderr).into_owned();
    Ok(json(StatusCode::OK, &LiveLogs { job, state, worker, from, stderr, next, skipped }))
}

#[utoipa::path(get, path = "/v1/jobs/{job}/trace", tag = "jobs", params(("job" = String, Path, description = "a job's id")),
    responses((status = 200, body = Trace), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn job_trace(State(http): Shared, job: PathText, request: Request) -> Answer {
    let job: JobId = parse("job id", &path(job)?)?;
    let response = http.ask(request, 0, |_, _| Ok(ClientRequest::Trace(TraceQuery::Job(job))));
    let trace = expect!(response.await?, ClientResponse::Trace(t) => t);
    Ok(json(StatusCode::OK, &trace))
}

#[utoipa::path(post, path = "/v1/jobs/{job}/cancel", tag = "jobs", params(("job" = String, Path, description = "a job's id")),
    request_body(content = EnvelopeJson, description = "a signed Cancel of this job"),
    responses((status = 200, body = JobView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn cancel(State(http): Shared, job: PathText, request: Request) -> Answer {
    let job: JobId = parse("job id", &path(job)?)?;
    let response = http.ask(request, STATEMENT_BODY_BYTES_MAX, |_, body| {
        let envelope = statement(&body, Cancel::KIND)?;
        let named = peek::<Cancel>(&envelope)?.job;
        if named != job {
            return Err(refused(
                "mismatch",
                format!("the signed cancel names job {named}, not job {job} of the path"),
            ));
        }
        Ok(ClientRequest::Cancel(envelope))
    });
    let view = expect!(response.await?, ClientResponse::Cancelled(v) => v);
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(get, path = "/v1/scopes", tag = "governance", params(PageParams),
    responses((status = 200, body = Paged<ScopeSummary>), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn scopes(State(http): Shared, request: Request) -> Answer {
    let params: PageParams = query(&request)?;
    let all = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Scopes)).await?, ClientResponse::Scopes(s) => s);
    Ok(json(
        StatusCode::OK,
        &Paged::of(all.into_iter().enumerate().map(|(i, s)| (i as u64, s)), &params.page()),
    ))
}

#[utoipa::path(get, path = "/v1/scopes/{scope}", tag = "governance", params(("scope" = String, Path, description = "a scope's name"), PageParams),
    responses((status = 200, body = ScopeView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn scope(State(http): Shared, scope: PathText, request: Request) -> Answer {
    let scope: ScopeId = parse("scope", &path(scope)?)?;
    let page = query::<PageParams>(&request)?.page();
    let view = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Scope(scope, page))).await?, ClientResponse::Scope(v) => v);
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(get, path = "/v1/scopes/{scope}/statement", tag = "ledger", params(("scope" = String, Path, description = "a scope's name"), PageParams),
    responses((status = 200, body = Statement), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn statement_of(State(http): Shared, scope: PathText, request: Request) -> Answer {
    let scope: ScopeId = parse("scope", &path(scope)?)?;
    let page = query::<PageParams>(&request)?.page();
    let response = http.ask(request, 0, |_, _| Ok(ClientRequest::Statement(scope, page)));
    let statement = expect!(response.await?, ClientResponse::Statement(s) => s);
    Ok(json(StatusCode::OK, &statement))
}

#[utoipa::path(get, path = "/v1/members", tag = "governance", params(PageParams),
    responses((status = 200, body = Paged<MemberView>), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn members(State(http): Shared, request: Request) -> Answer {
    let page = query::<PageParams>(&request)?.page();
    let listed = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Members(page))).await?, ClientResponse::Members(p) => p);
    Ok(json(StatusCode::OK, &listed))
}

#[utoipa::path(get, path = "/v1/proposals", tag = "governance", params(PageParams),
    responses((status = 200, body = Paged<ProposalView>), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn proposals(State(http): Shared, request: Request) -> Answer {
    let page = query::<PageParams>(&request)?.page();
    let listed = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Proposals(page))).await?, ClientResponse::Proposals(p) => p);
    Ok(json(StatusCode::OK, &listed))
}

#[utoipa::path(post, path = "/v1/proposals", tag = "governance", request_body(content = EnvelopeJson, description = "a signed Proposal"),
    responses((status = 201, body = Proposed), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn propose(State(http): Shared, request: Request) -> Answer {
    let response = http.ask(request, STATEMENT_BODY_BYTES_MAX, |_, body| {
        Ok(ClientRequest::Propose(statement(&body, Proposal::KIND)?))
    });
    let (proposal, closes_ms) =
        expect!(response.await?, ClientResponse::Proposed { proposal, closes_ms } => (proposal, closes_ms));
    Ok(json(StatusCode::CREATED, &Proposed { proposal, closes_ms }))
}

#[utoipa::path(get, path = "/v1/proposals/{proposal}", tag = "governance", params(("proposal" = String, Path, description = "a proposal's id")),
    responses((status = 200, body = ProposalView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn proposal(State(http): Shared, id: PathText, request: Request) -> Answer {
    let id: ContentId = parse("proposal id", &path(id)?)?;
    let view = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Proposal(id))).await?, ClientResponse::Proposal(v) => v);
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(post, path = "/v1/proposals/{proposal}/ballots", tag = "governance", params(("proposal" = String, Path, description = "a proposal's id")),
    request_body(content = EnvelopeJson, description = "a signed Ballot on this proposal"),
    responses((status = 201, body = Voted), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn vote(State(http): Shared, id: PathText, request: Request) -> Answer {
    let id: ContentId = parse("proposal id", &path(id)?)?;
    let response = http.ask(request, STATEMENT_BODY_BYTES_MAX, |_, body| {
        let envelope = statement(&body, Ballot::KIND)?;
        let named = peek::<Ballot>(&envelope)?.proposal;
        if named != id {
            return Err(refused(
                "mismatch",
                format!("the signed ballot is on proposal {named}, not {id} of the path"),
            ));
        }
        Ok(ClientRequest::Vote(envelope))
    });
    let proposal = expect!(response.await?, ClientResponse::Voted { proposal } => proposal);
    Ok(json(StatusCode::CREATED, &Voted { proposal }))
}

#[utoipa::path(get, path = "/v1/decisions", tag = "governance", params(PageParams),
    responses((status = 200, body = Paged<DecisionView>), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn decisions(State(http): Shared, request: Request) -> Answer {
    let page = query::<PageParams>(&request)?.page();
    let listed = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Decisions(page))).await?, ClientResponse::Decisions(p) => p);
    Ok(json(StatusCode::OK, &listed))
}

#[utoipa::path(get, path = "/v1/decisions/{seq}", tag = "governance", params(("seq" = u64, Path, description = "the decision's journal entry")),
    responses((status = 200, body = DecisionView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn decision(State(http): Shared, seq: PathText, request: Request) -> Answer {
    let seq: u64 = parse("journal entry", &path(seq)?)?;
    let view = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Decision(seq))).await?, ClientResponse::Decision(v) => v);
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(get, path = "/v1/decisions/{seq}/trace", tag = "governance", params(("seq" = u64, Path, description = "the decision's journal entry"), PageParams),
    responses((status = 200, body = Trace), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn decision_trace(State(http): Shared, seq: PathText, request: Request) -> Answer {
    let seq: u64 = parse("journal entry", &path(seq)?)?;
    let page = query::<PageParams>(&request)?.page();
    let response = http.ask(request, 0, |_, _| Ok(ClientRequest::Trace(TraceQuery::Decision(seq, page))));
    let trace = expect!(response.await?, ClientResponse::Trace(t) => t);
    Ok(json(StatusCode::OK, &trace))
}

#[utoipa::path(get, path = "/v1/positions", tag = "ledger",
    responses((status = 200, body = PositionsView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn positions(State(http): Shared, request: Request) -> Answer {
    let view = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Positions)).await?, ClientResponse::Positions(v) => v);
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(post, path = "/v1/clearings", tag = "ledger", request_body(content = EnvelopeJson, description = "a signed ClearRequest"),
    responses((status = 200, body = icn_protocol::views::ClearingView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn clear(State(http): Shared, request: Request) -> Answer {
    let response = http.ask(request, STATEMENT_BODY_BYTES_MAX, |_, body| {
        Ok(ClientRequest::Clear(statement(&body, ClearRequest::KIND)?))
    });
    let view = expect!(response.await?, ClientResponse::Cleared(v) => v);
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(get, path = "/v1/queue", tag = "jobs",
    responses((status = 200, body = QueueView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn queue(State(http): Shared, request: Request) -> Answer {
    let view =
        expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Queue)).await?, ClientResponse::Queue(v) => v);
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(get, path = "/v1/workers", tag = "workers", params(PageParams),
    responses((status = 200, body = Paged<WorkerView>), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn workers(State(http): Shared, request: Request) -> Answer {
    let page = query::<PageParams>(&request)?.page();
    let listed = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Workers(page))).await?, ClientResponse::Workers(p) => p);
    Ok(json(StatusCode::OK, &listed))
}

#[utoipa::path(get, path = "/v1/complete", tag = "jobs", params(CompleteParams),
    responses((status = 200, body = Completions), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn complete(State(http): Shared, request: Request) -> Answer {
    let params: CompleteParams = query(&request)?;
    let kind = match params.kind.as_str() {
        "job" => IdKind::Job,
        "proposal" => IdKind::Proposal,
        "key" => IdKind::Key,
        other => return Err(refused("invalid", format!("kind {other:?} is not one of job, proposal, key"))),
    };
    let prefix = params.prefix;
    let response = http.ask(request, 0, |_, _| Ok(ClientRequest::Complete { kind, prefix }));
    let ids = expect!(response.await?, ClientResponse::Completions(ids) => ids);
    Ok(json(StatusCode::OK, &Completions { ids }))
}

#[utoipa::path(get, path = "/v1/entries/{seq}", tag = "journal", params(("seq" = u64, Path, description = "the entry's number")),
    responses((status = 200, body = EntryView), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn entry(State(http): Shared, seq: PathText, request: Request) -> Answer {
    let seq: u64 = parse("journal entry", &path(seq)?)?;
    let view = expect!(http.ask(request, 0, |_, _| Ok(ClientRequest::Entry(seq))).await?, ClientResponse::Entry(v) => v);
    Ok(json(StatusCode::OK, &view))
}

#[utoipa::path(get, path = "/v1/seal", tag = "journal",
    responses((status = 200, body = SealJson), (status = "4XX", body = ApiError), (status = "5XX", body = ApiError)), security(("icn" = [])))]
async fn seal(State(http): Shared, request: Request) -> Answer {
    http.authenticate(request, 0).await?;
    let seal = http.api.seal();
    Ok(json(
        StatusCode::OK,
        &SealJson {
            seq: seal.seq,
            hash: seal.hash,
            signature: seal.signature,
            coordinator: http.coordinator,
        },
    ))
}

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "icn",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                SIGNATURE_HEADER,
                "Every request is signed with the member's ed25519 key: an icn envelope of kind Request over \
                 (method, path with query, time, blake3 of the body), sent as the headers icn-signer (key, hex), \
                 icn-nonce (a number never used before), icn-time (ms since the epoch, within 60 s of the \
                 coordinator's clock) and icn-signature (hex). See docs/MEMBER-GUIDE.md and \
                 examples/python/submit.py.",
            ))),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ICN compute commons: member API", description = "What a member of the commons can ask its coordinator: \
        submit jobs a decision authorized, follow them, read their chain of authority, vote, and read the ledger."),
    paths(put_module, has_module, put_input, has_input, submit, jobs, job, output, logs, live_logs, version, plan, job_trace, cancel, scopes, scope,
        statement_of, members, proposals, propose, proposal, vote, decisions, decision, decision_trace, positions, clear,
        queue, workers, complete, entry, seal),
    modifiers(&Security)
)]
pub struct ApiDoc;

async fn no_route(request: Request) -> Refused {
    refused(
        "no_route",
        format!(
            "there is no {} {} here; /openapi.json lists what there is",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn openapi() -> Response {
    json(StatusCode::OK, &ApiDoc::openapi())
}

/// The router of the member API over `api`, for a coordinator whose key is `coordinator`.
pub fn router(api: Arc<MemberApi>, coordinator: PublicKey) -> axum::Router {
    let bodies = Arc::new(tokio::sync::Semaphore::new(BODIES_KIB_MAX));
    let http = Arc::new(Http { api, coordinator, nonces: Mutex::default(), bodies });
    let wrong_method = || async {
        refused(
            "method_not_allowed",
            "this path does not take that method; /openapi.json lists what it takes",
        )
    };
    axum::Router::new()
        .route("/openapi.json", get(openapi))
        .route("/v1/modules", put(put_module))
        .route("/v1/modules/{id}", get(has_module))
        .route("/v1/inputs", put(put_input))
        .route("/v1/inputs/{id}", get(has_input))
        .route("/v1/jobs", post(submit).get(jobs))
        .route("/v1/jobs/{job}", get(job))
        .route("/v1/jobs/{job}/output", get(output))
        .route("/v1/jobs/{job}/logs", get(logs))
        .route("/v1/jobs/{job}/logs/live", get(live_logs))
        .route("/v1/version", get(version))
        .route("/v1/jobs/plan", post(plan))
        .route("/v1/jobs/{job}/trace", get(job_trace))
        .route("/v1/jobs/{job}/cancel", post(cancel))
        .route("/v1/scopes", get(scopes))
        .route("/v1/scopes/{scope}", get(scope))
        .route("/v1/scopes/{scope}/statement", get(statement_of))
        .route("/v1/members", get(members))
        .route("/v1/proposals", get(proposals).post(propose))
        .route("/v1/proposals/{proposal}", get(proposal))
        .route("/v1/proposals/{proposal}/ballots", post(vote))
        .route("/v1/decisions", get(decisions))
        .route("/v1/decisions/{seq}", get(decision))
        .route("/v1/decisions/{seq}/trace", get(decision_trace))
        .route("/v1/positions", get(positions))
        .route("/v1/clearings", post(clear))
        .route("/v1/queue", get(queue))
        .route("/v1/workers", get(workers))
        .route("/v1/complete", get(complete))
        .route("/v1/entries/{seq}", get(entry))
        .route("/v1/seal", get(seal))
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(http)
}

/// Serves the member API over HTTP on `listen`; the address it listens on.
pub async fn serve(
    listen: SocketAddr,
    api: Arc<MemberApi>,
    coordinator: PublicKey,
) -> anyhow::Result<SocketAddr> {
    Ok(icn_transport::http::serve(listen, router(api, coordinator), "the HTTP API").await?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey([n; 32])
    }

    /// L1: a replay in the very millisecond the window ends is still known, and a
    /// request is answered only while its time is in the window.
    #[test]
    fn a_nonce_is_remembered_through_the_last_millisecond_of_its_window() {
        let mut nonces = Nonces::default();
        let (signed, window) = (1_000_000, REQUEST_CLOCK_SKEW_MS_MAX);
        assert_eq!(nonces.check(key(1), 7, signed + window, signed), Nonce::Fresh);
        assert_eq!(nonces.check(key(1), 7, signed + window, signed + window), Nonce::Replayed);
        assert_eq!(nonces.check(key(1), 7, signed + window, signed + window + 1), Nonce::Stale);
        assert_eq!(nonces.len(), 0, "forgotten once its expiry is past");
    }

    /// One member sending past its share is asked to slow down; another is not.
    #[test]
    fn a_signer_past_its_share_is_busy_and_no_one_else_is() {
        let mut nonces = Nonces::default();
        let expires = 2 * REQUEST_CLOCK_SKEW_MS_MAX;
        for nonce in 0..NONCES_PER_SIGNER_MAX as u64 {
            assert_eq!(nonces.check(key(1), nonce, expires, 0), Nonce::Fresh);
        }
        assert_eq!(nonces.check(key(1), u64::MAX, expires, 0), Nonce::SignerBusy);
        assert_eq!(nonces.check(key(2), 0, expires, 0), Nonce::Fresh);
        // When the window moves on, the first signer's share is free again.
        assert_eq!(nonces.check(key(1), u64::MAX, 3 * expires, expires + 1), Nonce::Fresh);
        assert_eq!(nonces.len(), 1);
        assert_eq!(nonces.per_signer.len(), 1, "a signer holding nothing is not kept");
    }
}
