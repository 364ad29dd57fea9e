//! The attacker's review, performed as it was described and shown refused (or priced):
//! one test per finding, each leaving the journal and the ledger as they were where
//! nothing should happen. docs/SECURITY.md names each test beside the boundary it holds.

use std::time::Duration;

use icn_cli::client::{Client, JobRequest};
use icn_cli::demo::wait_for_decision;
use icn_cli::demo::{HELLO_WAT, SPIN_WAT, UPPER_WAT};
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_governance::Genesis;
use icn_protocol::JobId;
use icn_protocol::governance::{Choice, Credits, Effect, Mandate, Proposal, ScopeId, Standing};
use icn_protocol::wire::{ExecutorKind, JobState, Limits};

fn coop_a() -> ScopeId {
    "coop-a".parse().unwrap()
}

/// Ana (the first member) also submits in coop-a, which holds a mandate and a credit
/// line of its own: coop-a's jobs are coop-a's business.
fn coop_a_runs_jobs(genesis: &mut Genesis) {
    let ana = &mut genesis.members[0];
    ana.standing.insert(coop_a(), vec![Standing::Vote, Standing::Donate, Standing::Submit]);
    let mut mandate = genesis.mandates[0].clone();
    mandate.scope = coop_a();
    genesis.mandates.push(mandate);
    let scope = genesis.scopes.iter_mut().find(|s| s.id == coop_a()).expect("coop-a is founded");
    scope.credit_limit = Some(Credits(1_000_000_000));
}

/// A commons started with `options`, and QUIC clients for its members ana and ben.
async fn ana_and_ben(
    dir: &std::path::Path,
    options: LocalOptions<'static>,
) -> (LocalCommons, Client, Client) {
    let commons = LocalCommons::start(dir, options).await.unwrap();
    let ana = commons.client().await.unwrap();
    let ben = commons.client_for(commons.members[1].key.clone()).await.unwrap();
    (commons, ana, ben)
}

async fn journal_len(commons: &LocalCommons) -> u64 {
    commons.coordinator.api().read(|core| core.journal_len()).await.unwrap()
}

async fn ended(client: &Client, job: JobId) -> icn_protocol::wire::JobView {
    tokio::time::timeout(Duration::from_secs(30), client.watch(job, |_| {})).await.unwrap().unwrap()
}

/// C1: ben, with no standing in coop-a, names coop-a's private output as the input of
/// his own job (a module that copies its input to its output), and so would read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_a_private_output_cannot_be_named_as_another_members_input() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { genesis_edit: Some(coop_a_runs_jobs), ..LocalOptions::default() };
    let (commons, ana, ben) = ana_and_ben(dir.path(), options).await;
    let upper = ana.ensure_module(&wat::parse_str(UPPER_WAT).unwrap()).await.unwrap();
    let payroll = JobRequest::new(
        coop_a(),
        ExecutorKind::Wasm,
        upper,
        b"coop-a payroll: 1234",
        vec![],
        Limits::default(),
    );
    let job = ana.submit(&payroll).await.unwrap();
    let view = ended(&ana, job).await;
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    let digest = view.result.as_ref().expect("a result").1.output_digest;
    let (positions, before) = (ana.positions().await.unwrap(), journal_len(&commons).await);

    // Ben knows the digest (it was shown to every member before; a guess would do) and
    // names it as the input of his own job in his own federation.
    let theft = icn_protocol::wire::Submission {
        input: digest,
        ..local::submission(upper, b"", Limits::default()).submission
    };
    let refused = ben.submit_signed(&theft).await.unwrap_err().to_string();
    assert!(refused.contains(&format!("input {digest} is not stored here for you")), "{refused}");
    assert_eq!(journal_len(&commons).await, before, "a refused submission journals nothing");
    assert_eq!(ben.positions().await.unwrap(), positions, "and moves no credit");
    // Whether coop-a's bytes are stored here is not his to learn either.
    let has = ben.request(&icn_protocol::wire::ClientRequest::HasInput(digest)).await.unwrap();
    assert!(matches!(has, icn_protocol::wire::ClientResponse::HasInput(false)), "{has:?}");
    let direct = ben.output(job).await.unwrap_err().to_string();
    assert!(direct.contains("belongs to scope coop-a"), "{direct}");

    // Ana may feed her own job's output to her next job: that is what outputs are for.
    let next = icn_protocol::wire::Submission { input: digest, ..payroll.submission.clone() };
    let again = ana.submit_signed(&next).await.unwrap();
    assert_eq!(ended(&ana, again).await.state, JobState::Completed);
    // A worker reading the output as an input does not start its fetched retention (the
    // short one, after which it goes); only a fetch by a member who may read it does.
    let journal = dir.path().join("journal.db");
    let fetched = || -> Option<i64> {
        let connection = rusqlite::Connection::open(&journal).unwrap();
        connection
            .query_row("SELECT fetched_ms FROM blobs WHERE cid = ?1", [digest.0.as_slice()], |row| row.get(0))
            .unwrap()
    };
    assert_eq!(fetched(), None);
    assert_eq!(ana.output(job).await.unwrap(), b"COOP-A PAYROLL: 1234");
    assert_eq!(ana.output(again).await.unwrap(), b"COOP-A PAYROLL: 1234");
    assert!(fetched().is_some(), "ana's fetch starts it");
    commons.stop().await.unwrap();
}

