//! The container executor: a task runs as a Docker container through the local engine
//! (bollard), sandboxed as tightly as the engine allows — no network, a read-only root
//! with a bounded tmpfs at `/tmp`, every capability dropped, no new privileges, a
//! non-root user, a CPU quota, a memory limit without swap, a pids limit and a
//! wall-clock timeout that kills it. The image is named by its id (`sha256:…`, the
//! submission's program) and must already be on this machine: a worker never pulls.
//! stdin is the task's input, stdout its output (bounded by the task's limit), stderr
//! kept to its tail. Usage — CPU time and peak memory — is read from the engine's
//! stats while the container runs (a sample a second) and goes in the report.
//!
//! Every container carries the labels [`LABEL_WORKER`] (this worker's key) and
//! [`LABEL_TASK`]; it is removed when its task ends, and a worker that starts removes any
//! of its own left from an earlier run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder,
};
use futures_util::StreamExt;
use icn_protocol::wire::{
    Assignment, CONTAINER_CPUS, CONTAINER_SIGKILL_EXIT, ExecutorKind, FailureKind, Limits, Outcome,
    STDERR_SIZE_BYTES_MAX, Usage,
};
use icn_protocol::{ContentId, Fuel};
use prometheus::{IntCounter, IntCounterVec, Opts};
use tokio::io::AsyncWriteExt;

use crate::executor::{Execution, Executor, LiveStderr, Running, Stop};

/// Label naming the worker a container runs for (its public key).
pub const LABEL_WORKER: &str = "org.icn.worker";
/// Label naming the task (and attempt) a container runs.
pub const LABEL_TASK: &str = "org.icn.task";
/// How often a running container's stop flag is checked.
pub const STOP_CHECK_INTERVAL_MS: u64 = 100;
/// stderr kept while a container runs; the report carries its last
/// [`STDERR_SIZE_BYTES_MAX`].
const STDERR_KEEP_BYTES_MAX: usize = 2 * STDERR_SIZE_BYTES_MAX;
/// Time one engine request may take before the task fails as the worker's own error.
const ENGINE_TIMEOUT_MS: u64 = 30_000;
/// A container that ended by SIGKILL we did not send: how long the engine is given to
/// record that the kernel killed it for memory (it can record the exit first), so every
/// replica reads the same ending.
const OOM_RECORD_WAIT_MS: u64 = 3_000;
/// How often the engine's record is read again meanwhile.
const OOM_RECORD_POLL_MS: u64 = 50;

/// How this worker sandboxes its containers, beyond each task's own limits.
#[derive(Clone, Debug)]
pub struct ContainerConfig {
    /// The value of [`LABEL_WORKER`] on this worker's containers: its key, so a restart
    /// removes only what it left itself.
    pub owner: String,
    /// Processes (threads included) one container may have.
    pub pids_max: i64,
    /// Size of the writable tmpfs at `/tmp`, the only writable place.
    pub scratch_bytes: u64,
    /// The user a container's process runs as (`uid:gid`), never root.
    pub user: String,
}

impl ContainerConfig {
    pub fn new(owner: String) -> ContainerConfig {
        ContainerConfig { owner, pids_max: 64, scratch_bytes: 16 * 1024 * 1024, user: "65534:65534".into() }
    }
}

/// Container starts, engine failures and kills, for `/metrics`.
#[derive(Clone)]
struct Counters {
    starts: IntCounter,
    failures: IntCounterVec,
    kills: IntCounterVec,
}

impl Counters {
    fn new() -> Counters {
        let failures = IntCounterVec::new(
            Opts::new(
                "icn_worker_container_failures_total",
                "Container tasks that could not run, by reason (image_missing, engine).",
            ),
            &["reason"],
        )
        .expect("a valid counter");
        let kills = IntCounterVec::new(
            Opts::new(
                "icn_worker_container_kills_total",
                "Containers the worker killed, by reason (timeout, output, cancelled).",
            ),
            &["reason"],
        )
        .expect("a valid counter");
        let starts = IntCounter::new("icn_worker_container_starts_total", "Containers started.")
            .expect("a valid counter");
        // Every reason is exported from the start, at zero, so a rate over it has data.
        for reason in ["image_missing", "engine"] {
            failures.with_label_values(&[reason]);
        }
        for reason in ["timeout", "output", "cancelled"] {
            kills.with_label_values(&[reason]);
        }
        Counters { starts, failures, kills }
    }
}

