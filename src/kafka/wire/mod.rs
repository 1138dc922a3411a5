//! Our own small Kafka protocol client: framing, one broker connection, and the admin calls
//! rskafka lacks (consumer-group APIs, CreateTopics with configs, timeouts, raw requests).
//!
//! Layered bottom-up like rskafka's `protocol/frame.rs` + `messenger.rs`, but the message codec
//! is the generated one from the `kafka-protocol` crate:
//!
//! ```text
//! admin.rs        create_topics, partition_counts, brokers      (typed results)
//! groups.rs       coordinator, DescribeGroups, OffsetFetch      (admin API reads, members)
//! membership.rs   JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//!                 OffsetCommit                                   (a group member's calls)
//!    │
//! connection.rs   BrokerConnection: ApiVersions negotiation, request headers,
//!    │            correlation ids, timeouts, poisoning           (one request in flight)
//! frame.rs        i32 big-endian size prefix + max-size guard   (bytes on the socket)
//! ```
//!
//! A [`BrokerConnection`] is cheap to keep and expensive to trust after a failure: any I/O,
//! decode, correlation or timeout error *poisons* it and the caller reconnects (see
//! [`Error::Poisoned`]).

pub mod admin;
pub mod connection;
pub mod frame;
pub mod groups;
pub mod membership;
mod sasl;
pub mod scram;
mod transport;

use std::fmt;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Message, VersionRange};

use crate::kafka::connect::KafkaConnect;

pub use admin::{BrokerInfo, ClusterInfo, TopicCreation, TopicSpec};
pub use connection::BrokerConnection;
pub use frame::FrameError;

/// The version to send `R` at: the negotiated one capped at what the crate's *request* type
/// can encode. For some APIs (OffsetFetch, OffsetCommit) the API key's range is wider than
/// the request type's, and `request_with_version` would refuse the difference.
pub(crate) fn version_of<R: Message>(conn: &BrokerConnection, api: ApiKey) -> Result<i16> {
    conn.negotiate_version(api, Some(R::VERSIONS.max))
}

/// `Ok` for error code 0, else the broker's refusal as [`Error::Server`] with its message.
pub(crate) fn check(
    api: ApiKey,
    code: i16,
    message: Option<&kafka_protocol::protocol::StrBytes>,
) -> Result<()> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::server(api, code, message.map(|m| m.to_string())))
    }
}

/// A duration as the protocol's `i32` milliseconds, saturating.
pub(crate) fn duration_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

/// The error type of the kafka-protocol codec (`anyhow::Error` inside), boxed so that we do not
/// need a direct `anyhow` dependency and keep the cause chain as a `#[source]`.
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a [`BrokerConnection`] stopped accepting requests.
///
/// Kept as a small `Copy` value (not the original error) because the original error is
/// returned to the call that hit it; later calls only need to know that, and roughly why, the
/// stream position is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoisonReason {
    /// Reading or writing a frame failed (I/O error, EOF, bad size prefix).
    Transport,
    /// A response frame arrived but could not be decoded.
    Decode,
    /// A response carried another correlation id than the request.
    CorrelationMismatch,
    /// The round trip did not finish within its timeout.
    Timeout,
    /// The calling future was dropped while the request was on the wire.
    Cancelled,
}

impl fmt::Display for PoisonReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transport => "transport error",
            Self::Decode => "undecodable response",
            Self::CorrelationMismatch => "correlation id mismatch",
            Self::Timeout => "request timeout",
            Self::Cancelled => "request cancelled mid-flight",
        })
    }
}

