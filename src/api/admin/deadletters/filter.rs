//! Which dead letters a list or a replay takes: reason (substring, any case), last status
//! (`503`, or a class such as `5xx`), target host, and a window on the time the letter was
//! written. The same filter arrives as query parameters (list) or as a JSON object
//! (replay), so both are read from one raw form.

use chrono::DateTime;
use serde::Deserialize;
use serde_json::Value;

use super::letter::Summary;

/// Longest reason or host filter accepted, in bytes.
const MAX_TEXT: usize = 1024;

/// A filter as sent: strings from a query, strings or numbers from JSON.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    /// Substring of the reason, any case.
    pub reason: Option<String>,
    /// `503`, `"503"` or `"5xx"`.
    pub status: Option<Value>,
    /// Target host: `http://host:port`, `host:port` or `host`.
    pub host: Option<String>,
    /// Earliest dead-letter time, inclusive: RFC 3339 or epoch ms.
    pub since: Option<Value>,
    /// Latest dead-letter time, exclusive: RFC 3339 or epoch ms.
    pub until: Option<Value>,
}

/// A last-status condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// Exactly this status.
    Exact(u16),
    /// Any status of this class (5 for `5xx`).
    Class(u16),
}

/// A checked filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Lower-case reason substring.
    pub reason: Option<String>,
    /// Last-status condition.
    pub status: Option<StatusMatch>,
    /// Lower-case host.
    pub host: Option<String>,
    /// Inclusive lower bound, epoch ms.
    pub since_ms: Option<i64>,
    /// Exclusive upper bound, epoch ms.
    pub until_ms: Option<i64>,
}

/// Why a filter was refused; the message names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {problem}")]
pub struct FilterError {
    /// The filter field.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn err(field: &'static str, problem: impl Into<String>) -> FilterError {
    FilterError {
        field,
        problem: problem.into(),
    }
}

/// A time given as RFC 3339 (`2026-12-02T07:00:00Z`) or as epoch milliseconds (a JSON
/// number or a string of digits), in epoch ms.
///
/// # Errors
/// A message saying what was expected.
pub fn parse_time(value: &Value) -> Result<i64, String> {
    const EXPECTED: &str = "expected an RFC 3339 time or epoch milliseconds";
    match value {
        Value::Number(n) => n
            .as_i64()
            .filter(|ms| *ms >= 0)
            .ok_or_else(|| EXPECTED.to_owned()),
        Value::String(s) => {
            let s = s.trim();
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                return s.parse::<i64>().map_err(|_| EXPECTED.to_owned());
            }
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.timestamp_millis())
                .map_err(|_| EXPECTED.to_owned())
        }
        _ => Err(EXPECTED.to_owned()),
    }
}

fn parse_status(value: &Value) -> Result<StatusMatch, String> {
    const EXPECTED: &str = "expected an HTTP status (100-599) or a class such as 5xx";
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_ascii_lowercase(),
        _ => return Err(EXPECTED.to_owned()),
    };
    if let Some(class) = text.strip_suffix("xx") {
        return match class.parse::<u16>() {
            Ok(c) if (1..=5).contains(&c) && class.len() == 1 => Ok(StatusMatch::Class(c)),
            _ => Err(EXPECTED.to_owned()),
        };
    }
    match text.parse::<u16>() {
        Ok(s) if (100..=599).contains(&s) => Ok(StatusMatch::Exact(s)),
        _ => Err(EXPECTED.to_owned()),
    }
}

fn text(field: &'static str, value: Option<String>) -> Result<Option<String>, FilterError> {
    match value {
        None => Ok(None),
        Some(v) if v.len() > MAX_TEXT => Err(err(field, format!("longer than {MAX_TEXT} bytes"))),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => Ok(Some(v.trim().to_lowercase())),
    }
}

impl Filter {
    /// Checks a raw filter.
    ///
    /// # Errors
    /// [`FilterError`] naming the first bad field.
    pub fn parse(raw: RawFilter) -> Result<Self, FilterError> {
        let time = |field, v: &Option<Value>| match v {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(v) => parse_time(v).map(Some).map_err(|p| err(field, p)),
        };
        let status = match &raw.status {
            None => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(v) => Some(parse_status(v).map_err(|p| err("status", p))?),
        };
        let filter = Self {
            reason: text("reason", raw.reason)?,
            status,
            host: text("host", raw.host)?,
            since_ms: time("since", &raw.since)?,
            until_ms: time("until", &raw.until)?,
        };
        if let (Some(s), Some(u)) = (filter.since_ms, filter.until_ms)
            && s >= u
        {
            return Err(err("until", "must be later than since"));
        }
        Ok(filter)
    }

