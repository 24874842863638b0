//! Sizes of the directories the plan budgets (THRESHOLDS.md rows D3, D4, D5): backups (count,
//! size, newest and oldest file), logs, media, static files, ML models.
//!
//! A walk visits regular files under the directory and never follows a symlink (a link is neither
//! counted nor entered, so nothing outside the directory is reached). It opens nothing but
//! directories (`read_dir` opens with `O_DIRECTORY`, so a FIFO or a device swapped in fails at
//! once instead of blocking); files are only `lstat`ed. Each walk stops after `max_files` entries
//! or `max_duration`, and says so in `stack_directory_walk_truncated`; what it could not read is
//! `stack_directory_walk_errors` and one log line, never a silently smaller count. Sizes change
//! slowly, so a walk's result is reused for `min_interval`. The collector runs on the blocking
//! pool under its run guard (collector/mod.rs), so a hung mount costs one thread, not a scrape.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::config_error::{at, Nonsense};
use crate::logging::Condition;
use crate::metrics::MetricSet;
use crate::values::{check_path, ConfigDuration};

pub const BACKUP_DIR_ENV: &str = "STACK_BACKUP_DIR";
pub const LOG_DIR_ENV: &str = "STACK_LOG_DIR";

/// `[storage]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `name = "/path"`; the name becomes the `directory` label.
    #[serde(default)]
    pub directories: BTreeMap<DirectoryName, PathBuf>,
    /// Most entries (files, directories, links) one walk visits; default 100 000.
    pub max_files: Option<u64>,
    /// Longest one walk may take; default "2s".
    pub max_duration: Option<ConfigDuration>,
    /// How long a walk's result is reused; default "60s", "0s" walks on every scrape.
    pub min_interval: Option<ConfigDuration>,
}

impl StorageConfig {
    /// Refuses what parses but no one can mean: an empty path, a walk that could not start.
    pub fn check(&self) -> Result<(), Nonsense> {
        for (name, path) in &self.directories {
            check_path(path).map_err(at(&["storage", "directories", &name.0]))?;
        }
        let never_starts = "every walk would stop before it starts";
        if self.max_files == Some(0) {
            return Err(at(&["storage", "max_files"])(format!(
                "0 entries: {never_starts}"
            )));
        }
        if self.max_duration.is_some_and(|d| d.0.is_zero()) {
            return Err(at(&["storage", "max_duration"])(format!(
                "0s: {never_starts}"
            )));
        }
        Ok(())
    }
}

/// A `directory` label value: lower-case letters, digits and `_`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DirectoryName(pub String);

impl<'de> Deserialize<'de> for DirectoryName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let fine = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !fine {
            return Err(de::Error::custom(format!(
                "a directory name is lower-case letters, digits and _ (got {name:?})"
            )));
        }
        Ok(DirectoryName(name))
    }
}

/// What one walk of a directory found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DirectoryUsage {
    /// The path is a directory, or could not be looked at (then `errors` says so): false only
    /// when it is known to be missing or not a directory.
    pub present: bool,
    /// The directory itself could be listed; if not, there are no figures at all.
    pub listed: bool,
    pub files: u64,
    pub bytes: u64,
    /// mtimes of the newest and oldest regular file, Unix seconds.
    pub newest: Option<i64>,
    pub oldest: Option<i64>,
    /// The walk stopped early (too many entries or too long): the figures are lower bounds.
    pub truncated: bool,
    /// The directory or entries under it that could not be read (a subdirectory it may not
    /// list, EIO): the figures are lower bounds. Entries removed during the walk are not errors.
    pub errors: u64,
    /// What is wrong, for the log: the first error, or why the directory is not present.
    pub trouble: Option<String>,
}

impl DirectoryUsage {
    fn error(&mut self, what: &Path, e: &std::io::Error) {
        self.errors = self.errors.saturating_add(1);
        if self.trouble.is_none() {
            self.trouble = Some(format!("cannot read {}: {e}", what.display()));
        }
    }
}