/// Errors of the wire layer.
///
/// After [`Error::Frame`] (bar an oversize request, refused before writing), [`Error::Decode`]
/// and [`Error::CorrelationMismatch`] the connection is poisoned and every later call returns [`Error::Poisoned`]; after [`Error::Timeout`] it is
/// poisoned unless the time ran out before the request was written
/// ([`BrokerConnection::poisoned`] is authoritative). The other variants leave it usable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP connect (including DNS resolution) failed or timed out.
    #[error("error connecting to broker {addr}")]
    Connect {
        /// The `host:port` we tried.
        addr: String,
        /// The cause; `ErrorKind::TimedOut` when the connect timeout expired.
        #[source]
        source: std::io::Error,
    },

    /// The TLS handshake failed: an untrusted or misnamed broker certificate, a client
    /// certificate the broker refused, no common protocol version, or a plaintext listener.
    #[error("TLS handshake with broker {addr} failed")]
    Tls {
        /// The `host:port` we tried.
        addr: String,
        /// The cause; rustls's error inside when the handshake itself failed.
        #[source]
        source: std::io::Error,
    },

    /// SASL authentication was refused (wrong credentials, a mechanism the broker does not
    /// enable) or could not be completed. The connection is closed; retrying with the same
    /// settings fails the same way until the credentials or the broker change.
    #[error("SASL {mechanism} authentication with broker {addr} failed: {message}")]
    Authentication {
        /// The broker.
        addr: String,
        /// The mechanism, as sent in SaslHandshake.
        mechanism: &'static str,
        /// The broker's reason, or ours.
        message: String,
    },

    /// The request/response round trip did not finish in time.
    #[error("{api:?} request timed out after {after:?}")]
    Timeout {
        /// The API that was called.
        api: ApiKey,
        /// The timeout that expired.
        after: Duration,
    },

    /// Reading or writing a size-prefixed frame failed.
    #[error("error exchanging frames with the broker")]
    Frame(#[from] FrameError),

    /// The request could not be encoded (typically a field set that the chosen version lacks).
    /// Nothing was written, so the connection stays usable.
    #[error("error encoding {api:?} v{version} request")]
    Encode {
        /// The API being encoded.
        api: ApiKey,
        /// The version it was encoded at.
        version: i16,
        /// The codec's error.
        #[source]
        source: CodecError,
    },

    /// The response frame could not be decoded.
    #[error("error decoding {api:?} v{version} response")]
    Decode {
        /// The API whose response failed to decode.
        api: ApiKey,
        /// The version it was decoded at.
        version: i16,
        /// The codec's error.
        #[source]
        source: CodecError,
    },

    /// The response header carried an unexpected correlation id.
    #[error("{api:?} response has correlation id {actual}, expected {expected}")]
    CorrelationMismatch {
        /// The API that was called.
        api: ApiKey,
        /// The id we sent.
        expected: i32,
        /// The id the broker answered with.
        actual: i32,
    },

    /// An earlier failure left the stream at an unknown position; reconnect.
    #[error("connection to {addr} is poisoned ({reason})")]
    Poisoned {
        /// The broker address of the poisoned connection.
        addr: String,
        /// What broke it first.
        reason: PoisonReason,
    },

    /// The broker does not advertise this API at all (or the crate does not know the key).
    #[error("broker does not support {api:?}")]
    UnsupportedApi {
        /// The API key as sent on the wire.
        api: i16,
    },

    /// No version both sides support, or an explicitly requested version outside that range.
    #[error("no usable {api:?} version: broker {broker}, client {client}, requested {requested:?}")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// Versions the broker advertised.
        broker: VersionRange,
        /// Versions the `kafka-protocol` crate can encode.
        client: VersionRange,
        /// The explicit version or cap the caller asked for, if any.
        requested: Option<i16>,
    },

    /// The negotiated version is too old for something the caller asked for
    /// (e.g. a broker-default replication factor needs CreateTopics v4).
    #[error("{what} needs {api:?} v{needed}+, broker allows v{version}")]
    VersionTooOld {
        /// The API.
        api: ApiKey,
        /// The version that would be used.
        version: i16,
        /// The minimum version for the feature.
        needed: i16,
        /// The feature that needs it.
        what: &'static str,
    },

    /// The broker answered with a top-level error code.
    #[error("{api:?} failed: {error} (code {code}){}", fmt_message(.message))]
    Server {
        /// The API that was called.
        api: ApiKey,
        /// The decoded error code.
        error: ResponseError,
        /// The raw error code, for logs.
        code: i16,
        /// The broker's error message, when the response has one.
        message: Option<String>,
    },

    /// The broker answered with a per-topic error that the helper cannot turn into a result.
    #[error("{api:?} failed for topic {topic}: {error} (code {code})")]
    Topic {
        /// The API that was called.
        api: ApiKey,
        /// The topic concerned.
        topic: String,
        /// The decoded error code.
        error: ResponseError,
        /// The raw error code, for logs.
        code: i16,
    },

    /// A well-formed response lacks an entry we asked for.
    #[error("{api:?} response has no entry for {name}")]
    MissingInResponse {
        /// The API that was called.
        api: ApiKey,
        /// The topic (or other key) that is missing.
        name: String,
    },

    /// [`connect_any`] found no usable bootstrap broker.
    #[error("no bootstrap broker reachable{}", fmt_failures(.failures))]
    NoBrokerReachable {
        /// Every address tried, with why it failed, in order.
        failures: Vec<(String, Error)>,
    },
}

