//! The README's tour, run as written: its two shell blocks, line by line, in a fresh
//! directory that holds the repository's `deploy/` and `examples/`, with `icn` on the
//! `PATH`. The placeholders are filled from what earlier commands printed, and the keys
//! pasted into the genesis, as a reader would.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ICN: &str = env!("CARGO_BIN_EXE_icn");

/// The `sh` blocks of the README's "A short tour" section, as lines.
fn tour_blocks() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let start = readme.find("## A short tour").expect("the README has a tour");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let mut blocks = Vec::new();
    let mut rest = section;
    while let Some(open) = rest.find("```sh\n") {
        let body = &rest[open + 6..];
        let close = body.find("```").expect("a closed block");
        blocks.push(body[..close].lines().map(str::to_string).collect());
        rest = &body[close + 3..];
    }
    blocks
}

/// A line without its trailing comment (two spaces or more, then `#`).
fn command_of(line: &str) -> String {
    let cut = line.find("  #").unwrap_or(line.len());
    line[..cut].trim().to_string()
}

struct Shell {
    dir: tempfile::TempDir,
    vars: BTreeMap<String, String>,
    background: Vec<Child>,
}

impl Shell {
    fn command(&self, line: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", line]).current_dir(self.dir.path()).envs(&self.vars).stdin(Stdio::null());
        command
    }

    fn run(&self, line: &str) -> Output {
        let out = self.command(line).output().unwrap();
        assert!(
            out.status.success(),
            "`{line}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

impl Drop for Shell {
    fn drop(&mut self) {
        for child in &mut self.background {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_readme_tour_runs_as_written_and_prints_42() {
    let blocks = tour_blocks();
    assert_eq!(blocks.len(), 2, "the tour has a block for each terminal");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for shared in ["deploy", "examples"] {
        std::os::unix::fs::symlink(repo.join(shared), dir.path().join(shared)).unwrap();
    }
    let bin = Path::new(ICN).parent().unwrap().display().to_string();
    let vars = BTreeMap::from([
        ("PATH".to_string(), format!("{bin}:{}", std::env::var("PATH").unwrap_or_default())),
        ("ICN_STATE_DIR".to_string(), dir.path().join("state").display().to_string()),
    ]);
    let mut shell = Shell { dir, vars, background: Vec::new() };
    let mut keys = BTreeMap::new();
    let mut fills = BTreeMap::new();

    // The first terminal: keys, config, genesis, the coordinator.
    for line in &blocks[0] {
        let line = command_of(line);
        if line.starts_with("icn coordinator") {
            let mut child =
                shell.command(&line.replacen("icn ", "exec icn ", 1)).stdout(Stdio::piped()).spawn().unwrap();
            let mut stdout = BufReader::new(child.stdout.take().unwrap());
            let mut first = String::new();
            stdout.read_line(&mut first).unwrap();
            let words: Vec<&str> = first.split_whitespace().collect();
            assert_eq!(words.get(2), Some(&"listening"), "{first}");
            fills.insert("<KEY>", words[1].to_string());
            // Its terminal keeps reading what it prints (a closed pipe would stop it).
            std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
            shell.background.push(child);
            continue;
        }
        let out = shell.run(&line);
        if let Some(file) = line.strip_prefix("icn keygen --out ") {
            keys.insert(file.to_string(), String::from_utf8_lossy(&out.stdout).trim().to_string());
        }
        if line.ends_with("genesis.toml") {
            // The paste the comment asks for.
            let path = shell.dir.path().join("genesis.toml");
            let genesis = std::fs::read_to_string(&path)
                .unwrap()
                .replace("<public key of ana>", &keys["ana.key"])
                .replace("<public key of the worker>", &keys["coop-a-worker.key"]);
            std::fs::write(&path, genesis).unwrap();
        }
    }

    // The second terminal: a worker and a member.
    let mut printed_42 = false;
    for line in &blocks[1] {
        let mut line = command_of(line);
        for (placeholder, value) in &fills {
            line = line.replace(placeholder, value);
        }
        if let Some(assignments) = line.strip_prefix("export ") {
            for assignment in assignments.split_whitespace() {
                let (name, value) = assignment.split_once('=').unwrap();
                shell.vars.insert(name.to_string(), value.to_string());
            }
            continue;
        }
        if let Some(background) = line.strip_suffix('&') {
            let child = shell.command(&background.replacen("icn ", "exec icn ", 1)).spawn().unwrap();
            shell.background.push(child);
            continue;
        }
        let out = shell.run(&line);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        // A transcript, shown when the test fails.
        eprintln!("$ {line}\n{stdout}{}", String::from_utf8_lossy(&out.stderr));
        if line.starts_with("icn propose") {
            fills.insert("<PROPOSAL>", stdout.trim().to_string());
        }
        if line.starts_with("icn submit") {
            let (job, output) = stdout.split_once('\n').unwrap();
            assert_eq!(output, "42\n", "{stdout}");
            fills.insert("<JOB>", job.to_string());
            printed_42 = true;
        }
        if line.starts_with("icn trace") {
            assert!(stdout.contains("fed-north") && stdout.contains("Budget for the week"), "{stdout}");
        }
    }
    assert!(printed_42, "the tour submits a job");

    // Ctrl-C's cousin: the coordinator stops cleanly.
    let coordinator = shell.background.remove(0);
    // SAFETY: sends a signal to a child process this test started and still owns.
    unsafe { libc::kill(coordinator.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut coordinator = coordinator;
    let status = loop {
        if let Some(status) = coordinator.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the coordinator did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}
