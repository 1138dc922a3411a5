//! Human-readable output of the admin commands: aligned tables and `key: value` lines.
//! `--json` bypasses all of this.

use serde_json::Value;

/// A cell's text: strings bare, null as `-`, the rest as JSON.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An aligned table with a header row; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(&c);
            } else {
                let pad = widths[i] - c.chars().count();
                out.push_str(&c);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn items<'a>(data: &'a Value, key: &str) -> &'a [Value] {
    data[key].as_array().map_or(&[], Vec::as_slice)
}

/// Epoch ms as RFC 3339 (UTC, seconds), `-` when absent.
fn time(v: &Value) -> String {
    v.as_i64()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// `groups`.
pub(super) fn groups(data: &Value) -> String {
    let rows: Vec<Vec<String>> = items(data, "groups")
        .iter()
        .map(|g| {
            vec![
                cell(&g["group"]),
                cell(&g["topic"]),
                cell(&g["paused"]),
                cell(&g["deadLetterTopic"]),
            ]
        })
        .collect();
    table(&["GROUP", "TOPIC", "PAUSED", "DEAD-LETTER-TOPIC"], &rows)
}

/// `describe`.
pub(super) fn describe(data: &Value) -> String {
    let mut out = format!(
        "group {}  topic {}  state {}  assignor {}  paused {}\n\n",
        cell(&data["group"]),
        cell(&data["topic"]),
        cell(&data["state"]),
        cell(&data["protocol"]),
        cell(&data["paused"]),
    );
    let rows: Vec<Vec<String>> = items(data, "partitions")
        .iter()
        .map(|p| {
            let local = &p["local"];
            vec![
                cell(&p["partition"]),
                cell(&p["committed"]),
                cell(&p["logEnd"]),
                cell(&p["lag"]),
                cell(&local["position"]),
                if local["stalled"].as_bool() == Some(true) {
                    format!("stalled: {}", cell(&local["stalledReason"]))
                } else if local.is_null() {
                    "-".to_owned()
                } else {
                    "ok".to_owned()
                },
                cell(&p["owner"]),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            "PARTITION",
            "COMMITTED",
            "LOG-END",
            "LAG",
            "POSITION",
            "LOCAL",
            "OWNER",
        ],
        &rows,
    ));
    let members: Vec<Vec<String>> = items(data, "members")
        .iter()
        .map(|m| {
            let parts: Vec<String> = items(m, "partitions").iter().map(cell).collect();
            vec![
                cell(&m["memberId"]),
                cell(&m["clientId"]),
                cell(&m["host"]),
                parts.join(","),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(&["MEMBER", "CLIENT-ID", "HOST", "PARTITIONS"], &members));
    out
}

/// `pause` / `resume`.
pub(super) fn paused(data: &Value) -> String {
    format!(
        "group {} topic {}: {}\n",
        cell(&data["group"]),
        cell(&data["topic"]),
        if data["paused"].as_bool() == Some(true) {
            "paused"
        } else {
            "running"
        }
    )
}

/// `retransmit`.
pub(super) fn retransmit(data: &Value) -> String {
    let rows: Vec<Vec<String>> = items(data, "partitions")
        .iter()
        .map(|p| vec![cell(&p["partition"]), cell(&p["from"]), cell(&p["to"])])
        .collect();
    let mut out = table(&["PARTITION", "FROM", "TO"], &rows);
    out.push_str(&format!(
        "{} to {}\n",
        if data["applied"].as_bool() == Some(true) {
            "moved"
        } else {
            "dry run: would move"
        },
        time(&data["from_ms"])
    ));
    out
}

/// `deadletters list`.
pub(super) fn dead_letters(data: &Value) -> String {
    let rows: Vec<Vec<String>> = items(data, "items")
        .iter()
        .map(|l| {
            let replayed = match &l["replayed"] {
                Value::Null => "-".to_owned(),
                r => format!("{}x by {}", cell(&r["count"]), cell(&r["by"])),
            };
            vec![
                cell(&l["id"]),
                cell(&l["callId"]),
                cell(&l["status"]),
                cell(&l["attempts"]),
                time(&l["deadLetteredAtMs"]),
                cell(&l["host"]),
                replayed,
                cell(&l["reason"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "CALL-ID",
            "STATUS",
            "ATTEMPTS",
            "DEAD-LETTERED",
            "HOST",
            "REPLAYED",
            "REASON",
        ],
        &rows,
    );
    out.push_str(&format!("{} dead letters", rows.len()));
    match data["nextCursor"].as_str() {
        Some(c) => out.push_str(&format!("; more: --cursor {c} (or --all)\n")),
        None => out.push('\n'),
    }
    out
}

/// `deadletters show`.
pub(super) fn dead_letter(data: &Value) -> String {
    let mut out = String::new();
    for (label, key) in [
        ("id", "id"),
        ("call id", "callId"),
        ("url", "url"),
        ("reason", "reason"),
        ("status", "status"),
        ("attempts", "attempts"),
        ("value omitted", "valueOmitted"),
        ("replayed", "replayed"),
    ] {
        out.push_str(&format!("{label:<16}{}\n", cell(&data[key])));
    }
    for (label, key) in [
        ("first attempt", "firstAttemptMs"),
        ("last attempt", "lastAttemptMs"),
        ("dead-lettered", "deadLetteredAtMs"),
    ] {
        out.push_str(&format!("{label:<16}{}\n", time(&data[key])));
    }
    out.push_str("headers\n");
    if let Some(h) = data["headers"].as_object() {
        for (k, v) in h {
            out.push_str(&format!("  {k}: {}\n", cell(v)));
        }
    }
    out.push_str(&format!("value\n  {}\n", cell(&data["value"])));
    out
}

/// `deadletters replay`.
pub(super) fn replay(data: &Value) -> String {
    let mut out = String::new();
    for i in items(data, "items") {
        let what = if i["replayed"].as_bool() == Some(true) {
            if data["dryRun"].as_bool() == Some(true) {
                "would replay".to_owned()
            } else {
                "replayed".to_owned()
            }
        } else {
            format!("skipped: {}", cell(&i["reason"]))
        };
        out.push_str(&format!("{}  {}  {what}\n", cell(&i["id"]), cell(&i["callId"])));
    }
    out.push_str(&format!(
        "{}matched {}, replayed {}, already replayed {}\n",
        if data["dryRun"].as_bool() == Some(true) {
            "dry run: "
        } else {
            ""
        },
        cell(&data["matched"]),
        cell(&data["replayed"]),
        cell(&data["alreadyReplayed"]),
    ));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_and_show_null_as_a_dash() {
        let out = groups(&json!({"groups": [
            {"group": "g1", "topic": "calls", "paused": false, "deadLetterTopic": "calls.dlq"},
            {"group": "longer-group", "topic": "t", "paused": true, "deadLetterTopic": null},
        ]}));
        assert_eq!(
            out,
            "GROUP         TOPIC  PAUSED  DEAD-LETTER-TOPIC\n\
             g1            calls  false   calls.dlq\n\
             longer-group  t      true    -\n"
        );
    }

    #[test]
    fn a_dry_run_says_so() {
        let out = replay(
            &json!({"matched": 2, "replayed": 1, "alreadyReplayed": 1, "dryRun": true,
            "items": [{"id": "0-1", "callId": "c1", "replayed": true},
                      {"id": "0-2", "callId": "c2", "replayed": false, "reason": "already replayed"}]}),
        );
        assert!(out.contains("0-1  c1  would replay"), "{out}");
        assert!(out.contains("0-2  c2  skipped: already replayed"), "{out}");
        assert!(
            out.ends_with("dry run: matched 2, replayed 1, already replayed 1\n"),
            "{out}"
        );
    }
}
