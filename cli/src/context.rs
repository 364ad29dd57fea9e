//! Contexts: named connection settings — a coordinator's address and key, and the member's
//! key file — kept in the client's config file, so a member who belongs to more than one
//! commons (or runs `icn dev` beside a real one) picks one with `icn context use NAME`
//! instead of three exports in every terminal.
//!
//! Where a setting comes from, first found wins: the flag, its environment variable
//! (`ICN_COORDINATOR`, `ICN_COORDINATOR_KEY`, `ICN_KEY`), the context named by `--context`
//! (or `ICN_CONTEXT`), the current context.
//!
//! The file is `$ICN_CLIENT_CONFIG`, else `$XDG_CONFIG_HOME/icn/client.toml`, else
//! `~/.config/icn/client.toml`. It holds addresses, public keys and paths, no secret.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use icn_protocol::PublicKey;
use icn_protocol::governance::ScopeId;
use serde::{Deserialize, Serialize};

/// Contexts kept at most, so the file a command reads stays small.
pub const CONTEXTS_MAX: usize = 64;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The context commands use when none is named.
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// HOST:PORT, as `--coordinator` takes it.
    pub coordinator: String,
    pub coordinator_key: PublicKey,
    /// The member's key file, absolute.
    pub key: PathBuf,
    /// The scope `icn submit` submits for when neither --scope nor ICN_SCOPE names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeId>,
}

/// Where the client's config file is.
pub fn config_path() -> Option<PathBuf> {
    std::env::var_os("ICN_CLIENT_CONFIG")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CONFIG_HOME").map(|d| PathBuf::from(d).join("icn/client.toml")))
        .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".config/icn/client.toml")))
}

/// A context name: what `icn context use` takes, and what names it in the file.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !fine {
        bail!(
            "{name:?} is not a context name; use 1 to 64 letters, digits, '-', '_' or '.', such as north or dev"
        );
    }
    Ok(())
}

impl ClientConfig {
    /// The file at `path`; none yet is an empty config.
    pub fn load(path: &Path) -> anyhow::Result<ClientConfig> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ClientConfig::default()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read the client config {}", path.display()));
            }
        };
        let config: ClientConfig = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "the client config {} is not valid: {}; fix it, or remove it and add your contexts again \
                 (`icn context add`)",
                path.display(),
                e.to_string().trim()
            )
        })?;
        if let Some(current) = &config.current
            && !config.contexts.contains_key(current)
        {
            bail!(
                "the client config {} makes {current:?} current, but has no such context; `icn context use` \
                 one of: {}",
                path.display(),
                config.names()
            );
        }
        Ok(config)
    }

    /// Writes the file whole (a new file renamed over the old), making its folder.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
        }
        let partial = path.with_extension("toml.partial");
        std::fs::write(&partial, toml::to_string(self)?)
            .with_context(|| format!("cannot write {}", partial.display()))?;
        std::fs::rename(&partial, path).with_context(|| format!("cannot write {}", path.display()))
    }

    /// The context `named`, else the current one; `None` when there is neither.
    pub fn pick(&self, named: Option<&str>) -> anyhow::Result<Option<(&str, &Context)>> {
        let Some(name) = named.or(self.current.as_deref()) else { return Ok(None) };
        match self.contexts.get_key_value(name) {
            Some((name, context)) => Ok(Some((name.as_str(), context))),
            None => bail!("there is no context {name:?}; the contexts are: {}", self.names()),
        }
    }

    /// Adds or replaces `name`.
    pub fn add(&mut self, name: &str, context: Context) -> anyhow::Result<()> {
        check_name(name)?;
        if !self.contexts.contains_key(name) && self.contexts.len() >= CONTEXTS_MAX {
            bail!("{CONTEXTS_MAX} contexts are kept at most; `icn context remove` one first");
        }
        self.contexts.insert(name.to_string(), context);
        Ok(())
    }

    pub fn names(&self) -> String {
        if self.contexts.is_empty() {
            return "none yet (`icn context add NAME --coordinator … --coordinator-key … --key …`)".into();
        }
        self.contexts.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The three connection settings, each from where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub coordinator: SocketAddr,
    pub coordinator_key: PublicKey,
    pub key: PathBuf,
    /// The context's default scope, when a context was used and names one.
    pub scope: Option<ScopeId>,
}

