//! Printing results: aligned text for people, one JSON object per line for
//! scripts.

use std::io::Write;

use serde_json::{Value, json};

use crate::cli::args::OutputFormat;

/// Where and how command results are printed (stdout).
#[derive(Debug, Clone, Copy)]
pub struct Output {
    format: OutputFormat,
}

impl Output {
    /// Prints in `format`.
    pub fn new(format: OutputFormat) -> Self {
        Self { format }
    }

    /// True when printing JSON lines.
    pub fn is_json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// Prints one result: `text()` in text mode, `json` as one line in JSON mode.
    pub fn item(&self, text: impl FnOnce() -> String, json: Value) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Text => self.line(&text()),
            OutputFormat::Json => self.line(&json.to_string()),
        }
    }

    /// Prints a table in text mode, or each row as a JSON object (built by
    /// `json_row`) in JSON mode.
    pub fn table<R>(
        &self,
        headers: &[&str],
        rows: &[R],
        text_row: impl Fn(&R) -> Vec<String>,
        json_row: impl Fn(&R) -> Value,
    ) -> std::io::Result<()> {
        match self.format {
            OutputFormat::Text => {
                let cells: Vec<Vec<String>> = rows.iter().map(text_row).collect();
                self.line(format_table(headers, &cells).trim_end())
            }
            OutputFormat::Json => {
                let mut out = std::io::stdout().lock();
                for row in rows {
                    writeln!(out, "{}", json_row(row))?;
                }
                out.flush()
            }
        }
    }

    /// Prints one line to stdout.
    pub fn line(&self, line: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()
    }
}

/// Aligns `rows` under `headers`, two spaces between columns.
pub fn format_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            } else {
                widths.push(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: &mut dyn Iterator<Item = &str>| {
        let mut line = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = widths[i].saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(&mut headers.iter().copied());
    for row in rows {
        push_row(&mut row.iter().map(String::as_str));
    }
    out
}

/// Bytes as text for people (invalid UTF-8 replaced).
pub fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Adds `name` to a JSON object: a string when `bytes` is UTF-8, else
/// `name_hex` with the hex digits. Empty keys become `null`.
pub fn put_bytes(obj: &mut serde_json::Map<String, Value>, name: &str, bytes: &[u8], empty_is_null: bool) {
    if empty_is_null && bytes.is_empty() {
        obj.insert(name.to_owned(), Value::Null);
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => {
            obj.insert(name.to_owned(), json!(s));
        }
        Err(_) => {
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            obj.insert(format!("{name}_hex"), json!(hex));
        }
    }
}

/// The JSON object printed for one record.
pub fn record_json(topic: &str, partition: i32, offset: u64, key: &[u8], value: &[u8]) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("topic".into(), json!(topic));
    obj.insert("partition".into(), json!(partition));
    obj.insert("offset".into(), json!(offset));
    put_bytes(&mut obj, "key", key, true);
    put_bytes(&mut obj, "value", value, false);
    Value::Object(obj)
}

/// The text line printed for one record.
pub fn record_text(key: &[u8], value: &[u8], show_key: bool) -> String {
    if show_key {
        format!("{}\t{}", text_of(key), text_of(value))
    } else {
        text_of(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["0".to_string(), "node-1".to_string(), "online".to_string()],
            vec!["10".to_string(), "n2".to_string(), "".to_string()],
        ];
        let t = format_table(&["PARTITION", "LEADER", "STATE"], &rows);
        assert_eq!(
            t,
            "PARTITION  LEADER  STATE\n\
             0          node-1  online\n\
             10         n2\n"
        );
    }

    #[test]
    fn record_json_handles_binary_and_empty_keys() {
        let v = record_json("t", 1, 7, b"", b"hello");
        assert_eq!(
            v,
            json!({"topic": "t", "partition": 1, "offset": 7, "key": null, "value": "hello"})
        );
        let v = record_json("t", 0, 0, b"k", &[0xff, 0x00]);
        assert_eq!(v["key"], "k");
        assert_eq!(v["value_hex"], "ff00");
        assert!(v.get("value").is_none());
    }

    #[test]
    fn record_text_with_and_without_key() {
        assert_eq!(record_text(b"k", b"v", true), "k\tv");
        assert_eq!(record_text(b"k", b"v", false), "v");
    }
}
