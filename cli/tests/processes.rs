//! The `icn` binary as operators run it: a coordinator process and worker processes
//! on loopback, killed with SIGKILL and restarted, and the journal checked afterwards.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ICN: &str = env!("CARGO_BIN_EXE_icn");

fn wat(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wat").join(name)
}

fn icn(args: &[&str]) -> Output {
    Command::new(ICN)
        .args(args)
        .env("ICN_CLIENT_CONFIG", NO_CLIENT_CONFIG)
        .stdin(Stdio::null())
        .output()
        .expect("icn runs")
}

/// A client config no test writes: commands see no saved context, whatever the machine's
/// own config holds.
const NO_CLIENT_CONFIG: &str = "/nonexistent/icn/client.toml";

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A coordinator config and the keys it admits, in a temporary folder, plus the
/// processes started from them. Every process is killed when this is dropped.
struct Cluster {
    dir: tempfile::TempDir,
    config: PathBuf,
    addr: String,
    coordinator_key: String,
    coordinator: Option<Child>,
    workers: Vec<(String, Child)>,
    inputs: std::cell::Cell<u32>,
    /// What the coordinator last said of its journal when it started.
    journal_line: String,
}

impl Cluster {
    fn new(owners: &[&str]) -> Cluster {
        Cluster::with(owners, "", "")
    }

    /// A cluster whose coordinator config gains `config_lines` and whose federation scope
    /// gains `federation_lines` (a placement policy, say).
    fn with(owners: &[&str], config_lines: &str, federation_lines: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let keygen = |name: &str| {
            let path = dir.path().join(format!("{name}.key"));
            let out = icn(&["keygen", "--out", path.to_str().unwrap()]);
            assert!(out.status.success(), "keygen: {}", text(&out.stderr));
            text(&out.stdout).trim().to_string()
        };
        let coordinator_key = keygen("coordinator");
        // A port that was free a moment ago; the coordinator binds it again after a restart.
        let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let config = format!(
            "listen = \"{addr}\"\nkey = \"coordinator.key\"\njournal = \"journal.db\"\n\
             genesis = \"genesis.toml\"\nheartbeat_interval_ms = 100\nworker_timeout_ms = 1000\n{config_lines}"
        );
        let rule = "rule = { quorum = \"1/2\", approval = \"1/2\", voting_window_ms = 1000 }";
        let mut genesis = format!(
            "[[scopes]]\nid = \"commons\"\nkind = \"commons\"\n{rule}\n\
             prices = {{ credits_per_mega_fuel = 1 }}\n\
             [[scopes]]\nid = \"fed-north\"\nkind = \"federation\"\nparent = \"commons\"\n{rule}\n\
             credit_limit = 1000000000\n{federation_lines}"
        );
        for owner in owners {
            genesis.push_str(&format!(
                "[[scopes]]\nid = \"{owner}\"\nkind = \"cooperative\"\nparent = \"fed-north\"\n{rule}\n"
            ));
        }
        for owner in owners {
            let key = keygen(owner);
            genesis.push_str(&format!("[[workers]]\nkey = \"{key}\"\nowner = \"{owner}\"\n"));
        }
        let member = keygen("member");
        genesis.push_str(&format!(
            "[[members]]\nname = \"ana\"\nkey = \"{member}\"\nstanding = {{ fed-north = [\"vote\", \"submit\"] }}\n\
             [[mandates]]\nscope = \"fed-north\"\nbudget = 1000000000\nperiod_ms = 86400000\n\
             executors = [\"wasm\"]\nlimits = {{ fuel = 100000000000, memory_bytes = 67108864, \
             timeout_ms = 60000, output_bytes = 65536 }}\n"
        ));
        std::fs::write(dir.path().join("genesis.toml"), genesis).unwrap();
        let config_path = dir.path().join("coordinator.toml");
        std::fs::write(&config_path, config).unwrap();
        Cluster {
            dir,
            config: config_path,
            addr,
            coordinator_key,
            coordinator: None,
            workers: Vec::new(),
            inputs: std::cell::Cell::new(0),
            journal_line: String::new(),
        }
    }

    fn journal(&self) -> PathBuf {
        self.dir.path().join("journal.db")
    }

    /// `icn ARGS` with this cluster's own state folder, where members keep the
    /// coordinator's seals.
    fn run(&self, args: &[&str]) -> Output {
        Command::new(ICN)
            .args(args)
            .env("ICN_STATE_DIR", self.dir.path().join("state"))
            .env("ICN_CLIENT_CONFIG", self.dir.path().join("client.toml"))
            .stdin(Stdio::null())
            .output()
            .expect("icn runs")
    }

    /// Starts the coordinator as an operator would, expecting it to refuse (within 30 s):
    /// its stderr.
    fn refused_start(&self, extra: &[&str]) -> String {
        let mut child = Command::new(ICN)
            .args(["coordinator", "--config", self.config.to_str().unwrap()])
            .args(extra)
            .env("ICN_STATE_DIR", self.dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the coordinator started instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "the coordinator exited cleanly");
        text(&out.stderr)
    }

    fn start_coordinator(&mut self) {
        self.start_coordinator_with(&[]);
    }

