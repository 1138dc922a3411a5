//! Secret-bearing keys: where a secret comes from, and a type that never prints it.
//!
//! A secret key (`kafka.producer.acl[].secret` today, Kafka's `sasl.password` later) is given in
//! one of three ways:
//! - inline: `secret = "..."` (fine for tests, not for a shared file);
//! - from the environment: `secret = "${NAME}"`, the whole value being one reference;
//! - from a file: `secret_file = "/run/secrets/x"`, the content with one trailing newline
//!   (`\n` or `\r\n`) trimmed, so `echo s > file` works.
//!
//! Problems name the key and, for a reference, the variable or the file, never the value.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// A secret value. `Debug` and `Display` print `***`, so it cannot leak through a log line
/// or a `{:?}` of the settings; read it with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call it only where the value is used (a comparison, a handshake).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret could not be resolved. The text never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SecretError {
    /// `${NAME}` names a variable that is not set.
    #[error("refers to environment variable {0}, which is not set")]
    UnsetVariable(String),
    /// `${NAME}` names a variable that is set but empty.
    #[error("refers to environment variable {0}, which is empty")]
    EmptyVariable(String),
    /// The secret file cannot be read.
    #[error("cannot read secret file {path}: {reason}")]
    Unreadable {
        /// The path as configured.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The secret file is larger than [`MAX_SECRET_FILE`].
    #[error("secret file {0} is larger than 65536 bytes")]
    TooLarge(String),
    /// The secret file is empty (after the trailing newline is trimmed).
    #[error("secret file {0} is empty")]
    EmptyFile(String),
}

/// The variable named by a whole-value reference `${NAME}`, if `raw` is one.
///
/// Only the whole value counts: `a${B}c` stays literal, so a secret that happens to contain
/// `${` is not mangled.
pub(crate) fn env_reference(raw: &str) -> Option<&str> {
    let name = raw.strip_prefix("${")?.strip_suffix('}')?;
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some(name)
}

/// Resolves an inline value: a `${NAME}` reference is looked up in `env`, anything else is the
/// secret itself.
pub(crate) fn from_value(raw: &str, env: &HashMap<String, String>) -> Result<Secret, SecretError> {
    let Some(name) = env_reference(raw) else {
        return Ok(Secret::new(raw));
    };
    match env.get(name) {
        None => Err(SecretError::UnsetVariable(name.to_owned())),
        Some(v) if v.is_empty() => Err(SecretError::EmptyVariable(name.to_owned())),
        Some(v) => Ok(Secret::new(v.clone())),
    }
}

/// Largest secret file read, bytes.
pub(crate) const MAX_SECRET_FILE: u64 = 65_536;

/// Reads a secret file: its content less one trailing newline. Relative paths are relative to
/// the working directory, like `log.directory`.
pub(crate) fn from_file(path: &Path) -> Result<Secret, SecretError> {
    use std::io::Read as _;
    let shown = path.display().to_string();
    let unreadable = |e: std::io::Error| SecretError::Unreadable {
        path: shown.clone(),
        // The io::Error text is "No such file or directory (os error 2)": never the content.
        reason: e.to_string(),
    };
    // Bounded, so a wrong path (/dev/zero, a log file) cannot hang or exhaust the loader.
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_string(&mut text))
        .map_err(unreadable)?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(SecretError::TooLarge(shown));
    }
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if text.is_empty() {
        return Err(SecretError::EmptyFile(shown));
    }
    Ok(Secret::new(text))
}

/// Secrets the README or a shipped config once printed: anyone can read them, so a config that
/// uses one is refused unless it says it is a demo (`demo = true`). "i am good" is the Go
/// README's example.
pub(crate) const SAMPLE_SECRETS: &[&str] = &["you are good", "you are bad", "i am good", "i am bad"];

/// True if `secret` is one of [`SAMPLE_SECRETS`] (ignoring case and surrounding spaces).
pub(crate) fn is_sample(secret: &Secret) -> bool {
    let s = secret.expose().trim();
    SAMPLE_SECRETS.iter().any(|sample| sample.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn only_a_whole_value_reference_is_looked_up() {
        assert_eq!(env_reference("${ACL_SECRET}"), Some("ACL_SECRET"));
        assert_eq!(env_reference("${_x1}"), Some("_x1"));
        for literal in ["$ACL", "${}", "${1A}", "a${B}", "${B}c", "${A-B}", "plain"] {
            assert_eq!(env_reference(literal), None, "{literal}");
        }
        let vars = env(&[("A", "from-env")]);
        assert_eq!(from_value("${A}", &vars).unwrap().expose(), "from-env");
        assert_eq!(from_value("x${A}", &vars).unwrap().expose(), "x${A}");
    }

    #[test]
    fn unset_or_empty_variable_is_named_without_a_value() {
        let vars = env(&[("EMPTY", "")]);
        let unset = from_value("${NOPE}", &vars).unwrap_err().to_string();
        assert_eq!(unset, "refers to environment variable NOPE, which is not set");
        let empty = from_value("${EMPTY}", &vars).unwrap_err().to_string();
        assert!(empty.contains("EMPTY") && empty.contains("empty"), "{empty}");
    }

    #[test]
    fn file_content_loses_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::write(&path, "top secret\n").unwrap();
        assert_eq!(from_file(&path).unwrap().expose(), "top secret");
        std::fs::write(&path, "crlf\r\n").unwrap();
        assert_eq!(from_file(&path).unwrap().expose(), "crlf");
        std::fs::write(&path, "two\n\n").unwrap();
        assert_eq!(from_file(&path).unwrap().expose(), "two\n");
        std::fs::write(&path, "\n").unwrap();
        assert!(matches!(from_file(&path), Err(SecretError::EmptyFile(_))));
        std::fs::write(&path, "x".repeat(70_000)).unwrap();
        assert!(matches!(from_file(&path), Err(SecretError::TooLarge(_))));
        let missing = from_file(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(
            missing.contains("missing") && missing.contains("cannot read"),
            "{missing}"
        );
    }

    #[test]
    fn readme_samples_are_recognised() {
        assert!(is_sample(&Secret::new("you are good")));
        assert!(is_sample(&Secret::new("You Are Bad ")));
        assert!(!is_sample(&Secret::new("you are good, really")));
    }
}
