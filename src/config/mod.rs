//! Configuration: loads a TOML or JSON file plus `BIGPIPE_*` environment overrides, validates
//! it completely, and returns an immutable [`Settings`] snapshot or every problem at once.
//!
//! # Key names
//!
//! Keys are the Go version's flat dotted names (`log.level`, `kafka.consumer.list`,
//! `http.server.handler.channel.size`; seed spec §3). In JSON they may be written flat, as the Go
//! `conf/bigpipe.json` does, or nested; in TOML a dotted key is simply nested
//! (`[http.server] port = 10086`). Both formats accept both spellings: after parsing, dotted
//! keys are split into tables, so `{"log.level": 5}` and `{"log": {"level": 5}}` are the same.
//! Array entries keep Go's camelCase keys (`groupId`, `rateLimit`). `conf/bigpipe.toml`
//! documents every key with its default.
//!
//! # Environment overrides
//!
//! `BIGPIPE_` + the key with `.` → `_`, case-insensitive: `BIGPIPE_HTTP_SERVER_PORT=8080`,
//! `BIGPIPE_KAFKA_BOOTSTRAP_SERVERS=a:9092,b:9092`. Values use figment's env syntax (`10` is a
//! number, `[a, b]` an array, anything else a string). Because `_` separates segments, no key
//! contains `_`; new keys use dots (`linger.ms`). An array key is replaced as a whole.
//!
//! # Compared with Go
//!
//! Go had no defaults and panicked on any missing or mistyped key, at startup and on reload. Here
//! every key is optional (see the defaults in `conf/bigpipe.toml`), all type, range and
//! cross-reference problems are reported together with the key path as written
//! (`kafka.consumer.list[1].concurrency: must be at least 1, got 0`), and nothing panics.
//! Keys that Go read but bigpipe does not use (`kafka.producer.retries`,
//! `kafka.producer.channel.size`, `circuitBreaker`) and unknown keys become [`Settings::warnings`].

mod consumer;
mod entries;
mod error;
mod reader;
mod rules;
mod secret;
mod security;

pub(crate) use rules::status_range;
mod settings;
mod source;
mod validate;
pub mod values;

/// Every top-level key the validator knows, for the property tests.
#[cfg(test)]
pub(crate) use validate::KEYS as KNOWN_KEYS;

#[cfg(test)]
mod tests;

use std::ffi::OsStr;
use std::path::Path;

pub use error::{ConfigError, Problem};
pub use rules::MAX_SCHEDULE_MS;
pub use secret::Secret;
pub use security::{KafkaSecurity, KafkaTlsSettings, PemFile, SaslMechanism, SaslSettings, SecurityProtocol};
pub use settings::{
    AckMode, AclEntry, AclQuota, AdminSettings, Assignor, BreakerSettings, CaBundle, ConsumerSettings,
    ControlSettings, DeliverySettings, HttpSettings, IdempotencySettings, KafkaSettings, LogSettings,
    MetricsSettings, OffsetReset, Ordering, ProducerSettings, Settings, ShutdownSettings, TopicSettings,
    tier_label, tier_topic_name,
};

use source::Sources;

/// The syntax of a configuration document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML, the native format (`conf/bigpipe.toml`).
    Toml,
    /// JSON, as the Go version's `conf/bigpipe.json` (flat dotted keys or nested objects).
    Json,
}

impl Format {
    /// The format implied by a file name's extension (`.toml` / `.json`, any case).
    pub fn from_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?;
        if ext.eq_ignore_ascii_case("toml") {
            Some(Self::Toml)
        } else if ext.eq_ignore_ascii_case("json") {
            Some(Self::Json)
        } else {
            None
        }
    }
}

/// Loads the file at `path` (format from its extension), applies `BIGPIPE_*` environment
/// overrides from the process environment, and validates.
///
/// # Errors
///
/// A [`ConfigError`] listing every problem: an unreadable file or unknown extension (named by
/// its path), a syntax error, or each invalid key.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    load_with_env(path, std::env::vars_os())
}

/// Like [`load`], but takes the environment as a list of variables instead of reading the
/// process environment, so tests can exercise overrides without `std::env::set_var`. Variables
/// without the `BIGPIPE_` prefix are ignored.
///
/// # Errors
///
/// As [`load`].
pub fn load_with_env<I, K, V>(path: &Path, env: I) -> Result<Settings, ConfigError>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let label = path.display().to_string();
    let format = Format::from_path(path).ok_or_else(|| {
        ConfigError::single(
            &label,
            "unknown config file type: the name must end in .toml or .json",
        )
    })?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::single(&label, format!("cannot read config file: {e}")))?;
    from_text(&text, format, &label, env_vars(env))
}

/// Parses and validates `text` without environment overrides: for tests, `check-config`, and
/// building `Settings` from an inline TOML string (`load_from_str("", Format::Toml)` gives all
/// defaults).
///
/// # Errors
///
/// A [`ConfigError`] listing every problem.
pub fn load_from_str(text: &str, format: Format) -> Result<Settings, ConfigError> {
    let label = match format {
        Format::Toml => "<toml>",
        Format::Json => "<json>",
    };
    from_text(text, format, label, Vec::new())
}

fn from_text(
    text: &str,
    format: Format,
    label: &str,
    env: Vec<(String, String)>,
) -> Result<Settings, ConfigError> {
    // Every variable may be named by a `${NAME}` secret reference; only `BIGPIPE_*` ones
    // override keys.
    let vars = env.iter().cloned().collect();
    let overrides = env.into_iter().filter(|(k, _)| is_override(k)).collect();
    let sources = Sources::assemble(text, format, label, overrides, vars)
        .map_err(|problems| ConfigError { problems })?;
    validate::validate(&sources)
}

/// Non-UTF-8 variables are converted lossily, as figment's `Env` does, instead of panicking
/// like `std::env::vars`.
fn env_vars<I, K, V>(env: I) -> Vec<(String, String)>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    env.into_iter()
        .map(|(k, v)| {
            (
                k.as_ref().to_string_lossy().into_owned(),
                v.as_ref().to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// True for the `BIGPIPE_*` variables, which override config keys.
fn is_override(name: &str) -> bool {
    name.trim()
        .get(..source::ENV_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(source::ENV_PREFIX))
}
