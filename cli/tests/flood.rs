//! Rate limits under a flood: one member submits as fast as it can over HTTP and QUIC at
//! once while another submits one job a second. The flood is refused in time (429 with
//! `Retry-After`, `rate_limited` on QUIC), every refusal is counted in `/metrics`, the
//! coordinator's memory stays bounded, and the other member's jobs run as fast as they
//! did with nobody flooding.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use icn_cli::client::Client;
use icn_cli::demo::HELLO_WAT;
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_cli::web::{Refused, WebClient};
use icn_coordinator::limits::{Rate, RateLimits};
use icn_protocol::Envelope;
use icn_protocol::wire::{ClientRequest, ClientResponse, JobState, Limits, Submission};

/// Each of the other member's jobs, from its submission to its result.
async fn latencies(client: &Client, submission: &Submission, jobs: usize) -> Vec<Duration> {
    let mut taken = Vec::new();
    for _ in 0..jobs {
        let started = Instant::now();
        let job = client.submit_signed(submission).await.expect("the other member's submission is taken");
        let view = client.watch(job, |_| {}).await.unwrap();
        assert_eq!(view.state, JobState::Completed, "{view:?}");
        taken.push(started.elapsed());
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
    }
    taken
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

fn sample_sum(scrape: &str, name: &str, label: &str) -> f64 {
    scrape
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_member_is_refused_in_time_and_never_starves_another() {
    let dir = tempfile::tempdir().unwrap();
    let limits = RateLimits { writes: Rate { per_second: 10, burst: 10 }, ..RateLimits::default() };
    let options = LocalOptions {
        owners: &["coop-a", "coop-b", "coop-c"],
        http_listen: Some(([127, 0, 0, 1], 0).into()),
        metrics_listen: Some(([127, 0, 0, 1], 0).into()),
        limits,
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    commons.wait_for_workers(3).await.unwrap();
    let base = format!("http://{}", commons.coordinator.http_addr().unwrap());
    let (flooder, other) = (commons.members[0].key.clone(), commons.members[1].key.clone());

    let patient = commons.client_for(other.clone()).await.unwrap();
    let module = patient.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let job = local::submission(module, b"one a second", Limits::default());
    patient.ensure_input(&job.input).await.unwrap();
    let unloaded = latencies(&patient, &job.submission, 8).await;

    // The flood: four HTTP and four QUIC loops of one member, each as fast as it gets
    // answers, for as long as the other member's jobs run.
    let web = Arc::new(WebClient::new(&base, flooder.clone()));
    let quic = Arc::new(commons.client_for(flooder.clone()).await.unwrap());
    let flood = local::submission(module, b"flood", Limits::default());
    web.submit(&flood).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let (http_taken, http_refused, quic_taken, quic_refused) = (0, 1, 2, 3);
    let mut loops = Vec::new();
    for _ in 0..4 {
        let (web, halt, tally, submission) =
            (web.clone(), stop.clone(), counts.clone(), flood.submission.clone());
        loops.push(tokio::spawn(async move {
            let (stop, counts) = (halt, tally);
            while !stop.load(Ordering::Relaxed) {
                match web.post_signed::<_, serde_json::Value>("/v1/jobs", &submission).await {
                    Ok(_) => counts[http_taken].fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        let refused = e.downcast::<Refused>().expect("a refusal");
                        assert_eq!(refused.status, 429, "{}", refused.error.message);
                        assert_eq!(refused.error.code, "rate_limited");
                        assert!(refused.retry_after.is_some_and(|s| s >= 1), "429 without Retry-After");
                        counts[http_refused].fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
        let (quic, halt, tally, submission) =
            (quic.clone(), stop.clone(), counts.clone(), flood.submission.clone());
        loops.push(tokio::spawn(async move {
            let (stop, counts) = (halt, tally);
            while !stop.load(Ordering::Relaxed) {
                let envelope = Envelope::seal(quic.key(), icn_transport::nonce(), &submission);
                match quic.request(&ClientRequest::Submit(envelope)).await.unwrap() {
                    ClientResponse::Submitted(_) => counts[quic_taken].fetch_add(1, Ordering::Relaxed),
                    ClientResponse::Error(error) => {
                        assert_eq!(error.code, "rate_limited", "{}", error.message);
                        assert!(error.message.contains("try again in"), "{}", error.message);
                        counts[quic_refused].fetch_add(1, Ordering::Relaxed)
                    }
                    other => panic!("{other:?}"),
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = resident_bytes();
    let flood_started = Instant::now();
    let loaded = latencies(&patient, &job.submission, 10).await;
    let flooded_for = flood_started.elapsed();
    let grown = resident_bytes().saturating_sub(before);
    stop.store(true, Ordering::Relaxed);
    for task in loops {
        task.await.unwrap();
    }

    let count = |i: usize| counts[i].load(Ordering::Relaxed);
    let taken = count(http_taken) + count(quic_taken);
    let refused = count(http_refused) + count(quic_refused);
    assert!(count(http_refused) > 100 && count(quic_refused) > 100, "the flood was not refused: {counts:?}");
    // Taken at the member's rate, over both adapters together: 10 a second and a burst of 10.
    let allowed = 10 + (flooded_for.as_secs_f64() + 1.0) as u64 * 10;
    assert!(
        taken <= allowed,
        "{taken} flood submissions taken in {flooded_for:?}; at most {allowed} allowed"
    );

    let worst = |taken: &[Duration]| taken.iter().max().copied().unwrap();
    let (quiet, flooded) = (worst(&unloaded), worst(&loaded));
    // Ten jobs: the slowest is the 99th percentile. A floor of 100 ms keeps a quiet
    // machine's few milliseconds from making the ratio noise.
    let bound = quiet.max(Duration::from_millis(100)) * 5;
    assert!(
        flooded <= bound,
        "under the flood the other member's slowest job took {flooded:?}; unloaded {quiet:?}"
    );
    assert!(grown < 64 << 20, "the process grew {grown} bytes under the flood");

    let scrape = reqwest::get(format!("http://{}/metrics", commons.coordinator.metrics_addr().unwrap()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = sample_sum(&scrape, "icn_requests_refused_total", "reason=\"rate_limited\"");
    assert!(counted >= refused as f64, "{refused} refusals seen, {counted} counted");
    eprintln!(
        "flood: {taken} taken, {refused} refused ({} over HTTP, {} over QUIC) in {flooded_for:?}; the other \
         member's slowest job {quiet:?} unloaded, {flooded:?} flooded; grew {grown} bytes",
        count(http_refused),
        count(quic_refused)
    );
}
