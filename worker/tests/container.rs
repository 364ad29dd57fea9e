//! The container executor against the real Docker engine, with an image built here
//! from Debian's busybox-static (no registry): each test runs a task the way the agent
//! does and checks its outcome, its output, its usage, and that no container is left.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use icn_protocol::wire::{Assignment, ExecutorKind, FailureKind, Limits, Outcome};
use icn_protocol::{ContentId, Fuel, JobId, TaskId};
use icn_worker::container::{ContainerConfig, ContainerExecutor, LABEL_WORKER, import_busybox};
use icn_worker::executor::{Execution, Executor, LiveStderr, Stop};

const IMAGE_TAG: &str = "icn-test-busybox";

struct Sandbox {
    executor: Arc<ContainerExecutor>,
    image: ContentId,
}

/// An executor of its own (containers labelled with a fresh owner) and the test image.
/// A machine without the engine or busybox-static fails here, naming what is missing.
async fn sandbox() -> Sandbox {
    let image = import_busybox(std::path::Path::new("/bin/busybox"), IMAGE_TAG)
        .await
        .unwrap_or_else(|e| panic!("the container tests need Docker and Debian's busybox-static: {e}"));
    let owner = format!("test-{}", ContentId::of(&rand_bytes()).short());
    let executor =
        ContainerExecutor::connect(ContainerConfig::new(owner)).await.expect("the Docker engine answers");
    Sandbox { executor: Arc::new(executor), image }
}

fn rand_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("randomness");
    bytes
}

fn limits() -> Limits {
    Limits { fuel: Fuel(1), memory_bytes: 64 << 20, timeout_ms: 10_000, output_bytes: 64 * 1024 }
}

impl Sandbox {
    async fn run(&self, script: &str, input: &[u8], limits: Limits) -> Execution {
        self.run_until(script, input, limits, Stop::default()).await
    }

    async fn run_until(&self, script: &str, input: &[u8], limits: Limits, stop: Stop) -> Execution {
        self.run_live(script, input, limits, stop, LiveStderr::default()).await
    }