/// What a command was given, and what the config file holds: the settings it connects
/// with, or why it cannot, saying how to give them.
pub fn resolve(
    coordinator: Option<SocketAddr>,
    coordinator_key: Option<PublicKey>,
    key: Option<PathBuf>,
    named: Option<&str>,
) -> anyhow::Result<Resolved> {
    let context = if coordinator.is_some() && coordinator_key.is_some() && key.is_some() && named.is_none() {
        None
    } else {
        let path = config_path();
        let config = match &path {
            Some(path) => ClientConfig::load(path)?,
            None => ClientConfig::default(),
        };
        config.pick(named)?.map(|(name, context)| (name.to_string(), context.clone()))
    };
    let missing = |what: &str| {
        anyhow::anyhow!("no {what} given, and no context holds one. {}", crate::args::CONNECT_HINT)
    };
    let from_context = |field: &str, value: &str, name: &str| {
        anyhow::anyhow!("context {name}'s {field} {value:?} is not valid; `icn context add {name} …` again")
    };
    let coordinator = match (coordinator, &context) {
        (Some(addr), _) => addr,
        (None, Some((name, context))) => crate::args::coordinator_address(&context.coordinator)
            .map_err(|_| from_context("coordinator", &context.coordinator, name))?,
        (None, None) => return Err(missing("coordinator address (--coordinator, ICN_COORDINATOR)")),
    };
    let coordinator_key = match (coordinator_key, &context) {
        (Some(key), _) => key,
        (None, Some((_, context))) => context.coordinator_key,
        (None, None) => return Err(missing("coordinator key (--coordinator-key, ICN_COORDINATOR_KEY)")),
    };
    let key = match (key, &context) {
        (Some(key), _) => key,
        (None, Some((_, context))) => context.key.clone(),
        (None, None) => return Err(missing("key file (--key, ICN_KEY)")),
    };
    let scope = context.and_then(|(_, context)| context.scope);
    Ok(Resolved { coordinator, coordinator_key, key, scope })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(port: u16) -> Context {
        Context {
            coordinator: format!("127.0.0.1:{port}"),
            coordinator_key: icn_protocol::Keypair::generate().public(),
            key: PathBuf::from("/keys/ana.key"),
            scope: None,
        }
    }

    #[test]
    fn a_config_round_trips_and_names_what_is_wrong_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deeper/client.toml");
        assert_eq!(ClientConfig::load(&path).unwrap(), ClientConfig::default(), "no file: no contexts");
        let mut config = ClientConfig::default();
        config.add("north", context(7600)).unwrap();
        config.add("dev", context(7601)).unwrap();
        config.current = Some("north".into());
        config.save(&path).unwrap();
        assert_eq!(ClientConfig::load(&path).unwrap(), config);
        assert_eq!(config.pick(None).unwrap().unwrap().0, "north");
        assert_eq!(config.pick(Some("dev")).unwrap().unwrap().1.coordinator, "127.0.0.1:7601");
        let unknown = config.pick(Some("south")).unwrap_err().to_string();
        assert!(unknown.contains("no context \"south\"") && unknown.contains("dev, north"), "{unknown}");

        let bad = config.add("no spaces", context(1)).unwrap_err().to_string();
        assert!(bad.contains("not a context name"), "{bad}");
        std::fs::write(&path, "current = \"gone\"\n").unwrap();
        let dangling = ClientConfig::load(&path).unwrap_err().to_string();
        assert!(dangling.contains("no such context"), "{dangling}");
        std::fs::write(&path, "curent = \"north\"\n").unwrap();
        let typo = ClientConfig::load(&path).unwrap_err().to_string();
        assert!(typo.contains("curent") && typo.contains(&path.display().to_string()), "{typo}");
    }

    #[test]
    fn flags_and_variables_win_over_the_context_and_what_is_missing_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        // SAFETY: this test alone sets this variable, and reads it on this thread.
        unsafe { std::env::set_var("ICN_CLIENT_CONFIG", &path) };
        let missing = resolve(None, None, None, None).unwrap_err().to_string();
        assert!(missing.contains("no coordinator address") && missing.contains("icn context"), "{missing}");

        let mut config = ClientConfig::default();
        let north = context(7600);
        config.add("north", north.clone()).unwrap();
        config.current = Some("north".into());
        config.save(&path).unwrap();
        let from_context = resolve(None, None, None, None).unwrap();
        assert_eq!(from_context.coordinator, "127.0.0.1:7600".parse().unwrap());
        assert_eq!((from_context.coordinator_key, from_context.key), (north.coordinator_key, north.key));
        let flag: SocketAddr = "127.0.0.1:9999".parse().unwrap();
        let mixed = resolve(Some(flag), None, Some("/mine.key".into()), None).unwrap();
        assert_eq!((mixed.coordinator, mixed.key), (flag, PathBuf::from("/mine.key")));
        assert_eq!(mixed.coordinator_key, north.coordinator_key);
        unsafe { std::env::remove_var("ICN_CLIENT_CONFIG") };
    }
}
