//! The golden exposition of the host and services collectors: the real binary reads the fixture
//! /proc (`tests/fixtures/proc`: a 2 GB VPS running nginx, Gunicorn, Celery worker and beat,
//! Redis, PostgreSQL, MariaDB and more, captured from real processes) and root filesystem
//! (`tests/fixtures/rootfs`) under the vps-2gb plan (`tests/fixtures/golden/stack.toml`), and its
//! `/metrics` text is compared byte for byte with `tests/fixtures/golden/proc.prom`. A renamed
//! metric or label, a changed help text, a process counted in another service or a changed
//! figure fails here.
//!
//! On purpose, after a change to the figures (read the diff before committing):
//!     STACK_UPDATE_GOLDEN=1 cargo test --test golden_proc
//! To capture the fixture's processes again (then update the golden text as above):
//!     python3 tests/fixtures/proc/capture.py
//!
//! What cannot be stable is masked, never dropped with its neighbours: the value (not the labels)
//! of the samples in [`VARYING_VALUES`] becomes `VARIES`, and the samples of [`VARYING_SAMPLES`]
//! are left out; every `# HELP` and `# TYPE` line stays. Filesystem sizes and inodes are statvfs of
//! the fixture rootfs's directories, which live on whatever disk holds the checkout: their labels and
//! which mounts are listed are pinned, their values are not.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::Exporter;

/// Samples whose value depends on the machine, the build or the moment, and whose labels do not.
const VARYING_VALUES: &[&str] = &[
    // statvfs of the checkout's filesystem (see the header).
    "stack_host_filesystem_size_bytes",
    "stack_host_filesystem_avail_bytes",
    "stack_host_filesystem_free_bytes",
    "stack_host_filesystem_files",
    "stack_host_filesystem_files_free",
    "stack_scrape_collector_duration_seconds",
    // How long ago the fixtures' PSS was read: it grows between scrapes.
    "stack_service_pss_age_seconds",
    // The exporter's own process, from the real /proc/self whatever --path.procfs says.
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "process_max_fds",
    // Whether the previous scrape's connection is closed yet.
    "stack_exporter_http_connections",
];

/// Samples whose labels depend on the build (version, compiler).
const VARYING_SAMPLES: &[&str] = &["stack_exporter_build_info"];

fn fixture(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// The scrape with what cannot be stable masked (see the header).
fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let name = line.split(['{', ' ']).next().unwrap_or("");
        if line.starts_with('#') {
            out.push_str(line);
        } else if VARYING_SAMPLES.contains(&name) {
            continue;
        } else if VARYING_VALUES.contains(&name) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "not a number: {line}");
            out.push_str(series);
            out.push_str(" VARIES");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The figures are in clock ticks and pages of the machine that runs the test; the golden text
/// was made with Linux's USER_HZ of 100 and 4 KiB pages (x86_64; arm64 kernels may use 16 or
/// 64 KiB pages, where the memory figures would differ).
fn assert_machine_units() {
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    assert_eq!(
        (ticks, page),
        (100, 4096),
        "the golden text assumes 100 clock ticks a second and 4096-byte pages"
    );
}

#[test]
fn host_and_services_exposition_is_golden() {
    assert_machine_units();
    let procfs = fixture("proc");
    let rootfs = fixture("rootfs");
    let config = fixture("golden/stack.toml");
    let exporter = Exporter::start(&[
        &format!("--path.procfs={}", procfs.display()),
        &format!("--path.rootfs={}", rootfs.display()),
        // The services' memory cgroups: MariaDB's unit with 2 OOM kills, the others absent.
        &format!("--path.sysfs={}", fixture("sys").display()),
        &format!("--config.file={}", config.display()),
        // Only the collectors that read --path.procfs and --path.rootfs: the sockets collector
        // asks the kernel over netlink, nginx and storage read paths of the config or environment.
        "--no-collector.sockets",
        "--no-collector.nginx",
        "--no-collector.storage",
    ]);
    // Two scrapes: the PSS and match caches and the CPU counters' history must not change a
    // figure of an unchanged /proc.
    let first = normalize(&exporter.scrape());
    let second = normalize(&exporter.scrape());
    assert_eq!(first, second, "a second scrape of the same /proc differs");

    // A few figures checked against the fixture by hand, so a golden file rewritten with a
    // wrong figure in it does not pass unnoticed.
    let service = |name, service| common::must(&first, name, &[("service", service)]);
    assert_eq!(
        service("stack_service_processes", "wsgi"),
        3.0,
        "master + 2 workers; the zombie left out"
    );
    assert_eq!(service("stack_service_processes", "nginx"), 3.0);
    assert_eq!(service("stack_service_processes", "postgresql"), 7.0);
    assert_eq!(service("stack_service_instances", "postgresql"), 1.0);
    assert_eq!(
        service("stack_service_pss_fallback_processes", "postgresql"),
        1.0
    );
    assert_eq!(
        service("stack_service_processes", "docs"),
        1.0,
        "matched by exe and cgroup"
    );
    assert_eq!(
        service("stack_service_processes", "monitoring"),
        1.0,
        "the exporter itself"
    );
    assert_eq!(common::must(&first, "stack_host_cpu_cores", &[]), 2.0);
    assert_eq!(common::must(&first, "stack_host_oom_kills_total", &[]), 2.0);
    assert_eq!(
        common::must(&first, "stack_host_tcp_listen_overflows_total", &[]),
        57.0
    );
    assert_eq!(
        first.matches("stack_host_disk_read_bytes_total{").count(),
        2,
        "vda and sr0; partitions, loop devices and zram left out"
    );
    assert_eq!(
        first
            .matches("stack_host_network_receive_bytes_total{")
            .count(),
        2,
        "eth0 and docker0; lo and the container's veth left out"
    );
    assert_eq!(
        first.matches("stack_host_filesystem_size_bytes{").count(),
        7,
        "real filesystems once each, pseudo ones and a mount missing under the rootfs left out"
    );

    let fallback = "smaps_rollup refused for processes of postgresql";
    common::wait_for("the PSS fallback log line", Duration::from_secs(5), || {
        exporter.log().contains(fallback)
    });
    let log = exporter.log();
    assert_eq!(
        log.matches(fallback).count(),
        1,
        "the PSS fallback is logged once when it starts: {log}"
    );
    assert!(
        !log.contains("missing CAP_") && !log.contains("cannot read the exporter's capabilities"),
        "the fixture's self/status has every capability: {log}"
    );

    common::check_golden(&fixture("golden/proc.prom"), &first, "golden_proc");
}