pub struct ContainerExecutor {
    docker: Docker,
    config: ContainerConfig,
    counters: Counters,
}

/// The engine's name for the image a container program names.
pub fn image_ref(program: &ContentId) -> String {
    format!("sha256:{program}")
}

/// The program of a container job: its image id (`sha256:` and 64 hex digits, as
/// `docker images --no-trunc` shows it, or the bare digits).
pub fn parse_image(text: &str) -> Result<ContentId, String> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    hex.parse().map_err(|_| {
        format!(
            "image {text:?} is not an image id: give `sha256:` and 64 hex digits, as `docker images --no-trunc` or \
             `docker inspect --format '{{{{.Id}}}}' IMAGE` prints it (workers run images by id and never pull)"
        )
    })
}

/// The local Docker engine (`DOCKER_HOST`, else its Unix socket), speaking the newest API
/// version both sides know.
pub async fn local_engine() -> Result<Docker, String> {
    Docker::connect_with_local_defaults()
        .map_err(|e| format!("no Docker engine to connect to: {e}"))?
        .negotiate_version()
        .await
        .map_err(|e| format!("the Docker engine did not answer: {e}"))
}

impl ContainerExecutor {
    /// Connects to the local Docker engine and removes containers this worker left
    /// from an earlier run. An error means the engine did not answer: the worker then
    /// offers no container slots.
    pub async fn connect(config: ContainerConfig) -> Result<ContainerExecutor, String> {
        let docker = local_engine().await?;
        docker.ping().await.map_err(|e| format!("the Docker engine did not answer a ping: {e}"))?;
        let executor = ContainerExecutor { docker, config, counters: Counters::new() };
        let removed = executor.remove_leftovers().await?;
        if removed > 0 {
            tracing::info!(removed, "removed containers left from this worker's earlier run");
        }
        Ok(executor)
    }

