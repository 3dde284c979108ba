//! The configuration file (`warden.toml`) and the defaults it falls back to.
//!
//! The file shape (`raw.rs`) is parsed strictly — an unknown key is an error
//! — and every problem in the file is reported in one pass, each with its
//! key path and `file:line:column` (`parse.rs`, `problem.rs`). `serve.rs`
//! turns the file into the settings the commands run with. Secrets are
//! never written in the file itself: `${VAR}` and `file:PATH` references
//! (`secret.rs`) are resolved when a command needs them, and errors name the
//! variable or file, never a value.

pub mod parse;
pub mod problem;
pub mod raw;
pub mod secret;
pub mod serve;

#[cfg(test)]
mod checks;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _};

pub use problem::ConfigProblems;
pub use raw::RawConfig;

use problem::{KeyPath, Problems};
use secret::Resolver;

/// A loaded configuration file, checked on its own, with paths resolved
/// against its folder.
#[derive(Debug)]
pub struct Config {
    /// The file as written.
    pub raw: RawConfig,
    /// The file's folder.
    pub base: PathBuf,
}

impl Config {
    /// Reads `path` and checks everything the file says on its own.
    pub fn load(path: &Path) -> Result<Config, ConfigProblems> {
        let (raw, text, mut problems) = read_raw(path)?;
        let base = base_of(path);
        serve::build(&raw, &base, serve::Mode::Static, &mut problems);
        if !problems.is_empty() {
            return Err(problems.into_error(path, Some(&text)));
        }
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

    /// The value of server `server`'s `env` entry `key`, its references
    /// resolved.
    pub fn secret(&self, server: &str, key: &str, value: &str) -> anyhow::Result<String> {
        let resolver = Resolver {
            base: &self.base,
            resolve: true,
        };
        let mut problems = Problems::default();
        let path = KeyPath::root()
            .key("servers")
            .key(server)
            .key("env")
            .key(key);
        resolver.value(value, &path, &mut problems).ok_or_else(|| {
            let error = problems.into_error(Path::new(""), None);
            let found: Vec<String> = error.problems().iter().map(ToString::to_string).collect();
            anyhow!("{}", found.join("; "))
        })
    }
}

/// Everything `warden serve` runs with, from the file at `path`: every
/// secret resolved and every named file found, or every problem at once.
pub fn load_for_serve(
    path: &Path,
) -> Result<(warden_gateway::config::GatewayConfig, serve::ServeSettings), ConfigProblems> {
    let (raw, text, mut problems) = read_raw(path)?;
    let built = serve::build(&raw, &base_of(path), serve::Mode::Serve, &mut problems);
    match built {
        Some(built) if problems.is_empty() => Ok(built),
        _ => Err(problems.into_error(path, Some(&text))),
    }
}

fn read_raw(path: &Path) -> Result<(RawConfig, String, Problems), ConfigProblems> {
    let text = parse::read(path)?;
    let (raw, problems) = parse::parse(path, &text)?;
    Ok((raw, text, problems))
}

/// The folder of the configuration file `path`, absolute: a bare
/// `warden.toml` is in the current folder.
fn base_of(path: &Path) -> PathBuf {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::path::absolute(&parent).unwrap_or(parent)
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

/// The program a server's `command` names: a relative path with a `/` in it
/// is relative to the configuration's folder `base`; a bare name is looked
/// up on `PATH` when the server starts.
pub fn resolve_program(base: &Path, command: &str) -> PathBuf {
    if command.contains('/') && Path::new(command).is_relative() {
        base.join(command)
    } else {
        PathBuf::from(command)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigProblems> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warden.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    #[test]
    fn rejects_unknown_keys_with_their_place() {
        let err = parse("policies = \"p\"\n[identity]\nagnet = \"x\"\n").unwrap_err();
        let text = err.to_string();
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
            let err = parse(text).unwrap_err().to_string();
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
        assert!(err.to_string().contains("server name `a/b`"), "{err}");
    }

    #[test]
    fn env_references_name_the_missing_variable_not_a_value() {
        let config = parse("[servers.s]\ncommand = \"x\"\n").unwrap();
        let err = config
            .secret("s", "TOKEN", "Bearer ${WARDEN_TEST_SURELY_UNSET_VAR}")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("servers.s.env.TOKEN"), "{text}");
        assert!(
            text.contains("the variable `WARDEN_TEST_SURELY_UNSET_VAR` it refers to is not set"),
            "{text}"
        );
        assert_eq!(config.secret("s", "K", "plain").unwrap(), "plain");
        assert!(config.secret("s", "K", "${OPEN").is_err());
    }
}
