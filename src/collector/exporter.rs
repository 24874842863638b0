//! The exporter's own build and process metrics, named as every client library names them.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::metrics::MetricSet;
use crate::proc;

use crate::VERSION;

static PANICS: AtomicU64 = AtomicU64::new(0);

/// Counts every panic and logs it as one error line with where it happened (at most once a minute
/// per place). A panic unwinds to the task it happened in (a collector's run, one connection),
/// which tokio catches: the process goes on, and `stack_exporter_panics_total` says that a bug
/// was hit.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(report_panic));
}

/// For tests: counts and logs panics as the exporter does, and still prints them as Rust does, so
/// a failing test's message is not lost. Installed once per test binary.
#[cfg(test)]
pub fn install_panic_hook_for_tests() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let print = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report_panic(info);
            print(info);
        }));
    });
}

fn report_panic(info: &std::panic::PanicHookInfo) {
    PANICS.fetch_add(1, Ordering::Relaxed);
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let location = info
        .location()
        .map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
    // Once a minute per place: a panic a client or a source can trigger at will (every request,
    // every scrape) must not flood the log. Panic sites are few, and so are the keys.
    crate::logging::throttled(
        log::Level::Error,
        format!("panic{location}"),
        format_args!(
            "bug: panic{location}: {message}; the task it hit was abandoned, the exporter goes on"
        ),
    );
}

/// Panics counted since the start (`stack_exporter_panics_total`).
pub fn panics() -> u64 {
    PANICS.load(Ordering::Relaxed)
}

/// Everything the exporter says about itself: build, process and HTTP connection figures.
pub fn own_metrics(out: &mut MetricSet) {
    build_info(out);
    process_metrics(out);
    connection_metrics(out);
}

pub fn build_info(out: &mut MetricSet) {
    out.counter(
        "stack_exporter_panics_total",
        "Bugs hit: panics caught at a task boundary (a collector's run or one connection); the process went on.",
        vec![],
        panics() as f64,
    );
    out.gauge(
        "stack_exporter_build_info",
        "1; the version and build of stack_exporter.",
        vec![
            ("version", VERSION.into()),
            (
                "revision",
                option_env!("STACK_EXPORTER_REVISION")
                    .unwrap_or("unknown")
                    .into(),
            ),
            ("rustversion", env!("STACK_EXPORTER_RUSTC").into()),
        ],
        1.0,
    );
}

/// When the host booted: read once (it does not change, and /proc/stat is a costly read on a host
/// with many CPUs and interrupts); `None`, and no start time, while it cannot be read.
fn boot_time() -> Option<u64> {
    static BOOT_TIME: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    if let Some(known) = BOOT_TIME.get() {
        return Some(*known);
    }
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let boot_time = proc::parse_stat(&text).boot_time;
    (boot_time > 0).then(|| *BOOT_TIME.get_or_init(|| boot_time))
}

/// process_* metrics of this process, from /proc/self (always this process's own /proc, whatever
/// `--path.procfs` says).
pub fn process_metrics(out: &mut MetricSet) {
    // Kept open from scrape to scrape, as the collectors' /proc files are (proc::ProcFs::read).
    static OWN: std::sync::OnceLock<proc::ProcFs> = std::sync::OnceLock::new();
    let own = OWN.get_or_init(|| proc::ProcFs::new("/proc/self"));
    let Some(stat) = own.read("stat").ok().and_then(|t| parse_self_stat(&t)) else {
        return;
    };
    let ticks = proc::clock_ticks_per_second();
    out.counter(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        vec![],
        stat.cpu_ticks as f64 / ticks,
    );
    out.gauge(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        vec![],
        (stat.rss_pages * proc::page_size()) as f64,
    );
    out.gauge(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        vec![],
        stat.vsize as f64,
    );
    if let Some(boot_time) = boot_time() {
        out.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            vec![],
            boot_time as f64 + stat.start_ticks as f64 / ticks,
        );
    }
    if let Some(fds) = own_open_fds() {
        out.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            vec![],
            fds as f64,
        );
    }
    // The soft limit, as /proc/self/limits' "Max open files" says it.
    if let Some(max) = proc::open_files_limit() {
        out.gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            vec![],
            max as f64,
        );
    }
}

