//! A bounded cache of tenant look-ups (domain → tenant GUID).
//!
//! Domains reach the look-up from user input (sign-in hints, approval pages), so without a cache
//! every request could send the broker to Entra for a domain of the requester's choosing, and an
//! unbounded cache would let them fill memory. Failed look-ups are remembered too, for less time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most domains remembered; past it, expired entries go, and if none has, everything does
/// (a cache miss costs one look-up, never a wrong answer).
pub const CAPACITY: usize = 10_000;
/// How long a resolved tenant is remembered (a domain's tenant practically never changes).
const FOUND_TTL: Duration = Duration::from_secs(3_600);
/// How long a failed look-up is remembered.
const MISSING_TTL: Duration = Duration::from_secs(300);

/// Domain → (tenant GUID or `None`, when the entry expires).
#[derive(Default)]
pub struct TenantCache {
    entries: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl TenantCache {
    /// The remembered answer for `domain`: `Some(answer)` while it is fresh.
    pub fn get(&self, domain: &str) -> Option<Option<String>> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(domain)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(answer, _)| answer.clone())
    }

    /// Remembers the answer for `domain`.
    pub fn put(&self, domain: &str, answer: Option<String>) {
        let now = Instant::now();
        let until = now + if answer.is_some() { FOUND_TTL } else { MISSING_TTL };
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY && !map.contains_key(domain) {
            map.retain(|_, (_, u)| *u > now);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(domain.to_string(), (answer, until));
    }

    /// How many domains are remembered.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_answers_and_never_grows_past_its_capacity() {
        let c = TenantCache::default();
        c.put("contoso.com", Some("guid".into()));
        c.put("nowhere.example", None);
        assert_eq!(c.get("contoso.com"), Some(Some("guid".into())));
        assert_eq!(c.get("nowhere.example"), Some(None), "failures are remembered too");
        assert_eq!(c.get("other.com"), None);
        for i in 0..CAPACITY * 2 {
            c.put(&format!("d{i}.example"), None);
            assert!(c.len() <= CAPACITY);
        }
    }
}