/// Walks `root` without following symlinks, visiting at most `max_entries` entries and stopping
/// at `deadline`.
pub fn walk(root: &Path, max_entries: u64, deadline: Instant) -> DirectoryUsage {
    let mut usage = DirectoryUsage::default();
    // The configured path itself may be a link (/var/log/app -> /data/logs); nothing under it is
    // followed.
    match std::fs::metadata(root) {
        Ok(meta) if meta.is_dir() => usage.present = true,
        Ok(meta) => {
            usage.trouble = Some(format!(
                "is {}, not a directory",
                crate::accesslog::file_kind(meta.file_type())
            ));
            return usage;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            usage.trouble = Some("does not exist".into());
            return usage;
        }
        Err(e) => {
            usage.present = true;
            usage.error(root, &e);
            return usage;
        }
    }
    let mut pending = vec![root.to_path_buf()];
    let mut visited = 0u64;
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed since it was seen: nothing there to count.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => continue,
            Err(e) => {
                usage.error(&dir, &e);
                continue;
            }
        };
        if dir == root {
            usage.listed = true;
        }
        for entry in entries {
            visited += 1;
            if visited > max_entries || (visited % 256 == 0 && Instant::now() >= deadline) {
                usage.truncated = true;
                return usage;
            }
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    usage.error(&dir, &e);
                    continue;
                }
            };
            // DirEntry::metadata does not follow symlinks, and opens nothing.
            let meta = match entry.metadata() {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    usage.error(&entry.path(), &e);
                    continue;
                }
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                usage.files = usage.files.saturating_add(1);
                usage.bytes = usage.bytes.saturating_add(meta.len());
                let mtime = unix_seconds(&meta);
                usage.newest = Some(usage.newest.map_or(mtime, |n| n.max(mtime)));
                usage.oldest = Some(usage.oldest.map_or(mtime, |o| o.min(mtime)));
            }
        }
    }
    if Instant::now() >= deadline {
        usage.truncated = true;
    }
    usage
}

#[derive(Debug)]
pub struct Storage {
    directories: Vec<Directory>,
    max_files: u64,
    max_duration: Duration,
    min_interval: Duration,
    cache: Mutex<BTreeMap<String, (Instant, DirectoryUsage)>>,
}

#[derive(Debug)]
struct Directory {
    name: String,
    path: PathBuf,
    /// Missing, not a directory, or not all readable: logged when it starts and when it ends.
    trouble: Condition,
}

impl Storage {
    /// The collector, or `None` when no directory is configured (config, `STACK_BACKUP_DIR`,
    /// `STACK_LOG_DIR`).
    pub fn new(config: &StorageConfig, env: impl Fn(&str) -> Option<String>) -> Option<Storage> {
        let mut directories: BTreeMap<String, PathBuf> = config
            .directories
            .iter()
            .map(|(name, path)| (name.0.clone(), path.clone()))
            .collect();
        for (name, var) in [("backups", BACKUP_DIR_ENV), ("logs", LOG_DIR_ENV)] {
            if let Some(path) = env(var).filter(|p| !p.is_empty()) {
                directories
                    .entry(name.to_string())
                    .or_insert_with(|| path.into());
            }
        }
        if directories.is_empty() {
            return None;
        }
        Some(Storage {
            directories: directories
                .into_iter()
                .map(|(name, path)| Directory {
                    name,
                    path,
                    trouble: Condition::default(),
                })
                .collect(),
            max_files: config.max_files.unwrap_or(100_000),
            max_duration: config.max_duration.map_or(Duration::from_secs(2), |d| d.0),
            min_interval: config.min_interval.map_or(Duration::from_secs(60), |d| d.0),
            cache: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn describe(&self) -> String {
        self.directories
            .iter()
            .map(|d| format!("{}={}", d.name, d.path.display()))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn collect(&self) -> anyhow::Result<MetricSet> {
        let mut out = MetricSet::default();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for Directory {
            name,
            path,
            trouble,
        } in &self.directories
        {
            let now = Instant::now();
            let fresh = cache
                .get(name)
                .filter(|(at, _)| now.duration_since(*at) < self.min_interval)
                .map(|(_, usage)| usage.clone());
            let usage = match fresh {
                Some(usage) => usage,
                None => {
                    let usage = walk(path, self.max_files, now + self.max_duration);
                    trouble.set(
                        &format!("storage directory {name} ({})", path.display()),
                        usage.trouble.clone().map(|why| match usage.errors {
                            0 => why,
                            _ => format!(
                                "{why}; its figures are lower bounds (stack_directory_walk_errors)"
                            ),
                        }),
                    );
                    if usage.truncated {
                        log::warn!(
                            "walk of {name} ({}) cut short after {} files: raise [storage] max_files or max_duration",
                            path.display(),
                            usage.files
                        );
                    }
                    cache.insert(name.clone(), (now, usage.clone()));
                    usage
                }
            };
            emit(&mut out, name, &usage);
        }
        Ok(out)
    }
}

fn emit(out: &mut MetricSet, name: &str, usage: &DirectoryUsage) {
    let labels = || vec![("directory", name.to_string().into())];
    out.gauge(
        "stack_directory_present",
        "1 if the configured directory exists.",
        labels(),
        f64::from(usage.present),
    );
    if !usage.present {
        return;
    }
    out.gauge(
        "stack_directory_walk_errors",
        "Entries the last walk could not read (the directory itself, a subdirectory it may not list, EIO); above 0 the figures are lower bounds, and absent when the directory itself could not be listed.",
        labels(),
        usage.errors as f64,
    );
    out.gauge(
        "stack_directory_walk_truncated",
        "1 if the last walk of the directory stopped at max_files or max_duration: its figures are lower bounds.",
        labels(),
        f64::from(usage.truncated),
    );
    if !usage.listed {
        return;
    }
    out.gauge(
        "stack_directory_size_bytes",
        "Total size of the regular files under the directory (symlinks not followed).",
        labels(),
        usage.bytes as f64,
    );
    out.gauge(
        "stack_directory_files",
        "Regular files under the directory.",
        labels(),
        usage.files as f64,
    );
    if let Some(newest) = usage.newest {
        out.gauge(
            "stack_directory_newest_file_timestamp_seconds",
            "mtime of the newest file under the directory, Unix seconds.",
            labels(),
            newest as f64,
        );
    }
    if let Some(oldest) = usage.oldest {
        out.gauge(
            "stack_directory_oldest_file_timestamp_seconds",
            "mtime of the oldest file under the directory, Unix seconds (how far retention reaches).",
            labels(),
            oldest as f64,
        );
    }
}

/// A file's modification time in Unix seconds (negative before 1970), on every platform.
fn unix_seconds(meta: &std::fs::Metadata) -> i64 {
    let Ok(modified) = meta.modified() else {
        return 0;
    };
    match modified.duration_since(std::time::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn walk_counts_files_and_skips_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("big"), vec![0u8; 10_000]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), b"12345").unwrap();
        std::fs::write(dir.path().join("sub/b"), b"123").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link-dir")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("big"), dir.path().join("link-file"))
            .unwrap();
        filetime::set_file_mtime(
            dir.path().join("a"),
            filetime::FileTime::from_unix_time(1_000, 0),
        )
        .unwrap();
        filetime::set_file_mtime(
            dir.path().join("sub/b"),
            filetime::FileTime::from_unix_time(2_000, 0),
        )
        .unwrap();
        let usage = walk(dir.path(), 1000, far());
        assert_eq!(
            usage,
            DirectoryUsage {
                present: true,
                listed: true,
                files: 2,
                bytes: 8,
                newest: Some(2_000),
                oldest: Some(1_000),
                truncated: false,
                errors: 0,
                trouble: None,
            }
        );
    }

    #[test]
    fn walk_stops_at_the_entry_limit_and_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::write(dir.path().join(i.to_string()), b"x").unwrap();
        }
        let usage = walk(dir.path(), 4, far());
        assert!(usage.truncated);
        assert_eq!(usage.files, 4);
        for i in 0..300 {
            std::fs::write(dir.path().join(format!("more{i}")), b"x").unwrap();
        }
        assert!(walk(dir.path(), 100_000, Instant::now()).truncated);
        assert!(!walk(dir.path(), 100_000, far()).truncated);
    }

