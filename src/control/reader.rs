//! The one task per process that reads the control topic into its [`Control`].
//!
//! It reads partition 0 from the earliest offset with the shared [`Follower`], applies each
//! record in offset order, and marks the first catch-up so consumer entries know every pause
//! and seek written before this process started.

use std::sync::Arc;

use rskafka::record::RecordAndOffset;
use slog::Logger;
use tokio_util::sync::CancellationToken;

use super::Control;
use super::state::{self, Applied};
use crate::kafka::client::KafkaClient;
use crate::kafka::follow::{Followed, Follower};

/// Reads the control topic into `control` until stopped.
#[derive(Debug)]
pub struct ControlReader {
    /// What it fills.
    pub control: Arc<Control>,
    /// The shared client.
    pub client: Arc<KafkaClient>,
    /// Logger.
    pub log: Logger,
}

impl ControlReader {
    /// Runs until `stop` is cancelled, connecting the client itself when needed (a reader on
    /// its own client: tools, tests).
    pub async fn run(self, stop: CancellationToken) {
        self.follower().run(stop).await;
    }

    /// Like [`ControlReader::run`], but starts only once another task has connected the
    /// shared client (see [`Follower::run_on_shared_connection`]).
    pub async fn run_on_shared_connection(self, stop: CancellationToken) {
        self.follower().run_on_shared_connection(stop).await;
    }

    fn follower(self) -> Follower<Control> {
        Follower {
            topic: self.control.topic().to_owned(),
            state: self.control,
            partition: 0,
            reader: "bigpipe-control-reader".to_owned(),
            client: self.client,
            log: self.log,
        }
    }
}

/// The control topic has one partition: `partition` is always 0.
impl Followed for Control {
    fn next_offset(&self, _partition: i32) -> i64 {
        self.status().next_offset
    }

    fn restart_at(&self, _partition: i32, offset: i64) {
        self.update(|s| {
            s.restart_at(offset);
            ((), false)
        });
    }

    fn skip_to(&self, _partition: i32, offset: i64) {
        self.update(|s| {
            s.skip_to(offset);
            ((), false)
        });
    }

    fn apply(&self, _partition: i32, records: &[RecordAndOffset]) -> Vec<(i64, String)> {
        self.update(|s| {
            let mut skipped = Vec::new();
            let mut changed = false;
            for r in records {
                let applied = s.apply(r.offset, r.record.key.as_deref(), r.record.value.as_deref());
                changed |= state::changed(&applied);
                if let Applied::Skipped(why) = applied {
                    skipped.push((r.offset, why.to_string()));
                }
            }
            (skipped, changed)
        })
    }

    fn caught_up(&self, _partition: i32) -> bool {
        Control::caught_up(self)
    }

    fn mark_caught_up(&self, _partition: i32) {
        Control::mark_caught_up(self);
    }

    fn set_error(&self, _partition: i32, error: Option<String>) {
        Control::set_error(self, error);
    }
}
