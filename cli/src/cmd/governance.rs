//! Governance and the ledger: propose, vote, read decisions, members, scopes, traces,
//! workers, positions and statements, and clear.

use std::process::ExitCode;

use anyhow::{Context, bail};
use icn_cli::args::{Connect, EffectArgs};
use icn_protocol::ContentId;
use icn_protocol::governance::{Choice, Proposal, ScopeId};
use icn_protocol::views::{PAGE_ITEMS_MAX, Page};
use icn_protocol::wire::{IdKind, TraceQuery};

use super::show;

/// `icn propose`: the proposal's id; with --vote, the proposer's ballot cast with it.
pub async fn propose(
    connect: Connect,
    scope: ScopeId,
    title: String,
    vote: Option<Choice>,
    effect: EffectArgs,
) -> anyhow::Result<ExitCode> {
    let client = connect.client().await?;
    let proposal = Proposal { scope, title, effect: effect.effect(&client).await? };
    proposal.validate()?;
    let (id, closes_ms) = client.propose(&proposal).await?;
    let seconds = closes_ms.saturating_sub(icn_coordinator::server::now_ms()) as f64 / 1000.0;
    eprintln!("proposal {} open; voting closes in {seconds:.1} s", id.short());
    println!("{id}");
    if let Some(choice) = vote {
        client.vote(id, choice).await.with_context(|| {
            format!(
                "proposal {} is open, but your ballot was not cast: `icn vote {} {choice}`",
                id.short(),
                id.short()
            )
        })?;
        eprintln!("voted {choice} on proposal {}", id.short());
    }
    Ok(ExitCode::SUCCESS)
}

/// `icn vote`.
pub async fn vote(
    connect: Connect,
    proposal: &str,
    choice: Choice,
    reason: Option<String>,
) -> anyhow::Result<ExitCode> {
    let client = connect.client().await?;
    let proposal: ContentId = client.resolve(IdKind::Proposal, proposal).await?.parse()?;
    client.vote_because(proposal, choice, reason).await?;
    eprintln!("voted {choice} on proposal {}", proposal.short());
    Ok(ExitCode::SUCCESS)
}

/// `icn decisions`: open proposals with their tally, and decisions made.
pub async fn decisions(connect: Connect, json: bool) -> anyhow::Result<ExitCode> {
    let client = connect.client().await?;
    let listed = icn_cli::governance::Decisions {
        open: client.proposals().await?,
        decided: client.decisions().await?,
    };
    show(json, &listed, |l| icn_cli::governance::decisions(&l.decided, &l.open))?;
    Ok(ExitCode::SUCCESS)
}

/// `icn members`.
pub async fn members(connect: Connect, json: bool) -> anyhow::Result<ExitCode> {
    show(json, &connect.client().await?.members().await?, |m| icn_cli::governance::members(m))?;
    Ok(ExitCode::SUCCESS)
}

/// `icn scope list`.
pub async fn scopes(connect: Connect, json: bool) -> anyhow::Result<ExitCode> {
    show(json, &connect.client().await?.scopes().await?, |s| icn_cli::governance::scopes(s))?;
    Ok(ExitCode::SUCCESS)
}

/// `icn scope show`.
pub async fn scope(connect: Connect, scope: ScopeId, json: bool) -> anyhow::Result<ExitCode> {
    let view = connect.client().await?.scope(scope).await?;
    show(json, &view, |v| icn_cli::governance::scope(v, icn_coordinator::server::now_ms()))?;
    Ok(ExitCode::SUCCESS)
}

/// `icn trace`: a job's provenance, or a decision's and the jobs it authorized.
pub async fn trace(
    connect: Connect,
    job: Option<String>,
    decision: Option<u64>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let client = connect.client().await?;
    let query = match (job, decision) {
        (_, Some(decision)) => TraceQuery::Decision(decision, Page::first(PAGE_ITEMS_MAX)),
        (Some(job), None) => TraceQuery::Job(client.resolve_job(&job).await?),
        (None, None) => bail!("name a job, or a decision with --decision"),
    };
    show(json, &client.trace(query).await?, ToString::to_string)?;
    Ok(ExitCode::SUCCESS)
}

/// `icn queue`.
pub async fn queue(connect: Connect, json: bool) -> anyhow::Result<ExitCode> {
    show(json, &connect.client().await?.queue().await?, icn_cli::governance::queue)?;
    Ok(ExitCode::SUCCESS)
}

/// `icn workers`.
pub async fn workers(connect: Connect, json: bool) -> anyhow::Result<ExitCode> {
    show(json, &connect.client().await?.workers().await?, |w| icn_cli::governance::workers(w))?;
    Ok(ExitCode::SUCCESS)
}

/// `icn ledger positions`.
pub async fn positions(connect: Connect, json: bool) -> anyhow::Result<ExitCode> {
    show(json, &connect.client().await?.positions().await?, icn_cli::governance::positions)?;
    Ok(ExitCode::SUCCESS)
}

/// `icn ledger statement`.
pub async fn statement(connect: Connect, scope: ScopeId, json: bool) -> anyhow::Result<ExitCode> {
    show(json, &connect.client().await?.statement(scope).await?, ToString::to_string)?;
    Ok(ExitCode::SUCCESS)
}

/// `icn ledger clear`.
pub async fn clear(connect: Connect, federation: ScopeId, json: bool) -> anyhow::Result<ExitCode> {
    let clearing = connect.client().await?.clear(federation.clone()).await?;
    show(json, &clearing, |clearing| {
        let mut out = format!(
            "cleared {federation}: {} obligations became {}; every net position is unchanged\n",
            clearing.before.len(),
            clearing.after.len()
        );
        for o in &clearing.after {
            out.push_str(&format!("  {} owes {} {}\n", o.debtor, o.creditor, o.amount));
        }
        out
    })?;
    Ok(ExitCode::SUCCESS)
}
