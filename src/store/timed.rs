//! A store decorator that times every operation into `consent_broker_store_duration_seconds`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{CasOutcome, EncryptedStore, Store, StoreError, Versioned, Write, WriteOutcome};
use crate::metrics::Metrics;

/// Times each call to the wrapped store, labelled by operation name.
pub struct TimedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = f.await;
        self.metrics.store_duration(op, start.elapsed());
        out
    }
}

#[async_trait]
impl Store for TimedStore {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.timed("get", self.inner.get(key)).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<u64, StoreError> {
        self.timed("put", self.inner.put(key, value, ttl)).await
    }
    async fn insert_new(&self, key: &str, value: Vec<u8>, ttl: Option<Duration>) -> Result<bool, StoreError> {
        self.timed("insert_new", self.inner.insert_new(key, value, ttl)).await
    }
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed("take", self.inner.take(key)).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected_version: u64,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> Result<CasOutcome, StoreError> {
        self.timed(
            "compare_and_swap",
            self.inner.compare_and_swap(key, expected_version, value, ttl),
        )
        .await
    }
    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        self.timed("delete", self.inner.delete(key)).await
    }
    async fn write_with_event(
        &self,
        write: Write,
        event_key: &str,
        event_value: Vec<u8>,
        event_ttl: Option<Duration>,
    ) -> Result<WriteOutcome, StoreError> {
        self.timed(
            "write_with_event",
            self.inner.write_with_event(write, event_key, event_value, event_ttl),
        )
        .await
    }
    async fn purge_expired(&self) -> Result<usize, StoreError> {
        self.timed("purge_expired", self.inner.purge_expired()).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.timed("ping", self.inner.ping()).await
    }
    async fn scan(&self, cursor: Option<String>, limit: usize) -> Result<(Vec<String>, Option<String>), StoreError> {
        self.timed("scan", self.inner.scan(cursor, limit)).await
    }
    async fn index_add(&self, index: &str, member: &str) -> Result<(), StoreError> {
        self.timed("index_add", self.inner.index_add(index, member)).await
    }
    async fn index_remove(&self, index: &str, member: &str) -> Result<bool, StoreError> {
        self.timed("index_remove", self.inner.index_remove(index, member)).await
    }
    async fn index_range(&self, index: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>, StoreError> {
        self.timed("index_range", self.inner.index_range(index, after, limit))
            .await
    }
    async fn rewrite_in_place(
        &self,
        key: &str,
        expected_version: u64,
        expected_value: &[u8],
        value: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.timed(
            "rewrite_in_place",
            self.inner
                .rewrite_in_place(key, expected_version, expected_value, value),
        )
        .await
    }
    async fn export(&self, sink: &mut super::ExportSink<'_>) -> Result<(), StoreError> {
        self.timed("export", self.inner.export(sink)).await
    }
    async fn import(&self, entries: Vec<super::Entry>) -> Result<(), StoreError> {
        self.timed("import", self.inner.import(entries)).await
    }
    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.timed("is_empty", self.inner.is_empty()).await
    }
    // Forwarded so `rotate-keys` still finds the encryption layer under the timing one.
    fn encryption(&self) -> Option<&EncryptedStore> {
        self.inner.encryption()
    }
}
