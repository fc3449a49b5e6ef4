//! Plain-text tables and JSON output for read commands.

use serde::Serialize;

/// Output format of a command that prints (`-o text|json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// For people: tables and lines (`table` is accepted too).
    #[default]
    #[value(name = "text", alias = "table")]
    Table,
    /// For scripts: docs/cli-json.md.
    Json,
}

/// Renders rows as left-aligned columns with a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = vec![line(header.to_vec())];
    for r in rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n") + "\n"
}

/// A time as every `-o json` shows it: RFC 3339, UTC, milliseconds;
/// `None` (JSON `null`) for 0, "never".
pub fn rfc3339(ms: i64) -> Option<String> {
    (ms > 0).then(|| {
        humantime::format_rfc3339_millis(cutover_common::time::from_unix_ms(ms)).to_string()
    })
}

/// Pretty JSON with a trailing newline.
pub fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serializable") + "\n"
}

/// "12s ago" for a Unix-ms timestamp (or "never").
pub fn ago(ms: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let now = cutover_common::time::now_ms();
    let d = std::time::Duration::from_millis(u64::try_from(now - ms).unwrap_or(0));
    format!("{} ago", cutover_common::time::short_duration(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns_under_their_headers() {
        let t = table(
            &["HOST", "STATE"],
            &[
                vec!["web-1".into(), "ready".into()],
                vec!["a".into(), "lost".into()],
            ],
        );
        assert_eq!(t, "HOST   STATE\nweb-1  ready\na      lost\n");
    }
}