/// Decides `effect` in `scope` with `voters` all voting yes.
async fn decide(voters: &[&Client], scope: ScopeId, effect: Effect) -> icn_protocol::views::DecisionView {
    let (id, _) = voters[0].propose(&Proposal { scope, title: "attack".into(), effect }).await.unwrap();
    for voter in voters {
        voter.vote(id, Choice::Yes).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), wait_for_decision(voters[0], id)).await.unwrap().unwrap()
}

/// H1: coop-a's only voter passes, in coop-a, a credit line of 4,000,000,000,000 for
/// coop-a, a mandate and her own submit standing, to spend on other cooperatives'
/// machines in debt to the commons.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_a_scope_cannot_lend_itself_credit() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { voting_window_ms: 300, ..LocalOptions::default() };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let ana = commons.client().await.unwrap();
    let (positions, before) = (ana.positions().await.unwrap(), journal_len(&commons).await);
    let own = Effect::CreditLimit { scope: coop_a(), limit: Credits(4_000_000_000_000) };
    let refused =
        ana.propose(&Proposal { scope: coop_a(), title: "our own credit".into(), effect: own }).await;
    let refused = refused.unwrap_err().to_string();
    assert!(
        refused.contains("scope coop-a cannot set its own credit line")
            && refused.contains("(fed-north or commons)"),
        "{refused}"
    );
    assert_eq!(journal_len(&commons).await, before, "a refused proposal journals nothing");
    assert_eq!(ana.positions().await.unwrap(), positions);

    // Her own standing and a mandate are coop-a's to decide, and she passes both alone;
    // the mandate is spent only within the credit others lent coop-a, which is none.
    let standing = Effect::GrantStanding {
        name: "ana".into(),
        key: commons.member.public(),
        standing: vec![Standing::Submit],
    };
    assert!(decide(&[&ana], coop_a(), standing).await.accepted);
    let mandate = Mandate { scope: coop_a(), ..local::day_mandate(Credits(4_000_000_000_000)) };
    assert!(decide(&[&ana], coop_a(), Effect::Mandate(mandate)).await.accepted);
    let upper = ana.ensure_module(&wat::parse_str(UPPER_WAT).unwrap()).await.unwrap();
    let job = JobRequest::new(coop_a(), ExecutorKind::Wasm, upper, b"", vec![], Limits::default());
    let refused = ana.submit(&job).await.unwrap_err().to_string();
    assert!(refused.contains("the account of scope coop-a can take on 0 more credits"), "{refused}");
    assert_eq!(ana.positions().await.unwrap().account(&coop_a()).unwrap().limit, 0);
    commons.stop().await.unwrap();
}