impl Error {
    /// Builds [`Error::Server`] from a raw, non-zero error code.
    pub fn server(api: ApiKey, code: i16, message: Option<String>) -> Self {
        Self::Server {
            api,
            error: ResponseError::try_from_code(code).unwrap_or(ResponseError::Unknown(code)),
            code,
            message,
        }
    }
}

impl Error {
    /// What an operator must fix when this is (or, for [`Error::NoBrokerReachable`], includes)
    /// a security failure: `"authentication failed"` for a refused SASL login,
    /// `"TLS handshake failed"` for an untrusted certificate and the like. `None` otherwise.
    pub fn security_failure(&self) -> Option<&'static str> {
        match self {
            Self::Authentication { .. } => Some("authentication failed"),
            Self::Tls { .. } => Some("TLS handshake failed"),
            Self::NoBrokerReachable { failures } => {
                let kinds = || failures.iter().filter_map(|(_, e)| e.security_failure());
                // Authentication first: it is the more specific advice when brokers differ.
                kinds()
                    .find(|k| *k == "authentication failed")
                    .or_else(|| kinds().next())
            }
            _ => None,
        }
    }
}

fn fmt_message(message: &Option<String>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(": {m}"),
        _ => String::new(),
    }
}

/// Renders `addr: error: cause: cause; addr: ...` so one log line shows every attempt.
fn fmt_failures(failures: &[(String, Error)]) -> String {
    if failures.is_empty() {
        return " (no bootstrap addresses given)".to_owned();
    }
    let mut out = String::from(": ");
    for (i, (addr, err)) in failures.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(addr);
        out.push_str(": ");
        out.push_str(&error_chain(err));
    }
    out
}

/// `err: source: source...` in one line (thiserror's `Display` shows only the top level).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

/// Result of the wire layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Connects to the first bootstrap address that completes TCP connect and ApiVersions.
///
/// Addresses are tried in order (not in parallel) so that the first, usually nearest, broker
/// is preferred and a dead one costs at most the request timeout for the TCP connect (and TLS)
/// plus that for each handshake request.
///
/// # Errors
/// [`Error::NoBrokerReachable`] listing every address with its failure, also when `bootstrap`
/// is empty.
pub async fn connect_any(connect: &KafkaConnect) -> Result<BrokerConnection> {
    let bootstrap = connect.bootstrap();
    let mut failures = Vec::with_capacity(bootstrap.len());
    for addr in bootstrap {
        match BrokerConnection::connect(addr, connect).await {
            Ok(conn) => return Ok(conn),
            Err(e) => failures.push((addr.clone(), e)),
        }
    }
    Err(Error::NoBrokerReachable { failures })
}

#[cfg(test)]
pub(crate) mod testing;
