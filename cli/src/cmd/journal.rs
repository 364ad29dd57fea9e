//! The journal read from its file, with no coordinator: verify, show, the kept seal,
//! and the operator's truncation of an unsealed tail.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use icn_coordinator::journal;
use icn_protocol::{ContentId, PublicKey, SealPoint};

/// `icn journal seal`: the seal of a coordinator this machine keeps.
pub fn seal(coordinator_key: PublicKey) -> anyhow::Result<ExitCode> {
    let file =
        icn_cli::client::seal_file(&coordinator_key).context("no state folder: set ICN_STATE_DIR or HOME")?;
    match icn_cli::client::read_seal(&file)? {
        Some(seal) => println!("{}", seal.point()),
        None => {
            bail!("no seal of coordinator {} is kept here yet ({})", coordinator_key.short(), file.display())
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `icn journal truncate`.
pub fn truncate(path: &Path) -> anyhow::Result<ExitCode> {
    let removed = journal::truncate_unsealed_tail(path)?;
    println!("removed {removed} unsealed entries from the end of journal {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// `icn journal show`: each entry in words, or those of the jobs an id starts.
pub fn show(path: &Path, job: Option<String>) -> anyhow::Result<ExitCode> {
    if let Some(job) = &job {
        icn_protocol::prefix_bounds(job).map_err(|e| anyhow::anyhow!(e))?;
    }
    let job = job.map(|j| j.trim().to_ascii_lowercase());
    for entry in journal::read(path)? {
        let record = entry.decode_record()?;
        // Read from the file, not a coordinator: a start of the id matches every
        // job it starts (the full id, one job).
        let of_job =
            |prefix: &String| record.job().is_some_and(|j| j.to_string().starts_with(prefix.as_str()));
        if job.as_ref().is_some_and(|prefix| !of_job(prefix)) {
            continue;
        }
        let cause = entry.cause.map_or("-".to_string(), |c| format!("#{c}"));
        println!(
            "#{:<6} cause {:<7} signer {}  {}",
            entry.seq,
            cause,
            entry.signer.short(),
            record.describe()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `icn journal verify`: exit status 0 when everything holds, 2 naming the first bad entry,
/// module or unmet expectation.
pub fn verify_journal(
    path: &Path,
    coordinator: Option<PublicKey>,
    expect: Option<SealPoint>,
) -> anyhow::Result<ExitCode> {
    let verification = journal::verify(path, coordinator)?;
    let mut bad = false;
    if let Some(icn_core::BadEntry { seq, reason }) = &verification.first_bad {
        println!("journal {}: entry {seq} is bad: {reason}", path.display());
        println!("{} entries before it verified", verification.entries);
        bad = true;
    }
    if let Some((cid, reason)) = &verification.bad_module {
        println!("journal {}: module {cid} is bad: {reason}", path.display());
        bad = true;
    }
    if let Some(point) = expect {
        match journal::read(path)?.get(point.seq as usize) {
            Some(entry) if ContentId(entry.hash) == point.hash && point.seq < verification.entries => {}
            Some(entry) => {
                println!(
                    "journal {}: entry {} has hash {}, not the {} you kept: this is not the history you saw",
                    path.display(),
                    point.seq,
                    ContentId(entry.hash),
                    point.hash
                );
                bad = true;
            }
            None => {
                println!(
                    "journal {}: it holds no entry {}, which you kept a seal of: its end was cut",
                    path.display(),
                    point.seq
                );
                bad = true;
            }
        }
    }
    if bad {
        return Ok(ExitCode::from(2));
    }
    println!(
        "journal {} verified: {} entries, {} seals by coordinator {}; every link, seal, signature and module holds",
        path.display(),
        verification.entries,
        verification.seals,
        verification.coordinator
    );
    if let Some(point) = expect {
        println!("it holds entry {} with the hash you kept", point.seq);
    }
    if let Some(seal) = verification.last_seal {
        println!("latest seal: {}", seal.point());
    }
    Ok(ExitCode::SUCCESS)
}
