//! The dependency rules of docs/ARCHITECTURE.md, checked from `cargo metadata`: the
//! deterministic crates build without an async runtime, a network stack, a database or a
//! sandbox, and each shell crate reaches only the crates its layer may.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

/// Crates that do I/O, keep time or run code: none may reach a pure crate.
const IMPURE: &[&str] =
    &["tokio", "mio", "socket2", "quinn", "rustls", "rcgen", "rusqlite", "wasmtime", "bollard", "hyper"];

/// The pure crates and the workspace crates each may depend on.
const PURE: &[(&str, &[&str])] = &[
    ("icn-protocol", &[]),
    ("icn-governance", &["icn-protocol"]),
    ("icn-ledger", &["icn-protocol"]),
    ("icn-placement", &["icn-protocol"]),
    ("icn-core", &["icn-protocol", "icn-governance", "icn-ledger", "icn-placement"]),
    ("icn-chaos", &["icn-protocol", "icn-governance", "icn-ledger", "icn-placement", "icn-core"]),
];

/// The shells: the workspace crates and the impure crates each may not reach.
const SHELLS: &[(&str, &[&str])] = &[
    ("icn-transport", &["icn-core", "icn-coordinator", "icn-worker", "rusqlite", "wasmtime"]),
    ("icn-worker", &["icn-core", "icn-coordinator", "icn-governance", "icn-ledger", "rusqlite"]),
    ("icn-coordinator", &["icn-worker", "wasmtime", "bollard"]),
];

/// Every package each workspace crate reaches through normal (not dev or build)
/// dependencies, by name.
fn reached() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let output = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            &host(),
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("cargo runs");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id"), p["name"].as_str().expect("name")))
        .collect();
    let nodes: BTreeMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .expect("a resolved graph")
        .iter()
        .map(|n| (n["id"].as_str().expect("id"), n))
        .collect();
    let normal =
        |dep: &Value| dep["dep_kinds"].as_array().expect("kinds").iter().any(|k| k["kind"].is_null());
    let mut reached = BTreeMap::new();
    for member in metadata["workspace_members"].as_array().expect("members") {
        let root = member.as_str().expect("id");
        let mut seen = BTreeSet::new();
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            for dep in nodes[id]["deps"].as_array().expect("deps").iter().filter(|d| normal(d)) {
                let pkg = dep["pkg"].as_str().expect("pkg");
                if seen.insert(pkg) {
                    stack.push(pkg);
                }
            }
        }
        reached.insert(names[root].to_string(), seen.iter().map(|id| names[id].to_string()).collect());
    }
    reached
}

fn host() -> String {
    let output = Command::new("rustc").arg("-vV").output().expect("rustc runs");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    text.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc names its host").to_string()
}

#[test]
fn pure_crates_reach_no_runtime_network_database_or_sandbox() {
    let reached = reached();
    let mut broken = vec![];
    for (krate, allowed) in PURE {
        let deps = reached.get(*krate).unwrap_or_else(|| panic!("{krate} is a workspace member"));
        for dep in deps {
            if IMPURE.contains(&dep.as_str()) {
                broken.push(format!("{krate} reaches {dep}"));
            }
            if dep.starts_with("icn-") && !allowed.contains(&dep.as_str()) {
                broken.push(format!("{krate} reaches {dep}, outside its layer"));
            }
        }
    }
    assert!(broken.is_empty(), "dependency rules of docs/ARCHITECTURE.md broken: {broken:#?}");
}

/// The coordinator's shell asks the core; it names no domain crate itself (governance,
/// the ledger, placement), so what the commons decides and owes is decided in one place.
#[test]
fn the_coordinator_reaches_the_domain_only_through_the_core() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../coordinator/Cargo.toml");
    let text = std::fs::read_to_string(manifest).expect("the coordinator's manifest");
    let manifest: toml::Table = text.parse().expect("a manifest is TOML");
    let direct: Vec<&String> = manifest["dependencies"].as_table().expect("dependencies").keys().collect();
    assert!(direct.iter().any(|d| *d == "icn-core"), "the coordinator hosts the core: {direct:?}");
    for domain in ["icn-governance", "icn-ledger", "icn-placement"] {
        assert!(!direct.iter().any(|d| *d == domain), "the coordinator depends on {domain} directly");
    }
}

#[test]
fn shells_reach_only_their_layer() {
    let reached = reached();
    let mut broken = vec![];
    for (krate, forbidden) in SHELLS {
        let deps = reached.get(*krate).unwrap_or_else(|| panic!("{krate} is a workspace member"));
        broken
            .extend(forbidden.iter().filter(|f| deps.contains(**f)).map(|f| format!("{krate} reaches {f}")));
    }
    assert!(broken.is_empty(), "dependency rules of docs/ARCHITECTURE.md broken: {broken:#?}");
    // The check sees what it should: the shells do reach the impure crates.
    assert!(reached["icn-coordinator"].contains("rusqlite") && reached["icn-worker"].contains("wasmtime"));
    assert!(reached["icn-worker"].contains("bollard"), "the worker reaches the Docker engine");
}
