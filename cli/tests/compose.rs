//! The operator's way in: images built from this build's `icn` and Debian's prometheus
//! (no registry), `deploy/compose/init.sh`, then `docker-compose -f deploy/compose.yaml up`:
//! a job submitted from this machine runs through the containers, and the Prometheus
//! beside them scrapes the coordinator and all three workers.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn top() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?} could not start: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The compose project, taken down with its volumes however the test ends.
struct Project {
    name: String,
    env: Vec<(String, String)>,
}

impl Project {
    fn compose(&self) -> Command {
        let mut command = Command::new("docker-compose");
        command.current_dir(top()).args(["-p", &self.name, "-f", "deploy/compose.yaml"]);
        command.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        command
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.compose().args(["down", "-v", "--timeout", "5"]).output();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

#[test]
fn the_compose_commons_runs_a_job_and_prometheus_scrapes_every_part_of_it() {
    let icn = env!("CARGO_BIN_EXE_icn");
    let built = run(Command::new(top().join("deploy/docker/build-images.sh")).arg(icn));
    assert!(built.contains("built icn:local and icn-prometheus:local"), "{built}");
    let state = tempfile::tempdir().unwrap();
    let init =
        run(Command::new(top().join("deploy/compose/init.sh")).arg(icn).env("ICN_STATE", state.path()));
    assert!(init.contains("docker-compose --env-file"), "init says what to run next: {init}");
    let env_file = std::fs::read_to_string(state.path().join("compose.env")).unwrap();
    let coordinator_key = env_file.trim().strip_prefix("ICN_COORDINATOR_KEY=").unwrap().to_string();
    let (quic, web) = (free_port(), free_port());
    let project = Project {
        name: format!("icn-test-{quic}"),
        env: vec![
            ("ICN_STATE".into(), state.path().display().to_string()),
            ("ICN_COORDINATOR_KEY".into(), coordinator_key.clone()),
            ("ICN_QUIC_PORT".into(), quic.to_string()),
            ("ICN_PROMETHEUS_PORT".into(), web.to_string()),
        ],
    };
    run(project.compose().args(["up", "-d"]));

    // A member on this machine submits through the published QUIC port and waits.
    let submitted = run(Command::new(icn)
        .current_dir(top())
        .args(["submit", "examples/wat/hello.wat", "--wait", "--scope", "fed-north"])
        .args(["--coordinator", &format!("127.0.0.1:{quic}"), "--coordinator-key", &coordinator_key])
        .arg("--key")
        .arg(state.path().join("members/ana.key"))
        .env("ICN_STATE_DIR", state.path().join("client")));
    assert!(submitted.contains("hello from the commons"), "{submitted}");

    // Prometheus scrapes all four targets, and the coordinator's job counter moved.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut up, mut completed) = (String::new(), String::new());
    while Instant::now() < deadline {
        up = http_get(web, "/api/v1/query?query=sum(up)").unwrap_or_default();
        completed =
            http_get(web, "/api/v1/query?query=sum(icn_jobs_ended_total%7Bstate%3D%22completed%22%7D)")
                .unwrap_or_default();
        if up.contains("\"4\"") && completed.contains("\"1\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(up.contains("\"4\""), "the coordinator and three workers are up: {up}");
    assert!(completed.contains("\"1\""), "the job's completion was scraped: {completed}");
}

/// The init script checks its inputs before it writes: a missing binary and a folder left
/// half-made are named with what to do, and nothing is written.
#[test]
fn the_compose_init_script_names_a_missing_binary_or_a_half_made_folder_and_writes_nothing() {
    let state = tempfile::tempdir().unwrap();
    let init = |icn: &str| {
        Command::new(top().join("deploy/compose/init.sh"))
            .arg(icn)
            .env("ICN_STATE", state.path())
            .output()
            .unwrap()
    };
    let missing = init("/nowhere/icn");
    let said = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        said.contains("no icn binary at /nowhere/icn") && said.contains("cargo build --release"),
        "{said}"
    );
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0, "nothing written");

    std::fs::create_dir(state.path().join("members")).unwrap();
    let half = init(env!("CARGO_BIN_EXE_icn"));
    let said = String::from_utf8_lossy(&half.stderr);
    assert!(!half.status.success());
    assert!(said.contains("is not empty but holds no commons") && said.contains("remove it"), "{said}");
    assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 1, "nothing more written");
}
