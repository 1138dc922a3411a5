//! The control topic and what steers consumers through it: pause/resume for a whole group,
//! across processes and restarts, and retransmit (a group moved back to a point in time).

use std::sync::Arc;
use std::time::Duration;

use bigpipe::control::Control;
use bigpipe::control::reader::ControlReader;
use bigpipe::kafka::client::KafkaClient;
use bigpipe::kafka::connect::KafkaConnect;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{bootstrap, create_topic, kafka, poll, test_logger, unique};

/// A `Control` with its own Kafka client and reader, as one bigpipe process has.
fn control_process(topic: &str, stop: &CancellationToken) -> Arc<Control> {
    let connect = KafkaConnect::plaintext(vec![bootstrap()], "it-control", Duration::from_secs(10));
    let client = Arc::new(KafkaClient::new(connect));
    let control = Control::new(topic.to_owned(), Arc::clone(&client), Duration::from_secs(10));
    let reader = ControlReader {
        control: Arc::clone(&control),
        client,
        log: test_logger(),
    };
    tokio::spawn(reader.run(stop.clone()));
    control
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_in_one_process_is_read_in_another_and_by_a_late_starter() {
    let _kafka = kafka().await;
    let topic = unique("it-control");
    create_topic(&topic, &[("cleanup.policy", "compact".into())]).await;
    let stop = CancellationToken::new();
    let a = control_process(&topic, &stop);
    let b = control_process(&topic, &stop);
    poll("both readers caught up", || async {
        (a.caught_up() && b.caught_up()).then_some(())
    })
    .await;
    let mut changes = b.subscribe();
    changes.borrow_and_update();

    a.put("pause/g/t", json!({"paused": true, "by": "it"}))
        .await
        .expect("put");
    // Read-your-writes: the writer's own view has it when put returns.
    assert_eq!(a.get("pause/g/t").unwrap()["paused"], true);
    poll("b sees the put", || async {
        b.get("pause/g/t").filter(|v| v["paused"] == true)
    })
    .await;
    assert!(changes.has_changed().unwrap(), "b's subscribers were told");

    a.put("pause/g/t", json!({"paused": false, "by": "it"}))
        .await
        .unwrap();
    a.put("other", json!({"x": 1})).await.unwrap();
    a.put("other", serde_json::Value::Null).await.unwrap();
    poll("b sees the resume and the tombstone", || async {
        let resumed = b.get("pause/g/t").is_some_and(|v| v["paused"] == false);
        (resumed && b.get("other").is_none()).then_some(())
    })
    .await;

    // A process started later knows everything once caught up (the first catch-up is what
    // consumer entries wait for).
    let late = control_process(&topic, &stop);
    poll("late reader caught up", || async {
        late.caught_up().then_some(())
    })
    .await;
    assert_eq!(late.get("pause/g/t").unwrap()["paused"], false);
    assert_eq!(late.get("other"), None);
    assert!(late.status().error.is_none());
    stop.cancel();
}
