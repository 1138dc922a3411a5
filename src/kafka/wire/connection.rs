//! One connection to one broker (TCP or TLS): ApiVersions negotiation and SASL at connect, then typed
//! request/response round trips with correlation ids, timeouts and poisoning.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::frame::{self, DEFAULT_MAX_FRAME_BYTES};
use super::transport::{self, Stream};
use super::{Error, PoisonReason, Result};
use crate::kafka::connect::KafkaConnect;

/// ApiVersions version sent first: v3 (KIP-511, flexible) is accepted by brokers since 2.4
/// and lets the broker log our software name and version.
const API_VERSIONS_FIRST: i16 = 3;

/// Name sent in ApiVersions v3+. Brokers reject v3 requests whose name or version do not match
/// `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?` (INVALID_REQUEST), so both must stay plain.
const CLIENT_SOFTWARE_NAME: &str = "bigpipe";

/// A connection to one Kafka broker, speaking the `kafka-protocol` crate's messages.
///
/// Requests are serialised: one request is on the wire at a time. Kafka answers requests on
/// one connection strictly in order and works on only one of them at a time, so pipelining
/// would save round-trip latency but no broker work; for admin and group-coordination calls
/// that is not worth rskafka's reader task, request map and cancellation cleanup. A caller that
/// must not queue behind a long call (heartbeats behind a JoinGroup) uses its own connection.
///
/// After any failure that leaves the stream position unknown (I/O error, undecodable
/// response, wrong correlation id, timeout, or a caller dropping the future mid-request) the
/// connection is *poisoned*: every later call fails at once with [`Error::Poisoned`] and the
/// caller opens a new connection.
///
/// `BrokerConnection` is `Send + Sync`; share it behind an `Arc`.
pub struct BrokerConnection {
    /// `host:port` as given to [`BrokerConnection::connect`].
    addr: String,
    /// Sent in every request header so broker logs and quotas can attribute us.
    client_id: StrBytes,
    /// Default bound for one round trip (waiting for the lock included).
    request_timeout: Duration,
    /// Largest frame read or written; see [`frame::DEFAULT_MAX_FRAME_BYTES`].
    max_frame_bytes: usize,
    /// The broker's supported versions per API key, from ApiVersions at connect time.
    broker_versions: BTreeMap<i16, VersionRange>,
    /// Set once, by the first failure that leaves the stream at an unknown position.
    poison: OnceLock<PoisonReason>,
    /// The socket plus the next correlation id. A tokio mutex because it is held across the
    /// whole write-then-read round trip, which is what keeps one request in flight.
    io: Mutex<Io>,
}

/// State that only the request holding the lock may touch.
struct Io {
    stream: Stream,
    next_correlation_id: i32,
}

impl BrokerConnection {
    /// Opens a connection to `addr` (`host:port`) as `connect` says: TCP with `TCP_NODELAY`,
    /// TLS when configured, then ApiVersions, then SASL authentication when configured.
    ///
    /// `connect.request_timeout()` bounds the TCP connect plus TLS handshake and, separately,
    /// each handshake request; it then becomes the default request timeout (see
    /// [`Self::with_request_timeout`]).
    ///
    /// ApiVersions is sent as v3; a broker too old for that answers UNSUPPORTED_VERSION in a
    /// v0 body, and we retry with v0 on the same connection, as the Java client does.
    ///
    /// # Errors
    /// [`Error::Connect`] if the socket cannot be opened in time; [`Error::Tls`] if the TLS
    /// handshake fails; any request error from ApiVersions; [`Error::Server`] if the broker
    /// answers ApiVersions with an error code; [`Error::Authentication`] if SASL fails.
    pub async fn connect(addr: &str, connect: &KafkaConnect) -> Result<Self> {
        let timeout = connect.request_timeout();
        let stream = transport::open(addr, connect.tls(), timeout).await?;
        let mut conn = Self {
            addr: addr.to_owned(),
            client_id: StrBytes::from_string(connect.client_id().to_owned()),
            request_timeout: timeout,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            broker_versions: BTreeMap::new(),
            poison: OnceLock::new(),
            io: Mutex::new(Io {
                stream,
                next_correlation_id: 0,
            }),
        };
        conn.broker_versions = conn.api_versions().await?;
        if let Some(sasl) = connect.sasl() {
            super::sasl::authenticate(&conn, sasl).await?;
        }
        Ok(conn)
    }

