//! The control topic's keys, built in one place so writers and readers agree.
//!
//! Group ids and topic names may contain `/`? Topic names cannot (`[a-zA-Z0-9._-]`); a group id
//! can, which only makes the key longer, never ambiguous for a lookup by exact key.

/// `pause/<group>/<topic>`: `{"paused": bool, "by", "atMs"}`.
pub fn pause(group: &str, topic: &str) -> String {
    format!("pause/{group}/{topic}")
}

/// `seek/<group>/<topic>`: a retransmit (see `crate::consumer`'s seek handling).
pub fn seek(group: &str, topic: &str) -> String {
    format!("seek/{group}/{topic}")
}

/// `replay/<dlqTopic>/<partition>/<offset>`: a dead letter that was replayed.
pub fn replay(dlq_topic: &str, partition: i32, offset: i64) -> String {
    format!("replay/{dlq_topic}/{partition}/{offset}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape() {
        assert_eq!(pause("g", "t"), "pause/g/t");
        assert_eq!(seek("g", "t"), "seek/g/t");
        assert_eq!(replay("t.dlq", 2, 40), "replay/t.dlq/2/40");
    }
}
