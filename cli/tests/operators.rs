//! What operators run: a real Prometheus (Debian's, which `scripts/test` installs) scrapes a
//! coordinator and three workers running wasm and container jobs, with the deployed alert
//! rules loaded; every target is up, the job counters moved, every expression of the
//! Grafana dashboard and of the alert rules runs through Prometheus's query API without
//! error, and every panel's expression returns data. promtool checks the deployed config
//! and rules, and its rule tests show the coordinator-down and no-heartbeat alerts firing.

use std::net::SocketAddr;
use std::time::Duration;

use icn_cli::client::JobRequest;
use icn_cli::demo::HELLO_WAT;
use icn_cli::local::{self, LocalCommons, LocalOptions};
use icn_protocol::wire::{ExecutorKind, JobState, Limits};

fn deployed(path: &str) -> String {
    format!("{}/../deploy/{path}", env!("CARGO_MANIFEST_DIR"))
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// `GET path` on `addr`: the body.
async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    // HTTP/1.0: the body comes whole, never chunked.
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some(body.to_string())
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The query API's answer to `expr`, as JSON.
async fn query(web: SocketAddr, expr: &str) -> serde_json::Value {
    let body = get(web, &format!("/api/v1/query?query={}", encode(expr))).await.unwrap_or_default();
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

fn results(answer: &serde_json::Value) -> usize {
    answer["data"]["result"].as_array().map_or(0, Vec::len)
}

/// Every `expr` of the dashboard's panels, with the scope variable matching every scope.
fn dashboard_exprs() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deployed("grafana/icn-commons.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            exprs.push((title, target["expr"].as_str().unwrap().replace("$scope", ".*")));
        }
    }
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_commons_and_every_dashboard_and_alert_expression_runs() {
    let dir = tempfile::tempdir().unwrap();
    let any_port: SocketAddr = ([127, 0, 0, 1], 0).into();
    let options = LocalOptions {
        metrics_listen: Some(([127, 0, 0, 1], 0).into()),
        worker_metrics: &[any_port; 3],
        containers: true,
        mandate_executors: &[ExecutorKind::Wasm, ExecutorKind::Container],
        voting_window_ms: 300,
        ..LocalOptions::default()
    };
    let commons = LocalCommons::start(dir.path(), options).await.unwrap();
    commons.decide_container_terms(50).await.unwrap();
    let coordinator = commons.coordinator.metrics_addr().unwrap();
    let workers: Vec<SocketAddr> = commons.workers.iter().map(|w| w.metrics.unwrap()).collect();
    let web = free_addr();
    let targets =
        |addrs: &[SocketAddr]| addrs.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  \
             - job_name: icn-coordinator\n    static_configs:\n      - targets: ['{coordinator}']\n  \
             - job_name: icn-worker\n    static_configs:\n      - targets: [{}]\n",
            deployed("prometheus/alerts.yml"),
            targets(&workers)
        ),
    )
    .unwrap();
    let mut prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address={web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus is not installed: `apt-get install prometheus` (scripts/test does)");

    // Jobs of both executors, and a container killed at its timeout.
    let client = commons.client().await.unwrap();
    let module = client.ensure_module(&wat::parse_str(HELLO_WAT).unwrap()).await.unwrap();
    let image =
        icn_worker::container::import_busybox(std::path::Path::new("/bin/busybox"), "icn-test-busybox")
            .await
            .expect("the container jobs need Docker and Debian's busybox-static");
    let sh = |script: &str| vec!["sh".to_string(), "-c".to_string(), script.to_string()];
    let jobs = [
        JobRequest::new(local::federation(), ExecutorKind::Wasm, module, b"", vec![], Limits::default()),
        JobRequest::new(
            local::federation(),
            ExecutorKind::Container,
            image,
            b"",
            sh("echo hi"),
            Limits::default(),
        ),
        JobRequest::new(
            local::federation(),
            ExecutorKind::Container,
            image,
            b"",
            sh("sleep 30"),
            Limits { timeout_ms: 500, ..Limits::default() },
        ),
    ];
    for job in &jobs {
        let id = client.submit(job).await.unwrap();
        let view =
            tokio::time::timeout(Duration::from_secs(60), client.watch(id, |_| {})).await.unwrap().unwrap();
        assert!(matches!(view.state, JobState::Completed | JobState::Failed), "{view:?}");
    }

    // And one refused: a scope that does not exist.
    let nowhere = JobRequest::new(
        "fed-nowhere".parse().unwrap(),
        ExecutorKind::Wasm,
        module,
        b"",
        vec![],
        Limits::default(),
    );
    client.submit(&nowhere).await.unwrap_err();

    // Every target up, and the counters of what ran moved, as Prometheus saw them.
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let up = query(web, "sum(up)").await;
            let ended = query(web, "sum(icn_jobs_ended_total)").await;
            let tasks = query(web, "sum(icn_worker_tasks_total)").await;
            let value = |answer: &serde_json::Value| {
                answer["data"]["result"][0]["value"][1].as_str().map(str::to_string)
            };
            if value(&up).as_deref() == Some("4")
                && value(&ended).as_deref() == Some("3")
                && value(&tasks).as_deref() == Some("3")
            {
                return;
            }
        }
    });
    seen.await.expect("Prometheus saw 4 targets up, 3 jobs ended and 3 tasks run within a minute");
    // Rates need two samples of a counter after it moved.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut checked = 0;
    for (title, expr) in dashboard_exprs() {
        let answer = query(web, &expr).await;
        assert_eq!(answer["status"], "success", "panel {title:?}: {expr}: {answer}");
        assert!(results(&answer) > 0, "panel {title:?} shows no data: {expr}: {answer}");
        checked += 1;
    }
    assert!(checked >= 20, "the dashboard has its panels: {checked} expressions");
    // The alert rules Prometheus loaded from deploy/, each run as a query.
    let rules: serde_json::Value = serde_json::from_str(&get(web, "/api/v1/rules").await.unwrap()).unwrap();
    let alerts: Vec<(String, String)> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["query"].as_str().unwrap().to_string()))
        .collect();
    let names: Vec<&str> = alerts.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "IcnCoordinatorDown",
        "IcnNoWorkerHeartbeats",
        "IcnQueueWaitHigh",
        "IcnDisputeBacklog",
        "IcnRefusalSpike",
        "IcnJournalAppendSlow",
    ] {
        assert!(names.contains(&expected), "{expected} is loaded: {names:?}");
    }
    for (name, expr) in &alerts {
        let answer = query(web, expr).await;
        assert_eq!(answer["status"], "success", "alert {name}: {expr}: {answer}");
    }
    // A healthy commons pages nobody.
    let firing = query(web, "ALERTS{alertstate=\"firing\"}").await;
    assert_eq!(results(&firing), 0, "{firing}");
    prometheus.kill().await.unwrap();
    commons.stop().await.unwrap();
}

