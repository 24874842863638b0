//! Host figures: CPU time by mode, memory from MemAvailable, swap, load, boot time (THRESHOLDS.md
//! rows A1, A2, S1, S2, C7). Filesystems are a collector of their own (filesystem.rs), so a hung
//! mount never blinds these.

use crate::metrics::MetricSet;
use crate::proc::{self, ProcFs};

#[derive(Debug, Clone)]
pub struct Host {
    procfs: ProcFs,
    ticks_per_second: f64,
}

impl Host {
    pub fn new(procfs: ProcFs) -> Host {
        Host {
            procfs,
            ticks_per_second: proc::clock_ticks_per_second(),
        }
    }

    pub fn collect(&self) -> anyhow::Result<MetricSet> {
        let mut out = MetricSet::default();
        self.cpu(&mut out)?;
        self.memory(&mut out)?;
        self.load(&mut out)?;
        Ok(out)
    }

    fn cpu(&self, out: &mut MetricSet) -> anyhow::Result<()> {
        let stat = proc::parse_stat(&self.procfs.read("stat")?);
        for (mode, ticks) in proc::CPU_MODES.iter().zip(stat.cpu_ticks) {
            out.counter(
                "stack_host_cpu_seconds_total",
                "CPU time of all cores together, by mode.",
                vec![("mode", mode.to_string())],
                ticks as f64 / self.ticks_per_second,
            );
        }
        out.gauge(
            "stack_host_cpu_cores",
            "Online CPU cores.",
            vec![],
            stat.cpu_count.into(),
        );
        out.gauge(
            "stack_host_boot_time_seconds",
            "Boot time, Unix seconds.",
            vec![],
            stat.boot_time as f64,
        );
        Ok(())
    }

    fn memory(&self, out: &mut MetricSet) -> anyhow::Result<()> {
        let info = proc::parse_meminfo(&self.procfs.read("meminfo")?);
        let figures = [
            ("stack_host_memory_total_bytes", "MemTotal: RAM in all.", info.mem_total),
            (
                "stack_host_memory_available_bytes",
                "MemAvailable: memory that can be given to programs without swapping (not MemFree).",
                info.mem_available,
            ),
            ("stack_host_swap_total_bytes", "SwapTotal: swap configured.", info.swap_total),
            ("stack_host_swap_free_bytes", "SwapFree: swap unused.", info.swap_free),
        ];
        for (name, help, value) in figures {
            out.gauge(name, help, vec![], value as f64);
        }
        Ok(())
    }

    fn load(&self, out: &mut MetricSet) -> anyhow::Result<()> {
        let text = self.procfs.read("loadavg")?;
        let load = proc::parse_loadavg(&text)
            .ok_or_else(|| anyhow::anyhow!("unreadable loadavg: {text:?}"))?;
        out.gauge(
            "stack_host_load1",
            "1-minute load average.",
            vec![],
            load[0],
        );
        out.gauge(
            "stack_host_load5",
            "5-minute load average.",
            vec![],
            load[1],
        );
        out.gauge(
            "stack_host_load15",
            "15-minute load average.",
            vec![],
            load[2],
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");

    #[test]
    fn collects_from_the_fixture_procfs() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["stat", "meminfo"] {
            std::fs::copy(format!("{FIXTURES}/{name}"), dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("loadavg"), "0.50 0.25 0.10 1/100 42\n").unwrap();
        let host = Host::new(ProcFs::new(dir.path()));
        let set = host.collect().unwrap();
        assert_eq!(set.value("stack_host_cpu_cores", &[]), Some(2.0));
        assert_eq!(
            set.value("stack_host_cpu_seconds_total", &[("mode", "idle")]),
            Some(800_000.0 / host.ticks_per_second)
        );
        assert_eq!(set.value("stack_host_load5", &[]), Some(0.25));
        assert_eq!(
            set.value("stack_host_memory_available_bytes", &[]),
            Some(1_187_520.0 * 1024.0)
        );
    }
}
