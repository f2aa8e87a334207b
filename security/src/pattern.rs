//! Topic patterns for ACLs.
//!
//! Topic names are 1-249 characters of `[A-Za-z0-9._-]` in levels
//! separated by `/`, so the characters `*`, `+` and `#` never occur in a
//! topic name; a string containing
//! any of `*`, `+`, `#` is therefore a pattern, anything else an exact topic
//! (this is how ACL_SET's plain `topic` field carries patterns).
//!
//! Two forms exist; they cannot be mixed in one pattern:
//!
//! - **Prefix**: one `*`, as the last character. `orders.*` matches every
//!   topic that starts with `orders.` (`orders.eu`, `orders.eu.created`),
//!   not `orders`; `orders*` also matches `orders` and `orders-archive`;
//!   `*` alone matches every topic.
//! - **Levels** (MQTT style): the pattern and the topic are split into
//!   levels at `.` and `/` (both are separators, so `orders/+/created` and
//!   `orders.+.created` mean the same). `+` stands for exactly one level,
//!   `#` for zero or more trailing levels and may only be the last level.
//!   Wildcards occupy a whole level (`ord+` is refused). `orders.+.created`
//!   matches `orders.eu.created`, not `orders.eu.x.created`; `orders.#`
//!   matches `orders`, `orders.eu` and `orders.eu.created`; `#` matches
//!   every topic.
//!
//! Literal parts use the topic-name characters (`[A-Za-z0-9._-]` plus the
//! separators). When several patterns match a topic, the most specific one
//! applies: see [`TopicPattern::specificity`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest pattern accepted.
pub const MAX_PATTERN_LEN: usize = 255;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic pattern '{pattern}': {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong and how to write it instead.
    pub reason: String,
}

/// True when `text` is a pattern (contains `*`, `+` or `#`), not a topic name.
pub fn is_pattern(text: &str) -> bool {
    text.contains(['*', '+', '#'])
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Literal(String),
    /// `+`
    One,
    /// `#`
    Rest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Prefix(String),
    Levels(Vec<Level>),
}

/// A compiled topic pattern. Serialized as its source text.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TopicPattern {
    source: String,
    kind: Kind,
}

impl fmt::Debug for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicPattern({:?})", self.source)
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl TryFrom<String> for TopicPattern {
    type Error = PatternError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        TopicPattern::parse(&value)
    }
}

impl From<TopicPattern> for String {
    fn from(value: TopicPattern) -> Self {
        value.source
    }
}

fn is_separator(c: char) -> bool {
    c == '.' || c == '/'
}

fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')
}

