//! Lexical normalisation of path-like tool arguments.
//!
//! This module owns the one question "which absolute path does this argument
//! name, once `.`, `..` and repeated slashes are resolved?", and the
//! directories that contain it. It reads no file system: symbolic links are
//! the upstream server's business (see `docs/limitations.md`).

use std::fmt;

/// Why a path-like argument has no normalised form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The value is relative (`srv/data/x`, `./x`): Warden does not know the
    /// server's working directory, so it cannot say where it points.
    Relative,
    /// The value starts with `~`, which only a shell expands.
    HomeRelative,
    /// The value holds a NUL byte, which no file name can contain.
    Nul,
    /// A `file:` URL whose percent-encoding is invalid or names another host.
    BadFileUrl,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Relative => "relative path",
            PathError::HomeRelative => "path relative to a home directory",
            PathError::Nul => "path contains a NUL byte",
            PathError::BadFileUrl => "invalid file URL",
        })
    }
}

/// Resolves `raw` to an absolute, lexically normal path: one leading slash,
/// no `.` or `..` components, no empty components and no trailing slash
/// (except for `/` itself). `..` at the root stays at the root, as the kernel
/// does.
///
/// A plain path is taken literally: `%2e%2e` is a file name, not `..`. A
/// `file://` URL is percent-decoded first, because that is what a server does
/// with a URL.
// LIMITATION: lexical only; a symbolic link inside an allowed directory that
// points outside it is not seen (the upstream must resolve links itself).
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let decoded;
    let path = match raw.strip_prefix("file://") {
        Some(rest) => {
            let rest = rest.strip_prefix("localhost").unwrap_or(rest);
            if !rest.starts_with('/') {
                return Err(PathError::BadFileUrl);
            }
            decoded = percent_decode(rest).ok_or(PathError::BadFileUrl)?;
            decoded.as_str()
        }
        None => raw,
    };
    if path.contains('\0') {
        return Err(PathError::Nul);
    }
    if path.starts_with('~') {
        return Err(PathError::HomeRelative);
    }
    if !path.starts_with('/') {
        return Err(PathError::Relative);
    }

    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}

/// The directories that contain `normalized` (which must come from
/// [`normalize`]), from `/` down to the path itself.
pub fn ancestors(normalized: &str) -> Vec<String> {
    let mut out = vec!["/".to_owned()];
    let mut current = String::new();
    for component in normalized.split('/').filter(|c| !c.is_empty()) {
        current.push('/');
        current.push_str(component);
        out.push(current.clone());
    }
    out
}

/// Whether a value given under `key` is treated as a path.
///
/// A key whose last name is a usual path parameter counts, whatever its
/// value; so does any string that looks like an absolute path or file URL,
/// whatever its key. Erring towards "path" only makes confinement rules
/// stricter.
pub fn is_path_like(key: &str, value: &str) -> bool {
    const PATH_KEYS: &[&str] = &[
        "path",
        "paths",
        "file",
        "files",
        "filename",
        "file_path",
        "filepath",
        "source",
        "destination",
        "src",
        "dest",
        "dir",
        "directory",
        "root",
        "cwd",
        "repo_path",
        "folder",
        "target",
    ];
    let name = last_name(key).to_ascii_lowercase();
    PATH_KEYS.contains(&name.as_str())
        || value.starts_with('/')
        || value.starts_with('~')
        || value.starts_with("file://")
}

/// The last object key in a JSON path such as `edits[2].path` or `paths[0]`.
fn last_name(key: &str) -> &str {
    let tail = key.rsplit('.').next().unwrap_or(key);
    match tail.find('[') {
        Some(index) => tail.get(..index).unwrap_or(tail),
        None => tail,
    }
}

fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("/srv/data", "/srv/data")]
    #[case("/srv/data/", "/srv/data")]
    #[case("//srv//data///x", "/srv/data/x")]
    #[case("/srv/data/./x", "/srv/data/x")]
    #[case("/srv/data/../data_evil/x", "/srv/data_evil/x")]
    #[case("/srv/data/./../../etc/passwd", "/etc/passwd")]
    #[case("/../../..", "/")]
    #[case("/srv/data/%2e%2e/x", "/srv/data/%2e%2e/x")]
    #[case("file:///srv/data/%2e%2e/x", "/srv/x")]
    #[case("file://localhost/srv/a%20b", "/srv/a b")]
    fn normalizes_lexically(#[case] raw: &str, #[case] expected: &str) {
        assert_eq!(normalize(raw).as_deref(), Ok(expected));
    }

    #[rstest]
    #[case("srv/data/x", PathError::Relative)]
    #[case("./x", PathError::Relative)]
    #[case("", PathError::Relative)]
    #[case("~/secrets", PathError::HomeRelative)]
    #[case("/srv/data/x\0.txt", PathError::Nul)]
    #[case("file:///srv/%00x", PathError::Nul)]
    #[case("file://evil.example/srv", PathError::BadFileUrl)]
    #[case("file:///srv/%zz", PathError::BadFileUrl)]
    fn refuses_paths_without_a_normal_form(#[case] raw: &str, #[case] err: PathError) {
        assert_eq!(normalize(raw), Err(err));
    }

    #[test]
    fn ancestors_name_whole_components_only() {
        assert_eq!(
            ancestors("/srv/data_evil/x"),
            ["/", "/srv", "/srv/data_evil", "/srv/data_evil/x"]
        );
        assert_eq!(ancestors("/"), ["/"]);
    }

    #[rstest]
    #[case("path", "x", true)]
    #[case("edits[0].path", "x", true)]
    #[case("paths[3]", "x", true)]
    #[case("Destination", "x", true)]
    #[case("message", "/etc/passwd", true)]
    #[case("message", "hello", false)]
    fn recognises_path_like_arguments(#[case] key: &str, #[case] value: &str, #[case] yes: bool) {
        assert_eq!(is_path_like(key, value), yes);
    }
}
