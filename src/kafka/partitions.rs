//! The one cached partition-client lookup: every rskafka request to a partition (produce,
//! fetch, offsets) gets its `PartitionClient` from [`KafkaClient::partition`], which looks the
//! leader up once, bounded by the client timeout, and keeps the client for the next request.
//!
//! A `PartitionClient` owns one connection to the partition's leader, and Kafka answers the
//! requests of one connection in order: a fetch long-polling for `max_wait` holds up every
//! produce behind it. So the cache key carries a [`Purpose`]: produce and offset lookups never
//! share a connection with a fetch, and two readers (consumer groups) of one partition each
//! long-poll on their own.
//!
//! rskafka follows leader moves inside a `PartitionClient`; when a request fails in a way it
//! cannot see (our timeout, see [`super::fault`]), the caller drops the entry with
//! [`KafkaClient::forget_partition`] and the next request looks the leader up again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};

use super::client::{KafkaClient, Result, bounded};
use super::fault;

/// What a partition client is used for; each purpose has its own connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Produce requests: the producer's writers, retry tiers and dead letters.
    Produce,
    /// Offset lookups beside the fetch loops (log-end offsets for lag and stall reports).
    Offsets,
    /// The fetch loop of one reader, named by its consumer group: a long poll holds its
    /// connection, so readers never share one.
    Fetch(Arc<str>),
}

/// Which partition client: topic, partition and purpose.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PartitionKey {
    /// The topic.
    pub topic: Arc<str>,
    /// The partition.
    pub partition: i32,
    /// What the client is used for.
    pub purpose: Purpose,
}

impl PartitionKey {
    /// The key of `topic`'s `partition` for `purpose`.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32, purpose: Purpose) -> Self {
        Self {
            topic: topic.into(),
            partition,
            purpose,
        }
    }
}

/// Cached clients per [`PartitionKey`]. Generic so the caching can be tested without a broker.
#[derive(Debug)]
pub struct PartitionCache<T = PartitionClient> {
    slots: Mutex<HashMap<PartitionKey, Arc<Slot<T>>>>,
}

impl<T> Default for PartitionCache<T> {
    fn default() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Debug)]
struct Slot<T> {
    current: Mutex<Option<Arc<T>>>,
    /// Held during a lookup, so concurrent callers wait for one lookup instead of each
    /// opening a connection.
    lookup: tokio::sync::Mutex<()>,
}

impl<T> Slot<T> {
    fn current(&self) -> Option<Arc<T>> {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl<T> PartitionCache<T> {
    fn slot(&self, key: &PartitionKey) -> Arc<Slot<T>> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = slots.entry(key.clone()).or_insert_with(|| {
            Arc::new(Slot {
                current: Mutex::new(None),
                lookup: tokio::sync::Mutex::new(()),
            })
        });
        Arc::clone(slot)
    }

    /// The cached client of `key`, or the one `lookup` makes (then cached).
    ///
    /// # Errors
    /// `lookup`'s error; nothing is cached then.
    pub async fn get_or_lookup<E, F>(&self, key: &PartitionKey, lookup: F) -> std::result::Result<Arc<T>, E>
    where
        F: Future<Output = std::result::Result<T, E>>,
    {
        let slot = self.slot(key);
        if let Some(found) = slot.current() {
            return Ok(found);
        }
        let _one = slot.lookup.lock().await;
        if let Some(found) = slot.current() {
            return Ok(found);
        }
        let made = Arc::new(lookup.await?);
        *slot.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&made));
        Ok(made)
    }

    /// Drops `key`'s cached client if it is still `used` (a newer one made meanwhile stays).
    pub fn forget(&self, key: &PartitionKey, used: &Arc<T>) {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned();
        if let Some(slot) = slot {
            let mut current = slot.current.lock().unwrap_or_else(PoisonError::into_inner);
            if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, used)) {
                *current = None;
            }
        }
    }

    /// Drops `key`'s entry whatever it holds: its user is gone (a revoked partition's fetch
    /// loop), so its connection closes once the last request using it ends.
    pub fn release(&self, key: &PartitionKey) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}