/// H2: a wasm job that spins without ever calling out until its wall-clock timeout used
/// to pay nothing (its fuel is counted only at calls), while the same loop ended by fuel
/// paid its fuel: any submitter could hold donated slots for free up to the longest
/// timeout. Now both pay their fuel limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_a_spin_stopped_by_its_timeout_pays_its_fuel_limit() {
    let dir = tempfile::tempdir().unwrap();
    let commons = LocalCommons::start(dir.path(), LocalOptions::default()).await.unwrap();
    let ana = commons.client().await.unwrap();
    let spin = ana.ensure_module(&wat::parse_str(SPIN_WAT).unwrap()).await.unwrap();
    let fed = local::federation();
    let spent = |positions: &icn_protocol::views::PositionsView| positions.account(&fed).unwrap().position;
    // Far more fuel than a second of spinning burns: the timeout ends it.
    let by_time = Limits { fuel: icn_protocol::Fuel(3_000_000_000), timeout_ms: 1_000, ..Limits::default() };
    let before = spent(&ana.positions().await.unwrap());
    let job = ana.submit(&local::submission(spin, b"", by_time)).await.unwrap();
    let view = ended(&ana, job).await;
    assert_eq!(view.state, JobState::Failed, "{view:?}");
    let after = spent(&ana.positions().await.unwrap());
    assert_eq!(before - after, 3_000, "three billion fuel at one credit a million: {view:?}");
    // The same loop ended by its fuel pays the same for the same fuel limit.
    let by_fuel = Limits { fuel: icn_protocol::Fuel(3_000_000_000), ..Limits::default() };
    let job = ana.submit(&local::submission(spin, b"", by_fuel)).await.unwrap();
    assert_eq!(ended(&ana, job).await.state, JobState::Failed);
    assert_eq!(after - spent(&ana.positions().await.unwrap()), 3_000);
    let trace = ana.trace(icn_protocol::wire::TraceQuery::Job(job)).await.unwrap().to_string();
    assert!(trace.contains("pays its whole fuel limit"), "{trace}");
    commons.stop().await.unwrap();
}

/// An `icn dev` commons as a process of its own, so its memory is its own: the child
/// and the base of its HTTP API. Killed when dropped.
struct DevProcess {
    child: std::process::Child,
    http: String,
    dir: tempfile::TempDir,
}

