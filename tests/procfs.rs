//! `--path.procfs` and `--path.rootfs`: every /proc figure comes from the given root, as when the
//! exporter runs in a container with the host's /proc mounted elsewhere.

mod common;

use std::path::Path;

use common::{must, temp_dir, write, Exporter};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");

/// A fake /proc: the fixture host files, and a redis-server (PID 300) with a forked child (301)
/// under an init (PID 1).
fn fake_procfs(root: &Path) {
    for name in ["stat", "meminfo", "mounts"] {
        std::fs::copy(Path::new(FIXTURES).join(name), root.join(name)).unwrap();
    }
    write(&root.join("loadavg"), "1.50 1.25 1.00 2/120 999\n");
    let process = |pid: u32, ppid: u32, comm: &str, cmdline: &str, rss_pages: u64, pss_kib: u64| {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        write(
            &dir.join("stat"),
            &format!("{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 100 0 0 0 200 100 0 0 20 0 4 0 5000 100000000 {rss_pages} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"),
        );
        write(&dir.join("cmdline"), &cmdline.replace(' ', "\0"));
        write(
            &dir.join("smaps_rollup"),
            &format!("Rss: {} kB\nPss: {pss_kib} kB\n", rss_pages * 4),
        );
    };
    process(1, 0, "init", "/sbin/init", 100, 200);
    // The redis master's PSS splits into 4000 kB anonymous, 500 kB shared memory and the rest
    // file-backed (its binary and libraries); its child's smaps_rollup has no split (old kernel).
    let split = |pid: u32| {
        let path = root.join(pid.to_string()).join("smaps_rollup");
        let text = std::fs::read_to_string(&path).unwrap();
        write(
            &path,
            &format!("{text}Pss_Anon: 4000 kB\nPss_File: 1500 kB\nPss_Shmem: 500 kB\n"),
        );
    };
    process(
        300,
        1,
        "redis-server",
        "redis-server 127.0.0.1:6379",
        2000,
        6000,
    );
    process(
        301,
        300,
        "redis-server",
        "redis-server 127.0.0.1:6379",
        1000,
        1000,
    );
    split(300);
}

#[test]
fn every_proc_figure_comes_from_path_procfs() {
    let dir = temp_dir();
    fake_procfs(dir.path());
    let exporter = Exporter::start(&[&format!("--path.procfs={}", dir.path().display())]);
    let text = exporter.scrape();

    assert_eq!(must(&text, "stack_host_cpu_cores", &[]), 2.0);
    assert_eq!(must(&text, "stack_host_load1", &[]), 1.5);
    assert_eq!(
        must(&text, "stack_host_memory_total_bytes", &[]),
        2_014_256.0 * 1024.0
    );
    assert_eq!(
        must(&text, "stack_host_boot_time_seconds", &[]),
        1_763_900_000.0
    );

    let redis = [("service", "redis")];
    assert_eq!(must(&text, "stack_service_processes", &redis), 2.0);
    assert_eq!(must(&text, "stack_service_instances", &redis), 1.0);
    let page = 4096.0; // x86_64 and aarch64 Linux default
    assert_eq!(
        must(&text, "stack_service_resident_memory_bytes", &redis),
        3000.0 * page
    );
    assert_eq!(
        must(&text, "stack_service_proportional_memory_bytes", &redis),
        7000.0 * 1024.0
    );
    assert_eq!(
        must(&text, "stack_service_process_max_memory_bytes", &redis),
        6000.0 * 1024.0
    );
    assert_eq!(
        must(&text, "stack_service_up", &[("service", "mysql")]),
        0.0
    );
    // utime + stime + cutime + cstime = 300 ticks per process, two processes.
    let ticks = 100.0; // USER_HZ is 100 on Linux
    assert_eq!(
        must(&text, "stack_service_cpu_seconds_total", &redis),
        600.0 / ticks
    );

    // Everything else = used (MemTotal - MemAvailable) - the services' own memory: anonymous
    // and shared-memory PSS (4000 + 500 kB), and all 1000 kB of the child without the split.
    let used = (2_014_256.0 - 1_187_520.0) * 1024.0;
    assert_eq!(
        must(&text, "stack_system_memory_bytes", &[]),
        used - 5500.0 * 1024.0
    );
}

