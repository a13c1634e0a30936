//! What the client commands print: with `--json` exactly one JSON value on standard output,
//! else text for people — aligned `key: value` lines and tables.

use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;

use chrono::{DateTime, Utc};
use contextd_client::proto::ContextObject;
use serde::Serialize;
use serde_json::Value;

/// Where a command's result goes, and in which form.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    json: bool,
}

impl Output {
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether `--json` was given.
    pub fn is_json(self) -> bool {
        self.json
    }

    /// Prints `value` as one JSON value with `--json`, else the text `human` makes.
    pub fn emit<T: Serialize + ?Sized>(
        self,
        value: &T,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.json {
            write_stdout(&serde_json::to_string(value)?)
        } else {
            write_stdout(&human())
        }
    }
}

/// Writes `text` and a newline to standard output; a reader that went away (`| head`) is
/// not an error.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{text}").and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Rows under a header, each column as wide as its widest cell (the last one unpadded).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            text.push_str(cell);
            if i + 1 < widths.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        text.trim_end().to_owned()
    };
    let mut lines = vec![line(&mut header.iter().copied())];
    for row in rows {
        lines.push(line(&mut row.iter().map(String::as_str)));
    }
    lines.join("\n")
}

/// `key: value` lines with the values aligned.
pub fn pairs(rows: &[(String, String)]) -> String {
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    rows.iter()
        .map(|(k, v)| {
            let pad = width - k.chars().count();
            format!("{k}:{} {v}", " ".repeat(pad)).trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JSON value as one line of text: strings as they are, the rest as JSON.
pub fn text(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    text.replace(['\r', '\n'], " ")
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// A time as people read it, to the second, in UTC.
pub fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// The first 8 characters of an id, enough to tell objects of one timeline apart.
pub fn short_id(id: &impl ToString) -> String {
    id.to_string().chars().take(8).collect()
}

/// An object as aligned `key: value` lines: its properties, then its data fields by id.
pub fn object(o: &ContextObject) -> String {
    let mut rows: Vec<(String, String)> = vec![
        ("id".into(), o.id.to_string()),
        ("type".into(), o.kind.to_string()),
    ];
    let mut optional = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            rows.push((key.into(), v));
        }
    };
    optional("customerId", o.customer_id.map(|id| id.to_string()));
    optional("parentId", o.parent_id.map(|id| id.to_string()));
    optional("mediaType", o.media_type.map(|m| m.to_string()));
    optional("detailType", o.detail_type.map(|d| d.to_string()));
    rows.push(("state".into(), o.state.to_string()));
    rows.push(("fieldsets".into(), o.fieldsets.join(", ")));
    if !o.tags.is_empty() {
        rows.push(("tags".into(), o.tags.join(", ")));
    }
    let contributors: Vec<String> = o
        .contributors
        .iter()
        .map(|c| format!("{} ({})", c.id, c.kind))
        .collect();
    rows.push(("contributors".into(), contributors.join(", ")));
    if !o.withheld.is_empty() {
        rows.push(("withheld".into(), o.withheld.join(", ")));
    }
    rows.push(("created".into(), time(&o.created)));
    rows.push(("lastUpdated".into(), time(&o.last_updated)));
    rows.push(("version".into(), o.version.to_string()));
    rows.extend(o.data.iter().map(|(k, v)| (k.clone(), text(v))));
    pairs(&rows)
}

/// A progress bar on standard error (a count when the total is known), hidden with `--json`
/// or when nobody watches.
pub fn progress(out: Output, total: Option<u64>) -> indicatif::ProgressBar {
    if out.is_json() || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(n) => (
            indicatif::ProgressBar::new(n),
            "{msg} [{bar:30}] {pos}/{len} ({per_sec}, {eta} left)",
        ),
        None => (
            indicatif::ProgressBar::new_spinner(),
            "{spinner} {msg} ({elapsed})",
        ),
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "NAME", "NOTE"],
            &[
                vec!["1".into(), "Ada".into(), "x".into()],
                vec!["22".into(), "B".into(), "".into()],
            ],
        );
        assert_eq!(t, "ID  NAME  NOTE\n1   Ada   x\n22  B");
    }

    #[test]
    fn pairs_align_values() {
        let p = pairs(&[("id".into(), "1".into()), ("version".into(), "2".into())]);
        assert_eq!(p, "id:      1\nversion: 2");
    }

    #[test]
    fn cut_keeps_short_text_and_marks_the_cut() {
        assert_eq!(cut("hello", 10), "hello");
        assert_eq!(cut("hello world", 6), "hello…");
    }
}
