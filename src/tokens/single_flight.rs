//! Per-key async locks: callers for one connection in this process queue behind one refresh.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Per-key async locks that vanish when nobody holds or waits for them.
#[derive(Default)]
pub struct SingleFlight {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Removes a key's lock from the map once nobody else holds or waits for it.
struct Cleanup<'a> {
    flight: &'a SingleFlight,
    key: &'a str,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let mut map = self.flight.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Three references: the map's, ours, and the one `run` locks (dropped after us, so
        // still counted). Anyone else still waiting keeps it alive.
        if Arc::strong_count(&self.lock) == 3 {
            map.remove(self.key);
        }
    }
}

impl SingleFlight {
    /// Runs `f` while holding the lock for `key`. The key's entry goes when its last user is done,
    /// also when a user is cancelled while waiting or running.
    pub async fn run<T>(&self, key: &str, f: impl Future<Output = T>) -> T {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_string()).or_default().clone()
        };
        let _cleanup = Cleanup {
            flight: self,
            key,
            lock: lock.clone(),
        };
        let _guard = lock.lock().await;
        f.await
    }

    /// How many keys have a lock right now (for tests).
    pub fn len(&self) -> usize {
        self.locks.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when no lock is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn single_flight_serialises_and_cleans_up() {
        let sf = Arc::new(SingleFlight::default());
        let running = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (sf, running, max) = (sf.clone(), running.clone(), max.clone());
            tasks.push(tokio::spawn(async move {
                sf.run("k", async {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(max.load(Ordering::SeqCst), 1);
        assert!(sf.is_empty());
    }

    #[tokio::test]
    async fn single_flight_cleans_up_after_cancelled_holders_and_waiters() {
        let sf = Arc::new(SingleFlight::default());
        let holder = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", std::future::pending::<()>()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", async {}).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(sf.len(), 1);
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(sf.len(), 1, "the holder still has it");
        holder.abort();
        let _ = holder.await;
        assert!(sf.is_empty(), "a cancelled holder leaves no key behind");
        sf.run("k", async {}).await;
        assert!(sf.is_empty());
    }
}
