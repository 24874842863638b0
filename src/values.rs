//! The config's value types: sizes, durations, cores and patterns, each checked while it is
//! parsed, and the bounds a figure must keep. A leaf: it uses nothing of the crate, so the
//! collectors that own config sections and `config`, which assembles them, can both use it.

use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::de::{self, Deserializer};
use serde::Deserialize;

/// The largest size any figure may have: 1 PiB, more memory than any host has.
pub const MAX_BYTES: u64 = 1 << 50;
/// The most cores a figure may name: Linux's largest `NR_CPUS`.
pub const MAX_CORES: f64 = 8192.0;
/// The most processes, instances or connections a figure may name: Linux's largest `pid_max`
/// (each is at least one process or thread).
pub const MAX_COUNT: u32 = 1 << 22;

/// A config value given as a whole number or as text ("512MiB", "2s"), the two ways a size or a
/// duration may be written.
#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrText {
    Int(i64),
    Text(String),
}

/// A size in bytes: an integer, or a string such as "512MiB", "512MB", "512M" or "1.5GiB".
/// As in MySQL's and Redis's own configs, K, M, G and T are powers of 1024 with or without `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match IntOrText::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected a size: a whole number of bytes or a string like \"512MiB\"",
            )
        })? {
            IntOrText::Int(n) if n < 0 => Err(de::Error::custom(format!(
                "a size cannot be negative (got {n})"
            ))),
            IntOrText::Int(n) => Ok(Bytes(n as u64)),
            IntOrText::Text(s) => parse_size(&s).map(Bytes).map_err(de::Error::custom),
        }
    }
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"512MiB\""))?;
    if value < 0.0 {
        return Err(format!("a size cannot be negative (got {text:?})"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (use B, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    Ok((value * multiplier as f64).round() as u64)
}

/// A duration in the config: "3s", "500ms", "2m", "1h", or a whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "expected a duration like \"2s\", \"500ms\" or \"5m\"";
        match IntOrText::deserialize(d).map_err(|_| de::Error::custom(expected))? {
            IntOrText::Int(n) => parse_duration(&n.to_string())
                .map(ConfigDuration)
                .map_err(|e| de::Error::custom(format!("{expected}: {e}"))),
            IntOrText::Text(text) => parse_duration(&text)
                .map(ConfigDuration)
                .map_err(de::Error::custom),
        }
    }
}

const MAX_DURATION_SECONDS: f64 = 86_400.0;

/// A duration such as "3s", "500ms", "2m" or "1h"; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let (number, unit) = trimmed.split_at(
        trimmed
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(trimmed.len()),
    );
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"3s\", \"500ms\" or \"2m\""))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit in {text:?} (use ms, s, m or h)")),
    };
    if !(seconds >= 0.0 && seconds.is_finite()) {
        return Err(format!("{text:?} is not a positive duration"));
    }
    // Longer is never meant, and an Instant plus a huge duration overflows.
    if seconds > MAX_DURATION_SECONDS {
        return Err(format!("{text:?} is longer than a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A duration that must be above zero: a time limit of nothing would fail whatever it limits.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!(
            "{text:?} leaves no time at all: give a duration above 0s"
        ));
    }
    Ok(duration)
}

/// A number of CPU cores, possibly fractional, never negative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cores(pub f64);

impl<'de> Deserialize<'de> for Cores {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(d)?;
        if !(value >= 0.0 && value.is_finite()) {
            return Err(de::Error::custom(format!(
                "a number of cores is finite and not negative (got {value})"
            )));
        }
        Ok(Cores(value))
    }
}

/// A regex searched anywhere in the text.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Regex::new(&text).map(Pattern).map_err(|e| {
            de::Error::custom(format!(
                "bad regex {text:?}: {}",
                first_line(&e.to_string())
            ))
        })
    }
}

/// A regex that must match the whole text (used for `comm`, as process-exporter does).
#[derive(Debug, Clone)]
pub struct WholePattern(pub Regex);

impl<'de> Deserialize<'de> for WholePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Regex::new(&text).map_err(|e| {
            de::Error::custom(format!(
                "bad regex {text:?}: {}",
                first_line(&e.to_string())
            ))
        })?;
        Ok(WholePattern(
            Regex::new(&format!("^(?:{text})$")).expect("checked above"),
        ))
    }
}

impl WholePattern {
    /// The pattern as the config gave it, without the anchors added here.
    pub fn source(&self) -> &str {
        let anchored = self.0.as_str();
        anchored
            .strip_prefix("^(?:")
            .and_then(|s| s.strip_suffix(")$"))
            .unwrap_or(anchored)
    }
}

/// Lays one config layer over the one below it, inside an `impl` of a struct whose fields are all
/// `Option`s: each field `top` gives replaces the one below, the others stay
/// (`overlay!(self, top; host_memory, swap, ...)`).
/// `top` is destructured without `..`, so a field added to the struct and not listed here is a
/// compile error at the call, never a value dropped between layers.
macro_rules! overlay {
    ($below:expr, $top:expr; $($field:ident),+ $(,)?) => {{
        let Self { $($field),+ } = $top;
        let below = $below;
        $(below.$field = $field.or(below.$field.take());)+
    }};
}
pub(crate) use overlay;

fn first_line(text: &str) -> String {
    text.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_string()
}

/// A size at most `MAX_BYTES`; `zero` says why 0 cannot be meant, when it cannot.
pub fn check_size(size: Option<Bytes>, zero: Option<&str>) -> Result<(), String> {
    match (size, zero) {
        (Some(Bytes(0)), Some(why)) => Err(format!("0 bytes: {why}")),
        (Some(Bytes(n)), _) if n > MAX_BYTES => Err(format!(
            "{n} bytes is more than 1 PiB, more memory than any host has"
        )),
        _ => Ok(()),
    }
}

/// Cores: more than 0 (`zero` says why) and at most `MAX_CORES`.
pub fn check_cores(cores: Option<Cores>, zero: &str) -> Result<(), String> {
    match cores {
        Some(Cores(0.0)) => Err(format!("0 cores: {zero}")),
        Some(Cores(n)) if n > MAX_CORES => Err(format!(
            "{n} cores is more than Linux supports ({MAX_CORES})"
        )),
        _ => Ok(()),
    }
}

/// A count at most `MAX_COUNT`; `zero` says why 0 cannot be meant, when it cannot.
pub fn check_count(count: Option<u32>, zero: Option<&str>) -> Result<(), String> {
    match (count, zero) {
        (Some(0), Some(why)) => Err(format!("0: {why}")),
        (Some(n), _) if n > MAX_COUNT => Err(format!(
            "{n} is more than the {MAX_COUNT} processes Linux allows at most"
        )),
        _ => Ok(()),
    }
}

/// A path the exporter can open: not empty (which would be the working directory) and without
/// a NUL character (which no system call takes).
pub fn check_path(path: &Path) -> Result<(), String> {
    let text = path.as_os_str();
    if text.is_empty() {
        return Err("an empty path".to_string());
    }
    if text.as_encoded_bytes().contains(&0) {
        return Err("a path cannot contain a NUL character".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512mb"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn durations_parse_with_their_unit_and_stay_below_a_day() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("25h")
            .unwrap_err()
            .contains("longer than a day"));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1 fortnight").is_err());
    }
}
