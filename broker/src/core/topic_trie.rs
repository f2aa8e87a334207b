//! Hierarchical topic names and MQTT-style patterns over them.
//!
//! A topic name may have levels separated by `/` (`sensors/room1/temp`).
//! A pattern matches names level by level: `+` is exactly one level, `#`
//! (only as the last level) is zero or more levels, anything else must be
//! equal. `sensors/+/temp` matches `sensors/room1/temp`; `logs/#` matches
//! `logs`, `logs/app` and `logs/app/errors`; `#` matches every topic.
//!
//! [`TopicTrie`] holds the topic names by level, so matching a pattern
//! visits only the branches it can match, never every topic.

use std::collections::BTreeMap;

use super::error::BrokerError;
use super::names::{MAX_TOPIC_NAME, is_internal};

/// The level separator.
pub const SEPARATOR: char = '/';

/// One level of a parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    Exact(String),
    /// `+`: any one level.
    One,
    /// `#`: any number of levels, including none (always last).
    Rest,
}

/// A validated subscription pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    text: String,
    levels: Vec<Level>,
}

impl TopicPattern {
    /// Parses and checks `text`: 1-249 characters, no empty level, `+` and
    /// `#` only as whole levels, `#` only last, other levels made of topic
    /// name characters.
    pub fn parse(text: &str) -> Result<Self, BrokerError> {
        let invalid = |reason: &str| BrokerError::InvalidPattern {
            pattern: text.to_owned(),
            reason: reason.to_owned(),
        };
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if text.len() > MAX_TOPIC_NAME {
            return Err(invalid("it is longer than 249 characters"));
        }
        let parts: Vec<&str> = text.split(SEPARATOR).collect();
        let mut levels = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let level = match *part {
                "" => return Err(invalid("it has an empty level (a leading, trailing or doubled '/')")),
                "#" if i + 1 == parts.len() => Level::Rest,
                "#" => return Err(invalid("'#' must be the last level")),
                "+" => Level::One,
                p if p.contains(['#', '+']) => {
                    return Err(invalid("'+' and '#' must be a whole level (like 'a/+/b' or 'a/#')"));
                }
                p if !p
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) =>
                {
                    return Err(invalid("use only letters, digits, '.', '_', '-', '/', '+' and '#'"));
                }
                p => Level::Exact(p.to_owned()),
            };
            levels.push(level);
        }
        Ok(Self {
            text: text.to_owned(),
            levels,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `topic` matches (the same rule the trie applies).
    pub fn matches(&self, topic: &str) -> bool {
        let names: Vec<&str> = topic.split(SEPARATOR).collect();
        matches_levels(&self.levels, &names)
    }
}

fn matches_levels(pattern: &[Level], names: &[&str]) -> bool {
    match (pattern.first(), names.first()) {
        (Some(Level::Rest), _) => true,
        (None, None) => true,
        (None, Some(_)) | (Some(_), None) => false,
        (Some(Level::One), Some(_)) => matches_levels(&pattern[1..], &names[1..]),
        (Some(Level::Exact(p)), Some(n)) => p == n && matches_levels(&pattern[1..], &names[1..]),
    }
}

/// Topic names arranged by level.
#[derive(Debug, Default, Clone)]
pub struct TopicTrie {
    root: Node,
}

#[derive(Debug, Default, Clone)]
struct Node {
    children: BTreeMap<String, Node>,
    /// The full name when a topic ends at this node.
    topic: Option<String>,
}

impl TopicTrie {
    /// A trie holding `names`.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let mut trie = Self::default();
        for name in names {
            trie.insert(name);
        }
        trie
    }

    /// Adds a topic.
    pub fn insert(&mut self, name: &str) {
        let mut node = &mut self.root;
        for level in name.split(SEPARATOR) {
            node = node.children.entry(level.to_owned()).or_default();
        }
        node.topic = Some(name.to_owned());
    }

    /// Removes a topic (and the branches left empty).
    pub fn remove(&mut self, name: &str) {
        let levels: Vec<&str> = name.split(SEPARATOR).collect();
        remove_at(&mut self.root, &levels);
    }

    /// Every topic `pattern` matches, sorted, without internal `__*` topics.
    pub fn matching(&self, pattern: &TopicPattern) -> Vec<String> {
        let mut out = Vec::new();
        collect(&self.root, &pattern.levels, &mut out);
        out.retain(|t| !is_internal(t));
        out.sort();
        out
    }
}

