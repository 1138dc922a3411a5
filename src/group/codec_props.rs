//! Property tests of the consumer-protocol codec: what we write we read back, and no payload
//! from another group member (a leader's assignment, a member's subscription) makes the
//! decoder panic or allocate for lengths the payload cannot hold.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;

use super::codec::{decode_assignment, decode_subscription, encode_assignment, encode_subscription};
use crate::proptests::{config, nasty_string};

/// A payload that starts like a real one: a version prefix (sometimes negative or from the
/// future), then arbitrary bytes; array lengths land where the decoder reads them.
fn payload() -> impl Strategy<Value = Bytes> {
    (
        prop_oneof![0i16..=5, any::<i16>()],
        prop::collection::vec(any::<u8>(), 0..128),
    )
        .prop_map(|(version, body)| {
            let mut out = version.to_be_bytes().to_vec();
            out.extend(body);
            Bytes::from(out)
        })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn subscriptions_round_trip(
        topic in nasty_string(24),
        owned in prop::collection::vec(any::<i32>(), 0..16),
        generation in any::<i32>(),
    ) {
        let sub = decode_subscription(&encode_subscription(&topic, &owned, generation));
        prop_assert!(sub.is_ok(), "{:?}", sub);
        let sub = sub.expect("checked");
        prop_assert_eq!(&sub.topics, &vec![topic.clone()]);
        prop_assert_eq!(sub.owned_of(&topic), owned.clone());
        prop_assert_eq!(sub.owned.is_empty(), owned.is_empty());
        prop_assert_eq!(sub.generation, generation);
    }

    /// Topics listed twice have their partitions merged; topics without partitions are left out.
    #[test]
    fn assignments_round_trip(
        assigned in prop::collection::vec(
            (prop_oneof![nasty_string(12), Just("t".to_owned())], prop::collection::vec(any::<i32>(), 0..8)),
            0..8,
        ),
    ) {
        let mut want: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partitions) in &assigned {
            if !partitions.is_empty() {
                want.entry(topic.clone()).or_default().extend(partitions);
            }
        }
        let got = decode_assignment(&encode_assignment(&assigned));
        prop_assert!(got.is_ok(), "{:?}", got);
        prop_assert_eq!(got.expect("checked"), want.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn arbitrary_payloads_never_panic(payload in payload(), raw in prop::collection::vec(any::<u8>(), 0..64)) {
        // Whatever decodes holds no more entries than the payload has bytes.
        for payload in [payload, Bytes::from(raw)] {
            if let Ok(sub) = decode_subscription(&payload) {
                prop_assert!(sub.topics.len() + sub.owned.len() <= payload.len());
            }
            if let Ok(assigned) = decode_assignment(&payload) {
                let entries: usize = assigned.iter().map(|(_, p)| 1 + p.len()).sum();
                prop_assert!(entries <= payload.len());
            }
        }
    }
}
