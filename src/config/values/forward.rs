//! Header forwarding rules as written in `delivery.headers.forward` and a consumer entry's
//! `forwardHeaders`, parsed: `Name`, `Prefix*` or `*`.
//!
//! Which headers they let through (and the protected headers a pattern never matches) is
//! delivery's job (`delivery::forward`, whose module docs describe the rules).

/// The default allow-list. `X-*` keeps the custom headers callers use for
/// correlation (`X-Request-Id`, `X-Trace`), the W3C trace context keeps
/// distributed traces whole, and `Accept`, `Accept-Language`,
/// `Content-Language` and `User-Agent` describe the call without carrying
/// identity. Nothing here authenticates anyone.
pub const DEFAULT_FORWARD: [&str; 7] = [
    "X-*",
    "Accept",
    "Accept-Language",
    "Content-Language",
    "User-Agent",
    "Traceparent",
    "Tracestate",
];

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Empty string.
    #[error("must not be empty")]
    Empty,
    /// Not an HTTP token, or a `*` anywhere but at the end.
    #[error("is not a header name, a 'Prefix*' pattern or \"*\"")]
    Invalid,
}

/// A parsed list of forwarding rules (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRules {
    /// `*` was listed: everything goes.
    all: bool,
    /// Exact names, lower case.
    exact: Vec<String>,
    /// Prefixes of `Prefix*` rules, lower case.
    prefixes: Vec<String>,
}

impl Default for ForwardRules {
    fn default() -> Self {
        Self::parse(DEFAULT_FORWARD).unwrap_or_else(|_| Self::none())
    }
}

impl ForwardRules {
    /// No header at all.
    pub fn none() -> Self {
        Self {
            all: false,
            exact: Vec::new(),
            prefixes: Vec::new(),
        }
    }

    /// Every header, as the Go version forwarded them.
    pub fn all() -> Self {
        Self {
            all: true,
            ..Self::none()
        }
    }

    /// Whether `*` is among the rules: every header goes, protected ones included.
    pub fn forwards_everything(&self) -> bool {
        self.all
    }

    /// Parses a list of rules.
    ///
    /// # Errors
    /// The index and reason of the first invalid rule.
    pub fn parse<I, S>(rules: I) -> Result<Self, (usize, RuleError)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Self::none();
        for (i, rule) in rules.into_iter().enumerate() {
            out.add(rule.as_ref()).map_err(|e| (i, e))?;
        }
        Ok(out)
    }

    /// Checks one rule, as it would be added.
    ///
    /// # Errors
    /// When it is empty or not a name, `Prefix*` or `*`.
    pub fn check(rule: &str) -> Result<(), RuleError> {
        Self::none().add(rule)
    }

    fn add(&mut self, rule: &str) -> Result<(), RuleError> {
        if rule.is_empty() {
            return Err(RuleError::Empty);
        }
        if rule == "*" {
            self.all = true;
            return Ok(());
        }
        let (name, is_prefix) = match rule.strip_suffix('*') {
            Some(prefix) => (prefix, true),
            None => (rule, false),
        };
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(RuleError::Invalid);
        }
        let lower = name.to_ascii_lowercase();
        if is_prefix {
            self.prefixes.push(lower);
        } else {
            self.exact.push(lower);
        }
        Ok(())
    }

    /// The exact names listed, lower case.
    pub fn exact(&self) -> &[String] {
        &self.exact
    }

    /// The prefixes of the `Prefix*` rules, lower case.
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }
}

/// An HTTP token character (RFC 9110 §5.6.2), `*` excluded: it is the pattern mark.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b)
}
