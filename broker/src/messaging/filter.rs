//! FETCH's server-side filter (WIRE.md §8.6). A record is kept if any holds:
//! - the filter starts with `$.` and the value is a JSON object containing that dotted path;
//! - the filter is a case-insensitive substring of the value or the key;
//! - the filter, compiled as a regular expression, matches the value or the key.

use regex::bytes::{Regex, RegexBuilder};

/// Bounds on what a client-supplied pattern may cost to compile.
const MAX_FILTER_LEN: usize = 4096;
const REGEX_SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug)]
pub struct RecordFilter {
    needle_lower: Vec<u8>,
    json_path: Option<Vec<String>>,
    regex: Option<Regex>,
}

impl RecordFilter {
    /// `None` for an empty filter (keep everything).
    pub fn parse(filter: &str) -> Result<Option<Self>, String> {
        if filter.is_empty() {
            return Ok(None);
        }
        if filter.len() > MAX_FILTER_LEN {
            return Err(format!(
                "filter is {} bytes; the limit is {MAX_FILTER_LEN}",
                filter.len()
            ));
        }
        let json_path = filter
            .strip_prefix("$.")
            .map(|path| path.split('.').map(str::to_owned).collect());
        // Not every filter is a valid regex (e.g. "a(b"): then only the other rules apply.
        let regex = RegexBuilder::new(filter).size_limit(REGEX_SIZE_LIMIT).build().ok();
        Ok(Some(Self {
            needle_lower: filter.to_lowercase().into_bytes(),
            json_path,
            regex,
        }))
    }

    pub fn matches(&self, key: &[u8], value: &[u8]) -> bool {
        if let Some(path) = &self.json_path
            && json_has_path(value, path)
        {
            return true;
        }
        if contains_ignore_case(value, &self.needle_lower) || contains_ignore_case(key, &self.needle_lower) {
            return true;
        }
        self.regex
            .as_ref()
            .is_some_and(|re| re.is_match(value) || re.is_match(key))
    }
}

fn json_has_path(value: &[u8], path: &[String]) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(value) else {
        return false;
    };
    let mut current = &serde_json::Value::Object(map);
    for part in path {
        match current.get(part) {
            Some(next) => current = next,
            None => return false,
        }
    }
    true
}

fn contains_ignore_case(haystack: &[u8], needle_lower: &[u8]) -> bool {
    if needle_lower.len() > haystack.len() {
        return false;
    }
    haystack
        .windows(needle_lower.len())
        .any(|w| w.iter().zip(needle_lower).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(filter: &str, key: &str, value: &str) -> bool {
        RecordFilter::parse(filter)
            .unwrap()
            .unwrap()
            .matches(key.as_bytes(), value.as_bytes())
    }

    #[test]
    fn filter_rules() {
        assert!(RecordFilter::parse("").unwrap().is_none());
        assert!(keep("ERROR", "", "an error happened"));
        assert!(keep("user-1", "user-1", "x"));
        assert!(keep("^id=[0-9]+$", "", "id=42"));
        assert!(!keep("^id=[0-9]+$", "", "id=x"));
        assert!(keep("$.order.id", "", r#"{"order":{"id":1}}"#));
        assert!(!keep("$.order.id", "", r#"{"order":{}}"#));
        assert!(keep("a(b", "", "xa(bx"), "invalid regex still matches as substring");
        assert!(!keep("zzz", "k", "value"));
        assert!(RecordFilter::parse(&"a".repeat(5000)).is_err());
    }
}