    /// True when `letter` passes every condition set.
    pub fn matches(&self, letter: &Summary) -> bool {
        if let Some(r) = &self.reason
            && !letter.reason.to_lowercase().contains(r.as_str())
        {
            return false;
        }
        if let Some(s) = self.status {
            let ok = match (s, letter.status) {
                (StatusMatch::Exact(want), Some(got)) => want == got,
                (StatusMatch::Class(c), Some(got)) => got / 100 == c,
                (_, None) => false,
            };
            if !ok {
                return false;
            }
        }
        if let Some(h) = &self.host {
            let Some(host) = &letter.host else {
                return false;
            };
            // `http://a:1` matches `http://a:1`, `a:1` and `a`.
            let authority = host.split_once("://").map_or(host.as_str(), |(_, a)| a);
            let name = authority.rsplit_once(':').map_or(authority, |(n, _)| n);
            if host != h && authority != h && name != h {
                return false;
            }
        }
        let at = letter.dead_lettered_at_ms;
        if self.since_ms.is_some_and(|s| at < s) || self.until_ms.is_some_and(|u| at >= u) {
            return false;
        }
        true
    }

    /// True when no condition is set (every letter matches).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn letter() -> Summary {
        Summary {
            partition: 1,
            offset: 7,
            call_id: "id-1".into(),
            url: Some("http://t.example:8080/x".into()),
            host: Some("http://t.example:8080".into()),
            reason: "Attempts exhausted: STATUS 503".into(),
            status: Some(503),
            attempts: 3,
            first_attempt_ms: Some(1_000),
            last_attempt_ms: Some(2_000),
            dead_lettered_at_ms: 5_000,
            value_omitted: false,
        }
    }

    fn parse(v: Value) -> Result<Filter, FilterError> {
        Filter::parse(serde_json::from_value(v).expect("raw filter"))
    }

    #[test]
    fn each_condition_selects() {
        let l = letter();
        let yes = [
            json!({}),
            json!({"reason": "STATUS 50"}),
            json!({"status": 503}),
            json!({"status": "5xx"}),
            json!({"host": "T.example"}),
            json!({"host": "t.example:8080"}),
            json!({"host": "http://t.example:8080"}),
            json!({"since": 5000, "until": "5001"}),
            json!({"since": "1970-01-01T00:00:05Z"}),
        ];
        for f in yes {
            assert!(parse(f.clone()).unwrap().matches(&l), "{f}");
        }
        let no = [
            json!({"reason": "timeout"}),
            json!({"status": 500}),
            json!({"status": "4xx"}),
            json!({"host": "other"}),
            json!({"host": "example:8080"}),
            json!({"since": 5001}),
            json!({"until": 5000}),
        ];
        for f in no {
            assert!(!parse(f.clone()).unwrap().matches(&l), "{f}");
        }
        let no_status = Summary {
            status: None,
            ..letter()
        };
        assert!(!parse(json!({"status": "5xx"})).unwrap().matches(&no_status));
    }

    #[test]
    fn hostile_filters_are_refused_naming_the_field() {
        let cases = [
            (json!({"status": 99}), "status"),
            (json!({"status": "600"}), "status"),
            (json!({"status": "55xx"}), "status"),
            (json!({"status": "0xx"}), "status"),
            (json!({"status": [1]}), "status"),
            (json!({"since": "yesterday"}), "since"),
            (json!({"since": -5}), "since"),
            (json!({"until": 1.5}), "until"),
            (json!({"until": "99999999999999999999999"}), "until"),
            (json!({"since": 10, "until": 10}), "until"),
            (json!({"reason": "x".repeat(MAX_TEXT + 1)}), "reason"),
        ];
        for (f, field) in cases {
            assert_eq!(parse(f.clone()).unwrap_err().field, field, "{f}");
        }
        assert!(serde_json::from_value::<RawFilter>(json!({"colour": "red"})).is_err());
    }

    #[test]
    fn empty_strings_mean_no_condition() {
        let f = parse(json!({"reason": " ", "status": "", "since": ""})).unwrap();
        assert!(f.is_empty());
    }
}
