//! Records with a time to live: PRODUCE_WITH_TTL and a topic's message TTL.
//! The expiry is fixed when the record is produced (it travels in the
//! replicated command), reads skip expired records, and retention removes
//! a partition's leading records once they have all expired.

use bytes::Bytes;

use super::command::NewRecord;
use super::error::{BrokerError, BrokerResult};
use crate::storage::record_batch::{FLAG_EXPIRES, expiring_value};

/// The longest TTL accepted: ten years.
pub const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// Refuses a TTL of 0 and TTLs that are negative on the wire (Go reads an
/// i64) or absurdly long.
pub fn validate_ttl(ttl_ms: u64) -> BrokerResult<u64> {
    if ttl_ms == 0 {
        return Err(BrokerError::InvalidArgument(
            "invalid TTL: 0 ms; a TTL must be positive (send a plain PRODUCE for a record that never expires)".into(),
        ));
    }
    if ttl_ms > MAX_TTL_MS {
        let shown = if ttl_ms > i64::MAX as u64 {
            format!("{} ms (negative as a signed value)", ttl_ms as i64)
        } else {
            format!("{ttl_ms} ms")
        };
        return Err(BrokerError::InvalidArgument(format!(
            "invalid TTL: {shown}; the most accepted is {MAX_TTL_MS} ms (10 years)"
        )));
    }
    Ok(ttl_ms)
}

impl NewRecord {
    /// A record that expires `ttl_ms` after `now_ms`.
    pub fn expiring(key: Bytes, value: &[u8], now_ms: i64, ttl_ms: u64) -> Self {
        let expires_at = now_ms.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX));
        Self {
            key,
            value: Bytes::from(expiring_value(expires_at, value)),
            flags: FLAG_EXPIRES,
        }
    }

    /// Whether the record already carries an expiry.
    pub fn expires(&self) -> bool {
        self.flags & FLAG_EXPIRES != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_negative_and_absurd_ttls_are_refused_with_the_reason() {
        assert!(validate_ttl(0).unwrap_err().to_string().contains("must be positive"));
        let negative = validate_ttl(u64::MAX).unwrap_err().to_string();
        assert!(negative.contains("-1 ms (negative"), "{negative}");
        assert!(
            validate_ttl(MAX_TTL_MS + 1)
                .unwrap_err()
                .to_string()
                .contains("10 years")
        );
        assert_eq!(validate_ttl(1).unwrap(), 1);
        assert_eq!(validate_ttl(MAX_TTL_MS).unwrap(), MAX_TTL_MS);
    }

    #[test]
    fn an_expiring_record_carries_its_expiry_before_the_payload() {
        let r = NewRecord::expiring(Bytes::new(), b"hello", 1_000, 500);
        assert!(r.expires());
        assert_eq!(&r.value[..8], &1_500i64.to_be_bytes());
        assert_eq!(&r.value[8..], b"hello");
        assert!(!NewRecord::new(Bytes::new(), Bytes::from_static(b"x")).expires());
    }
}