    async fn run_live(
        &self,
        script: &str,
        input: &[u8],
        limits: Limits,
        stop: Stop,
        live: LiveStderr,
    ) -> Execution {
        let assignment = Assignment {
            task: TaskId { job: JobId(ContentId::of(&rand_bytes())), index: 0 },
            attempt: 1,
            executor: ExecutorKind::Container,
            module: self.image,
            input: ContentId::of(input),
            args: vec!["sh".into(), "-c".into(), script.into()],
            limits,
        };
        let execution = self.executor.clone().run(assignment, input.to_vec(), stop, live).await;
        assert_eq!(
            self.executor.containers().await.unwrap(),
            Vec::<String>::new(),
            "no container is left behind"
        );
        execution
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn failure(execution: &Execution) -> FailureKind {
    match &execution.outcome {
        Outcome::Failed { kind, .. } => *kind,
        other => panic!("expected a failure, got {other:?} (stderr {:?})", text(&execution.stderr)),
    }
}

#[tokio::test]
async fn a_container_reads_its_input_writes_its_output_and_runs_unprivileged() {
    let sandbox = sandbox().await;
    let script = "echo hello; cat; id -u; grep CapEff /proc/self/status; grep NoNewPrivs /proc/self/status";
    let ran = sandbox.run(script, b"world\n", limits()).await;
    assert_eq!(ran.outcome, Outcome::Exited { code: 0 }, "stderr: {}", text(&ran.stderr));
    assert_eq!(
        text(&ran.output),
        "hello\nworld\n65534\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\n",
        "input through stdin, output from stdout, user nobody, no capabilities, no new privileges"
    );
    assert!(ran.usage.wall_ms > 0 && ran.usage.wall_ms < 10_000, "{:?}", ran.usage);
}

#[tokio::test]
async fn a_non_zero_exit_is_the_jobs_own_ending_with_its_stderr() {
    let sandbox = sandbox().await;
    let ran = sandbox.run("echo partial; echo oops >&2; exit 3", b"", limits()).await;
    assert_eq!(ran.outcome, Outcome::Exited { code: 3 });
    assert_eq!(text(&ran.output), "partial\n");
    assert_eq!(text(&ran.stderr), "oops\n");
}

#[tokio::test]
async fn a_container_past_its_timeout_is_killed() {
    let sandbox = sandbox().await;
    let started = Instant::now();
    let ran = sandbox.run("sleep 60", b"", Limits { timeout_ms: 1_000, ..limits() }).await;
    assert_eq!(failure(&ran), FailureKind::Timeout);
    assert!(started.elapsed() < Duration::from_secs(15), "killed at its timeout, not at the sleep's end");
}

#[tokio::test]
async fn a_container_over_its_memory_limit_fails_as_such() {
    let sandbox = sandbox().await;
    // dd holds one block of 128 MiB in memory; the limit is 32 MiB, with no swap. It starts
    // after a second: an out-of-memory kill in a container's first milliseconds may be
    // recorded by neither the engine's flag nor its `oom` event (seen 2 in 15 runs; the
    // next test).
    let ran = sandbox
        .run(
            "sleep 1; dd if=/dev/zero of=/dev/null bs=128M count=1",
            b"",
            Limits { memory_bytes: 32 << 20, ..limits() },
        )
        .await;
    assert_eq!(failure(&ran), FailureKind::MemoryLimit, "stderr: {}", text(&ran.stderr));
    // Whatever its last sample read before the kill: replicas report one peak.
    assert_eq!(ran.usage.memory_peak_bytes, 32 << 20);
}

/// A kill for memory in the container's first milliseconds, which the engine may not
/// record: it ends as a memory failure or as an exit by SIGKILL (137), which replicas'
/// judging takes for one result, and either way keeps none of its output.
#[tokio::test]
async fn a_container_killed_for_memory_at_once_keeps_no_output_however_the_engine_saw_it() {
    let sandbox = sandbox().await;
    let ran = sandbox
        .run(
            "echo partial; dd if=/dev/zero of=/dev/null bs=128M count=1",
            b"",
            Limits { memory_bytes: 32 << 20, ..limits() },
        )
        .await;
    assert!(
        matches!(
            ran.outcome,
            Outcome::Exited { code: 137 } | Outcome::Failed { kind: FailureKind::MemoryLimit, .. }
        ),
        "{:?}, stderr: {}",
        ran.outcome,
        text(&ran.stderr)
    );
    assert!(ran.output.is_empty(), "output kept: {}", text(&ran.output));
    assert_eq!(ran.usage.memory_peak_bytes, 32 << 20, "a run killed for memory reached its limit");
}

/// A container that exits with 137, the status of a SIGKILL, ends as its own exit, not as
/// a memory failure (only the engine's out-of-memory record makes one, and it is waited
/// for), but keeps no output: an exit by a SIGKILL its worker did not send is read as the
/// kernel's kill for memory, which the engine does not always record.
#[tokio::test]
async fn an_exit_of_137_is_not_taken_for_out_of_memory_and_keeps_no_output() {
    let sandbox = sandbox().await;
    let ran = sandbox.run("echo printed; echo why >&2; exit 137", b"", limits()).await;
    assert_eq!(ran.outcome, Outcome::Exited { code: 137 }, "stderr: {}", text(&ran.stderr));
    assert!(ran.output.is_empty(), "output kept: {}", text(&ran.output));
    assert_eq!(text(&ran.stderr).trim(), "why", "stderr is kept for the member to read");
}

#[tokio::test]
async fn the_pids_limit_stops_a_fork_bomb() {
    let sandbox = sandbox().await;
    // 200 background processes asked for; the limit lets at most 64 exist at once.
    // The shell stops at the first fork refused, and says so.
    let script = "for i in $(seq 200); do sleep 5 & done";
    let ran = sandbox.run(script, b"", limits()).await;
    assert_eq!(ran.outcome, Outcome::Exited { code: 2 }, "stderr: {}", text(&ran.stderr));
    assert!(text(&ran.stderr).contains("can't fork"), "stderr: {}", text(&ran.stderr));
    // A real fork bomb spins at the limit until its timeout kills it.
    let ran =
        sandbox.run("f() { f | f & }; f; sleep 30", b"", Limits { timeout_ms: 2_000, ..limits() }).await;
    assert_eq!(failure(&ran), FailureKind::Timeout);
    // And the worker runs the next task as before.
    assert_eq!(sandbox.run("echo fine", b"", limits()).await.output, b"fine\n");
}

#[tokio::test]
async fn a_container_has_no_network() {
    let sandbox = sandbox().await;
    // A listener on this machine's loopback: inside the container, 127.0.0.1 is its own
    // loopback in its own network namespace, so the connection cannot reach this one.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let script = format!(
        "ls /sys/class/net; wget -T 2 -q -O - http://127.0.0.1:{port}/ && echo reached || echo unreachable"
    );
    let ran = sandbox.run(&script, b"", limits()).await;
    assert_eq!(text(&ran.output), "lo\nunreachable\n", "stderr: {}", text(&ran.stderr));
    assert!(listener.accept().is_err(), "nothing connected to the host's listener");
}

#[tokio::test]
async fn only_the_scratch_tmpfs_is_writable() {
    let sandbox = sandbox().await;
    let script = "echo x > /etc/x || echo refused; echo kept > /tmp/y && cat /tmp/y";
    let ran = sandbox.run(script, b"", limits()).await;
    assert_eq!(text(&ran.output), "refused\nkept\n");
    assert!(text(&ran.stderr).contains("Read-only file system"), "stderr: {}", text(&ran.stderr));
    // The scratch space is bounded too.
    let ran = sandbox.run("dd if=/dev/zero of=/tmp/big bs=1M count=64 2>&1", b"", limits()).await;
    assert!(text(&ran.output).contains("No space left on device"), "output: {}", text(&ran.output));
}

/// A container that writes stderr for all its time leaves nothing on the worker's disk:
/// the engine keeps no log of a task's output, and only the tail travels.
#[tokio::test]
async fn stderr_is_kept_to_its_tail_and_never_logged_by_the_engine() {
    let sandbox = sandbox().await;
    let executor = sandbox.executor.clone();
    let logged = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let running = executor.containers().await.unwrap();
        let docker = icn_worker::container::local_engine().await.unwrap();
        let none = None::<bollard::query_parameters::InspectContainerOptions>;
        let inspected = docker.inspect_container(&running[0], none).await.unwrap();
        inspected.host_config.and_then(|h| h.log_config).and_then(|l| l.typ)
    });
    let ran = sandbox.run("yes complaint >&2 & sleep 2; echo done", b"", limits()).await;
    assert_eq!(logged.await.unwrap().as_deref(), Some("none"), "the engine's log driver for the task");
    assert_eq!(text(&ran.output), "done\n");
    assert_eq!(ran.stderr.len(), icn_protocol::wire::STDERR_SIZE_BYTES_MAX, "only the tail");
    assert!(text(&ran.stderr).contains("complaint\ncomplaint\n"), "the tail of what it wrote");
}

