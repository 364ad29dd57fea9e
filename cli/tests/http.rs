//! The HTTP/JSON member API of a real coordinator: a job submitted, followed, read and
//! traced over HTTP with requests signed on the member's side; everything a stranger,
//! a forger or a replayer sends refused with a 4xx and a sentence, with nothing reaching
//! the journal.

use std::sync::Arc;
use std::time::Duration;

use icn_cli::demo::HELLO_WAT;
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_cli::web::{Refused, WebClient};
use icn_coordinator::http::EnvelopeJson;
use icn_protocol::request::{SIGNATURE_HEADER, SignedRequest};
use icn_protocol::views::{Paged, Trace};
use icn_protocol::wire::{ApiError, JobState, JobSummary, JobView, Limits};
use icn_protocol::{Envelope, Keypair};

async fn commons(dir: &std::path::Path) -> (LocalCommons, String) {
    let options = LocalOptions {
        owners: &["coop-a", "coop-b"],
        http_listen: Some(([127, 0, 0, 1], 0).into()),
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir, options).await.unwrap();
    let base = format!("http://{}", commons.coordinator.http_addr().expect("the HTTP API is served"));
    (commons, base)
}

async fn journal_len(commons: &LocalCommons) -> u64 {
    commons.coordinator.api().read(|core| core.journal_len()).await.unwrap()
}

async fn finished(client: &WebClient, job: icn_protocol::JobId) -> JobView {
    for _ in 0..600 {
        let view = client.status(job).await.unwrap();
        if !matches!(view.state, JobState::Queued | JobState::Running { .. }) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {job} did not end in 30 s");
}

fn refusal(error: anyhow::Error) -> Refused {
    error.downcast::<Refused>().expect("a refusal from the coordinator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_submitted_followed_read_and_traced_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let (commons, base) = commons(dir.path()).await;
    commons.wait_for_workers(2).await.unwrap();
    let client = WebClient::new(&base, commons.member.clone());
    let module = client.put_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let job = client.submit(&local::submission(module, b"from http", Limits::default())).await.unwrap();
    let view = finished(&client, job).await;
    assert_eq!(view.state, JobState::Completed, "{view:?}");
    assert_eq!(view.submitter, commons.member.public());
    let output = client.output(job).await.unwrap();
    assert!(String::from_utf8_lossy(&output).contains("hello"), "{}", String::from_utf8_lossy(&output));

    let trace: Trace = client.get(&format!("/v1/jobs/{job}/trace")).await.unwrap();
    let traced = trace.job.expect("a job's trace");
    assert_eq!(traced.job, job);
    assert!(trace.authority.founding, "the founding mandate authorized it: {:?}", trace.authority);
    // Each of its entries can be read with its hash and the coordinator's seal over it.
    let first = &traced.entries[0];
    let entry: icn_protocol::views::EntryView =
        client.get(&format!("/v1/entries/{}", first.seq)).await.unwrap();
    assert_eq!(&entry.line, first);
    let seal = entry.seal.expect("a committed entry is sealed");
    assert!(seal.seq >= first.seq);
    seal.verify(&commons.coordinator.public_key()).expect("the seal is the coordinator's");
    let beyond = refusal(client.get::<serde_json::Value>("/v1/entries/999999").await.unwrap_err());
    assert_eq!(beyond.status, 404, "{}", beyond.error.message);

    let listed: Paged<JobSummary> = client.get("/v1/jobs?state=completed&limit=5").await.unwrap();
    assert_eq!(listed.items.iter().map(|j| j.job).collect::<Vec<_>>(), vec![job]);
    let none: Paged<JobSummary> = client.get("/v1/jobs?state=queued").await.unwrap();
    assert!(none.items.is_empty());

    // Submitting the same signed envelope again is the same job, not a second one.
    let envelope = Envelope::seal(
        &commons.member,
        77,
        &local::submission(module, b"from http", Limits::default()).submission,
    );
    let body = serde_json::to_vec(&EnvelopeJson::of(&envelope)).unwrap();
    let first: serde_json::Value = client.call("POST", "/v1/jobs", body.clone()).await.unwrap();
    // Once it ended, nothing of the job is still to be journaled: any entry is the repeat's.
    let submitted: icn_protocol::JobId = first["job"].as_str().unwrap().parse().unwrap();
    assert_eq!(finished(&client, submitted).await.state, JobState::Completed);
    let length = journal_len(&commons).await;
    let again: serde_json::Value = client.call("POST", "/v1/jobs", body).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(journal_len(&commons).await, length, "a statement sent twice is journaled once");

    // A submission weighed, not submitted: its hold, decision and placement, nothing journaled.
    let weighed =
        Envelope::seal(&commons.member, 78, &local::submission(module, b"", Limits::default()).submission);
    let body = serde_json::to_vec(&EnvelopeJson::of(&weighed)).unwrap();
    let plan: icn_protocol::wire::PlanView = client.call("POST", "/v1/jobs/plan", body).await.unwrap();
    assert_eq!((plan.decision, plan.replicas, plan.waiting.is_none()), (0, 1, true), "{plan:?}");
    assert_eq!(plan.placements.len(), 1, "{plan:?}");
    assert_eq!(journal_len(&commons).await, length, "a plan journals nothing");
    commons.stop().await.unwrap();
}

/// A request whose head declares `length` body bytes, and whose body is never sent: the
/// answer of a server that refuses by the head alone.
async fn head_only(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    length: usize,
) -> (u16, ApiError) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {length}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // Read the answer's head, then as many body bytes as it declares.
    let mut response = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "the connection closed before a whole answer: {}",
                String::from_utf8_lossy(&response)
            );
            response.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&response).into_owned();
            let Some((head, body)) = text.split_once("\r\n\r\n") else { continue };
            let declared = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                })
                .expect("the answer declares its length")
                .parse::<usize>()
                .unwrap();
            if body.len() >= declared {
                let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
                return (status, serde_json::from_str(&body[..declared]).unwrap());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("an answer within 10 s")
}