/// Removes `levels` below `node`; true when `node` is now empty.
fn remove_at(node: &mut Node, levels: &[&str]) -> bool {
    match levels.split_first() {
        None => node.topic = None,
        Some((first, rest)) => {
            if let Some(child) = node.children.get_mut(*first)
                && remove_at(child, rest)
            {
                node.children.remove(*first);
            }
        }
    }
    node.topic.is_none() && node.children.is_empty()
}

fn collect(node: &Node, pattern: &[Level], out: &mut Vec<String>) {
    match pattern.split_first() {
        None => out.extend(node.topic.iter().cloned()),
        Some((Level::Rest, _)) => all_below(node, out),
        Some((Level::One, rest)) => {
            for child in node.children.values() {
                collect(child, rest, out);
            }
        }
        Some((Level::Exact(name), rest)) => {
            if let Some(child) = node.children.get(name) {
                collect(child, rest, out);
            }
        }
    }
}

fn all_below(node: &Node, out: &mut Vec<String>) {
    out.extend(node.topic.iter().cloned());
    for child in node.children.values() {
        all_below(child, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie() -> TopicTrie {
        TopicTrie::from_names([
            "sensors/room1/temp",
            "sensors/room2/temp",
            "sensors/room1/humidity",
            "sensors",
            "logs/app/errors",
            "logs",
            "orders",
            "__internal",
        ])
    }

    fn matching(p: &str) -> Vec<String> {
        trie().matching(&TopicPattern::parse(p).expect("valid pattern"))
    }

    #[test]
    fn plus_is_one_level_and_hash_is_any_number_of_levels() {
        assert_eq!(
            matching("sensors/+/temp"),
            vec!["sensors/room1/temp", "sensors/room2/temp"]
        );
        assert_eq!(
            matching("sensors/#"),
            vec![
                "sensors",
                "sensors/room1/humidity",
                "sensors/room1/temp",
                "sensors/room2/temp"
            ]
        );
        assert_eq!(matching("logs/#"), vec!["logs", "logs/app/errors"]);
        assert_eq!(
            matching("+"),
            vec!["logs", "orders", "sensors"],
            "internal topics are hidden"
        );
        assert_eq!(matching("orders"), vec!["orders"]);
        assert_eq!(matching("sensors/+"), Vec::<String>::new());
        assert_eq!(matching("#").len(), 7);
        assert_eq!(
            matching("+/room1/+"),
            vec!["sensors/room1/humidity", "sensors/room1/temp"]
        );
    }

    #[test]
    fn the_trie_and_the_direct_match_agree() {
        let names = ["sensors/room1/temp", "sensors", "logs/app/errors", "orders", "a/b/c/d"];
        let trie = TopicTrie::from_names(names);
        for p in [
            "#",
            "+",
            "sensors/#",
            "+/+/+",
            "a/+/c/#",
            "a/b/c/d/#",
            "logs/+/errors",
            "x/#",
        ] {
            let pattern = TopicPattern::parse(p).expect("valid");
            let direct: Vec<&str> = {
                let mut v: Vec<&str> = names.iter().copied().filter(|n| pattern.matches(n)).collect();
                v.sort();
                v
            };
            assert_eq!(trie.matching(&pattern), direct, "pattern {p}");
        }
    }

    #[test]
    fn removing_a_topic_prunes_its_branch_but_keeps_the_others() {
        let mut t = trie();
        t.remove("sensors/room2/temp");
        t.remove("logs");
        t.remove("never-there");
        let all = t.matching(&TopicPattern::parse("#").expect("valid"));
        assert!(!all.contains(&"sensors/room2/temp".to_string()));
        assert!(!all.contains(&"logs".to_string()));
        assert!(all.contains(&"logs/app/errors".to_string()), "a deeper topic stays");
        assert!(
            !t.root.children["sensors"].children.contains_key("room2"),
            "branch pruned"
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_the_reason() {
        for (p, reason) in [
            ("", "it is empty"),
            ("a/#/b", "'#' must be the last level"),
            ("a//b", "empty level"),
            ("/a", "empty level"),
            ("a/", "empty level"),
            ("a/b#", "must be a whole level"),
            ("a/+b", "must be a whole level"),
            ("a b", "use only"),
        ] {
            let err = TopicPattern::parse(p).expect_err(p).to_string();
            assert!(err.starts_with(&format!("invalid topic pattern '{p}'")), "{err}");
            assert!(err.contains(reason), "{p}: {err}");
        }
        assert!(TopicPattern::parse(&"a".repeat(250)).is_err());
    }
}
