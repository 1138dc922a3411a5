//! Lenient typed reads from the merged value tree that record problems instead of failing.
//!
//! Deserializing straight into typed structs would stop at the first type error and could not
//! report "wrong type" and "out of range" together. So every read here takes a raw figment
//! `Value`, checks type and range, records a [`Problem`] naming the key, and returns `None` on
//! failure; the caller falls back to a default and carries on to find the next problem.

use std::time::Duration;

use figment::value::{Dict, Num, Value};

use super::error::Problem;
use super::rules::MAX_MS;
use super::source::{Sources, env_var_name};

/// Accumulates problems and warnings while reading one configuration.
#[derive(Debug)]
pub(crate) struct Checker<'a> {
    sources: &'a Sources,
    /// Every problem found so far, in reading order.
    pub(crate) problems: Vec<Problem>,
    /// Every warning found so far, in reading order.
    pub(crate) warnings: Vec<String>,
    /// While set, wrong-type problems say what kind of value was found but not the value: set
    /// while reading a section that holds secrets (see [`Checker::redacted`]).
    redact: bool,
}

impl<'a> Checker<'a> {
    /// Starts with the problems found while assembling `sources`.
    pub(crate) fn new(sources: &'a Sources) -> Self {
        Self {
            sources,
            problems: sources.problems.clone(),
            warnings: Vec::new(),
            redact: false,
        }
    }

    /// Runs `read` with values kept out of problem messages: for sections that hold secrets,
    /// where a mistyped value (`secret = 123456789`) is itself the secret.
    pub(crate) fn redacted<T>(&mut self, read: impl FnOnce(&mut Self) -> T) -> T {
        let before = std::mem::replace(&mut self.redact, true);
        let out = read(self);
        self.redact = before;
        out
    }

    /// True if `value` came from an environment variable.
    pub(crate) fn is_from_env(&self, value: &Value) -> bool {
        self.sources.is_from_env(value)
    }

    /// The whole environment, for `${NAME}` references in secret keys.
    pub(crate) fn vars(&self) -> &std::collections::HashMap<String, String> {
        &self.sources.vars
    }

    /// Records a problem on `key`. When `value` came from the environment the variable is named,
    /// since the file may look correct while an override is at fault.
    pub(crate) fn problem(&mut self, key: &str, value: Option<&Value>, message: impl Into<String>) {
        let message = message.into() + &self.origin(key, value);
        self.problems.push(Problem::new(key, message));
    }

    /// Records a warning about `key`.
    pub(crate) fn warn(&mut self, key: &str, value: Option<&Value>, message: impl Into<String>) {
        let message = message.into() + &self.origin(key, value);
        self.warnings.push(message);
    }

    fn origin(&self, key: &str, value: Option<&Value>) -> String {
        match value {
            Some(value) if self.sources.is_from_env(value) => {
                format!(" (set by environment variable {})", env_var_name(key))
            }
            _ => String::new(),
        }
    }

    /// Records "expected `expected`, got <what value is>".
    pub(crate) fn wrong_type(&mut self, key: &str, value: &Value, expected: &str) {
        let got = if self.redact { kind(value) } else { describe(value) };
        self.problem(key, Some(value), format!("expected {expected}, got {got}"));
    }

    /// Reads an optional top-level `key`: its default when absent, else `read`'s result, or the
    /// default again when `read` found a problem (already recorded).
    pub(crate) fn setting<T>(
        &mut self,
        root: &Dict,
        key: &str,
        default: T,
        read: impl FnOnce(&mut Self, &str, &Value) -> Option<T>,
    ) -> T {
        match lookup(root, key) {
            Some(value) => read(self, key, value).unwrap_or(default),
            None => default,
        }
    }