    /// Containers of this worker the engine holds now, running or not.
    pub async fn containers(&self) -> Result<Vec<String>, String> {
        let filters = HashMap::from([("label", vec![format!("{LABEL_WORKER}={}", self.config.owner)])]);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| format!("listing containers: {e}"))?;
        Ok(listed.into_iter().filter_map(|c| c.id).collect())
    }

    async fn remove_leftovers(&self) -> Result<usize, String> {
        let ids = self.containers().await?;
        for id in &ids {
            self.remove(id).await;
        }
        Ok(ids.len())
    }

    async fn remove(&self, id: &str) {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        if let Err(e) = self.docker.remove_container(id, Some(options)).await {
            tracing::warn!(container = %id, error = %e, "a container could not be removed");
        }
    }

    /// Kills the container from a task of its own: the caller goes on draining the
    /// container's output, which the engine may be blocked writing (a container that
    /// floods stdout) until it is read — awaiting the kill instead could wait on that.
    fn kill(&self, id: &str, reason: &str) {
        self.counters.kills.with_label_values(&[reason]).inc();
        let (docker, id) = (self.docker.clone(), id.to_string());
        tokio::spawn(async move {
            let options = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
            if let Err(e) = engine(docker.kill_container(&id, Some(options))).await {
                // It may have ended on its own meanwhile.
                tracing::debug!(container = %id, error = %e, "kill");
            }
        });
    }

    fn body(&self, assignment: &Assignment) -> ContainerCreateBody {
        let limits = &assignment.limits;
        let memory = i64::try_from(limits.memory_bytes).expect("memory limits are bounded");
        let host = HostConfig {
            memory: Some(memory),
            // The same as the memory limit: no swap.
            memory_swap: Some(memory),
            nano_cpus: Some(CONTAINER_CPUS as i64 * 1_000_000_000),
            pids_limit: Some(self.config.pids_max),
            network_mode: Some("none".into()),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([("/tmp".to_string(), {
                // Owned by the task's user: the engine keeps the mode of a /tmp the image has.
                let (uid, gid) = self.config.user.split_once(':').unwrap_or((&self.config.user, "65534"));
                format!(
                    "rw,noexec,nosuid,nodev,uid={uid},gid={gid},mode=0700,size={}",
                    self.config.scratch_bytes
                )
            })])),
            // The output is read from the attach stream; the engine keeps no log of it
            // on the worker's disk (a container writing stderr for its whole time limit
            // would otherwise fill that disk).
            log_config: Some(HostConfigLogConfig { typ: Some("none".into()), config: None }),
            cap_drop: Some(vec!["ALL".into()]),
            security_opt: Some(vec!["no-new-privileges".into()]),
            ..Default::default()
        };
        let labels = HashMap::from([
            (LABEL_WORKER.to_string(), self.config.owner.clone()),
            (LABEL_TASK.to_string(), format!("{}:{}", assignment.task, assignment.attempt)),
        ]);
        ContainerCreateBody {
            image: Some(image_ref(&assignment.module)),
            cmd: if assignment.args.is_empty() { None } else { Some(assignment.args.clone()) },
            user: Some(self.config.user.clone()),
            env: Some(vec![]),
            working_dir: Some("/tmp".into()),
            network_disabled: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            labels: Some(labels),
            host_config: Some(host),
            ..Default::default()
        }
    }

    /// Runs one task in a new container and removes it, whatever happens.
    async fn execute(
        &self,
        assignment: Assignment,
        input: Vec<u8>,
        stop: Stop,
        live: LiveStderr,
    ) -> Execution {
        let image = image_ref(&assignment.module);
        if let Err(e) = self.docker.inspect_image(&image).await {
            self.counters.failures.with_label_values(&["image_missing"]).inc();
            return Execution::refused(match e {
                bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => format!(
                    "image {image} is not on this worker, and workers never pull: load or build it here first"
                ),
                e => format!("the Docker engine could not inspect image {image}: {e}"),
            });
        }
        let created = engine(self.docker.create_container(
            None::<bollard::query_parameters::CreateContainerOptions>,
            self.body(&assignment),
        ))
        .await;
        let id = match created {
            Ok(created) => created.id,
            Err(e) => {
                self.counters.failures.with_label_values(&["engine"]).inc();
                return Execution::refused(format!("the Docker engine could not create the container: {e}"));
            }
        };
        let execution = self.run_created(&id, &assignment.limits, input, &stop, &live).await;
        self.remove(&id).await;
        execution.unwrap_or_else(|e| {
            self.counters.failures.with_label_values(&["engine"]).inc();
            Execution::refused(e)
        })
    }

    async fn run_created(
        &self,
        id: &str,
        limits: &Limits,
        input: Vec<u8>,
        stop: &Stop,
        live: &LiveStderr,
    ) -> Result<Execution, String> {
        let options = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .stream(true)
            .build();
        let attached = engine(self.docker.attach_container(id, Some(options)))
            .await
            .map_err(|e| format!("the Docker engine could not attach to the container: {e}"))?;
        // Events of this container are read from a second before its start (the engine
        // stamps them with its own clock).
        let since = std::time::SystemTime::now() - Duration::from_secs(1);
        engine(self.docker.start_container(id, None::<bollard::query_parameters::StartContainerOptions>))
            .await
            .map_err(|e| format!("the Docker engine could not start the container: {e}"))?;
        self.counters.starts.inc();
        let started = Instant::now();
        let mut stdin = attached.input;
        // Closing our side of stdin is what the container reads as the end of its input.
        let feed = tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
        let sampled = Arc::new(std::sync::Mutex::new(Usage::default()));
        let sampler = self.sample(id, sampled.clone());
        let watched = self.watch(id, limits, attached.output, stop, live).await;
        feed.abort();
        sampler.abort();
        let sampled = *sampled.lock().expect("usage lock");
        let wall_ms = started.elapsed().as_millis() as u64;
        let state = self.ended_state(id, matches!(watched.ended, Ended::Exited), since).await?;
        // The engine's own record of the process's life, not this worker's view of it
        // (which adds the engine's answers and this worker's scheduling): replicas on
        // busy machines read closer to each other.
        let wall_ms = lifetime_ms(&state).unwrap_or(wall_ms);
        let outcome = match watched.ended {
            Ended::Exited if state.oom_killed == Some(true) => Outcome::Failed {
                kind: FailureKind::MemoryLimit,
                detail: format!("the container went over its memory limit of {} bytes", limits.memory_bytes),
            },
            Ended::Exited => Outcome::Exited { code: state.exit_code.unwrap_or(-1) as i32 },
            Ended::Killed(kind, detail) => Outcome::Failed { kind, detail },
        };
        // An exit by SIGKILL this worker did not send is the kernel's kill for memory that
        // the engine did not record: no output is kept of it, as of one it did record.
        let killed_for_memory = matches!(
            outcome,
            Outcome::Exited { code: CONTAINER_SIGKILL_EXIT }
                | Outcome::Failed { kind: FailureKind::MemoryLimit, .. }
        );
        let output = match outcome {
            Outcome::Exited { .. } if !killed_for_memory => watched.stdout,
            Outcome::Exited { .. } | Outcome::Failed { .. } => Vec::new(),
        };
        let usage = Usage {
            // Sampled usage can run a little past the clock's reading; the report must not.
            cpu_ms: sampled.cpu_ms.min(wall_ms * CONTAINER_CPUS),
            // A run killed for memory reached its limit, whatever the last sample before
            // the kill read: so honest replicas of it report the same peak.
            memory_peak_bytes: if killed_for_memory {
                limits.memory_bytes
            } else {
                sampled.memory_peak_bytes.min(limits.memory_bytes)
            },
            wall_ms: wall_ms.min(limits.timeout_ms + icn_protocol::wire::CONTAINER_STOP_GRACE_MS),
        };
        Ok(Execution { outcome, output, stderr: tail(watched.stderr), fuel: Fuel(0), usage })
    }

    /// The engine's record of an ended container, once it has stopped. When its output
    /// ended by itself (`exited`) with an exit by SIGKILL (137), whether the kernel killed
    /// it for memory is read from the engine's `oom` event for it (its `OOMKilled` flag
    /// alone is racy: an exit handled after the event clears it), waited for at most
    /// [`OOM_RECORD_WAIT_MS`]; the state then says `oom_killed` either way.
    async fn ended_state(
        &self,
        id: &str,
        exited: bool,
        since: std::time::SystemTime,
    ) -> Result<bollard::models::ContainerState, String> {
        let options = bollard::query_parameters::WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let mut waiting = self.docker.wait_container(id, Some(options));
        // Its answer is only a signal: the exit code is read from the inspection below
        // (the engine reports a non-zero exit as an error of this stream).
        let _ = tokio::time::timeout(Duration::from_millis(ENGINE_TIMEOUT_MS), waiting.next()).await;
        let inspect =
            self.docker.inspect_container(id, None::<bollard::query_parameters::InspectContainerOptions>);
        let mut state = engine(inspect)
            .await
            .map_err(|e| format!("the Docker engine could not inspect the ended container: {e}"))?
            .state
            .unwrap_or_default();
        if !exited
            || state.exit_code != Some(i64::from(CONTAINER_SIGKILL_EXIT))
            || state.oom_killed == Some(true)
        {
            return Ok(state);
        }
        let waited = Instant::now();
        loop {
            if self.oom_event(id, since).await? {
                state.oom_killed = Some(true);
                return Ok(state);
            }
            if waited.elapsed() >= Duration::from_millis(OOM_RECORD_WAIT_MS) {
                return Ok(state);
            }
            tokio::time::sleep(Duration::from_millis(OOM_RECORD_POLL_MS)).await;
        }
    }

    /// Whether the engine recorded an `oom` event for container `id` since `since`.
    async fn oom_event(&self, id: &str, since: std::time::SystemTime) -> Result<bool, String> {
        let unix = |t: std::time::SystemTime| {
            let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            format!("{}.{:09}", d.as_secs(), d.subsec_nanos())
        };
        let filters = std::collections::HashMap::from([
            ("type", vec!["container"]),
            ("container", vec![id]),
            ("event", vec!["oom"]),
        ]);
        let options = bollard::query_parameters::EventsOptionsBuilder::default()
            .since(&unix(since))
            .until(&unix(std::time::SystemTime::now()))
            .filters(&filters)
            .build();
        let mut events = self.docker.events(Some(options));
        match tokio::time::timeout(Duration::from_millis(ENGINE_TIMEOUT_MS), events.next()).await {
            Ok(Some(Ok(_))) => Ok(true),
            Ok(None) => Ok(false),
            Ok(Some(Err(e))) => Err(format!("the Docker engine could not list the container's events: {e}")),
            Err(_) => Err(format!("no answer from the Docker engine in {ENGINE_TIMEOUT_MS} ms")),
        }
    }

    /// Reads the container's output until it ends, sampling its usage, and kills it at
    /// its timeout, when its output passes its limit, or when the task is stopped.
    async fn watch(
        &self,
        id: &str,
        limits: &Limits,
        mut output: std::pin::Pin<
            Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
        >,
        stop: &Stop,
        live: &LiveStderr,
    ) -> Watched {
        let mut watched = Watched { ended: Ended::Exited, stdout: Vec::new(), stderr: Vec::new() };
        let deadline = tokio::time::Instant::now() + Duration::from_millis(limits.timeout_ms);
        let mut tick = tokio::time::interval(Duration::from_millis(STOP_CHECK_INTERVAL_MS));
        let mut killed = false;
        loop {
            tokio::select! {
                frame = output.next() => match frame {
                    Some(Ok(LogOutput::StdOut { message })) if !killed => {
                        watched.stdout.extend_from_slice(&message);
                        if watched.stdout.len() as u64 > limits.output_bytes {
                            let detail = format!("the container wrote more than {} bytes of output", limits.output_bytes);
                            watched.ended = Ended::Killed(FailureKind::OutputTooLarge, detail);
                            self.kill(id, "output");
                            killed = true;
                        }
                    }
                    Some(Ok(LogOutput::StdErr { message })) => {
                        live.push(&message);
                        watched.stderr.extend_from_slice(&message);
                        if watched.stderr.len() > STDERR_KEEP_BYTES_MAX {
                            watched.stderr.drain(..watched.stderr.len() - STDERR_KEEP_BYTES_MAX);
                        }
                    }
                    Some(Ok(_)) => {}
                    // The stream ends when the container does.
                    Some(Err(_)) | None => break,
                },
                _ = tick.tick() => {
                    if stop.load(Ordering::Relaxed) && !killed {
                        watched.ended = Ended::Killed(FailureKind::Cancelled, "the worker stopped it: its job was cancelled".into());
                        self.kill(id, "cancelled");
                        killed = true;
                    }
                }
                _ = tokio::time::sleep_until(deadline), if !killed => {
                    let detail = format!("the container ran longer than its {} ms wall-clock limit", limits.timeout_ms);
                    watched.ended = Ended::Killed(FailureKind::Timeout, detail);
                    self.kill(id, "timeout");
                    killed = true;
                }
            }
        }
        watched
    }

    /// Follows the container's stats from the engine until it ends: CPU time and memory
    /// peak so far, kept in `usage`. The engine sends a sample as the container starts
    /// and then once a second, so the CPU time of a run's last second goes unmeasured
    /// (the memory peak is the cgroup's own, whenever it was reached).
    fn sample(&self, id: &str, usage: Arc<std::sync::Mutex<Usage>>) -> tokio::task::JoinHandle<()> {
        let options = StatsOptionsBuilder::default().stream(true).build();
        let mut stats = self.docker.stats(id, Some(options));
        tokio::spawn(async move {
            while let Some(Ok(stats)) = stats.next().await {
                let cpu_ns =
                    stats.cpu_stats.and_then(|c| c.cpu_usage).and_then(|u| u.total_usage).unwrap_or(0);
                let memory = stats.memory_stats.map(|m| m.max_usage.or(m.usage).unwrap_or(0)).unwrap_or(0);
                let mut usage = usage.lock().expect("usage lock");
                usage.cpu_ms = usage.cpu_ms.max(cpu_ns / 1_000_000);
                usage.memory_peak_bytes = usage.memory_peak_bytes.max(memory);
            }
        })
    }
}

