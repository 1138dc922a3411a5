//! Our own Kafka protocol client against the real broker: topic creation with
//! configs, partition counts, and the topics bigpipe creates.

use std::time::Duration;

use bigpipe::kafka::wire::admin::{TopicCreation, TopicSpec, create_topics, partition_counts};
use bigpipe::kafka::wire::connect_any;
use kafka_protocol::messages::DescribeConfigsRequest;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::protocol::StrBytes;

use crate::helpers::*;

const T: Duration = Duration::from_secs(10);

async fn compression_of(topic: &str) -> Option<String> {
    let conn = connect_any(&bigpipe::kafka::connect::KafkaConnect::plaintext(
        vec![bootstrap()],
        "it-wire",
        T,
    ))
    .await
    .unwrap();
    let resource = DescribeConfigsResource::default()
        .with_resource_type(2) // TOPIC
        .with_resource_name(StrBytes::from_string(topic.to_owned()))
        .with_configuration_keys(Some(vec![StrBytes::from_static_str("compression.type")]));
    let described = conn
        .request(DescribeConfigsRequest::default().with_resources(vec![resource]))
        .await
        .unwrap();
    described
        .results
        .first()?
        .configs
        .first()?
        .value
        .as_deref()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_with_configs_and_read_partition_counts() {
    let _k = kafka().await;
    let conn = connect_any(&bigpipe::kafka::connect::KafkaConnect::plaintext(
        vec!["127.0.0.1:1".into(), bootstrap()],
        "it-wire",
        T,
    ))
    .await
    .unwrap();
    let name = unique("wire");
    let spec = |name: &str, compression: &str| TopicSpec {
        name: name.to_owned(),
        partitions: 2,
        replication_factor: -1,
        configs: vec![("compression.type".into(), compression.into())],
    };
    let bad = format!("{name}-bad");
    let got = create_topics(&conn, &[spec(&name, "snappy"), spec(&bad, "nope")], T)
        .await
        .unwrap();
    assert_eq!(got[0], (name.clone(), TopicCreation::Created));
    assert!(
        matches!(got[1].1, TopicCreation::Failed { code: 40, .. }),
        "{:?}",
        got[1]
    );
    let again = create_topics(&conn, &[spec(&name, "snappy")], T).await.unwrap();
    assert_eq!(again[0].1, TopicCreation::AlreadyExists);
    let missing = format!("{name}-missing");
    let counts = partition_counts(&conn, &[name.clone(), missing.clone()])
        .await
        .unwrap();
    assert_eq!((counts[&name], counts[&missing]), (Some(2), None));
    assert_eq!(compression_of(&name).await.as_deref(), Some("snappy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_bigpipe_creates_use_a_codec_it_can_read() {
    let _k = kafka().await;
    let topic = unique("codec");
    let extra = crate::delivery::consumer_entry(&topic, &unique("G"), "");
    let bp = Bigpipe::start_ready(&settings(&simple_config(&topic, 2, &extra))).await;
    assert_eq!(compression_of(&topic).await.as_deref(), Some("snappy"));
    // The dead-letter topic is created too, like its source.
    let dlq = format!("{topic}.dlq");
    let conn = connect_any(&bigpipe::kafka::connect::KafkaConnect::plaintext(
        vec![bootstrap()],
        "it-wire",
        T,
    ))
    .await
    .unwrap();
    let counts = partition_counts(&conn, std::slice::from_ref(&dlq)).await.unwrap();
    assert_eq!(counts[&dlq], Some(2));
    bp.stop().await;
}
