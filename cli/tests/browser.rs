//! The member page (`icn ui`) in real headless Chromium, driven through chromedriver
//! (Debian's `chromium` and `chromium-driver`; `scripts/test` installs them): a member reads
//! a job's chain and output, votes and sees the vote in the tally and in `icn trace`,
//! sees their scope's position move after a job, submits a job with an input and reads
//! its output, makes a proposal with their own ballot, and cancels a job. Every page is photographed
//! into target/screenshots (and into docs/screenshots with ICN_UPDATE_SCREENSHOTS=1).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use icn_cli::demo::{BUSY_WAT, HELLO_WAT, SPIN_WAT};
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_cli::web::WebClient;
use icn_protocol::governance::{Choice, Effect, PriceSchedule, Proposal};
use icn_protocol::wire::{JobState, Limits};
use icn_protocol::{Fuel, JobId};

const VOTING_WINDOW_MS: u64 = 6_000;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver on a free port, and a headless Chromium session through it.
async fn browser() -> (Driver, Client) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (Debian's chromium-driver; scripts/test installs it)");
    let driver = Driver(child);
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    for _ in 0..100 {
        let built = ClientBuilder::new(connector.clone())
            .capabilities(capabilities.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        if let Ok(client) = built {
            return (driver, client);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start a Chromium session on port {port}");
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let mut places = vec![root().join("target/screenshots")];
    if std::env::var_os("ICN_UPDATE_SCREENSHOTS").is_some() {
        places.push(root().join("docs/screenshots"));
    }
    for place in places {
        std::fs::create_dir_all(&place).unwrap();
        std::fs::write(place.join(format!("{name}.png")), &png).unwrap();
    }
}

/// The text of the first element `css` finds, once the page has one.
async fn text(browser: &Client, css: &str) -> String {
    let found = browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await;
    found.unwrap_or_else(|e| panic!("no {css} on the page: {e}")).text().await.unwrap()
}

/// Clicks what `css` finds and waits until the page it leads to has replaced this one.
/// An amount as the page writes it, "-12,500 credits" or "1 credit", as a number.
fn credits(shown: &str) -> i64 {
    let number = shown.trim().trim_end_matches(" credits").trim_end_matches(" credit").replace(',', "");
    number.parse().unwrap_or_else(|e| panic!("{shown:?} is not an amount of credits: {e}"))
}

async fn click_to_load(browser: &Client, css: &str) {
    let old = browser.find(Locator::Css("html")).await.unwrap();
    let target = browser.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css} to click: {e}"));
    target.click().await.unwrap();
    for _ in 0..200 {
        if old.tag_name().await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("clicking {css} did not load another page in 10 s");
}

async fn finished(client: &WebClient, job: JobId) -> JobState {
    for _ in 0..600 {
        let state = client.status(job).await.unwrap().state;
        if !matches!(state, JobState::Queued | JobState::Running { .. }) {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {job} did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_reads_votes_follows_money_and_cancels_from_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions {
        owners: &["coop-a", "coop-b"],
        members: &["ana", "ben", "cy"],
        voting_window_ms: VOTING_WINDOW_MS,
        http_listen: Some(([127, 0, 0, 1], 0).into()),
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    commons.wait_for_workers(2).await.unwrap();
    let api = format!("http://{}", commons.coordinator.http_addr().unwrap());
    let ana = commons.members[0].key.clone();
    let ben = WebClient::new(&api, commons.members[1].key.clone());
    let served = icn_cli::ui::serve(icn_cli::ui::UiOptions {
        api: api.clone(),
        key: Arc::clone(&ana),
        listen: ([127, 0, 0, 1], 0).into(),
        grafana: Some("http://127.0.0.1:3000/d/icn-commons".into()),
        coordinator: Some(commons.coordinator.public_key()),
    })
    .await
    .unwrap();
    let page = format!("http://{}", served.addr);
    let (_driver, browser) = browser().await;
    // The page opens through its one-time link, which leaves a session cookie.
    browser.goto(&served.login).await.unwrap();

    // A job that ran, read as its chain.
    let client = WebClient::new(&api, Arc::clone(&ana));
    let module = client.put_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let job = client.submit(&local::submission(module, b"", Limits::default())).await.unwrap();
    assert_eq!(finished(&client, job).await, JobState::Completed);
    browser.goto(&format!("{page}/")).await.unwrap();
    assert!(text(&browser, "main").await.contains("fed-north"), "the home page names ana's scopes");
    assert_eq!(
        text(&browser, "td.granted").await,
        "the founding document",
        "ana's standing came from the genesis"
    );
    screenshot(&browser, "home").await;
    browser.goto(&format!("{page}/jobs")).await.unwrap();
    screenshot(&browser, "jobs").await;
    click_to_load(&browser, &format!("a[href='/jobs/{job}']")).await;
    assert_eq!(text(&browser, ".job-state").await, "done");
    let chain = text(&browser, ".chain").await;
    for step in ["Founding mandate", "Submitted", "Ran", "Checked", "Paid"] {
        assert!(chain.contains(step), "the chain shows {step}: {chain}");
    }
    let entries = browser.find_all(Locator::Css("tr.entry")).await.unwrap();
    assert!(entries.len() >= 4, "the job's journal entries are listed: {}", entries.len());
    assert_eq!(
        text(&browser, "pre.output").await.trim(),
        "hello from the commons",
        "its output, on its page"
    );
    screenshot(&browser, "job").await;
    // A node links to its journal entry: its hash, and the coordinator's seal over it,
    // checked here against the coordinator's key.
    let submitted = browser.find(Locator::Css(".chain .node a[href^='/entries/']")).await.unwrap();
    let target = submitted.attr("href").await.unwrap().unwrap();
    click_to_load(&browser, &format!(".chain .node a[href='{target}']")).await;
    let hash = text(&browser, ".entry-hash").await;
    assert!(hash.len() == 64 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{hash}");
    let check = text(&browser, ".seal-check").await;
    assert!(check.starts_with("the seal's signature holds"), "{check}");
    // Any unique start of the id names the job, as in a terminal.
    browser.goto(&format!("{page}/jobs/{}", &job.to_string()[..8])).await.unwrap();
    assert_eq!(text(&browser, ".job-state").await, "done");
    browser.goto(&format!("{page}/jobs/zz")).await.unwrap();
    let said = text(&browser, "body").await;
    assert!(said.contains("give at least 6 of its hex digits"), "a bad id is named: {said}");
    screenshot(&browser, "entry").await;

    // The position moves after a job.
    browser.goto(&format!("{page}/ledger")).await.unwrap();
    let before = credits(&text(&browser, "#account-fed-north b.position").await);
    screenshot(&browser, "ledger").await;
    // Ten million counts a byte: some hundred million fuel, which costs credits.
    let busy = commons_module(&client, BUSY_WAT).await;
    let second = client.submit(&local::submission(busy, b"xx", Limits::default())).await.unwrap();
    assert_eq!(finished(&client, second).await, JobState::Completed);
    browser.goto(&format!("{page}/ledger")).await.unwrap();
    let after = credits(&text(&browser, "#account-fed-north b.position").await);
    assert!(after < before, "fed-north paid for the job: position {before} then {after}");
    let points = browser.find_all(Locator::Css("svg.plot circle")).await.unwrap();
    assert!(points.len() >= 2, "each entry is a point of the plot");

    // A vote from the page, in the tally and in `icn trace`.
    let proposal = Proposal {
        scope: local::federation(),
        title: "Cheaper compute for fed-north".into(),
        effect: Effect::PriceSchedule(PriceSchedule { credits_per_mega_fuel: 1 }),
    };
    let id = ben.propose(&proposal).await.unwrap();
    ben.vote(id, Choice::Yes, None).await.unwrap();
    browser.goto(&format!("{page}/proposals")).await.unwrap();
    let card = format!("#proposal-{id}");
    assert!(text(&browser, &card).await.contains("Yes 1, no 0"), "{}", text(&browser, &card).await);
    let reason = browser.find(Locator::Css(&format!("{card} input[name='reason']"))).await.unwrap();
    reason.send_keys("it pays our donors fairly").await.unwrap();
    click_to_load(&browser, &format!("{card} button.yes")).await;
    let card_text = text(&browser, &card).await;
    assert!(card_text.contains("Yes 2, no 0"), "ana's vote is in the tally: {card_text}");
    assert_eq!(text(&browser, &format!("{card} .vote-cast")).await, "yes");
    assert!(text(&browser, &format!("{card} .reasons")).await.contains("it pays our donors fairly"));
    screenshot(&browser, "proposals").await;
    let decision = tokio::time::timeout(
        Duration::from_millis(VOTING_WINDOW_MS + 20_000),
        icn_cli::demo::wait_for_decision(&commons.client().await.unwrap(), id),
    )
    .await
    .unwrap()
    .unwrap();
    let key = dir.path().join("ana.key");
    icn_transport::keyfile::write_new(&ana, &key).unwrap();
    let traced = Command::new(env!("CARGO_BIN_EXE_icn"))
        .args(["trace", "--decision", &decision.seq.to_string()])
        .env("ICN_COORDINATOR", commons.coordinator.addr().to_string())
        .env("ICN_COORDINATOR_KEY", commons.coordinator.public_key().to_string())
        .env("ICN_KEY", &key)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let trace = String::from_utf8_lossy(&traced.stdout);
    assert!(traced.status.success(), "{}", String::from_utf8_lossy(&traced.stderr));
    assert!(
        trace.contains("ana") && trace.to_lowercase().contains("yes"),
        "icn trace shows ana's ballot:\n{trace}"
    );
    assert!(trace.contains("because: it pays our donors fairly"), "and her reason:\n{trace}");
    browser.goto(&format!("{page}/decisions")).await.unwrap();
    assert!(text(&browser, &format!("#entry-{}", decision.seq)).await.contains("Cheaper compute"));
    screenshot(&browser, "decisions").await;

    // A job submitted from the page, a module file and an input typed in; its output on
    // its own page.
    browser.goto(&format!("{page}/jobs")).await.unwrap();
    browser.find(Locator::Css("details.submit summary")).await.unwrap().click().await.unwrap();
    let fill = |css: &'static str, value: String| {
        let browser = browser.clone();
        async move {
            let field = browser.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
            field.send_keys(&value).await.unwrap();
        }
    };
    fill("details.submit input[name='scope']", "fed-north".into()).await;
    fill(
        "details.submit input[name='module']",
        root().join("examples/wasm/upper.wasm").display().to_string(),
    )
    .await;
    fill("details.submit textarea[name='input']", "shout this".into()).await;
    screenshot(&browser, "submit").await;
    click_to_load(&browser, "details.submit button.yes").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while text(&browser, ".job-state").await != "done" {
        assert!(std::time::Instant::now() < deadline, "{}", text(&browser, "main").await);
        tokio::time::sleep(Duration::from_millis(300)).await;
        browser.refresh().await.unwrap();
    }
    assert_eq!(text(&browser, "pre.output").await.trim(), "SHOUT THIS", "the output of the page's job");
    screenshot(&browser, "job-submitted").await;

    // A proposal made from the page, with the proposer's own ballot.
    browser.goto(&format!("{page}/proposals")).await.unwrap();
    browser.find(Locator::Css("details.propose > summary")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Css("details.prices > summary")).await.unwrap().click().await.unwrap();
    fill("details.prices input[name='scope']", "fed-north".into()).await;
    fill("details.prices input[name='title']", "Dearer compute".into()).await;
    fill("details.prices input[name='credits_per_mega_fuel']", "3".into()).await;
    browser.find(Locator::Css("details.prices input[name='vote_yes']")).await.unwrap().click().await.unwrap();
    screenshot(&browser, "propose").await;
    click_to_load(&browser, "details.prices button.yes").await;
    let url = browser.current_url().await.unwrap();
    let card = format!("#{}", url.fragment().unwrap_or_else(|| panic!("no proposal in {url}")));
    let made = text(&browser, &card).await;
    assert!(made.contains("Dearer compute") && made.contains("3 credits per million fuel"), "{made}");
    assert_eq!(
        text(&browser, &format!("{card} .vote-cast")).await,
        "yes",
        "the proposer's ballot went with it"
    );

    // Cancel a job that would run for a long time.
    let long = client
        .submit(&local::submission(
            commons_module(&client, SPIN_WAT).await,
            b"",
            Limits { timeout_ms: 120_000, fuel: Fuel(icn_protocol::wire::FUEL_MAX), ..Limits::default() },
        ))
        .await
        .unwrap();
    browser.goto(&format!("{page}/jobs/{long}")).await.unwrap();
    click_to_load(&browser, "form[action$='/cancel'] button").await;
    assert_eq!(text(&browser, ".job-state").await, "cancelled");
    assert_eq!(client.status(long).await.unwrap().state, JobState::Cancelled);

    browser.goto(&format!("{page}/workers")).await.unwrap();
    assert!(text(&browser, "main").await.contains("coop-a"), "ana donates to coop-a");
    screenshot(&browser, "workers").await;
    browser.goto(&format!("{page}/operator")).await.unwrap();
    assert!(browser.find(Locator::Css("a[href='http://127.0.0.1:3000/d/icn-commons']")).await.is_ok());
    screenshot(&browser, "operator").await;

    // A form posted from anywhere but the page is refused: nothing is signed.
    let forged = reqwest::Client::new()
        .post(format!("{page}/jobs/{job}/cancel"))
        .form(&[("token", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    browser.close().await.unwrap();
    commons.stop().await.unwrap();
}

async fn commons_module(client: &WebClient, wat: &str) -> icn_protocol::ContentId {
    client.put_module(&wat::parse_str(wat).unwrap()).await.unwrap()
}
