//! Host figures: CPU time by mode and per core, memory from MemAvailable, swap and its traffic, OOM
//! kills, pressure stall information, load, boot time, disk and network I/O, TCP retransmits and
//! listen-queue overflows (THRESHOLDS.md rows A1, A2, S1, S2, C4, C7, M8, M9, W3, H4).
//! Filesystems are a collector of their own (filesystem.rs), so a hung mount never blinds these.
//!
//! /proc/stat, meminfo and loadavg are required: without them the collector fails. The other
//! files are optional (a fake /proc, an old kernel, PSI turned off): a missing one leaves its
//! figures out and is logged once when that starts and once when it ends, never silently.
//! Each file is read once per scrape.

use crate::logging::Condition;
use crate::metrics::MetricSet;
use crate::proc::{self, ProcFs};

/// Block devices left out of the disk figures: partitions (their I/O is also their disk's),
/// RAM disks, zram, loop devices and floppies. node_exporter's default
/// `--collector.diskstats.device-exclude`, [`IGNORED_DEVICES`], by hand: the compiled regex held
/// a few hundred kilobytes of automata for the life of the process.
fn is_ignored_device(name: &str) -> bool {
    let stem = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem.len() == name.len() {
        return false; // every ignored name ends in a number
    }
    matches!(stem, "ram" | "zram" | "loop" | "fd")
        || is_lettered_disk(stem)
        || is_nvme_partition(stem)
}

/// `(h|s|v|xv)d[a-z]`: sda, vdb, xvda.
fn is_lettered_disk(stem: &str) -> bool {
    stem.strip_suffix(|c: char| c.is_ascii_lowercase())
        .is_some_and(|prefix| matches!(prefix, "hd" | "sd" | "vd" | "xvd"))
}

/// `nvme\d+n\d+p`: nvme0n1p.
fn is_nvme_partition(stem: &str) -> bool {
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    stem.strip_prefix("nvme")
        .and_then(|rest| rest.strip_suffix('p'))
        .and_then(|rest| rest.split_once('n'))
        .is_some_and(|(controller, namespace)| is_number(controller) && is_number(namespace))
}

/// What [`is_ignored_device`] matches, as node_exporter writes it.
#[cfg(test)]
const IGNORED_DEVICES: &str = r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";

/// Network interfaces left out: loopback, and the host end of each container's veth pair, which
/// Docker names afresh (`veth4f1c2a9`) whenever a container is recreated (every deploy): their
/// traffic also crosses the bridge (`docker0`, `br-…`) and the uplink, which are kept.
fn is_ignored_interface(name: &str) -> bool {
    name == "lo" || name.starts_with("veth")
}

/// PSI's resources; `full` is left out for cpu, which the kernel writes as zeros for the whole
/// system (it is defined only per cgroup).
const PRESSURE_RESOURCES: [&str; 3] = ["cpu", "memory", "io"];

/// How the log names an optional file: its last candidate path, the one in /proc itself.
fn gap_subject(paths: &[&str]) -> String {
    format!("host figures from {}", paths.last().unwrap_or(&"?"))
}

#[derive(Debug)]
pub struct Host {
    procfs: ProcFs,
    ticks_per_second: f64,
    page_size: u64,
    gaps: Gaps,
}

/// The optional sources, each with the condition that logs when it cannot be read.
#[derive(Debug, Default)]
struct Gaps {
    vmstat: Condition,
    pressure: Condition,
    diskstats: Condition,
    net_dev: Condition,
    net_snmp: Condition,
    net_netstat: Condition,
}

impl Host {
    pub fn new(procfs: ProcFs) -> Host {
        Host {
            procfs,
            ticks_per_second: proc::clock_ticks_per_second(),
            page_size: proc::page_size(),
            gaps: Gaps::default(),
        }
    }

