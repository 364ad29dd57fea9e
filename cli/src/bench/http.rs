//! `icn bench --http`: signed submissions per second over the HTTP/JSON API beside the
//! QUIC path, against the same coordinator in the same run, in alternating rounds.
//! A submission is counted when the coordinator answers with its job id: signed by
//! the member (the envelope, and over HTTP the request too), checked, authorized,
//! journaled and durable. The jobs then run as any others; the rounds time only the
//! submissions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use icn_protocol::Fuel;
use icn_protocol::wire::Limits;

use crate::client::Client;
use crate::demo::HELLO_WAT;
use crate::local::{self, LocalCommons, LocalOptions};
use crate::web::WebClient;

pub struct HttpBenchOptions {
    /// Submissions a round.
    pub jobs: usize,
    pub rounds: usize,
    /// Submissions awaiting their answer at any moment.
    pub in_flight: usize,
}

pub struct HttpBenchReport {
    pub options_jobs: usize,
    pub in_flight: usize,
    /// Submissions/s of each round, QUIC and HTTP.
    pub quic: Vec<f64>,
    pub http: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

impl HttpBenchReport {
    /// HTTP's median submissions/s over QUIC's.
    pub fn ratio(&self) -> f64 {
        median(&self.http) / median(&self.quic)
    }

    pub fn print(&self) {
        println!(
            "icn bench --http: {} rounds of {} signed submissions each way, {} awaiting an answer at a time, \
             alternating QUIC and HTTP against one coordinator",
            self.quic.len(),
            self.options_jobs,
            self.in_flight
        );
        let show = |values: &[f64]| values.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ");
        println!("QUIC submissions/s: median {:.0} ({})", median(&self.quic), show(&self.quic));
        println!("HTTP submissions/s: median {:.0} ({})", median(&self.http), show(&self.http));
        println!("ratio HTTP / QUIC (medians): {:.3}", self.ratio());
    }
}

pub async fn run(options: HttpBenchOptions) -> anyhow::Result<HttpBenchReport> {
    let dir = tempfile::tempdir()?;
    let commons = LocalCommons::start(
        dir.path(),
        LocalOptions {
            http_listen: Some(([127, 0, 0, 1], 0).into()),
            limits: icn_coordinator::limits::RateLimits::unbounded(),
            ..LocalOptions::default()
        },
    )
    .await?;
    let base = format!("http://{}", commons.coordinator.http_addr().expect("the bench asked for HTTP"));
    let web = WebClient::new(&base, commons.member.clone());
    let quic = Arc::new(commons.client().await?);
    let module = quic.ensure_module(&wat::parse_str(HELLO_WAT)?).await?;
    quic.ensure_input(b"").await?;
    // Each submission differs (its fuel), so each is a job of its own.
    let mut next_fuel = 1_000_000u64;
    let mut fresh = |count: usize| {
        (0..count)
            .map(|_| {
                next_fuel += 1;
                local::submission(module, b"", Limits { fuel: Fuel(next_fuel), ..Limits::default() })
                    .submission
            })
            .collect::<Vec<_>>()
    };
    let mut report = HttpBenchReport {
        options_jobs: options.jobs,
        in_flight: options.in_flight,
        quic: vec![],
        http: vec![],
    };
    for round in 0..options.rounds {
        // Alternate which goes first, so neither always runs on a warmer coordinator.
        for http_turn in if round % 2 == 0 { [false, true] } else { [true, false] } {
            let submissions = fresh(options.jobs);
            let started = Instant::now();
            if http_turn {
                submit_all(submissions, options.in_flight, |s| {
                    let web = &web;
                    async move {
                        let _: serde_json::Value = web.post_signed("/v1/jobs", &s).await?;
                        Ok(())
                    }
                })
                .await?;
            } else {
                submit_all(submissions, options.in_flight, |s| {
                    let quic = &quic;
                    async move { quic.submit_signed(&s).await.map(drop) }
                })
                .await?;
            }
            let rate = options.jobs as f64 / started.elapsed().as_secs_f64();
            if http_turn { report.http.push(rate) } else { report.quic.push(rate) }
        }
        // Let the round's jobs drain so the next round meets the same queue.
        drain(&quic).await?;
    }
    drop(quic);
    commons.stop().await?;
    Ok(report)
}

/// Sends every submission through `send`, `in_flight` awaiting their answer at a time.
async fn submit_all<F: std::future::Future<Output = anyhow::Result<()>>>(
    submissions: Vec<icn_protocol::wire::Submission>,
    in_flight: usize,
    send: impl FnMut(icn_protocol::wire::Submission) -> F,
) -> anyhow::Result<()> {
    let mut answers = stream::iter(submissions).map(send).buffer_unordered(in_flight);
    while let Some(answer) = answers.next().await {
        answer?;
    }
    Ok(())
}

/// Waits until no job is queued or running.
async fn drain(client: &Client) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let queue = client.queue().await?;
        if queue.scopes.iter().all(|s| s.waiting == 0 && s.running == 0) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "jobs still waiting after 300 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
