//! The closed label values: every label but group, topic, partition, ACL and host comes from
//! one of these enums, so a label's values are known in advance and bounded.

/// Why `/rpc/call` refused a call (`bigpipe_calls_refused_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The whole ingest queue was full (or shutting down: the queue takes nothing more).
    QueueFull,
    /// The caller's ACL had used its share of the queue.
    AclShare,
    /// The record could never be written to Kafka.
    TooLarge,
    /// The destination policy refused the URL.
    Destination,
    /// Unknown ACL name or wrong secret.
    Acl,
    /// The source failed too many ACL checks.
    Throttled,
    /// The ACL was over its quota.
    Quota,
    /// Anything else wrong with the request (bad JSON, method, timeout reading the body).
    Invalid,
}

impl Refusal {
    /// Every value, in label order.
    pub const ALL: [Self; 8] = [
        Self::QueueFull,
        Self::AclShare,
        Self::TooLarge,
        Self::Destination,
        Self::Acl,
        Self::Throttled,
        Self::Quota,
        Self::Invalid,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::QueueFull => "queue_full",
            Self::AclShare => "acl_share",
            Self::TooLarge => "too_large",
            Self::Destination => "destination",
            Self::Acl => "acl",
            Self::Throttled => "throttled",
            Self::Quota => "quota",
            Self::Invalid => "invalid",
        }
    }
}

/// How one delivery attempt ended (`bigpipe_delivery_attempts_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered with a success status.
    Delivered,
    /// The target answered with any other status.
    HttpError,
    /// No answer within the entry's timeout.
    Timeout,
    /// No connection (DNS, refused, TLS).
    ConnectError,
    /// The destination policy refused the target's addresses.
    Refused,
    /// The request could not be built, or the pool was down.
    Other,
}

impl Outcome {
    /// Every value, in label order.
    pub const ALL: [Self; 6] = [
        Self::Delivered,
        Self::HttpError,
        Self::Timeout,
        Self::ConnectError,
        Self::Refused,
        Self::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::HttpError => "http_error",
            Self::Timeout => "timeout",
            Self::ConnectError => "connect_error",
            Self::Refused => "refused",
            Self::Other => "other",
        }
    }
}

/// The class of an attempt's HTTP status (`status_class`); `None` when there was no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 200..=299.
    S2xx,
    /// 300..=399.
    S3xx,
    /// 400..=499.
    S4xx,
    /// 500..=599 (and anything out of range: a target that answers 600 is broken).
    S5xx,
    /// No status: timeout, connection error, refused.
    None,
}

impl StatusClass {
    /// Every value, in label order.
    pub const ALL: [Self; 5] = [Self::S2xx, Self::S3xx, Self::S4xx, Self::S5xx, Self::None];

    /// The class of `status`.
    pub fn of(status: Option<u16>) -> Self {
        match status {
            None => Self::None,
            Some(200..=299) => Self::S2xx,
            Some(300..=399) => Self::S3xx,
            Some(400..=499) => Self::S4xx,
            Some(_) => Self::S5xx,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S2xx => "2xx",
            Self::S3xx => "3xx",
            Self::S4xx => "4xx",
            Self::S5xx => "5xx",
            Self::None => "none",
        }
    }
}

/// Why a call was dead-lettered (`bigpipe_dead_letters_total{reason}`): the classes of the
/// free-text reasons in `consumer::call` and `consumer::dlq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Every allowed attempt failed (or the circuit held the call past its budget).
    AttemptsExhausted,
    /// The target answered a status that is not retried, or the request can never be sent.
    NotRetryable,
    /// The destination policy refused the target.
    DestinationRefused,
    /// The record is not a call.
    InvalidRecord,
    /// The record's batch could not be read.
    Unreadable,
    /// The call's time budget (`retryFor`) ran out before its attempts did.
    Expired,
    /// None of the above.
    Other,
}

impl DeadLetterReason {
    /// Every value, in label order.
    pub const ALL: [Self; 7] = [
        Self::AttemptsExhausted,
        Self::NotRetryable,
        Self::DestinationRefused,
        Self::InvalidRecord,
        Self::Unreadable,
        Self::Expired,
        Self::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::NotRetryable => "not_retryable",
            Self::DestinationRefused => "destination_refused",
            Self::InvalidRecord => "invalid_record",
            Self::Unreadable => "unreadable",
            Self::Expired => "expired",
            Self::Other => "other",
        }
    }
}

/// Index of `value` in `all` (the enums above are small and `ALL` lists each once).
pub(crate) fn index<T: PartialEq>(all: &[T], value: &T) -> usize {
    all.iter().position(|v| v == value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes_cover_every_status() {
        assert_eq!(StatusClass::of(None).as_str(), "none");
        assert_eq!(StatusClass::of(Some(204)).as_str(), "2xx");
        assert_eq!(StatusClass::of(Some(301)).as_str(), "3xx");
        assert_eq!(StatusClass::of(Some(429)).as_str(), "4xx");
        assert_eq!(StatusClass::of(Some(503)).as_str(), "5xx");
        assert_eq!(StatusClass::of(Some(100)).as_str(), "5xx");
    }

    #[test]
    fn every_value_is_listed_once() {
        assert_eq!(index(&Outcome::ALL, &Outcome::Other), 5);
        assert_eq!(index(&Refusal::ALL, &Refusal::Invalid), 7);
        assert_eq!(index(&DeadLetterReason::ALL, &DeadLetterReason::Other), 6);
    }
}
