//! The configuration file (`warden.toml`) and the defaults it falls back to.
//!
//! The file shape (`Raw*`) is parsed strictly — an unknown key is an error —
//! and turned into the settings the commands use. Secrets are never written
//! in the file itself: `${VAR}` in a server's `env` is read from Warden's
//! environment when the server starts, and errors name the variable, never
//! a value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};
use serde::Deserialize;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The policy directory, relative to the file.
    pub policies: Option<PathBuf>,
    /// The SQLite store, relative to the file.
    pub store: Option<PathBuf>,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub servers: BTreeMap<String, RawServer>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    pub agent: Option<String>,
    pub acting_for: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub call_timeout_secs: Option<u64>,
    pub max_message_bytes: Option<usize>,
    pub max_argument_bytes: Option<usize>,
    pub max_argument_depth: Option<usize>,
    pub max_argument_values: Option<usize>,
}

impl RawLimits {
    /// Every limit must lie in its range: a zero or astronomically large
    /// limit is a mistake, not a setting.
    fn check(&self) -> anyhow::Result<()> {
        let ranges: [(&str, Option<u64>, u64, u64); 5] = [
            ("call_timeout_secs", self.call_timeout_secs, 1, 86_400),
            (
                "max_message_bytes",
                self.max_message_bytes.map(as_u64),
                1024,
                1 << 30,
            ),
            (
                "max_argument_bytes",
                self.max_argument_bytes.map(as_u64),
                1,
                1 << 30,
            ),
            (
                "max_argument_depth",
                self.max_argument_depth.map(as_u64),
                1,
                128,
            ),
            (
                "max_argument_values",
                self.max_argument_values.map(as_u64),
                1,
                1_000_000,
            ),
        ];
        for (key, value, low, high) in ranges {
            if let Some(value) = value.filter(|v| !(low..=high).contains(v)) {
                bail!("limits.{key} is {value}; it must be between {low} and {high}");
            }
        }
        Ok(())
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// A loaded configuration file, with paths resolved against its folder.
#[derive(Debug)]
pub struct Config {
    pub raw: RawConfig,
    pub base: PathBuf,
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration `{}`", path.display()))?;
        let raw: RawConfig = toml::from_str(&text).map_err(|e| {
            let message = e.message().trim().to_owned();
            let place = e
                .span()
                .map(|span| line_col(&text, span.start))
                .map_or_else(String::new, |(l, c)| format!(":{l}:{c}"));
            anyhow!(
                "invalid configuration `{}{place}`: {message}",
                path.display()
            )
        })?;
        raw.limits
            .check()
            .map_err(|e| anyhow!("invalid configuration `{}`: {e}", path.display()))?;
        for name in raw.servers.keys() {
            check_server_name(name).with_context(|| {
                format!("invalid configuration `{}`: servers.{name}", path.display())
            })?;
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Config { raw, base })
    }

    /// A path from the file, made absolute against the file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        }
    }
}

/// Server names become part of tool ids (`server/tool`) and log fields.
pub fn check_server_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !ok {
        bail!("server name `{name}` must be 1 to 64 ASCII letters, digits, `_` or `-`");
    }
    Ok(())
}

/// Expands `${VAR}` references in a server's environment from Warden's own
/// environment. A missing variable is an error naming the key and the
/// variable, never any value.
pub fn expand_env(key: &str, value: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 2..).unwrap_or_default();
        let end = after
            .find('}')
            .ok_or_else(|| anyhow!("env `{key}`: unterminated `${{` reference"))?;
        let var = after.get(..end).unwrap_or_default();
        let resolved = std::env::var(var)
            .map_err(|_| anyhow!("env `{key}`: the variable `{var}` it refers to is not set"))?;
        out.push_str(&resolved);
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out.push_str(rest);
    Ok(out)
}

/// The store to use: the given path, or `decisions.db` in the user's data
/// directory (created if needed).
pub fn store_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    let dirs = directories::ProjectDirs::from("", "", "warden").ok_or_else(|| {
        anyhow!("cannot find a data directory for the decision log; pass --store")
    })?;
    let dir = dirs.data_dir();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data directory `{}`", dir.display()))?;
    Ok(dir.join("decisions.db"))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, text)?;
        Config::load(&path)
    }

    #[test]
    fn rejects_unknown_keys_with_their_place() {
        let err = parse("policies = \"p\"\n[identity]\nagnet = \"x\"\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains(":3:1"), "{text}");
        assert!(text.contains("agnet"), "{text}");
    }

    #[test]
    fn rejects_limits_out_of_range_naming_the_key() {
        for (text, key) in [
            (
                "[limits]\ncall_timeout_secs = 9223372036854775807\n",
                "limits.call_timeout_secs",
            ),
            (
                "[limits]\nmax_argument_bytes = 0\n",
                "limits.max_argument_bytes",
            ),
            (
                "[limits]\nmax_message_bytes = 10\n",
                "limits.max_message_bytes",
            ),
        ] {
            let err = format!("{:#}", parse(text).unwrap_err());
            assert!(
                err.contains(key) && err.contains("must be between"),
                "{err}"
            );
        }
        assert!(parse("[limits]\ncall_timeout_secs = 30\n").is_ok());
    }

    #[test]
    fn rejects_server_names_that_would_break_tool_ids() {
        let err = parse("[servers.\"a/b\"]\ncommand = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("server name `a/b`"));
    }

    #[test]
    fn env_references_name_the_missing_variable_not_a_value() {
        let err = expand_env("TOKEN", "Bearer ${WARDEN_TEST_SURELY_UNSET_VAR}").unwrap_err();
        assert_eq!(
            err.to_string(),
            "env `TOKEN`: the variable `WARDEN_TEST_SURELY_UNSET_VAR` it refers to is not set"
        );
        assert_eq!(expand_env("K", "plain").unwrap(), "plain");
        assert!(expand_env("K", "${OPEN").is_err());
    }
}