    /// Replaces the default request timeout (initially the connect timeout).
    #[must_use]
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Replaces the largest frame this connection reads or writes
    /// (default [`frame::DEFAULT_MAX_FRAME_BYTES`]).
    #[must_use]
    pub fn with_max_frame_bytes(mut self, max: usize) -> Self {
        self.max_frame_bytes = max;
        self
    }

    /// The `host:port` this connection was opened to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The default bound for one round trip.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Why the connection is poisoned, or `None` while it is usable.
    pub fn poisoned(&self) -> Option<PoisonReason> {
        self.poison.get().copied()
    }

    /// The version range the broker advertised for `api`, or `None` if it does not offer it.
    pub fn broker_versions(&self, api: ApiKey) -> Option<VersionRange> {
        self.broker_versions.get(&(api as i16)).copied()
    }

    /// The highest version of `api` that both the broker and the `kafka-protocol` crate's
    /// API table support. `None` if there is none.
    ///
    /// Use it to fill version-dependent request fields before sending. Caution: a request
    /// type can support fewer versions than its API key (kafka-protocol 0.18: the OffsetFetch
    /// key goes to 10, `OffsetFetchRequest` to 9), so cap by the type's `VERSIONS` as
    /// [`Self::request`] does when the exact version matters.
    pub fn version_for(&self, api: ApiKey) -> Option<i16> {
        self.negotiate_version(api, None).ok()
    }

    /// Like [`Self::version_for`], capped at `max` when given, with a typed error.
    ///
    /// # Errors
    /// [`Error::UnsupportedApi`] if the broker does not offer `api`;
    /// [`Error::UnsupportedVersion`] if the ranges (and cap) leave no version.
    pub fn negotiate_version(&self, api: ApiKey, max: Option<i16>) -> Result<i16> {
        self.pick_version(api, api.valid_versions(), max, false)
    }

    /// Sends `req` at the negotiated version ([`Self::version_for`]) and waits for the
    /// response, bounded by the request timeout.
    ///
    /// Top-level and per-item error codes in the response are *not* inspected: each API puts
    /// them in different places, so that is the caller's job.
    ///
    /// # Errors
    /// See [`Self::request_with`].
    ///
    /// # Cancellation
    /// Dropping the future after the request was written poisons the connection
    /// ([`PoisonReason::Cancelled`]): its response would be read by the next caller.
    pub async fn request<R: Request>(&self, req: R) -> Result<R::Response> {
        self.request_with(req, None, None).await
    }

    /// Sends `req` at exactly `version`, which must be supported by both sides.
    ///
    /// # Errors
    /// See [`Self::request_with`].
    pub async fn request_with_version<R: Request>(&self, req: R, version: i16) -> Result<R::Response> {
        self.request_with(req, Some(version), None).await
    }

    /// Sends `req` at the negotiated version with its own round-trip bound, for calls the
    /// broker may legitimately hold (JoinGroup waits up to the rebalance timeout).
    ///
    /// # Errors
    /// See [`Self::request_with`].
    pub async fn request_with_timeout<R: Request>(&self, req: R, timeout: Duration) -> Result<R::Response> {
        self.request_with(req, None, Some(timeout)).await
    }

    /// The general form: `version` (default: negotiated) and `timeout` (default: the
    /// connection's request timeout).
    ///
    /// # Errors
    /// - [`Error::Poisoned`]: an earlier call broke the connection; reconnect.
    /// - [`Error::UnsupportedApi`] / [`Error::UnsupportedVersion`]: nothing sent, connection
    ///   still usable.
    /// - [`Error::Encode`]: nothing sent, connection still usable.
    /// - [`Error::Timeout`]: poisons the connection, unless the time ran out while waiting for
    ///   another request to finish (then nothing was sent).
    /// - [`Error::Frame`], [`Error::Decode`], [`Error::CorrelationMismatch`]: poison the
    ///   connection, except [`FrameError::TooLarge`](super::FrameError::TooLarge) for the
    ///   request itself, which is refused before anything is written.
    ///
    /// # Cancellation
    /// As [`Self::request`].
    pub async fn request_with<R: Request>(
        &self,
        req: R,
        version: Option<i16>,
        timeout: Option<Duration>,
    ) -> Result<R::Response> {
        let api = ApiKey::try_from(R::KEY).map_err(|()| Error::UnsupportedApi { api: R::KEY })?;
        let version = match version {
            Some(v) => self.pick_version(api, R::VERSIONS, Some(v), true)?,
            None => self.pick_version(api, R::VERSIONS, None, false)?,
        };
        let timeout = timeout.unwrap_or(self.request_timeout);
        let mut body = self
            .round_trip(
                api,
                version,
                R::header_version(version),
                R::Response::header_version(version),
                &req,
                timeout,
            )
            .await?;
        self.decode_body::<R::Response>(api, version, &mut body)
    }