enum Ended {
    Exited,
    Killed(FailureKind, String),
}

struct Watched {
    ended: Ended,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// How long the container's process lived, by the engine's record (RFC 3339 times).
fn lifetime_ms(state: &bollard::models::ContainerState) -> Option<u64> {
    let time = |t: &Option<String>| humantime::parse_rfc3339(t.as_deref()?).ok();
    let (started, finished) = (time(&state.started_at)?, time(&state.finished_at)?);
    Some(finished.duration_since(started).ok()?.as_millis() as u64)
}

/// One engine request, bounded in time.
async fn engine<T>(
    request: impl std::future::Future<Output = Result<T, bollard::errors::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(Duration::from_millis(ENGINE_TIMEOUT_MS), request).await {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer from the Docker engine in {ENGINE_TIMEOUT_MS} ms")),
    }
}

fn tail(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() > STDERR_SIZE_BYTES_MAX {
        bytes.drain(..bytes.len() - STDERR_SIZE_BYTES_MAX);
    }
    bytes
}

impl Executor for ContainerExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::Container
    }

    /// Images are never fetched from the coordinator: a missing one fails its task.
    fn has_program(&self, _program: &ContentId) -> bool {
        true
    }

    fn load_program(&self, program: ContentId, _bytes: &[u8]) -> Result<(), String> {
        Err(format!(
            "container image {} is not fetched: workers run only the images they hold",
            image_ref(&program)
        ))
    }

    fn run(self: Arc<Self>, assignment: Assignment, input: Vec<u8>, stop: Stop, live: LiveStderr) -> Running {
        Box::pin(async move { self.execute(assignment, input, stop, live).await })
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        let c = &self.counters;
        vec![Box::new(c.starts.clone()), Box::new(c.failures.clone()), Box::new(c.kills.clone())]
    }
}

