//! `icn`: run a coordinator or a worker, submit and follow jobs, check the journal,
//! and see it all work with `icn demo`.

use std::process::ExitCode;

use anyhow::Context;
use icn_cli::args::{CONNECT_HINT, Cli, Command, JournalCommand, LedgerCommand, ScopeCommand};
use icn_protocol::Keypair;

mod cmd;

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our output goes
    // away (`icn journal show | head`) instead of failing on a broken pipe.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; SIG_DFL is a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match <Cli as clap::Parser>::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let missing = error.kind() == clap::error::ErrorKind::MissingRequiredArgument;
            let _ = error.print();
            if missing && ["--coordinator", "--key"].iter().any(|flag| error.to_string().contains(flag)) {
                eprintln!("\n{CONNECT_HINT}");
            }
            return ExitCode::from(error.exit_code() as u8);
        }
    };
    // A worker says when it is admitted and when it reconnects (a second worker with its
    // key shows as the two taking turns); everything else speaks up from warnings.
    let quiet =
        if matches!(cli.command, Command::Worker { .. }) { "warn,icn_worker::agent=info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ICN_LOG").unwrap_or_else(|_| quiet.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cli.log_format == "json" {
        logs.json().init();
    } else {
        // Colour codes only for a person at a terminal, not for a file or a journal.
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init();
    }
    if let Some(context) = &cli.context {
        // SAFETY: set before the runtime or any other thread exists; commands read it to
        // pick the context (`Connect::resolve`), whether it came as --context or ICN_CONTEXT.
        unsafe { std::env::set_var("ICN_CONTEXT", context) };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    use cmd::{governance, jobs, journal, serve};
    match command {
        Command::Keygen { out } => {
            let key = Keypair::generate();
            icn_transport::keyfile::write_new(&key, &out)?;
            println!("{}", key.public());
        }
        Command::Pubkey { key } => println!("{}", icn_transport::keyfile::read(&key)?.public()),
        Command::Coordinator { config, accept_journal_end } => {
            serve::run_coordinator(&config, accept_journal_end).await?
        }
        Command::Worker { connect, slots, memory_mib, metrics_listen, containers, drain_timeout } => {
            let drain = std::time::Duration::from_millis(drain_timeout);
            return serve::worker(connect, slots, memory_mib, metrics_listen, containers, drain).await;
        }
        Command::Submit(args) => return jobs::submit(args).await,
        Command::Status { connect, job, wait, json } => return jobs::status(connect, &job, wait, json).await,
        Command::Result { connect, job, out } => return jobs::result(connect, &job, out).await,
        Command::Logs { connect, job, follow: true } => {
            let client = connect.client().await?;
            let job = client.resolve_job(&job).await?;
            return jobs::follow_logs(&client, job).await;
        }
        Command::Logs { connect, job, follow: false } => return jobs::logs(connect, &job).await,
        Command::Cancel { connect, job, json } => return jobs::cancel(connect, &job, json).await,
        Command::Jobs { connect, filter, json } => return jobs::jobs(connect, filter, json).await,
        Command::Queue { connect, json } => return governance::queue(connect, json).await,
        Command::Propose { connect, scope, title, vote, effect } => {
            return governance::propose(connect, scope, title, vote, effect).await;
        }
        Command::Vote { connect, proposal, choice, reason } => {
            return governance::vote(connect, &proposal, choice, reason).await;
        }
        Command::Decisions { connect, json } => return governance::decisions(connect, json).await,
        Command::Members { connect, json } => return governance::members(connect, json).await,
        Command::Scope { command: ScopeCommand::List { connect, json } } => {
            return governance::scopes(connect, json).await;
        }
        Command::Scope { command: ScopeCommand::Show { connect, scope, json } } => {
            return governance::scope(connect, scope, json).await;
        }
        Command::Trace { connect, job, decision, json } => {
            return governance::trace(connect, job, decision, json).await;
        }
        Command::Workers { connect, json } => return governance::workers(connect, json).await,
        Command::Ledger { command: LedgerCommand::Positions { connect, json } } => {
            return governance::positions(connect, json).await;
        }
        Command::Ledger { command: LedgerCommand::Statement { connect, scope, json } } => {
            return governance::statement(connect, scope, json).await;
        }
        Command::Ledger { command: LedgerCommand::Clear { connect, federation, json } } => {
            return governance::clear(connect, federation, json).await;
        }
        Command::Journal { command: JournalCommand::Verify { journal: path, coordinator_key, expect } } => {
            return journal::verify_journal(&path, coordinator_key, expect);
        }
        Command::Journal { command: JournalCommand::Seal { coordinator_key } } => {
            return journal::seal(coordinator_key);
        }
        Command::Journal { command: JournalCommand::Truncate { journal: path, .. } } => {
            return journal::truncate(&path);
        }
        Command::Journal { command: JournalCommand::Show { journal: path, job } } => {
            return journal::show(&path, job);
        }
        Command::Dev { dir, listen, http_listen, voting_window, metrics_listen } => {
            let listen = serve::DevListen { quic: listen, http: http_listen, metrics: metrics_listen };
            return serve::dev(&dir, listen, voting_window).await;
        }
        Command::Ui { api, key, listen, grafana, coordinator_key } => {
            return serve::ui(api, key, listen, grafana, coordinator_key).await;
        }
        Command::Context { command } => return cmd::context::context(command),
        Command::Version { connect, json } => return cmd::context::version(connect, json).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "icn", &mut std::io::stdout());
        }
        Command::Man { out } => {
            std::fs::create_dir_all(&out).with_context(|| format!("cannot make {}", out.display()))?;
            clap_mangen::generate_to(<Cli as clap::CommandFactory>::command(), &out)
                .with_context(|| format!("cannot write the man pages into {}", out.display()))?;
            eprintln!("wrote the man pages into {}: `man -l {}/icn.1`", out.display(), out.display());
        }
        Command::Chaos {
            seeds,
            first,
            seed,
            adversary,
            share,
            faults,
            active_ms,
            no_policy_decisions,
            workers,
            threads,
            json,
        } => {
            let config = icn_chaos::Config {
                workers: workers as usize,
                adversary,
                adversarial_share: if adversary.is_some() { share } else { 0.0 },
                faults: faults == "on",
                active_ms,
                policy_decisions: !no_policy_decisions,
                ..icn_chaos::Config::default()
            };
            let threads =
                threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
            let seeds = seed.map_or(first..first.saturating_add(seeds), |seed| seed..seed + 1);
            let verbose = seed.is_some();
            tokio::task::spawn_blocking(move || cmd::chaos::chaos(&config, seeds, threads, verbose, json))
                .await??;
        }
        Command::Demo { keep } => icn_cli::demo::run(keep.as_deref()).await?,
        Command::Bench { placement: true, pool, jobs, .. } => {
            let placements = jobs.unwrap_or(2_000).max(100) * 50;
            tokio::task::spawn_blocking(move || icn_cli::bench::placement(pool, placements)).await??.print();
        }
        Command::Bench { container: true, jobs, busybox, .. } => {
            icn_cli::bench::container::run(jobs.unwrap_or(30), &busybox).await?.print();
        }
        Command::Bench { http: true, jobs, rounds, in_flight, .. } => {
            let options = icn_cli::bench::http::HttpBenchOptions {
                jobs: jobs.unwrap_or(1_000),
                rounds: rounds.max(1),
                in_flight,
            };
            icn_cli::bench::http::run(options).await?.print();
        }
        Command::Bench { simulate: true, tasks, seed, .. } => {
            let config = icn_placement::sim::SimConfig { tasks, seed, ..Default::default() };
            tokio::task::spawn_blocking(move || icn_cli::bench::simulate(&config)).await?;
        }
        Command::Bench { ledger: true, postings, batch, .. } => {
            tokio::task::spawn_blocking(move || icn_cli::bench::ledger(postings, batch)).await??.print();
        }
        Command::Bench { memory: true, jobs, large_jobs, workers, slots, in_flight, .. } => {
            let options = icn_cli::bench::memory::MemoryBenchOptions {
                jobs: jobs.unwrap_or(100_000),
                first: 1_000,
                large_jobs,
                workers,
                slots,
                in_flight,
            };
            icn_cli::bench::memory::run(options).await?.print();
        }
        Command::Bench { jobs, workers, slots, in_flight, .. } => {
            let jobs = jobs.unwrap_or(2_000);
            let report =
                icn_cli::bench::run(icn_cli::bench::BenchOptions { jobs, workers, slots, in_flight }).await?;
            report.print();
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    /// `--help` explains every command, argument and flag: none is left to guessing.
    #[test]
    fn every_command_argument_and_flag_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if command.get_about().is_none() && !path.is_empty() {
                missing.push(format!("command `{path}`"));
            }
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() {
                    missing.push(format!("`{path}` argument {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()).trim(), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&<super::Cli as clap::CommandFactory>::command(), "", &mut missing);
        assert!(missing.is_empty(), "without help: {missing:#?}");
    }

    /// Every command that asks the coordinator for something and prints it takes `--json`;
    /// the few that do not print data say what they print instead.
    #[test]
    fn every_command_that_prints_data_has_json() {
        // Commands whose stdout is not a view to put in JSON, and what it is.
        const NOT_DATA: [(&str, &str); 7] = [
            ("submit", "the job's id, or with --wait the job's output bytes"),
            ("result", "the job's output bytes"),
            ("logs", "the job's stderr bytes"),
            ("propose", "the proposal's id"),
            ("vote", "nothing: what it did goes to stderr"),
            ("worker", "nothing: it runs until stopped, its logs on stderr"),
            ("context add", "nothing: it saves the settings it is given, and says so on stderr"),
        ];
        fn walk(command: &clap::Command, path: &str, without: &mut Vec<String>, seen: &mut Vec<String>) {
            let asks = command.get_arguments().any(|a| a.get_id() == "coordinator");
            if asks {
                seen.push(path.to_string());
                let json = command.get_arguments().any(|a| a.get_long() == Some("json"));
                if !json && !NOT_DATA.iter().any(|(name, _)| *name == path) {
                    without.push(path.to_string());
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, format!("{path} {}", sub.get_name()).trim(), without, seen);
            }
        }
        let (mut without, mut seen) = (Vec::new(), Vec::new());
        walk(&<super::Cli as clap::CommandFactory>::command(), "", &mut without, &mut seen);
        assert!(without.is_empty(), "print data without --json: {without:?}");
        for (name, _) in NOT_DATA {
            assert!(
                seen.iter().any(|s| s == name),
                "{name} is not a command that asks the coordinator: {seen:?}"
            );
        }
        assert!(seen.len() >= 15, "the walk found the commands: {seen:?}");
    }

    /// Completions and man pages come from the command definition itself: every command
    /// and subcommand is in them.
    #[test]
    fn completions_and_man_pages_name_every_command() {
        use clap::CommandFactory;
        /// Each command below `command`: its man page's name and its own name.
        fn commands(command: &clap::Command, page: &str, out: &mut Vec<(String, String)>) {
            for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
                let name = format!("{page}-{}", sub.get_name());
                out.push((name.clone(), sub.get_name().to_string()));
                commands(sub, &name, out);
            }
        }
        let mut all = Vec::new();
        commands(&super::Cli::command(), "icn", &mut all);
        assert!(all.len() >= 30, "{all:?}");

        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut super::Cli::command(), "icn", &mut script);
            let script = String::from_utf8(script).unwrap();
            for (page, name) in &all {
                // Bash's script steps into a command at a `case` arm ending `,NAME)`.
                let mark =
                    if shell == clap_complete::Shell::Bash { format!(",{name})") } else { name.clone() };
                assert!(script.contains(&mark), "the {shell} completion lacks {page}");
            }
        }

        let dir = tempfile::tempdir().unwrap();
        clap_mangen::generate_to(super::Cli::command(), dir.path()).unwrap();
        for command in std::iter::once("icn".to_string()).chain(all.into_iter().map(|(page, _)| page)) {
            let page = dir.path().join(format!("{command}.1"));
            let text =
                std::fs::read_to_string(&page).unwrap_or_else(|_| panic!("no man page {}", page.display()));
            assert!(text.contains(".TH"), "{} is not a man page", page.display());
        }
    }
}
