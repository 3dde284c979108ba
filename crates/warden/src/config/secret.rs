//! Secret references in configuration values, and the refusal of secrets
//! written inline where a reference belongs.
//!
//! `${VAR}` (anywhere in a value) is read from Warden's environment;
//! `file:PATH` (the whole value) is a file relative to the configuration's
//! folder, its content trimmed. Problems name the variable or the file,
//! never what they hold.

use std::io::Read as _;
use std::path::Path;

use super::problem::{KeyPath, Problems};

/// The largest secret file read.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// A value that may hold references.
#[derive(Debug)]
pub enum Secret<'a> {
    /// `file:PATH`.
    File(&'a str),
    /// Text with `${VAR}` references in it.
    Template(Vec<Part<'a>>),
}

#[derive(Debug)]
pub enum Part<'a> {
    Text(&'a str),
    Var(&'a str),
}

impl<'a> Secret<'a> {
    /// Splits `value` into text and references.
    pub fn parse(value: &'a str) -> Result<Secret<'a>, &'static str> {
        if let Some(file) = value.strip_prefix("file:") {
            if file.trim().is_empty() {
                return Err("`file:` names no file");
            }
            return Ok(Secret::File(file.trim()));
        }
        let mut parts = Vec::new();
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            if let Some(text) = rest.get(..start).filter(|t| !t.is_empty()) {
                parts.push(Part::Text(text));
            }
            let after = rest.get(start + 2..).unwrap_or_default();
            let end = after
                .find('}')
                .ok_or("a `${` reference is not closed with `}`")?;
            let name = after.get(..end).unwrap_or_default();
            if !is_var_name(name) {
                return Err("a `${…}` reference must name a variable: ASCII letters, digits and `_`, not starting with a digit");
            }
            parts.push(Part::Var(name));
            rest = after.get(end + 1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest));
        }
        Ok(Secret::Template(parts))
    }

    /// Whether the value is one reference and nothing else.
    pub fn is_pure_reference(&self) -> bool {
        match self {
            Secret::File(_) => true,
            Secret::Template(parts) => matches!(parts.as_slice(), [Part::Var(_)]),
        }
    }

    /// Whether text outside the references looks like a credential: any
    /// word left once authentication scheme names are set aside.
    pub fn has_inline_credential(&self) -> bool {
        let Secret::Template(parts) = self else {
            return false;
        };
        parts
            .iter()
            .filter_map(|part| match part {
                Part::Text(text) => Some(*text),
                Part::Var(_) => None,
            })
            .flat_map(str::split_whitespace)
            .any(|word| !SCHEMES.iter().any(|s| word.eq_ignore_ascii_case(s)))
    }
}

/// Authorization scheme names, which are not secrets themselves.
const SCHEMES: &[&str] = &["Bearer", "Basic", "Token", "Digest", "Negotiate", "Bot"];

/// Whether a header of this name carries credentials.
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["authorization", "cookie"].contains(&name.as_str())
        || ["token", "key", "secret", "password", "credential"]
            .iter()
            .any(|word| name.contains(word))
}

fn is_var_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Turns references into values, or (when not resolving) only checks that
/// they are well formed.
pub struct Resolver<'a> {
    /// The configuration's folder, for `file:` paths.
    pub base: &'a Path,
    /// Read the environment and the files; otherwise references resolve to
    /// the empty string.
    pub resolve: bool,
}

impl Resolver<'_> {
    /// `value` (at `path`) with its references replaced; `None`, and a
    /// problem, when one cannot be.
    pub fn value(&self, value: &str, path: &KeyPath, problems: &mut Problems) -> Option<String> {
        match Secret::parse(value) {
            Ok(secret) => self.secret(&secret, path, problems),
            Err(message) => {
                problems.add(path, message);
                None
            }
        }
    }

    /// `secret` resolved; `None`, and a problem, when it cannot be.
    pub fn secret(
        &self,
        secret: &Secret<'_>,
        path: &KeyPath,
        problems: &mut Problems,
    ) -> Option<String> {
        let mut out = String::new();
        match secret {
            Secret::File(file) => out.push_str(&self.file(file, path, problems)?),
            Secret::Template(parts) => {
                let mut ok = true;
                for part in parts {
                    match part {
                        Part::Text(text) => out.push_str(text),
                        Part::Var(name) => match self.var(name) {
                            Ok(value) => out.push_str(&value),
                            Err(message) => {
                                problems.add(path, message);
                                ok = false;
                            }
                        },
                    }
                }
                if !ok {
                    return None;
                }
            }
        }
        Some(out)
    }

    fn var(&self, name: &str) -> Result<String, String> {
        if !self.resolve {
            return Ok(String::new());
        }
        match std::env::var(name) {
            Ok(value) => Ok(value),
            Err(std::env::VarError::NotPresent) => {
                Err(format!("the variable `{name}` it refers to is not set"))
            }
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "the variable `{name}` it refers to is not valid UTF-8"
            )),
        }
    }

    fn file(&self, file: &str, path: &KeyPath, problems: &mut Problems) -> Option<String> {
        if !self.resolve {
            return Some(String::new());
        }
        let full = self.base.join(file);
        let mut text = String::new();
        let read = std::fs::File::open(&full)
            .and_then(|f| f.take(MAX_SECRET_BYTES + 1).read_to_string(&mut text));
        let problem = match read {
            Err(e) => format!("cannot read the secret file `{file}`: {e}"),
            Ok(n) if u64::try_from(n).unwrap_or(u64::MAX) > MAX_SECRET_BYTES => {
                format!("the secret file `{file}` is larger than {MAX_SECRET_BYTES} bytes")
            }
            Ok(_) if text.trim().is_empty() => format!("the secret file `{file}` is empty"),
            Ok(_) => return Some(text.trim().to_owned()),
        };
        problems.add(path, problem);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_into_text_and_variables() {
        let Ok(Secret::Template(parts)) = Secret::parse("Bearer ${TOKEN}") else {
            panic!("not a template");
        };
        assert!(matches!(
            parts.as_slice(),
            [Part::Text("Bearer "), Part::Var("TOKEN")]
        ));
        assert!(matches!(
            Secret::parse("file: a/b "),
            Ok(Secret::File("a/b"))
        ));
        assert!(Secret::parse("${OPEN").is_err());
        assert!(Secret::parse("${1X}").is_err());
        assert!(Secret::parse("file:").is_err());
    }

    #[test]
    fn inline_credentials_are_words_outside_references() {
        let inline = |v: &str| Secret::parse(v).unwrap().has_inline_credential();
        assert!(!inline("Bearer ${TOKEN}"));
        assert!(!inline("file:token"));
        assert!(inline("Bearer abc123"));
        assert!(inline("abc123"));
        assert!(is_sensitive_header("X-Api-Key"));
        assert!(is_sensitive_header("authorization"));
        assert!(!is_sensitive_header("Accept-Language"));
    }
}
