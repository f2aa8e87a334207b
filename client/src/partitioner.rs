//! Client-side partition choice, identical to the broker's rule so that a
//! record lands on the same partition whichever side picks it:
//!
//! 1. an explicit partition is honoured;
//! 2. a non-empty key goes to `FNV-1a-32(key) mod partitions` (the Go
//!    broker's rule, kept for placement compatibility);
//! 3. a keyless record goes round robin, one counter per topic, starting at
//!    partition 0.

use std::collections::HashMap;

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// 32-bit FNV-1a hash of `data`.
pub fn fnv1a_32(data: &[u8]) -> u32 {
    data.iter().fold(FNV_OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(*byte)).wrapping_mul(FNV_PRIME)
    })
}

/// The partition a non-empty `key` maps to in a topic with `partitions`
/// partitions (`partitions` must be at least 1; 0 is treated as 1).
pub fn partition_for_key(key: &[u8], partitions: u32) -> i32 {
    let partitions = partitions.max(1);
    // partitions <= u32::MAX, and the broker stores partition ids as i32, so
    // the remainder always fits.
    (fnv1a_32(key) % partitions) as i32
}

/// Chooses partitions for records, keeping one round-robin counter per topic.
#[derive(Debug, Default)]
pub struct Partitioner {
    round_robin: HashMap<String, u32>,
}

impl Partitioner {
    /// A partitioner with all round-robin counters at partition 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The partition for a record of `topic` with `partitions` partitions.
    ///
    /// `explicit` (when `Some`) wins; otherwise a non-empty `key` is hashed;
    /// otherwise the topic's round-robin counter is used and advanced.
    pub fn choose(&mut self, topic: &str, key: &[u8], explicit: Option<i32>, partitions: u32) -> i32 {
        if let Some(partition) = explicit {
            return partition;
        }
        let partitions = partitions.max(1);
        if !key.is_empty() {
            return partition_for_key(key, partitions);
        }
        let counter = match self.round_robin.get_mut(topic) {
            Some(counter) => counter,
            None => self.round_robin.entry(topic.to_owned()).or_insert(0),
        };
        let partition = *counter % partitions;
        *counter = counter.wrapping_add(1);
        partition as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Reference values of the FNV-1a 32-bit test suite (and Go's hash/fnv).
        assert_eq!(fnv1a_32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a_32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a_32(b"foobar"), 0xbf9c_f968);
    }

    #[test]
    fn key_partition_is_hash_mod_partitions() {
        assert_eq!(partition_for_key(b"foobar", 7), (0xbf9c_f968u32 % 7) as i32);
        assert_eq!(partition_for_key(b"a", 1), 0);
        // A zero partition count is treated as one rather than dividing by zero.
        assert_eq!(partition_for_key(b"a", 0), 0);
    }

    #[test]
    fn explicit_partition_wins() {
        let mut p = Partitioner::new();
        assert_eq!(p.choose("t", b"key", Some(5), 3), 5);
    }

    #[test]
    fn keyed_records_are_stable() {
        let mut p = Partitioner::new();
        let first = p.choose("t", b"user-42", None, 6);
        for _ in 0..10 {
            assert_eq!(p.choose("t", b"user-42", None, 6), first);
        }
    }

    #[test]
    fn keyless_records_round_robin_per_topic() {
        let mut p = Partitioner::new();
        let a: Vec<i32> = (0..5).map(|_| p.choose("a", b"", None, 3)).collect();
        assert_eq!(a, vec![0, 1, 2, 0, 1]);
        // Another topic has its own counter.
        assert_eq!(p.choose("b", b"", None, 3), 0);
        assert_eq!(p.choose("a", b"", None, 3), 2);
    }
}
