//! What runs until stopped: a coordinator, a worker, a dev commons, the member page.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use icn_cli::args::Connect;
use icn_cli::client::Client;
use icn_cli::config::ConfigFile;
use icn_coordinator::Coordinator;

use super::stop_signal;

/// `icn worker`: donates this machine until stopped.
pub async fn worker(
    connect: Connect,
    slots: u32,
    memory_mib: u64,
    metrics_listen: Option<SocketAddr>,
    containers: bool,
    drain_timeout: std::time::Duration,
) -> anyhow::Result<ExitCode> {
    let stop = stop_signal()?;
    let settings = connect.resolve()?;
    let config = icn_worker::WorkerConfig {
        key: Arc::new(icn_transport::keyfile::read(&settings.key)?),
        coordinator: settings.coordinator,
        coordinator_key: settings.coordinator_key,
        slots,
        memory_bytes: memory_mib.saturating_mul(1024 * 1024),
        metrics_listen,
        agent: icn_cli::client::agent(),
    };
    if let Some(addr) = metrics_listen {
        eprintln!("metrics for Prometheus at http://{addr}/metrics");
    }
    eprintln!(
        "worker {} connecting to coordinator {}; it serves once admitted",
        config.key.public(),
        config.coordinator
    );
    let mut executors = icn_worker::Executors::from(Arc::new(icn_worker::WasmExecutor::new()?));
    if containers {
        let owner = config.key.public().to_string();
        match icn_worker::ContainerExecutor::connect(icn_worker::ContainerConfig::new(owner)).await {
            Ok(executor) => {
                eprintln!("container jobs run through the local Docker engine");
                executors = executors.with(Arc::new(executor));
            }
            Err(e) => eprintln!("no container slots offered: {e}"),
        }
    }
    let worker = icn_worker::Worker::start(config, executors).await?;
    let drain = worker.drain_handle();
    let running = worker.run();
    tokio::pin!(running);
    let signal = tokio::select! {
        result = &mut running => return result.map(|()| ExitCode::SUCCESS),
        signal = stop => signal,
    };
    let held = drain.held();
    if held == 0 {
        eprintln!("worker stopping ({signal}): no task was running");
        return Ok(ExitCode::SUCCESS);
    }
    // Listening for the second signal before saying how to give it.
    let again = stop_signal()?;
    drain.start();
    let tasks = icn_cli::governance::count(held as u64, "task", "tasks");
    let have = if held == 1 { "has" } else { "have" };
    eprintln!(
        "worker draining ({signal}): it takes no new task, and stops once the {tasks} it holds {have} ended and \
         reported, within {} s; Ctrl-C or SIGTERM again stops it now (what it runs is then placed again elsewhere)",
        drain_timeout.as_secs()
    );
    tokio::select! {
        result = &mut running => result?,
        () = drain.drained() => eprintln!("worker drained: every task it ran ended and reported; stopping"),
        signal = again => eprintln!("worker stopping now ({signal}); {} tasks it held are placed again elsewhere", drain.held()),
        () = tokio::time::sleep(drain_timeout) => eprintln!(
            "worker stopping: the drain took longer than {} s; {} tasks it held are placed again elsewhere",
            drain_timeout.as_secs(),
            drain.held()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `icn ui`: the member's page, until stopped.
pub async fn ui(
    api: String,
    key: PathBuf,
    listen: SocketAddr,
    grafana: Option<String>,
    coordinator_key: Option<icn_protocol::PublicKey>,
) -> anyhow::Result<ExitCode> {
    let stop = stop_signal()?;
    let key = Arc::new(icn_transport::keyfile::read(&key)?);
    if let Some(warning) = icn_cli::ui::plain_http_warning(&api) {
        eprintln!("{warning}");
    }
    let options = icn_cli::ui::UiOptions { api, key, listen, grafana, coordinator: coordinator_key };
    let icn_cli::ui::Served { login, task, .. } = icn_cli::ui::serve(options).await?;
    println!("your page opens once, in one browser, from {login} (Ctrl-C stops it)");
    use std::io::Write;
    std::io::stdout().flush()?;
    tokio::select! {
        signal = stop => eprintln!("member page stopping ({signal})"),
        _ = task => anyhow::bail!("the member page stopped"),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run_coordinator(path: &Path, accept_journal_end: bool) -> anyhow::Result<()> {
    let stop = stop_signal()?;
    let (file, base) = ConfigFile::read(path)?;
    let (key_path, mut config) = file.resolve(&base)?;
    config.accept_journal_end = accept_journal_end;
    let key = Arc::new(icn_transport::keyfile::read(&key_path)?);
    let resuming = config.journal.exists();
    let coordinator = Coordinator::start(key.clone(), config.clone()).await?;
    println!("coordinator {} listening on {}", key.public(), coordinator.addr());
    if let Some(http) = coordinator.http_addr() {
        println!(
            "the member API over HTTP at http://{http}/ (for icn ui and scripts; /openapi.json describes it)"
        );
    }
    if let Some(metrics) = coordinator.metrics_addr() {
        println!("metrics for Prometheus at http://{metrics}/metrics");
    }
    let entries =
        coordinator.api().read(|core| core.journal_len()).await.map_err(|e| anyhow::anyhow!(e.message))?;
    if resuming {
        println!(
            "journal {}: resumed at entry {}, from the journal as it was",
            config.journal.display(),
            entries - 1
        );
    } else {
        println!(
            "journal {}: new, from a genesis with {} scopes, {} members, {} workers",
            config.journal.display(),
            config.genesis.scopes.len(),
            config.genesis.members.len(),
            config.genesis.workers.len()
        );
    }
    let mut coordinator = coordinator;
    tokio::select! {
        signal = stop => eprintln!("{signal}"),
        // The core only stops on its own when it cannot go on; its error says why.
        result = coordinator.wait() => {
            result?;
            bail!("the coordinator's core stopped");
        }
    }
    eprintln!("coordinator stopping");
    coordinator.shutdown().await
}

/// `icn dev`: a local commons on `listen` whose keys and journal live in `dir`.
/// Where a development commons listens.
pub struct DevListen {
    pub quic: SocketAddr,
    pub http: SocketAddr,
    pub metrics: Option<SocketAddr>,
}

pub async fn dev(dir: &Path, listen: DevListen, voting_window_ms: u64) -> anyhow::Result<ExitCode> {
    use icn_cli::governance::age;
    use icn_protocol::views::when;
    anyhow::ensure!(
        (1_000..=icn_protocol::governance::VOTING_WINDOW_MS_MAX).contains(&voting_window_ms),
        "--voting-window {} is out of range: give 1s to {}",
        age(voting_window_ms),
        age(icn_protocol::governance::VOTING_WINDOW_MS_MAX)
    );
    let stop = stop_signal()?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let founded = icn_cli::local::journaled_genesis(&dir.join("journal.db"))?;
    let options = icn_cli::local::LocalOptions {
        keys: Some(&dir),
        listen: listen.quic,
        http_listen: Some(listen.http),
        metrics_listen: listen.metrics,
        voting_window_ms,
        founding_period_ms: icn_protocol::governance::MANDATE_PERIOD_MS_MAX,
        ..Default::default()
    };
    let commons = icn_cli::local::LocalCommons::start(&dir, options).await?;
    let member = dir.join(format!("{}.key", commons.members[0].name));
    match &founded {
        None => println!(
            "a new development commons is up: coordinator, {} workers, journal {} (new)",
            commons.workers.len(),
            commons.journal.display()
        ),
        Some(_) => println!(
            "the development commons is up again: coordinator, {} workers, journal {} (resumed)",
            commons.workers.len(),
            commons.journal.display()
        ),
    }
    let federation = icn_cli::local::federation();
    let client = commons.client().await?;
    let window = client.scope(federation.clone()).await?.rule.voting_window_ms;
    if founded.is_some() && window != voting_window_ms {
        println!(
            "proposals stay open {} here, as this commons was founded; --voting-window sets it only for a new \
             --dir (no decision changes a scope's voting window yet)",
            age(window)
        );
    }
    if let Some(metrics) = commons.coordinator.metrics_addr() {
        println!("metrics for Prometheus at http://{metrics}/metrics");
    }
    let mandate = renew_dev_mandate(&commons, &client).await?;
    println!(
        "members ana and ben hold vote and submit standing in fed-north, whose mandate allows {} credits \
         until {} ({} left); proposals stay open {}. In another terminal:\n",
        icn_cli::governance::thousands(mandate.mandate.budget.0),
        when(mandate.expires_ms),
        icn_cli::governance::thousands(mandate.left.0),
        age(window),
    );
    println!(
        "export ICN_COORDINATOR={} ICN_COORDINATOR_KEY={} ICN_KEY={} ICN_SCOPE=fed-north",
        commons.coordinator.addr(),
        commons.coordinator.public_key(),
        member.display()
    );
    println!(
        "icn context add dev --coordinator {} --coordinator-key {} --key {} --scope fed-north --use   # or save them \
         once, for every \
         terminal",
        commons.coordinator.addr(),
        commons.coordinator.public_key(),
        member.display()
    );
    println!("icn submit examples/wat/hello.wat --wait   # from the repository's root");
    println!("icn jobs");
    println!("icn workers");
    println!("icn decisions");
    println!(
        "icn propose --scope fed-north --title \"More budget\" --vote yes mandate --for fed-north --budget 100000"
    );
    println!(
        "ICN_KEY={} icn vote <PROPOSAL> yes   # ben's ballot; decided when the window closes",
        dir.join(format!("{}.key", commons.members[1].name)).display()
    );
    println!("icn ledger positions");
    if let Some(http) = commons.coordinator.http_addr() {
        println!("icn ui --api http://{http} --key {}   # your page, in a browser", member.display());
    }

    println!();
    println!("Ctrl-C stops it; `icn dev --dir {}` starts it again where it stopped.", dir.display());
    use std::io::Write;
    std::io::stdout().flush()?;
    let signal = stop.await;
    eprintln!("development commons stopping ({signal})");
    commons.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// The federation's mandate in force, renewed first when it has expired or ends within a
/// week: members ana and ben, whose keys the development directory holds, decide a new
/// one like the last for as long as a mandate may run, in the open, one voting window.
async fn renew_dev_mandate(
    commons: &icn_cli::local::LocalCommons,
    client: &Client,
) -> anyhow::Result<icn_protocol::views::MandateView> {
    const WEEK_MS: u64 = 7 * icn_cli::local::DAY_MS;
    let federation = icn_cli::local::federation();
    let scope = client.scope(federation.clone()).await?;
    let now = icn_cli::web::now_ms();
    if let Some(mandate) = scope.mandate.as_ref().filter(|m| m.expires_ms > now.saturating_add(WEEK_MS)) {
        return Ok(mandate.clone());
    }
    let last = match &scope.mandate {
        Some(m) => m.mandate.clone(),
        None => icn_cli::local::day_mandate(icn_protocol::governance::Credits(1_000_000_000)),
    };
    let why = match &scope.mandate {
        Some(m) if m.expires_ms <= now => format!("expired {}", icn_protocol::views::when(m.expires_ms)),
        Some(m) => format!("ends {}", icn_protocol::views::when(m.expires_ms)),
        None => "has none".to_string(),
    };
    println!(
        "fed-north's mandate {why}: ana proposes a new one and ana and ben vote for it (one voting window, {})",
        icn_cli::governance::age(scope.rule.voting_window_ms)
    );
    let renewed = icn_protocol::governance::Mandate {
        period_ms: icn_protocol::governance::MANDATE_PERIOD_MS_MAX,
        ..last
    };
    let decision = commons
        .decide(
            federation.clone(),
            "Renew the development mandate",
            icn_protocol::governance::Effect::Mandate(renewed),
        )
        .await?;
    println!("decided at entry #{}", decision.seq);
    client.scope(federation).await?.mandate.ok_or_else(|| {
        anyhow::anyhow!("the renewed mandate is not in force after decision #{}", decision.seq)
    })
}