    /// Reads the required `parent.key` of an array entry; records "missing" when absent.
    pub(crate) fn required<T>(
        &mut self,
        entry: &Dict,
        parent: &str,
        key: &str,
        read: impl FnOnce(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        let path = format!("{parent}.{key}");
        match entry.get(key) {
            Some(value) => read(self, &path, value),
            None => {
                self.problem(&path, None, "required key is missing");
                None
            }
        }
    }

    /// Reads the optional `parent.key` of an array entry, like [`Checker::setting`].
    pub(crate) fn optional<T>(
        &mut self,
        entry: &Dict,
        parent: &str,
        key: &str,
        default: T,
        read: impl FnOnce(&mut Self, &str, &Value) -> Option<T>,
    ) -> T {
        self.optional_checked(entry, parent, key, None, |c, key, value| {
            read(c, key, value).map(Some)
        })
        .flatten()
        .unwrap_or(default)
    }

    /// Like [`Checker::optional`], but `None` when the value is present and invalid (problem
    /// recorded). For values that other checks compare against: comparing with a default the
    /// user did not choose would add a second, misleading problem.
    pub(crate) fn optional_checked<T>(
        &mut self,
        entry: &Dict,
        parent: &str,
        key: &str,
        default: T,
        read: impl FnOnce(&mut Self, &str, &Value) -> Option<T>,
    ) -> Option<T> {
        match entry.get(key) {
            Some(value) => read(self, &format!("{parent}.{key}"), value),
            None => Some(default),
        }
    }

    /// Warns about keys of an array entry that are not in `known`.
    pub(crate) fn unknown_entry_keys(&mut self, entry: &Dict, parent: &str, known: &[&str]) {
        for (key, value) in entry {
            if !known.contains(&key.as_str()) {
                let path = format!("{parent}.{key}");
                self.warn(&path, Some(value), format!("unknown key '{path}' is ignored"));
            }
        }
    }

    /// The value as a table.
    pub(crate) fn table<'v>(&mut self, key: &str, value: &'v Value) -> Option<&'v Dict> {
        match value {
            Value::Dict(_, dict) => Some(dict),
            _ => {
                self.wrong_type(key, value, "a table (JSON object)");
                None
            }
        }
    }

    /// The value as an array.
    pub(crate) fn array<'v>(&mut self, key: &str, value: &'v Value) -> Option<&'v [Value]> {
        match value {
            Value::Array(_, items) => Some(items),
            _ => {
                self.wrong_type(key, value, "an array");
                None
            }
        }
    }

    /// The value as a string. Numbers and booleans are accepted only from environment variables,
    /// where figment parses `BIGPIPE_KAFKA_CLIENT_ID=42` as a number the user meant as text.
    pub(crate) fn string(&mut self, key: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(_, s) => Some(s.clone()),
            Value::Char(_, c) => Some(c.to_string()),
            Value::Num(_, n) if self.sources.is_from_env(value) => Some(num_text(*n)),
            Value::Bool(_, b) if self.sources.is_from_env(value) => Some(b.to_string()),
            _ => {
                self.wrong_type(key, value, "a string");
                None
            }
        }
    }

    /// Every item of the array `items` (the value of `key`) as a string passed through `check`;
    /// each refusal is reported at `key[i]`. `None` when any item is refused or not a string.
    pub(crate) fn each_string<T>(
        &mut self,
        key: &str,
        items: &[Value],
        mut check: impl FnMut(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("{key}[{i}]");
            let Some(s) = self.string(&path, item) else {
                ok = false;
                continue;
            };
            match check(&s) {
                Ok(v) => out.push(v),
                Err(reason) => {
                    self.problem(&path, Some(item), reason);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A string that must not be empty.
    pub(crate) fn non_empty_string(&mut self, key: &str, value: &Value) -> Option<String> {
        let s = self.string(key, value)?;
        if s.is_empty() {
            self.problem(key, Some(value), "must not be empty");
            return None;
        }
        Some(s)
    }

    /// The value as an integer.
    ///
    /// Floats with a fraction (`2.9`) are rejected: JSON has one number type and Go truncated
    /// them to `int` silently (`2.9` retries became 2). Integral floats (`3000.0`, `1e3`) lose
    /// nothing and are accepted.
    pub(crate) fn integer(&mut self, key: &str, value: &Value) -> Option<i128> {
        let Value::Num(_, num) = value else {
            self.wrong_type(key, value, "an integer");
            return None;
        };
        if let Some(i) = num.to_i128() {
            return Some(i);
        }
        if let Some(u) = num.to_u128() {
            if let Ok(i) = i128::try_from(u) {
                return Some(i);
            }
            self.problem(key, Some(value), format!("{u} is too large"));
            return None;
        }
        let f = num.to_f64().unwrap_or(f64::NAN);
        // 2^63: beyond it an f64 is no longer an exact integer worth accepting.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if f.is_finite() && f.fract() == 0.0 && f.abs() < LIMIT {
            // In range and integral, so the cast is exact.
            return Some(f as i128);
        }
        let message = if f.is_finite() && f.fract() != 0.0 {
            format!(
                "expected an integer, got {} (fractions are not truncated)",
                show_f64(f)
            )
        } else {
            format!("expected an integer, got {}, which is out of range", show_f64(f))
        };
        self.problem(key, Some(value), message);
        None
    }

    /// An integer within `min..=max`, converted to `T`.
    pub(crate) fn int_in<T: TryFrom<i128>>(
        &mut self,
        key: &str,
        value: &Value,
        min: i128,
        max: i128,
    ) -> Option<T> {
        let i = self.integer(key, value)?;
        if i < min {
            self.problem(key, Some(value), format!("must be at least {min}, got {i}"));
            return None;
        }
        if i > max {
            self.problem(key, Some(value), format!("must be at most {max}, got {i}"));
            return None;
        }
        T::try_from(i).ok()
    }

    /// A number of milliseconds, at least `min`, at most [`MAX_MS`].
    pub(crate) fn millis(&mut self, key: &str, value: &Value, min: u64) -> Option<Duration> {
        self.millis_in(key, value, min, MAX_MS)
    }

    /// A number of milliseconds within `min..=max`.
    pub(crate) fn millis_in(&mut self, key: &str, value: &Value, min: u64, max: u64) -> Option<Duration> {
        self.int_in::<u64>(key, value, i128::from(min), i128::from(max))
            .map(Duration::from_millis)
    }

    /// One of a fixed set of names, case-insensitive; `choices` pairs each name with its value.
    pub(crate) fn choice<T: Copy>(&mut self, key: &str, value: &Value, choices: &[(&str, T)]) -> Option<T> {
        let name = self.string(key, value)?;
        if let Some((_, choice)) = choices.iter().find(|(n, _)| n.eq_ignore_ascii_case(&name)) {
            return Some(*choice);
        }
        let names: Vec<String> = choices.iter().map(|(n, _)| format!("\"{n}\"")).collect();
        let expected = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        };
        self.problem(key, Some(value), format!("expected {expected}, got '{name}'"));
        None
    }

    /// The value as a finite number, integer or float.
    pub(crate) fn number(&mut self, key: &str, value: &Value) -> Option<f64> {
        let Value::Num(_, num) = value else {
            self.wrong_type(key, value, "a number");
            return None;
        };
        // i128/u128 → f64 rounds huge values; fine here, they only feed range checks.
        let f = num
            .to_f64()
            .or_else(|| num.to_i128().map(|i| i as f64))
            .or_else(|| num.to_u128().map(|u| u as f64))
            .unwrap_or(f64::NAN);
        if !f.is_finite() {
            self.problem(key, Some(value), "must be a finite number");
            return None;
        }
        Some(f)
    }
}

/// Finds a dotted `key` below `root`; `None` if absent or if a parent is not a table (the
/// structure check reports that once, rather than once per key below it).
pub(crate) fn lookup<'v>(root: &'v Dict, key: &str) -> Option<&'v Value> {
    let mut segments = key.split('.');
    let mut current = root.get(segments.next()?)?;
    for segment in segments {
        current = current.as_dict()?.get(segment)?;
    }
    Some(current)
}

