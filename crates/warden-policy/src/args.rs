//! Tool arguments as typed, bounded values for policy.
//!
//! This module owns turning the JSON arguments of a call into the typed
//! buckets the schema's `Arguments` entity offers, and refusing arguments
//! that are too large, too deep or not representable before any policy sees
//! them. Building Cedar entities from the result is the engine's job.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::path;

/// Bounds checked on a call's arguments before evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest serialised size of the arguments, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of objects and arrays (the arguments object is depth 1).
    pub max_depth: usize,
    /// Most values (strings, numbers, booleans, nulls) in the arguments.
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 1024 * 1024,
            max_depth: 32,
            max_values: 10_000,
        }
    }
}

/// Why a call's arguments were refused before evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgumentsError {
    /// The arguments are not a JSON object.
    NotAnObject,
    /// The serialised arguments are larger than the limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The arguments nest deeper than the limit.
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The arguments hold more values than the limit.
    TooMany {
        /// The limit.
        limit: usize,
    },
    /// A number that policy could only see rounded: too large for a 64-bit
    /// integer, or with more than four decimal places.
    UnrepresentableNumber {
        /// Where the number is, as a JSON path.
        key: String,
    },
}

impl fmt::Display for ArgumentsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgumentsError::NotAnObject => write!(f, "arguments are not a JSON object"),
            ArgumentsError::TooLarge { limit } => {
                write!(f, "arguments are larger than {limit} bytes")
            }
            ArgumentsError::TooDeep { limit } => {
                write!(f, "arguments nest deeper than {limit} levels")
            }
            ArgumentsError::TooMany { limit } => {
                write!(f, "arguments hold more than {limit} values")
            }
            ArgumentsError::UnrepresentableNumber { key } => write!(
                f,
                "argument `{key}` is a number policy cannot see exactly \
                 (larger than 64 bits or more than four decimal places)"
            ),
        }
    }
}

/// A call's arguments, sorted into the typed buckets of the schema's
/// `Arguments` entity. Keys are JSON paths (`a.b`, `list[0]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arguments {
    /// String values.
    pub strings: BTreeMap<String, String>,
    /// Whole numbers.
    pub numbers: BTreeMap<String, i64>,
    /// Fractional numbers, as Cedar decimal literals (`"0.25"`).
    pub decimals: BTreeMap<String, String>,
    /// Booleans.
    pub bools: BTreeMap<String, bool>,
    /// Arrays whose elements are all strings.
    pub sets: BTreeMap<String, BTreeSet<String>>,
    /// Normalised forms of the valid absolute path-like arguments.
    pub paths: BTreeMap<String, String>,
    /// Directories containing every path-like argument.
    pub paths_within: BTreeSet<String>,
    /// Number of path-like arguments, valid or not.
    pub path_count: usize,
    /// Number of values.
    pub count: usize,
}

impl Arguments {
    /// Sorts `value` into buckets, enforcing `limits`. `None` (no arguments)
    /// gives the empty set of arguments.
    pub fn from_json(value: Option<&Value>, limits: &Limits) -> Result<Self, ArgumentsError> {
        let mut out = Arguments::default();
        let Some(value) = value else {
            return Ok(out);
        };
        let Value::Object(map) = value else {
            return Err(ArgumentsError::NotAnObject);
        };
        if serialized_len(value) > limits.max_bytes {
            return Err(ArgumentsError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        let mut within: Option<BTreeSet<String>> = None;
        for (key, child) in map {
            out.visit(key.clone(), child, 1, limits, &mut within)?;
        }
        out.paths_within = within.unwrap_or_default();
        Ok(out)
    }

    fn visit(
        &mut self,
        key: String,
        value: &Value,
        depth: usize,
        limits: &Limits,
        within: &mut Option<BTreeSet<String>>,
    ) -> Result<(), ArgumentsError> {
        if depth > limits.max_depth {
            return Err(ArgumentsError::TooDeep {
                limit: limits.max_depth,
            });
        }
        match value {
            Value::Object(map) => {
                for (name, child) in map {
                    self.visit(format!("{key}.{name}"), child, depth + 1, limits, within)?;
                }
            }
            Value::Array(items) => {
                let strings: Option<BTreeSet<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect();
                if let Some(set) = strings {
                    self.sets.insert(key.clone(), set);
                }
                for (index, child) in items.iter().enumerate() {
                    self.visit(format!("{key}[{index}]"), child, depth + 1, limits, within)?;
                }
            }
            leaf => {
                self.count += 1;
                if self.count > limits.max_values {
                    return Err(ArgumentsError::TooMany {
                        limit: limits.max_values,
                    });
                }
                self.leaf(key, leaf, within)?;
            }
        }
        Ok(())
    }

    fn leaf(
        &mut self,
        key: String,
        value: &Value,
        within: &mut Option<BTreeSet<String>>,
    ) -> Result<(), ArgumentsError> {
        match value {
            Value::String(s) => {
                if path::is_path_like(&key, s) {
                    self.add_path(&key, s, within);
                }
                self.strings.insert(key, s.clone());
            }
            Value::Bool(b) => {
                self.bools.insert(key, *b);
            }
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    self.numbers.insert(key, i);
                } else {
                    let decimal = to_decimal(n).ok_or_else(|| {
                        ArgumentsError::UnrepresentableNumber { key: key.clone() }
                    })?;
                    self.decimals.insert(key, decimal);
                }
            }
            // A null is counted but offers policy nothing to compare.
            Value::Null | Value::Array(_) | Value::Object(_) => {}
        }
        Ok(())
    }

