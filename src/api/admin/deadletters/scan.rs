//! One bounded page of a dead-letter topic: partitions in order, offsets in order, at most
//! `limit` matches and at most `budget` records read, then a cursor to go on from.
//!
//! A page never reads without bound: a filter that matches nothing in a million letters
//! costs each request `budget` records, and the caller follows the cursor.

use std::future::Future;

use rskafka::record::Record;

use super::cursor::Cursor;
use super::filter::Filter;
use super::letter::Summary;
use super::reader::DlqReader;
use crate::kafka::client;

/// Records one list request reads at most.
pub const SCAN_BUDGET: usize = 5_000;

/// Where the letters come from: a dead-letter topic, or a fake in tests.
pub trait LetterSource {
    /// The topic's name (for call ids of Go-written letters).
    fn topic(&self) -> &str;
    /// Log start and log end of `partition`.
    fn bounds(&self, partition: i32) -> impl Future<Output = Result<(i64, i64), client::Error>> + Send;
    /// Some records from `offset` on, in order, none before `offset`.
    fn fetch(
        &self,
        partition: i32,
        offset: i64,
    ) -> impl Future<Output = Result<Vec<(i64, Record)>, client::Error>> + Send;
}

impl LetterSource for DlqReader {
    fn topic(&self) -> &str {
        DlqReader::topic(self)
    }

    fn bounds(&self, partition: i32) -> impl Future<Output = Result<(i64, i64), client::Error>> + Send {
        DlqReader::bounds(self, partition)
    }

    fn fetch(
        &self,
        partition: i32,
        offset: i64,
    ) -> impl Future<Output = Result<Vec<(i64, Record)>, client::Error>> + Send {
        DlqReader::fetch(self, partition, offset)
    }
}

/// One page: the matches (with their records) and the cursor to go on from, `None` when
/// every partition was read to its end.
#[derive(Debug)]
pub struct Page {
    /// Matching letters in partition, offset order.
    pub items: Vec<(Summary, Record)>,
    /// Where the next page starts.
    pub next: Option<Cursor>,
}

