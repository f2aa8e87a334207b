//! Validation of topic names and group ids.

use super::error::BrokerError;

/// Longest topic name accepted (as Kafka, so names fit file-system limits).
pub const MAX_TOPIC_NAME: usize = 249;
pub const MAX_GROUP_ID: usize = 255;
/// Largest partition count a topic may have.
pub const MAX_PARTITIONS: u32 = 10_000;

/// Topic names: 1-249 characters of `[A-Za-z0-9._-]` in one or more
/// levels separated by `/` (`sensors/room1/temp`, see
/// [`super::topic_trie`]): no empty level, no level `.` or `..`, and so no
/// `+` or `#`, which patterns use.
pub fn validate_topic_name(name: &str) -> Result<(), BrokerError> {
    let invalid = |reason| {
        Err(BrokerError::InvalidTopicName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > MAX_TOPIC_NAME {
        return invalid("it is longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        return invalid("use only letters, digits, '.', '_', '-' and '/' between levels");
    }
    for level in name.split('/') {
        if level.is_empty() {
            return invalid("it has an empty level (a leading, trailing or doubled '/')");
        }
        if level == "." || level == ".." {
            return invalid("'.' and '..' are reserved (also as a level)");
        }
    }
    Ok(())
}

/// Schema names follow the topic name rules (a schema is often named after
/// its topic, `sensors/room1/temp` included).
pub fn validate_schema_name(name: &str) -> Result<(), BrokerError> {
    validate_topic_name(name).map_err(|err| match err {
        BrokerError::InvalidTopicName { reason, .. } => {
            BrokerError::Schema(format!("invalid schema name '{name}': {reason}"))
        }
        other => other,
    })
}

/// Group ids: 1-255 bytes without control characters.
pub fn validate_group_id(group: &str) -> Result<(), BrokerError> {
    let invalid = |reason| {
        Err(BrokerError::InvalidGroupId {
            group: group.to_owned(),
            reason,
        })
    };
    if group.is_empty() {
        return invalid("it is empty");
    }
    if group.len() > MAX_GROUP_ID {
        return invalid("it is longer than 255 bytes");
    }
    if group.chars().any(char::is_control) {
        return invalid("it contains control characters");
    }
    Ok(())
}

/// Internal topics start with `__` and are hidden from LIST_TOPICS.
pub fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        for ok in [
            "orders",
            "a",
            "orders.dlq",
            "Orders_2024-01",
            &"x".repeat(249),
            "sensors/room1/temp",
            "a/b",
        ] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "has space",
            "ünï",
            &"x".repeat(250),
            "a\0b",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "a/+/b",
            "a/#",
        ] {
            let err = validate_topic_name(bad).unwrap_err();
            assert!(err.to_string().starts_with("invalid topic name"), "{err}");
        }
    }

    #[test]
    fn group_ids() {
        assert!(validate_group_id("billing service").is_ok());
        assert!(validate_group_id("").is_err());
        assert!(validate_group_id("a\nb").is_err());
        assert!(validate_group_id(&"g".repeat(256)).is_err());
    }
}
