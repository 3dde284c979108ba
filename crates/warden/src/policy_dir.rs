//! Reading a policy directory into the sources the policy core loads.
//!
//! The policy crate does no I/O; this module is where files are read. A
//! directory holds `*.cedar` files (in any subdirectory) and optionally an
//! `entities.json` at its top.

use std::fs;
use std::path::{Path, PathBuf};

use warden_policy::{LoadError, Policies, PolicySources, Problem, SourceFile};

/// Largest policy or entities file read.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Deepest directory nesting walked.
const MAX_DEPTH: usize = 16;
/// Most `.cedar` files read.
const MAX_FILES: usize = 10_000;

/// Reads and validates the policy directory `dir`. Every problem is
/// reported, unreadable files and invalid policies alike, each with its
/// file's path as `dir` spells it (so it can be opened from where the
/// command ran).
pub fn load_dir(dir: &Path) -> Result<Policies, LoadError> {
    let (sources, mut problems) = read_dir(dir)?;
    let loaded = if sources.policies.is_empty() {
        None
    } else {
        Some(warden_policy::load(&sources))
    };
    match loaded {
        Some(Ok(policies)) if problems.is_empty() => return Ok(policies),
        Some(Err(error)) => problems.extend(error.problems.into_iter().map(|mut problem| {
            // Source names are relative to the directory: they name policies
            // (`file:line`) and enter the policy-set version, so they must not
            // depend on how the directory was named.
            problem.file = dir.join(&problem.file).display().to_string();
            problem
        })),
        _ => {}
    }
    Err(LoadError { problems })
}

/// The policy set a command starts with: every problem printed to stderr
/// and the command refused (exit 3) when the set is invalid.
pub fn load_for_start(dir: &Path) -> Result<Policies, crate::cli::Failure> {
    load_dir(dir).map_err(|e| {
        for problem in &e.problems {
            eprintln!("{problem}");
        }
        crate::cli::Failure::invalid(anyhow::anyhow!(
            "the policy set in `{}` is invalid ({}); not starting",
            dir.display(),
            crate::cli::count(e.problems.len(), "problem")
        ))
    })
}

/// Reads every source file of `dir`: the sources that could be read, and a
/// problem for each file that could not. `Err` when there is nothing to
/// read at all.
pub fn read_dir(dir: &Path) -> Result<(PolicySources, Vec<Problem>), LoadError> {
    let mut problems = Vec::new();
    let mut files = Vec::new();
    if !dir.exists() {
        return Err(single(dir, &format!("`{}` does not exist", dir.display())));
    }
    if !dir.is_dir() {
        return Err(single(
            dir,
            &format!("`{}` is not a directory", dir.display()),
        ));
    }
    walk(dir, 0, &mut files, &mut problems);
    files.sort();

    let mut sources = PolicySources::default();
    for path in files {
        let name = relative(dir, &path);
        match read(&path) {
            Ok(text) => sources.policies.push(SourceFile { name, text }),
            Err(message) => problems.push(problem(path.display().to_string(), message)),
        }
    }
    let entities = dir.join("entities.json");
    if entities.exists() {
        match read(&entities) {
            Ok(text) => {
                sources.entities = Some(SourceFile {
                    name: "entities.json".to_owned(),
                    text,
                })
            }
            Err(message) => problems.push(problem(entities.display().to_string(), message)),
        }
    }
    if sources.policies.is_empty() && problems.is_empty() {
        return Err(single(
            dir,
            &format!(
                "no `.cedar` files in `{}`: with no policy every request is denied",
                dir.display()
            ),
        ));
    }
    Ok((sources, problems))
}

fn walk(dir: &Path, depth: usize, files: &mut Vec<PathBuf>, problems: &mut Vec<Problem>) {
    if depth > MAX_DEPTH {
        problems.push(problem(
            dir.display().to_string(),
            "directory nesting is too deep".to_owned(),
        ));
        return;
    }
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(problem(
                dir.display().to_string(),
                format!("cannot read directory: {e}"),
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // Symbolic links to directories are not followed: a link loop would
        // make the walk endless.
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if hidden {
            continue;
        }
        if kind.is_dir() {
            walk(&path, depth + 1, files, problems);
        } else if path.extension().is_some_and(|e| e == "cedar") && !path.is_dir() {
            if files.len() >= MAX_FILES {
                problems.push(problem(
                    dir.display().to_string(),
                    format!("more than {MAX_FILES} `.cedar` files"),
                ));
                return;
            }
            files.push(path);
        }
    }
}

/// Reads a regular file of at most [`MAX_FILE_BYTES`]. Anything else (a
/// FIFO that would block forever, a device that never ends) is refused,
/// and the size is enforced while reading, not trusted from metadata.
fn read(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let metadata = fs::metadata(path).map_err(|e| format!("cannot read file: {e}"))?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    let file = fs::File::open(path).map_err(|e| format!("cannot read file: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read file: {e}"))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "file is larger than {} MiB",
            MAX_FILE_BYTES / 1024 / 1024
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "file is not valid UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

fn problem(file: String, message: String) -> Problem {
    Problem {
        file,
        line: 1,
        column: 1,
        message,
        help: None,
    }
}

fn single(dir: &Path, message: &str) -> LoadError {
    LoadError {
        problems: vec![problem(dir.display().to_string(), message.to_owned())],
    }
}
