//! The storage collector on real directories: files of known size and age, a symlink leading out,
//! a directory given by environment variable, one that does not exist, one the exporter may not
//! list, a FIFO.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{metric, must, Exporter};
use filetime::FileTime;

const DAY: i64 = 86_400;

#[test]
fn backup_and_log_directories_report_size_count_and_age() {
    let dir = common::temp_dir();
    let backups = dir.path().join("backups");
    let logs = dir.path().join("logs");
    let outside = dir.path().join("outside");
    for d in [&backups, &logs, &outside, &backups.join("weekly")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Daily dumps 1, 3 and 10 days old, and a weekly one 20 days old.
    for (name, size, age_days) in [
        ("db-1.sql.gz", 1000, 1),
        ("db-3.sql.gz", 2000, 3),
        ("db-10.sql.gz", 3000, 10),
        ("weekly/db-w.sql.gz", 4000, 20),
    ] {
        let path = backups.join(name);
        std::fs::write(&path, vec![7u8; size]).unwrap();
        filetime::set_file_mtime(&path, FileTime::from_unix_time(now - age_days * DAY, 0)).unwrap();
    }
    // Links are never followed: not to a big file elsewhere, not to a directory elsewhere.
    std::fs::write(outside.join("huge.bin"), vec![0u8; 50_000]).unwrap();
    std::os::unix::fs::symlink(outside.join("huge.bin"), backups.join("latest.sql.gz")).unwrap();
    std::os::unix::fs::symlink(&outside, backups.join("elsewhere")).unwrap();
    std::fs::write(logs.join("app.log"), vec![b'x'; 12_345]).unwrap();

    let config = dir.path().join("stack.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nmin_interval = \"0s\"\n\
             directories = {{ backups = \"{}\", models = \"{}\" }}\n",
            backups.display(),
            dir.path().join("no-such-dir").display()
        ),
    )
    .unwrap();
    let exporter = Exporter::start_with_env(
        &[
            &format!("--config.file={}", config.display()),
            "--no-collector.host",
            "--no-collector.services",
            "--no-collector.sockets",
        ],
        &[("STACK_LOG_DIR", logs.to_str().unwrap())],
    );
    let text = exporter.scrape();
    let backups_label = [("directory", "backups")];
    assert_eq!(
        must(&text, "stack_directory_size_bytes", &backups_label),
        10_000.0,
        "{text}"
    );
    assert_eq!(must(&text, "stack_directory_files", &backups_label), 4.0);
    assert_eq!(
        must(
            &text,
            "stack_directory_newest_file_timestamp_seconds",
            &backups_label
        ),
        (now - DAY) as f64
    );
    assert_eq!(
        must(
            &text,
            "stack_directory_oldest_file_timestamp_seconds",
            &backups_label
        ),
        (now - 20 * DAY) as f64
    );
    assert_eq!(
        must(&text, "stack_directory_walk_truncated", &backups_label),
        0.0
    );
    let logs_label = [("directory", "logs")];
    assert_eq!(
        must(&text, "stack_directory_size_bytes", &logs_label),
        12_345.0
    );
    let models = [("directory", "models")];
    assert_eq!(must(&text, "stack_directory_present", &models), 0.0);
    assert_eq!(metric(&text, "stack_directory_size_bytes", &models), None);
    assert_eq!(
        must(
            &text,
            "stack_scrape_collector_success",
            &[("collector", "storage")]
        ),
        1.0
    );

    // Tonight's backup lands.
    std::fs::write(backups.join("db-0.sql.gz"), vec![1u8; 500]).unwrap();
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_directory_files", &backups_label), 5.0);
    assert!(
        must(
            &text,
            "stack_directory_newest_file_timestamp_seconds",
            &backups_label
        ) >= now as f64
    );
}

#[test]
fn a_walk_cut_short_says_so() {
    let dir = common::temp_dir();
    for i in 0..50 {
        std::fs::write(dir.path().join(format!("f{i}")), b"x").unwrap();
    }
    let config = dir.path().join("stack.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nmax_files = 10\ndirectories = {{ media = \"{}\" }}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let exporter = Exporter::start(&[
        &format!("--config.file={}", config.display()),
        "--no-collector.host",
        "--no-collector.services",
        "--no-collector.sockets",
    ]);
    let text = exporter.scrape();
    let media = [("directory", "media")];
    assert_eq!(must(&text, "stack_directory_walk_truncated", &media), 1.0);
    assert!(must(&text, "stack_directory_files", &media) <= 10.0);
    assert!(exporter.log().contains("cut short"), "{}", exporter.log());
}

