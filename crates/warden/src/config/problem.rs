//! Configuration problems: what is wrong, at which key path
//! (`servers.fs.url`), and where in the file when the file shows it.
//!
//! Messages never carry a secret: they name keys, variables and files, and
//! repeat a value only where it cannot be one (an address, an algorithm).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Item, Table, TableLike, Value};

/// The most problems kept from one file; a hostile file could otherwise
/// produce one per byte.
const MAX_PROBLEMS: usize = 200;

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where a value sits in the file: `auth.jwt.algorithms[1]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Step>);

impl KeyPath {
    /// The whole file.
    pub fn root() -> KeyPath {
        KeyPath::default()
    }

    /// The value under `key` of this table.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut steps = self.0.clone();
        steps.push(Step::Key(key.to_owned()));
        KeyPath(steps)
    }

    /// The item at `index` of this array.
    pub fn index(&self, index: usize) -> KeyPath {
        let mut steps = self.0.clone();
        steps.push(Step::Index(index));
        KeyPath(steps)
    }

    fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, step) in self.0.iter().enumerate() {
            match step {
                Step::Index(i) => write!(f, "[{i}]")?,
                Step::Key(key) => {
                    if n > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The key path (`servers.fs.url`); empty for the file as a whole.
    pub path: String,
    /// What is wrong, lowercase, without the path.
    pub message: String,
    /// Line and column (from 1) in the file, when known.
    pub location: Option<(usize, usize)>,
    key_path: KeyPath,
}

impl Problem {
    /// The problem as one line: `FILE:LINE:COLUMN: path: message`.
    pub fn line(&self, file: &Path) -> String {
        let place = self
            .location
            .map_or_else(String::new, |(l, c)| format!(":{l}:{c}"));
        if self.path.is_empty() {
            format!("{}{place}: {}", file.display(), self.message)
        } else {
            format!("{}{place}: {}: {}", file.display(), self.path, self.message)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Problems being collected over one pass.
#[derive(Debug, Default)]
pub struct Problems {
    found: Vec<Problem>,
    dropped: usize,
}

impl Problems {
    /// Notes that the value at `path` is wrong.
    pub fn add(&mut self, path: &KeyPath, message: impl Into<String>) {
        if self.found.len() >= MAX_PROBLEMS {
            self.dropped += 1;
            return;
        }
        self.found.push(Problem {
            path: path.to_string(),
            message: message.into(),
            location: None,
            key_path: path.clone(),
        });
    }

    /// How many have been noted.
    pub fn len(&self) -> usize {
        self.found.len() + self.dropped
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The problems of `file`, placed in `text` when it parses.
    pub fn into_error(self, file: &Path, text: Option<&str>) -> ConfigProblems {
        let document = text.and_then(|t| ImDocument::parse(t).ok());
        let mut problems = self.found;
        if let (Some(document), Some(text)) = (&document, text) {
            for problem in &mut problems {
                if problem.location.is_none() && !problem.key_path.is_root() {
                    problem.location =
                        locate(document, &problem.key_path).map(|span| line_col(text, span.start));
                }
            }
        }
        // In the order of the file, as a reader goes through it; problems
        // of the file as a whole (no place) come last.
        problems.sort_by_key(|p| p.location.unwrap_or((usize::MAX, usize::MAX)));
        if self.dropped > 0 {
            problems.push(Problem {
                path: String::new(),
                message: format!("{} more problems not shown", self.dropped),
                location: None,
                key_path: KeyPath::root(),
            });
        }
        ConfigProblems {
            file: file.to_path_buf(),
            problems,
        }
    }
}

/// Everything wrong with a configuration file, found in one pass.
#[derive(Debug)]
pub struct ConfigProblems {
    file: PathBuf,
    problems: Vec<Problem>,
}

impl ConfigProblems {
    /// A problem that stops the check at once (an unreadable file, a TOML
    /// syntax error).
    pub fn fatal(file: &Path, location: Option<(usize, usize)>, message: String) -> Self {
        ConfigProblems {
            file: file.to_path_buf(),
            problems: vec![Problem {
                path: String::new(),
                message,
                location,
                key_path: KeyPath::root(),
            }],
        }
    }

    /// The problems, in the order found.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Each problem as `FILE:LINE:COLUMN: path: message`.
    pub fn lines(&self) -> impl Iterator<Item = String> + '_ {
        self.problems.iter().map(|p| p.line(&self.file))
    }
}

impl fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid configuration: ")?;
        f.write_str(&self.lines().collect::<Vec<_>>().join("; "))
    }
}

impl std::error::Error for ConfigProblems {}

/// Line and column (from 1) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A node of the parsed document on the way down a key path.
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    fn table(&self) -> Option<&'a dyn TableLike> {
        match *self {
            Node::Item(item) => item.as_table_like(),
            Node::Value(value) => value.as_inline_table().map(|t| t as &dyn TableLike),
            Node::Table(table) => Some(table),
        }
    }

    fn at(&self, index: usize) -> Option<(Node<'a>, Option<Range<usize>>)> {
        match *self {
            Node::Item(item) => {
                if let Some(array) = item.as_array() {
                    array.get(index).map(|v| (Node::Value(v), v.span()))
                } else {
                    let tables = item.as_array_of_tables()?;
                    tables.get(index).map(|t| (Node::Table(t), t.span()))
                }
            }
            Node::Value(value) => {
                let value = value.as_array()?.get(index)?;
                Some((Node::Value(value), value.span()))
            }
            Node::Table(_) => None,
        }
    }
}

/// Where the key at the end of `path` is written; when it is not (a
/// required key left out), where its nearest written parent is.
fn locate(document: &ImDocument<&str>, path: &KeyPath) -> Option<Range<usize>> {
    let mut node = Node::Item(document.as_item());
    let mut span = None;
    for step in &path.0 {
        let next = match step {
            Step::Key(key) => node.table().and_then(|table| {
                let (key, item) = table.get_key_value(key)?;
                Some((Node::Item(item), key.span().or_else(|| item.span())))
            }),
            Step::Index(index) => node.at(*index),
        };
        let Some((next, here)) = next else { break };
        node = next;
        span = here.or(span);
    }
    span
}
