//! A walk over a consumer-protocol payload's layout before kafka-protocol decodes it.
//!
//! kafka-protocol's array decoder reserves room for the declared element count before it reads
//! any element (`Vec::with_capacity(n)`), so a payload of a few bytes that declares 2^31 topics
//! asks for tens of gigabytes, and the failed allocation aborts the process. These payloads come
//! from other group members (a member's subscription, the leader's assignment), so any client
//! that can join the group could stop bigpipe. Walking the layout first and refusing a count
//! that the remaining bytes cannot hold keeps every reservation within the payload's size.

/// Where the walk stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The bytes ended: the decoder reports this itself (allocating nothing), so it is not ours
    /// to refuse.
    Truncated,
    /// An array declares more elements than the rest of the payload can hold.
    Oversized {
        /// The declared element count.
        declared: i32,
        /// The bytes left when it was read.
        room: usize,
    },
}

/// A cursor over the payload body (after the version prefix).
struct Walk<'a> {
    rest: &'a [u8],
}

impl Walk<'_> {
    fn take(&mut self, n: usize) -> Result<(), Stop> {
        self.rest = self.rest.get(n..).ok_or(Stop::Truncated)?;
        Ok(())
    }

    fn int<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let bytes: [u8; N] = self
            .rest
            .get(..N)
            .and_then(|b| b.try_into().ok())
            .ok_or(Stop::Truncated)?;
        self.rest = &self.rest[N..];
        Ok(bytes)
    }

    /// A (nullable) string: i16 length, -1 for null.
    fn string(&mut self) -> Result<(), Stop> {
        let len = i16::from_be_bytes(self.int()?);
        self.take(usize::try_from(len).unwrap_or(0))
    }

    /// Nullable bytes: i32 length, -1 for null.
    fn bytes(&mut self) -> Result<(), Stop> {
        let len = i32::from_be_bytes(self.int()?);
        self.take(usize::try_from(len).unwrap_or(0))
    }

    /// An array of elements of at least `min_size` bytes each, each walked by `element`.
    /// A negative count (null) holds nothing; the decoder decides whether null is allowed.
    fn array(
        &mut self,
        min_size: usize,
        mut element: impl FnMut(&mut Self) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        let declared = i32::from_be_bytes(self.int()?);
        let Ok(count) = usize::try_from(declared) else {
            return Ok(());
        };
        let room = self.rest.len();
        if count.saturating_mul(min_size) > room {
            return Err(Stop::Oversized { declared, room });
        }
        (0..count).try_for_each(|_| element(self))
    }

    /// `{ topic: string, partitions: [i32] }`: at least a length and a count.
    fn topic_partitions(&mut self) -> Result<(), Stop> {
        self.array(2 + 4, |w| {
            w.string()?;
            w.array(4, |w| w.int::<4>().map(drop))
        })
    }
}

/// Walks a `ConsumerProtocolSubscription` body of `version` (0..=3).
pub(crate) fn check_subscription(body: &[u8], version: i16) -> Result<(), Stop> {
    let mut w = Walk { rest: body };
    w.array(2, Walk::string)?;
    w.bytes()?;
    if version >= 1 {
        w.topic_partitions()?;
    }
    // v2's generation and v3's rack id are fixed-size or length-checked by the decoder.
    Ok(())
}

/// Walks a `ConsumerProtocolAssignment` body (every version shares this layout).
pub(crate) fn check_assignment(body: &[u8]) -> Result<(), Stop> {
    let mut w = Walk { rest: body };
    w.topic_partitions()?;
    w.bytes()
}
