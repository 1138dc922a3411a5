//! What an rskafka error means for the next attempt: the one table every retry decision at
//! the rskafka seam reads (the producer's writers, the single-record writer of retry tiers
//! and dead letters, the fetch loop), so "can trying again help?" is answered once, by a
//! `match` on the error, never on its text.
//!
//! It also answers "is the cached partition client still good?". rskafka's
//! `PartitionClient` re-resolves its leader itself: on a broken connection, `NOT_LEADER_OR_FOLLOWER`
//! and `UNKNOWN_TOPIC_OR_PARTITION` it drops its broker connection and looks the leader up again
//! before its next request (`maybe_retry` in rskafka's `client/partition.rs`). What it cannot see
//! is a request our own timeout cut short (rskafka has no timeouts: a silently dead connection
//! would be waited on forever), and it gives up with `RetryFailed` once its backoff deadline
//! passes. After those, and after an answer it could not parse, the cached client is dropped
//! so the next attempt starts with a fresh leader lookup and connection. A broker's error answer
//! (too large, out of range, not authorised) proves the connection works: the client is kept.

use rskafka::client::error::{Error as RsError, ProtocolError, RequestError};
use rskafka::client::producer::Error as BatchError;

use super::client;

/// What a failed request means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The record is refused for its size: the same record will never be accepted.
    TooLarge,
    /// The offset asked for is outside the partition's log (deleted by retention, or the topic
    /// was recreated): only a new position helps.
    OutOfRange,
    /// Anything else: the broker may come back, the leader may settle; try again later.
    Transient,
}

/// Classifies an rskafka error.
pub fn fault(e: &RsError) -> Fault {
    match e {
        RsError::ServerError {
            protocol_error: ProtocolError::MessageTooLarge | ProtocolError::RecordListTooLarge,
            ..
        } => Fault::TooLarge,
        // rskafka refuses to frame a request over i32::MAX bytes. Its error type is private;
        // of its two variants only that one (`TooLarge`) has no source (the other wraps I/O).
        RsError::Request(RequestError::WriteMessageError(w)) if std::error::Error::source(w).is_none() => {
            Fault::TooLarge
        }
        RsError::ServerError {
            protocol_error: ProtocolError::OffsetOutOfRange,
            ..
        } => Fault::OutOfRange,
        _ => Fault::Transient,
    }
}

/// Whether a cached partition client should be dropped after `e` (see the module docs).
pub fn stale_client(e: &client::Error) -> bool {
    match e {
        client::Error::Timeout { .. } => true,
        // No connection was made, so nothing cached is known to be good.
        client::Error::Connect(_) => true,
        client::Error::Kafka(e) => stale_after(e),
    }
}

/// [`stale_client`] for an error of rskafka's batch producer: its own refusals (the
/// aggregator's, a record too large for a batch) say nothing about the connection; a client
/// error is judged by [`stale_after`]; a failed flush is treated as stale, to be safe.
pub fn stale_after_produce(e: &BatchError) -> bool {
    match e {
        BatchError::Client(e) => stale_after(e),
        BatchError::FlushError(_) => true,
        BatchError::Aggregator(_) | BatchError::TooLarge => false,
    }
}

/// [`stale_client`] for an error rskafka returned (not one of our timeouts): anything but a
/// broker's answer.
pub fn stale_after(e: &RsError) -> bool {
    !matches!(e, RsError::ServerError { .. })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rskafka::client::error::RequestContext;

    use super::*;

    fn server(protocol_error: ProtocolError) -> RsError {
        RsError::ServerError {
            protocol_error,
            error_message: None,
            request: RequestContext::Partition("t".into(), 0),
            response: None,
            is_virtual: false,
        }
    }

    #[test]
    fn size_refusals_are_final_and_out_of_range_asks_for_a_new_position() {
        assert_eq!(fault(&server(ProtocolError::MessageTooLarge)), Fault::TooLarge);
        assert_eq!(fault(&server(ProtocolError::RecordListTooLarge)), Fault::TooLarge);
        assert_eq!(fault(&server(ProtocolError::OffsetOutOfRange)), Fault::OutOfRange);
    }

    #[test]
    fn leader_moves_outages_and_refusals_are_transient() {
        for e in [
            server(ProtocolError::NotLeaderOrFollower),
            server(ProtocolError::UnknownTopicOrPartition),
            server(ProtocolError::TopicAuthorizationFailed),
            RsError::Timeout,
            RsError::InvalidResponse("garbled".into()),
        ] {
            assert_eq!(fault(&e), Fault::Transient, "{e}");
        }
    }

    #[test]
    fn a_cached_client_is_dropped_after_a_cut_short_or_broken_request_only() {
        let timeout = client::Error::Timeout {
            what: "fetch",
            after: Duration::from_secs(1),
        };
        assert!(
            stale_client(&timeout),
            "our timeout: the connection may be wedged"
        );
        assert!(stale_client(&client::Error::Kafka(RsError::InvalidResponse(
            "x".into()
        ))));
        assert!(stale_client(&client::Error::Kafka(RsError::Timeout)));
        assert!(stale_after_produce(&BatchError::Client(std::sync::Arc::new(
            RsError::Timeout
        ))));
        assert!(!stale_after_produce(&BatchError::Client(std::sync::Arc::new(
            server(ProtocolError::MessageTooLarge)
        ))));
        assert!(!stale_after_produce(&BatchError::TooLarge));
        for kept in [
            ProtocolError::MessageTooLarge,
            ProtocolError::OffsetOutOfRange,
            ProtocolError::NotLeaderOrFollower,
            ProtocolError::TopicAuthorizationFailed,
        ] {
            let e = client::Error::Kafka(server(kept));
            assert!(!stale_client(&e), "the broker answered: {e}");
        }
    }
}