#[test]
fn filesystems_are_read_under_path_rootfs() {
    let dir = temp_dir();
    let proc_root = dir.path().join("proc");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&proc_root).unwrap();
    std::fs::create_dir_all(rootfs.join("srv/data")).unwrap();
    fake_procfs(&proc_root);
    write(
        &proc_root.join("mounts"),
        "/dev/sdz1 /srv/data ext4 rw 0 0\n/dev/sdz2 /missing ext4 rw 0 0\n",
    );
    let exporter = Exporter::start(&[
        &format!("--path.procfs={}", proc_root.display()),
        &format!("--path.rootfs={}", rootfs.display()),
    ]);
    let text = exporter.scrape();
    let data = [("mountpoint", "/srv/data"), ("device", "/dev/sdz1")];
    assert!(must(&text, "stack_host_filesystem_size_bytes", &data) > 0.0);
    // A mountpoint that is not there under the rootfs is left out, not an error.
    assert!(common::metric(
        &text,
        "stack_host_filesystem_size_bytes",
        &[("mountpoint", "/missing")]
    )
    .is_none());
    assert_eq!(
        must(
            &text,
            "stack_host_filesystem_stuck",
            &[("mountpoint", "/missing")]
        ),
        0.0
    );
    for collector in ["host", "filesystem"] {
        assert_eq!(
            must(
                &text,
                "stack_scrape_collector_success",
                &[("collector", collector)]
            ),
            1.0,
            "{collector}"
        );
    }
}

#[test]
fn a_failing_collector_is_reported_and_the_scrape_still_served() {
    // No meminfo: both /proc collectors fail; the scrape answers 200 with what it has.
    let dir = temp_dir();
    fake_procfs(dir.path());
    std::fs::remove_file(dir.path().join("meminfo")).unwrap();
    let exporter = Exporter::start(&[&format!("--path.procfs={}", dir.path().display())]);
    let text = exporter.scrape();
    assert_eq!(
        must(
            &text,
            "stack_scrape_collector_success",
            &[("collector", "host")]
        ),
        0.0
    );
    assert_eq!(
        must(
            &text,
            "stack_scrape_collector_success",
            &[("collector", "services")]
        ),
        0.0
    );
    assert!(must(&text, "process_resident_memory_bytes", &[]) > 0.0);
    assert!(must(&text, "stack_exporter_build_info", &[]) == 1.0);
    common::wait_for(
        "the failure logged",
        std::time::Duration::from_secs(5),
        || exporter.log().contains("collector host failed") && exporter.log().contains("meminfo"),
    );
}

#[test]
fn optional_host_files_missing_are_logged_once_and_the_rest_still_served() {
    // The fake /proc has stat, meminfo and loadavg, none of vmstat, pressure/, diskstats, net/.
    let dir = temp_dir();
    fake_procfs(dir.path());
    let exporter = Exporter::start(&[&format!("--path.procfs={}", dir.path().display())]);
    for _ in 0..3 {
        let text = exporter.scrape();
        let success = [("collector", "host")];
        assert_eq!(must(&text, "stack_scrape_collector_success", &success), 1.0);
        assert_eq!(must(&text, "stack_host_pressure_available", &[]), 0.0);
        assert!(common::metric(&text, "stack_host_oom_kills_total", &[]).is_none());
        assert!(must(&text, "stack_host_memory_total_bytes", &[]) > 0.0);
    }
    let log = exporter.log();
    for subject in [
        "pressure stall information: ",
        "host figures from vmstat: ",
        "host figures from diskstats: ",
        "host figures from net/dev: ",
        "host figures from net/snmp: ",
        "host figures from net/netstat: ",
    ] {
        assert_eq!(log.matches(subject).count(), 1, "{subject} in:\n{log}");
    }
}

#[test]
fn network_figures_come_from_pid_1s_namespace_first() {
    // PID 1's /proc/1/net is the host's network namespace even when the exporter runs in a
    // container of its own with the host's /proc mounted; /proc/net is the exporter's.
    let dir = temp_dir();
    fake_procfs(dir.path());
    let netstat = |overflows: u32| {
        format!("TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 {overflows} 70\n")
    };
    for (net, overflows) in [(dir.path().join("net"), 5), (dir.path().join("1/net"), 57)] {
        std::fs::create_dir_all(&net).unwrap();
        write(&net.join("netstat"), &netstat(overflows));
    }
    let exporter = Exporter::start(&[&format!("--path.procfs={}", dir.path().display())]);
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_host_tcp_listen_overflows_total", &[]),
        57.0
    );
    // Without PID 1's, the exporter's own.
    std::fs::remove_dir_all(dir.path().join("1/net")).unwrap();
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_host_tcp_listen_overflows_total", &[]),
        5.0
    );
    assert_eq!(must(&text, "stack_host_tcp_listen_drops_total", &[]), 70.0);
}