impl KafkaClient {
    /// The partition client of `key`: cached, or looked up (the shared client connected first if
    /// needed), the lookup bounded by the client timeout.
    ///
    /// # Errors
    /// When the client cannot connect, or the leader lookup fails or times out.
    pub async fn partition(&self, key: &PartitionKey) -> Result<Arc<PartitionClient>> {
        self.partitions
            .get_or_lookup(key, async {
                let client = self.get().await?;
                let lookup = client.partition_client(
                    key.topic.to_string(),
                    key.partition,
                    UnknownTopicHandling::Retry,
                );
                Ok(bounded("partition lookup", self.timeout(), lookup).await??)
            })
            .await
    }

    /// After a request on `used` failed with `error`: drops the cached client when the error
    /// means it may be stale ([`fault::stale_client`]), so the next request looks the leader up.
    pub fn partition_failed(
        &self,
        key: &PartitionKey,
        used: &Arc<PartitionClient>,
        error: &super::client::Error,
    ) {
        if fault::stale_client(error) {
            self.forget_partition(key, used);
        }
    }

    /// Drops `key`'s cached client if it is still `used`.
    pub fn forget_partition(&self, key: &PartitionKey, used: &Arc<PartitionClient>) {
        self.partitions.forget(key, used);
    }

    /// Drops `key`'s entry: its only user is gone.
    pub fn release_partition(&self, key: &PartitionKey) {
        self.partitions.release(key);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Fake(usize);

    async fn lookup(cache: &PartitionCache<Fake>, key: &PartitionKey, made: &AtomicUsize) -> Arc<Fake> {
        cache
            .get_or_lookup(key, async {
                tokio::task::yield_now().await;
                Ok::<_, ()>(Fake(made.fetch_add(1, Ordering::SeqCst)))
            })
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn one_lookup_serves_every_caller_of_a_key() {
        let cache = PartitionCache::default();
        let made = AtomicUsize::new(0);
        let key = PartitionKey::new("t", 0, Purpose::Produce);
        let (a, b) = tokio::join!(lookup(&cache, &key, &made), lookup(&cache, &key, &made));
        assert!(Arc::ptr_eq(&a, &b));
        assert!(Arc::ptr_eq(&a, &lookup(&cache, &key, &made).await));
        assert_eq!(made.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn purposes_partitions_and_readers_get_their_own_clients() {
        let cache = PartitionCache::default();
        let made = AtomicUsize::new(0);
        let keys = [
            PartitionKey::new("t", 0, Purpose::Produce),
            PartitionKey::new("t", 1, Purpose::Produce),
            PartitionKey::new("t", 0, Purpose::Offsets),
            PartitionKey::new("t", 0, Purpose::Fetch("g1".into())),
            PartitionKey::new("t", 0, Purpose::Fetch("g2".into())),
            PartitionKey::new("u", 0, Purpose::Produce),
        ];
        for key in &keys {
            lookup(&cache, key, &made).await;
        }
        assert_eq!(made.load(Ordering::SeqCst), keys.len());
    }

    #[tokio::test]
    async fn forgetting_drops_only_the_client_that_failed() {
        let cache = PartitionCache::default();
        let made = AtomicUsize::new(0);
        let key = PartitionKey::new("t", 0, Purpose::Produce);
        let first = lookup(&cache, &key, &made).await;
        cache.forget(&key, &first);
        let second = lookup(&cache, &key, &made).await;
        assert!(!Arc::ptr_eq(&first, &second), "looked up again");
        // A late failure report about the first client leaves its replacement alone.
        cache.forget(&key, &first);
        assert!(Arc::ptr_eq(&second, &lookup(&cache, &key, &made).await));
        cache.release(&key);
        lookup(&cache, &key, &made).await;
        assert_eq!(made.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_lookup_caches_nothing() {
        let cache: PartitionCache<Fake> = PartitionCache::default();
        let key = PartitionKey::new("t", 0, Purpose::Produce);
        let failed = cache.get_or_lookup(&key, async { Err::<Fake, _>("down") }).await;
        assert_eq!(failed.unwrap_err(), "down");
        let made = AtomicUsize::new(7);
        assert_eq!(lookup(&cache, &key, &made).await.0, 7);
    }
}