impl DevProcess {
    fn start() -> DevProcess {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (quic, http) = (free(), free());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_icn"))
            .args(["dev", "--dir", dir.path().to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{quic}"), "--http-listen", &format!("127.0.0.1:{http}")])
            .env("ICN_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.starts_with("export ") {
            line.clear();
            assert!(stdout.read_line(&mut line).unwrap() > 0, "icn dev ended before it was up");
        }
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        DevProcess { child, http: format!("127.0.0.1:{http}"), dir }
    }

    /// Its resident memory now, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("a resident size");
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    fn member(&self) -> icn_cli::web::WebClient {
        let key = icn_transport::keyfile::read(&self.dir.path().join("ana.key")).unwrap();
        icn_cli::web::WebClient::new(&format!("http://{}", self.http), std::sync::Arc::new(key))
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One stranger's connection: a module upload's head with no signature, then 4 MiB of
/// body as fast as the coordinator takes it; then the answer, if one comes.
async fn unsigned_upload(addr: &str, body: &'static [u8]) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else { return };
    let head = format!("PUT /v1/modules HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n", body.len());
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
}

/// H3: the coordinator used to read every body (up to 4 MiB) before any header was
/// checked: 40 unsigned bodies took it from 33 to 196 MiB. A flood of 200 connections
/// sending unsigned 4 MiB bodies now leaves its memory within 50 MiB of idle, and every
/// request of a member is answered all the while, none waiting behind a stranger's
/// connection (which would cost it the head timeout, `HEAD_READ_MS`). How fast is the
/// benchmark's to say (`icn bench --http`, docs/BENCHMARKS.md), not this test's: here the
/// flood shares the machine's two cores with the coordinator (medians of 110 to 180 ms
/// seen with both cores busy).
#[test]
fn h3_a_flood_of_unsigned_bodies_on_200_connections_costs_no_memory_and_no_member_waits() {
    const CONNECTIONS: usize = 200;
    const MIB: u64 = 1024 * 1024;
    static BODY: [u8; 4 << 20] = [b'x'; 4 << 20];
    let dev = DevProcess::start();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let member = dev.member();
        for _ in 0..20 {
            member.get::<serde_json::Value>("/v1/positions").await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = dev.rss();
        let flooding = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let attackers: Vec<_> = (0..CONNECTIONS)
            .map(|_| {
                let (addr, flooding) = (dev.http.clone(), flooding.clone());
                tokio::spawn(async move {
                    while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                        unsigned_upload(&addr, &BODY).await;
                    }
                })
            })
            .collect();
        let (mut peak, mut waits) = (idle, Vec::new());
        let flood = std::time::Instant::now();
        while flood.elapsed() < Duration::from_secs(8) {
            let asked = std::time::Instant::now();
            member
                .get::<serde_json::Value>("/v1/positions")
                .await
                .expect("a member is answered during a flood");
            waits.push(asked.elapsed());
            peak = peak.max(dev.rss());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        flooding.store(false, std::sync::atomic::Ordering::Relaxed);
        for attacker in attackers {
            attacker.await.unwrap();
        }
        waits.sort();
        let median = waits[waits.len() / 2];
        eprintln!(
            "idle {} MiB, peak {} MiB during the flood; {} member requests, median {median:?}, slowest {:?}",
            idle / MIB,
            peak / MIB,
            waits.len(),
            waits.last().unwrap()
        );
        assert!(peak < idle + 50 * MIB, "memory went from {} MiB to {} MiB", idle / MIB, peak / MIB);
        let waited_out = Duration::from_millis(icn_transport::http::HEAD_READ_MS / 2);
        let slowest = *waits.last().unwrap();
        assert!(slowest < waited_out, "a member's request waited {slowest:?}, as for a stranger's timeout");
        assert!(waits.len() >= 8, "a member was answered only {} times in 8 s", waits.len());
    });
}

use std::sync::Arc;

async fn http_commons(dir: &std::path::Path, options: LocalOptions<'static>) -> (LocalCommons, String) {
    let options = LocalOptions { http_listen: Some(([127, 0, 0, 1], 0).into()), ..options };
    let commons = LocalCommons::start(dir, options).await.unwrap();
    let addr = commons.coordinator.http_addr().expect("the HTTP API is served").to_string();
    (commons, addr)
}

/// How long until the coordinator closes `stream` (reading and dropping what it sends).
async fn closed_after(mut stream: tokio::net::TcpStream) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut buffer = [0u8; 4096];
    let closing = async { while stream.read(&mut buffer).await.is_ok_and(|n| n > 0) {} };
    tokio::time::timeout(Duration::from_secs(30), closing).await.expect("the connection was never closed");
    started.elapsed()
}

/// H3: connections that never finish their head, or say nothing, or sit idle after an
/// answer, were still open after 45 s; each is now closed within 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_a_connection_that_never_finishes_its_head_is_closed_within_10_s() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let (commons, addr) = http_commons(dir.path(), LocalOptions::default()).await;
    let connect = || tokio::net::TcpStream::connect(addr.clone());
    let mut slow = connect().await.unwrap();
    slow.write_all(format!("GET /v1/seal HTTP/1.1\r\nHost: {addr}\r\nicn-nonce: 1\r\n").as_bytes())
        .await
        .unwrap();
    let silent = connect().await.unwrap();
    let mut idle = connect().await.unwrap();
    idle.write_all(format!("GET /v1/seal HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let (slow, silent, idle) = tokio::join!(closed_after(slow), closed_after(silent), closed_after(idle));
    for (what, after) in [("half a head", slow), ("nothing", silent), ("an answered request", idle)] {
        assert!(after <= Duration::from_secs(10), "a connection that sent {what} stayed {after:?}");
    }
    commons.stop().await.unwrap();
}

/// H3: a stranger's nonce used to be remembered before membership was checked, in one
/// table for everyone, so throwaway keys could fill it and every member then got `busy`.
/// Now no stranger's request is remembered at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_throwaway_keys_never_make_a_members_request_busy() {
    let dir = tempfile::tempdir().unwrap();
    let (commons, addr) = http_commons(dir.path(), LocalOptions::default()).await;
    let base = format!("http://{addr}");
    let before = journal_len(&commons).await;
    let remembered = || commons.coordinator.api().metrics().http_nonces.get();
    let strangers = futures_util::future::join_all((0..16).map(|_| {
        let base = base.clone();
        async move {
            for _ in 0..125 {
                let stranger =
                    icn_cli::web::WebClient::new(&base, Arc::new(icn_protocol::Keypair::generate()));
                let refused = stranger.get::<serde_json::Value>("/v1/positions").await.unwrap_err();
                let refused = refused.downcast::<icn_cli::web::Refused>().unwrap();
                assert_eq!((refused.status, refused.error.code.as_str()), (403, "not_a_member"));
            }
        }
    }));
    strangers.await;
    assert_eq!(remembered(), 0, "2,000 strangers' requests are not remembered");
    let member = icn_cli::web::WebClient::new(&base, commons.member.clone());
    member.get::<serde_json::Value>("/v1/positions").await.expect("the member is answered");
    assert_eq!(remembered(), 1, "the member's request is");
    assert_eq!(journal_len(&commons).await, before);
    commons.stop().await.unwrap();
}

/// M1: a member whose every standing was revoked kept reading over HTTP and QUIC and
/// kept uploading (QUIC checked membership only at the hello). Now the batch that
/// decides it ends both, and the QUIC session is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m1_a_member_revoked_to_nothing_is_refused_everywhere_and_loses_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { commons_only: &["ben"], voting_window_ms: 300, ..LocalOptions::default() };
    let (commons, addr) = http_commons(dir.path(), options).await;
    let ana = commons.client().await.unwrap();
    let ben_key = commons.members[1].key.clone();
    let ben = commons.client_for(ben_key.clone()).await.unwrap();
    let ben_web = icn_cli::web::WebClient::new(&format!("http://{addr}"), ben_key.clone());
    ben.positions().await.expect("ben reads while he holds standing");
    ben_web.get::<serde_json::Value>("/v1/positions").await.unwrap();

    let revoke = Effect::RevokeStanding { key: ben_key.public(), standing: vec![Standing::Vote] };
    // He leaves by a decision he votes for too (the commons has two voters).
    assert!(decide(&[&ana, &ben], "commons".parse().unwrap(), revoke).await.accepted);
    let (positions, before) = (ana.positions().await.unwrap(), journal_len(&commons).await);
    let quic = format!("{:#}", ben.positions().await.unwrap_err());
    assert!(quic.contains("holds no standing"), "{quic}");
    for (method, target, body) in [("GET", "/v1/positions", vec![]), ("PUT", "/v1/inputs", b"more".to_vec())]
    {
        let refused = ben_web.call::<serde_json::Value>(method, target, body).await.unwrap_err();
        let refused = refused.downcast::<icn_cli::web::Refused>().unwrap();
        assert_eq!((refused.status, refused.error.code.as_str()), (403, "not_a_member"), "{method} {target}");
    }
    // The session is gone, not only this request, and no new one is opened.
    let closed = format!("{:#}", ben.positions().await.unwrap_err());
    assert!(closed.contains("holds no standing in this commons any more"), "{closed}");
    let again = format!("{:#}", commons.client_for(ben_key).await.err().expect("no new session"));
    assert!(again.contains("is not a member of this commons"), "{again}");
    assert_eq!(journal_len(&commons).await, before, "nothing he sent is on record");
    assert_eq!(ana.positions().await.unwrap(), positions);
    commons.stop().await.unwrap();
}

/// H4: the member page answered any Host (a page served as evil.example read the form
/// token and cast ana's ballot), could be framed, had no login (any local user voted as
/// the member), and served the signing page to the network on `--listen 0.0.0.0`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h4_the_member_page_holds_against_rebinding_framing_other_users_and_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { voting_window_ms: 60_000, ..LocalOptions::default() };
    let (commons, api) = http_commons(dir.path(), options).await;
    let api = format!("http://{api}");
    let ui_options = |listen: std::net::SocketAddr| icn_cli::ui::UiOptions {
        api: api.clone(),
        key: commons.member.clone(),
        listen,
        grafana: None,
        coordinator: Some(commons.coordinator.public_key()),
    };
    let network = icn_cli::ui::serve(ui_options(([0, 0, 0, 0], 0).into())).await.err().expect("refused");
    assert!(network.to_string().contains("is not a loopback address"), "{network}");
    let served = icn_cli::ui::serve(ui_options(([127, 0, 0, 1], 0).into())).await.unwrap();
    let page = format!("http://{}", served.addr);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    // Ben proposes; ana's page will show it with a form to vote.
    let ben = icn_cli::web::WebClient::new(&api, commons.members[1].key.clone());
    let proposal = Proposal {
        scope: local::federation(),
        title: "cheaper compute".into(),
        effect: Effect::PriceSchedule(icn_protocol::governance::PriceSchedule { credits_per_mega_fuel: 1 }),
    };
    let id = ben.propose(&proposal).await.unwrap();

