//! `icn bench --container`: the per-task time of a container job through the commons —
//! submit, journal, placement, the worker's container (create, attach, start, wait,
//! inspect, remove), report, verification — beside `docker run --rm` of the same image and
//! command on the same engine, alternating one and the other in the same run.

use std::time::{Duration, Instant};

use icn_protocol::ContentId;
use icn_protocol::wire::{ExecutorKind, JobState, Limits};

use crate::client::JobRequest;
use crate::local::{LocalCommons, LocalOptions};

/// The command both run: a shell that prints a line.
const SCRIPT: &str = "echo hello from a container";

pub struct ContainerBenchReport {
    pub jobs: usize,
    pub through_commons: Vec<Duration>,
    pub docker_run: Vec<Duration>,
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn mean(times: &[Duration]) -> Duration {
    times.iter().sum::<Duration>() / times.len() as u32
}

impl ContainerBenchReport {
    pub fn ratio(&self) -> f64 {
        median(&self.through_commons).as_secs_f64() / median(&self.docker_run).as_secs_f64()
    }

    pub fn print(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "icn bench --container: {} container jobs (`sh -c '{SCRIPT}'` in a busybox image), one at a time, \
             alternating with `docker run --rm` of the same image and command",
            self.jobs
        );
        println!(
            "through the commons (submit -> journal -> QUIC -> worker -> container -> report -> member): median \
             {:.1} ms, mean {:.1} ms",
            ms(median(&self.through_commons)),
            ms(mean(&self.through_commons))
        );
        println!(
            "baseline, docker run --rm --network none: median {:.1} ms, mean {:.1} ms",
            ms(median(&self.docker_run)),
            ms(mean(&self.docker_run))
        );
        println!("ratio through the commons / docker run (medians): {:.3}", self.ratio());
    }
}

/// One `docker run --rm` of `image`, as a person would type it.
fn docker_run(image: ContentId) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--user", "65534:65534"])
        .arg(icn_worker::container::image_ref(&image))
        .args(["sh", "-c", SCRIPT])
        .output()?;
    let took = started.elapsed();
    anyhow::ensure!(out.status.success(), "docker run failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(took)
}

pub async fn run(jobs: usize, busybox: &std::path::Path) -> anyhow::Result<ContainerBenchReport> {
    anyhow::ensure!(jobs > 0, "--jobs must be at least 1");
    let image = icn_worker::container::import_busybox(busybox, "icn-bench-busybox")
        .await
        .map_err(anyhow::Error::msg)?;
    let dir = tempfile::tempdir()?;
    let options = LocalOptions {
        owners: &["coop-a"],
        containers: true,
        mandate_executors: &[ExecutorKind::Wasm, ExecutorKind::Container],
        voting_window_ms: 300,
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await?;
    commons.decide_container_terms(50).await?;
    let client = commons.client().await?;
    let args = vec!["sh".to_string(), "-c".to_string(), SCRIPT.to_string()];
    let request = |i: usize| {
        // Inputs differ so that no two submissions are the same job.
        let input = format!("{i}\n").into_bytes();
        JobRequest::new(
            crate::local::federation(),
            ExecutorKind::Container,
            image,
            &input,
            args.clone(),
            Limits::default(),
        )
    };
    // One of each first, unmeasured: the engine's caches and the connection warm up.
    docker_run(image)?;
    let warm = client.submit(&request(usize::MAX)).await?;
    client.watch(warm, |_| {}).await?;
    let (mut through_commons, mut docker) = (Vec::with_capacity(jobs), Vec::with_capacity(jobs));
    for i in 0..jobs {
        docker.push(tokio::task::spawn_blocking(move || docker_run(image)).await??);
        let started = Instant::now();
        let job = client.submit(&request(i)).await?;
        let view = client.watch(job, |_| {}).await?;
        through_commons.push(started.elapsed());
        anyhow::ensure!(view.state == JobState::Completed, "container job {job} did not complete: {view:?}");
    }
    commons.stop().await?;
    Ok(ContainerBenchReport { jobs, through_commons, docker_run: docker })
}