/// This process's open files (see [`open_fds`]); its listing holds one of them.
fn own_open_fds() -> Option<u64> {
    open_fds(Path::new("/proc/self/fd"), 1)
}

/// The open files of the process whose /proc/PID/fd is `fd_dir`. Since Linux 6.2 the directory's
/// size is their number: one stat, where a listing makes the kernel build an entry for every file.
/// The size also counts a descriptor a thread has taken and not yet filled (an `open` or `accept`
/// under way), as the open-files limit does. Older kernels give 0 there and the directory is
/// listed, less the `listing_holds` descriptors the listing itself holds in that process.
fn open_fds(fd_dir: &Path, listing_holds: u64) -> Option<u64> {
    match std::fs::metadata(fd_dir).ok()?.len() {
        0 => Some((std::fs::read_dir(fd_dir).ok()?.count() as u64).saturating_sub(listing_holds)),
        counted => Some(counted),
    }
}

/// Counters behind the `stack_exporter_http_connections*` metrics, kept by the HTTP server's
/// connection cap (src/http/connections.rs). They live here so that the server depends on the
/// self metrics and never the other way round.
#[derive(Debug, Default)]
pub struct HttpStats {
    pub open: AtomicUsize,
    pub max: AtomicUsize,
    pub evicted: AtomicU64,
    pub refused: AtomicU64,
    pub accept_errors: AtomicU64,
    /// Set when `--web.config.file` is in use (src/http/web.rs); the three below mean nothing without.
    pub web_config: AtomicBool,
    /// A changed web config (or a file it names) failed to load: the last good one is in force.
    pub web_config_reload_failing: AtomicBool,
    pub tls_handshake_failures: AtomicU64,
    pub unauthorized: AtomicU64,
}

pub static HTTP_STATS: HttpStats = HttpStats {
    open: AtomicUsize::new(0),
    max: AtomicUsize::new(0),
    evicted: AtomicU64::new(0),
    refused: AtomicU64::new(0),
    accept_errors: AtomicU64::new(0),
    web_config: AtomicBool::new(false),
    web_config_reload_failing: AtomicBool::new(false),
    tls_handshake_failures: AtomicU64::new(0),
    unauthorized: AtomicU64::new(0),
};

/// The connection cap at work (`--web.max-connections`, src/http/connections.rs).
pub fn connection_metrics(out: &mut MetricSet) {
    let stats = &HTTP_STATS;
    let max = stats.max.load(Ordering::Relaxed);
    if max == 0 {
        return; // not serving HTTP (a test or a fuzz target driving one connection)
    }
    out.gauge(
        "stack_exporter_http_connections",
        "HTTP connections open now.",
        vec![],
        stats.open.load(Ordering::Relaxed) as f64,
    );
    out.gauge(
        "stack_exporter_http_connections_max",
        "The cap on open HTTP connections (--web.max-connections).",
        vec![],
        max as f64,
    );
    let counters = [
        (
            "stack_exporter_http_connections_evicted_total",
            "Connections closed at the cap to make room for a new one: the one that had waited longest without sending a request. Above 0: more clients than the cap, or an idle-connection flood.",
            &stats.evicted,
        ),
        (
            "stack_exporter_http_connections_refused_total",
            "Connections closed at once because every connection under the cap was answering a request.",
            &stats.refused,
        ),
        (
            "stack_exporter_http_accept_errors_total",
            "Failed accepts of new connections (usually out of file descriptors).",
            &stats.accept_errors,
        ),
    ];
    for (name, help, counter) in counters {
        out.counter(name, help, vec![], counter.load(Ordering::Relaxed) as f64);
    }
    if stats.web_config.load(Ordering::Relaxed) {
        web_config_metrics(out, stats);
    }
}