    // Another local user, without the login link, gets nothing.
    let stranger = http.get(format!("{page}/proposals")).send().await.unwrap();
    assert_eq!(stranger.status().as_u16(), 401);
    assert!(!stranger.text().await.unwrap().contains("cheaper compute"));
    // The member opens the link once; a second use (the link seen in a terminal's
    // scrollback, say) is refused.
    let login = http.get(&served.login).send().await.unwrap();
    assert_eq!(login.status().as_u16(), 303);
    let cookie = login.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    assert_eq!(http.get(&served.login).send().await.unwrap().status().as_u16(), 403);
    let mine = http.get(format!("{page}/proposals")).header("cookie", &session).send().await.unwrap();
    assert_eq!(mine.status().as_u16(), 200);
    let headers = mine.headers().clone();
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let html = mine.text().await.unwrap();
    let token = html.split("name=\"token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();

    // Rebinding: the same page asked for as evil.example answers nothing, even to the
    // member's own browser.
    let port = served.addr.port();
    let rebound = http
        .get(format!("{page}/proposals"))
        .header("host", format!("evil.example:{port}"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status().as_u16(), 421);
    assert!(!rebound.text().await.unwrap().contains(&token));
    // A form from another origin is refused even with the session and the right token.
    let before = journal_len(&commons).await;
    let vote = |origin: &str| {
        http.post(format!("{page}/proposals/{id}/vote"))
            .header("cookie", &session)
            .header("origin", origin)
            .form(&[("token", token.as_str()), ("choice", "yes")])
            .send()
    };
    assert_eq!(vote("http://evil.example").await.unwrap().status().as_u16(), 403);
    assert_eq!(journal_len(&commons).await, before, "no ballot was cast");
    // From the page itself it is taken.
    assert_eq!(vote(&format!("http://127.0.0.1:{port}")).await.unwrap().status().as_u16(), 303);
    assert_eq!(journal_len(&commons).await, before + 1, "ana's ballot");
    // The page's proposal and submission forms hold the same way: another origin, or the
    // page's origin without the token, proposes and submits nothing.
    let own = format!("http://127.0.0.1:{port}");
    let before = journal_len(&commons).await;
    let propose = |origin: &str, token: &str| {
        http.post(format!("{page}/proposals"))
            .header("cookie", &session)
            .header("origin", origin)
            .form(&[
                ("token", token),
                ("kind", "prices"),
                ("scope", "fed-north"),
                ("title", "Dearer"),
                ("credits_per_mega_fuel", "9"),
                ("vote_yes", "on"),
            ])
            .send()
    };
    assert_eq!(propose("http://evil.example", &token).await.unwrap().status().as_u16(), 403);
    assert_eq!(propose(&own, "a guess").await.unwrap().status().as_u16(), 403);
    let module = reqwest::multipart::Part::bytes(wat::parse_str(HELLO_WAT).unwrap()).file_name("hello.wasm");
    let submit = http
        .post(format!("{page}/jobs"))
        .header("cookie", &session)
        .header("origin", "http://evil.example")
        .multipart(
            reqwest::multipart::Form::new()
                .text("token", token.clone())
                .text("scope", "fed-north")
                .part("module", module),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(submit.status().as_u16(), 403);
    assert_eq!(journal_len(&commons).await, before, "nothing proposed, voted or submitted");
    assert_eq!(propose(&own, &token).await.unwrap().status().as_u16(), 303);
    assert_eq!(journal_len(&commons).await, before + 2, "ana's proposal and her ballot");

    assert!(icn_cli::ui::plain_http_warning("http://203.0.113.7:7700").is_some());
    assert!(icn_cli::ui::plain_http_warning("http://127.0.0.1:7700").is_none());
    assert!(icn_cli::ui::plain_http_warning("http://[::1]:7700/").is_none());
    assert!(icn_cli::ui::plain_http_warning("https://commons.example").is_none());
    commons.stop().await.unwrap();
}

/// M2: uploads had no quota and no record of their uploader (40 MiB of unused modules in
/// 10 requests). Now each member's stored uploads count against a quota, and one member
/// at it does not stop another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn m2_uploads_count_against_their_uploaders_quota() {
    const MIB: usize = 1 << 20;
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { upload_quota_bytes: 2 * MIB as u64, ..LocalOptions::default() };
    let (commons, ana, ben) = ana_and_ben(dir.path(), options).await;
    let before = journal_len(&commons).await;
    ana.ensure_input(&vec![1; MIB]).await.unwrap();
    ana.ensure_input(&vec![2; MIB]).await.unwrap();
    let refused = format!("{:#}", ana.ensure_input(b"one byte more than her quota").await.unwrap_err());
    assert!(refused.contains("past your quota of 2097152 bytes"), "{refused}");
    let module = wat::parse_str(UPPER_WAT).unwrap();
    assert!(ana.ensure_module(&module).await.is_err(), "modules count too");
    ben.ensure_input(&vec![1; MIB]).await.expect("ben's quota is his own");
    ben.ensure_module(&module).await.expect("and so are his modules");
    assert_eq!(journal_len(&commons).await, before, "uploads journal nothing");
    commons.stop().await.unwrap();
}

/// L2: ballot reasons and proposal titles reached members' terminals with raw control
/// characters (a screen clear, a window title, a fake line). Now they are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l2_control_characters_never_reach_a_members_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (commons, ana, ben) = ana_and_ben(dir.path(), LocalOptions::default()).await;
    let proposal = Proposal {
        scope: local::federation(),
        title: "plain".into(),
        effect: Effect::PriceSchedule(icn_protocol::governance::PriceSchedule { credits_per_mega_fuel: 1 }),
    };
    let (id, _) = ana.propose(&proposal).await.unwrap();
    let before = journal_len(&commons).await;
    for reason in ["\u{1b}[2J\u{1b}]0;owned\u{7}", "fine\nana voted no", "\u{202E}sey"] {
        let refused =
            format!("{:#}", ben.vote_because(id, Choice::Yes, Some(reason.into())).await.unwrap_err());
        assert!(refused.contains("holds the character U+"), "{reason:?}: {refused}");
    }
    let title = Proposal { title: "cheap\u{1b}[1A\u{1b}[2Kcompute".into(), ..proposal };
    let refused = format!("{:#}", ben.propose(&title).await.unwrap_err());
    assert!(refused.contains("title holds the character U+001B"), "{refused}");
    assert_eq!(journal_len(&commons).await, before, "nothing of it is on record");
    ben.vote_because(id, Choice::Yes, Some("plain words".into())).await.unwrap();
    commons.stop().await.unwrap();
}

/// L3: every member saw every job's output digest, so an outsider could confirm a guess
/// of a short or guessable output by hashing it. Now a member who may not read a job's
/// output sees a stand-in, in its view and in its trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l3_an_outsider_cannot_confirm_a_guess_of_a_private_output() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions { genesis_edit: Some(coop_a_runs_jobs), ..LocalOptions::default() };
    let (commons, ana, ben) = ana_and_ben(dir.path(), options).await;
    let upper = ana.ensure_module(&wat::parse_str(UPPER_WAT).unwrap()).await.unwrap();
    let vote = JobRequest::new(coop_a(), ExecutorKind::Wasm, upper, b"yes", vec![], Limits::default());
    let job = ana.submit(&vote).await.unwrap();
    let real = ended(&ana, job).await.result.unwrap().1.output_digest;
    assert_eq!(real, icn_protocol::ContentId::of(b"YES"), "ana, who may read it, sees the digest");
    let shown = ben.status(job).await.unwrap().result.unwrap().1.output_digest;
    for guess in [&b"YES"[..], b"NO"] {
        assert_ne!(shown, icn_protocol::ContentId::of(guess), "ben's guess {guess:?} cannot be checked");
    }
    let trace = ben.trace(icn_protocol::wire::TraceQuery::Job(job)).await.unwrap().to_string();
    assert!(!trace.contains(&real.short()) && trace.contains("(blinded)"), "{trace}");
    let own = ana.trace(icn_protocol::wire::TraceQuery::Job(job)).await.unwrap().to_string();
    assert!(own.contains(&real.short()), "{own}");
    // Nor does he read its stderr, live or after: refused by name (what `icn logs` shows him).
    let refused = ben.live_stderr(job, 0, 0).await.unwrap_err().to_string();
    assert!(refused.contains("the stderr of job") && refused.contains("only its submitter"), "{refused}");
    assert!(ana.live_stderr(job, 0, 0).await.is_ok(), "ana may");
    commons.stop().await.unwrap();
}