    /// Chooses a version from the intersection of the broker's and `client` range.
    /// `requested` is the exact version when `exact`, else an optional cap.
    fn pick_version(
        &self,
        api: ApiKey,
        client: VersionRange,
        requested: Option<i16>,
        exact: bool,
    ) -> Result<i16> {
        let broker = self
            .broker_versions(api)
            .ok_or(Error::UnsupportedApi { api: api as i16 })?;
        let common = broker.intersect(&client);
        let unsupported = Error::UnsupportedVersion {
            api,
            broker,
            client,
            requested,
        };
        let version = match (requested, exact) {
            (Some(v), true) if (common.min..=common.max).contains(&v) => v,
            (Some(_), true) => return Err(unsupported),
            (Some(cap), false) => common.max.min(cap),
            (None, _) => common.max,
        };
        if common.is_empty() || version < common.min {
            return Err(unsupported);
        }
        Ok(version)
    }

    /// Asks the broker for its supported versions, falling back from v3 to v0.
    async fn api_versions(&self) -> Result<BTreeMap<i16, VersionRange>> {
        let mut version = API_VERSIONS_FIRST;
        loop {
            let req = ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(CLIENT_SOFTWARE_NAME))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
            let mut body = self
                .round_trip(
                    ApiKey::ApiVersions,
                    version,
                    ApiVersionsRequest::header_version(version),
                    ApiVersionsResponse::header_version(version),
                    &req,
                    self.request_timeout,
                )
                .await?;
            // A broker that cannot parse our version answers in a v0 body (KIP-511), which the
            // v3 decoder would misread; the error code leads in every version, so peek at it.
            let code = body.first_chunk::<2>().map(|b| i16::from_be_bytes(*b));
            if code == Some(ResponseError::UnsupportedVersion.code()) && version > 0 {
                version = 0;
                continue;
            }
            let resp: ApiVersionsResponse = self.decode_body(ApiKey::ApiVersions, version, &mut body)?;
            if resp.error_code != 0 {
                return Err(Error::server(ApiKey::ApiVersions, resp.error_code, None));
            }
            return Ok(resp
                .api_keys
                .iter()
                .map(|k| {
                    let range = VersionRange {
                        min: k.min_version,
                        max: k.max_version,
                    };
                    (k.api_key, range)
                })
                .collect());
        }
    }

    /// Decodes a response body; a failure poisons the connection, because a body we cannot
    /// parse means we no longer agree with the broker on what is on the wire.
    fn decode_body<T: Decodable>(&self, api: ApiKey, version: i16, body: &mut Bytes) -> Result<T> {
        T::decode(body, version).map_err(|e| {
            self.poison(PoisonReason::Decode);
            Error::Decode {
                api,
                version,
                source: e.into(),
            }
        })
    }

    /// Writes one request frame and reads its response frame; returns the response body after
    /// the (checked) response header.
    async fn round_trip<B: Encodable>(
        &self,
        api: ApiKey,
        version: i16,
        request_header_version: i16,
        response_header_version: i16,
        body: &B,
        timeout: Duration,
    ) -> Result<Bytes> {
        self.check_poison()?;
        let deadline = Instant::now() + timeout;
        let timed_out = || Error::Timeout { api, after: timeout };
        // Waiting for another request to finish moves no bytes, so running out of time here
        // leaves the connection usable.
        let mut io = tokio::time::timeout_at(deadline, self.io.lock())
            .await
            .map_err(|_elapsed| timed_out())?;
        // The request we waited for may have poisoned the connection.
        self.check_poison()?;

        let correlation_id = io.next_correlation_id;
        io.next_correlation_id = io.next_correlation_id.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut payload = BytesMut::new();
        // Encoding is pure, so a failure here has written nothing: do not poison.
        header
            .encode(&mut payload, request_header_version)
            .and_then(|()| body.encode(&mut payload, version))
            .map_err(|e| Error::Encode {
                api,
                version,
                source: e.into(),
            })?;

        let max = self.max_frame_bytes;
        if payload.len() > max {
            // Caught here rather than by `write_frame` so that it does not poison: nothing
            // has been written.
            return Err(frame::FrameError::TooLarge {
                size: payload.len(),
                max,
            }
            .into());
        }

        // From the first byte written until the response is fully read, the stream is
        // mid-exchange: a drop of this future must poison the connection.
        let guard = PoisonOnDrop::new(&self.poison);
        let Io { stream, .. } = &mut *io;
        let exchange = async {
            frame::write_frame(stream, &payload, max).await?;
            frame::read_frame(stream, max).await
        };
        let mut response = match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                guard.poison(PoisonReason::Transport);
                return Err(e.into());
            }
            Err(_elapsed) => {
                guard.poison(PoisonReason::Timeout);
                return Err(timed_out());
            }
        };
        let header = match ResponseHeader::decode(&mut response, response_header_version) {
            Ok(header) => header,
            Err(e) => {
                guard.poison(PoisonReason::Decode);
                return Err(Error::Decode {
                    api,
                    version,
                    source: e.into(),
                });
            }
        };
        if header.correlation_id != correlation_id {
            // With one request in flight this can only be a broker bug or a stale response
            // from an exchange we lost track of; either way later frames cannot be trusted.
            guard.poison(PoisonReason::CorrelationMismatch);
            return Err(Error::CorrelationMismatch {
                api,
                expected: correlation_id,
                actual: header.correlation_id,
            });
        }
        guard.disarm();
        Ok(response)
    }

    fn check_poison(&self) -> Result<()> {
        match self.poison.get() {
            Some(&reason) => Err(Error::Poisoned {
                addr: self.addr.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    fn poison(&self, reason: PoisonReason) {
        // The first reason wins: it is the root cause, later ones are consequences.
        self.poison.get_or_init(|| reason);
    }
}

impl fmt::Debug for BrokerConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConnection")
            .field("addr", &self.addr)
            .field("client_id", &self.client_id)
            .field("request_timeout", &self.request_timeout)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("broker_apis", &self.broker_versions.len())
            .field("poisoned", &self.poison.get())
            .finish_non_exhaustive()
    }
}

/// Poisons the connection as [`PoisonReason::Cancelled`] if dropped while armed, i.e. if the
/// request future is dropped between writing the request and reading all of its response
/// (the role of rskafka's `CleanupRequestStateOnCancel`).
struct PoisonOnDrop<'a> {
    poison: &'a OnceLock<PoisonReason>,
    armed: bool,
}