/// A request signed as `key` with its headers as given, sent raw.
async fn raw(
    base: &str,
    method: &str,
    target: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, ApiError) {
    let client = reqwest::Client::new();
    let mut request = client
        .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{base}{target}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(content_type, "application/json", "every refusal is JSON");
    let error: ApiError = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert!(!error.message.is_empty() && !error.code.is_empty());
    (status, error)
}

fn signed(
    key: &Keypair,
    nonce: u64,
    method: &str,
    target: &str,
    time_ms: u64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    SignedRequest::sign(key, nonce, method, target, time_ms, body).pairs().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_relayed_replayed_oversized_and_malformed_requests_are_refused_and_journal_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (commons, base) = commons(dir.path()).await;
    let journal = commons.journal.clone();
    let ana = commons.members[0].key.clone();
    let ben = commons.members[1].key.clone();
    let client = WebClient::new(&base, ana.clone());
    let module = client.put_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let submission = local::submission(module, b"", Limits::default()).submission;
    let body =
        |key: &Keypair| serde_json::to_vec(&EnvelopeJson::of(&Envelope::seal(key, 5, &submission))).unwrap();
    let now = icn_cli::web::now_ms();
    let before = journal_len(&commons).await;

    // No signature at all.
    let (status, error) = raw(&base, "POST", "/v1/jobs", &[], body(&ana)).await;
    assert_eq!((status, error.code.as_str()), (401, "unsigned"), "{}", error.message);
    assert!(error.message.contains(SIGNATURE_HEADER), "{}", error.message);

    // Signed, but over another body than the one sent.
    let mut forged = signed(&ana, 1, "POST", "/v1/jobs", now, b"{}");
    let (status, error) = raw(&base, "POST", "/v1/jobs", &forged, body(&ana)).await;
    assert_eq!((status, error.code.as_str()), (401, "bad_signature"), "{}", error.message);
    // A signature that is not even hex.
    forged[3].1 = "zz".into();
    let (status, error) = raw(&base, "POST", "/v1/jobs", &forged, body(&ana)).await;
    assert_eq!((status, error.code.as_str()), (401, "bad_signature"), "{}", error.message);

    // Ana's request carrying a submission Ben signed.
    let bens = body(&ben);
    let headers = signed(&ana, 2, "POST", "/v1/jobs", now, &bens);
    let (status, error) = raw(&base, "POST", "/v1/jobs", &headers, bens).await;
    assert_eq!((status, error.code.as_str()), (403, "relayed"), "{}", error.message);

    // A key the commons never admitted.
    let stranger = Keypair::generate();
    let theirs = body(&stranger);
    let headers = signed(&stranger, 3, "POST", "/v1/jobs", now, &theirs);
    let (status, error) = raw(&base, "POST", "/v1/jobs", &headers, theirs).await;
    assert_eq!((status, error.code.as_str()), (403, "not_a_member"), "{}", error.message);

    // A request signed long ago.
    let stale = signed(&ana, 4, "GET", "/v1/queue", now - 3_600_000, b"");
    let (status, error) = raw(&base, "GET", "/v1/queue", &stale, vec![]).await;
    assert_eq!((status, error.code.as_str()), (401, "stale_request"), "{}", error.message);

    // The same request twice: a read, then a write.
    let read = signed(&ana, 6, "GET", "/v1/queue", now, b"");
    let client_raw = reqwest::Client::new();
    let mut first = client_raw.get(format!("{base}/v1/queue"));
    for (name, value) in &read {
        first = first.header(*name, value);
    }
    assert_eq!(first.send().await.unwrap().status().as_u16(), 200);
    let (status, error) = raw(&base, "GET", "/v1/queue", &read, vec![]).await;
    assert_eq!((status, error.code.as_str()), (409, "replayed"), "{}", error.message);
    let (status, _) =
        raw(&base, "POST", "/v1/jobs", &signed(&ana, 7, "POST", "/v1/jobs", now, b"x"), b"x".to_vec()).await;
    assert_eq!(status, 400);
    let (status, error) =
        raw(&base, "POST", "/v1/jobs", &signed(&ana, 7, "POST", "/v1/jobs", now, b"x"), b"x".to_vec()).await;
    assert_eq!((status, error.code.as_str()), (409, "replayed"), "{}", error.message);

    // Malformed JSON, JSON of the wrong shape, and an envelope of another kind.
    for (nonce, text, code) in [
        (8, &b"{\"kind\": "[..], "malformed"),
        (9, &b"[1, 2, 3]"[..], "malformed"),
        (
            10,
            &b"{\"kind\":\"Ballot\",\"signer\":\"00\",\"seq\":1,\"payload\":\"\",\"signature\":\"00\"}"[..],
            "malformed",
        ),
    ] {
        let headers = signed(&ana, nonce, "POST", "/v1/jobs", now, text);
        let (status, error) = raw(&base, "POST", "/v1/jobs", &headers, text.to_vec()).await;
        assert_eq!((status, error.code.as_str()), (400, code), "{}", error.message);
    }
    let ballot = Envelope::seal(
        &ana,
        11,
        &icn_protocol::governance::Ballot {
            proposal: icn_protocol::ContentId::of(b"p"),
            choice: icn_protocol::governance::Choice::Yes,
            reason: None,
        },
    );
    let wrong = serde_json::to_vec(&EnvelopeJson::of(&ballot)).unwrap();
    let headers = signed(&ana, 12, "POST", "/v1/jobs", now, &wrong);
    let (status, error) = raw(&base, "POST", "/v1/jobs", &headers, wrong).await;
    assert_eq!((status, error.code.as_str()), (400, "wrong_kind"), "{}", error.message);

    // Bodies past their route's limit: refused by the length their head declares, before a
    // byte of them is read (so the body is never sent here: a client still writing one when
    // the refusal closes the connection meets a broken pipe, as one CI run did).
    let big = vec![b' '; icn_coordinator::http::STATEMENT_BODY_BYTES_MAX + 1];
    let headers = signed(&ana, 13, "POST", "/v1/jobs", now, &big);
    let (status, error) = head_only(&base, "POST", "/v1/jobs", &headers, big.len()).await;
    assert_eq!((status, error.code.as_str()), (413, "too_large"), "{}", error.message);
    let huge = vec![0; icn_coordinator::http::INPUT_BODY_BYTES_MAX + 1];
    let headers = signed(&ana, 14, "PUT", "/v1/inputs", now, &huge);
    let (status, error) = head_only(&base, "PUT", "/v1/inputs", &headers, huge.len()).await;
    assert_eq!((status, error.code.as_str()), (413, "too_large"), "{}", error.message);

    // Paths and queries that name nothing.
    let target = "/v1/jobs/not-a-job";
    let (status, error) = raw(&base, "GET", target, &signed(&ana, 15, "GET", target, now, b""), vec![]).await;
    assert_eq!((status, error.code.as_str()), (400, "invalid"), "{}", error.message);
    let target = "/v1/jobs?state=sleeping";
    let (status, error) = raw(&base, "GET", target, &signed(&ana, 16, "GET", target, now, b""), vec![]).await;
    assert_eq!((status, error.code.as_str()), (400, "invalid"), "{}", error.message);
    assert!(error.message.contains("sleeping"), "{}", error.message);
    let (status, error) = raw(&base, "GET", "/v2/nothing", &[], vec![]).await;
    assert_eq!((status, error.code.as_str()), (404, "no_route"), "{}", error.message);

    assert_eq!(journal_len(&commons).await, before, "nothing refused reached the journal");
    let refused = refusal(
        client
            .get::<serde_json::Value>(
                "/v1/jobs/0000000000000000000000000000000000000000000000000000000000000000",
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((refused.status, refused.error.code.as_str()), (404, "unknown_job"));
    commons.stop().await.unwrap();

    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_icn"))
        .args(["journal", "verify", "--journal"])
        .arg(&journal)
        .output()
        .unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_outside_the_jobs_scope_reads_that_it_ran_but_not_what_it_made() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions {
        owners: &["coop-a", "coop-b"],
        members: &["ana", "ben", "cy"],
        commons_only: &["cy"],
        http_listen: Some(([127, 0, 0, 1], 0).into()),
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let base = format!("http://{}", commons.coordinator.http_addr().unwrap());
    commons.wait_for_workers(2).await.unwrap();
    let ana = WebClient::new(&base, commons.member.clone());
    let module = ana.put_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let job = ana.submit(&local::submission(module, b"", Limits::default())).await.unwrap();
    assert_eq!(finished(&ana, job).await.state, JobState::Completed);
    let outsider = commons.members.iter().find(|m| m.name == "cy").expect("cy is a member").key.clone();
    let south = WebClient::new(&base, Arc::clone(&outsider));
    let seen = south.status(job).await.unwrap();
    assert_eq!(seen.state, JobState::Completed, "that it ran is the commons' record");
    let refused = refusal(south.output(job).await.unwrap_err());
    assert_eq!((refused.status, refused.error.code.as_str()), (403, "private"), "{}", refused.error.message);
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_jobs_stderr_is_followed_over_http_by_those_who_may_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = LocalOptions {
        owners: &["coop-a"],
        members: &["ana"],
        commons_only: &["cy"],
        http_listen: Some(([127, 0, 0, 1], 0).into()),
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let base = format!("http://{}", commons.coordinator.http_addr().unwrap());
    commons.wait_for_workers(1).await.unwrap();
    let ana = WebClient::new(&base, commons.member.clone());
    let announce = wat::parse_str(include_str!("../../examples/wat/announce.wat")).unwrap();
    let module = ana.put_module(&announce).await.unwrap();
    // It says it started, then works until its time is gone: whatever is read before it
    // is cancelled was written while it ran.
    let limits = Limits {
        fuel: icn_protocol::Fuel(icn_protocol::wire::FUEL_MAX),
        timeout_ms: 60_000,
        ..Limits::default()
    };
    let job = ana.submit(&local::submission(module, b"", limits)).await.unwrap();
    let path = |from: u64| format!("/v1/jobs/{job}/logs/live?from={from}&wait_ms=10000");
    let mut live: icn_coordinator::http::LiveLogs = ana.get(&path(0)).await.unwrap();
    while live.stderr.is_empty() {
        assert!(matches!(live.state, JobState::Queued | JobState::Running { .. }), "{:?}", live.state);
        live = ana.get(&path(live.next)).await.unwrap();
    }
    assert_eq!(live.stderr, "started: working on it\n");
    assert!(matches!(live.state, JobState::Running { .. }), "read while it runs: {:?}", live.state);
    assert_eq!((live.from, live.next, live.skipped), (0, 23, 0));
    assert_eq!(live.worker, Some(commons.workers[0].key));

    // A member of the commons outside the job's scope, and a stranger: refused.
    let cy = commons.members.iter().find(|m| m.name == "cy").unwrap().key.clone();
    let refused = refusal(WebClient::new(&base, cy).get::<serde_json::Value>(&path(0)).await.unwrap_err());
    assert_eq!((refused.status, refused.error.code.as_str()), (403, "private"), "{}", refused.error.message);
    assert!(refused.error.message.contains("stderr of job"), "{}", refused.error.message);
    let stranger = WebClient::new(&base, Arc::new(Keypair::generate()));
    let refused = refusal(stranger.get::<serde_json::Value>(&path(0)).await.unwrap_err());
    assert_eq!(
        (refused.status, refused.error.code.as_str()),
        (403, "not_a_member"),
        "{}",
        refused.error.message
    );
    // A bad offset or parameter is named.
    let refused =
        refusal(ana.get::<serde_json::Value>(&format!("/v1/jobs/{job}/logs/live?from=x")).await.unwrap_err());
    assert_eq!(refused.status, 400, "{}", refused.error.message);

    // Once it is cancelled, following ends: nothing more, and the job's state says why.
    ana.cancel(job).await.unwrap();
    let mut ended: icn_coordinator::http::LiveLogs = ana.get(&path(live.next)).await.unwrap();
    while matches!(ended.state, JobState::Running { .. } | JobState::Queued) {
        ended = ana.get(&path(ended.next)).await.unwrap();
    }
    assert_eq!((ended.state, ended.stderr.as_str()), (JobState::Cancelled, ""));
    commons.stop().await.unwrap();
}