impl TopicPattern {
    /// Parses and validates a pattern (see the module documentation).
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let fail = |reason: &str| PatternError {
            pattern: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        if text.len() > MAX_PATTERN_LEN {
            return Err(fail("it is longer than 255 characters"));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !is_literal_char(*c) && !matches!(c, '*' | '+' | '#'))
        {
            return Err(fail(&format!(
                "character '{}' is not allowed; use letters, digits, '.', '_', '-', '/' and the wildcards '*', '+', '#'",
                bad.escape_default()
            )));
        }
        let has_star = text.contains('*');
        let has_level_wildcard = text.contains(['+', '#']);
        if has_star && has_level_wildcard {
            return Err(fail(
                "'*' (prefix) cannot be combined with '+' or '#' (levels); use 'orders.#' or 'orders.*'",
            ));
        }
        if has_star {
            let prefix = &text[..text.len() - 1];
            if !text.ends_with('*') || prefix.contains('*') {
                return Err(fail("'*' may only appear once, as the last character (prefix match)"));
            }
            return Ok(Self {
                source: text.to_owned(),
                kind: Kind::Prefix(prefix.to_owned()),
            });
        }
        if !has_level_wildcard {
            return Err(fail(
                "it has no wildcard ('*', '+' or '#'); use an exact topic ACL instead",
            ));
        }
        let parts: Vec<&str> = text.split(is_separator).collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "+" => Level::One,
                "#" if i + 1 == parts.len() => Level::Rest,
                "#" => return Err(fail("'#' may only be the last level (as in 'orders.#')")),
                literal if literal.contains(['+', '#']) => {
                    return Err(fail(
                        "'+' and '#' must fill a whole level between separators (as in 'orders.+.created')",
                    ));
                }
                literal => Level::Literal(literal.to_owned()),
            };
            levels.push(level);
        }
        Ok(Self {
            source: text.to_owned(),
            kind: Kind::Levels(levels),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when `topic` matches.
    pub fn matches(&self, topic: &str) -> bool {
        match &self.kind {
            Kind::Prefix(prefix) => topic.starts_with(prefix.as_str()),
            Kind::Levels(levels) => {
                let mut parts = topic.split(is_separator);
                for level in levels {
                    match level {
                        Level::Rest => return true,
                        Level::One => {
                            if parts.next().is_none() {
                                return false;
                            }
                        }
                        Level::Literal(literal) => {
                            if parts.next() != Some(literal.as_str()) {
                                return false;
                            }
                        }
                    }
                }
                parts.next().is_none()
            }
        }
    }

    /// How specific the pattern is; of several matching patterns the one
    /// with the greatest value applies. Ordered by (1) the number of literal
    /// characters (separators included), more is more specific; (2) the
    /// number of wildcards, fewer is more specific; (3) the pattern text,
    /// so that the order is total and the same on every node.
    pub fn specificity(&self) -> (usize, std::cmp::Reverse<usize>, std::cmp::Reverse<&str>) {
        let wildcards = self.source.chars().filter(|c| matches!(c, '*' | '+' | '#')).count();
        let literal = self.source.len() - wildcards;
        (
            literal,
            std::cmp::Reverse(wildcards),
            std::cmp::Reverse(self.source.as_str()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> TopicPattern {
        TopicPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn prefix_patterns() {
        let pat = p("orders.*");
        assert!(pat.matches("orders.eu"));
        assert!(pat.matches("orders.eu.created"));
        assert!(pat.matches("orders."));
        assert!(!pat.matches("orders"));
        assert!(!pat.matches("order.eu"));
        let pat = p("orders*");
        assert!(pat.matches("orders") && pat.matches("orders-archive"));
        assert!(p("*").matches("anything"));
    }

    #[test]
    fn level_patterns() {
        let pat = p("orders.+.created");
        assert!(pat.matches("orders.eu.created"));
        assert!(!pat.matches("orders.eu.x.created"));
        assert!(!pat.matches("orders.created"));
        assert!(!pat.matches("orders.eu.created.x"));
        let slash = p("orders/+/created");
        assert!(slash.matches("orders.eu.created"), "'/' and '.' are both separators");
        let rest = p("orders.#");
        assert!(rest.matches("orders"));
        assert!(rest.matches("orders.eu"));
        assert!(rest.matches("orders.eu.created"));
        assert!(!rest.matches("ordersx"));
        assert!(!rest.matches("payments.eu"));
        assert!(p("#").matches("x.y.z"));
        let plus = p("+");
        assert!(plus.matches("orders") && !plus.matches("orders.eu"));
        let mid = p("+.eu.#");
        assert!(mid.matches("orders.eu") && mid.matches("payments.eu.x.y") && !mid.matches("orders.us"));
    }

    #[test]
    fn invalid_patterns() {
        for (bad, hint) in [
            ("", "empty"),
            ("orders", "no wildcard"),
            ("ord*ers", "last character"),
            ("orders.**", "last character"),
            ("orders.*.+", "cannot be combined"),
            ("orders.#.eu", "last level"),
            ("ord+.eu", "whole level"),
            ("orders.e#", "whole level"),
            ("orders eu.*", "not allowed"),
            ("orders.\u{e9}.*", "not allowed"),
        ] {
            let err = TopicPattern::parse(bad).unwrap_err().to_string();
            assert!(err.contains(hint), "{bad:?}: {err}");
        }
        let long = format!("{}*", "a".repeat(MAX_PATTERN_LEN));
        assert!(TopicPattern::parse(&long).is_err());
    }

    #[test]
    fn specificity_orders_patterns() {
        let mut pats = [p("#"), p("orders.*"), p("orders.eu.*"), p("orders.+.created"), p("*")];
        pats.sort_by(|a, b| b.specificity().cmp(&a.specificity()));
        let order: Vec<&str> = pats.iter().map(TopicPattern::as_str).collect();
        assert_eq!(order, ["orders.+.created", "orders.eu.*", "orders.*", "#", "*"]);
    }

    #[test]
    fn is_pattern_detects_wildcards() {
        assert!(is_pattern("orders.*") && is_pattern("a.+") && is_pattern("#"));
        assert!(!is_pattern("orders.eu"));
    }

    #[test]
    fn serde_round_trip_validates() {
        let json = serde_json::to_string(&p("orders.+")).expect("serialize");
        assert_eq!(json, "\"orders.+\"");
        let back: TopicPattern = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, p("orders.+"));
        assert!(serde_json::from_str::<TopicPattern>("\"ord+\"").is_err());
    }
}