fn mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

#[test]
fn directories_the_exporter_may_not_list_are_reported_not_counted_as_empty() {
    let dir = common::temp_dir();
    mode(dir.path(), 0o755);
    let backups = dir.path().join("backups");
    let private = backups.join("private");
    let logs = dir.path().join("logs");
    for d in [&backups, &private, &logs] {
        std::fs::create_dir_all(d).unwrap();
        mode(d, 0o755);
    }
    std::fs::write(backups.join("a.sql.gz"), vec![1u8; 100]).unwrap();
    std::fs::write(private.join("b.sql.gz"), vec![1u8; 200]).unwrap();
    std::fs::write(logs.join("app.log"), vec![1u8; 50]).unwrap();
    // Never opened, never counted: a walk that opened it would block.
    mkfifo(&backups.join("pipe"));
    let media = dir.path().join("media");
    mkfifo(&media);
    // Root's alone: the exporter runs as nobody, which root would not be refused as.
    mode(&private, 0o700);
    mode(&logs, 0o700);
    let config = dir.path().join("stack.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nmin_interval = \"0s\"\n\
             directories = {{ backups = \"{}\", logs = \"{}\", media = \"{}\" }}\n",
            backups.display(),
            logs.display(),
            media.display()
        ),
    )
    .unwrap();
    mode(&config, 0o644);
    let exporter = Exporter::start_unprivileged(&[
        &format!("--config.file={}", config.display()),
        "--no-collector.host",
        "--no-collector.services",
        "--no-collector.sockets",
    ]);
    let (b, l, m) = (
        [("directory", "backups")],
        [("directory", "logs")],
        [("directory", "media")],
    );
    for _ in 0..2 {
        let (text, took) = exporter.scrape_timed();
        assert!(took < Duration::from_secs(3), "{took:?}");
        // What could be read, as a lower bound that says so.
        assert_eq!(must(&text, "stack_directory_files", &b), 1.0, "{text}");
        assert_eq!(must(&text, "stack_directory_size_bytes", &b), 100.0);
        assert_eq!(must(&text, "stack_directory_walk_errors", &b), 1.0);
        // Nothing could be read: no figures, rather than 0 files.
        assert_eq!(must(&text, "stack_directory_present", &l), 1.0);
        assert_eq!(must(&text, "stack_directory_walk_errors", &l), 1.0);
        assert_eq!(metric(&text, "stack_directory_files", &l), None);
        assert_eq!(metric(&text, "stack_directory_size_bytes", &l), None);
        assert_eq!(must(&text, "stack_directory_present", &m), 0.0);
        assert_eq!(
            must(
                &text,
                "stack_scrape_collector_success",
                &[("collector", "storage")]
            ),
            1.0
        );
    }
    // The log reaches the test through a reader thread: wait for the last expected line.
    common::wait_for("the log lines", Duration::from_secs(2), || {
        exporter.log().contains("is a FIFO, not a directory")
    });
    let log = exporter.log();
    let lines = |text: &str| log.lines().filter(|l| l.contains(text)).count();
    assert_eq!(lines("storage directory backups"), 1, "{log}");
    assert_eq!(lines("storage directory logs"), 1, "{log}");
    assert!(log.contains("Permission denied"), "{log}");
    assert_eq!(lines("is a FIFO, not a directory"), 1, "{log}");

    mode(&private, 0o755);
    mode(&logs, 0o755);
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_directory_files", &b), 2.0, "{text}");
    assert_eq!(must(&text, "stack_directory_size_bytes", &b), 300.0);
    assert_eq!(must(&text, "stack_directory_walk_errors", &b), 0.0);
    assert_eq!(must(&text, "stack_directory_files", &l), 1.0);
    assert_eq!(must(&text, "stack_directory_walk_errors", &l), 0.0);
    let recovered = || exporter.log().matches("recovered").count();
    common::wait_for("two recoveries logged", Duration::from_secs(2), || {
        recovered() >= 2
    });
    assert_eq!(recovered(), 2, "{}", exporter.log());
}