/// The line of `child`'s `stream` that contains `needle`, within 20 s.
fn line_with(stream: impl std::io::Read + Send + 'static, needle: &'static str) -> String {
    use std::io::BufRead;
    let (found, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
            if line.contains(needle) {
                let _ = found.send(line);
                return;
            }
        }
    });
    wait.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("no line with {needle:?}"))
}

/// A TLS proxy in front of `upstream`, as operators put one before the HTTP API, with its
/// own certificate for `localhost`: its port and the certificate's PEM.
async fn tls_proxy(upstream: String) -> (u16, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let (Ok(mut tls), Ok(mut plain)) =
                    (acceptor.accept(stream).await, tokio::net::TcpStream::connect(&upstream).await)
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(certified.cert.der());
    let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    (port, format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n")))
}

/// L4: HTTP answers are not signed, and the guide pointed `icn ui` at a remote `http://`
/// API. Now `icn ui` warns on plain HTTP to another machine, and reads a coordinator's API
/// over `https://` (here behind a TLS proxy whose certificate the system trusts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l4_icn_ui_warns_on_plain_http_to_another_machine_and_reads_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (commons, api) = http_commons(dir.path(), LocalOptions::default()).await;
    let key = dir.path().join("ana.key");
    icn_transport::keyfile::write_new(&commons.member, &key).unwrap();
    let ui = |api: &str, extra: &[(&str, &std::path::Path)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_icn"))
            .args(["ui", "--api", api, "--key", key.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .envs(extra.iter().copied())
            .env_remove("ICN_API")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut plain = ui("http://203.0.113.7:7700", &[]);
    let warning = line_with(plain.stderr.take().unwrap(), "warning");
    assert!(warning.contains("is plain HTTP to another machine") && warning.contains("ssh -L"), "{warning}");
    plain.kill().unwrap();
    plain.wait().unwrap();

    let (port, pem) = tls_proxy(api).await;
    let roots = dir.path().join("roots.pem");
    std::fs::write(&roots, pem).unwrap();
    let mut secure = ui(&format!("https://localhost:{port}"), &[("SSL_CERT_FILE", &roots)]);
    let stderr = secure.stderr.take().unwrap();
    let opened = line_with(secure.stdout.take().unwrap(), "/login?secret=");
    let login = opened.split_whitespace().find(|w| w.starts_with("http://")).unwrap().to_string();
    let base = login.split("/login").next().unwrap().to_string();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let cookie = http.get(&login).send().await.unwrap().headers()[reqwest::header::SET_COOKIE].clone();
    let session = cookie.to_str().unwrap().split(';').next().unwrap().to_string();
    let page = http.get(format!("{base}/ledger")).header("cookie", session).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page.text().await.unwrap().contains("fed-north"), "the ledger, read over https");
    secure.kill().unwrap();
    secure.wait().unwrap();
    let mut said = String::new();
    std::io::Read::read_to_string(&mut { stderr }, &mut said).unwrap();
    assert!(!said.contains("warning"), "no warning for https: {said}");
    commons.stop().await.unwrap();
}
