//! `stack_host_*` from sysinfo: memory total and available, swap total and free, online cores,
//! boot time, and CPU time as two modes, `idle` and `busy`.
//!
//! sysinfo gives the CPU's busy share since its previous refresh, not the kernel's per-mode
//! counters: each scrape adds that share of the elapsed time times the cores to `busy`, the rest
//! to `idle`, so `stack_host_cpu_seconds_total` is a counter whose rate is the same busy share the
//! Linux rule (`1 - rate(idle|iowait) / cores`, A2/S2) reads.

use std::sync::Mutex;
use std::time::Instant;

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

use crate::metrics::MetricSet;

#[derive(Debug)]
pub struct Host {
    state: Mutex<Option<State>>,
}

#[derive(Debug)]
struct State {
    system: System,
    last_refresh: Instant,
    idle_seconds: f64,
    busy_seconds: f64,
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
                RefreshKind::nothing()
                    .with_memory(MemoryRefreshKind::everything())
                    .with_cpu(CpuRefreshKind::nothing().with_cpu_usage()),
            ),
            last_refresh: Instant::now(),
            idle_seconds: 0.0,
            busy_seconds: 0.0,
        });
        state.system.refresh_memory();
        state.system.refresh_cpu_usage();
        let now = Instant::now();
        let cores = state.system.cpus().len();
        let elapsed = now.duration_since(state.last_refresh).as_secs_f64() * cores as f64;
        let busy = f64::from(state.system.global_cpu_usage() / 100.0).clamp(0.0, 1.0);
        state.busy_seconds += elapsed * busy;
        state.idle_seconds += elapsed * (1.0 - busy);
        state.last_refresh = now;

        let mut out = MetricSet::default();
        for (mode, seconds) in [("idle", state.idle_seconds), ("busy", state.busy_seconds)] {
            out.counter(
                "stack_host_cpu_seconds_total",
                "CPU time of all cores together, by mode (sysinfo backend: idle and busy only, \
                 summed from the busy share between scrapes).",
                vec![("mode", mode.to_string())],
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
