//! Batches of every codec, written by Kafka's own console producer into a topic with
//! `compression.type=producer`: rskafka (the patched copy in vendor/rskafka, every codec in pure
//! Rust) reads them all, and so does the fallback reader in `bigpipe::kafka::fallback`, which
//! stays for what rskafka refuses (a null header value, corrupt batches).
//! Corrupt batches cannot be produced through Kafka (the broker checks CRCs); the unit tests
//! in `src/kafka/fallback/decode.rs` cover them.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use bigpipe::kafka::fallback::{FallbackError, FallbackFetcher, FetchedItem, is_decode_error};
use kafka_protocol::error::ResponseError;
use rskafka::client::partition::OffsetAt;
use rskafka::record::RecordAndOffset;

use crate::helpers::*;

const T: Duration = Duration::from_secs(10);
/// Records per codec.
const PER_CODEC: i64 = 5;
const CODECS: [&str; 4] = ["zstd", "lz4", "gzip", "snappy"];

/// Writes `lines` through Kafka's console producer with `codec`, keys and headers parsed
/// from each line (`header:value<TAB>key<TAB>value`).
pub(crate) fn console_produce(topic: &str, codec: &str, extra: &[&str], lines: &str) {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka.sh");
    let mut child = Command::new(script)
        .args(["tool", "console-producer", "--bootstrap-server", &bootstrap()])
        .args(["--topic", topic, "--compression-codec", codec])
        .args(["--reader-property", "parse.key=true"])
        .args(["--reader-property", "parse.headers=true"])
        // One batch per codec: every line is sent before the producer's linger ends.
        .args(["--producer-property", "linger.ms=500"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run scripts/kafka.sh tool console-producer");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(lines.as_bytes())
        .expect("write to the console producer");
    let out = child.wait_with_output().expect("console producer exit");
    assert!(
        out.status.success(),
        "console producer ({codec}) failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn key(codec: &str, i: i64) -> String {
    format!("key-{codec}-{i}")
}

fn value(codec: &str, i: i64) -> String {
    // Repetitive, so that every codec really compresses.
    format!("value {codec} {i} ").repeat(30)
}

/// Every item from `from` to `end` through the fallback reader, following `next_offset`.
async fn read_fallback(fetcher: &FallbackFetcher, topic: &str, from: i64, end: i64) -> Vec<FetchedItem> {
    let mut items = Vec::new();
    let mut next = from;
    while next < end {
        let got = fetcher
            .fetch(topic, 0, next, 1_000_000, Duration::from_millis(100))
            .await
            .expect("fallback fetch");
        assert_eq!(got.high_watermark, end);
        assert!(got.next_offset > next, "no progress at {next}: {got:?}");
        next = got.next_offset;
        items.extend(got.items);
    }
    items
}

fn records(items: Vec<FetchedItem>) -> Vec<RecordAndOffset> {
    items
        .into_iter()
        .map(|i| match i {
            FetchedItem::Record(r) => r,
            other => panic!("only records expected, got {other:?}"),
        })
        .collect()
}

/// A one-partition topic that keeps whatever codec the producer used.
pub(crate) async fn producer_codec_topic() -> String {
    let topic = unique("codecs");
    create_topic(&topic, &[("compression.type", "producer".into())]).await;
    topic
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_reads_every_codec_the_console_producer_writes() {
    let _k = kafka().await;
    let topic = producer_codec_topic().await;

    // Offsets 0..5 zstd, 5..10 lz4, 10..15 gzip, 15..20 snappy.
    for codec in CODECS {
        let lines: String = (0..PER_CODEC)
            .map(|i| format!("codec:{codec}\t{}\t{}\n", key(codec, i), value(codec, i)))
            .collect();
        tokio::task::spawn_blocking({
            let topic = topic.clone();
            move || console_produce(&topic, codec, &[], &lines)
        })
        .await
        .unwrap();
    }
    let end = PER_CODEC * CODECS.len() as i64;

    // rskafka (the patched copy in vendor/rskafka) reads every codec itself now: zstd and lz4
    // through pure-Rust crates. Upstream 0.6.0 without its C codecs failed the whole fetch
    // with "Unimplemented compression" for these two.
    let client = client().await;
    let pc = partition(&client, &topic, 0).await;
    assert_eq!(pc.get_offset(OffsetAt::Latest).await.unwrap(), end);
    for (n, codec) in CODECS.iter().enumerate() {
        let at = n as i64 * PER_CODEC;
        let (got, _) = pc
            .fetch_records(at, 1..1_000_000, 100)
            .await
            .unwrap_or_else(|e| panic!("rskafka reads {codec}: {e}"));
        let ours: Vec<_> = got
            .iter()
            .filter(|r| (at..at + PER_CODEC).contains(&r.offset))
            .collect();
        assert_eq!(ours.len(), PER_CODEC as usize, "{codec}: {got:?}");
        for (i, r) in ours.iter().enumerate() {
            let want = value(codec, i as i64);
            assert_eq!(r.record.value.as_deref(), Some(want.as_bytes()), "{codec}");
        }
    }

    // The fallback reads all of it, with the right offsets, keys, values and headers.
    let fetcher = FallbackFetcher::new(bigpipe::kafka::connect::KafkaConnect::plaintext(
        vec![bootstrap()],
        "it-codecs",
        T,
    ));
    let all = records(read_fallback(&fetcher, &topic, 0, end).await);
    assert_eq!(all.len() as i64, end);
    for (n, codec) in CODECS.iter().enumerate() {
        for i in 0..PER_CODEC {
            let r = &all[(n as i64 * PER_CODEC + i) as usize];
            assert_eq!(r.offset, n as i64 * PER_CODEC + i, "{codec} {i}");
            assert_eq!(
                r.record.key.as_deref(),
                Some(key(codec, i).as_bytes()),
                "{codec} {i}"
            );
            assert_eq!(
                r.record.value.as_deref(),
                Some(value(codec, i).as_bytes()),
                "{codec} {i}"
            );
            assert_eq!(
                r.record.headers.get("codec").map(Vec::as_slice),
                Some(codec.as_bytes()),
                "{codec} {i}"
            );
        }
    }

    // Where rskafka can read, both readers agree record for record (timestamps included).
    let (rs_gzip, hw) = pc.fetch_records(2 * PER_CODEC, 1..1_000_000, 100).await.unwrap();
    assert_eq!(hw, end);
    let gzip_snappy: Vec<_> = all[(2 * PER_CODEC) as usize..].to_vec();
    assert_eq!(rs_gzip[..], gzip_snappy[..rs_gzip.len()]);

    // Starting inside a zstd batch drops the records before the requested offset.
    let mid = fetcher
        .fetch(&topic, 0, 2, 1_000_000, Duration::from_millis(100))
        .await
        .unwrap();
    let first = records(mid.items);
    assert_eq!(first.first().map(|r| r.offset), Some(2));

    // At the end of the log: nothing, no error, the caller waits and asks again.
    let at_end = fetcher
        .fetch(&topic, 0, end, 1_000_000, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(at_end.items.is_empty());
    assert_eq!((at_end.next_offset, at_end.high_watermark), (end, end));

    // Typed errors: past the end is OFFSET_OUT_OF_RANGE, as with rskafka; a partition that
    // does not exist has no leader.
    let err = fetcher
        .fetch(&topic, 0, end + 100, 1_000_000, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FallbackError::Partition {
                error: ResponseError::OffsetOutOfRange,
                ..
            }
        ),
        "{err:?}"
    );
    let err = fetcher
        .fetch(&topic, 7, 0, 1_000_000, Duration::ZERO)
        .await
        .unwrap_err();
    assert!(
        matches!(err, FallbackError::NoLeader { partition: 7, .. }),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_reads_a_null_header_value_that_rskafka_cannot() {
    // Legal in Kafka (the Java client's `new RecordHeader(k, null)`), a decode error in
    // rskafka 0.6 whatever the codec: one such record would stop a partition too.
    let _k = kafka().await;
    let topic = producer_codec_topic().await;
    tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || {
            let extra = ["--reader-property", "null.marker=<null>"];
            console_produce(&topic, "gzip", &extra, "codec:gzip,gone:<null>\tk0\tv0\n")
        }
    })
    .await
    .unwrap();

    let client = client().await;
    let pc = partition(&client, &topic, 0).await;
    let err = pc
        .fetch_records(0, 1..1_000_000, 100)
        .await
        .expect_err("rskafka refuses null headers");
    assert!(is_decode_error(&err), "{err:?}");

    let fetcher = FallbackFetcher::new(bigpipe::kafka::connect::KafkaConnect::plaintext(
        vec![bootstrap()],
        "it-codecs",
        T,
    ));
    let got = records(read_fallback(&fetcher, &topic, 0, 1).await);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].record.value.as_deref(), Some(&b"v0"[..]));
    assert_eq!(got[0].record.headers.get("gone"), Some(&Vec::new()));
    assert_eq!(
        got[0].record.headers.get("codec").map(Vec::as_slice),
        Some(&b"gzip"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bigpipe_delivers_calls_from_zstd_and_lz4_batches_another_producer_wrote() {
    let _k = kafka().await;
    let target = crate::helpers::target::Target::start();
    // A topic bigpipe did not create: it keeps the producer's codec.
    let topic = producer_codec_topic().await;
    let entry = crate::delivery::consumer_entry(&topic, &unique("G"), "");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 1, &entry))).await;
    let mut expected = Vec::new();
    for codec in ["zstd", "lz4"] {
        let mut lines = String::new();
        for i in 0..3 {
            let data = format!("{codec}-{i}");
            let value = serde_json::json!({
                "Headers": {}, "Url": target.url("/ok"), "Data": data,
                "Topic": topic, "Partition": 0, "CreateTime": 1,
            });
            lines.push_str(&format!("bigpipe-call-id:{data}\tsame-key\t{value}\n"));
            expected.push(data);
        }
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || console_produce(&topic, codec, &[], &lines))
            .await
            .expect("console producer task");
    }
    // A call through bigpipe after them, on the same key.
    let (status, env) = bp.call(&call_body(&target.url("/ok"), "after", "same-key")).await;
    assert_eq!(status, 200, "{env}");
    expected.push("after".to_owned());
    let started = std::time::Instant::now();
    let got = poll(
        "every call delivered, the other producer's batches included",
        || async {
            let mut got: Vec<String> = target
                .received()
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect();
            got.sort();
            (got.len() >= expected.len()).then_some(got)
        },
    )
    .await;
    expected.sort();
    assert_eq!(got, expected);
    eprintln!(
        "zstd and lz4 batches delivered, then the next call, in {:?}",
        started.elapsed()
    );
    let s = bp.get("/stats").await.1["data"]["consumerStats"][0].clone();
    assert_eq!(s["unreadableRecords"], 0, "{s}");
    assert_eq!(s["rpcSuccess"], 7, "{s}");
    bp.stop().await;
    target.stop().await;
}
