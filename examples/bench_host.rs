//! CPU cost of the host collector on this machine's /proc, and what issue 11's figures add to it:
//! the collector as it is (stat, meminfo, loadavg, vmstat, pressure/, diskstats, net/dev,
//! net/snmp, net/netstat) beside the collector as it was before them (stat, meminfo and loadavg,
//! with the same figures), each collected and encoded many times. CPU time of this thread, so
//! other work on the machine does not count.
//!
//!   cargo run --release --example bench_host [ROUNDS]

use std::sync::Arc;

use stack_exporter::collector::host::Host;
use stack_exporter::metrics::{encode, Format, MetricSet};
use stack_exporter::proc::{self, ProcFs};

/// CPU time of the calling thread in user and in kernel mode, in seconds.
fn thread_cpu_seconds() -> [f64; 2] {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    [seconds(usage.ru_utime), seconds(usage.ru_stime)]
}

/// Microseconds per round since `started`: user, kernel.
fn per_round(started: [f64; 2], rounds: u32) -> [f64; 2] {
    let now = thread_cpu_seconds();
    [0, 1].map(|i| (now[i] - started[i]) / f64::from(rounds) * 1e6)
}

/// The host collector before issue 11: CPU by mode, cores, boot time, memory, swap, load.
fn host_before(procfs: &ProcFs, ticks: f64) -> MetricSet {
    let mut out = MetricSet::default();
    let stat = proc::parse_stat(&procfs.read("stat").unwrap());
    for (mode, t) in proc::CPU_MODES.iter().zip(stat.cpu_ticks) {
        let labels = vec![("mode", mode.to_string().into())];
        out.counter(
            "stack_host_cpu_seconds_total",
            "h",
            labels,
            t as f64 / ticks,
        );
    }
    out.gauge("stack_host_cpu_cores", "h", vec![], stat.cpu_count.into());
    out.gauge(
        "stack_host_boot_time_seconds",
        "h",
        vec![],
        stat.boot_time as f64,
    );
    let info = proc::parse_meminfo(&procfs.read("meminfo").unwrap());
    for (name, value) in [
        ("stack_host_memory_total_bytes", info.mem_total),
        ("stack_host_memory_available_bytes", info.mem_available),
        ("stack_host_swap_total_bytes", info.swap_total),
        ("stack_host_swap_free_bytes", info.swap_free),
    ] {
        out.gauge(name, "h", vec![], value as f64);
    }
    let load = proc::parse_loadavg(&procfs.read("loadavg").unwrap()).unwrap();
    for (name, value) in [
        ("stack_host_load1", load[0]),
        ("stack_host_load5", load[1]),
        ("stack_host_load15", load[2]),
    ] {
        out.gauge(name, "h", vec![], value);
    }
    out
}

/// Microseconds of CPU (user, kernel) per round of `work` collected and encoded, and the samples
/// and bytes of its last exposition.
fn measure(rounds: u32, work: impl Fn() -> MetricSet) -> ([f64; 2], usize, usize) {
    let mut text = String::new();
    let started = thread_cpu_seconds();
    for _ in 0..rounds {
        text = encode(Arc::new(work()), Format::PrometheusText);
        std::hint::black_box(&text);
    }
    let cpu = per_round(started, rounds);
    let samples = text.lines().filter(|l| !l.starts_with('#')).count();
    (cpu, samples, text.len())
}

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000);
    let procfs = ProcFs::new("/proc");
    let ticks = proc::clock_ticks_per_second();
    let host = Host::new(procfs.clone());
    let now = measure(rounds, || host.collect().unwrap());
    let before = measure(rounds, || host_before(&procfs, ticks));
    println!("host collector, collect + encode, CPU per scrape ({rounds} rounds):");
    println!("                   total     user   kernel  samples  bytes");
    for (name, ([user, kernel], samples, bytes)) in [("before issue 11", before), ("now", now)] {
        let total = user + kernel;
        println!(
            "  {name:<15} {total:>6.1} µs {user:>6.1} µs {kernel:>6.1} µs {samples:>5} {bytes:>7}"
        );
    }
    let added = [0, 1].map(|i| now.0[i] - before.0[i]);
    println!(
        "  added           {:>6.1} µs {:>6.1} µs {:>6.1} µs",
        added[0] + added[1],
        added[0],
        added[1]
    );
}