fn promtool(args: &[&str]) -> String {
    let out = std::process::Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool is not installed: `apt-get install prometheus` (scripts/test does)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

#[test]
fn the_deployed_prometheus_config_and_rules_are_valid() {
    promtool(&["check", "config", &deployed("prometheus/prometheus.yml")]);
    promtool(&["check", "config", &deployed("compose/prometheus.yml")]);
    let rules = promtool(&["check", "rules", &deployed("prometheus/alerts.yml")]);
    assert!(rules.contains("SUCCESS"), "{rules}");
}

/// promtool's rule tests: the coordinator-down and no-heartbeat alerts fire when their
/// series say so, and not before their `for` has passed.
#[test]
fn the_coordinator_down_and_no_heartbeat_alerts_fire() {
    let test = deployed("prometheus/alerts_test.yml");
    let text = std::fs::read_to_string(&test).unwrap();
    for alert in ["IcnCoordinatorDown", "IcnNoWorkerHeartbeats"] {
        assert!(text.contains(&format!("alertname: {alert}")), "{test} tests {alert}");
    }
    promtool(&["test", "rules", &test]);
}

/// The systemd units are valid to systemd's own checker (with this build's binary in the
/// place the units name).
#[test]
fn the_systemd_units_verify() {
    let dir = tempfile::tempdir().unwrap();
    for unit in ["icn-coordinator.service", "icn-worker.service"] {
        let text = std::fs::read_to_string(deployed(&format!("systemd/{unit}"))).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/icn "), "{unit} runs the installed binary");
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/icn", env!("CARGO_BIN_EXE_icn"))).unwrap();
        let out = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze is not installed: `apt-get install systemd`");
        let said =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "{unit}: {said}");
    }
}