/// TLS and basic auth under `--web.config.file` (src/http/web.rs).
fn web_config_metrics(out: &mut MetricSet, stats: &HttpStats) {
    let failing = stats.web_config_reload_failing.load(Ordering::Relaxed);
    out.gauge(
        "stack_exporter_web_config_last_reload_successful",
        "1: the web config (--web.config.file) and the certificates it names are in force as they are on disk; 0: a change to them failed to load and the last good configuration is still served.",
        vec![],
        if failing { 0.0 } else { 1.0 },
    );
    out.counter(
        "stack_exporter_http_tls_handshake_failures_total",
        "Connections closed because their TLS handshake failed or timed out: plain HTTP to the TLS port, a missing or untrusted client certificate, a port scan.",
        vec![],
        stats.tls_handshake_failures.load(Ordering::Relaxed) as f64,
    );
    out.counter(
        "stack_exporter_http_unauthorized_total",
        "Requests answered 401 for missing or wrong basic auth credentials.",
        vec![],
        stats.unauthorized.load(Ordering::Relaxed) as f64,
    );
}

struct SelfStat {
    cpu_ticks: u64,
    start_ticks: u64,
    rss_pages: u64,
    vsize: u64,
}

fn parse_self_stat(text: &str) -> Option<SelfStat> {
    let own = proc::parse_pid_stat(text)?;
    let rest: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // Field 23 of proc(5) is vsize; utime and stime are fields 14 and 15 (children excluded).
    let field = |n: usize| -> Option<u64> { rest.get(n - 3)?.parse().ok() };
    Some(SelfStat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: own.start_ticks,
        rss_pages: own.rss_pages,
        vsize: field(23)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Panics with its own line number as the message, always from the same place.
    fn panic_at_one_place() {
        panic!("{}", line!());
    }

    #[test]
    fn every_panic_is_counted_and_each_place_logged_at_most_once_a_minute() {
        install_panic_hook_for_tests();
        log::set_max_level(log::LevelFilter::Error);
        let before = panics();
        let mut line = String::new();
        for _ in 0..3 {
            let payload = std::panic::catch_unwind(panic_at_one_place).unwrap_err();
            line = *payload.downcast::<String>().unwrap();
        }
        assert!(panics() >= before + 3, "{} after {before}", panics());
        let key = format!("panic at {}:{line}", file!());
        assert_eq!(
            crate::logging::held_back(&key),
            Some(2),
            "the first panic at {key} is logged, the next two held back"
        );
    }

    /// Another process's open files count as many as a listing of its fd directory shows (its
    /// standard three and whatever it inherited), whichever way the kernel gives the count. (The
    /// test's own process is no subject: other tests open files meanwhile, and a thread blocked in
    /// `accept` holds a descriptor the size counts and a listing does not show.)
    #[test]
    fn open_files_are_counted() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sleep (coreutils)");
        let fd_dir = std::path::PathBuf::from(format!("/proc/{}/fd", child.id()));
        // Counted again while sleep may still be starting (its loader opens and closes a file
        // or two); a count off by one never settles.
        let mut counts = (None, 0);
        for _ in 0..200 {
            let listed = std::fs::read_dir(&fd_dir).unwrap().count() as u64;
            counts = (open_fds(&fd_dir, 0), listed);
            if counts.0 == Some(listed) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let (counted, listed) = counts;
        assert_eq!(counted, Some(listed), "counted, listed");
        assert!(listed >= 3, "stdin, stdout and stderr at least: {listed}");
    }

    #[test]
    fn own_process_metrics_are_plausible() {
        let mut out = MetricSet::default();
        process_metrics(&mut out);
        let rss = out.value("process_resident_memory_bytes", &[]).unwrap();
        assert!(rss > 100_000.0, "rss {rss}");
        assert!(out.value("process_open_fds", &[]).unwrap() >= 3.0);
        let start = out.value("process_start_time_seconds", &[]).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(start <= now + 1.0 && start > now - 86_400.0 * 365.0);
        // The soft limit, as client_golang reads it from /proc/self/limits.
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
        let soft: f64 = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            .unwrap();
        assert_eq!(out.value("process_max_fds", &[]), Some(soft));
        // The CPU counter moves on a second read through the kept file.
        let cpu = out.value("process_cpu_seconds_total", &[]).unwrap();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(spin.elapsed());
        }
        let mut again = MetricSet::default();
        process_metrics(&mut again);
        assert!(again.value("process_cpu_seconds_total", &[]).unwrap() > cpu);
    }
}