    pub fn collect(&self) -> anyhow::Result<MetricSet> {
        let mut out = MetricSet::default();
        self.cpu(&mut out)?;
        self.memory(&mut out)?;
        self.load(&mut out)?;
        self.vmstat(&mut out);
        self.pressure(&mut out);
        self.disks(&mut out);
        self.network(&mut out);
        self.tcp(&mut out);
        Ok(out)
    }

    /// The first of `paths` that reads; `None` (logged once by `gap`) when none does.
    fn read_optional(&self, paths: &[&str], gap: &Condition) -> Option<String> {
        let mut error = None;
        for path in paths {
            match self.procfs.read(path) {
                Ok(text) => {
                    gap.set(&gap_subject(paths), None);
                    return Some(text);
                }
                Err(e) => error = Some(e),
            }
        }
        gap.set(
            &gap_subject(paths),
            error.map(|e| format!("{e}: the figures of this file are left out")),
        );
        None
    }

    /// A file of /proc/net, from PID 1's network namespace where it can be read: the host's, even
    /// when the exporter runs in a container of its own with the host's /proc mounted (as
    /// `1/mounts` for the filesystems); /proc/net (this process's namespace) otherwise.
    fn read_net(&self, name: &str, gap: &Condition) -> Option<String> {
        self.read_optional(&[&format!("1/net/{name}"), &format!("net/{name}")], gap)
    }

