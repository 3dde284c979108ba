//! Reading `warden.toml`: the size and encoding of the file, TOML syntax
//! (which stops the check at once), then the shape of every value.
//!
//! The shape check reports every unknown key and every value of the wrong
//! type, each at its own path, and drops it, so that the rest of the file
//! can still be checked in the same pass. It asks the `Raw*` types
//! themselves: a value is wrong when the smallest file holding just that
//! value does not deserialize (every field being optional, the smallest file
//! around a good value always does).

use std::io::Read as _;
use std::path::Path;

use toml::{Table, Value};

use super::problem::{line_col, ConfigProblems, KeyPath, Problems};
use super::raw::RawConfig;

/// The largest configuration file read. A real one is a few kilobytes; a
/// file this big is a mistake (or an attack on whatever parses it).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The text of the file at `path`.
pub fn read(path: &Path) -> Result<String, ConfigProblems> {
    let fatal = |message: String| ConfigProblems::fatal(path, None, message);
    let file = std::fs::File::open(path)
        .map_err(|e| fatal(format!("cannot read the configuration: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fatal(format!("cannot read the configuration: {e}")))?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
        return Err(fatal(format!(
            "the configuration is larger than {MAX_FILE_BYTES} bytes; a file this big is not a configuration"
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col_of_bytes(e.as_bytes(), e.utf8_error().valid_up_to());
        ConfigProblems::fatal(
            path,
            Some((line, column)),
            "the configuration is not UTF-8 text".to_owned(),
        )
    })
}

/// Parses `text`: a syntax error stops at once; every problem of shape is
/// noted and its value left out of the result.
pub fn parse(path: &Path, text: &str) -> Result<(RawConfig, Problems), ConfigProblems> {
    let table: Table = toml::from_str(text).map_err(|e| {
        let location = e.span().map(|span| line_col(text, span.start));
        ConfigProblems::fatal(
            path,
            location,
            format!("invalid TOML: {}", e.message().trim()),
        )
    })?;
    let mut problems = Problems::default();
    let root = Value::Table(table);
    let cleaned = clean(&root, &|v| v, &KeyPath::root(), &mut problems)
        .unwrap_or_else(|| Value::Table(Table::new()));
    let raw = match cleaned.try_into::<RawConfig>() {
        Ok(raw) => raw,
        Err(e) => {
            problems.add(&KeyPath::root(), describe(e.message(), "table"));
            RawConfig::default()
        }
    };
    Ok((raw, problems))
}

/// `value` (at `path`) without the parts that do not fit; `None` when it
/// does not fit itself. `wrap` puts a value back in its place in an
/// otherwise empty file.
fn clean(
    value: &Value,
    wrap: &dyn Fn(Value) -> Value,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<Value> {
    let Err(error) = fits(wrap(value.clone())) else {
        return Some(value.clone());
    };
    match value {
        Value::Table(entries) if fits(wrap(Value::Table(Table::new()))).is_ok() => {
            let mut kept = Table::new();
            for (key, entry) in entries {
                let inner = |v: Value| {
                    let mut table = Table::new();
                    table.insert(key.clone(), v);
                    wrap(Value::Table(table))
                };
                if let Some(entry) = clean(entry, &inner, &path.key(key), problems) {
                    kept.insert(key.clone(), entry);
                }
            }
            Some(Value::Table(kept))
        }
        Value::Array(items) if fits(wrap(Value::Array(Vec::new()))).is_ok() => {
            let mut kept = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let inner = |v: Value| wrap(Value::Array(vec![v]));
                if let Some(item) = clean(item, &inner, &path.index(index), problems) {
                    kept.push(item);
                }
            }
            Some(Value::Array(kept))
        }
        _ => {
            problems.add(path, describe(error.message(), value.type_str()));
            None
        }
    }
}

fn fits(file: Value) -> Result<(), toml::de::Error> {
    file.try_into::<RawConfig>().map(drop)
}

/// A deserializer's complaint in the file's terms, without the value (which
/// might be a secret written in the wrong place).
fn describe(message: &str, found: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return match rest.split_once(", ") {
            Some((_, "there are no fields")) | None => "unknown key".to_owned(),
            Some((_, hint)) => format!("unknown key; {hint}"),
        };
    }
    let expected = |rest: &str| {
        rest.split_once(", expected ")
            .map_or("another value", |(_, e)| e)
            .to_owned()
    };
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        return format!("must be {}, not {}", plain(&expected(rest)), a(found));
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        return format!("must be {}", plain(&expected(rest)));
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return format!("must be {}", expected(rest));
    }
    message.to_owned()
}

/// A Rust type as the file's author knows it.
fn plain(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number of 0 or more".to_owned(),
        "a boolean" => "`true` or `false`".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        "path string" => "a string".to_owned(),
        other if other.starts_with("struct ") => "a table".to_owned(),
        other => other.to_owned(),
    }
}

/// A TOML type name with its article.
fn a(type_name: &str) -> String {
    match type_name {
        "integer" | "array" => format!("an {type_name}"),
        "datetime" => "a date-time".to_owned(),
        other => format!("a {other}"),
    }
}

fn line_col_of_bytes(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = bytes.get(..offset).unwrap_or(bytes);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(before.get(start..).unwrap_or_default())
        .chars()
        .count()
        + 1;
    (line, column)
}
