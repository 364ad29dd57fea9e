//! `icn context` and `icn version`: where commands connect, and what runs there.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use icn_cli::args::{Connect, ContextCommand};
use icn_cli::context::{ClientConfig, Context, config_path};
use serde::Serialize;

use super::show;

/// `icn context add|use|list|remove`.
pub fn context(command: ContextCommand) -> anyhow::Result<ExitCode> {
    let path = config_path().context("no place for the client config: set ICN_CLIENT_CONFIG, or HOME")?;
    let mut config = ClientConfig::load(&path)?;
    match command {
        ContextCommand::Add { name, coordinator, coordinator_key, key, scope, make_current } => {
            icn_cli::args::coordinator_address(&coordinator).map_err(anyhow::Error::msg)?;
            // The key file is read now, so a wrong path or loose permissions are named here
            // and not at the first command that needs it.
            icn_transport::keyfile::read(&key)?;
            let key = std::path::absolute(&key)
                .with_context(|| format!("cannot make {} absolute", key.display()))?;
            config.add(&name, Context { coordinator, coordinator_key, key, scope })?;
            if make_current || config.current.is_none() {
                config.current = Some(name.clone());
            }
            config.save(&path)?;
            let current = config.current.as_deref() == Some(name.as_str());
            eprintln!(
                "context {name} saved in {}{}",
                path.display(),
                if current { "; it is the current context" } else { "" }
            );
            if !current {
                eprintln!("`icn context use {name}` makes it the current one");
            }
        }
        ContextCommand::Use { name } => {
            config.pick(Some(&name))?;
            config.current = Some(name.clone());
            config.save(&path)?;
            eprintln!("commands now use context {name}");
        }
        ContextCommand::List { json } => {
            show(json, &config, |config| {
                let mut out = String::new();
                for (name, context) in &config.contexts {
                    let mark = if config.current.as_ref() == Some(name) { "*" } else { " " };
                    let scope = context.scope.as_ref().map_or(String::new(), |s| format!("  scope {s}"));
                    out.push_str(&format!(
                        "{mark} {name:<16} {:<22} coordinator {}  key {}{scope}\n",
                        context.coordinator,
                        context.coordinator_key.short(),
                        context.key.display()
                    ));
                }
                if config.contexts.is_empty() {
                    out.push_str(&format!("no contexts yet in {}: {}\n", path.display(), config.names()));
                }
                out
            })?;
        }
        ContextCommand::Remove { name } => {
            config.pick(Some(&name))?;
            config.contexts.remove(&name);
            if config.current.as_deref() == Some(name.as_str()) {
                config.current = None;
            }
            config.save(&path)?;
            eprintln!("context {name} removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct Versions {
    icn: icn_protocol::wire::VersionView,
    /// The coordinator's, when one was named and answered.
    coordinator: Option<icn_protocol::wire::VersionView>,
}

/// `icn version`: this program's, and the coordinator's when there is one to ask.
pub async fn version(connect: Connect, json: bool) -> anyhow::Result<ExitCode> {
    let icn = icn_protocol::wire::VersionView::of(env!("CARGO_PKG_VERSION"));
    let asked = connect.resolve().is_ok();
    let coordinator = if asked { Some(connect.client().await?.version().await?) } else { None };
    if let Some(theirs) = &coordinator
        && theirs.protocol != icn.protocol
    {
        bail!(
            "this icn speaks protocol {} and the coordinator {} ({}): use an icn of the coordinator's release",
            icn.protocol,
            theirs.protocol,
            theirs.software
        );
    }
    let versions = Versions { icn, coordinator };
    show(json, &versions, |v| {
        let mut out = format!("icn {} (protocol {})\n", v.icn.software, v.icn.protocol);
        match &v.coordinator {
            Some(c) => out.push_str(&format!("coordinator {} (protocol {})\n", c.software, c.protocol)),
            None => out.push_str(
                "no coordinator named (flags, ICN_COORDINATOR…, or a context) to ask its version\n",
            ),
        }
        out
    })?;
    Ok(ExitCode::SUCCESS)
}
