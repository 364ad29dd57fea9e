//! `icn ui`: the member's page, served from the member's own machine. It reads the
//! coordinator's HTTP API and signs every request and every vote or cancel with the
//! member's key file here, so the key never leaves this machine. Server-rendered HTML
//! (maud), no JavaScript.
//!
//! It is open only to the browser that opened the one-time login link `icn ui` prints
//! (which sets an HttpOnly, SameSite=Strict session cookie, as Jupyter does), so another
//! user of this machine cannot vote as the member; it answers only to its own loopback
//! host names (a page served as another name, by DNS rebinding, gets nothing), takes a
//! form only from its own origin and carrying this process's random token, and may not
//! be framed. It serves loopback only: it signs with the member's key.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Form, Multipart, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use icn_protocol::governance::{
    Choice, Credits, Effect, Mandate, PlacementPolicy, PriceSchedule, Proposal, ScopeId, Standing, Tally,
};
use icn_protocol::views::{
    DecisionView, Line, MemberView, Paged, PositionsView, ProposalView, QueueView, ScopeView, Statement,
    Trace, WorkerView,
};
use icn_protocol::wire::{ExecutorKind, JobState, JobSummary, JobView, Limits};
use icn_protocol::{ContentId, Fuel, JobId, Keypair};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use crate::governance::credits;
use crate::web::WebClient;

pub struct UiOptions {
    /// The coordinator's HTTP API, such as `http://127.0.0.1:7700`.
    pub api: String,
    pub key: Arc<Keypair>,
    pub listen: SocketAddr,
    /// The operators' Grafana dashboard, linked from the operator view when given.
    pub grafana: Option<String>,
    /// The coordinator's key as the member knows it: seals are checked against it.
    pub coordinator: Option<icn_protocol::PublicKey>,
}

struct Ui {
    web: WebClient,
    grafana: Option<String>,
    coordinator: Option<icn_protocol::PublicKey>,
    /// Put in every form that signs; a form without it is refused.
    token: String,
    gate: Gate,
}

/// Who may use the page: the browser holding the session cookie, asking by one of the
/// page's own host names.
struct Gate {
    /// `127.0.0.1:port`, `localhost:port`, `[::1]:port`.
    hosts: Vec<String>,
    /// The one-time secret of the login link, until it is used.
    login: std::sync::Mutex<Option<String>>,
    /// The session cookie's name (with the port: cookies are not kept apart by port).
    cookie: String,
    session: String,
}

impl Gate {
    fn new(port: u16) -> Gate {
        Gate {
            hosts: ["127.0.0.1", "localhost", "[::1]"].map(|h| format!("{h}:{port}")).to_vec(),
            login: std::sync::Mutex::new(Some(secret())),
            cookie: format!("icn_session_{port}"),
            session: secret(),
        }
    }

    /// Why `request` may not reach the page, if it may not.
    fn refuses(&self, request: &Request) -> Option<Trouble> {
        let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
        let Some(host) = self.hosts.iter().find(|h| h.eq_ignore_ascii_case(host)) else {
            return Some(Trouble(
                StatusCode::MISDIRECTED_REQUEST,
                format!("this page answers only as http://{}/, not as {host:?}", self.hosts[0]),
            ));
        };
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let origin = request.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok());
            if origin != Some(format!("http://{host}").as_str()) {
                return Some(Trouble(
                    StatusCode::FORBIDDEN,
                    format!("a form is taken only from this page (http://{host}), not from {origin:?}"),
                ));
            }
        }
        if request.uri().path() == "/login" || self.has_session(request) {
            return None;
        }
        Some(Trouble(
            StatusCode::UNAUTHORIZED,
            "this page opens only in the browser that followed the login link `icn ui` printed \
             (http://127.0.0.1:…/login?secret=…); open that link, or start icn ui again for a new one"
                .into(),
        ))
    }

    fn has_session(&self, request: &Request) -> bool {
        let wanted = format!("{}={}", self.cookie, self.session);
        request
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|c| c.to_str().ok())
            .flat_map(|c| c.split(';'))
            .any(|pair| same(pair.trim(), &wanted))
    }
}

/// 32 random bytes in hex (a fresh key's public half): the form token, the login link's
/// secret and the session cookie are each one.
fn secret() -> String {
    hex::encode(Keypair::generate().public().0)
}

/// Compares secrets by their digests, so the time taken says nothing of where they differ.
fn same(a: &str, b: &str) -> bool {
    blake3::hash(a.as_bytes()) == blake3::hash(b.as_bytes())
}

