//! Whether a consumer entry's fetch loops may take records: the entry's group can be paused
//! by an operator for every process at once (the control topic's `pause/<group>/<topic>`),
//! and no entry starts before its process has read the control topic up to date, so a pause
//! written before a restart still holds after it.
//!
//! A paused entry keeps its group membership, heartbeats and partitions; calls already read
//! finish and are committed. Only fetching stops, and resumes where it was.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;
use slog::{Logger, info};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::control::{Control, keys};
use crate::stats::ConsumerStats;

/// The gate's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateState {
    /// Fetching.
    Open,
    /// Paused by an operator.
    Paused,
    /// The control topic has not been read up to date yet.
    Waiting,
}

/// A fetch loop's view of its entry's gate. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gate {
    state: watch::Receiver<GateState>,
}

impl Gate {
    /// A gate that never closes (no control topic, tests).
    pub fn open() -> Self {
        // The sender is dropped: the value stays `Open`, and `changed` reports the end,
        // which `closed` treats as "never closes".
        Self {
            state: watch::channel(GateState::Open).1,
        }
    }

    /// A gate moved by `sender`.
    pub fn new(state: watch::Receiver<GateState>) -> Self {
        Self { state }
    }

    /// The current position.
    pub fn state(&self) -> GateState {
        *self.state.borrow()
    }

    /// True when fetching may go on.
    pub fn is_open(&self) -> bool {
        self.state() == GateState::Open
    }

    /// Waits until the gate is open; `false` when `stop` fires first.
    pub async fn wait_open(&mut self, stop: &CancellationToken) -> bool {
        if self.is_open() {
            return true;
        }
        let opened = stop
            .run_until_cancelled(self.state.wait_for(|s| *s == GateState::Open))
            .await;
        // Err: the keeper is gone (the entry is stopping); stop decides what happens next.
        matches!(opened, Some(Ok(_)))
    }

    /// Resolves when the gate is (or becomes) closed; never, if its keeper is gone.
    pub async fn closed(&mut self) {
        if self.state.wait_for(|s| *s != GateState::Open).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The gate position `control` asks for on `key`: waiting until the first catch-up, then
/// paused while the key's value says `"paused": true`.
pub fn wanted(control: &Control, key: &str) -> GateState {
    if !control.caught_up() {
        return GateState::Waiting;
    }
    match control.get(key) {
        Some(v) if v.get("paused").and_then(Value::as_bool) == Some(true) => GateState::Paused,
        _ => GateState::Open,
    }
}

/// Keeps an entry's gate in line with the control topic until `stop`; the entry's
/// [`ConsumerStats::paused`] shows an operator pause.
pub async fn keep(
    control: Arc<Control>,
    group: String,
    topic: String,
    gate: watch::Sender<GateState>,
    stats: Arc<ConsumerStats>,
    log: Logger,
    stop: CancellationToken,
) {
    let key = keys::pause(&group, &topic);
    let mut changes = control.subscribe();
    loop {
        changes.borrow_and_update();
        let state = wanted(&control, &key);
        stats.paused.store(state == GateState::Paused, Ordering::Relaxed);
        let before = gate.send_replace(state);
        if before != state {
            let by = control
                .get(&key)
                .and_then(|v| v.get("by").and_then(Value::as_str).map(str::to_owned));
            match state {
                GateState::Paused => info!(log, "consumer entry paused"; "by" => by),
                GateState::Open if before == GateState::Paused => {
                    info!(log, "consumer entry resumed"; "by" => by);
                }
                GateState::Open => info!(log, "control topic read, consumer entry starts"),
                GateState::Waiting => {}
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn the_gate_follows_the_pause_key() {
        let control = Control::in_memory();
        let (tx, rx) = watch::channel(GateState::Waiting);
        let stats = Arc::new(ConsumerStats::default());
        let stop = CancellationToken::new();
        let keeper = tokio::spawn(keep(
            Arc::clone(&control),
            "g".into(),
            "t".into(),
            tx,
            Arc::clone(&stats),
            Logger::root(slog::Discard, slog::o!()),
            stop.clone(),
        ));
        let mut gate = Gate::new(rx);
        assert!(gate.wait_open(&stop).await);

        control
            .put(&keys::pause("g", "t"), json!({"paused": true}))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), gate.closed())
            .await
            .unwrap();
        assert_eq!(gate.state(), GateState::Paused);
        assert!(stats.paused.load(Ordering::Relaxed));

        // Another entry's key does not move this gate.
        control
            .put(&keys::pause("g", "u"), json!({"paused": false}))
            .await
            .unwrap();
        tokio::task::yield_now().await;
        assert_eq!(gate.state(), GateState::Paused);

        control
            .put(&keys::pause("g", "t"), json!({"paused": false}))
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_secs(5), gate.wait_open(&stop))
                .await
                .unwrap()
        );
        assert!(!stats.paused.load(Ordering::Relaxed));
        stop.cancel();
        keeper.await.unwrap();
    }

    #[tokio::test]
    async fn an_open_gate_never_closes_and_stop_ends_a_wait() {
        let mut gate = Gate::open();
        assert!(gate.is_open());
        let closed = tokio::time::timeout(Duration::from_millis(50), gate.closed()).await;
        assert!(closed.is_err(), "never resolves");
        let (_tx, rx) = watch::channel(GateState::Paused);
        let mut gate = Gate::new(rx);
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!gate.wait_open(&stop).await);
    }

    #[test]
    fn waiting_until_caught_up_then_the_value_decides() {
        let control = Control::in_memory();
        assert_eq!(wanted(&control, "pause/g/t"), GateState::Open);
        // Malformed or missing flags mean not paused.
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(control.put("pause/g/t", json!({"paused": "yes"})))
            .unwrap();
        assert_eq!(wanted(&control, "pause/g/t"), GateState::Open);
        rt.block_on(control.put("pause/g/t", json!({"paused": true})))
            .unwrap();
        assert_eq!(wanted(&control, "pause/g/t"), GateState::Paused);
    }
}