    #[test]
    fn missing_directory_is_not_present() {
        let usage = walk(Path::new("/nonexistent/backups"), 10, far());
        assert!(!usage.present);
        assert_eq!(usage.trouble.as_deref(), Some("does not exist"));
    }

    fn mkfifo(path: &Path) {
        let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    #[test]
    fn fifos_are_neither_opened_nor_counted() {
        let dir = tempfile::tempdir().unwrap();
        mkfifo(&dir.path().join("pipe"));
        std::fs::write(dir.path().join("a"), b"12").unwrap();
        // A walk that opened the FIFO would block here for good.
        let usage = walk(dir.path(), 1000, far());
        assert_eq!((usage.files, usage.bytes, usage.errors), (1, 2, 0));
        let usage = walk(&dir.path().join("pipe"), 1000, far());
        assert!(!usage.present);
        assert_eq!(usage.trouble.as_deref(), Some("is a FIFO, not a directory"));
    }

    #[test]
    fn a_path_that_cannot_be_listed_has_no_figures() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        // ENOTDIR: even root cannot list a path through a regular file.
        let usage = walk(&file.join("sub"), 1000, far());
        assert!(usage.present && !usage.listed, "{usage:?}");
        assert_eq!(usage.errors, 1);
        assert!(usage.trouble.clone().unwrap().contains("cannot read"));
        let mut out = MetricSet::default();
        emit(&mut out, "x", &usage);
        let x = [("directory", "x")];
        assert_eq!(out.value("stack_directory_walk_errors", &x), Some(1.0));
        assert_eq!(out.value("stack_directory_present", &x), Some(1.0));
        assert_eq!(
            out.value("stack_directory_files", &x),
            None,
            "no figure is known"
        );
    }

    #[test]
    fn env_fills_in_backups_and_logs() {
        let env = |k: &str| match k {
            BACKUP_DIR_ENV => Some("/var/backups/mysql".to_string()),
            LOG_DIR_ENV => Some(String::new()),
            _ => None,
        };
        let storage = Storage::new(&StorageConfig::default(), env).unwrap();
        assert_eq!(storage.describe(), "backups=/var/backups/mysql");
        assert!(Storage::new(&StorageConfig::default(), |_| None).is_none());
    }
}
