//! Logging: slog records → bounded async queue → one writer thread → stderr
//! or hourly files.
//!
//! Lines look like the Go version's (`[INFO][2026-01-02 15:04:05:000] message`)
//! followed by structured `key=value` pairs. Files are named like the Go
//! version's, `<dir>/bigpipe.YYYYMMDD_HH.log`, and roll over every hour.
//! Logging never blocks a request: when the queue is full the line is dropped
//! and counted (the Go version blocked the caller instead).

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use chrono::{DateTime, Local};
use slog::{Drain, Level, Logger, Never, OwnedKVList, Record, o};
use slog_async::{AsyncCore, AsyncGuard};

/// Flushes queued lines when dropped; keep it alive until exit. Also changes
/// the level at run time (hot reload).
#[allow(missing_debug_implementations)]
pub struct LogGuard {
    _guard: AsyncGuard,
    level: Arc<AtomicUsize>,
}

impl LogGuard {
    /// Sets the most verbose level that is still written.
    pub fn set_level(&self, level: Level) {
        self.level.store(level.as_usize(), Ordering::Relaxed);
    }
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Standard error.
    Stderr,
    /// Hourly files in this directory (created if missing).
    Directory(PathBuf),
}

/// Builds the root logger.
///
/// `dropped` counts lines lost to a full queue.
///
/// # Errors
/// When the log directory cannot be created.
pub fn init(
    level: Level,
    target: Target,
    queue_size: usize,
    dropped: Arc<AtomicU64>,
) -> io::Result<(Logger, LogGuard)> {
    let output = match target {
        Target::Stderr => Output::Stderr,
        Target::Directory(dir) => {
            fs::create_dir_all(&dir)?;
            Output::Hourly(HourlyFile {
                dir,
                hour: i64::MIN,
                file: None,
            })
        }
    };
    let writer = LineDrain {
        out: Mutex::new(output),
    };
    let (core, guard) = AsyncCore::custom(writer)
        .chan_size(queue_size.max(1))
        .blocking(false)
        .thread_name("bigpipe-log".into())
        .build_with_guard();
    let level = Arc::new(AtomicUsize::new(level.as_usize()));
    let drain = DynLevel {
        inner: CountDrops { inner: core, dropped },
        level: Arc::clone(&level),
    };
    Ok((
        Logger::root(drain.fuse(), o!()),
        LogGuard { _guard: guard, level },
    ))
}

/// A logger that discards everything, for tests and tools.
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// Converts the Go version's numeric level (1 FATAL … 5 DEBUG).
pub fn level_from_go(n: i64) -> Option<Level> {
    match n {
        1 => Some(Level::Critical),
        2 => Some(Level::Error),
        3 => Some(Level::Warning),
        4 => Some(Level::Info),
        5 => Some(Level::Debug),
        _ => None,
    }
}

/// Drops records more verbose than a level that can change at run time.
/// Filtering happens before the queue, so filtered lines cost no queue slot.
struct DynLevel<D> {
    inner: D,
    level: Arc<AtomicUsize>,
}

impl<D: Drain<Ok = (), Err = Never>> Drain for DynLevel<D> {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        if record.level().as_usize() <= self.level.load(Ordering::Relaxed) {
            self.inner.log(record, values)?;
        }
        Ok(())
    }
}

/// Passes records to the async queue; a full queue drops the line and counts it.
struct CountDrops {
    inner: AsyncCore,
    dropped: Arc<AtomicU64>,
}

impl Drain for CountDrops {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        if self.inner.log(record, values).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Formats one line per record and writes it; runs on the log thread only.
struct LineDrain {
    out: Mutex<Output>,
}

impl Drain for LineDrain {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        let now = Local::now();
        let line = format_line(now, record, values);
        let mut out = self.out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // A failed write cannot be logged anywhere better; the line is lost.
        out.write_line(now, line.as_bytes()).ok();
        Ok(())
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical => "FATAL",
        Level::Error => "ERROR",
        Level::Warning => "WARNING",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

fn format_line(now: DateTime<Local>, record: &Record<'_>, values: &OwnedKVList) -> String {
    let mut line = format!(
        "[{}][{}] ",
        level_name(record.level()),
        now.format("%Y-%m-%d %H:%M:%S:%3f"),
    );
    // Messages are mostly literals, but some are formatted: escaped like values, never quoted.
    push_escaped(&mut line, &record.msg().to_string());
    let mut ser = KvLine(&mut line);
    // Our serializer never fails.
    slog::KV::serialize(&record.kv(), record, &mut ser).ok();
    slog::KV::serialize(values, record, &mut ser).ok();
    line.push('\n');
    line
}

/// Appends ` key=value` pairs. A value is quoted when it is empty or holds a space, `"`, `=`,
/// `\\` or a character [`must_escape`]; inside quotes `"` and `\\` are backslash-escaped and
/// every such character is written as an escape, so a value can never end the line, move the
/// cursor or forge another record (`call_id=abc\x1b[2K...`). Keys get the same escapes.
struct KvLine<'a>(&'a mut String);

impl slog::Serializer for KvLine<'_> {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let value = val.to_string();
        self.0.push(' ');
        push_escaped(self.0, key);
        self.0.push('=');
        if value.is_empty()
            || value
                .chars()
                .any(|c| matches!(c, ' ' | '"' | '=' | '\\') || must_escape(c))
        {
            self.0.push('"');
            for c in value.chars() {
                match c {
                    '"' => self.0.push_str("\\\""),
                    '\\' => self.0.push_str("\\\\"),
                    c => push_char(self.0, c),
                }
            }
            self.0.push('"');
        } else {
            self.0.push_str(&value);
        }
        Ok(())
    }
}

