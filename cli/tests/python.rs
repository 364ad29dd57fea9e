//! Clients that are not `icn`: the Python example submits a signed job over HTTP and
//! prints its output, and schemathesis drives every operation of `/openapi.json` with
//! generated data, signed as a member. Both need python3 with pynacl, blake3 and
//! schemathesis (`scripts/test` installs them); without them these tests fail, naming what
//! is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use icn_cli::demo::{HELLO_WAT, UPPER_WAT};
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_cli::web::WebClient;
use icn_protocol::wire::Limits;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn python(args: &[&str], env: &[(&str, String)]) -> std::process::Output {
    let mut command = Command::new("python3");
    command.args(args).current_dir(root());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("python3 runs (scripts/test installs it)")
}

fn needs(modules: &str) {
    let check = python(&["-c", &format!("import {modules}")], &[]);
    assert!(
        check.status.success(),
        "python3 lacks {modules}: `pip install pynacl blake3 schemathesis` (scripts/test does): {}",
        String::from_utf8_lossy(&check.stderr)
    );
}

async fn commons(dir: &Path) -> (LocalCommons, String, PathBuf) {
    let options = LocalOptions { http_listen: Some(([127, 0, 0, 1], 0).into()), ..LocalOptions::default() };
    let commons = LocalCommons::start(dir, options).await.unwrap();
    commons.wait_for_workers(3).await.unwrap();
    let base = format!("http://{}", commons.coordinator.http_addr().unwrap());
    let key = dir.join("ana.key");
    icn_transport::keyfile::write_new(&commons.member, &key).unwrap();
    (commons, base, key)
}

/// `examples/wasm/upper.wasm` is `examples/wat/upper.wat` compiled, byte for byte, so the
/// Python example's usage line runs as written (Python has no WAT compiler). With
/// `ICN_BLESS=1` the file is written afresh from the source.
#[test]
fn the_committed_upper_wasm_is_its_wat_source_compiled() {
    let path = root().join("examples/wasm/upper.wasm");
    let compiled = wat::parse_str(UPPER_WAT).unwrap();
    if std::env::var_os("ICN_BLESS").is_some() {
        std::fs::write(&path, &compiled).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == compiled,
        "{} is not examples/wat/upper.wat compiled: run this test with ICN_BLESS=1 and commit the file",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_submits_a_signed_job_over_http_and_prints_its_output() {
    needs("nacl, blake3");
    let dir = tempfile::tempdir().unwrap();
    let (commons, base, key) = commons(dir.path()).await;
    // The module the example's usage names, committed beside its source.
    let module = "examples/wasm/upper.wasm".to_string();
    let before = commons.coordinator.api().read(|core| core.journal_len()).await.unwrap();
    let (api, key) = (base.clone(), key.display().to_string());
    let run = tokio::task::spawn_blocking(move || {
        python(
            &[
                "examples/python/submit.py",
                "--api",
                &api,
                "--key",
                &key,
                "--scope",
                "fed-north",
                "--module",
                &module,
                "--input",
                "shout this",
            ],
            &[],
        )
    });
    let output = run.await.unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stdout, "SHOUT THIS");
    let job: icn_protocol::JobId =
        stderr.trim().strip_prefix("submitted job ").expect(&stderr).parse().unwrap();
    let view = commons.coordinator.api().job(job).await.unwrap();
    assert_eq!(view.submitter, commons.member.public(), "the job is the member's, signed by the script");
    assert!(commons.coordinator.api().read(|core| core.journal_len()).await.unwrap() > before);
    commons.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_response_outside_the_schema() {
    needs("nacl, blake3, schemathesis, pytest");
    let dir = tempfile::tempdir().unwrap();
    let (commons, base, key) = commons(dir.path()).await;
    // Something to read: a completed job, so ids and views exist.
    let client = WebClient::new(&base, commons.member.clone());
    let module = client.put_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    client.submit(&local::submission(module, b"", Limits::default())).await.unwrap();
    let env = [("ICN_API", base), ("ICN_KEY", key.display().to_string())];
    let run = tokio::task::spawn_blocking(move || {
        python(&["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/python/test_openapi.py"], &env)
    });
    let output = run.await.unwrap();
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    commons.stop().await.unwrap();
}
