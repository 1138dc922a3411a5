//! `bigpipe admin ...`: the admin API from the command line, so an operator needs no curl.
//!
//! ```text
//!  args (clap) ──► Target (URL + token: config file's http.admin.*, or --url/--token-file)
//!       │                 │
//!       ▼                 ▼
//!  command ──► client.rs (awc, one request, X-Bigpipe-Operator: $USER) ──► render.rs (tables | --json)
//! ```
//!
//! Exit status 0 on success; 1 with the server's `msg` when it refuses (or when it cannot be
//! reached); 64 (`EX_USAGE`) for arguments the CLI itself rejects.

mod client;
mod render;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::config;
use client::{AdminClient, CliError};

/// Pages `--all` follows at most (500 letters a page: 5 million letters).
const MAX_PAGES: usize = 10_000;

/// `bigpipe admin`'s arguments.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Admin listener URL (default: from the config file's `http.admin.host`/`port`).
    #[arg(long, global = true)]
    url: Option<String>,
    /// File holding the bearer token (default: the config file's `http.admin.token`).
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Print the server's JSON data instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

/// The entry a command names: a group, and its topic when the group has several.
#[derive(Debug, Args)]
struct EntryArgs {
    /// Consumer group id.
    group: String,
    /// Topic, when the group consumes several.
    #[arg(long)]
    topic: Option<String>,
}