/// Characters never written raw: every control character (C0, DEL, C1, including `\r`, `\n`,
/// `\t` and ESC), the Unicode line and paragraph separators, and the bidirectional overrides
/// that reorder what a terminal or editor shows.
fn must_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Appends `c`, escaped (`\n`, `\r`, `\t`, else `\u{1b}` style) if [`must_escape`].
fn push_char(out: &mut String, c: char) {
    use std::fmt::Write as _;
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if must_escape(c) => {
            // Writing to a String cannot fail.
            write!(out, "\\u{{{:x}}}", u32::from(c)).ok();
        }
        c => out.push(c),
    }
}

/// Appends `text` with every character that [`must_escape`] escaped, unquoted.
fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        push_char(out, c);
    }
}

enum Output {
    Stderr,
    Hourly(HourlyFile),
}

impl Output {
    fn write_line(&mut self, now: DateTime<Local>, line: &[u8]) -> io::Result<()> {
        match self {
            Self::Stderr => io::stderr().write_all(line),
            Self::Hourly(f) => f.write_line(now, line),
        }
    }
}

/// The Go version's hourly files: a new file whenever the hour changes.
struct HourlyFile {
    dir: PathBuf,
    hour: i64,
    file: Option<File>,
}

impl HourlyFile {
    fn write_line(&mut self, now: DateTime<Local>, line: &[u8]) -> io::Result<()> {
        let hour = now.timestamp().div_euclid(3600);
        if hour != self.hour {
            // On failure keep writing to the previous file and try again next line, as Go did.
            if let Ok(file) = OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.join(file_name(now)))
            {
                self.file = Some(file);
                self.hour = hour;
            }
        }
        match self.file.as_mut() {
            Some(f) => f.write_all(line),
            None => Ok(()),
        }
    }
}

