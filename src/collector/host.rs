//! Host figures: CPU time by mode, memory from MemAvailable, swap, load, filesystems, boot time
//! (THRESHOLDS.md rows A1–A3, S1–S3, C7, D1).

use std::path::PathBuf;

use crate::metrics::MetricSet;
use crate::proc::{self, ProcFs};

/// Filesystems that hold no user data (node_exporter's default exclusions).
const PSEUDO_FSTYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "erofs",
    "sysfs",
    "tracefs",
];
const PSEUDO_MOUNT_PREFIXES: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/run/credentials/",
    "/var/lib/docker/",
    "/var/lib/containers/storage/",
];

#[derive(Debug, Clone)]
pub struct Host {
    procfs: ProcFs,
    /// Where the host's root filesystem is seen (`--path.rootfs`): mountpoints are statted under it.
    rootfs: PathBuf,
    ticks_per_second: f64,
}

impl Host {
    pub fn new(procfs: ProcFs, rootfs: PathBuf) -> Host {
        Host {
            procfs,
            rootfs,
            ticks_per_second: proc::clock_ticks_per_second(),
        }
    }

    pub fn collect(&self) -> anyhow::Result<MetricSet> {
        let mut out = MetricSet::default();
        self.cpu(&mut out)?;
        self.memory(&mut out)?;
        self.load(&mut out)?;
        self.filesystems(&mut out)?;
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

    fn filesystems(&self, out: &mut MetricSet) -> anyhow::Result<()> {
        // PID 1's mounts are the host's even when this process runs in its own mount namespace.
        let text = self
            .procfs
            .read("1/mounts")
            .or_else(|_| self.procfs.read("mounts"))?;
        let mut seen = std::collections::HashSet::new();
        for mount in proc::parse_mounts(&text) {
            if !is_real_filesystem(&mount) || !seen.insert(mount.mountpoint.clone()) {
                continue;
            }
            let path = self.rootfs.join(mount.mountpoint.trim_start_matches('/'));
            let Ok((size, avail)) = proc::statvfs(&path) else {
                log::debug!("statvfs {} failed; filesystem skipped", path.display());
                continue;
            };
            let labels = vec![
                ("mountpoint", mount.mountpoint.clone()),
                ("device", mount.device.clone()),
                ("fstype", mount.fstype.clone()),
            ];
            out.gauge(
                "stack_host_filesystem_size_bytes",
                "Size of the filesystem.",
                labels.clone(),
                size as f64,
            );
            out.gauge(
                "stack_host_filesystem_avail_bytes",
                "Space on the filesystem available to unprivileged users.",
                labels,
                avail as f64,
            );
        }
        Ok(())
    }
}

fn is_real_filesystem(mount: &proc::Mount) -> bool {
    !PSEUDO_FSTYPES.contains(&mount.fstype.as_str())
        && !PSEUDO_MOUNT_PREFIXES.iter().any(|prefix| {
            mount.mountpoint == prefix.trim_end_matches('/')
                || mount
                    .mountpoint
                    .starts_with(&format!("{}/", prefix.trim_end_matches('/')))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");

    #[test]
    fn pseudo_filesystems_are_left_out() {
        let mounts =
            proc::parse_mounts(&std::fs::read_to_string(format!("{FIXTURES}/mounts")).unwrap());
        let kept: Vec<&str> = mounts
            .iter()
            .filter(|m| is_real_filesystem(m))
            .map(|m| m.mountpoint.as_str())
            .collect();
        assert_eq!(kept, ["/", "/run", "/mnt/my disk"]);
    }

    #[test]
    fn collects_from_the_fixture_procfs() {
        // The fixture dir has no 1/mounts, so the fallback /proc/mounts path is exercised; statvfs
        // of the fixture's mountpoints under rootfs "/" works for "/" and fails quietly for the rest.
        let dir = tempfile::tempdir().unwrap();
        for name in ["stat", "meminfo", "mounts"] {
            std::fs::copy(format!("{FIXTURES}/{name}"), dir.path().join(name)).unwrap();
        }
        std::fs::write(dir.path().join("loadavg"), "0.50 0.25 0.10 1/100 42\n").unwrap();
        let host = Host::new(ProcFs::new(dir.path()), PathBuf::from("/"));
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
        assert!(set
            .value("stack_host_filesystem_size_bytes", &[("mountpoint", "/")])
            .is_some_and(|v| v > 0.0));
    }
}
