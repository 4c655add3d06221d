//! Per-key flights: callers for one connection in this process share one refresh.
//!
//! The first caller for a key runs its future (the leader); whoever asks for the same key while it
//! runs waits for it and, when it succeeds, gets a copy of its result without running anything:
//! 1,000 callers on one expiring token cost one refresh and one store read, not one store read
//! each in turn. When the leader fails (or is cancelled), its error is its own: each waiter then
//! asks again, and one of them leads the next flight.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

/// Per-key flights that vanish when their leader is done.
pub struct SingleFlight<T> {
    flights: Mutex<HashMap<String, watch::Receiver<Option<T>>>>,
}

impl<T> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            flights: Mutex::default(),
        }
    }
}

/// Removes the leader's flight when it is done, also when it is cancelled.
struct Landing<'a, T> {
    flight: &'a SingleFlight<T>,
    key: &'a str,
}

impl<T> Drop for Landing<'_, T> {
    fn drop(&mut self) {
        self.flight.map().remove(self.key);
    }
}

enum Role<T> {
    Lead(watch::Sender<Option<T>>),
    Join(watch::Receiver<Option<T>>),
}

impl<T> SingleFlight<T> {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<Option<T>>>> {
        self.flights.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Clone> SingleFlight<T> {
    /// Runs `f` unless a flight for `key` is under way, in which case its success is the answer
    /// (its failure is not: then this caller asks again). Flights of one key never overlap.
    pub async fn run<E>(&self, key: &str, f: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        loop {
            let role = {
                let mut map = self.map();
                match map.get(key) {
                    Some(rx) => Role::Join(rx.clone()),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        map.insert(key.to_string(), rx);
                        Role::Lead(tx)
                    }
                }
            };
            match role {
                Role::Join(mut rx) => {
                    if let Ok(shared) = rx.wait_for(Option::is_some).await
                        && let Some(value) = shared.clone()
                    {
                        return Ok(value);
                    }
                    // The leader failed or was cancelled; its sender is gone. Ask again.
                }
                Role::Lead(tx) => {
                    let _landing = Landing { flight: self, key };
                    let out = f.await;
                    if let Ok(value) = &out {
                        tx.send_replace(Some(value.clone()));
                    }
                    return out;
                }
            }
        }
    }

    /// How many keys have a flight right now (for tests).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// True when no flight is under way.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn callers_during_a_flight_share_its_success_and_flights_never_overlap() {
        let sf = Arc::new(SingleFlight::<usize>::default());
        let (running, max, runs) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (sf, running, max, runs) = (sf.clone(), running.clone(), max.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                sf.run("k", async {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    max.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, ()>(runs.fetch_add(1, Ordering::SeqCst))
                })
                .await
            }));
        }
        let mut answers = Vec::new();
        for t in tasks {
            answers.push(t.await.unwrap().unwrap());
        }
        assert_eq!(max.load(Ordering::SeqCst), 1, "never two flights of one key at once");
        assert!(runs.load(Ordering::SeqCst) < 50, "callers shared flights");
        assert!(answers.iter().all(|a| *a < runs.load(Ordering::SeqCst)));
        assert!(sf.is_empty());
        // Another key flies on its own.
        assert_eq!(sf.run("other", async { Ok::<_, ()>(7) }).await, Ok(7));
    }

    #[tokio::test]
    async fn a_failed_flight_is_not_shared_and_the_waiters_ask_again() {
        let sf = Arc::new(SingleFlight::<&'static str>::default());
        let leader = {
            let sf = sf.clone();
            tokio::spawn(async move {
                sf.run("k", async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err::<&str, _>("refused")
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        let waiter = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", async { Ok::<_, &str>("own") }).await })
        };
        assert_eq!(leader.await.unwrap(), Err("refused"));
        assert_eq!(waiter.await.unwrap(), Ok("own"), "ran its own after the failure");
        assert!(sf.is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_leader_leaves_no_key_and_its_waiters_go_on() {
        let sf = Arc::new(SingleFlight::<u8>::default());
        let leader = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", std::future::pending::<Result<u8, ()>>()).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let waiter = {
            let sf = sf.clone();
            tokio::spawn(async move { sf.run("k", async { Ok::<_, ()>(2) }).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(sf.len(), 1);
        leader.abort();
        let _ = leader.await;
        assert_eq!(waiter.await.unwrap(), Ok(2));
        assert!(sf.is_empty(), "a cancelled leader leaves no key behind");
    }
}
