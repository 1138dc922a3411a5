//! The opaque paging cursor of the dead-letter list: the next offset to read of each
//! partition of the dead-letter topic.
//!
//! Encoded as unpadded URL-safe base64 of `v1;<partition>:<offset>,...` so it survives a
//! query string untouched. A caller can still hand us anything, so decoding checks every
//! part: a bad cursor is the caller's mistake (400), never a panic or a huge allocation.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Longest cursor accepted, in characters: 10,000 partitions at ~30 characters each, base64'd.
const MAX_LEN: usize = 400_000;

/// Most partitions a cursor may name (Kafka allows far fewer per topic in practice).
pub const MAX_PARTITIONS: usize = 10_000;

const VERSION: &str = "v1";

/// Why a cursor was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    /// Longer than [`MAX_LEN`].
    #[error("cursor too long")]
    TooLong,
    /// Not base64 or not UTF-8.
    #[error("cursor is not one this server issued")]
    Garbled,
    /// Another format version.
    #[error("cursor version not supported")]
    Version,
    /// A `partition:offset` pair that does not parse or is negative.
    #[error("cursor entry {0:?} is not partition:offset")]
    Entry(String),
    /// A partition named twice.
    #[error("cursor names partition {0} twice")]
    Duplicate(i32),
    /// More than [`MAX_PARTITIONS`] entries.
    #[error("cursor names too many partitions")]
    TooMany,
}

/// Where each partition's scan goes on: the next offset to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Next offset per partition; a partition not named starts at its log start.
    pub next: BTreeMap<i32, i64>,
}

impl Cursor {
    /// The opaque string form.
    pub fn encode(&self) -> String {
        let pairs: Vec<String> = self.next.iter().map(|(p, o)| format!("{p}:{o}")).collect();
        URL_SAFE_NO_PAD.encode(format!("{VERSION};{}", pairs.join(",")))
    }

    /// Reads a cursor made by [`Cursor::encode`].
    ///
    /// # Errors
    /// [`CursorError`] for anything this server would not have issued.
    pub fn decode(text: &str) -> Result<Self, CursorError> {
        if text.len() > MAX_LEN {
            return Err(CursorError::TooLong);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| CursorError::Garbled)?;
        let plain = String::from_utf8(bytes).map_err(|_| CursorError::Garbled)?;
        let (version, body) = plain.split_once(';').ok_or(CursorError::Garbled)?;
        if version != VERSION {
            return Err(CursorError::Version);
        }
        let mut next = BTreeMap::new();
        for pair in body.split(',').filter(|p| !p.is_empty()) {
            if next.len() == MAX_PARTITIONS {
                return Err(CursorError::TooMany);
            }
            let bad = || CursorError::Entry(pair.chars().take(40).collect());
            let (p, o) = pair.split_once(':').ok_or_else(bad)?;
            let p: i32 = p.parse().map_err(|_| bad())?;
            let o: i64 = o.parse().map_err(|_| bad())?;
            if p < 0 || o < 0 {
                return Err(bad());
            }
            if next.insert(p, o).is_some() {
                return Err(CursorError::Duplicate(p));
            }
        }
        Ok(Self { next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let c = Cursor {
            next: BTreeMap::from([(0, 17), (3, 0), (11, i64::MAX)]),
        };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        let empty = Cursor::default();
        assert_eq!(Cursor::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn hostile_cursors_are_refused_with_a_reason() {
        let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
        assert_eq!(Cursor::decode("%%%"), Err(CursorError::Garbled));
        assert_eq!(
            Cursor::decode(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
            Err(CursorError::Garbled)
        );
        assert_eq!(Cursor::decode(&enc("0:1")), Err(CursorError::Garbled));
        assert_eq!(Cursor::decode(&enc("v9;0:1")), Err(CursorError::Version));
        assert!(matches!(
            Cursor::decode(&enc("v1;0:-1")),
            Err(CursorError::Entry(_))
        ));
        assert!(matches!(
            Cursor::decode(&enc("v1;-2:1")),
            Err(CursorError::Entry(_))
        ));
        assert!(matches!(
            Cursor::decode(&enc("v1;0:x")),
            Err(CursorError::Entry(_))
        ));
        assert!(matches!(Cursor::decode(&enc("v1;0")), Err(CursorError::Entry(_))));
        assert!(matches!(
            Cursor::decode(&enc("v1;0:99999999999999999999")),
            Err(CursorError::Entry(_))
        ));
        assert_eq!(Cursor::decode(&enc("v1;1:2,1:3")), Err(CursorError::Duplicate(1)));
        let many: Vec<String> = (0..=MAX_PARTITIONS).map(|p| format!("{p}:0")).collect();
        assert_eq!(
            Cursor::decode(&enc(&format!("v1;{}", many.join(",")))),
            Err(CursorError::TooMany)
        );
        assert_eq!(
            Cursor::decode(&"A".repeat(MAX_LEN + 1)),
            Err(CursorError::TooLong)
        );
    }
}