    fn start_coordinator_with(&mut self, extra: &[&str]) {
        let mut child = Command::new(ICN)
            .args(["coordinator", "--config", self.config.to_str().unwrap()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(
            line.contains(&format!("coordinator {} listening on {}", self.coordinator_key, self.addr)),
            "the coordinator announces its key and address: {line:?}"
        );
        // Then what it did with its journal: made it, or resumed it.
        let mut journal = String::new();
        while !journal.starts_with("journal ") {
            journal.clear();
            assert!(
                stdout.read_line(&mut journal).unwrap() > 0,
                "the coordinator says what it did with its journal"
            );
        }
        self.journal_line = journal;
        // Keep reading so the coordinator's later lines never meet a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        self.coordinator = Some(child);
    }

    /// Stops the coordinator as an operator, systemd or Docker does (SIGTERM; Ctrl-C's
    /// SIGINT does the same): it finishes its batch and its anchor, and leaves the journal
    /// whole in its file, before it exits with status 0.
    fn stop_coordinator(&mut self) {
        let mut child = self.coordinator.take().expect("a running coordinator");
        // SAFETY: sends a signal to a child process this test started and still owns.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "a stopped coordinator exits cleanly: {status}");
    }

    fn kill_coordinator(&mut self) {
        let mut child = self.coordinator.take().expect("a running coordinator");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn start_worker(&mut self, owner: &str) {
        let child = self.worker_command(owner, &self.addr).stderr(Stdio::inherit()).spawn().unwrap();
        self.workers.push((owner.to_string(), child));
    }

    /// `icn worker` with `owner`'s key, reaching for the coordinator at `addr`, its stderr
    /// piped.
    fn worker_command(&self, owner: &str, addr: &str) -> Command {
        let key = self.dir.path().join(format!("{owner}.key"));
        let mut command = Command::new(ICN);
        command
            .args(["worker", "--coordinator", addr, "--coordinator-key", &self.coordinator_key])
            .args(["--key", key.to_str().unwrap(), "--slots", "1"])
            // What it says at its default log level.
            .env_remove("ICN_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    }

    fn kill_worker(&mut self, owner: &str) {
        let index = self.workers.iter().position(|(o, _)| o == owner).expect("a running worker");
        let (_, mut child) = self.workers.remove(index);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// `icn ARGS` as the member, its connection given as flags.
    fn as_member(&self, args: &[&str]) -> Output {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(self.member_args());
        self.run(&all.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `icn ARGS` started with this cluster's state folder, its stdout and stderr piped.
    fn spawn(&self, args: &[String]) -> Child {
        Command::new(ICN)
            .args(args)
            .env("ICN_STATE_DIR", self.dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn member_args(&self) -> Vec<String> {
        let key = self.dir.path().join("member.key");
        vec![
            "--coordinator".into(),
            self.addr.clone(),
            "--coordinator-key".into(),
            self.coordinator_key.clone(),
            "--key".into(),
            key.to_str().unwrap().into(),
        ]
    }

    /// Submits a module without waiting and returns the job id it printed.
    fn submit(&self, module: &str, input: &[u8], extra: &[&str]) -> String {
        let input_path = self.dir.path().join(format!("input-{}", self.inputs.get()));
        self.inputs.set(self.inputs.get() + 1);
        std::fs::write(&input_path, input).unwrap();
        let mut args: Vec<String> = vec!["submit".into(), "--scope".into(), "fed-north".into()];
        args.extend(self.member_args());
        args.extend([wat(module).to_str().unwrap().into(), "--input".into()]);
        args.push(input_path.to_str().unwrap().into());
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = self.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "submit: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    }

    /// `icn status JOB --wait`: the job's output, or a panic naming how it ended.
    fn wait_for(&self, job: &str) -> String {
        let mut args: Vec<String> = vec!["status".into()];
        args.extend(self.member_args());
        args.extend([job.to_string(), "--wait".into()]);
        let out = self.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(out.status.success(), "job {job} did not complete: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// The journal's entries for one job, in words, read while the coordinator runs.
    fn journal_of(&self, job: &str) -> String {
        let out = icn(&["journal", "show", "--journal", self.journal().to_str().unwrap(), "--job", job]);
        assert!(out.status.success(), "journal show: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Waits until the job's journal holds `needle`, then returns the journal lines.
    fn await_journal(&self, job: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let lines = self.journal_of(job);
            if lines.contains(needle) {
                return lines;
            }
            assert!(Instant::now() < deadline, "the journal never showed {needle:?}:\n{lines}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs `icn ARGS` as the member, with the connection settings in the environment
    /// as a member's shell would have them; returns stdout and stderr.
    fn member(&self, args: &[&str]) -> (String, String) {
        let out = Command::new(ICN)
            .args(args)
            .env("ICN_STATE_DIR", self.dir.path().join("state"))
            .env("ICN_COORDINATOR", &self.addr)
            .env("ICN_COORDINATOR_KEY", &self.coordinator_key)
            .env("ICN_KEY", self.dir.path().join("member.key"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "icn {args:?}: {}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    }

    fn verify(&self) -> Output {
        icn(&["journal", "verify", "--journal", self.journal().to_str().unwrap()])
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.coordinator.iter_mut().chain(self.workers.iter_mut().map(|(_, c)| c)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Limits for a busy job long enough to be killed mid-run (each input byte costs ten
/// million loop iterations, about 0.01 s).
const LONG: &[&str] = &["--fuel", "100000000000", "--timeout-ms", "60000"];

#[test]
fn a_worker_killed_mid_task_loses_the_task_to_another_worker() {
    let mut cluster = Cluster::new(&["coop-a", "coop-b"]);
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    cluster.start_worker("coop-b");
    let job = cluster.submit("busy.wat", &[b'x'; 300], LONG);
    let placed = cluster.await_journal(&job, "attempt 1 placed on worker");
    let victim = if placed.contains("of coop-a") { "coop-a" } else { "coop-b" };
    let survivor = if victim == "coop-a" { "coop-b" } else { "coop-a" };
    cluster.kill_worker(victim);

    assert_eq!(cluster.wait_for(&job), "done\n");
    let lines = cluster.journal_of(&job);
    assert!(lines.contains("attempt 1 requeued: worker"), "{lines}");
    assert!(lines.contains("was lost: no heartbeat for 1000 ms"), "{lines}");
    assert!(lines.contains("attempt 2 placed on worker"), "{lines}");
    assert!(lines.lines().any(|l| l.contains("attempt 2 placed") && l.contains(survivor)), "{lines}");
    assert_eq!(lines.matches("completed on worker").count(), 1, "{lines}");
    assert!(cluster.verify().status.success());
    // The silent worker lost trust for the task it dropped.
    let (workers, _) = cluster.member(&["workers"]);
    let row: Vec<&str> = workers
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(victim))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!((row[2], row[6]), ("no", "1"), "connected no, missed 1:\n{workers}");
}

#[test]
fn a_coordinator_killed_and_restarted_loses_nothing_and_runs_each_job_once() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    // One slot: the busy job runs, the sum waits in the queue behind it.
    let running = cluster.submit("busy.wat", &[b'x'; 100], LONG);
    cluster.await_journal(&running, "attempt 1 placed on worker");
    let queued = cluster.submit("sum.wat", b"20 22", &[]);
    let lines = cluster.journal_of(&queued);
    assert!(lines.contains("submitted by") && !lines.contains("placed"), "still queued: {lines}");

    assert!(cluster.journal_line.contains(": new, from a genesis with"), "{}", cluster.journal_line);
    cluster.kill_coordinator();
    cluster.start_coordinator();
    assert!(
        cluster.journal_line.contains(": resumed at entry "),
        "a restart says so: {}",
        cluster.journal_line
    );

    assert_eq!(cluster.wait_for(&running), "done\n");
    assert_eq!(cluster.wait_for(&queued), "42\n");
    let lines = cluster.journal_of(&running);
    assert!(lines.contains("requeued: the coordinator restarted while it ran"), "{lines}");
    assert_eq!(lines.matches("submitted by").count(), 1, "{lines}");
    assert_eq!(lines.matches("completed on worker").count(), 1, "{lines}");
    let lines = cluster.journal_of(&queued);
    assert_eq!(lines.matches("submitted by").count(), 1, "{lines}");
    assert_eq!(lines.matches("completed on worker").count(), 1, "{lines}");
    let verified = cluster.verify();
    assert!(verified.status.success(), "{}", text(&verified.stdout));

    // Each completion posted exactly once, across the crash: one payment per job out of
    // the federation, one into the cooperative, nothing left held, positions sum to zero.
    for (scope, sign) in [("fed-north", -1), ("coop-a", 1)] {
        let statement: serde_json::Value =
            serde_json::from_str(&cluster.member(&["ledger", "statement", scope, "--json"]).0).unwrap();
        let moved: Vec<i64> = statement["lines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["change"].as_i64().unwrap())
            .filter(|c| *c != 0)
            .collect();
        assert_eq!(moved.len(), 2, "{scope}: {statement}");
        assert!(moved.iter().all(|c| c.signum() == sign), "{scope}: {statement}");
    }
    let (positions, _) = cluster.member(&["ledger", "positions"]);
    assert!(positions.contains("sum of positions: 0"), "{positions}");
    let fed = positions.lines().find(|l| l.starts_with("fed-north")).unwrap();
    assert_eq!(fed.split_whitespace().nth(2), Some("0"), "nothing still reserved: {positions}");
}

#[test]
fn submit_wait_prints_the_output_and_a_tampered_row_is_named_by_verify() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    let input = cluster.dir.path().join("numbers");
    std::fs::write(&input, "19 23").unwrap();
    let mut args: Vec<String> = vec!["submit".into(), "--scope".into(), "fed-north".into()];
    args.extend(cluster.member_args());
    args.extend([wat("sum.wat").to_str().unwrap().into(), "--input".into(), input.to_str().unwrap().into()]);
    args.push("--wait".into());
    let out = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The job's id on the first line, then the module's output.
    let stdout = text(&out.stdout);
    let (id, output) = stdout.split_once('\n').unwrap();
    assert!(id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit()), "{stdout}");
    assert_eq!(output, "42\n");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("job ") && stderr.contains("completed on worker"), "{stderr}");
    // The same job from a spec file, its paths relative to the file.
    let spec = cluster.dir.path().join("job.toml");
    let module = wat("sum.wat").canonicalize().unwrap();
    std::fs::write(
        &spec,
        format!(
            "module = {:?}\nscope = \"fed-north\"\ninput = \"numbers\"\ndeadline = \"1h\"\n[limits]\nfuel = 1000000\n",
            module.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut args: Vec<String> = vec!["submit".into()];
    args.extend(cluster.member_args());
    args.extend([spec.to_str().unwrap().into(), "--wait".into()]);
    let from_spec = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(from_spec.status.success(), "{}", text(&from_spec.stderr));
    assert!(text(&from_spec.stdout).ends_with("\n42\n"), "{}", text(&from_spec.stdout));
    std::fs::write(&spec, "module = \"sum.wat\"\nscope = \"fed-north\"\nwhen = \"1h\"\n").unwrap();
    let refused = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("unknown field `when`"), "{}", text(&refused.stderr));
    // A class the scope never decided is refused at submission, naming the ones it has.
    let module = wat("sum.wat");
    let mut args: Vec<String> = vec!["submit".into()];
    args.extend(cluster.member_args());
    args.extend([module.to_str().unwrap().into(), "--scope".into(), "fed-north".into()]);
    args.extend(["--priority".into(), "urgent".into()]);
    let refused = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("no priority class \"urgent\"; its classes are default"),
        "{}",
        text(&refused.stderr)
    );

    // The verified output, to a file.
    let file = cluster.dir.path().join("sum.out");
    let mut args: Vec<String> = vec!["result".into()];
    args.extend(cluster.member_args());
    args.extend([id[..10].to_string(), "--out".into(), file.to_str().unwrap().into()]);
    let result = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(result.status.success(), "{}", text(&result.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "42\n");
    assert!(text(&result.stderr).contains("wrote 3 bytes to"), "{}", text(&result.stderr));

    // A module's own exit code is icn's; what it wrote to stderr is kept and shown.
    let mut args: Vec<String> = vec!["submit".into(), "--scope".into(), "fed-north".into()];
    args.extend(cluster.member_args());
    args.extend([wat("grumble.wat").to_str().unwrap().into(), "--wait".into()]);
    let out = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let (grumble, output) = stdout.split_once('\n').unwrap();
    assert_eq!(output, "partial\n");
    assert!(text(&out.stderr).contains("30 bytes of stderr (`icn logs"), "{}", text(&out.stderr));
    let mut args: Vec<String> = vec!["logs".into()];
    args.extend(cluster.member_args());
    args.push(grumble.into());
    let logs = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(logs.status.success(), "{}", text(&logs.stderr));
    assert_eq!(text(&logs.stdout), "cannot find the second number\n");
    // Any unique start of an id will do.
    let mut args: Vec<String> = vec!["status".into()];
    args.extend(cluster.member_args());
    args.push(grumble[..8].into());
    assert_eq!(cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>()).status.code(), Some(3));

    // A job that fails (here: out of fuel) exits 70 from `status` as from `submit --wait`.
    let mut args: Vec<String> = vec!["submit".into(), "--scope".into(), "fed-north".into()];
    args.extend(cluster.member_args());
    args.extend([
        wat("spin.wat").to_str().unwrap().into(),
        "--fuel".into(),
        "1000000".into(),
        "--wait".into(),
    ]);
    let out = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(70), "{}", text(&out.stderr));
    let spun = text(&out.stdout).trim().to_string();
    let mut args: Vec<String> = vec!["status".into()];
    args.extend(cluster.member_args());
    args.push(spun);
    let status = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(status.status.code(), Some(70), "{}", text(&status.stderr));
    // The status is data: on stdout.
    assert!(text(&status.stdout).contains("it ran out of fuel"), "{}", text(&status.stdout));
    args.push("--json".into());
    let json = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(json.status.code(), Some(70), "{}", text(&json.stderr));
    let view: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(view["state"], "failed", "states are lowercase, as --state takes them: {view}");
    args.pop();
    args[0] = "result".into();
    let result = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!result.status.success());
    assert!(text(&result.stderr).contains("only a completed job has an output"), "{}", text(&result.stderr));

    cluster.kill_coordinator();
    let verified = cluster.verify();
    assert!(verified.status.success(), "{}", text(&verified.stdout));

    // Change one byte of the third entry's record, as someone editing the file would.
    let db = rusqlite::Connection::open(cluster.journal()).unwrap();
    let mut record: Vec<u8> =
        db.query_row("SELECT record FROM journal WHERE seq = 3", [], |row| row.get(0)).unwrap();
    let last = record.len() - 1;
    record[last] ^= 1;
    db.execute("UPDATE journal SET record = ?1 WHERE seq = 3", [record]).unwrap();
    drop(db);

    let verified = cluster.verify();
    assert_eq!(verified.status.code(), Some(2), "{}", text(&verified.stdout));
    let report = text(&verified.stdout);
    assert!(report.contains("entry 3 is bad"), "{report}");
    assert!(report.contains("3 entries before it verified"), "{report}");
}

#[test]
fn a_bad_config_or_key_is_named_in_the_error() {
    let cluster = Cluster::new(&["coop-a"]);
    let config = std::fs::read_to_string(&cluster.config).unwrap();
    std::fs::write(&cluster.config, config.replace("worker_timeout_ms = 1000", "worker_timeout_ms = 150"))
        .unwrap();
    let out = icn(&["coordinator", "--config", cluster.config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("worker_timeout_ms (150) must be at least twice"),
        "{}",
        text(&out.stderr)
    );

    let key = cluster.dir.path().join("member.key");
    let out = icn(&["keygen", "--out", key.to_str().unwrap()]);
    assert!(!out.status.success(), "keygen never overwrites a key");
    assert!(text(&out.stderr).contains(key.to_str().unwrap()), "{}", text(&out.stderr));
}

#[test]
fn a_genesis_changed_after_the_first_start_is_refused_with_the_reason() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    cluster.kill_coordinator();
    let genesis = cluster.dir.path().join("genesis.toml");
    let founded = std::fs::read_to_string(&genesis).unwrap();
    std::fs::write(&genesis, founded.replace("budget = 1000000000", "budget = 2000000000")).unwrap();
    let out = icn(&["coordinator", "--config", cluster.config.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("differs from the genesis this journal began with"), "{stderr}");
}

#[test]
fn members_propose_vote_and_trace_with_the_icn_command() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    let member = |args: &[&str]| cluster.member(args);
    let (proposal, said) = member(&[
        "propose",
        "--scope",
        "fed-north",
        "--title",
        "dearer",
        "--vote",
        "yes",
        "prices",
        "--credits-per-mega-fuel",
        "3",
    ]);
    // The proposer's own ballot goes with the proposal: it alone reaches the quorum.
    assert!(said.contains("open; voting closes in") && said.contains("voted yes on proposal"), "{said}");
    assert_eq!(proposal.trim().len(), 64, "the proposal's id on stdout: {proposal}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (decisions, _) = member(&["decisions"]);
        if decisions.contains("ACCEPTED \"dearer\" by ana: prices for fed-north: 3 credits per million fuel")
        {
            break;
        }
        assert!(Instant::now() < deadline, "never decided:\n{decisions}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (scope, _) = member(&["scope", "show", "fed-north"]);
    assert!(scope.contains("prices: 3 credits per million fuel"), "{scope}");
    assert!(scope.contains("ana ("), "{scope}");

    let job = cluster.submit("hello.wat", b"", &[]);
    cluster.wait_for(&job);
    let (json, _) = member(&["trace", &job, "--json"]);
    let trace: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(trace["authority"]["founding"], serde_json::Value::Bool(true), "{json}");
    assert_eq!(trace["job"]["submitter"]["name"], "ana", "{json}");
    // A billion fuel at 3 credits per million, held under the founding mandate.
    assert_eq!(trace["job"]["hold"], 3_000, "{json}");
    let (words, _) = member(&["trace", &job]);
    assert!(words.contains("authorized by the genesis, entry #0: founding mandates"), "{words}");
}

/// A cluster that ran one job to completion and whose coordinator was then stopped, for
/// tests that tamper with what it left behind. Returns the job.
fn ran_one_job() -> (Cluster, String) {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    let job = cluster.submit("hello.wat", b"", &[]);
    assert_eq!(cluster.wait_for(&job), "hello from the commons\n");
    // A worker stops cleanly on SIGTERM too.
    let (_, mut worker) = cluster.workers.pop().unwrap();
    // SAFETY: sends a signal to a child process this test started and still owns.
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    assert!(worker.wait().unwrap().success(), "a worker stopped by SIGTERM exits cleanly");
    cluster.stop_coordinator();
    (cluster, job)
}

#[test]
fn a_forged_entry_appended_in_the_coordinators_name_stops_the_start() {
    let (cluster, job) = ran_one_job();
    // A JobCompleted paying coop-a a thousand credits for the job, linked to the last
    // entry as the coordinator would link it, but without the coordinator's seal.
    let entries = icn_coordinator::journal::read(&cluster.journal()).unwrap();
    let last = entries.last().unwrap();
    let coordinator: icn_protocol::PublicKey = cluster.coordinator_key.parse().unwrap();
    let record = icn_core::record::Record::JobCompleted {
        job: job.parse().unwrap(),
        output_digest: icn_protocol::ContentId::of(b"forged"),
        fuel: icn_protocol::Fuel(1),
        worker: coordinator,
        payees: vec![("coop-a".parse().unwrap(), icn_protocol::governance::Credits(1_000))],
    };
    let forged = icn_core::Entry::new(last.seq + 1, last.hash, Some(last.seq), 1, coordinator, &record);
    let db = rusqlite::Connection::open(cluster.journal()).unwrap();
    db.execute(
        "INSERT INTO journal (seq, prev_hash, cause, time_ms, signer, record, hash, seal)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
        rusqlite::params![
            forged.seq as i64,
            forged.prev_hash.as_slice(),
            forged.cause.map(|c| c as i64),
            forged.time_ms as i64,
            forged.signer.0.as_slice(),
            forged.record,
            forged.hash.as_slice()
        ],
    )
    .unwrap();
    drop(db);

    let refused = cluster.refused_start(&[]);
    assert!(
        refused.contains(&format!("entries {} to {} are not sealed", forged.seq, forged.seq)),
        "{refused}"
    );
    assert!(refused.contains("icn journal truncate"), "{refused}");
    assert_eq!(cluster.verify().status.code(), Some(2));
    // The operator drops the unsealed tail; the coordinator starts on the sealed history.
    let truncated = cluster.run(&[
        "journal",
        "truncate",
        "--journal",
        cluster.journal().to_str().unwrap(),
        "--unsealed-tail",
    ]);
    assert!(text(&truncated.stdout).contains("removed 1 unsealed entries"), "{}", text(&truncated.stderr));
    let mut cluster = cluster;
    cluster.start_coordinator();
    let (positions, _) = cluster.member(&["ledger", "positions"]);
    let coop = positions.lines().find(|l| l.starts_with("coop-a")).unwrap();
    assert!(!coop.contains("1000"), "the forged payment never applied: {positions}");
}

#[test]
fn a_stripped_last_seal_stops_the_start() {
    let (cluster, _) = ran_one_job();
    let db = rusqlite::Connection::open(cluster.journal()).unwrap();
    let last: i64 = db.query_row("SELECT MAX(seq) FROM journal", [], |row| row.get(0)).unwrap();
    db.execute("UPDATE journal SET seal = NULL WHERE seq = ?1", [last]).unwrap();
    drop(db);
    let refused = cluster.refused_start(&[]);
    assert!(refused.contains(&format!("to {last} are not sealed")), "{refused}");
}

#[test]
fn a_cut_tail_stops_the_start_and_a_member_holding_a_later_seal_refuses_the_coordinator() {
    let (cluster, job) = ran_one_job();
    let (kept, _) = cluster.member(&["journal", "seal"]);
    let kept = kept.trim().to_string();
    // Back to the genesis, which is sealed: what is left verifies on its own.
    let db = rusqlite::Connection::open(cluster.journal()).unwrap();
    db.execute("DELETE FROM journal WHERE seq > 0", []).unwrap();
    drop(db);
    assert!(cluster.verify().status.success(), "the cut journal verifies by itself");
    let refused = cluster.refused_start(&[]);
    assert!(refused.contains("ends at entry 0, but its anchor shows entry"), "{refused}");
    assert!(refused.contains("--accept-journal-end"), "{refused}");
    // The member kept a seal: the journal they check against it no longer holds their history.
    let checked = cluster.run(&[
        "journal",
        "verify",
        "--journal",
        cluster.journal().to_str().unwrap(),
        "--expect",
        &kept,
    ]);
    assert_eq!(checked.status.code(), Some(2), "{}", text(&checked.stdout));
    assert!(text(&checked.stdout).contains("its end was cut"), "{}", text(&checked.stdout));

    // The operator accepts the loss; the member's client does not.
    let mut cluster = cluster;
    cluster.start_coordinator_with(&["--accept-journal-end"]);
    let mut args: Vec<String> = vec!["status".into()];
    args.extend(cluster.member_args());
    args.push(job);
    let out = cluster.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains("history was cut short") && said.contains("Tell the operator"), "{said}");
}

#[test]
fn a_second_coordinator_cannot_open_the_journal_of_a_running_one() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    let refused = cluster.refused_start(&[]);
    assert!(refused.contains("is in use by another coordinator (pid"), "{refused}");
}

#[test]
fn a_coordinator_killed_with_replicas_in_flight_at_one_attempt_starts_and_ends_each_job_once() {
    let mut cluster =
        Cluster::with(&["coop-a", "coop-b"], "attempts_max = 1\n", "policy = { replicas = 2, quorum = 2 }\n");
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    cluster.start_worker("coop-b");
    // Each worker has one slot: the first job's two replicas take both, the second waits.
    let first = cluster.submit("busy.wat", &[b'x'; 100], LONG);
    cluster.await_journal(&first, "task");
    let lines = cluster.await_journal(&first, "/1 attempt");
    assert!(lines.contains("/0 attempt") && lines.contains("/1 attempt"), "{lines}");
    let second = cluster.submit("sum.wat", b"20 22", &[]);

    cluster.kill_coordinator();
    cluster.start_coordinator();

    // Both replicas of the first were lost at the restart: at one attempt, it fails once.
    let lines = cluster.await_journal(&first, "failed");
    assert_eq!(lines.matches(" failed: ").count(), 1, "{lines}");
    assert!(lines.contains("replicas were lost 1 times, the limit"), "{lines}");
    assert_eq!(lines.matches("requeued: the coordinator restarted while it ran").count(), 1, "{lines}");
    assert_eq!(cluster.wait_for(&second), "42\n");
    let lines = cluster.journal_of(&second);
    assert_eq!(lines.matches("completed on worker").count(), 1, "{lines}");
    let verified = cluster.verify();
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    let (positions, _) = cluster.member(&["ledger", "positions"]);
    assert!(positions.contains("sum of positions: 0"), "{positions}");
    // And it starts again from there.
    cluster.kill_coordinator();
    cluster.start_coordinator();
    assert_eq!(cluster.wait_for(&second), "42\n");
}

#[test]
fn the_demo_runs_and_keeps_a_journal_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("demo");
    let out = icn(&["demo", "--keep", kept.to_str().unwrap()]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let shown = text(&out.stdout);
    for words in [
        "may go 10000 credits below zero: the genesis grants that line (journal entry #0)",
        "#N below is the journal entry that recorded a step",
        "journal verified",
        "the journal stays in",
    ] {
        assert!(shown.contains(words), "{words:?} in:\n{shown}");
    }
    let journal = kept.join("journal.db");
    let verified = icn(&["journal", "verify", "--journal", journal.to_str().unwrap()]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    // A directory that holds something is refused: the demo writes a fresh journal.
    let again = icn(&["demo", "--keep", kept.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("is not empty"), "{}", text(&again.stderr));
}

/// `icn dev` started as a child: the variables it says to export.
fn start_dev(dir: &Path, addr: &str) -> (Child, Vec<(String, String)>) {
    let (child, _, vars) = start_dev_at(dir, addr, 0, &[]);
    (child, vars)
}

/// `GET path` from `addr` over HTTP/1.0: the whole answer.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// Debian's faketime library: preloaded, it moves the clocks a program reads.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The `icn` command run `days` ahead of the real clock, through Debian's libfaketime
/// preloaded into it (not the `faketime` wrapper, which would stand between the process
/// and its signals): a simulated later day for it and everything it talks to, which
/// must run as far ahead.
fn icn_at(days: u32) -> Command {
    let mut command = Command::new(ICN);
    if days > 0 {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: `apt-get install faketime` (scripts/test does)"
        );
        command.env("LD_PRELOAD", LIBFAKETIME).env("FAKETIME", format!("+{days}d"));
    }
    command
}

/// `icn dev` started as a child `days` ahead of the real clock with `extra` arguments: what
/// it printed before the variables it says to export, and those variables.
fn start_dev_at(dir: &Path, addr: &str, days: u32, extra: &[&str]) -> (Child, String, Vec<(String, String)>) {
    use std::io::BufRead;
    let mut child = icn_at(days)
        .args(["dev", "--dir", dir.to_str().unwrap(), "--listen", addr])
        .args(["--http-listen", "127.0.0.1:0"])
        .args(extra)
        .env("ICN_STATE_DIR", dir.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut vars = Vec::new();
    let mut banner = String::new();
    let mut line = String::new();
    while vars.is_empty() {
        line.clear();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "icn dev ended before printing what to export:\n{banner}"
        );
        match line.trim().strip_prefix("export ") {
            Some(exports) => {
                for pair in exports.split_whitespace() {
                    let (name, value) = pair.split_once('=').unwrap();
                    vars.push((name.to_string(), value.to_string()));
                }
            }
            None => banner.push_str(&line),
        }
    }
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    (child, banner, vars)
}

fn stop_with_sigterm(mut child: Child) {
    // SAFETY: sends a signal to a child process this test started and still owns.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "stopped by SIGTERM: {status}");
            return;
        }
        assert!(Instant::now() < deadline, "it did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_dev_commons_stays_up_runs_jobs_and_starts_again_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let (dev, vars) = start_dev(dir.path(), &addr);
    let with_vars = |args: &[&str]| {
        let out = Command::new(ICN)
            .args(args)
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("ICN_STATE_DIR", dir.path().join("state"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "icn {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    let out = with_vars(&["submit", wat("hello.wat").to_str().unwrap(), "--wait"]);
    assert!(out.ends_with("\nhello from the commons\n"), "{out}");
    stop_with_sigterm(dev);

    let (dev, vars_again) = start_dev(dir.path(), &addr);
    assert_eq!(vars_again, vars, "the same keys and address");
    let jobs = with_vars(&["jobs"]);
    assert!(jobs.lines().nth(1).is_some_and(|l| l.contains("completed")), "{jobs}");
    stop_with_sigterm(dev);
}

/// The member guide's propose → vote → decide walk typed against `icn dev` at a person's
/// pace (two seconds between commands, two members), on a commons restarted two days after
/// it was made; and again a year on, when its mandate is about to end, renewed by a
/// decision on start.
#[test]
fn a_dev_commons_decides_by_hand_and_runs_jobs_days_and_a_year_later() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let extra = ["--voting-window", "12s", "--metrics-listen", "127.0.0.1:0"];
    let (dev, banner, vars) = start_dev_at(dir.path(), &addr, 0, &extra);
    assert!(banner.contains("a new development commons is up"), "{banner}");
    assert!(banner.contains("whose mandate allows 1,000,000,000 credits until 2"), "{banner}");
    assert!(banner.contains("proposals stay open 12s"), "{banner}");
    let metrics = banner
        .lines()
        .find_map(|l| l.strip_prefix("metrics for Prometheus at http://"))
        .and_then(|rest| rest.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address: {banner}"));
    let scraped = http_get(metrics, "/metrics");
    assert!(scraped.contains("icn_workers_connected"), "{scraped}");
    stop_with_sigterm(dev);

    let icn_as = |days: u32, key: &str, args: &[&str]| {
        let out = icn_at(days)
            .args(args)
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("ICN_KEY", dir.path().join(format!("{key}.key")))
            .env("ICN_STATE_DIR", dir.path().join("state"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "icn {args:?}: {}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let pause = || std::thread::sleep(Duration::from_secs(2));
    let hello = wat("hello.wat");
    let hello = hello.to_str().unwrap();

    // Two days on: the founding mandate still holds, and says until when.
    let (dev, banner, _) = start_dev_at(dir.path(), &addr, 2, &["--voting-window", "5m"]);
    assert!(banner.contains("is up again") && banner.contains("(resumed)"), "{banner}");
    assert!(banner.contains("proposals stay open 12s here, as this commons was founded"), "{banner}");
    let (out, _) = icn_as(2, "ana", &["submit", hello, "--wait"]);
    assert!(out.ends_with("hello from the commons\n"), "{out}");

    let (proposal, said) = icn_as(
        2,
        "ana",
        &[
            "propose",
            "--scope",
            "fed-north",
            "--title",
            "Compute budget for December",
            "mandate",
            "--for",
            "fed-north",
            "--budget",
            "100000",
            "--period-hours",
            "744",
            "--memory-mib",
            "128",
        ],
    );
    assert!(said.contains("voting closes in"), "{said}");
    let id = &proposal.trim()[..8];
    pause();
    let (open, _) = icn_as(2, "ana", &["decisions"]);
    assert!(open.contains("Compute budget for December"), "{open}");
    pause();
    icn_as(2, "ana", &["vote", id, "yes"]);
    pause();
    icn_as(2, "ben", &["vote", id, "yes"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (decisions, _) = icn_as(2, "ben", &["decisions"]);
        if decisions.contains("ACCEPTED \"Compute budget for December\" by ana") {
            break;
        }
        assert!(Instant::now() < deadline, "never decided:\n{decisions}");
        pause();
    }
    // The decided per-job memory holds, and a job over it is told how to get more.
    let (out, _) = icn_as(2, "ana", &["submit", hello, "--memory-mib", "128", "--wait"]);
    assert!(out.ends_with("hello from the commons\n"), "{out}");
    let over = icn_at(2)
        .args(["submit", hello, "--memory-mib", "256"])
        .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("ICN_STATE_DIR", dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = text(&over.stderr);
    assert!(!over.status.success());
    assert!(
        said.contains("asks --memory-mib 256, over") && said.contains("--memory-mib 128: ask for less"),
        "{said}"
    );
    stop_with_sigterm(dev);

    // 31 days of that mandate and a year on: it has ended, and the commons renews it
    // by a decision of its two members before it says what to export.
    let (dev, banner, _) = start_dev_at(dir.path(), &addr, 363, &[]);
    assert!(banner.contains("fed-north's mandate expired"), "{banner}");
    assert!(banner.contains("decided at entry #"), "{banner}");
    assert!(banner.contains("whose mandate allows 100,000 credits until 2"), "{banner}");
    let (out, _) = icn_as(363, "ben", &["submit", hello, "--wait"]);
    assert!(out.ends_with("hello from the commons\n"), "{out}");
    stop_with_sigterm(dev);
}

/// Reads `child`'s stderr until a line holds `needle` (the child ending first fails the
/// test); returns what it read.
fn stderr_until(child: &mut Child, needle: &str) -> String {
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
    let mut read = String::new();
    while !read.contains(needle) {
        assert!(stderr.read_line(&mut read).unwrap() > 0, "it ended before saying {needle:?}:\n{read}");
    }
    // Keep reading so the child's later lines never meet a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    read
}

/// A worker says, at its default log level, when it cannot reach its coordinator and
/// when it was admitted.
#[test]
fn a_worker_says_when_it_cannot_reach_the_coordinator_and_when_it_is_admitted() {
    let mut cluster = Cluster::new(&["coop-a"]);
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let mut worker = cluster.worker_command("coop-a", &nobody).spawn().unwrap();
    let said = stderr_until(&mut worker, "cannot reach the coordinator");
    assert!(said.contains(&format!("cannot reach the coordinator at {nobody}")), "{said}");
    assert!(said.contains("still trying"), "{said}");
    worker.kill().unwrap();
    worker.wait().unwrap();

    cluster.start_coordinator();
    let mut worker = cluster.worker_command("coop-a", &cluster.addr).spawn().unwrap();
    let said = stderr_until(&mut worker, "connected and admitted");
    assert!(!said.contains("cannot reach"), "{said}");
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// Two worker processes started with one key do not take the connection from each other
/// over and over: the first is let go with the cause and the fix, the second serves.
#[test]
fn a_second_worker_with_the_same_key_stops_the_first_with_the_cause_and_the_fix() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    let mut first = cluster.worker_command("coop-a", &cluster.addr).spawn().unwrap();
    let mut first_stderr = BufReader::new(first.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("connected and admitted") {
        assert!(first_stderr.read_line(&mut said).unwrap() > 0, "{said}");
    }
    let mut second = cluster.worker_command("coop-a", &cluster.addr).spawn().unwrap();
    stderr_until(&mut second, "connected and admitted");
    let ended = first.wait().unwrap();
    std::io::Read::read_to_string(&mut first_stderr, &mut said).unwrap();
    assert!(!ended.success(), "the first worker stops: {said}");
    assert!(said.contains("two workers cannot share a key"), "the cause: {said}");
    assert!(said.contains("icn keygen"), "the fix: {said}");
    cluster.workers.push(("coop-a".into(), second));
    let job = cluster.submit("sum.wat", b"20 22", &[]);
    assert_eq!(cluster.wait_for(&job), "42\n", "the second serves");
}

/// A member saves a commons once as a context and then runs commands with no flags or
/// exports; flags and variables still win, `--context` picks another, and `icn version`
/// asks the coordinator through the context.
#[test]
fn a_saved_context_stands_in_for_the_flags_and_flags_still_win() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    let job = cluster.submit("sum.wat", b"20 22", &[]);
    let key = cluster.dir.path().join("member.key");
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let (addr, coordinator_key) = (cluster.addr.clone(), cluster.coordinator_key.clone());
    let add = |name: &str, addr: &str, extra: &[&str]| {
        let mut args =
            vec!["context", "add", name, "--coordinator", addr, "--coordinator-key", &coordinator_key];
        args.extend(["--key", key.to_str().unwrap()]);
        args.extend(extra);
        cluster.run(&args)
    };
    let added = add("north", &addr, &["--scope", "fed-north"]);
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert!(text(&added.stderr).contains("it is the current context"), "the first one is current");
    assert!(add("south", &nobody, &[]).status.success());

    // No flag, no variable: the current context.
    let status = cluster.run(&["status", &job[..8], "--wait"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert_eq!(text(&status.stdout), "42\n");
    let listed = text(&cluster.run(&["context", "list"]).stdout);
    assert!(listed.contains("* north") && listed.contains("  south"), "{listed}");
    // The context's scope stands in for --scope.
    let hello = wat("hello.wat");
    let submitted = cluster.run(&["submit", hello.to_str().unwrap(), "--wait"]);
    assert!(submitted.status.success(), "{}", text(&submitted.stderr));
    assert!(text(&submitted.stdout).contains("hello from the commons"), "{}", text(&submitted.stdout));
    let json: serde_json::Value =
        serde_json::from_slice(&cluster.run(&["context", "list", "--json"]).stdout).unwrap();
    assert_eq!(json["current"], "north", "{json}");
    let version = text(&cluster.run(&["version"]).stdout);
    let release = env!("CARGO_PKG_VERSION");
    assert!(version.contains(&format!("icn {release} (protocol 1)")), "{version}");
    assert!(version.contains(&format!("coordinator {release} (protocol 1)")), "{version}");

    // Another context by name, or made current, reaches its coordinator (here: none).
    for south in [cluster.run(&["jobs", "--context", "south"]), cluster.run(&["--context", "south", "jobs"])]
    {
        let said = text(&south.stderr);
        assert!(said.contains(&format!("nothing answered at {nobody}")), "{said}");
    }
    assert!(cluster.run(&["context", "use", "south"]).status.success());
    assert!(!cluster.run(&["jobs"]).status.success());
    // A flag wins over the context it would come from.
    let flagged = cluster.run(&["jobs", "--coordinator", &addr]);
    assert!(flagged.status.success(), "{}", text(&flagged.stderr));
    assert!(text(&flagged.stdout).contains(&job[..10]), "{}", text(&flagged.stdout));

    // Mistakes are named with what to do.
    let unknown = cluster.run(&["context", "use", "west"]);
    assert!(
        text(&unknown.stderr).contains("no context \"west\"; the contexts are: north, south"),
        "{}",
        text(&unknown.stderr)
    );
    let missing_key = cluster.run(&[
        "context",
        "add",
        "east",
        "--coordinator",
        &addr,
        "--coordinator-key",
        &coordinator_key,
        "--key",
        "/nonexistent.key",
    ]);
    assert!(text(&missing_key.stderr).contains("/nonexistent.key"), "{}", text(&missing_key.stderr));
    assert!(cluster.run(&["context", "remove", "south"]).status.success());
    let listed = text(&cluster.run(&["context", "list"]).stdout);
    assert!(
        !listed.contains("south") && !listed.contains('*'),
        "no current context once it is removed: {listed}"
    );
}

/// `icn submit --dry-run` says what the job would hold under which decision, and where it
/// could run or why it would wait or be refused, and submits nothing.
#[test]
fn a_dry_run_says_what_a_job_would_hold_and_where_it_could_run_and_submits_nothing() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    let job = cluster.submit("sum.wat", b"20 22", &[]);
    assert_eq!(cluster.wait_for(&job), "42\n", "the worker is up");
    // The ids of the jobs the coordinator holds.
    let jobs = || {
        let listed: serde_json::Value =
            serde_json::from_slice(&cluster.as_member(&["jobs", "--json"]).stdout).unwrap();
        listed.as_array().unwrap().iter().map(|j| j["job"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let worker = icn(&["pubkey", cluster.dir.path().join("coop-a.key").to_str().unwrap()]);
    let worker = text(&worker.stdout).trim()[..8].to_string();
    let hello = wat("hello.wat");
    let dry = |extra: &[&str]| {
        let mut args = vec!["submit", "--scope", "fed-north", "--dry-run", hello.to_str().unwrap()];
        args.extend(extra);
        cluster.as_member(&args)
    };

    let fits = dry(&[]);
    let said = text(&fits.stdout);
    assert!(fits.status.success(), "{said}{}", text(&fits.stderr));
    assert!(said.contains("would hold 1,000 credits of fed-north's mandate (decision #0)"), "{said}");
    assert!(said.contains("it could start now (1 replica)"), "{said}");
    assert!(said.contains(&format!("on worker {worker} of coop-a")), "{said}");

    // The worker's one slot taken by a job that runs until cancelled: it would wait.
    let busy = cluster.submit("announce.wat", b"", LONG);
    while !text(&cluster.as_member(&["status", &busy]).stdout).contains("running") {
        std::thread::sleep(Duration::from_millis(20));
    }
    let waits = dry(&[]);
    let said = text(&waits.stdout);
    assert_eq!(waits.status.code(), Some(75), "{said}{}", text(&waits.stderr));
    assert!(said.contains("it would wait: "), "{said}");
    assert!(cluster.as_member(&["cancel", &busy]).status.success());
    let before = jobs();
    assert_eq!(before.len(), 2, "{before:?}");

    let mut args = vec!["submit", "--scope", "coop-a", "--dry-run", hello.to_str().unwrap()];
    args.extend(["--fuel", "1000"]);
    let refused = cluster.as_member(&args);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("submission refused"), "{}", text(&refused.stderr));

    assert_eq!(jobs(), before, "nothing was submitted");
}

/// `icn submit --array N` submits N jobs, each with its index in place of `{index}` in
/// its arguments and its input's path; with --wait, their outputs in index order. A job of
/// the array that cannot be made stops it before any job is sent.
#[test]
fn an_array_submits_one_job_per_index_and_waits_for_them_in_order() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    let shards = cluster.dir.path().join("shards");
    std::fs::create_dir(&shards).unwrap();
    for i in 0..3 {
        std::fs::write(shards.join(format!("{i}.txt")), format!("{i} {i}")).unwrap();
    }
    let (sum, input) = (wat("sum.wat"), shards.join("{index}.txt"));
    let array = |count: &str, wait: bool| {
        let mut args = vec!["submit", "--scope", "fed-north", sum.to_str().unwrap(), "--input"];
        args.extend([input.to_str().unwrap(), "--array", count]);
        if wait {
            args.push("--wait");
        }
        cluster.as_member(&args)
    };
    let out = array("3", true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[3..], ["0", "2", "4"], "each input summed, in index order: {stdout}");
    let ids: std::collections::BTreeSet<&str> = lines[..3].iter().copied().collect();
    assert!(ids.len() == 3 && ids.iter().all(|id| id.len() == 64), "three jobs' ids first: {stdout}");
    let said = text(&out.stderr);
    assert!(said.contains("submitted 3 jobs, {index} 0 to 2"), "{said}");
    assert!(said.contains("2: job ") && said.contains("completed"), "{said}");

    let listed = |c: &Cluster| text(&c.as_member(&["jobs", "--json"]).stdout).matches("\"job\"").count();
    let before = listed(&cluster);
    std::fs::remove_file(shards.join("2.txt")).unwrap();
    let out = array("3", false);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("2.txt"), "the missing input is named: {}", text(&out.stderr));
    assert_eq!(listed(&cluster), before, "no job of a broken array was sent");
    let out = array("1001", false);
    assert!(text(&out.stderr).contains("an array holds 1 to 1000 jobs"), "{}", text(&out.stderr));
}

/// A worker its owner stops (SIGTERM, as systemd and Docker send) drains: the coordinator
/// places nothing new on it, what it runs finishes and reports, and then it exits 0.
#[test]
fn a_worker_stopped_by_its_owner_drains_finishing_what_it_runs_and_taking_nothing_new() {
    let mut cluster = Cluster::new(&["coop-a", "coop-b"]);
    cluster.start_coordinator();
    let mut worker = cluster.worker_command("coop-a", &cluster.addr).spawn().unwrap();
    let lines = {
        let (send, lines) = std::sync::mpsc::channel::<String>();
        let stderr = BufReader::new(worker.stderr.take().unwrap());
        std::thread::spawn(move || stderr.lines().map_while(Result::ok).try_for_each(|line| send.send(line)));
        lines
    };
    let said = |needle: &str| loop {
        let line = lines.recv_timeout(Duration::from_secs(30)).expect("the worker said it");
        if line.contains(needle) {
            return line;
        }
    };
    said("connected and admitted");
    // It runs until cancelled, so it is surely running when its worker is told to stop.
    let running = cluster.submit("announce.wat", b"", LONG);
    while !text(&cluster.as_member(&["status", &running]).stdout).contains("running") {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: sends a signal to a child process this test started and still owns.
    unsafe { libc::kill(worker.id() as i32, libc::SIGTERM) };
    let draining = said("worker draining");
    assert!(draining.contains("once the 1 task it holds has ended"), "{draining}");
    let coop_a = loop {
        let workers: serde_json::Value =
            serde_json::from_slice(&cluster.as_member(&["workers", "--json"]).stdout).unwrap();
        let worker = workers.as_array().unwrap().iter().find(|w| w["owner"] == "coop-a").unwrap().clone();
        if worker["draining"] == true {
            break worker;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(coop_a["connected"], true, "a draining worker is still connected: {coop_a}");

    // Nothing new goes to it: with no other worker, a new job waits.
    let waiting = cluster.submit("sum.wat", b"20 22", &[]);
    std::thread::sleep(Duration::from_millis(300));
    let status = text(&cluster.as_member(&["status", &waiting]).stdout);
    assert!(status.contains("queued"), "{status}");
    assert!(worker.try_wait().unwrap().is_none(), "it waits for what it runs");

    // What it ran ends (here, cancelled) and reports: it stops, and the next worker serves.
    assert!(cluster.as_member(&["cancel", &running]).status.success());
    said("worker drained");
    assert!(worker.wait().unwrap().success());
    cluster.start_worker("coop-b");
    assert_eq!(cluster.wait_for(&waiting), "42\n");
}

/// `icn logs --follow` prints what a running module writes to stderr as it writes it,
/// and stops, saying how the job ended, when it ends.
#[test]
fn logs_follow_shows_a_line_a_running_module_wrote_before_it_ends() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    // It writes a line, then works until its time is gone: it ends only when cancelled.
    let job = cluster.submit("announce.wat", b"", LONG);
    let mut args: Vec<String> = vec!["logs".into(), "--follow".into()];
    args.extend(cluster.member_args());
    args.push(job[..10].into());
    let mut following = cluster.spawn(&args);
    let mut stdout = BufReader::new(following.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "started: working on it\n");
    let status = cluster.as_member(&["status", "--json", &job]);
    let view: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(view["state"]["running"].is_object(), "the line came while the module ran: {view}");
    assert!(cluster.as_member(&["cancel", &job]).status.success());
    let ended = following.wait_with_output().unwrap();
    assert!(ended.status.success(), "{}", text(&ended.stderr));
    assert!(text(&ended.stderr).contains("cancelled"), "it says how the job ended: {}", text(&ended.stderr));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(rest, "", "nothing is printed twice");

    // A job that already ended: its accepted run's stderr, at once.
    let grumble = wat("grumble.wat");
    let grumbled =
        cluster.as_member(&["submit", "--scope", "fed-north", "--wait", grumble.to_str().unwrap()]);
    let grumble = text(&grumbled.stdout).lines().next().unwrap().to_string();
    let logs = cluster.as_member(&["logs", "-f", &grumble]);
    assert!(logs.status.success(), "{}", text(&logs.stderr));
    assert_eq!(text(&logs.stdout), "cannot find the second number\n");
}

/// `--log-format json` writes each log line as one JSON object, for a log collector; a
/// stderr that is not a terminal gets no colour codes either way.
#[test]
fn logs_are_json_lines_when_asked_and_never_coloured_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let keep = dir.path().join("demo");
    let run = |format: &str| {
        Command::new(ICN)
            .args(["--log-format", format, "demo", "--keep"])
            .arg(keep.join(format))
            .env("ICN_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .expect("icn runs")
    };
    let json = run("json");
    assert!(json.status.success(), "{}", text(&json.stderr));
    let lines: Vec<&str> =
        std::str::from_utf8(&json.stderr).unwrap().lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.len() >= 3, "info lines were logged: {}", text(&json.stderr));
    for line in &lines {
        let object: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(object["level"].is_string() && object["fields"].is_object(), "{line}");
    }
    let plain = run("text");
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    assert!(text(&plain.stderr).contains(" INFO "), "{}", text(&plain.stderr));
    assert!(!plain.stderr.contains(&0x1b) && !json.stderr.contains(&0x1b), "no escape codes off a terminal");
}

/// A container job as a member runs one from the terminal: a worker started with
/// `--containers`, container terms decided with `icn propose ... container-terms`, then
/// `icn submit --executor container sha256:… --arg …` prints the container's output, and
/// `icn status` says what it used.
#[test]
fn a_container_job_runs_from_the_icn_command() {
    let mut cluster = Cluster::new(&["coop-a"]);
    let genesis = cluster.dir.path().join("genesis.toml");
    let text_before = std::fs::read_to_string(&genesis).unwrap();
    std::fs::write(
        &genesis,
        text_before.replace("executors = [\"wasm\"]", "executors = [\"wasm\", \"container\"]"),
    )
    .unwrap();
    cluster.start_coordinator();
    let key = cluster.dir.path().join("coop-a.key");
    let worker = Command::new(ICN)
        .args([
            "worker",
            "--containers",
            "--coordinator",
            &cluster.addr,
            "--coordinator-key",
            &cluster.coordinator_key,
        ])
        .args(["--key", key.to_str().unwrap(), "--slots", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    cluster.workers.push(("coop-a".into(), worker));
    let image = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(icn_worker::container::import_busybox(Path::new("/bin/busybox"), "icn-test-busybox"))
        .expect("the container tests need Docker and Debian's busybox-static");
    let member = |args: &[&str]| cluster.member(args);
    let terms = ["container-terms", "--cpu-second", "2", "--gib-second", "1", "--tolerance", "20"];
    let (proposal, _) =
        member(&[&["propose", "--scope", "fed-north", "--title", "containers"][..], &terms[..]].concat());
    member(&["vote", proposal.trim(), "yes"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let decided = "ACCEPTED \"containers\" by ana: container terms for fed-north: 2 credits per CPU-second";
    loop {
        let (decisions, _) = member(&["decisions"]);
        if decisions.contains(decided) {
            break;
        }
        assert!(Instant::now() < deadline, "never decided:\n{decisions}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let input = cluster.dir.path().join("names");
    std::fs::write(&input, "ana\nben\n").unwrap();
    let image = format!("sha256:{image}");
    let (out, said) = member(&[
        "submit",
        "--scope",
        "fed-north",
        "--executor",
        "container",
        &image,
        "--arg",
        "sh",
        "--arg",
        "-c",
        "--arg",
        "cat; echo done",
        "--input",
        input.to_str().unwrap(),
        "--wait",
    ]);
    let mut lines = out.lines();
    let job = lines.next().unwrap().to_string();
    assert_eq!(lines.collect::<Vec<_>>(), ["ana", "ben", "done"], "{out}{said}");
    let (status, _) = member(&["status", &job]);
    assert!(status.contains("completed") && status.contains("CPU-seconds"), "{status}");
}

/// A module that is not there, or is not WebAssembly (a README, say), is named as such
/// before anything is sent; a proposal's hex id given to `trace --decision` is told what
/// that flag takes.
#[test]
fn a_wrong_module_file_or_decision_is_named_with_what_to_give_instead() {
    let dir = tempfile::tempdir().unwrap();
    let readme = dir.path().join("README.md");
    std::fs::write(&readme, "# not a module\n").unwrap();
    let key = "a".repeat(64);
    let submit = |module: &Path| {
        icn(&[
            "submit",
            "--coordinator",
            "127.0.0.1:1",
            "--coordinator-key",
            &key,
            "--key",
            dir.path().join("none.key").to_str().unwrap(),
            "--scope",
            "fed-north",
            module.to_str().unwrap(),
        ])
    };
    let out = submit(&readme);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("README.md is not a WebAssembly module"), "{}", text(&out.stderr));
    let out = submit(&dir.path().join("missing.wat"));
    assert!(text(&out.stderr).contains("cannot read module") && text(&out.stderr).contains("No such file"));
    let out = icn(&["trace", "--decision", "a9302d0e"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("is not a journal entry number"), "{}", text(&out.stderr));
}

/// A forgotten export and a coordinator that is not running are named with where the
/// missing values come from and what to check.
#[test]
fn a_forgotten_export_or_a_stopped_coordinator_says_what_to_set_or_check() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ICN)
        .args(["jobs"])
        .env_remove("ICN_COORDINATOR")
        .env_remove("ICN_COORDINATOR_KEY")
        .env_remove("ICN_KEY")
        .env("ICN_CLIENT_CONFIG", NO_CLIENT_CONFIG)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("no coordinator address (--coordinator, ICN_COORDINATOR) given"), "{said}");
    assert!(said.contains("or set ICN_COORDINATOR, ICN_COORDINATOR_KEY and ICN_KEY"), "{said}");
    assert!(said.contains("icn context add NAME --coordinator"), "{said}");
    assert!(said.contains("`icn dev` prints the line"), "{said}");

    let key = dir.path().join("ana.key");
    assert!(icn(&["keygen", "--out", key.to_str().unwrap()]).status.success());
    let nobody = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let stranger = icn_protocol::Keypair::generate().public().to_string();
    let out = Command::new(ICN)
        .args(["jobs", "--coordinator", &nobody, "--coordinator-key", &stranger, "--key"])
        .arg(&key)
        .env("ICN_STATE_DIR", dir.path().join("state"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = text(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains(&format!("nothing answered at {nobody}")), "{said}");
    assert!(said.contains("is the coordinator running"), "{said}");
}

/// Ctrl-C on `--wait` stops following, not the job, and says how to follow it again or
/// stop it.
#[test]
fn an_interrupted_wait_leaves_the_job_running_and_says_how_to_follow_it() {
    let mut cluster = Cluster::new(&["coop-a"]);
    cluster.start_coordinator();
    cluster.start_worker("coop-a");
    let input = cluster.dir.path().join("nothing");
    std::fs::write(&input, b"").unwrap();
    let mut args: Vec<String> = vec!["submit".into(), "--scope".into(), "fed-north".into()];
    args.extend(cluster.member_args());
    args.extend([wat("spin.wat").to_str().unwrap().into(), "--input".into(), input.to_str().unwrap().into()]);
    args.extend(["--timeout-ms".into(), "20000".into(), "--wait".into()]);
    let mut child = cluster.spawn(&args);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut job = String::new();
    stdout.read_line(&mut job).unwrap();
    let job = job.trim().to_string();
    assert_eq!(job.len(), 64, "the job's id first: {job:?}");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: sends a signal to a child process this test started and still owns.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let said = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{said}");
    assert!(said.contains(&format!("stopped following job {}", &job[..12])), "{said}");
    assert!(said.contains("--wait` follows it again") && said.contains("`icn cancel"), "{said}");
    let mut status: Vec<String> = vec!["status".into()];
    status.extend(cluster.member_args());
    status.extend([job.clone(), "--json".into()]);
    let view = cluster.run(&status.iter().map(String::as_str).collect::<Vec<_>>());
    let view: serde_json::Value = serde_json::from_slice(&view.stdout).unwrap();
    let state = &view["state"];
    assert!(state == "queued" || state.get("running").is_some(), "the job goes on: {view}");
}