    fn add_path(&mut self, key: &str, raw: &str, within: &mut Option<BTreeSet<String>>) {
        self.path_count += 1;
        let dirs: BTreeSet<String> = match path::normalize(raw) {
            Ok(normal) => {
                let dirs = path::ancestors(&normal).into_iter().collect();
                self.paths.insert(key.to_owned(), normal);
                dirs
            }
            // INVARIANT: a path without a normal form empties `paths_within`,
            // so no confinement rule can ever be satisfied by it.
            Err(_) => BTreeSet::new(),
        };
        *within = Some(match within.take() {
            None => dirs,
            Some(previous) => previous.intersection(&dirs).cloned().collect(),
        });
    }
}

/// Renders a non-integral JSON number as a Cedar decimal literal when it has
/// at most four decimal places and fits Cedar's range; `None` otherwise.
// LIMITATION: numbers with more than four decimal places, or integers beyond
// 64 bits, are refused rather than rounded, so tools taking them are denied.
fn to_decimal(n: &serde_json::Number) -> Option<String> {
    let text = n.to_string();
    if text.contains(['e', 'E']) {
        return None;
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, f.trim_end_matches('0')),
        None => (text.as_str(), ""),
    };
    if fraction.len() > 4 || whole.trim_start_matches('-').len() > 14 {
        return None;
    }
    let fraction = if fraction.is_empty() { "0" } else { fraction };
    Some(format!("{whole}.{fraction}"))
}

fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match serde_json::to_writer(&mut counter, value) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sort(v: Value) -> Result<Arguments, ArgumentsError> {
        Arguments::from_json(Some(&v), &Limits::default())
    }

    #[test]
    fn numbers_stay_numbers_and_strings_stay_strings() {
        let args = sort(json!({"count": 10, "label": "10", "ratio": 0.25, "on": true})).unwrap();
        assert_eq!(args.numbers.get("count"), Some(&10));
        assert_eq!(args.strings.get("label").map(String::as_str), Some("10"));
        assert!(!args.numbers.contains_key("label"));
        assert_eq!(args.decimals.get("ratio").map(String::as_str), Some("0.25"));
        assert_eq!(args.bools.get("on"), Some(&true));
        assert_eq!(args.count, 4);
    }

    #[test]
    fn nested_values_are_keyed_by_json_path() {
        let args = sort(json!({"opts": {"mode": "r"}, "paths": ["/a", "/b/../c"]})).unwrap();
        assert_eq!(args.strings.get("opts.mode").map(String::as_str), Some("r"));
        assert_eq!(args.paths.get("paths[1]").map(String::as_str), Some("/c"));
        assert_eq!(args.sets.get("paths").map(BTreeSet::len), Some(2));
        assert_eq!(args.path_count, 2);
        assert_eq!(args.paths_within, BTreeSet::from(["/".to_owned()]));
    }

    #[test]
    fn paths_within_is_the_common_ancestry_of_every_path() {
        let args = sort(json!({"source": "/srv/data/a", "destination": "/srv/data/b/c"})).unwrap();
        assert!(args.paths_within.contains("/srv/data"));
        assert!(!args.paths_within.contains("/srv/data/b"));
    }

    #[test]
    fn one_invalid_path_empties_paths_within() {
        let args = sort(json!({"source": "/srv/data/a", "destination": "srv/data/b"})).unwrap();
        assert!(args.paths_within.is_empty());
        assert_eq!(args.path_count, 2);
    }

    #[test]
    fn refuses_arguments_over_the_limits() {
        let limits = Limits {
            max_bytes: 64,
            max_depth: 3,
            max_values: 4,
        };
        let check = |v: Value| Arguments::from_json(Some(&v), &limits);
        assert_eq!(
            check(json!({"a": "x".repeat(100)})),
            Err(ArgumentsError::TooLarge { limit: 64 })
        );
        assert_eq!(
            check(json!({"a": {"b": {"c": {"d": 1}}}})),
            Err(ArgumentsError::TooDeep { limit: 3 })
        );
        assert_eq!(
            check(json!({"a": [1, 2, 3, 4, 5]})),
            Err(ArgumentsError::TooMany { limit: 4 })
        );
        assert_eq!(check(json!([1])), Err(ArgumentsError::NotAnObject));
    }

    #[test]
    fn refuses_numbers_policy_would_see_rounded() {
        for v in [
            json!({"n": 0.123456}),
            json!({"n": 1e300}),
            json!({"n": u64::MAX}),
        ] {
            assert!(matches!(
                sort(v),
                Err(ArgumentsError::UnrepresentableNumber { .. })
            ));
        }
    }
}