/// Reads the page after `cursor` of the `partitions` of `source`.
///
/// # Errors
/// When Kafka cannot answer.
pub async fn page<S: LetterSource>(
    source: &S,
    partitions: i32,
    filter: &Filter,
    cursor: &Cursor,
    limit: usize,
    budget: usize,
) -> Result<Page, client::Error> {
    let mut items = Vec::new();
    let mut next = cursor.clone();
    let mut scanned = 0usize;
    let mut finished = true;
    for partition in 0..partitions.max(0) {
        if items.len() >= limit || scanned >= budget {
            finished = false;
            break;
        }
        let (start, end) = source.bounds(partition).await?;
        let mut pos = cursor.next.get(&partition).copied().unwrap_or(start).max(start);
        'fetching: while pos < end {
            let records = source.fetch(partition, pos).await?;
            if records.is_empty() {
                // Nothing readable below the log end (aborted transactions, compaction):
                // skip to the end rather than ask again forever.
                pos = end;
                break;
            }
            for (offset, record) in records {
                if offset < pos {
                    continue;
                }
                if items.len() >= limit || scanned >= budget || offset >= end {
                    break 'fetching;
                }
                scanned += 1;
                pos = offset + 1;
                let summary = Summary::read(source.topic(), partition, offset, &record);
                if filter.matches(&summary) {
                    items.push((summary, record));
                }
            }
        }
        next.next.insert(partition, pos);
        if pos < end {
            finished = false;
            break;
        }
    }
    Ok(Page {
        items,
        next: (!finished).then_some(next),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use chrono::TimeZone;
    use serde_json::json;

    use super::*;
    use crate::api::admin::deadletters::filter::RawFilter;

    /// Letters at (partition, offset), in up to `chunk` records per fetch; partition 1 starts
    /// at 3 (as after retention).
    struct Fake {
        letters: BTreeMap<i32, Vec<i64>>,
        chunk: usize,
    }

    fn record(status: u16) -> Record {
        Record {
            key: None,
            value: None,
            headers: BTreeMap::from([("bigpipe-dlq-status".to_owned(), status.to_string().into_bytes())]),
            timestamp: chrono::Utc.timestamp_millis_opt(1).unwrap(),
        }
    }

    impl LetterSource for Fake {
        fn topic(&self) -> &str {
            "t.dlq"
        }

        async fn bounds(&self, partition: i32) -> Result<(i64, i64), client::Error> {
            let offs = &self.letters[&partition];
            Ok((
                offs.first().copied().unwrap_or(0),
                offs.last().map_or(0, |o| o + 1),
            ))
        }

        async fn fetch(&self, partition: i32, offset: i64) -> Result<Vec<(i64, Record)>, client::Error> {
            Ok(self.letters[&partition]
                .iter()
                .filter(|o| **o >= offset)
                .take(self.chunk)
                // Odd offsets failed with 500, even ones with 503.
                .map(|o| (*o, record(if o % 2 == 0 { 503 } else { 500 })))
                .collect())
        }
    }

    fn fake() -> Fake {
        Fake {
            letters: BTreeMap::from([
                (0, (0..7).collect()),
                (1, (3..12).collect()),
                (2, vec![]),
                (3, vec![0]),
            ]),
            chunk: 4,
        }
    }

    async fn walk(filter: &Filter, limit: usize, budget: usize) -> (Vec<String>, usize) {
        let source = fake();
        let mut cursor = Cursor::default();
        let mut seen = Vec::new();
        for pages in 1..100 {
            // Through the string form, as a client would hand it back.
            let page = page(&source, 4, filter, &cursor, limit, budget).await.unwrap();
            assert!(page.items.len() <= limit);
            seen.extend(page.items.iter().map(|(s, _)| s.id()));
            match page.next {
                Some(next) => cursor = Cursor::decode(&next.encode()).unwrap(),
                None => return (seen, pages),
            }
        }
        panic!("paging did not end");
    }

    #[tokio::test]
    async fn paging_walks_every_letter_once() {
        let all = Filter::default();
        let (seen, pages) = walk(&all, 3, SCAN_BUDGET).await;
        assert_eq!(seen.len(), 7 + 9 + 1);
        assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), seen.len(), "{seen:?}");
        assert_eq!(seen.first().map(String::as_str), Some("0-0"));
        assert_eq!(seen.last().map(String::as_str), Some("3-0"));
        assert!(pages >= 6, "{pages}");
        let (one_page, pages) = walk(&all, 500, SCAN_BUDGET).await;
        assert_eq!((one_page, pages), (seen, 1));
    }

    #[tokio::test]
    async fn a_page_reads_at_most_its_budget_even_when_nothing_matches() {
        let none =
            Filter::parse(serde_json::from_value::<RawFilter>(json!({"status": 404})).unwrap()).unwrap();
        let source = fake();
        let p = page(&source, 4, &none, &Cursor::default(), 50, 5).await.unwrap();
        assert!(p.items.is_empty());
        assert_eq!(p.next.as_ref().unwrap().next, BTreeMap::from([(0, 5)]));
        let (seen, pages) = walk(&none, 50, 5).await;
        assert!(seen.is_empty());
        assert!(pages >= 4, "17 letters at 5 a page: {pages}");
        // The filter applies: the 503s are the even offsets.
        let f503 =
            Filter::parse(serde_json::from_value::<RawFilter>(json!({"status": 503})).unwrap()).unwrap();
        let (seen, _) = walk(&f503, 2, 5).await;
        assert_eq!(
            seen,
            ["0-0", "0-2", "0-4", "0-6", "1-4", "1-6", "1-8", "1-10", "3-0"]
        );
    }

    #[tokio::test]
    async fn a_cursor_behind_the_log_start_starts_at_it() {
        let source = fake();
        let cursor = Cursor {
            next: BTreeMap::from([(0, 7), (1, 0)]),
        };
        let p = page(&source, 4, &Filter::default(), &cursor, 1, SCAN_BUDGET)
            .await
            .unwrap();
        assert_eq!(p.items[0].0.id(), "1-3");
    }
}
