//! The sysinfo backend against the /proc one, on Linux, for the same processes: two process trees
//! this test starts (a Python parent and two children holding 24 MiB each, found by a marker in
//! the parent's arguments) must give the same processes and instances, and resident memory within
//! 5 %; the host's memory total is the same and its available memory within 5 %. Prints what a
//! sysinfo scrape costs (docs/windows.md).

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::collector::portable;
use crate::collector::services::{self as proc_services, Budget, Matcher, PlanConfig, Service};
use crate::metrics::MetricSet;
use crate::proc::ProcFs;
use crate::values::Pattern;

/// A parent that starts two children, each holding 24 MiB written (so resident), then waits.
const TREE: &str = "import subprocess, sys, time\n\
children = [subprocess.Popen([sys.executable, '-c', \
'import time; block = b\"x\" * (24 << 20); time.sleep(600)']) for _ in range(2)]\n\
time.sleep(600)";

struct Trees(Vec<Child>);

impl Drop for Trees {
    fn drop(&mut self) {
        for parent in &mut self.0 {
            let pid = parent.id();
            let children = format!("/proc/{pid}/task/{pid}/children");
            let children = std::fs::read_to_string(children).unwrap_or_default();
            for child in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                // SAFETY: kill has no memory effects; these PIDs are this test's parent's children.
                unsafe { libc::kill(child, libc::SIGKILL) };
            }
            let _ = parent.kill();
            let _ = parent.wait();
        }
    }
}

fn start_trees(marker: &str) -> Trees {
    let trees = (0..2)
        .map(|_| {
            Command::new("python3")
                .args(["-c", TREE, marker])
                .spawn()
                .expect("python3 runs the test's process trees: apt-get install python3")
        })
        .collect();
    Trees(trees)
}

fn service(marker: &str) -> Service {
    Service {
        name: "marked".into(),
        matchers: vec![Matcher {
            cmdline: Some(Pattern(regex::Regex::new(&regex::escape(marker)).unwrap())),
            ..Matcher::default()
        }],
        budget: Budget::default(),
    }
}

fn figure(set: &MetricSet, name: &str) -> f64 {
    set.value(name, &[("service", "marked")])
        .unwrap_or_else(|| panic!("{name} of the marked service is missing"))
}

fn within(a: f64, b: f64, share: f64) -> bool {
    (a - b).abs() <= share * a.max(b)
}

#[test]
fn the_sysinfo_backend_sees_what_proc_sees() {
    let marker = format!("stack-sysinfo-compare-{}", std::process::id());
    let _trees = start_trees(&marker);
    let procfs = ProcFs::new("/proc");
    let by_proc = proc_services::Services::new(
        procfs,
        PathBuf::from("/sys/fs/cgroup"),
        "test".to_string(),
        PlanConfig::default(),
        vec![service(&marker)],
        Duration::ZERO,
    );
    let by_sysinfo = portable::services::Services::new(
        "test".to_string(),
        PlanConfig::default(),
        vec![service(&marker)],
    );
    // Until the children have started and written their blocks, and both read alike (the
    // figures move while Python starts; each try reads both backends back to back).
    let give_up = Instant::now() + Duration::from_secs(30);
    let (proc_set, sysinfo_set) = loop {
        let proc_set = by_proc.collect(tokio::time::Instant::now()).unwrap();
        let sysinfo_set = by_sysinfo.collect().unwrap();
        let settled = figure(&proc_set, "stack_service_processes") == 6.0
            && figure(&proc_set, "stack_service_resident_memory_bytes") > 4.0 * 24.0 * 1048576.0
            && within(
                figure(&proc_set, "stack_service_resident_memory_bytes"),
                figure(&sysinfo_set, "stack_service_resident_memory_bytes"),
                0.05,
            );
        if settled || Instant::now() > give_up {
            break (proc_set, sysinfo_set);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    for name in [
        "stack_service_up",
        "stack_service_processes",
        "stack_service_instances",
    ] {
        assert_eq!(
            figure(&sysinfo_set, name),
            figure(&proc_set, name),
            "{name}"
        );
    }
    assert_eq!(figure(&sysinfo_set, "stack_service_instances"), 2.0);
    let rss = |set: &MetricSet| figure(set, "stack_service_resident_memory_bytes");
    assert!(
        within(rss(&proc_set), rss(&sysinfo_set), 0.05),
        "RSS by /proc {} and by sysinfo {} differ by more than 5 %",
        rss(&proc_set),
        rss(&sysinfo_set)
    );
    assert!(figure(&sysinfo_set, "stack_service_cpu_seconds_total") >= 0.0);

    // What a scrape costs: every process refreshed (memory, CPU, parent), matches cached.
    let scrapes = 20;
    let started = Instant::now();
    for _ in 0..scrapes {
        by_sysinfo.collect().unwrap();
    }
    let per_scrape = started.elapsed() / scrapes;
    let processes = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        })
        .count();
    eprintln!("sysinfo services scrape: {per_scrape:?} for {processes} processes");
}

#[test]
fn the_sysinfo_host_reads_the_same_memory() {
    let host = portable::host::Host::new();
    let by_sysinfo = host.collect().unwrap();
    let by_proc = crate::collector::host::Host::new(ProcFs::new("/proc"))
        .collect()
        .unwrap();
    let value = |set: &MetricSet, name: &str| set.value(name, &[]).unwrap();
    assert_eq!(
        value(&by_sysinfo, "stack_host_memory_total_bytes"),
        value(&by_proc, "stack_host_memory_total_bytes")
    );
    assert_eq!(
        value(&by_sysinfo, "stack_host_cpu_cores"),
        value(&by_proc, "stack_host_cpu_cores")
    );
    let available = |set: &MetricSet| value(set, "stack_host_memory_available_bytes");
    assert!(within(available(&by_proc), available(&by_sysinfo), 0.05));
    assert_eq!(
        value(&by_sysinfo, "stack_host_swap_total_bytes"),
        value(&by_proc, "stack_host_swap_total_bytes")
    );
    // A second scrape moves the CPU counters on by about the cores times the time between.
    std::thread::sleep(Duration::from_millis(300));
    let later = host.collect().unwrap();
    let cpu = |set: &MetricSet, mode: &str| {
        set.value("stack_host_cpu_seconds_total", &[("mode", mode)])
            .unwrap()
    };
    let spent = cpu(&later, "idle") + cpu(&later, "busy");
    let cores = value(&later, "stack_host_cpu_cores");
    assert!(
        spent > 0.25 * cores && spent < 2.0 * cores,
        "{spent} s of CPU over 0.3 s"
    );
    let boot = value(&later, "stack_host_boot_time_seconds");
    let proc_boot = value(&by_proc, "stack_host_boot_time_seconds");
    assert!(
        (boot - proc_boot).abs() <= 2.0,
        "boot {boot} vs {proc_boot}"
    );
}

#[test]
fn the_sysinfo_disks_include_the_root_filesystem() {
    let disks = portable::filesystem::Filesystem::new().collect().unwrap();
    let size = disks.value("stack_host_filesystem_size_bytes", &[("mountpoint", "/")]);
    assert!(size.is_some_and(|s| s > 0.0), "no size for /");
}