#[tokio::test]
async fn output_over_the_limit_is_cut_and_fails() {
    let sandbox = sandbox().await;
    let ran = sandbox.run("yes", b"", Limits { output_bytes: 64 * 1024, ..limits() }).await;
    assert_eq!(failure(&ran), FailureKind::OutputTooLarge);
    assert!(ran.output.is_empty(), "a failed run's output is not kept");
}

#[tokio::test]
async fn a_missing_image_is_named_and_never_pulled() {
    let sandbox = sandbox().await;
    let missing = Sandbox { executor: sandbox.executor.clone(), image: ContentId::of(b"no such image") };
    let ran = missing.run("true", b"", limits()).await;
    assert_eq!(failure(&ran), FailureKind::WorkerError);
    let Outcome::Failed { detail, .. } = &ran.outcome else { unreachable!() };
    assert!(
        detail.contains(&format!("sha256:{}", missing.image)) && detail.contains("never pull"),
        "{detail}"
    );
}

#[tokio::test]
async fn usage_is_read_from_the_engine() {
    let sandbox = sandbox().await;
    // Seconds of CPU in the shell's own arithmetic (the engine samples once a second),
    // and 24 MiB held by dd.
    let script = "dd if=/dev/zero of=/dev/null bs=24M count=1 2>/dev/null; i=0; \
                  while [ $i -lt 3000000 ]; do i=$((i+1)); done; echo $i";
    let ran = sandbox.run(script, b"", Limits { timeout_ms: 60_000, ..limits() }).await;
    assert_eq!(text(&ran.output), "3000000\n");
    assert!(ran.usage.wall_ms >= 2_000, "a run of seconds, so the engine sampled it: {:?}", ran.usage);
    assert!(ran.usage.cpu_ms >= 1_000, "CPU time measured: {:?}", ran.usage);
    assert!(ran.usage.cpu_ms <= ran.usage.wall_ms, "{:?}", ran.usage);
    assert!(ran.usage.memory_peak_bytes >= 20 << 20, "memory peak measured: {:?}", ran.usage);
}

