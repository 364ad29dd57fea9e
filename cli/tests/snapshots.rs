//! What every command that prints data shows, for people and as JSON, run as a member
//! runs it (the `icn` binary, connection settings in the environment) against a real
//! commons whose keys are fixed: insta snapshots, one per command and form. What changes
//! from run to run — job and proposal ids, times, hashes — is replaced by a placeholder
//! naming what it was, so a change to what members read shows up in review.
//!
//! A command that gains `--json` must gain its snapshots: the test walks the command tree.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use icn_cli::local::{LocalCommons, LocalOptions};

const ICN: &str = env!("CARGO_BIN_EXE_icn");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Keys made from fixed seeds, so keys and what they sign read the same every run.
fn fixed_keys(dir: &Path, names: &[&str]) {
    for (i, name) in names.iter().enumerate() {
        let seed = blake3::hash(format!("icn snapshot key {i}").as_bytes());
        let key = icn_protocol::Keypair::from_seed(*seed.as_bytes());
        icn_transport::keyfile::write_new(&key, &dir.join(format!("{name}.key"))).unwrap();
    }
}

struct Member<'a> {
    dir: &'a Path,
    commons: &'a LocalCommons,
}

impl Member<'_> {
    fn icn(&self, args: &[&str]) -> Output {
        Command::new(ICN)
            .args(args)
            .env("ICN_STATE_DIR", self.dir.join("state"))
            .env("ICN_COORDINATOR", self.commons.coordinator.addr().to_string())
            .env("ICN_COORDINATOR_KEY", self.commons.coordinator.public_key().to_string())
            .env("ICN_KEY", self.dir.join("keys/ana.key"))
            .env("ICN_CLIENT_CONFIG", self.dir.join("client.toml"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .expect("icn runs")
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.icn(args);
        assert!(out.status.success(), "icn {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }
}

/// `text` as a regex matching itself.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| if "\\.+*?()|[]{}^$#&-~".contains(c) { format!("\\{c}") } else { c.to_string() })
        .collect()
}

/// Each command with `--json` below the top, as its words (`ledger positions`).
fn commands_with_json() -> Vec<String> {
    fn walk(command: &clap::Command, path: &str, out: &mut Vec<String>) {
        if command.get_arguments().any(|a| a.get_long() == Some("json")) {
            out.push(path.to_string());
        }
        for sub in command.get_subcommands() {
            walk(sub, format!("{path} {}", sub.get_name()).trim(), out);
        }
    }
    let mut out = Vec::new();
    walk(&<icn_cli::args::Cli as clap::CommandFactory>::command(), "", &mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_that_prints_data_reads_as_it_did_for_people_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    fixed_keys(&keys, &["coordinator", "ana", "ben", "coop-a-worker", "coop-b-worker"]);
    let options = LocalOptions {
        owners: &["coop-a", "coop-b"],
        members: &["ana", "ben"],
        keys: Some(&keys),
        voting_window_ms: 1_000,
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    let member = Member { dir: dir.path(), commons: &commons };
    let wat = |name: &str| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wat").join(name).to_str().unwrap().to_string()
    };

    // What there is to show: a completed job, one that failed its own way, one cancelled
    // while it waited, a decision, a clearing.
    let hello = member.ok(&["submit", "--scope", "fed-north", &wat("hello.wat"), "--wait"]);
    let hello = hello.lines().next().unwrap().to_string();
    let out = member.icn(&["submit", "--scope", "fed-north", &wat("grumble.wat"), "--wait"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let grumble = text(&out.stdout).lines().next().unwrap().to_string();
    // More memory than any worker offers: they wait, and are cancelled waiting.
    let waiting = || {
        member
            .ok(&["submit", "--scope", "fed-north", &wat("hello.wat"), "--memory-mib", "4096"])
            .trim()
            .to_string()
    };
    let (waiting, waiting_too) = (waiting(), waiting());
    let proposal = member
        .ok(&[
            "propose",
            "--scope",
            "fed-north",
            "--title",
            "Fuel at two credits",
            "--vote",
            "yes",
            "prices",
            "--credits-per-mega-fuel",
            "2",
        ])
        .trim()
        .to_string();
    let decided = loop {
        let decisions: serde_json::Value =
            serde_json::from_str(&member.ok(&["decisions", "--json"])).unwrap();
        if let Some(decision) =
            decisions["decided"].as_array().unwrap().iter().find(|d| d["title"] == "Fuel at two credits")
        {
            break decision["seq"].as_u64().unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    };

    let (addr, coordinator_key) = (commons.coordinator.addr().to_string(), commons.coordinator.public_key());
    let ana_key = keys.join("ana.key");
    let context = ["context", "add", "north", "--coordinator", &addr, "--coordinator-key"];
    let saved = member
        .icn(&[&context[..], &[&coordinator_key.to_string(), "--key", ana_key.to_str().unwrap()]].concat());
    assert!(saved.status.success(), "{}", text(&saved.stderr));

    // Ids and times change from run to run; keys do not.
    let mut settings = insta::Settings::clone_current();
    let ids = [
        ("hello", &hello),
        ("grumble", &grumble),
        ("waiting", &waiting),
        ("waiting", &waiting_too),
        ("proposal", &proposal),
    ];
    for (name, id) in ids {
        for length in [64, 12, 10] {
            settings.add_filter(&id[..length], format!("[{name}]"));
        }
    }
    let keys = commons
        .members
        .iter()
        .map(|m| (m.name.clone(), m.key.public()))
        .chain(commons.workers.iter().map(|w| (format!("{} worker", w.owner), w.key)))
        .chain([("coordinator".to_string(), commons.coordinator.public_key())]);
    for (name, key) in keys {
        settings.add_filter(&key.to_string(), format!("[key of {name}]"));
    }
    settings.add_filter(r"\b[0-9a-f]{64}\b", "[hash]");
    settings.add_filter(&escape(&dir.path().display().to_string()), "[dir]");
    settings.add_filter(&escape(&addr), "[coordinator address]");
    settings.add_filter(&format!(r"\b{}\b", escape(env!("CARGO_PKG_VERSION"))), "[release]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?( UTC|Z)?", "[time]");
    // Times in ms since the epoch, in JSON; ages in the jobs table.
    settings.add_filter(r#""(\w+)": \d{13}\b"#, r#""$1": "[time]""#);
    settings.add_filter(r"(?m)\b\d+[smhd]( {2}|$)", "[age]$1");
    // How long a chaos sweep took.
    settings.add_filter(r"in \d+\.\d s:", "in [seconds] s:");
    settings.add_filter(r#""seconds": [0-9.e-]+"#, r#""seconds": "[seconds]""#);
    let _guard = settings.bind_to_scope();

    let decided = decided.to_string();
    // Each command, its arguments for people and for JSON (a cancel needs a job each).
    let runs: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        ("status", vec!["status", &hello], vec!["status", &hello]),
        ("status failed", vec!["status", &grumble], vec!["status", &grumble]),
        ("cancel", vec!["cancel", &waiting], vec!["cancel", &waiting_too]),
        ("decisions", vec!["decisions"], vec!["decisions"]),
        ("members", vec!["members"], vec!["members"]),
        ("scope list", vec!["scope", "list"], vec!["scope", "list"]),
        ("scope show", vec!["scope", "show", "fed-north"], vec!["scope", "show", "fed-north"]),
        ("trace", vec!["trace", &hello], vec!["trace", &hello]),
        ("trace decision", vec!["trace", "--decision", &decided], vec!["trace", "--decision", &decided]),
        ("jobs", vec!["jobs"], vec!["jobs"]),
        ("queue", vec!["queue"], vec!["queue"]),
        ("workers", vec!["workers"], vec!["workers"]),
        ("ledger positions", vec!["ledger", "positions"], vec!["ledger", "positions"]),
        (
            "ledger statement",
            vec!["ledger", "statement", "fed-north"],
            vec!["ledger", "statement", "fed-north"],
        ),
        ("ledger clear", vec!["ledger", "clear", "fed-north"], vec!["ledger", "clear", "fed-north"]),
        ("context list", vec!["context", "list"], vec!["context", "list"]),
        ("version", vec!["version"], vec!["version"]),
        // Two short simulated commons: the same seeds give the same figures every run.
        (
            "chaos",
            vec!["chaos", "--seeds", "2", "--active-ms", "5000"],
            vec!["chaos", "--seeds", "2", "--active-ms", "5000"],
        ),
    ];
    let covered: Vec<&str> = runs.iter().map(|(name, ..)| *name).collect();
    let mut missing: Vec<String> =
        commands_with_json().into_iter().filter(|c| !covered.contains(&c.as_str())).collect();
    missing.sort();
    assert!(missing.is_empty(), "commands with --json and no snapshot: {missing:?}");

    for (name, human_args, json_args) in &runs {
        let snapshot = name.replace(' ', "_");
        let human = member.icn(human_args);
        assert!(!human.stdout.is_empty(), "icn {human_args:?} printed nothing: {}", text(&human.stderr));
        insta::assert_snapshot!(snapshot.clone(), text(&human.stdout));
        let mut json_args = json_args.clone();
        json_args.push("--json");
        let json = member.icn(&json_args);
        let value: serde_json::Value = serde_json::from_slice(&json.stdout)
            .unwrap_or_else(|e| panic!("icn {json_args:?} printed no JSON ({e}): {}", text(&json.stderr)));
        insta::assert_snapshot!(format!("{snapshot}_json"), serde_json::to_string_pretty(&value).unwrap());
    }

    // A dry run: what a job would hold, and where it would run now.
    let dry = member.icn(&["submit", "--scope", "fed-north", "--dry-run", &wat("hello.wat")]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    insta::assert_snapshot!("submit_dry_run", text(&dry.stdout));
    commons.stop().await.unwrap();
}