/// Dead-letter filters.
#[derive(Debug, Args)]
struct FilterArgs {
    /// Reason contains this (any case).
    #[arg(long)]
    reason: Option<String>,
    /// Last HTTP status (`503`) or class (`5xx`).
    #[arg(long)]
    status: Option<String>,
    /// Target host (`http://h:p`, `h:p` or `h`).
    #[arg(long)]
    host: Option<String>,
    /// Dead-lettered at or after (RFC 3339 or epoch ms).
    #[arg(long)]
    since: Option<String>,
    /// Dead-lettered before (RFC 3339 or epoch ms).
    #[arg(long)]
    until: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// The consumer entries (group, topic, paused, dead-letter topic).
    Groups,
    /// A group as kafka-consumer-groups --describe shows it, plus bigpipe's own state.
    Describe(EntryArgs),
    /// Pause an entry for the whole group (every process).
    Pause(EntryArgs),
    /// Resume a paused entry.
    Resume(EntryArgs),
    /// Move the group back to a point in time.
    Retransmit {
        #[command(flatten)]
        entry: EntryArgs,
        /// RFC 3339 time or epoch ms.
        #[arg(long)]
        from: String,
        /// Show the offsets it would move to; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Dead letters: list, show, replay.
    #[command(subcommand)]
    Deadletters(DeadLetterCommand),
}

#[derive(Debug, Subcommand)]
enum DeadLetterCommand {
    /// List dead letters, newest partition offsets last.
    List {
        #[command(flatten)]
        entry: EntryArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Letters per page (1-500).
        #[arg(long)]
        limit: Option<u32>,
        /// Follow the pages to the end.
        #[arg(long)]
        all: bool,
        /// Start from this cursor (printed after a page).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One dead letter with its headers and call.
    Show {
        #[command(flatten)]
        entry: EntryArgs,
        /// `<partition>-<offset>`.
        id: String,
    },
    /// Replay dead letters to the main topic (by --id, else every one matching the filters).
    Replay {
        #[command(flatten)]
        entry: EntryArgs,
        /// A letter to replay (repeatable).
        #[arg(long = "id")]
        ids: Vec<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Count only; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Replay letters already replayed too.
        #[arg(long)]
        force: bool,
    },
}

/// Runs `bigpipe --config <config> admin ...`.
pub fn run(config: &Path, args: AdminArgs) -> ExitCode {
    let client = match AdminClient::from_args(config, args.url.as_deref(), args.token_file.as_deref()) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    let system = actix_web::rt::System::new();
    match system.block_on(dispatch(&client, args.command, args.json)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

fn report(e: &CliError) -> ExitCode {
    eprintln!("bigpipe admin: {e}");
    ExitCode::from(e.exit_code())
}

/// The admin URL and token from a config file (`http.admin.*`).
///
/// # Errors
/// When the config does not load.
pub fn target_from_config(path: &Path) -> Result<(String, Option<String>), String> {
    let settings = config::load(path).map_err(|e| format!("{}: invalid config:\n{e}", path.display()))?;
    let admin = &settings.http.admin;
    // A wildcard bind address is reached on loopback.
    let host = match admin.host.as_str() {
        "0.0.0.0" | "" => "127.0.0.1".to_owned(),
        "::" | "[::]" => "[::1]".to_owned(),
        h if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
        h => h.to_owned(),
    };
    Ok((format!("http://{host}:{}", admin.port), admin.token.clone()))
}

fn entry_query(entry: &EntryArgs) -> Vec<(&'static str, String)> {
    entry.topic.iter().map(|t| ("topic", t.clone())).collect()
}

fn filter_pairs(f: &FilterArgs) -> Vec<(&'static str, String)> {
    [
        ("reason", &f.reason),
        ("status", &f.status),
        ("host", &f.host),
        ("since", &f.since),
        ("until", &f.until),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
    .collect()
}

async fn dispatch(client: &AdminClient, command: AdminCommand, json_out: bool) -> Result<(), CliError> {
    let print = |data: &Value, table: fn(&Value) -> String| {
        if json_out {
            println!("{}", serde_json::to_string_pretty(data).unwrap_or_default());
        } else {
            print!("{}", table(data));
        }
    };
    match command {
        AdminCommand::Groups => {
            let data = client.get(&["admin", "v1", "groups"], &[]).await?;
            print(&data, render::groups);
        }
        AdminCommand::Describe(e) => {
            let data = client
                .get(&["admin", "v1", "groups", &e.group], &entry_query(&e))
                .await?;
            print(&data, render::describe);
        }
        AdminCommand::Pause(e) => {
            let path = ["admin", "v1", "groups", &e.group, "pause"];
            let data = client.post(&path, &entry_query(&e), &json!({})).await?;
            print(&data, render::paused);
        }
        AdminCommand::Resume(e) => {
            let path = ["admin", "v1", "groups", &e.group, "resume"];
            let data = client.post(&path, &entry_query(&e), &json!({})).await?;
            print(&data, render::paused);
        }
        AdminCommand::Retransmit { entry, from, dry_run } => {
            // Digits are epoch ms; anything else goes as the RFC 3339 string it should be.
            let from = match from.parse::<i64>() {
                Ok(ms) => json!(ms),
                Err(_) => json!(from),
            };
            let path = ["admin", "v1", "groups", &entry.group, "retransmit"];
            let body = json!({"from": from, "dryRun": dry_run});
            let data = client.post(&path, &entry_query(&entry), &body).await?;
            print(&data, render::retransmit);
        }
        AdminCommand::Deadletters(cmd) => dead_letters(client, cmd, json_out).await?,
    }
    Ok(())
}

async fn dead_letters(client: &AdminClient, cmd: DeadLetterCommand, json_out: bool) -> Result<(), CliError> {
    match cmd {
        DeadLetterCommand::List {
            entry,
            filter,
            limit,
            all,
            cursor,
        } => {
            let path = ["admin", "v1", "groups", &entry.group, "deadletters"];
            let mut base = entry_query(&entry);
            base.extend(filter_pairs(&filter));
            if let Some(l) = limit {
                base.push(("limit", l.to_string()));
            }
            let mut cursor = cursor;
            let mut items = Vec::new();
            let mut next = None;
            for _ in 0..MAX_PAGES {
                let mut q = base.clone();
                if let Some(c) = &cursor {
                    q.push(("cursor", c.clone()));
                }
                let data = client.get(&path, &q).await?;
                items.extend(data["items"].as_array().cloned().unwrap_or_default());
                next = data["nextCursor"].as_str().map(str::to_owned);
                if !all || next.is_none() {
                    break;
                }
                cursor = next.clone();
            }
            let data = json!({"items": items, "nextCursor": next});
            if json_out {
                println!("{}", serde_json::to_string_pretty(&data).unwrap_or_default());
            } else {
                print!("{}", render::dead_letters(&data));
            }
        }
        DeadLetterCommand::Show { entry, id } => {
            let path = ["admin", "v1", "groups", &entry.group, "deadletters", &id];
            let data = client.get(&path, &entry_query(&entry)).await?;
            if json_out {
                println!("{}", serde_json::to_string_pretty(&data).unwrap_or_default());
            } else {
                print!("{}", render::dead_letter(&data));
            }
        }
        DeadLetterCommand::Replay {
            entry,
            ids,
            filter,
            dry_run,
            force,
        } => {
            let filter = filter_pairs(&filter);
            if !ids.is_empty() && !filter.is_empty() {
                return Err(CliError::Usage("give --id or filters, not both".into()));
            }
            let path = ["admin", "v1", "groups", &entry.group, "deadletters", "replay"];
            let q = entry_query(&entry);
            let mut total =
                json!({"matched": 0, "replayed": 0, "alreadyReplayed": 0, "dryRun": dry_run, "items": []});
            let mut add = |data: &Value| {
                for k in ["matched", "replayed", "alreadyReplayed"] {
                    total[k] = json!(total[k].as_u64().unwrap_or(0) + data[k].as_u64().unwrap_or(0));
                }
                if let (Some(all), Some(more)) = (total["items"].as_array_mut(), data["items"].as_array()) {
                    all.extend(more.iter().cloned());
                }
            };
            if ids.is_empty() {
                let filter: serde_json::Map<String, Value> = filter
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), json!(v)))
                    .collect();
                let mut cursor: Option<String> = None;
                for _ in 0..MAX_PAGES {
                    let body = json!({"filter": filter, "dryRun": dry_run, "force": force, "cursor": cursor});
                    let data = client.post(&path, &q, &body).await?;
                    add(&data);
                    cursor = data["nextCursor"].as_str().map(str::to_owned);
                    if cursor.is_none() {
                        break;
                    }
                }
            } else {
                for chunk in ids.chunks(500) {
                    let body = json!({"ids": chunk, "dryRun": dry_run, "force": force});
                    add(&client.post(&path, &q, &body).await?);
                }
            }
            if json_out {
                println!("{}", serde_json::to_string_pretty(&total).unwrap_or_default());
            } else {
                print!("{}", render::replay(&total));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(admin: &str) -> Result<(String, Option<String>), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("bigpipe.toml");
        let text = format!(
            "[kafka]\nbootstrap.servers = \"127.0.0.1:9092\"\ntopics = [{{ name = \"t\", partitions = 1 }}]\n\n\
             [http.admin]\n{admin}\n"
        );
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        target_from_config(&path)
    }

    #[test]
    fn the_admin_target_comes_from_the_config() {
        assert_eq!(
            target("port = 10099"),
            Ok(("http://127.0.0.1:10099".into(), None))
        );
        let (url, token) =
            target("host = \"0.0.0.0\"\nport = 1\ntoken = \"0123456789abcdef-token\"").unwrap();
        assert_eq!(
            url, "http://127.0.0.1:1",
            "a wildcard bind is reached on loopback"
        );
        assert_eq!(token.as_deref(), Some("0123456789abcdef-token"));
        assert_eq!(target("host = \"::\"\nport = 2").unwrap().0, "http://[::1]:2");
        assert_eq!(target("host = \"::1\"\nport = 3").unwrap().0, "http://[::1]:3");
        let bad = target("port = \"x\"").unwrap_err();
        assert!(bad.contains("http.admin.port"), "{bad}");
    }
}