/// Every request passes the gate; every answer forbids framing, sniffing, caching and
/// referrers to other sites, and allows no script.
async fn guard(State(ui): Shared, request: Request, next: Next) -> Response {
    let mut response = match ui.gate.refuses(&request) {
        Some(trouble) => trouble.into_response(),
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Not no-referrer: under it a browser sends `Origin: null` with the page's forms.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[derive(Deserialize)]
struct LoginQuery {
    secret: String,
}

/// The login link: once, it sets the session cookie and opens the page.
async fn login_page(State(ui): Shared, Query(query): Query<LoginQuery>) -> Result<Response, Trouble> {
    let mut login = ui.gate.login.lock().expect("login lock");
    match login.as_deref() {
        Some(secret) if same(secret, &query.secret) => {
            *login = None;
            let cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/", ui.gate.cookie, ui.gate.session);
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("hex is a valid cookie"));
            Ok(response)
        }
        Some(_) => Err(Trouble(StatusCode::FORBIDDEN, "this login link's secret is wrong".into())),
        None => Err(Trouble(
            StatusCode::FORBIDDEN,
            "this login link was used already; start icn ui again for a new one".into(),
        )),
    }
}

type Shared = State<Arc<Ui>>;

/// What went wrong, as a page.
struct Trouble(StatusCode, String);

impl From<anyhow::Error> for Trouble {
    fn from(error: anyhow::Error) -> Self {
        let status = error
            .downcast_ref::<crate::web::Refused>()
            .and_then(|r| StatusCode::from_u16(r.status).ok())
            .unwrap_or(StatusCode::BAD_GATEWAY);
        Trouble(status, format!("{error:#}"))
    }
}

impl IntoResponse for Trouble {
    fn into_response(self) -> Response {
        let page = layout(
            "Something went wrong",
            "",
            html! {
                p.trouble { (self.1) }
                p { a href="/" { "Back to your page" } }
            },
        );
        (self.0, page).into_response()
    }
}

type Page = Result<Html<String>, Trouble>;

const STYLE: &str = r#"
body { font-family: system-ui, sans-serif; margin: 0; color: #1d2a33; background: #f6f7f4; }
header { background: #234; color: #fff; padding: 0.8em 1.5em; }
header a { color: #fff; margin-right: 1.2em; text-decoration: none; }
header a.here { border-bottom: 2px solid #fc6; }
main { padding: 1em 1.5em; max-width: 70em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; background: #fff; }
td, th { text-align: left; padding: 0.35em 0.6em; border-bottom: 1px solid #dde; vertical-align: top; }
.card { background: #fff; border: 1px solid #dde; border-radius: 6px; padding: 0.8em 1em; margin: 0.8em 0; }
.bar { background: #e3e6ea; border-radius: 4px; height: 1.1em; position: relative; margin: 0.3em 0; }
.bar span { display: block; height: 100%; border-radius: 4px; }
.bar .mark { position: absolute; top: -3px; bottom: -3px; width: 2px; background: #234; }
.yes { background: #3a8d5d; } .no { background: #c4553a; } .abstain { background: #9aa3ab; } .turnout { background: #5a7fb0; }
.muted { color: #667; font-size: 0.9em; }
.chain { display: flex; flex-wrap: wrap; align-items: center; gap: 0.3em; margin: 1em 0; }
.node { background: #fff; border: 2px solid #5a7fb0; border-radius: 8px; padding: 0.5em 0.7em; min-width: 9em; max-width: 20em; }
.node a { text-decoration: none; color: inherit; } .node b { display: block; }
.node.bad { border-color: #c4553a; } .arrow { font-size: 1.5em; color: #5a7fb0; }
button { font-size: 1em; padding: 0.35em 0.9em; margin-right: 0.4em; border-radius: 4px; border: 1px solid #889; cursor: pointer; }
button.yes, button.no, button.abstain { color: #fff; border: none; }
.trouble { color: #a33; font-weight: bold; }
.entry:target { background: #fff3c4; }
"#;

fn layout(title: &str, here: &str, body: Markup) -> Html<String> {
    let tab = |path: &str, name: &str| {
        html! { a href=(path) class=[(here == path).then_some("here")] { (name) } }
    };
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { (title) " — ICN commons" }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    header {
                        (tab("/", "My page")) (tab("/proposals", "Votes")) (tab("/decisions", "Decisions"))
                        (tab("/jobs", "Jobs")) (tab("/ledger", "Money")) (tab("/workers", "Our machines"))
                        (tab("/operator", "Operations"))
                    }
                    main { h1 { (title) } (body) }
                }
            }
        }
        .into_string(),
    )
}

fn when(ms: u64) -> String {
    icn_protocol::views::when(ms)
}

/// A span of time left, in the largest unit that says it.
fn left(ms: u64) -> String {
    let seconds = ms / 1000;
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        3600..=86_399 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} days", seconds / 86_400),
    }
}

fn standing_words(standing: &Standing) -> &'static str {
    match standing {
        Standing::Vote => "vote",
        Standing::Submit => "run jobs",
        Standing::Donate => "donate machines",
        Standing::Operate => "operate",
    }
}

fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(10).collect()
}

impl Ui {
    async fn me(&self) -> Result<MemberView, Trouble> {
        let me = self.web.member();
        let mut after = None;
        loop {
            let target = match after {
                Some(after) => format!("/v1/members?limit=500&after={after}"),
                None => "/v1/members?limit=500".to_string(),
            };
            let page: Paged<MemberView> = self.web.get(&target).await?;
            if let Some(found) = page.items.into_iter().find(|m| m.person.key == me) {
                return Ok(found);
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Err(Trouble(StatusCode::FORBIDDEN, format!("key {me} is not a member here"))),
            }
        }
    }

    async fn scope(&self, scope: &ScopeId) -> Result<ScopeView, Trouble> {
        Ok(self.web.get(&format!("/v1/scopes/{scope}")).await?)
    }
}

async fn home(State(ui): Shared) -> Page {
    let me = ui.me().await?;
    let mut scopes = Vec::new();
    for (scope, standing) in &me.standing {
        scopes.push((ui.scope(scope).await?, standing.clone()));
    }
    // Where each standing came from: the last accepted decision granting it to this key
    // in that scope, or else the founding document.
    let decided: Paged<DecisionView> = ui.web.get("/v1/decisions?limit=500").await?;
    let granted = |scope: &ScopeId| {
        decided.items.iter().rev().find(|d| {
            d.accepted
                && d.effect_refused.is_none()
                && &d.scope == scope
                && matches!(&d.effect, icn_protocol::governance::Effect::GrantStanding { key, .. } if *key == me.person.key)
        })
    };
    let name = me.person.name.clone().unwrap_or_else(|| me.person.key.short());
    Ok(layout(
        &format!("Hello, {name}"),
        "/",
        html! {
            p.muted { "Your key " code { (me.person.key) } " signs everything you do here; it stays on this machine." }
            h2 { "Where you hold standing" }
            table {
                tr { th { "Scope" } th { "You may" } th { "Granted by" } th { "Its rule" } th { "Budget" } }
                @for (scope, standing) in &scopes {
                    tr {
                        td { b { (scope.id) } br; span.muted { (format!("{:?}", scope.kind).to_lowercase()) @if let Some(parent) = &scope.parent { " in " (parent) } } }
                        td { (standing.iter().map(standing_words).collect::<Vec<_>>().join(", ")) }
                    td.granted {
                        @match granted(&scope.id) {
                            Some(d) => a href=(format!("/decisions#entry-{}", d.seq)) { "decision " (d.seq) ": " (d.title) },
                            None => "the founding document",
                        }
                    }
                        td { "decides with " (scope.rule.quorum) " turnout and " (scope.rule.approval) " yes" }
                        td {
                            @if let Some(mandate) = &scope.mandate {
                                (budget_bar(mandate.spent, mandate.left))
                                span.muted { "granted by " a href=(format!("/decisions#entry-{}", mandate.decision)) { "entry " (mandate.decision) }
                                    ", until " (when(mandate.expires_ms)) }
                            } @else { span.muted { "no mandate" } }
                        }
                    }
                }
            }
        },
    ))
}

fn budget_bar(spent: Credits, left: Credits) -> Markup {
    let total = (spent.0 + left.0).max(1) as f64;
    let percent = 100.0 * spent.0 as f64 / total;
    html! {
        div.bar title=(format!("{} spent of {}", spent.0, spent.0 + left.0)) { span.turnout style=(format!("width:{percent:.1}%")) {} }
        div { (credits(spent)) " spent, " (credits(left)) " left" }
    }
}

fn tally_bars(tally: &Tally, quorum: f64, approval: f64) -> Markup {
    let voted = tally.yes + tally.no + tally.abstain;
    let electorate = tally.electorate.max(1) as f64;
    let decided = (tally.yes + tally.no).max(1) as f64;
    let pct = |n: u64, of: f64| 100.0 * n as f64 / of;
    html! {
        div.muted { "Turnout: " (voted) " of " (tally.electorate) " (needs " (format!("{:.0}%", quorum * 100.0)) ")" }
        div.bar.turnout-bar {
            span.turnout style=(format!("width:{:.1}%", pct(voted, electorate))) {}
            span.mark style=(format!("left:{:.1}%", quorum * 100.0)) {}
        }
        div.muted { "Yes " (tally.yes) ", no " (tally.no) ", abstain " (tally.abstain) " (yes needs " (format!("{:.0}%", approval * 100.0)) " of yes and no)" }
        div.bar {
            span.yes style=(format!("width:{:.1}%;float:left", pct(tally.yes, decided))) {}
            span.no style=(format!("width:{:.1}%;float:left", pct(tally.no, decided))) {}
            span.mark style=(format!("left:{:.1}%", approval * 100.0)) {}
        }
    }
}

fn fraction(f: icn_protocol::governance::Fraction) -> f64 {
    f.num as f64 / f.den.max(1) as f64
}

async fn proposals(State(ui): Shared) -> Page {
    let open: Paged<ProposalView> = ui.web.get("/v1/proposals?limit=100").await?;
    let me = ui.web.member();
    let now = crate::web::now_ms();
    Ok(layout(
        "Open votes",
        "/proposals",
        html! {
            (propose_forms(&ui.token))
            @if open.items.is_empty() { p { "Nothing is open for a vote now." } }
            @for p in &open.items {
                div.card id=(format!("proposal-{}", p.id)) {
                    h2 { (p.title) }
                    p { "In " b { (p.scope) } ", proposed by " (p.proposer) ": " (p.effect_text) }
                    (tally_bars(&p.tally, fraction(p.rule.quorum), fraction(p.rule.approval)))
                    p.muted { @if p.closes_ms > now { "Voting closes in " (left(p.closes_ms - now)) " (" (when(p.closes_ms)) ")" } @else { "Voting has closed; the count is being made." } }
                    @if let Some((_, choice)) = p.ballots.iter().find(|(person, _)| person.key == me) {
                        p { "You voted " b.vote-cast { (format!("{choice:?}").to_lowercase()) } "; you may change your vote until it closes." }
                    }
                    @if !p.reasons.is_empty() {
                        ul.reasons { @for r in &p.reasons { li { (r.voter) ": " (r.reason) } } }
                    }
                    form method="post" action=(format!("/proposals/{}/vote", p.id)) {
                        input type="hidden" name="token" value=(ui.token);
                        p { label { "Why (optional): " input type="text" name="reason" maxlength="1024" size="60"; } }
                        button.yes name="choice" value="yes" { "Yes" }
                        button.no name="choice" value="no" { "No" }
                        button.abstain name="choice" value="abstain" { "Abstain" }
                    }
                }
            }
        },
    ))
}

#[derive(Deserialize)]
struct VoteForm {
    token: String,
    choice: String,
    #[serde(default)]
    reason: String,
}

async fn vote(
    State(ui): Shared,
    Path(id): Path<String>,
    Form(form): Form<VoteForm>,
) -> Result<Redirect, Trouble> {
    ui.check(&form.token)?;
    let proposal: ContentId = id.parse().map_err(|e| Trouble(StatusCode::BAD_REQUEST, format!("{e}")))?;
    let choice = match form.choice.as_str() {
        "yes" => Choice::Yes,
        "no" => Choice::No,
        "abstain" => Choice::Abstain,
        other => {
            return Err(Trouble(StatusCode::BAD_REQUEST, format!("{other:?} is not yes, no or abstain")));
        }
    };
    let reason = Some(form.reason.trim().to_string()).filter(|r| !r.is_empty());
    ui.web.vote(proposal, choice, reason).await?;
    Ok(Redirect::to(&format!("/proposals#proposal-{proposal}")))
}

/// One form per kind of proposal a member makes most: each names the deciding scope and a
/// title, and may cast the proposer's own ballot with it.
fn propose_forms(token: &str) -> Markup {
    let common = html! {
        input type="hidden" name="token" value=(token);
        p { label { "Deciding scope: " input type="text" name="scope" required placeholder="fed-north"; } " "
            label { "Title: " input type="text" name="title" required maxlength="200" size="40"; } }
    };
    let vote =
        html! { p { label { input type="checkbox" name="vote_yes" value="on"; " and vote yes on it" } } };
    let most = Limits::default();
    html! {
        details.card.propose {
            summary { "Make a proposal" }
            p.muted { "Signed here with your key. It is decided when its voting window closes, by the scope's rule." }
            details { summary { "A budget (mandate) for a scope" }
                form method="post" action="/proposals" { (common) input type="hidden" name="kind" value="mandate";
                    p { label { "For scope: " input type="text" name="target" required; } " "
                        label { "Budget (credits): " input type="number" name="budget" min="1" required; } " "
                        label { "For (hours): " input type="number" name="period_hours" min="1" value="24"; } }
                    p { label { "Per job at most: fuel " input type="number" name="fuel" min="1" value=(most.fuel.0); } " "
                        label { "memory (MiB) " input type="number" name="memory_mib" min="1" value=(most.memory_bytes >> 20); } " "
                        label { "time (ms) " input type="number" name="timeout_ms" min="1" value=(most.timeout_ms); } }
                    (vote) button.yes { "Propose" } } }
            details.prices { summary { "Prices" }
                form method="post" action="/proposals" { (common) input type="hidden" name="kind" value="prices";
                    p { label { "Credits per million fuel: " input type="number" name="credits_per_mega_fuel" min="1" required; } }
                    (vote) button.yes { "Propose" } } }
            details { summary { "Replication (placement policy)" }
                form method="post" action="/proposals" { (common) input type="hidden" name="kind" value="policy";
                    p { label { "Replicas: " input type="number" name="replicas" min="1" value="2"; } " "
                        label { "that must agree: " input type="number" name="quorum" min="1" value="2"; } }
                    (vote) button.yes { "Propose" } } }
            details { summary { "Standing for a member" }
                form method="post" action="/proposals" { (common) input type="hidden" name="kind" value="grant";
                    p { label { "Name: " input type="text" name="name" required; } " "
                        label { "Key: " input type="text" name="key" required size="66"; } }
                    p { "Standing: "
                        @for (field, word) in [("standing_vote", "vote"), ("standing_submit", "submit"), ("standing_donate", "donate"), ("standing_operate", "operate")] {
                            label { input type="checkbox" name=(field) value="on"; " " (word) } " "
                        } }
                    (vote) button.yes { "Propose" } } }
        }
    }
}

/// What a proposal form sends; the fields of kinds other than its own are absent.
#[derive(Deserialize)]
struct ProposeForm {
    token: String,
    kind: String,
    scope: String,
    title: String,
    vote_yes: Option<String>,
    target: Option<String>,
    budget: Option<String>,
    period_hours: Option<String>,
    fuel: Option<String>,
    memory_mib: Option<String>,
    timeout_ms: Option<String>,
    credits_per_mega_fuel: Option<String>,
    replicas: Option<String>,
    quorum: Option<String>,
    name: Option<String>,
    key: Option<String>,
    standing_vote: Option<String>,
    standing_submit: Option<String>,
    standing_donate: Option<String>,
    standing_operate: Option<String>,
}

fn bad_request(what: impl std::fmt::Display) -> Trouble {
    Trouble(StatusCode::BAD_REQUEST, what.to_string())
}

/// A form's whole number: `default` when left empty, else named when it is not one.
fn number(name: &str, value: Option<&str>, default: Option<u64>) -> Result<u64, Trouble> {
    match (value.map(str::trim).filter(|v| !v.is_empty()), default) {
        (Some(text), _) => {
            text.parse().map_err(|_| bad_request(format!("{name} {text:?} is not a whole number")))
        }
        (None, Some(default)) => Ok(default),
        (None, None) => Err(bad_request(format!("{name} is missing"))),
    }
}

fn effect_of(form: &ProposeForm) -> Result<Effect, Trouble> {
    let field = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .ok_or_else(|| bad_request(format!("{name} is missing")))
    };
    let most = Limits::default();
    Ok(match form.kind.as_str() {
        "mandate" => Effect::Mandate(Mandate {
            scope: field("the scope it is for", &form.target)?.parse().map_err(bad_request)?,
            budget: Credits(number("budget", form.budget.as_deref(), None)? as i64),
            period_ms: number("hours", form.period_hours.as_deref(), Some(24))?.saturating_mul(3_600_000),
            executors: vec![ExecutorKind::Wasm],
            limits: Limits {
                fuel: Fuel(number("fuel", form.fuel.as_deref(), Some(most.fuel.0))?),
                memory_bytes: number("memory", form.memory_mib.as_deref(), Some(most.memory_bytes >> 20))?
                    .saturating_mul(1 << 20),
                timeout_ms: number("time", form.timeout_ms.as_deref(), Some(most.timeout_ms))?,
                output_bytes: most.output_bytes,
            },
        }),
        "prices" => Effect::PriceSchedule(PriceSchedule {
            credits_per_mega_fuel: number(
                "credits per million fuel",
                form.credits_per_mega_fuel.as_deref(),
                None,
            )?,
        }),
        "policy" => Effect::PlacementPolicy(PlacementPolicy {
            replicas: number("replicas", form.replicas.as_deref(), None)? as u32,
            quorum: number("quorum", form.quorum.as_deref(), None)? as u32,
        }),
        "grant" => {
            let standing: Vec<Standing> = [
                (&form.standing_vote, Standing::Vote),
                (&form.standing_submit, Standing::Submit),
                (&form.standing_donate, Standing::Donate),
                (&form.standing_operate, Standing::Operate),
            ]
            .into_iter()
            .filter(|(checked, _)| checked.is_some())
            .map(|(_, standing)| standing)
            .collect();
            Effect::GrantStanding {
                name: field("name", &form.name)?,
                key: field("key", &form.key)?.parse().map_err(bad_request)?,
                standing,
            }
        }
        other => return Err(bad_request(format!("{other:?} is not a kind of proposal this page makes"))),
    })
}

async fn propose(State(ui): Shared, Form(form): Form<ProposeForm>) -> Result<Redirect, Trouble> {
    ui.check(&form.token)?;
    let proposal = Proposal {
        scope: form.scope.trim().parse().map_err(bad_request)?,
        title: form.title.trim().to_string(),
        effect: effect_of(&form)?,
    };
    proposal.validate().map_err(bad_request)?;
    let id = ui.web.propose(&proposal).await?;
    if form.vote_yes.is_some() {
        ui.web.vote(id, Choice::Yes, None).await?;
    }
    Ok(Redirect::to(&format!("/proposals#proposal-{id}")))
}

/// The most a submission form may carry: a module (4 MiB at most) and an input (1 MiB),
/// with room for the form around them.
const SUBMIT_FORM_BYTES_MAX: usize = 6 << 20;

async fn submit(State(ui): Shared, mut form: Multipart) -> Result<Redirect, Trouble> {
    const FIELDS: [&str; 8] =
        ["token", "scope", "module", "input", "args", "fuel", "memory_mib", "timeout_ms"];
    let mut fields = std::collections::BTreeMap::<&str, Vec<u8>>::new();
    let mut module_name = String::from("the module");
    while let Some(field) = form.next_field().await.map_err(bad_request)? {
        let Some(name) = FIELDS.iter().find(|f| Some(**f) == field.name()) else { continue };
        if *name == "module" {
            module_name = field.file_name().unwrap_or("the module").to_string();
        }
        fields.insert(name, field.bytes().await.map_err(bad_request)?.to_vec());
    }
    let text =
        |name: &str| String::from_utf8_lossy(fields.get(name).map_or(&[][..], |v| v)).trim().to_string();
    ui.check(&text("token"))?;
    let scope: ScopeId = text("scope").parse().map_err(bad_request)?;
    let module =
        fields.get("module").filter(|m| !m.is_empty()).ok_or_else(|| bad_request("choose a module file"))?;
    let module = if module.starts_with(b"\0asm") {
        module.clone()
    } else {
        wat::parse_bytes(module)
            .map_err(|e| {
                bad_request(format!("{module_name} is neither a WebAssembly module nor valid WAT text: {e}"))
            })?
            .into_owned()
    };
    let most = Limits::default();
    let limits = Limits {
        fuel: Fuel(number("fuel", Some(&text("fuel")), Some(most.fuel.0))?),
        memory_bytes: number("memory", Some(&text("memory_mib")), Some(most.memory_bytes >> 20))?
            .saturating_mul(1 << 20),
        timeout_ms: number("time limit", Some(&text("timeout_ms")), Some(most.timeout_ms))?,
        output_bytes: most.output_bytes,
    };
    let args: Vec<String> =
        text("args").lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    // A browser sends a text box's line ends as CRLF; a program's stdin has LF.
    let input = String::from_utf8_lossy(fields.get("input").map_or(&[][..], |v| v)).replace("\r\n", "\n");
    let module = ui.web.put_module(&module).await?;
    let request =
        crate::client::JobRequest::new(scope, ExecutorKind::Wasm, module, input.as_bytes(), args, limits);
    let job = ui.web.submit(&request).await?;
    Ok(Redirect::to(&format!("/jobs/{job}")))
}

impl Ui {
    fn check(&self, token: &str) -> Result<(), Trouble> {
        if token != self.token {
            return Err(Trouble(
                StatusCode::FORBIDDEN,
                "this form did not come from your page (its token is wrong); open the page again".into(),
            ));
        }
        Ok(())
    }
}

async fn decisions(State(ui): Shared) -> Page {
    let decided: Paged<DecisionView> = ui.web.get("/v1/decisions?limit=200").await?;
    Ok(layout(
        "Decisions",
        "/decisions",
        html! {
            p.muted { "Everything the commons decided, oldest first. Each changed what it says, and nothing else." }
            table {
                tr { th { "Entry" } th { "Scope" } th { "What was decided" } th { "Outcome" } th { "When" } }
                @for d in &decided.items {
                    tr.entry id=(format!("entry-{}", d.seq)) {
                        td { (d.seq) }
                        td { (d.scope) }
                        td { b { (d.title) } br; (d.effect_text) }
                        td { @if d.accepted { "accepted" } @else { "not accepted" } br; span.muted { (d.reason) } }
                        td { (when(d.decided_ms)) }
                    }
                }
            }
        },
    ))
}

fn state_words(state: &JobState) -> String {
    match state {
        JobState::Queued => "waiting".into(),
        JobState::Running { .. } => "running".into(),
        JobState::Completed => "done".into(),
        JobState::Failed => "failed".into(),
        JobState::Disputed => "in dispute".into(),
        JobState::Cancelled => "cancelled".into(),
    }
}

async fn jobs(State(ui): Shared) -> Page {
    let listed: Paged<JobSummary> = ui.web.get("/v1/jobs?limit=100").await?;
    let most = Limits::default();
    Ok(layout(
        "Jobs",
        "/jobs",
        html! {
            details.card.submit {
                summary { "Submit a job" }
                p.muted { "Signed here with your key, as " code { "icn submit" } " signs it; it runs only if the scope's mandate allows it." }
                form method="post" action="/jobs" enctype="multipart/form-data" {
                    input type="hidden" name="token" value=(ui.token);
                    p { label { "The scope whose mandate pays: " input type="text" name="scope" required placeholder="fed-north"; } }
                    p { label { "The program, a WebAssembly module (.wasm, or its .wat text): " input type="file" name="module" required; } }
                    p { label { "Its input (what it reads on stdin):" br; textarea name="input" rows="4" cols="60" {} } }
                    p { label { "Its arguments, one per line:" br; textarea name="args" rows="2" cols="60" {} } }
                    p {
                        label { "Fuel: " input type="number" name="fuel" min="1" value=(most.fuel.0); } " "
                        label { "Memory (MiB): " input type="number" name="memory_mib" min="1" value=(most.memory_bytes >> 20); } " "
                        label { "Time limit (ms): " input type="number" name="timeout_ms" min="1" value=(most.timeout_ms); }
                    }
                    button.yes { "Submit, signed with your key" }
                }
            }
            table {
                tr { th { "Job" } th { "For" } th { "By" } th { "State" } th { "Submitted" } }
                @for j in &listed.items {
                    tr {
                        td { a href=(format!("/jobs/{}", j.job)) { code { (short(&j.job)) } } }
                        td { (j.scope) } td { (j.submitter) }
                        td { (state_words(&j.state)) @if let Some(w) = &j.waiting { br; span.muted { (w) } } }
                        td { (when(j.submitted_ms)) }
                    }
                }
            }
        },
    ))
}

/// A step of a job's chain and the entries that make it.
struct Step {
    name: &'static str,
    lines: Vec<Line>,
    bad: bool,
}

/// The job's entries as the steps members know: submitted under a decision, run by
/// replicas, checked, paid.
fn chain(trace: &Trace) -> Vec<Step> {
    let mut steps = vec![
        Step { name: "Submitted", lines: vec![], bad: false },
        Step { name: "Ran", lines: vec![], bad: false },
        Step { name: "Checked", lines: vec![], bad: false },
        Step { name: "Paid", lines: vec![], bad: false },
    ];
    // Which words of an entry's description put it in which step; the entry that
    // accepts a result also pays for it, so it is in both.
    const WORDS: [&[&str]; 4] = [
        &["submitted"],
        &["placed", "reported", "lost", "requeued", "stopped"],
        &["completed", "accepted", "agree", "dispute", "failed", "cancelled", "verdict"],
        &["posted", "paid", "void", "released", "settled"],
    ];
    if let Some(job) = &trace.job {
        for line in &job.entries {
            let text = line.text.to_lowercase();
            let bad = ["fail", "disagree", "dispute", "cancel"].iter().any(|w| text.contains(w));
            for (step, words) in steps.iter_mut().zip(WORDS) {
                if words.iter().any(|w| text.contains(w)) {
                    step.bad |= bad;
                    step.lines.push(line.clone());
                }
            }
        }
    }
    steps
}

/// The job a page's address names: its whole id, or any unique start of it (6 hex digits
/// at least, as lists and terminals show them).
async fn resolve_job(ui: &Ui, typed: &str) -> Result<JobId, Trouble> {
    if let Ok(job) = typed.parse::<JobId>() {
        return Ok(job);
    }
    icn_protocol::prefix_bounds(typed).map_err(|e| Trouble(StatusCode::BAD_REQUEST, e))?;
    let found: serde_json::Value = ui.web.get(&format!("/v1/complete?kind=job&prefix={typed}")).await?;
    let ids: Vec<&str> = found["ids"].as_array().into_iter().flatten().filter_map(|id| id.as_str()).collect();
    match ids.as_slice() {
        [one] => one.parse().map_err(|e| Trouble(StatusCode::BAD_GATEWAY, format!("{e}"))),
        [] => Err(Trouble(StatusCode::NOT_FOUND, format!("no job you can see starts with {typed}"))),
        many => Err(Trouble(
            StatusCode::BAD_REQUEST,
            format!("{typed} starts {} jobs ({}): give more of its id", many.len(), many.join(", ")),
        )),
    }
}

/// The most of an output the page shows; the rest is for `icn result`.
const OUTPUT_SHOWN_BYTES_MAX: usize = 64 * 1024;

async fn job(State(ui): Shared, Path(id): Path<String>) -> Page {
    let job = resolve_job(&ui, &id).await?;
    let view: JobView = ui.web.status(job).await?;
    // The coordinator answers only a reader of the output (its submitter, its scope's
    // members); anyone else is told whose it is.
    let output = match view.state {
        JobState::Completed => Some(ui.web.output(job).await.map_err(|e| e.to_string())),
        _ => None,
    };
    let stderr = view
        .result
        .as_ref()
        .map(|(_, report)| String::from_utf8_lossy(&report.stderr).into_owned())
        .filter(|text| !text.is_empty());
    let trace: Trace = ui.web.get(&format!("/v1/jobs/{job}/trace")).await?;
    let steps = chain(&trace);
    let authority = &trace.authority;
    let open = matches!(view.state, JobState::Queued | JobState::Running { .. });
    Ok(layout(
        &format!("Job {}", short(&job)),
        "/jobs",
        html! {
            p { "For " b { (view.scope) } ", by " (view.submitter.short()) ": " b.job-state { (state_words(&view.state)) }
                @if let Some(failure) = &view.failure { " — " (failure) } }
            div.chain {
                div.node {
                    a href=(format!("/decisions#entry-{}", authority.decision)) {
                        b { @if authority.founding { "Founding mandate" } @else { "Decision" } }
                        "entry " (authority.decision) br; span.muted { (authority.effect) }
                    }
                }
                @for step in &steps {
                    span.arrow { "→" }
                    div.node.bad[step.bad] {
                        @match step.lines.first() {
                            Some(first) => a href=(format!("/entries/{}", first.seq)) {
                                b { (step.name) }
                                @for line in &step.lines { "entry " (line.seq) br; }
                            },
                            None => { b { (step.name) } span.muted { "not yet" } },
                        }
                    }
                }
            }
            @match &output {
                Some(Ok(bytes)) => {
                    h2 { "Its output" }
                    @match std::str::from_utf8(&bytes[..bytes.len().min(OUTPUT_SHOWN_BYTES_MAX)]) {
                        Ok(text) => {
                            pre.output { (text) }
                            @if bytes.len() > OUTPUT_SHOWN_BYTES_MAX {
                                p.muted { "The first " (OUTPUT_SHOWN_BYTES_MAX / 1024) " KiB of " (bytes.len()) " bytes: "
                                    code { "icn result " (short(&job)) " --out FILE" } " writes it whole." }
                            }
                        },
                        Err(_) => p.muted { (bytes.len()) " bytes that are not text: "
                            code { "icn result " (short(&job)) " --out FILE" } " writes them to a file." },
                    }
                },
                Some(Err(why)) => { h2 { "Its output" } p.muted.output-refused { (why) } },
                None => {},
            }
            @if let Some(text) = &stderr {
                h2 { "What it wrote to stderr" }
                pre.stderr { (text) }
            }
            @if let Some(j) = &trace.job {
                @if let Some(order) = &j.order { p.muted { (order) } }
                h2 { "Its journal entries" }
                p.muted { "Each entry is signed and chained to the one before; " code { "icn journal verify" } " re-checks them." }
                table {
                    tr { th { "Entry" } th { "When" } th { "Signed by" } th { "What happened" } }
                    @for line in &j.entries {
                        tr.entry id=(format!("entry-{}", line.seq)) {
                            td { a href=(format!("/entries/{}", line.seq)) { (line.seq) } } td { (when(line.time_ms)) } td { (line.signer) } td { (line.text) }
                        }
                    }
                }
                @if !j.money.is_empty() { h2 { "Money" } ul { @for m in &j.money { li { (m) } } } }
            }
            @if open {
                form method="post" action=(format!("/jobs/{job}/cancel")) {
                    input type="hidden" name="token" value=(ui.token);
                    button.no name="cancel" value="1" { "Cancel this job" }
                }
            }
        },
    ))
}

async fn entry(State(ui): Shared, Path(seq): Path<u64>) -> Page {
    let view: icn_protocol::views::EntryView = ui.web.get(&format!("/v1/entries/{seq}")).await?;
    let line = &view.line;
    let check = match (&view.seal, &ui.coordinator) {
        (None, _) => "no seal covers it yet".to_string(),
        (Some(_), None) => "not checked here: start icn ui with --coordinator-key to check seals".to_string(),
        (Some(seal), Some(key)) => match seal.verify(key) {
            Ok(()) => format!("the seal's signature holds for the coordinator key {}", key.short()),
            Err(e) => format!("the seal does NOT hold for the coordinator key {}: {e}", key.short()),
        },
    };
    Ok(layout(
        &format!("Journal entry {seq}"),
        "/jobs",
        html! {
            p { (line.text) }
            table {
                tr { th { "When" } td { (when(line.time_ms)) } }
                tr { th { "Signed by" } td { (line.signer) } }
                @if let Some(cause) = line.cause { tr { th { "Follows from" } td { a href=(format!("/entries/{cause}")) { "entry " (cause) } } } }
                tr { th { "Its hash" } td { code.entry-hash { (view.hash) } } }
                tr { th { "Links to" } td { @if seq > 0 { a href=(format!("/entries/{}", seq - 1)) { "entry " (seq - 1) } " " } code { (view.prev_hash) } } }
                tr { th { "Vouched for by" } td {
                    @match &view.seal {
                        Some(seal) => { "the coordinator's seal on entry " (seal.seq) " (hash " code { (seal.hash.short()) } ")" br;
                            span.seal-check { (check) } br;
                            span.muted { "Whoever holds the journal checks it with " code { "icn journal verify --journal journal.db --expect " (seal.seq) ":" (seal.hash) } } },
                        None => span.seal-check { (check) },
                    }
                } }
            }
        },
    ))
}

#[derive(Deserialize)]
struct TokenForm {
    token: String,
}

async fn cancel(
    State(ui): Shared,
    Path(id): Path<String>,
    Form(form): Form<TokenForm>,
) -> Result<Redirect, Trouble> {
    ui.check(&form.token)?;
    let job: JobId = id.parse().map_err(|e| Trouble(StatusCode::BAD_REQUEST, format!("{e}")))?;
    ui.web.cancel(job).await?;
    Ok(Redirect::to(&format!("/jobs/{job}")))
}

/// A scope's position over its statement's entries, as a line with a point per entry,
/// each point linked to the entry (and its decision).
fn plot(statement: &Statement) -> Markup {
    let (width, height, pad) = (640.0, 200.0, 30.0);
    let lines = &statement.lines;
    if lines.is_empty() {
        return html! { p.muted { "No entries yet." } };
    }
    let lo = lines.iter().map(|l| l.position.0).min().unwrap_or(0).min(0) as f64;
    let hi = lines.iter().map(|l| l.position.0).max().unwrap_or(0).max(0) as f64;
    let span = (hi - lo).max(1.0);
    let x = |i: usize| pad + (width - 2.0 * pad) * i as f64 / (lines.len().max(2) - 1) as f64;
    let y = |v: i64| pad + (height - 2.0 * pad) * (hi - v as f64) / span;
    let path = lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{:.1},{:.1}", x(i), y(l.position.0)))
        .collect::<Vec<_>>();
    html! {
        svg.plot width=(width) height=(height) viewBox=(format!("0 0 {width} {height}")) role="img" aria-label="position over time" {
            line x1=(pad) x2=(width - pad) y1=(y(0)) y2=(y(0)) stroke="#99a" stroke-dasharray="4" {}
            text x="2" y=(y(0) - 4.0) font-size="11" { "0" }
            polyline points=(path.join(" ")) fill="none" stroke="#5a7fb0" stroke-width="2" {}
            @for (i, l) in lines.iter().enumerate() {
                a href=(format!("#entry-{}", l.seq)) {
                    circle cx=(format!("{:.1}", x(i))) cy=(format!("{:.1}", y(l.position.0))) r="4" fill="#234" {
                        title { "entry " (l.seq) ": " (l.text) " — position " (l.position.0) }
                    }
                }
            }
        }
    }
}

async fn ledger(State(ui): Shared) -> Page {
    let me = ui.me().await?;
    let positions: PositionsView = ui.web.get("/v1/positions").await?;
    let mut sections = Vec::new();
    for (scope, _) in &me.standing {
        let statement: Statement = ui.web.get(&format!("/v1/scopes/{scope}/statement?limit=200")).await?;
        let view = ui.scope(scope).await?;
        sections.push((statement, view));
    }
    Ok(layout(
        "Money",
        "/ledger",
        html! {
            p.muted { "Mutual credit: every credit one scope spends, another earns, so all positions add up to zero." }
            @for (statement, view) in &sections {
                div.card id=(format!("account-{}", statement.scope)) {
                    h2 { (statement.scope) }
                    @if let Some(account) = positions.accounts.iter().find(|a| a.scope == statement.scope) {
                        p { "Position " b.position { (credits(Credits(account.position))) } "; " (credits(Credits(account.reserved))) " held for jobs running; may go down to " (crate::governance::thousands(-account.limit)) "." }
                    }
                    @if let Some(mandate) = &view.mandate { (budget_bar(mandate.spent, mandate.left)) }
                    (plot(statement))
                    table {
                        tr { th { "Entry" } th { "When" } th { "Change" } th { "Position" } th { "What" } }
                        @for l in &statement.lines {
                            tr.entry id=(format!("entry-{}", l.seq)) {
                                td { (l.seq) } td { (when(l.time_ms)) } td { (l.change.0) } td { (l.position.0) }
                                td { (l.text) @if let Some(d) = l.decision { " " a href=(format!("/decisions#entry-{d}")) { "(decision " (d) ")" } } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

async fn workers(State(ui): Shared) -> Page {
    let me = ui.me().await?;
    let ours: Vec<ScopeId> = me
        .standing
        .iter()
        .filter(|(_, held)| held.contains(&Standing::Donate))
        .map(|(scope, _)| scope.clone())
        .collect();
    let all: Paged<WorkerView> = ui.web.get("/v1/workers?limit=500").await?;
    let positions: PositionsView = ui.web.get("/v1/positions").await?;
    Ok(layout(
        "Our machines",
        "/workers",
        html! {
            @if ours.is_empty() { p { "You hold no donate standing in any cooperative, so no machines are yours to look after." } }
            @for scope in &ours {
                div.card {
                    h2 { (scope) }
                    @if let Some(account) = positions.accounts.iter().find(|a| &a.scope == scope) {
                        p { "Earned so far: " b { (credits(Credits(account.position))) } }
                    }
                    table {
                        tr { th { "Machine" } th { "Connected" } th { "Slots free" } th { "Results agreed" } th { "Disagreed" } th { "Missed" } th { "Trust" } th { "Status" } }
                        @for w in all.items.iter().filter(|w| w.owner.as_ref() == Some(scope)) {
                            tr {
                                td { code { (w.key.short()) } }
                                td { @if w.connected { "yes" } @else { "no" } }
                                td { (w.free_slots) " of " (w.slots) }
                                td { (w.trust.agreements) } td { (w.trust.disagreements) } td { (w.trust.missed) }
                                td { (format!("{:.2}", w.trust_lower_bound)) }
                                td { @if w.quarantined { b.trouble { "quarantined" } } @else { "in service" } }
                            }
                        }
                    }
                }
            }
        },
    ))
}

async fn operator(State(ui): Shared) -> Page {
    let queue: QueueView = ui.web.get("/v1/queue").await?;
    let workers: Paged<WorkerView> = ui.web.get("/v1/workers?limit=500").await?;
    let disputed: Paged<JobSummary> = ui.web.get("/v1/jobs?state=disputed&limit=100").await?;
    Ok(layout(
        "Operations",
        "/operator",
        html! {
            @if let Some(grafana) = &ui.grafana { p { a href=(grafana) { "The operators' dashboard (Grafana)" } } }
            p { (queue.free_slots) " of " (queue.slots) " slots free." }
            h2 { "Queue by scope" }
            table {
                tr { th { "Scope" } th { "Waiting" } th { "Running" } th { "Share" } th { "Weight" } }
                @for s in &queue.scopes {
                    tr { td { (s.scope) } td { (s.waiting) } td { (s.running) } td { (format!("{:.0}%", s.share * 100.0)) } td { (s.weight) } }
                }
            }
            h2 { "Workers" }
            table {
                tr { th { "Machine" } th { "Owner" } th { "Connected" } th { "Slots free" } th { "Trust" } th { "Quarantined" } }
                @for w in &workers.items {
                    tr { td { code { (w.key.short()) } } td { @if let Some(o) = &w.owner { (o) } @else { "removed" } }
                         td { (w.connected) } td { (w.free_slots) "/" (w.slots) } td { (format!("{:.2}", w.trust_lower_bound)) } td { (w.quarantined) } }
                }
            }
            h2 { "Disputes open" }
            @if disputed.items.is_empty() { p { "None." } }
            ul { @for j in &disputed.items { li { a href=(format!("/jobs/{}", j.job)) { (short(&j.job)) } " of " (j.scope) } } }
        },
    ))
}

/// The member page, served: where, the one-time link that opens it, and its task.
pub struct Served {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:port/login?secret=…`: the first browser to open it holds the page.
    pub login: String,
    pub task: tokio::task::JoinHandle<()>,
}

/// Serves the member page on `options.listen`, which must be a loopback address.
pub async fn serve(options: UiOptions) -> anyhow::Result<Served> {
    anyhow::ensure!(
        options.listen.ip().is_loopback(),
        "--listen {} is not a loopback address: icn ui signs with your key, so it serves only this machine \
         (127.0.0.1 or [::1]); to open it from another machine, forward a port over SSH \
         (ssh -L 7800:127.0.0.1:7800 this-machine) and open the login link there",
        options.listen
    );
    let listener = icn_transport::http::bind(options.listen, "the member page").await?;
    let addr = listener.local_addr()?;
    let token = secret();
    let web = WebClient::new(&options.api, options.key);
    let gate = Gate::new(addr.port());
    let login = format!(
        "http://{}/login?secret={}",
        gate.hosts[0],
        gate.login.lock().expect("login lock").as_deref().expect("not used yet")
    );
    let ui = Arc::new(Ui { web, grafana: options.grafana, coordinator: options.coordinator, token, gate });
    let app = axum::Router::new()
        .route("/login", get(login_page))
        .route("/", get(home))
        .route("/proposals", get(proposals).post(propose))
        .route("/proposals/{id}/vote", post(vote))
        .route("/decisions", get(decisions))
        .route("/jobs", get(jobs).post(submit).layer(DefaultBodyLimit::max(SUBMIT_FORM_BYTES_MAX)))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/entries/{seq}", get(entry))
        .route("/ledger", get(ledger))
        .route("/workers", get(workers))
        .route("/operator", get(operator))
        .layer(axum::middleware::from_fn_with_state(ui.clone(), guard))
        .with_state(ui);
    let task = icn_transport::http::spawn(listener, app, "the member page");
    Ok(Served { addr, login, task })
}

/// Whether `api` (the coordinator's HTTP API as given to `icn ui`) is plain HTTP to
/// another machine: its answers are not signed, so anyone on the path could change what
/// the page shows. A warning to print, when it is.
pub fn plain_http_warning(api: &str) -> Option<String> {
    let rest = api.strip_prefix("http://")?;
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(host, _)| host),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        format!(
            "warning: --api {api} is plain HTTP to another machine: what the coordinator answers travels \
             unsigned and unencrypted, so anyone on the way could change what your page shows. Reach it \
             through an SSH tunnel (ssh -L 7700:127.0.0.1:7700 {host}, then --api http://127.0.0.1:7700) or \
             through the operators' HTTPS proxy."
        )
    })
}
