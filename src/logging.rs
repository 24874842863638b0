//! A small logger in the two formats Prometheus exporters use: logfmt (the default) and JSON,
//! one line per record on standard error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{Level, LevelFilter, Log, Metadata, Record};

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum Format {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, clap::ValueEnum)]
pub enum LevelName {
    Debug,
    Info,
    Warn,
    Error,
}

impl LevelName {
    fn filter(self) -> LevelFilter {
        match self {
            LevelName::Debug => LevelFilter::Debug,
            LevelName::Info => LevelFilter::Info,
            LevelName::Warn => LevelFilter::Warn,
            LevelName::Error => LevelFilter::Error,
        }
    }
}

struct Logger {
    format: Format,
}

pub fn init(level: LevelName, format: Format) {
    // A second init (tests) keeps the first logger.
    if log::set_boxed_logger(Box::new(Logger { format })).is_ok() {
        log::set_max_level(level.filter());
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format_record(
            self.format,
            &timestamp(SystemTime::now()),
            record.level(),
            record.target(),
            &record.args().to_string(),
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn format_record(format: Format, ts: &str, level: Level, target: &str, msg: &str) -> String {
    let level = level.as_str().to_ascii_lowercase();
    match format {
        Format::Logfmt => format!(
            "ts={ts} level={level} source={} msg={}\n",
            logfmt_value(target),
            logfmt_value(msg)
        ),
        Format::Json => format!(
            "{{\"ts\":\"{ts}\",\"level\":\"{level}\",\"source\":{},\"msg\":{}}}\n",
            json_string(target),
            json_string(msg)
        ),
    }
}

fn logfmt_value(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '"', '=', '\\', '\n', '\t']) {
        return value.to_string();
    }
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace('\t', "\\t");
    format!("\"{escaped}\"")
}

fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How often a throttled message may be repeated.
const THROTTLE_INTERVAL: Duration = Duration::from_secs(60);

/// Per key: when a message was last logged, and how many were held back since.
type LastLogged = HashMap<Cow<'static, str>, (Instant, u64)>;

static THROTTLED: Mutex<Option<LastLogged>> = Mutex::new(None);

/// Logs `message` unless a message with the same `key` was logged in the last minute; the next
/// one that gets through says how many were held back. For anything a client or a failing source
/// can repeat at will (a bad request, a collector failing every scrape), so the log cannot flood.
/// A key made at run time (a panic's location) must come from a bounded set: each is kept.
#[track_caller]
pub fn throttled(level: Level, key: impl Into<Cow<'static, str>>, message: std::fmt::Arguments) {
    if level > log::max_level() {
        return;
    }
    let key = key.into();
    let held_back = {
        let mut guard = THROTTLED.lock().unwrap_or_else(|e| e.into_inner());
        let seen = guard.get_or_insert_with(HashMap::new);
        let now = Instant::now();
        match seen.get_mut(key.as_ref()) {
            Some((last, held)) if now.duration_since(*last) < THROTTLE_INTERVAL => {
                *held += 1;
                return;
            }
            Some((last, held)) => {
                *last = now;
                std::mem::take(held)
            }
            None => {
                seen.insert(key, (now, 0));
                0
            }
        }
    };
    let source = caller_module();
    if held_back == 0 {
        log::log!(target: &source, level, "{message}");
    } else {
        log::log!(target: &source, level, "{message} ({held_back} similar messages held back)");
    }
}

/// How many messages with `key` are being held back now (`None`: none was ever logged).
#[cfg(test)]
pub fn held_back(key: &str) -> Option<u64> {
    let guard = THROTTLED.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_ref()?.get(key).map(|(_, held)| *held)
}

/// `warn!` at most once a minute per key: `warn_throttled!("key", "format", args…)`.
#[macro_export]
macro_rules! warn_throttled {
    ($key:expr, $($arg:tt)+) => {
        $crate::logging::throttled(log::Level::Warn, $key, format_args!($($arg)+))
    };
}

/// A degraded mode logged once when it starts (or changes) and once when it ends, however many
/// scrapes it lasts: `set(Some(why))` each time it holds, `set(None)` each time it does not.
#[derive(Debug, Default)]
pub struct Condition(Mutex<Option<String>>);

impl Condition {
    /// Records the current state; returns true if it changed (and was logged, as a warning).
    #[track_caller]
    pub fn set(&self, what: &str, now: Option<String>) -> bool {
        self.record(log::Level::Warn, what, now, "recovered")
    }

    /// As [`Condition::set`], for a mode that is a choice rather than a failure (a figure made
    /// less often where making it is costly): logged as information, both ways.
    #[track_caller]
    pub fn note(&self, what: &str, now: Option<String>, ended: &str) -> bool {
        self.record(log::Level::Info, what, now, ended)
    }

    #[track_caller]
    fn record(&self, level: log::Level, what: &str, now: Option<String>, ended: &str) -> bool {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if *state == now {
            return false;
        }
        match &now {
            Some(why) => log::log!(target: &caller_module(), level, "{what}: {why}"),
            None => log::info!(target: &caller_module(), "{what}: {ended}"),
        }
        *state = now;
        true
    }
}

/// The `source` of a line logged on a caller's behalf: its module, from its file
/// (`src/collector/nginx.rs` → `stack_exporter::collector::nginx`), as `log!` would name it.
#[track_caller]
fn caller_module() -> String {
    let file = std::panic::Location::caller().file();
    let path = file.strip_prefix("src/").unwrap_or(file);
    let path = path.strip_suffix(".rs").unwrap_or(path);
    let path = path.strip_suffix("/mod").unwrap_or(path);
    format!("stack_exporter::{}", path.replace('/', "::"))
}

/// RFC 3339 UTC with milliseconds, without a date crate.
fn timestamp(now: SystemTime) -> String {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_437_296_123);
        assert_eq!(timestamp(t), "2026-11-23T12:34:56.123Z");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn logfmt_quotes_when_needed() {
        let line = format_record(
            Format::Logfmt,
            "T",
            Level::Warn,
            "stack_exporter::scrape",
            "collector mysql failed: \"x\"",
        );
        assert_eq!(
            line,
            "ts=T level=warn source=stack_exporter::scrape msg=\"collector mysql failed: \\\"x\\\"\"\n"
        );
    }

    #[test]
    fn lines_logged_for_a_caller_name_its_module() {
        assert_eq!(caller_module(), "stack_exporter::logging");
    }

    #[test]
    fn a_condition_reports_only_its_changes() {
        let condition = Condition::default();
        assert!(condition.set("x", Some("refused".into())));
        assert!(!condition.set("x", Some("refused".into())), "unchanged");
        assert!(condition.set("x", Some("gone".into())), "another cause");
        assert!(condition.set("x", None));
        assert!(!condition.set("x", None));
    }

    #[test]
    fn json_escapes() {
        let line = format_record(Format::Json, "T", Level::Info, "a", "line\n\"two\"");
        assert_eq!(
            line,
            "{\"ts\":\"T\",\"level\":\"info\",\"source\":\"a\",\"msg\":\"line\\n\\\"two\\\"\"}\n"
        );
    }
}