/// `bigpipe.YYYYMMDD_HH.log`, in local time like the Go version.
pub fn file_name(now: DateTime<Local>) -> String {
    now.format("bigpipe.%Y%m%d_%H.log").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use slog::{info, warn};

    #[test]
    fn file_name_matches_go_pattern() {
        let t = Local.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().unwrap();
        assert_eq!(file_name(t), "bigpipe.20260102_03.log");
    }

    #[test]
    fn go_levels_map_and_out_of_range_is_none() {
        assert_eq!(level_from_go(5), Some(Level::Debug));
        assert_eq!(level_from_go(1), Some(Level::Critical));
        assert_eq!(level_from_go(0), None);
        assert_eq!(level_from_go(6), None);
    }

    #[test]
    fn writes_go_style_lines_to_the_hourly_file() {
        let dir = tempfile::tempdir().unwrap();
        let dropped = Arc::new(AtomicU64::new(0));
        let (log, guard) = init(
            Level::Info,
            Target::Directory(dir.path().join("logs")),
            64,
            Arc::clone(&dropped),
        )
        .unwrap();
        info!(log, "hello world"; "call_id" => "abc", "note" => "two words");
        slog::debug!(log, "filtered out");
        guard.set_level(Level::Debug);
        slog::debug!(log, "debug after reload");
        guard.set_level(Level::Error);
        info!(log, "info filtered after reload");
        drop(log);
        drop(guard);
        let files: Vec<_> = fs::read_dir(dir.path().join("logs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        let name = files[0].file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("bigpipe.") && name.ends_with(".log"), "{name}");
        let text = fs::read_to_string(&files[0]).unwrap();
        assert!(text.starts_with("[INFO]["), "{text}");
        assert!(text.contains("] hello world"), "{text}");
        assert!(
            text.contains(r#"call_id=abc"#) && text.contains(r#"note="two words""#),
            "{text}"
        );
        assert!(!text.contains("filtered out"));
        assert!(text.contains("debug after reload"));
        assert!(!text.contains("info filtered after reload"));
        assert_eq!(dropped.load(Ordering::Relaxed), 0);
    }

    /// Formats one record the way the file and stderr drains do.
    fn line_of(log_fn: impl FnOnce(&Logger)) -> String {
        struct Capture(Mutex<Vec<String>>);
        impl Drain for &'static Capture {
            type Ok = ();
            type Err = Never;
            fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
                let line = format_line(Local::now(), record, values);
                self.0.lock().unwrap().push(line);
                Ok(())
            }
        }
        let capture: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        let log = Logger::root(capture.fuse(), o!());
        log_fn(&log);
        let lines = capture.0.lock().unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        lines[0].clone()
    }

    #[test]
    fn hostile_values_are_escaped_and_cannot_forge_a_line() {
        let forged = "abc\x1b[2K\x1b[1G[FATAL][2026-01-01 00:00:00:000] forged\r\nnext\tline";
        let line = line_of(|log| info!(log, "invalid call record"; "call_id" => forged));
        let body = line.strip_suffix('\n').unwrap();
        assert!(
            !body.chars().any(must_escape),
            "raw control character in {body:?}"
        );
        assert!(
            body.ends_with(
                r#" call_id="abc\u{1b}[2K\u{1b}[1G[FATAL][2026-01-01 00:00:00:000] forged\r\nnext\tline""#
            ),
            "{body}"
        );
        // The review's record: no space, quote, = or newline, which alone made the old code quote.
        let line = line_of(|log| info!(log, "x"; "call_id" => "abc\x1b[2K\x1b[1G[FATAL]forged\rline"));
        assert!(
            line.ends_with(" call_id=\"abc\\u{1b}[2K\\u{1b}[1G[FATAL]forged\\rline\"\n"),
            "{line:?}"
        );
    }

    #[test]
    fn c1_del_bidi_quotes_and_backslashes_are_escaped_in_keys_values_and_messages() {
        let line = line_of(|log| {
            let key = "k\x1b";
            info!(log, "msg\x07"; key => "a\u{9b}b\u{7f}c\u{202e}d\"e\\f", "plain" => "ok")
        });
        assert!(line.contains("] msg\\u{7}"), "{line}");
        assert!(
            line.contains(r#" k\u{1b}="a\u{9b}b\u{7f}c\u{202e}d\"e\\f""#),
            "{line}"
        );
        assert!(line.contains(" plain=ok"), "{line}");
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn debug_lines_are_compiled_in_and_filtered_at_run_time() {
        // slog removes debug/trace at compile time in release builds unless its
        // `release_max_level_trace` feature is on; this fails in such a build.
        assert!(slog::Level::Trace.as_usize() <= slog::__slog_static_max_level().as_usize());
        let dir = tempfile::tempdir().unwrap();
        let (log, guard) = init(
            Level::Debug,
            Target::Directory(dir.path().to_path_buf()),
            64,
            Arc::new(AtomicU64::new(0)),
        )
        .unwrap();
        slog::debug!(log, "a debug line");
        slog::trace!(log, "a trace line, below the level");
        drop(log);
        drop(guard);
        let file = fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        let text = fs::read_to_string(file).unwrap();
        assert!(
            text.contains("[DEBUG]") && text.contains("a debug line"),
            "{text}"
        );
        assert!(!text.contains("trace line"), "{text}");
    }

    #[test]
    fn full_queue_drops_and_counts_instead_of_blocking() {
        // A drain that blocks forever on the log thread, so the queue fills.
        let (block_tx, block_rx) = std::sync::mpsc::channel::<()>();
        struct Stuck(Mutex<std::sync::mpsc::Receiver<()>>);
        impl Drain for Stuck {
            type Ok = ();
            type Err = Never;
            fn log(&self, _: &Record<'_>, _: &OwnedKVList) -> Result<(), Never> {
                let rx = self.0.lock().unwrap();
                rx.recv().ok();
                Ok(())
            }
        }
        let (core, guard) = AsyncCore::custom(Stuck(Mutex::new(block_rx)))
            .chan_size(4)
            .blocking(false)
            .build_with_guard();
        let dropped = Arc::new(AtomicU64::new(0));
        let log = Logger::root(
            CountDrops {
                inner: core,
                dropped: Arc::clone(&dropped),
            }
            .fuse(),
            o!(),
        );
        let start = std::time::Instant::now();
        for i in 0..100 {
            warn!(log, "line"; "i" => i);
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "logging blocked"
        );
        // At most the queue (4) plus the line being written (1) got through.
        assert!(
            dropped.load(Ordering::Relaxed) >= 95,
            "dropped {}",
            dropped.load(Ordering::Relaxed)
        );
        drop(block_tx);
        drop(log);
        drop(guard);
    }
}
