//! `stack_host_*` from sysinfo: memory total and available, swap total and free, online cores,
//! boot time, and CPU time as two modes, `idle` and `busy`, whose rate the Linux rule
//! (`1 - rate(idle|iowait) / cores`, A2/S2) reads as the busy share.
//!
//! On Windows the CPU counters are the system's own (`GetSystemTimes`, all cores, since boot):
//! sysinfo's CPU usage goes through PDH counters, which Wine lacks. Elsewhere sysinfo gives the
//! busy share since its previous refresh: each scrape adds that share of the elapsed time times
//! the cores to `busy`, the rest to `idle`.

use std::sync::Mutex;
use sysinfo::{MemoryRefreshKind, RefreshKind, System};

use crate::metrics::MetricSet;

#[derive(Debug)]
pub struct Host {
    state: Mutex<Option<State>>,
}

#[derive(Debug)]
struct State {
    system: System,
    cpu: cpu::Counters,
}

impl Default for Host {
    fn default() -> Host {
        Host::new()
    }
}

impl Host {
    /// Reads nothing yet: the first scrape makes sysinfo's first reading.
    pub fn new() -> Host {
        Host {
            state: Mutex::new(None),
        }
    }

    pub fn collect(&self) -> anyhow::Result<MetricSet> {
        let mut slot = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = slot.get_or_insert_with(|| State {
            system: System::new_with_specifics(
                RefreshKind::nothing().with_memory(MemoryRefreshKind::everything()),
            ),
            cpu: cpu::Counters::default(),
        });
        state.system.refresh_memory();
        let (cores, idle_seconds, busy_seconds) = state.cpu.read(&mut state.system);

        let mut out = MetricSet::default();
        for (mode, seconds) in [("idle", idle_seconds), ("busy", busy_seconds)] {
            out.counter(
                "stack_host_cpu_seconds_total",
                "CPU time of all cores together, by mode (sysinfo backend: idle and busy only).",
                vec![("mode", mode.to_string().into())],
                seconds,
            );
        }
        out.gauge(
            "stack_host_cpu_cores",
            "Online CPU cores.",
            vec![],
            cores as f64,
        );
        out.gauge(
            "stack_host_boot_time_seconds",
            "Boot time, Unix seconds.",
            vec![],
            System::boot_time() as f64,
        );
        let system = &state.system;
        let figures = [
            ("stack_host_memory_total_bytes", "MemTotal: RAM in all.", system.total_memory()),
            (
                "stack_host_memory_available_bytes",
                "MemAvailable: memory that can be given to programs without swapping (not MemFree).",
                system.available_memory(),
            ),
            ("stack_host_swap_total_bytes", "SwapTotal: swap configured.", system.total_swap()),
            ("stack_host_swap_free_bytes", "SwapFree: swap unused.", system.free_swap()),
        ];
        for (name, help, value) in figures {
            out.gauge(name, help, vec![], value as f64);
        }
        Ok(out)
    }
}

/// The CPU's idle and busy seconds since boot, all cores together, from the system's counters.
#[cfg(windows)]
mod cpu {
    use sysinfo::System;

    #[repr(C)]
    #[derive(Default)]
    struct FileTime {
        low: u32,
        high: u32,
    }

    #[link(name = "kernel32")]
    extern "system" {
        fn GetSystemTimes(idle: *mut FileTime, kernel: *mut FileTime, user: *mut FileTime) -> i32;
    }

    /// FILETIME counts 100 ns.
    fn seconds(time: &FileTime) -> f64 {
        ((u64::from(time.high) << 32) | u64::from(time.low)) as f64 / 1e7
    }

    #[derive(Debug, Default)]
    pub struct Counters {
        /// Logical processors, asked once.
        cores: Option<usize>,
    }

    impl Counters {
        /// Online cores, idle seconds, busy seconds.
        pub fn read(&mut self, _system: &mut System) -> (usize, f64, f64) {
            let cores = *self
                .cores
                .get_or_insert_with(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            let (mut idle, mut kernel, mut user) = Default::default();
            // SAFETY: GetSystemTimes writes three FILETIMEs we own.
            if unsafe { GetSystemTimes(&mut idle, &mut kernel, &mut user) } == 0 {
                return (cores, 0.0, 0.0);
            }
            // Kernel time includes the idle time.
            let (idle, busy) = (
                seconds(&idle),
                seconds(&kernel) + seconds(&user) - seconds(&idle),
            );
            (cores, idle, busy.max(0.0))
        }
    }
}

/// The busy share sysinfo measures between refreshes, summed into counters.
#[cfg(not(windows))]
mod cpu {
    use std::time::Instant;

    use sysinfo::{CpuRefreshKind, System};

    #[derive(Debug, Default)]
    pub struct Counters {
        last_refresh: Option<Instant>,
        idle_seconds: f64,
        busy_seconds: f64,
    }

    impl Counters {
        /// Online cores, idle seconds, busy seconds.
        pub fn read(&mut self, system: &mut System) -> (usize, f64, f64) {
            let usage = CpuRefreshKind::nothing().with_cpu_usage();
            if self.last_refresh.is_none() {
                system.refresh_cpu_list(usage);
            } else {
                system.refresh_cpu_specifics(usage);
            }
            let now = Instant::now();
            let cores = system.cpus().len();
            if let Some(last) = self.last_refresh {
                let elapsed = now.duration_since(last).as_secs_f64() * cores as f64;
                let busy = f64::from(system.global_cpu_usage() / 100.0).clamp(0.0, 1.0);
                self.busy_seconds += elapsed * busy;
                self.idle_seconds += elapsed * (1.0 - busy);
            }
            self.last_refresh = Some(now);
            (cores, self.idle_seconds, self.busy_seconds)
        }
    }
}