    fn cpu(&self, out: &mut MetricSet) -> anyhow::Result<()> {
        let stat = proc::parse_stat(&self.procfs.read("stat")?);
        for (mode, ticks) in proc::CPU_MODES.iter().zip(stat.cpu_ticks) {
            out.counter(
                "stack_host_cpu_seconds_total",
                "CPU time of all cores together, by mode.",
                vec![("mode", (*mode).into())],
                ticks as f64 / self.ticks_per_second,
            );
        }
        // Per core only the modes of no work: 1 - their rate is the core's busy share, which shows
        // one core pinned by a single-threaded process (Redis, a solo Celery worker) that reads as
        // 50 % of a 2-core host.
        for core in &stat.cores {
            for (mode, ticks) in [("idle", core.idle), ("iowait", core.iowait)] {
                out.counter(
                    "stack_host_cpu_core_seconds_total",
                    "CPU time of each core in the modes where it did no work (idle, iowait): 1 \
                     minus their rate is the core's busy share. All modes, summed over the cores, \
                     are in stack_host_cpu_seconds_total.",
                    vec![
                        ("core", core.core.to_string().into()),
                        ("mode", mode.into()),
                    ],
                    ticks as f64 / self.ticks_per_second,
                );
            }
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
    fn vmstat(&self, out: &mut MetricSet) {
        let Some(text) = self.read_optional(&["vmstat"], &self.gaps.vmstat) else {
            return;
        };
        let vmstat = proc::parse_vmstat(&text);
        let pages = |count: u64| count.saturating_mul(self.page_size) as f64;
        let counters = [
            (
                "stack_host_oom_kills_total",
                "Processes killed by the kernel's OOM killer since boot, a cgroup's memory limit \
                 included (vmstat oom_kill; absent before Linux 4.13).",
                vmstat.oom_kill.map(|n| n as f64),
            ),
            (
                "stack_host_swap_in_bytes_total",
                "Bytes read back from swap (vmstat pswpin, in pages, times the page size).",
                vmstat.pswpin.map(pages),
            ),
            (
                "stack_host_swap_out_bytes_total",
                "Bytes written out to swap (vmstat pswpout, in pages, times the page size).",
                vmstat.pswpout.map(pages),
            ),
            (
                "stack_host_major_page_faults_total",
                "Page faults that waited for a read from disk or swap (vmstat pgmajfault).",
                vmstat.pgmajfault.map(|n| n as f64),
            ),
        ];
        for (name, help, value) in counters {
            if let Some(value) = value {
                out.counter(name, help, vec![], value);
            }
        }
    }

    /// PSI, where the kernel has it (4.20 and later, unless booted with psi=0 or built with
    /// CONFIG_PSI_DEFAULT_DISABLED and not booted with psi=1).
    fn pressure(&self, out: &mut MetricSet) {
        let mut available = true;
        for resource in PRESSURE_RESOURCES {
            let pressure = self
                .procfs
                .read(&format!("pressure/{resource}"))
                .ok()
                .and_then(|text| proc::parse_pressure(&text));
            let Some(pressure) = pressure else {
                available = false;
                continue;
            };
            let full = pressure.full_us.filter(|_| resource != "cpu");
            for (kind, micros) in [("some", pressure.some_us), ("full", full)] {
                let Some(micros) = micros else { continue };
                out.counter(
                    "stack_host_pressure_waiting_seconds_total",
                    "Time during which tasks stalled waiting for the resource (PSI total): kind \
                     some = at least one task, full = every non-idle task at once (not for cpu). \
                     Its rate is the share of wall-clock time stalled.",
                    vec![("resource", resource.into()), ("kind", kind.into())],
                    micros as f64 / 1e6,
                );
            }
        }
        out.gauge(
            "stack_host_pressure_available",
            "1 if the kernel reports pressure stall information (/proc/pressure/{cpu,memory,io}); \
             0 if it does not (before Linux 4.20, or PSI turned off), so the pressure figures and \
             the alerts on them are absent.",
            vec![],
            f64::from(available),
        );
        self.gaps.pressure.set(
            "pressure stall information",
            (!available).then(|| {
                "/proc/pressure/{cpu,memory,io} cannot all be read (a kernel before 4.20, or \
                 PSI off: boot with psi=1): stack_host_pressure_available is 0, and the \
                 thrashing and memory-pressure alerts fall back on swap traffic or are silent"
                    .to_string()
            }),
        );
    }

    fn disks(&self, out: &mut MetricSet) {
        let Some(text) = self.read_optional(&["diskstats"], &self.gaps.diskstats) else {
            return;
        };
        for disk in proc::parse_diskstats(&text) {
            if is_ignored_device(&disk.device) {
                continue;
            }
            let sectors = |n: u64| n.saturating_mul(proc::DISKSTATS_SECTOR_BYTES) as f64;
            let counters = [
                (
                    "stack_host_disk_read_bytes_total",
                    "Bytes read from the block device.",
                    sectors(disk.sectors_read),
                ),
                (
                    "stack_host_disk_written_bytes_total",
                    "Bytes written to the block device.",
                    sectors(disk.sectors_written),
                ),
                (
                    "stack_host_disk_io_time_seconds_total",
                    "Time the block device had I/O in flight: its rate is the share of time busy.",
                    disk.io_ms as f64 / 1e3,
                ),
            ];
            for (name, help, value) in counters {
                out.counter(
                    name,
                    help,
                    vec![("device", disk.device.clone().into())],
                    value,
                );
            }
        }
    }

    fn network(&self, out: &mut MetricSet) {
        let Some(text) = self.read_net("dev", &self.gaps.net_dev) else {
            return;
        };
        for interface in proc::parse_net_dev(&text) {
            if is_ignored_interface(&interface.interface) {
                continue;
            }
            let counters = [
                (
                    "stack_host_network_receive_bytes_total",
                    "Bytes received on the interface.",
                    interface.receive_bytes,
                ),
                (
                    "stack_host_network_transmit_bytes_total",
                    "Bytes sent on the interface.",
                    interface.transmit_bytes,
                ),
                (
                    "stack_host_network_receive_packets_total",
                    "Packets received on the interface.",
                    interface.receive_packets,
                ),
                (
                    "stack_host_network_transmit_packets_total",
                    "Packets sent on the interface.",
                    interface.transmit_packets,
                ),
                (
                    "stack_host_network_receive_errors_total",
                    "Packets received with errors (bad CRC, frame, overrun) on the interface.",
                    interface.receive_errors,
                ),
                (
                    "stack_host_network_transmit_errors_total",
                    "Packets that failed to be sent on the interface.",
                    interface.transmit_errors,
                ),
                (
                    "stack_host_network_receive_drops_total",
                    "Received packets dropped on the interface (no buffer, unknown protocol).",
                    interface.receive_drops,
                ),
                (
                    "stack_host_network_transmit_drops_total",
                    "Packets dropped before being sent on the interface.",
                    interface.transmit_drops,
                ),
            ];
            for (name, help, value) in counters {
                out.counter(
                    name,
                    help,
                    vec![("interface", interface.interface.clone().into())],
                    value as f64,
                );
            }
        }
    }

    fn tcp(&self, out: &mut MetricSet) {
        if let Some(snmp) = self.read_net("snmp", &self.gaps.net_snmp) {
            if let Some(segments) = proc::snmp_counter(&snmp, "Tcp", "RetransSegs") {
                out.counter(
                    "stack_host_tcp_retransmitted_segments_total",
                    "TCP segments sent again (Tcp RetransSegs): a lossy or congested path.",
                    vec![],
                    segments as f64,
                );
            }
        }
        let Some(netstat) = self.read_net("netstat", &self.gaps.net_netstat) else {
            return;
        };
        let counters = [
            (
                "stack_host_tcp_listen_overflows_total",
                "Connections refused because a listening socket's accept queue was full (TcpExt \
                 ListenOverflows): the server did not accept fast enough.",
                "ListenOverflows",
            ),
            (
                "stack_host_tcp_listen_drops_total",
                "Connection requests a listening socket dropped for any reason, the overflows \
                 included (TcpExt ListenDrops).",
                "ListenDrops",
            ),
        ];
        for (name, help, field) in counters {
            if let Some(value) = proc::snmp_counter(&netstat, "TcpExt", field) {
                out.counter(name, help, vec![], value as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");

    /// A /proc with the fixture's host files: all of them, or only the required ones.
    fn fixture_procfs(all: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let optional = [
            "vmstat",
            "diskstats",
            "pressure/cpu",
            "pressure/memory",
            "pressure/io",
            "net/dev",
            "net/snmp",
            "net/netstat",
        ];
        let files = ["stat", "meminfo"]
            .iter()
            .chain(if all { &optional[..] } else { &[] });
        for name in files {
            let to = dir.path().join(name);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(format!("{FIXTURES}/{name}"), to).unwrap();
        }
        std::fs::write(dir.path().join("loadavg"), "0.50 0.25 0.10 1/100 42\n").unwrap();
        dir
    }

    #[test]
    fn collects_from_the_fixture_procfs() {
        let dir = fixture_procfs(false);
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
        // The optional files are missing: their figures are left out, PSI says so.
        assert_eq!(set.value("stack_host_oom_kills_total", &[]), None);
        assert_eq!(
            set.value("stack_host_tcp_listen_overflows_total", &[]),
            None
        );
        assert_eq!(set.value("stack_host_pressure_available", &[]), Some(0.0));
    }

    #[test]
    fn publishes_the_optional_files_figures() {
        let dir = fixture_procfs(true);
        let host = Host::new(ProcFs::new(dir.path()));
        let set = host.collect().unwrap();
        let value = |name, labels: &[(&str, &str)]| set.value(name, labels);
        let page = host.page_size as f64;
        assert_eq!(
            value(
                "stack_host_cpu_core_seconds_total",
                &[("core", "1"), ("mode", "iowait")]
            ),
            Some(750.0 / host.ticks_per_second)
        );
        assert_eq!(value("stack_host_oom_kills_total", &[]), Some(2.0));
        assert_eq!(
            value("stack_host_swap_in_bytes_total", &[]),
            Some(1520.0 * page)
        );
        assert_eq!(
            value("stack_host_swap_out_bytes_total", &[]),
            Some(4210.0 * page)
        );
        assert_eq!(
            value("stack_host_major_page_faults_total", &[]),
            Some(98_765.0)
        );
        assert_eq!(value("stack_host_pressure_available", &[]), Some(1.0));
        let pressure = |resource, kind| {
            value(
                "stack_host_pressure_waiting_seconds_total",
                &[("resource", resource), ("kind", kind)],
            )
        };
        assert_eq!(pressure("memory", "full"), Some(1.234567));
        assert_eq!(pressure("cpu", "some"), Some(123.456789));
        assert_eq!(pressure("cpu", "full"), None, "undefined for the system");
        let vda = [("device", "vda")];
        assert_eq!(
            value("stack_host_disk_read_bytes_total", &vda),
            Some(5_107_450.0 * 512.0)
        );
        assert_eq!(
            value("stack_host_disk_written_bytes_total", &vda),
            Some(47_061_568.0 * 512.0)
        );
        assert_eq!(
            value("stack_host_disk_io_time_seconds_total", &vda),
            Some(281.56)
        );
        let eth0 = [("interface", "eth0")];
        assert_eq!(
            value("stack_host_network_receive_drops_total", &eth0),
            Some(17.0)
        );
        assert_eq!(
            value("stack_host_network_transmit_errors_total", &eth0),
            Some(1.0)
        );
        assert_eq!(
            value("stack_host_tcp_retransmitted_segments_total", &[]),
            Some(3141.0)
        );
        assert_eq!(
            value("stack_host_tcp_listen_overflows_total", &[]),
            Some(57.0)
        );
        assert_eq!(value("stack_host_tcp_listen_drops_total", &[]), Some(61.0));
    }

    #[test]
    fn whole_disks_and_real_interfaces_only() {
        let dir = fixture_procfs(true);
        let set = Host::new(ProcFs::new(dir.path())).collect().unwrap();
        let labels = |name: &str, label: &str| -> Vec<String> {
            let text = crate::metrics::encode(
                std::sync::Arc::new(set.clone()),
                crate::metrics::Format::PrometheusText,
            );
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .filter_map(|l| {
                    let start = l.find(&format!("{label}=\"")).unwrap() + label.len() + 2;
                    Some(l[start..].split('"').next()?.to_string())
                })
                .collect()
        };
        assert_eq!(
            labels("stack_host_disk_read_bytes_total", "device"),
            ["sr0", "vda"],
            "partitions, loop devices and zram left out"
        );
        assert_eq!(
            labels("stack_host_network_receive_bytes_total", "interface"),
            ["eth0", "docker0"],
            "lo and the containers' veth ends left out"
        );
    }

    #[test]
    fn the_ignored_devices_are_node_exporters() {
        for ignored in [
            "ram0",
            "zram0",
            "loop7",
            "fd0",
            "sda1",
            "vda15",
            "xvda1",
            "hdb2",
            "nvme0n1p1",
        ] {
            assert!(is_ignored_device(ignored), "{ignored}");
        }
        for kept in [
            "sda", "vda", "xvdf", "nvme0n1", "dm-0", "md0", "sr0", "mmcblk0",
        ] {
            assert!(!is_ignored_device(kept), "{kept}");
        }
    }

    proptest::proptest! {
        /// The hand-written matcher says what node_exporter's regex says, on device-like names.
        #[test]
        fn ignored_devices_are_node_exporters(
            name in "(z?ram|loop|fd|[hsvx]{1,2}d[a-z]{0,2}|nvme[0-9]{0,2}n?[0-9]{0,2}p?|dm-|md|sr|mmcblk|[a-z0-9-]{0,4})[0-9]{0,3}",
        ) {
            let regex = regex::Regex::new(IGNORED_DEVICES).unwrap();
            proptest::prop_assert_eq!(is_ignored_device(&name), regex.is_match(&name), "{}", name);
        }
    }
}
