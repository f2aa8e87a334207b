//! Per-object exponential backoff: each failure of one object doubles its
//! next delay (up to a ceiling); a success resets it. One object that keeps
//! failing is retried less and less often without slowing the others.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Delays by key (`reconcile:<ns>/<name>`, `cluster-status:<ns>/<name>`).
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Default for Backoff {
    /// 2 s, 4 s, 8 s, ... up to 5 minutes.
    fn default() -> Self {
        Backoff::new(Duration::from_secs(2), Duration::from_secs(300))
    }
}

impl Backoff {
    /// Starts at `base`, doubles per failure, never beyond `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max,
            failures: Mutex::default(),
        }
    }

    /// Records one more failure of `key`; returns how long to wait.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = failures.entry(key.to_string()).or_insert(0);
        let delay = self.base.saturating_mul(2u32.saturating_pow(*n)).min(self.max);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key` (it succeeded).
    pub fn reset(&self, key: &str) {
        self.failures.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_per_object_up_to_the_ceiling_and_resets_on_success() {
        let b = Backoff::new(Duration::from_secs(2), Duration::from_secs(30));
        let delays: Vec<u64> = (0..6).map(|_| b.failed("a").as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 8, 16, 30, 30]);
        assert_eq!(b.failed("b"), Duration::from_secs(2), "another object is not slowed");
        b.reset("a");
        assert_eq!(b.failed("a"), Duration::from_secs(2));
        for _ in 0..100 {
            b.failed("c");
        }
        assert_eq!(
            b.failed("c"),
            Duration::from_secs(30),
            "no overflow after many failures"
        );
    }
}
