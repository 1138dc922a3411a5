//! `ConfigError`: every problem found in a configuration, each naming the key it concerns.

use std::fmt;

/// One thing wrong with a configuration.
///
/// `key` is the full path as the user wrote it (`kafka.consumer.list[1].concurrency`), or the
/// file path / source name when the whole document is unusable (unreadable file, syntax error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path with `[i]` array indices, or the file path for document-level problems.
    pub key: String,
    /// What is wrong, lowercase, without a trailing period (e.g. `must be at least 1, got 0`).
    pub message: String,
}

impl Problem {
    /// Creates a problem for `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// A configuration was rejected. Holds *every* problem found, not just the first, so one edit
/// cycle fixes them all (the Go version panicked on the first missing or mistyped key).
///
/// `Display` prints one `<key>: <problem>` line per problem, in the order they were found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.problems))]
pub struct ConfigError {
    /// The problems, never empty when returned by this module.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// An error with a single problem.
    pub fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem::new(key, message)],
        }
    }
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