/// How a value reads in a problem message: its kind, and short scalars verbatim.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(_, s) => {
            let shown: String = s.chars().take(40).collect();
            let ellipsis = if s.chars().count() > 40 { "..." } else { "" };
            format!("a string ('{shown}{ellipsis}')")
        }
        Value::Char(_, c) => format!("a string ('{c}')"),
        Value::Bool(_, b) => format!("a boolean ({b})"),
        Value::Num(_, n) => format!("a number ({})", num_text(*n)),
        Value::Empty(..) => "null".to_owned(),
        Value::Dict(..) => "a table".to_owned(),
        Value::Array(..) => "an array".to_owned(),
    }
}

/// What kind of value this is, without the value: for sections that hold secrets.
pub(crate) fn kind(value: &Value) -> String {
    match value {
        Value::String(..) | Value::Char(..) => "a string",
        Value::Bool(..) => "a boolean",
        Value::Num(..) => "a number",
        Value::Empty(..) => "null",
        Value::Dict(..) => "a table",
        Value::Array(..) => "an array",
    }
    .to_owned()
}

fn num_text(num: Num) -> String {
    if let Some(i) = num.to_i128() {
        i.to_string()
    } else if let Some(u) = num.to_u128() {
        u.to_string()
    } else {
        num.to_f64().map_or_else(String::new, show_f64)
    }
}

/// Shows a float briefly: `100`, `2.9`, `1e300` (`Display` would print 300 digits).
pub(crate) fn show_f64(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f}")
    } else {
        format!("{f:?}")
    }
}
