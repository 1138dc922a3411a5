//! The Kafka error table: how each wire error affects membership.

use kafka_protocol::error::ResponseError;

use crate::kafka::wire;

/// How an error affects membership (rust-deps.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// REBALANCE_IN_PROGRESS: revoke, rejoin with the same id.
    Rebalance,
    /// ILLEGAL_GENERATION: partitions lost, rejoin with the same id.
    IllegalGeneration,
    /// UNKNOWN_MEMBER_ID: partitions lost, rejoin with a new id.
    UnknownMember,
    /// FENCED_INSTANCE_ID: partitions lost, stop.
    Fenced,
    /// NOT_COORDINATOR, COORDINATOR_NOT_AVAILABLE, any connection failure: find the
    /// coordinator again; membership survives while the session does.
    Coordinator,
    /// COORDINATOR_LOAD_IN_PROGRESS: same coordinator, later.
    Loading,
    /// Needs an operator: retry slowly, never crash.
    Fatal,
    /// Anything else: retry with backoff.
    Transient,
}

/// Classifies a wire error.
pub(crate) fn classify(err: &wire::Error) -> Class {
    use wire::Error as E;
    match err {
        E::Server { error, .. } | E::Topic { error, .. } => match error {
            ResponseError::RebalanceInProgress => Class::Rebalance,
            ResponseError::IllegalGeneration => Class::IllegalGeneration,
            ResponseError::UnknownMemberId => Class::UnknownMember,
            ResponseError::FencedInstanceId => Class::Fenced,
            ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable => Class::Coordinator,
            ResponseError::CoordinatorLoadInProgress => Class::Loading,
            ResponseError::InconsistentGroupProtocol
            | ResponseError::InvalidSessionTimeout
            | ResponseError::GroupAuthorizationFailed
            | ResponseError::GroupMaxSizeReached
            | ResponseError::InvalidGroupId => Class::Fatal,
            _ => Class::Transient,
        },
        // The stream is (or may be) broken, or the broker is gone: reconnect. A timeout spent
        // only waiting for the connection's lock leaves it usable, but a connection that busy
        // is as good as lost for heartbeats.
        E::Connect { .. }
        | E::Timeout { .. }
        | E::Frame(_)
        | E::Decode { .. }
        | E::CorrelationMismatch { .. }
        | E::Poisoned { .. }
        | E::NoBrokerReachable { .. } => Class::Coordinator,
        // The broker cannot speak what we need: no retry will fix that quickly.
        E::UnsupportedApi { .. }
        | E::UnsupportedVersion { .. }
        | E::VersionTooOld { .. }
        | E::Encode { .. } => Class::Fatal,
        // Wrong credentials or an untrusted certificate: an operator must act; retry slowly.
        E::Tls { .. } | E::Authentication { .. } => Class::Fatal,
        E::MissingInResponse { .. } => Class::Transient,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kafka_protocol::messages::ApiKey;

    use super::*;
    use crate::kafka::wire::PoisonReason;

    fn server(api: ApiKey, error: ResponseError) -> wire::Error {
        wire::Error::server(api, error.code(), None)
    }

    #[test]
    fn classification_table() {
        use ResponseError as R;
        let cases = [
            (R::RebalanceInProgress, Class::Rebalance),
            (R::IllegalGeneration, Class::IllegalGeneration),
            (R::UnknownMemberId, Class::UnknownMember),
            (R::FencedInstanceId, Class::Fenced),
            (R::NotCoordinator, Class::Coordinator),
            (R::CoordinatorNotAvailable, Class::Coordinator),
            (R::CoordinatorLoadInProgress, Class::Loading),
            (R::InconsistentGroupProtocol, Class::Fatal),
            (R::InvalidSessionTimeout, Class::Fatal),
            (R::GroupAuthorizationFailed, Class::Fatal),
            (R::GroupMaxSizeReached, Class::Fatal),
            (R::OffsetMetadataTooLarge, Class::Transient),
        ];
        for (error, class) in cases {
            assert_eq!(classify(&server(ApiKey::Heartbeat, error)), class, "{error:?}");
        }
        let broken = wire::Error::Poisoned {
            addr: "127.0.0.1:9092".to_owned(),
            reason: PoisonReason::Transport,
        };
        assert_eq!(classify(&broken), Class::Coordinator);
        assert_eq!(
            classify(&wire::Error::Timeout {
                api: ApiKey::Heartbeat,
                after: Duration::from_secs(1)
            }),
            Class::Coordinator
        );
        assert_eq!(classify(&wire::Error::UnsupportedApi { api: 11 }), Class::Fatal);
    }
}
