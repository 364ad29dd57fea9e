//! The `icn` command's commands, one function each, grouped by what they touch; `main`
//! parses the command line ([`icn_cli::args`]) and calls one.

pub mod chaos;
pub mod context;
pub mod governance;
pub mod jobs;
pub mod journal;
pub mod serve;

/// Prints `value` on stdout: as pretty JSON with `json`, else in the words `human` makes.
pub fn show<T: serde::Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        print!("{}", human(value));
    }
    Ok(())
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM (what `kill`, systemd and Docker send) from
/// now on, and waits for either: it stops a coordinator, worker or page cleanly. Made
/// before a process says it is up, so a signal sent the moment it does is not lost to the
/// default action. Which one came, in words.
pub fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "interrupted",
            _ = terminate.recv() => "terminated",
        }
    })
}