/// The programs of Debian's busybox-static an image built by [`import_busybox`] holds.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "yes", "head", "seq", "wc", "nc", "wget", "ls", "id", "dd", "true",
    "false", "touch", "ip", "ps", "grep", "tail",
];

/// Builds a small image from a static busybox binary (Debian's `busybox-static` puts one
/// at `/bin/busybox`), with no registry: its root filesystem is imported as an image
/// named `repo`, as `docker import` does, tagged by the root filesystem's digest, so the
/// same busybox is imported once. Returns the image's id, the program of a container
/// job. For tests, benchmarks and trying the container executor out.
pub async fn import_busybox(busybox: &std::path::Path, repo: &str) -> Result<ContentId, String> {
    let binary = std::fs::read(busybox).map_err(|e| {
        format!(
            "reading {}: {e} (Debian's busybox-static package installs a static busybox there)",
            busybox.display()
        )
    })?;
    let mut archive = tar::Builder::new(Vec::new());
    let mut add = |path: &str, kind: tar::EntryType, mode: u32, link: Option<&str>, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(bytes.len() as u64);
        if let Some(link) = link {
            header.set_link_name(link).map_err(|e| e.to_string())?;
        }
        header.set_cksum();
        archive.append_data(&mut header, path, bytes).map_err(|e| format!("building the image: {e}"))
    };
    for dir in ["bin", "tmp", "etc"] {
        add(dir, tar::EntryType::Directory, 0o755, None, &[])?;
    }
    add("bin/busybox", tar::EntryType::Regular, 0o755, None, &binary)?;
    for applet in BUSYBOX_APPLETS {
        add(&format!("bin/{applet}"), tar::EntryType::Symlink, 0o777, Some("busybox"), &[])?;
    }
    add(
        "etc/passwd",
        tar::EntryType::Regular,
        0o644,
        None,
        b"root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/tmp:/bin/sh\n",
    )?;
    let bytes = archive.into_inner().map_err(|e| format!("building the image: {e}"))?;
    let docker = local_engine().await?;
    let version = ContentId::of(&bytes).short();
    let tag = format!("{repo}:{version}");
    if let Ok(image) = docker.inspect_image(&tag).await
        && let Some(id) = image.id
    {
        return parse_image(&id);
    }
    let options = bollard::query_parameters::CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(&version)
        .changes(vec!["ENV PATH=/bin".to_string()])
        .build();
    let mut progress = docker.create_image(Some(options), Some(bollard::body_full(bytes.into())), None);
    while let Some(step) = progress.next().await {
        step.map_err(|e| format!("importing the image: {e}"))?;
    }
    let image =
        docker.inspect_image(&tag).await.map_err(|e| format!("inspecting the imported image {tag}: {e}"))?;
    let id = image.id.ok_or_else(|| format!("the engine gave no id for image {tag}"))?;
    parse_image(&id)
}