#[tokio::test]
async fn a_stopped_task_is_killed_soon() {
    let sandbox = sandbox().await;
    let stop = Stop::default();
    let flag = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        flag.store(true, Ordering::Relaxed);
    });
    let started = Instant::now();
    let ran = sandbox.run_until("sleep 60", b"", limits(), stop).await;
    assert_eq!(failure(&ran), FailureKind::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(5), "stopped within a few samples");
}

#[tokio::test]
async fn what_a_container_writes_to_stderr_is_handed_on_while_it_runs() {
    let sandbox = sandbox().await;
    let (stop, live) = (Stop::default(), LiveStderr::default());
    let watcher = {
        let (stop, live) = (stop.clone(), live.clone());
        tokio::spawn(async move {
            // The container sleeps for a minute after its line: whatever is read here was
            // handed on while it ran, and the run is stopped once it is.
            let mut seen = Vec::new();
            while !seen.ends_with(b"\n") {
                if let Some((bytes, _)) = live.take() {
                    seen.extend(bytes);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stop.store(true, Ordering::Relaxed);
            seen
        })
    };
    let ran = sandbox.run_live("echo started >&2; sleep 60", b"", limits(), stop, live).await;
    assert_eq!(failure(&ran), FailureKind::Cancelled, "it ended only when stopped");
    assert_eq!(text(&watcher.await.unwrap()), "started\n");
    assert_eq!(text(&ran.stderr), "started\n");
}

#[tokio::test]
async fn a_worker_that_starts_removes_the_containers_it_left() {
    let sandbox = sandbox().await;
    let owner = format!("test-{}", ContentId::of(&rand_bytes()).short());
    // A container left by an earlier run of a worker with this key.
    let docker = icn_worker::container::local_engine().await.unwrap();
    let body = bollard::models::ContainerCreateBody {
        image: Some(icn_worker::container::image_ref(&sandbox.image)),
        cmd: Some(vec!["sleep".into(), "60".into()]),
        labels: Some([(LABEL_WORKER.to_string(), owner.clone())].into()),
        ..Default::default()
    };
    let left = docker
        .create_container(None::<bollard::query_parameters::CreateContainerOptions>, body)
        .await
        .unwrap();
    docker.start_container(&left.id, None::<bollard::query_parameters::StartContainerOptions>).await.unwrap();
    let restarted = ContainerExecutor::connect(ContainerConfig::new(owner)).await.unwrap();
    assert_eq!(restarted.containers().await.unwrap(), Vec::<String>::new());
    let inspected =
        docker.inspect_container(&left.id, None::<bollard::query_parameters::InspectContainerOptions>).await;
    assert!(inspected.is_err(), "the left container is gone from the engine");
}

/// A worker whose engine does not answer offers no container slots: connecting fails,
/// naming what did not answer.
#[tokio::test]
async fn no_engine_means_no_container_executor() {
    // SAFETY: this test runs in a process of its own (nextest), with no other thread
    // reading the environment yet.
    unsafe { std::env::set_var("DOCKER_HOST", "unix:///nonexistent/docker.sock") };
    let refused = ContainerExecutor::connect(ContainerConfig::new("test-none".into())).await.err();
    let refused = refused.expect("no engine, no executor");
    assert!(refused.contains("/nonexistent/docker.sock"), "{refused}");
}