impl<'a> PoisonOnDrop<'a> {
    fn new(poison: &'a OnceLock<PoisonReason>) -> Self {
        Self { poison, armed: true }
    }

    fn poison(mut self, reason: PoisonReason) {
        self.poison.get_or_init(|| reason);
        self.armed = false;
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for PoisonOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.poison.get_or_init(|| PoisonReason::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        ApiKey, CreateTopicsRequest, MetadataRequest, MetadataResponse, TopicName,
    };
    use kafka_protocol::protocol::{StrBytes, VersionRange};

    use super::super::testing::{Answer, Behaviour, FakeBroker, plain};
    use super::super::{Error, FrameError, PoisonReason, connect_any};
    use super::BrokerConnection;
    use crate::kafka::connect::KafkaConnect;

    const T: Duration = Duration::from_secs(5);

    fn range(min: i16, max: i16) -> VersionRange {
        VersionRange { min, max }
    }

    #[tokio::test]
    async fn negotiates_highest_common_version() {
        // Broker offers Metadata up to v9; the crate knows up to v13: expect v9, which is the
        // first flexible Metadata version (request header v2, response header v1).
        let broker = FakeBroker::start(&[
            (ApiKey::Metadata, range(0, 9)),
            // A broker newer than the crate: capped at the crate's v7.
            (ApiKey::CreateTopics, range(2, 42)),
        ])
        .await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        assert_eq!(conn.version_for(ApiKey::Metadata), Some(9));
        assert_eq!(conn.version_for(ApiKey::CreateTopics), Some(7));
        assert_eq!(conn.version_for(ApiKey::JoinGroup), None);
        assert_eq!(conn.negotiate_version(ApiKey::Metadata, Some(4)).unwrap(), 4);

        let resp: MetadataResponse = conn.request(MetadataRequest::default()).await.unwrap();
        assert_eq!(resp.brokers.len(), 1);
        // An explicit older version with a non-flexible header also round-trips.
        conn.request_with_version(MetadataRequest::default(), 1)
            .await
            .unwrap();
        assert_eq!(
            broker.seen(),
            vec![
                (ApiKey::ApiVersions as i16, 3),
                (ApiKey::Metadata as i16, 9),
                (ApiKey::Metadata as i16, 1),
            ]
        );
    }

    #[tokio::test]
    async fn unsupported_api_or_version_sends_nothing_and_keeps_connection() {
        let broker = FakeBroker::start(&[(ApiKey::Metadata, range(0, 9))]).await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();

        let err = conn.request(CreateTopicsRequest::default()).await.unwrap_err();
        assert!(matches!(err, Error::UnsupportedApi { api: 19 }), "{err:?}");
        let err = conn
            .request_with_version(MetadataRequest::default(), 10)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::UnsupportedVersion {
                    requested: Some(10),
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(conn.poisoned(), None);
        conn.request(MetadataRequest::default()).await.unwrap();
    }

    #[tokio::test]
    async fn api_versions_falls_back_to_v0() {
        let broker = FakeBroker::start_with(
            &[(ApiKey::Metadata, range(0, 12))],
            Behaviour {
                api_versions_max: 2,
                ..Behaviour::default()
            },
        )
        .await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        assert_eq!(conn.version_for(ApiKey::Metadata), Some(12));
        assert_eq!(
            broker.seen(),
            vec![(ApiKey::ApiVersions as i16, 3), (ApiKey::ApiVersions as i16, 0)]
        );
    }

    #[tokio::test]
    async fn api_versions_error_fails_connect() {
        let broker = FakeBroker::start_with(
            &[],
            Behaviour {
                api_versions_error: 42, // INVALID_REQUEST
                ..Behaviour::default()
            },
        )
        .await;
        let err = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Server {
                    api: ApiKey::ApiVersions,
                    code: 42,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn wrong_correlation_id_poisons() {
        let broker = FakeBroker::start_with(
            &[(ApiKey::Metadata, range(0, 12))],
            Behaviour {
                answer: Answer::WrongCorrelation,
                ..Behaviour::default()
            },
        )
        .await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        let err = conn.request(MetadataRequest::default()).await.unwrap_err();
        assert!(
            matches!(err, Error::CorrelationMismatch { expected, actual, .. } if actual == expected + 1000),
            "{err:?}"
        );
        let err = conn.request(MetadataRequest::default()).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Poisoned {
                    reason: PoisonReason::CorrelationMismatch,
                    ..
                }
            ),
            "{err:?}"
        );
        // Poisoned calls fail without touching the socket.
        assert_eq!(broker.seen().len(), 2);
    }

    #[tokio::test]
    async fn timeout_within_bound_then_poisoned() {
        let broker = FakeBroker::start_with(
            &[(ApiKey::Metadata, range(0, 12))],
            Behaviour {
                answer: Answer::Never,
                ..Behaviour::default()
            },
        )
        .await;
        let bound = Duration::from_millis(200);
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap()
            .with_request_timeout(bound);
        let started = std::time::Instant::now();
        let err = conn.request(MetadataRequest::default()).await.unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(err, Error::Timeout { api: ApiKey::Metadata, after } if after == bound),
            "{err:?}"
        );
        assert!(took >= bound && took < bound * 5, "took {took:?}");

        let started = std::time::Instant::now();
        let err = conn
            .request_with_timeout(MetadataRequest::default(), T)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Poisoned {
                    reason: PoisonReason::Timeout,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn dropping_a_request_mid_flight_poisons() {
        let broker = FakeBroker::start_with(
            &[(ApiKey::Metadata, range(0, 12))],
            Behaviour {
                answer: Answer::Never,
                ..Behaviour::default()
            },
        )
        .await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        let outer = tokio::time::timeout(
            Duration::from_millis(100),
            conn.request(MetadataRequest::default()),
        )
        .await;
        assert!(outer.is_err(), "the broker never answers");
        assert_eq!(conn.poisoned(), Some(PoisonReason::Cancelled));
    }

    #[tokio::test]
    async fn waiting_for_the_lock_does_not_poison() {
        // A long call holds the connection; a short call behind it times out while queued
        // and must not poison the connection, since it never wrote anything.
        let broker = FakeBroker::start_with(
            &[(ApiKey::Metadata, range(0, 12))],
            Behaviour {
                answer: Answer::After(Duration::from_millis(400)),
                ..Behaviour::default()
            },
        )
        .await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        let long = conn.request(MetadataRequest::default());
        let short = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            conn.request_with_timeout(MetadataRequest::default(), Duration::from_millis(100))
                .await
        };
        let (long, short) = tokio::join!(long, short);
        long.unwrap();
        assert!(matches!(short, Err(Error::Timeout { .. })), "{short:?}");
        assert_eq!(conn.poisoned(), None);
        conn.request(MetadataRequest::default()).await.unwrap();
    }

    #[tokio::test]
    async fn broker_closing_the_socket_poisons() {
        let broker = FakeBroker::start_with(
            &[(ApiKey::Metadata, range(0, 12))],
            Behaviour {
                answer: Answer::Close,
                ..Behaviour::default()
            },
        )
        .await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap();
        let err = conn.request(MetadataRequest::default()).await.unwrap_err();
        assert!(matches!(err, Error::Frame(_)), "{err:?}");
        assert_eq!(conn.poisoned(), Some(PoisonReason::Transport));
    }

    #[tokio::test]
    async fn frame_limit_applies_both_ways() {
        let broker = FakeBroker::start_with(
            &[(ApiKey::Metadata, range(0, 12))],
            Behaviour {
                topics: vec![("big".to_owned(), 50)],
                ..Behaviour::default()
            },
        )
        .await;
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap()
            .with_max_frame_bytes(4);
        // A request over the limit is refused before anything is written: still usable.
        let err = conn.request(MetadataRequest::default()).await.unwrap_err();
        assert!(
            matches!(err, Error::Frame(FrameError::TooLarge { max: 4, .. })),
            "{err:?}"
        );
        assert_eq!(conn.poisoned(), None);
        assert_eq!(broker.seen().len(), 1);

        // A response over the limit (50 partitions) arrives after the request went out.
        let conn = BrokerConnection::connect(&broker.addr(), &plain(T))
            .await
            .unwrap()
            .with_max_frame_bytes(200);
        let topic =
            MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str("big"))));
        let err = conn
            .request(MetadataRequest::default().with_topics(Some(vec![topic])))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Frame(FrameError::TooLarge { max: 200, .. })),
            "{err:?}"
        );
        assert_eq!(conn.poisoned(), Some(PoisonReason::Transport));
    }

    #[tokio::test]
    async fn connect_timeout_and_refused() {
        // 192.0.2.0/24 (TEST-NET-1) is never routed: the SYN goes unanswered, or the network
        // rejects it at once; both must come back as `Connect`, within the bound.
        let started = std::time::Instant::now();
        let err = BrokerConnection::connect("192.0.2.1:9092", &plain(Duration::from_millis(200)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Connect { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));

        let dead = FakeBroker::dead_addr().await;
        let err = BrokerConnection::connect(&dead, &plain(T)).await.unwrap_err();
        assert!(
            matches!(&err, Error::Connect { addr, source } if *addr == dead
                && source.kind() == std::io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn connect_any_falls_through_dead_addresses() {
        let broker = FakeBroker::start(&[(ApiKey::Metadata, range(0, 12))]).await;
        let dead = FakeBroker::dead_addr().await;
        let conn = connect_any(&KafkaConnect::plaintext(
            vec![dead.clone(), broker.addr()],
            "t",
            T,
        ))
        .await
        .unwrap();
        assert_eq!(conn.addr(), broker.addr());

        let err = connect_any(&KafkaConnect::plaintext(
            vec![dead.clone(), "not a host:1".to_owned()],
            "t",
            T,
        ))
        .await
        .unwrap_err();
        let Error::NoBrokerReachable { failures } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(failures.len(), 2);
        assert_eq!(failures[0].0, dead);
        let text = err.to_string();
        assert!(text.contains(&dead) && text.contains("not a host:1"), "{text}");

        let err = connect_any(&KafkaConnect::plaintext(vec![], "t", T))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no bootstrap addresses"), "{err}");
    }

    #[test]
    fn connection_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<BrokerConnection>();
    }
}
