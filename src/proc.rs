//! Readers of the /proc files the collectors need: pure parsers tested on fixtures, and a [`ProcFs`]
//! that reads them under a configurable root (`--path.procfs`), so the exporter can run in a
//! container with the host's /proc mounted elsewhere.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod pids;

#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
    /// The files [`ProcFs::read`] keeps open, by path under the root; shared by the clones.
    kept: Arc<Mutex<HashMap<String, Option<std::fs::File>>>>,
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> ProcFs {
        ProcFs {
            root: root.into(),
            kept: Arc::default(),
        }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Reads a file under the root; the error names the file. Callers name a fixed few files
    /// (meminfo, stat, loadavg, …), read every scrape: one on procfs is kept open and read again
    /// from its start next time (a seq_file then shows that moment's content), which spares the
    /// open's walk through /proc and the close. A file elsewhere (a `--path.procfs` copy of
    /// regular files, which may be replaced by a rename) is opened for each read.
    pub fn read(&self, relative: &str) -> io::Result<String> {
        // Taken out of its slot while it is read: no lock is held across a read.
        let kept = self.kept_files().get_mut(relative).and_then(Option::take);
        let one_record = is_one_record(relative);
        if let Some(file) = kept {
            if let Ok(text) = read_whole(&file, one_record) {
                self.keep(relative, file);
                return Ok(text);
            }
        }
        let path = self.path(relative);
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let file = std::fs::File::open(&path).map_err(named)?;
        let text = read_whole(&file, one_record).map_err(named)?;
        if kernel::is_procfs(&file) {
            self.keep(relative, file);
        }
        Ok(text)
    }

    /// Puts `file` back in its slot (a new slot only on the first read of the path).
    fn keep(&self, relative: &str, file: std::fs::File) {
        let mut kept = self.kept_files();
        match kept.get_mut(relative) {
            Some(slot) => *slot = Some(file),
            None => {
                kept.insert(relative.to_string(), Some(file));
            }
        }
    }

    fn kept_files(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<std::fs::File>>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The numeric entries of /proc: one per process (thread group), never per thread.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        Ok(self
            .pid_entries()?
            .into_iter()
            .map(|(pid, _)| pid)
            .collect())
    }

    /// The numeric entries of /proc with the inode number of each, from the listing itself (no
    /// call per process). /proc/PID gets a new inode when its PID goes to another process (the
    /// old one's entries are dropped at its exit), so an unchanged inode is the same process;
    /// an exec keeps it.
    pub fn pid_entries(&self) -> io::Result<Vec<(u32, u64)>> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.root.display())))?;
        let mut pids: Vec<(u32, u64)> = entries
            .filter_map(|entry| {
                let entry = entry.ok()?;
                Some((
                    entry.file_name().to_str()?.parse().ok()?,
                    kernel::inode(&entry),
                ))
            })
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    pub fn pid_dir(&self, pid: u32) -> PathBuf {
        self.root.join(pid.to_string())
    }

    /// Whether this /proc lists the exporter's own PID namespace: its `self` is this process's
    /// PID. /proc/loadavg's last PID is of that namespace (see `parse_last_pid`).
    pub fn is_own_pid_namespace(&self) -> bool {
        std::fs::read_link(self.path("self"))
            .ok()
            .and_then(|link| link.to_str()?.parse::<u32>().ok())
            == Some(std::process::id())
    }
}

/// The PID most recently given to a new process or thread in the reader's PID namespace: the
/// last figure of /proc/loadavg. PIDs are handed out in increasing order until they wrap around.
pub fn parse_last_pid(loadavg: &str) -> Option<u32> {
    loadavg.split_whitespace().nth(4)?.parse().ok()
}

/// Reads a /proc file. /proc files report a size of 0, so `std::fs::read_to_string` stats the file
/// and then reads it in small growing steps; a page-sized first read takes most of them whole,
/// which halves the system calls of a scrape.
pub fn read_file(path: &Path) -> io::Result<String> {
    read_whole(&std::fs::File::open(path)?, false)
}

/// Reads /proc/PID/stat kept open, from its start: a seq_file starts again at offset 0, so the
/// same descriptor gives this moment's content each time, without an open's walk through /proc.
/// A process reaped since the open gives ESRCH.
pub fn read_again(file: &std::fs::File) -> io::Result<String> {
    read_whole(file, true)
}

/// Whether the /proc file `relative` is one seq_file record, which every read shows whole or up
/// to the buffer's end (the kernel's `single_open` files): a read that leaves room in the buffer
/// has then reached the end. Files of a record per item (vmstat, diskstats, net/dev, mounts) come
/// in page-sized pieces, any of them short, and are read until a read returns nothing.
fn is_one_record(relative: &str) -> bool {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    matches!(
        name,
        "stat" | "meminfo" | "loadavg" | "uptime" | "status" | "snmp" | "netstat" | "sockstat"
    ) || relative.starts_with("pressure/")
}

/// Reads a file from offset 0 (pread: no seek first, and a file kept open is read from its start,
/// where a seq_file shows this moment's content). A `one_record` file's read that leaves room in
/// the buffer is its last (see [`is_one_record`]): no second read to see the end.
fn read_whole(file: &std::fs::File, one_record: bool) -> io::Result<String> {
    let mut buf = Vec::with_capacity(4096);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(buf.capacity());
        }
        let room = buf.capacity() - buf.len();
        let n = kernel::read_at_end_of(file, &mut buf)?;
        if n == 0 || (one_record && n < room) {
            break;
        }
    }
    // A process may name itself, or a socket, in any bytes: keep the rest of the file readable.
    Ok(match String::from_utf8(buf) {
        Ok(text) => text,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Figures from /proc/meminfo, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Meminfo {
    pub mem_total: u64,
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
}

impl Meminfo {
    pub fn used(&self) -> u64 {
        self.mem_total.saturating_sub(self.mem_available)
    }
}

pub fn parse_meminfo(text: &str) -> Meminfo {
    let mut info = Meminfo::default();
    let (mut free, mut buffers, mut cached, mut has_available) = (0, 0, 0, false);
    // The keys wanted are the file's first 16 or so of 50-odd lines: read until all 7 are seen.
    let mut wanted = 7;
    for line in text.lines() {
        if wanted == 0 {
            break;
        }
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let kib: u64 = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let bytes = kib.saturating_mul(1024);
        match key {
            "MemTotal" => info.mem_total = bytes,
            "MemAvailable" => {
                info.mem_available = bytes;
                has_available = true;
            }
            "MemFree" => free = bytes,
            "Buffers" => buffers = bytes,
            "Cached" => cached = bytes,
            "SwapTotal" => info.swap_total = bytes,
            "SwapFree" => info.swap_free = bytes,
            _ => continue,
        }
        wanted -= 1;
    }
    // Kernels before 3.14 have no MemAvailable; this is the usual estimate.
    if !has_available {
        info.mem_available = free.saturating_add(buffers).saturating_add(cached);
    }
    info
}

/// The CPU modes of /proc/stat's `cpu` line, in the order the kernel writes them.
pub const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostStat {
    /// Clock ticks of all CPUs together per mode of [`CPU_MODES`].
    pub cpu_ticks: [u64; 8],
    pub cpu_count: u32,
    /// Each online core's ticks in the modes where it did no work.
    pub cores: Vec<CoreIdle>,
    pub boot_time: u64,
}

/// One core's `cpuN` line, reduced to what tells a saturated core: the ticks it sat idle and the
/// ticks it waited on I/O (which a busy share counts as not busy, as A2's ratio does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CoreIdle {
    pub core: u32,
    pub idle: u64,
    pub iowait: u64,
}

pub fn parse_stat(text: &str) -> HostStat {
    let mut stat = HostStat::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                for (slot, value) in stat.cpu_ticks.iter_mut().zip(fields) {
                    *slot = value.parse().unwrap_or(0);
                }
            }
            Some(name) if name.starts_with("cpu") => {
                stat.cpu_count = stat.cpu_count.saturating_add(1);
                stat.cores.extend(parse_core(name, fields));
            }
            Some("btime") => {
                stat.boot_time = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0)
            }
            _ => {}
        }
    }
    stat
}

/// A `cpuN` line's core number and idle and iowait ticks (the 4th and 5th figures).
fn parse_core<'a>(name: &str, mut ticks: impl Iterator<Item = &'a str>) -> Option<CoreIdle> {
    let core = name.strip_prefix("cpu")?.parse().ok()?;
    let mut next = || ticks.next()?.parse().ok();
    let (_user, _nice, _system) = (next()?, next()?, next()?);
    Some(CoreIdle {
        core,
        idle: next()?,
        // Kernels before 2.6 wrote four figures only.
        iowait: next().unwrap_or(0),
    })
}

/// Seconds since boot, the first figure of /proc/uptime.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>());
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    /// Mounted with the `ro` option.
    pub read_only: bool,
}

pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some(Mount {
                device: unescape_octal(fields.next()?),
                mountpoint: unescape_octal(fields.next()?),
                fstype: fields.next()?.to_string(),
                read_only: fields
                    .next()
                    .is_some_and(|options| options.split(',').any(|option| option == "ro")),
            })
        })
        .collect()
}

/// /proc/mounts writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape_octal(field: &str) -> String {
    if !field.contains('\\') {
        return field.to_string();
    }
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escape = bytes.get(i + 1..i + 4).filter(|_| byte == b'\\');
        match escape.and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok()) {
            Some(unescaped) => {
                out.push(unescaped);
                i += 4;
            }
            None => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The fields of /proc/PID/stat the services collector uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PidStat {
    /// Shared, not copied: a scrape hands each process's stat to several readers.
    pub comm: Arc<str>,
    pub ppid: u32,
    /// utime + stime + cutime + cstime, in clock ticks: the process's CPU and that of its reaped
    /// children, so a service's total does not drop when its master reaps a worker.
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks: with the PID, identifies the process over time.
    pub start_ticks: u64,
    pub rss_pages: u64,
    /// Where the process's arguments live in its memory (fields 48 and 49): a new pair after every
    /// exec, so a changed command line is noticed without reading it. 0 where the kernel hides
    /// them (another user's process without CAP_SYS_PTRACE) or is older than 3.5.
    pub arg_start: u64,
    pub arg_end: u64,
    /// Kernel threads have no memory map and belong to no service.
    pub is_kernel_thread: bool,
    /// A zombie has exited and waits to be reaped: it uses no memory and runs no more.
    pub is_zombie: bool,
}

pub fn parse_pid_stat(text: &str) -> Option<PidStat> {
    parse_pid_stat_reusing(text, None)
}

/// [`parse_pid_stat`], sharing `last_comm` (the process's name at its last read) when the name
/// is the same, as it nearly always is: no new allocation per read.
pub fn parse_pid_stat_reusing(text: &str, last_comm: Option<&Arc<str>>) -> Option<PidStat> {
    // comm may contain spaces and parentheses: it runs from the first '(' to the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?;
    let comm = match last_comm {
        Some(last) if **last == *name => last.clone(),
        _ => Arc::from(name),
    };
    // rest[0] is field 3 (state); field N of proc(5) is rest[N - 3]. Fields past the last one read
    // are not kept: an array on the stack, not a Vec per read (a scrape reads hundreds of these).
    const LAST_FIELD: usize = 49;
    let mut rest = [""; LAST_FIELD - 2];
    split_fields(text.get(close + 1..)?, &mut rest);
    let field = |n: usize| -> Option<u64> { rest.get(n.checked_sub(3)?)?.parse().ok() };
    const PF_KTHREAD: u64 = 0x0020_0000;
    let cpu_ticks = [field(14)?, field(15)?, field(16)?, field(17)?]
        .into_iter()
        .fold(0u64, u64::saturating_add);
    Some(PidStat {
        comm,
        ppid: u32::try_from(field(4)?).ok()?,
        cpu_ticks,
        start_ticks: field(22)?,
        rss_pages: field(24)?,
        arg_start: field(48).unwrap_or(0),
        arg_end: field(49).unwrap_or(0),
        is_kernel_thread: field(9)? & PF_KTHREAD != 0,
        is_zombie: matches!(rest[0], "Z" | "X"),
    })
}

/// Fills `slots` with the words of `text` separated by ASCII spaces or line ends, in order, as
/// far as either goes. The kernel writes /proc/PID/stat's fields with single spaces: one pass
/// over the bytes, not a search per word.
fn split_fields<'a>(text: &'a str, slots: &mut [&'a str]) {
    let mut filled = 0;
    let mut start = 0;
    for (at, &byte) in text.as_bytes().iter().enumerate() {
        if !matches!(byte, b' ' | b'\n' | b'\t' | b'\r') {
            continue;
        }
        if at > start {
            let Some(slot) = slots.get_mut(filled) else {
                return;
            };
            // Both ends are at ASCII bytes: always a char boundary.
            *slot = &text[start..at];
            filled += 1;
        }
        start = at + 1;
    }
    if let (Some(slot), true) = (slots.get_mut(filled), start < text.len()) {
        *slot = &text[start..];
    }
}

/// A process's proportional set size from /proc/PID/smaps_rollup, in bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pss {
    pub total: u64,
    /// The anonymous and shared-memory part (`Pss_Anon` + `Pss_Shmem`): what the process costs
    /// the host beyond page cache that MemAvailable already counts as reclaimable. Kernels before
    /// 5.0 do not split PSS; there it is the total.
    pub anon_and_shmem: u64,
    /// The process's share of its pages in swap (`SwapPss`, kernel 4.3+; `Swap` before): what
    /// PSS leaves out when the process has been pushed into swap.
    pub swap: u64,
}

pub fn parse_smaps_rollup(text: &str) -> Option<Pss> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| kib.saturating_mul(1024))
    };
    let total = field("Pss:")?;
    let anon_and_shmem = match (field("Pss_Anon:"), field("Pss_Shmem:")) {
        (Some(anon), shmem) => anon.saturating_add(shmem.unwrap_or(0)),
        (None, _) => total,
    };
    let swap = field("SwapPss:").or_else(|| field("Swap:")).unwrap_or(0);
    Some(Pss {
        total,
        anon_and_shmem,
        swap,
    })
}

/// /proc/PID/cmdline's NUL-separated arguments joined by spaces.
/// Programs that rewrite their title (redis-server, postgres) leave a run of NULs behind it.
pub fn parse_cmdline(raw: &[u8]) -> String {
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(raw.get(..end).unwrap_or(raw)).replace('\0', " ")
}

/// The effective capability set (`CapEff:`, hexadecimal) of /proc/PID/status.
pub fn parse_effective_capabilities(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

pub use kernel::{clock_ticks_per_second, open_files_limit, page_size, statvfs};

/// A filesystem's space as statvfs gives it. `free - avail` is reserved for root (ext4: 5 % by
/// default); `df` shows use as `(size - free) / (size - free + avail)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub size: u64,
    pub free: u64,
    pub avail: u64,
    /// Inodes in all and free (`df -i`); 0 and 0 where the filesystem has no fixed count (btrfs).
    pub files: u64,
    pub files_free: u64,
    /// The filesystem refuses writes now (`ST_RDONLY`): the mount or the filesystem itself (an
    /// ext4 the kernel remounted read-only after an I/O error), in this process's namespace.
    pub read_only: bool,
}

/// The counters of /proc/vmstat the host collector publishes. Each is `None` where the kernel
/// does not write it (`oom_kill` is 4.13 and later).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vmstat {
    pub oom_kill: Option<u64>,
    /// Pages read in from swap and written out to it.
    pub pswpin: Option<u64>,
    pub pswpout: Option<u64>,
    /// Page faults that waited for a read from disk or swap.
    pub pgmajfault: Option<u64>,
}

pub fn parse_vmstat(text: &str) -> Vmstat {
    let mut vmstat = Vmstat::default();
    for line in text.lines() {
        let Some((name, value)) = line.split_once(' ') else {
            continue;
        };
        let slot = match name {
            "oom_kill" => &mut vmstat.oom_kill,
            "pswpin" => &mut vmstat.pswpin,
            "pswpout" => &mut vmstat.pswpout,
            "pgmajfault" => &mut vmstat.pgmajfault,
            _ => continue,
        };
        *slot = value.trim().parse().ok();
    }
    vmstat
}

/// One /proc/pressure file (PSI): the total time, in microseconds since boot, during which at
/// least one task (`some`) or every non-idle task at once (`full`) stalled on the resource.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub some_us: Option<u64>,
    pub full_us: Option<u64>,
}

/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=12345` and the same for `full`; `None` where
/// neither line has a total.
pub fn parse_pressure(text: &str) -> Option<Pressure> {
    let mut pressure = Pressure::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut pressure.some_us,
            Some("full") => &mut pressure.full_us,
            _ => continue,
        };
        *slot = fields
            .find_map(|field| field.strip_prefix("total="))
            .and_then(|total| total.parse().ok());
    }
    (pressure.some_us.is_some() || pressure.full_us.is_some()).then_some(pressure)
}

/// One block device's line of /proc/diskstats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskStats {
    pub device: String,
    /// In the kernel's 512-byte sectors, whatever the device's own sector size.
    pub sectors_read: u64,
    pub sectors_written: u64,
    /// Milliseconds during which the device had I/O in flight.
    pub io_ms: u64,
}

/// The bytes of a /proc/diskstats sector.
pub const DISKSTATS_SECTOR_BYTES: u64 = 512;

pub fn parse_diskstats(text: &str) -> Vec<DiskStats> {
    text.lines()
        .filter_map(|line| {
            // major minor name, then the figures: field N of the kernel's iostats.rst is
            // fields[N - 1].
            let fields: Vec<&str> = line.split_whitespace().collect();
            let figure = |n: usize| -> Option<u64> { fields.get(n - 1)?.parse().ok() };
            Some(DiskStats {
                device: fields.get(2)?.to_string(),
                sectors_read: figure(6)?,
                sectors_written: figure(10)?,
                io_ms: figure(13)?,
            })
        })
        .collect()
}

/// One interface's line of /proc/net/dev.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    pub interface: String,
    pub receive_bytes: u64,
    pub receive_packets: u64,
    pub receive_errors: u64,
    pub receive_drops: u64,
    pub transmit_bytes: u64,
    pub transmit_packets: u64,
    pub transmit_errors: u64,
    pub transmit_drops: u64,
}

pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|line| {
            // An interface name holds no ':', and a large first figure may follow the colon
            // without a space: "eth0:1234567 ...".
            let (name, figures) = line.split_once(':')?;
            let figures: Vec<u64> = figures
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            // Receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes
            // packets errs drop fifo colls carrier compressed.
            let figure = |i: usize| figures.get(i).copied();
            Some(NetDev {
                interface: name.trim().to_string(),
                receive_bytes: figure(0)?,
                receive_packets: figure(1)?,
                receive_errors: figure(2)?,
                receive_drops: figure(3)?,
                transmit_bytes: figure(8)?,
                transmit_packets: figure(9)?,
                transmit_errors: figure(10)?,
                transmit_drops: figure(11)?,
            })
        })
        .collect()
}

/// The TCP sockets in the kernel's tables from /proc/net/sockstat's `TCP:` line: `alloc` (every
/// TCP socket of the host, all network namespaces) plus `tw` (this namespace's TIME-WAIT ones,
/// which sit in the same established-connections table a sock_diag dump walks).
pub fn parse_sockstat_tcp_sockets(text: &str) -> Option<u64> {
    let fields = text.lines().find_map(|l| l.strip_prefix("TCP:"))?;
    let mut words = fields.split_whitespace();
    let (mut alloc, mut tw) = (None, None);
    while let (Some(name), Some(value)) = (words.next(), words.next()) {
        match name {
            "alloc" => alloc = value.parse::<u64>().ok(),
            "tw" => tw = value.parse::<u64>().ok(),
            _ => {}
        }
    }
    alloc?.checked_add(tw.unwrap_or(0))
}

/// One counter of /proc/net/snmp or /proc/net/netstat, where each section is a line of names
/// (`Tcp: RtoAlgorithm RtoMin ...`) followed by a line of values (`Tcp: 1 200 ...`).
pub fn snmp_counter(text: &str, section: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some((prefix, names)) = line.split_once(':') else {
            continue;
        };
        if prefix != section {
            continue;
        }
        let (value_prefix, values) = lines.next()?.split_once(':')?;
        if value_prefix != section {
            return None;
        }
        let index = names.split_whitespace().position(|n| n == name)?;
        return values.split_whitespace().nth(index)?.parse().ok();
    }
    None
}

/// The calls into the kernel beside reading files. The parsers above build everywhere (the
/// sysinfo backend's tests compare against them); these exist only where /proc does, and elsewhere
/// say so instead: no collector built there calls them (src/collector/platform/).
#[cfg(unix)]
mod kernel {
    use std::io;
    use std::path::Path;

    use super::Space;

    /// The inode number of a directory entry, from the listing itself.
    pub fn inode(entry: &std::fs::DirEntry) -> u64 {
        std::os::unix::fs::DirEntryExt::ino(entry)
    }

    /// Clock ticks per second and page size, asked of the kernel (the usual values where it
    /// does not say).
    pub fn clock_ticks_per_second() -> f64 {
        sysconf(libc::_SC_CLK_TCK).map_or(100.0, |ticks| ticks as f64)
    }

    pub fn page_size() -> u64 {
        sysconf(libc::_SC_PAGESIZE).unwrap_or(4096)
    }

    /// A positive `sysconf` value.
    fn sysconf(name: libc::c_int) -> Option<u64> {
        // SAFETY: sysconf has no preconditions.
        let value = unsafe { libc::sysconf(name) };
        u64::try_from(value).ok().filter(|v| *v > 0)
    }

    /// Reads `file` at offset `buf.len()` into `buf`'s spare capacity (not zeroed first); the
    /// bytes read, 0 at the end.
    pub fn read_at_end_of(file: &std::fs::File, buf: &mut Vec<u8>) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let offset = libc::off_t::try_from(buf.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
        let spare = buf.spare_capacity_mut();
        loop {
            // SAFETY: the kernel writes at most `spare.len()` bytes into the spare capacity, and
            // only the `n` it reports written are counted in the length below.
            let n = unsafe {
                libc::pread(
                    file.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    offset,
                )
            };
            match usize::try_from(n) {
                Ok(n) => {
                    // SAFETY: `n` ≤ spare.len() bytes after the length were just written.
                    unsafe { buf.set_len(buf.len() + n) };
                    return Ok(n);
                }
                Err(_) => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
            }
        }
    }

    /// Whether `file` is on procfs (a file of a fake /proc under `--path.procfs` is not).
    #[cfg(target_os = "linux")]
    pub fn is_procfs(file: &std::fs::File) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: a zeroed statfs is a valid out-parameter; the descriptor is open.
        let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
        let known = unsafe { libc::fstatfs(file.as_raw_fd(), &mut stat) } == 0;
        // Both are c_long, c_uint or u32 by target: compared as u64.
        known && stat.f_type as u64 == libc::PROC_SUPER_MAGIC as u64
    }

    #[cfg(not(target_os = "linux"))]
    pub fn is_procfs(_file: &std::fs::File) -> bool {
        false
    }

    /// The soft limit on this process's open files, where the kernel says one.
    pub fn open_files_limit() -> Option<u64> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we pass.
        let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
        known.then_some(limit.rlim_cur)
    }

    /// Size and space available to unprivileged users of the filesystem holding `path`.
    pub fn statvfs(path: &Path) -> io::Result<Space> {
        use std::os::unix::ffi::OsStrExt;
        let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path has a NUL byte"))?;
        // SAFETY: a zeroed statvfs is a valid out-parameter; c_path is NUL-terminated.
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let block = stat.f_frsize as u64;
        let bytes = |blocks: u64| blocks.saturating_mul(block);
        Ok(Space {
            size: bytes(stat.f_blocks as u64),
            free: bytes(stat.f_bfree as u64),
            avail: bytes(stat.f_bavail as u64),
            files: stat.f_files as u64,
            files_free: stat.f_ffree as u64,
            read_only: stat.f_flag & libc::ST_RDONLY != 0,
        })
    }
}

#[cfg(not(unix))]
mod kernel {
    use std::io;
    use std::path::Path;

    use super::Space;

    pub fn inode(_entry: &std::fs::DirEntry) -> u64 {
        0
    }

    pub fn clock_ticks_per_second() -> f64 {
        100.0
    }

    pub fn open_files_limit() -> Option<u64> {
        None
    }

    pub fn is_procfs(_file: &std::fs::File) -> bool {
        false
    }

    /// Reads `file` at offset `buf.len()` to the end of `buf`'s capacity; 0 at the end.
    pub fn read_at_end_of(file: &std::fs::File, buf: &mut Vec<u8>) -> io::Result<usize> {
        use std::os::windows::fs::FileExt;
        let start = buf.len();
        buf.resize(buf.capacity(), 0);
        let read = file.seek_read(&mut buf[start..], start as u64);
        buf.truncate(start + *read.as_ref().unwrap_or(&0));
        read
    }

    pub fn page_size() -> u64 {
        4096
    }

    pub fn statvfs(_path: &Path) -> io::Result<Space> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "statvfs exists only on Unix",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap()
    }

    /// On the real kernel: a kept /proc/PID/stat gives the process's current figures at each
    /// read, and an error once the process is reaped (never another process's, whatever PID).
    #[cfg(target_os = "linux")]
    #[test]
    fn a_kept_stat_file_reads_the_present_and_fails_once_the_process_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let path = PathBuf::from(format!("/proc/{}/stat", child.id()));
        let file = std::fs::File::open(&path).unwrap();
        let first = parse_pid_stat(&read_again(&file).unwrap()).unwrap();
        assert!(!first.is_zombie);
        child.kill().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let killed = parse_pid_stat(&read_again(&file).unwrap()).unwrap();
        assert!(killed.is_zombie, "not reaped yet: a zombie, read anew");
        child.wait().unwrap();
        let error = read_again(&file).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::ESRCH), "{error}");
    }

    #[test]
    fn fields_split_on_ascii_spaces_and_line_ends() {
        let mut slots = [""; 4];
        split_fields(" S 1  2\t3\n", &mut slots);
        assert_eq!(slots, ["S", "1", "2", "3"]);
        let mut slots = [""; 3];
        split_fields("a b c d e", &mut slots);
        assert_eq!(slots, ["a", "b", "c"], "as many as there are slots");
        let mut slots = [""; 3];
        split_fields("a b", &mut slots);
        assert_eq!(slots, ["a", "b", ""], "the last word without a line end");
        let mut slots = [""; 2];
        split_fields("", &mut slots);
        assert_eq!(slots, ["", ""]);
        // Multi-byte text between the separators stays whole.
        let mut slots = [""; 2];
        split_fields("é ü", &mut slots);
        assert_eq!(slots, ["é", "ü"]);
    }

    #[test]
    fn sockstat_gives_the_tcp_sockets_in_the_tables() {
        let text = "sockets: used 32\nTCP: inuse 11 orphan 0 tw 9675 alloc 14 mem 161\nUDP: inuse 0 mem 0\n";
        assert_eq!(parse_sockstat_tcp_sockets(text), Some(9689));
        assert_eq!(
            parse_sockstat_tcp_sockets("TCP: inuse 1 alloc 3\n"),
            Some(3)
        );
        assert_eq!(parse_sockstat_tcp_sockets("TCP: inuse 1 tw 2\n"), None);
        assert_eq!(parse_sockstat_tcp_sockets("TCP: alloc x tw 1\n"), None);
        assert_eq!(parse_sockstat_tcp_sockets("UDP: inuse 0\n"), None);
    }

    #[test]
    fn meminfo_uses_mem_available() {
        let info = parse_meminfo(&fixture("meminfo"));
        assert_eq!(info.mem_total, 2_014_256 * 1024);
        assert_eq!(info.mem_available, 1_187_520 * 1024);
        assert_eq!(info.swap_total, 2_097_148 * 1024);
        assert_eq!(info.swap_free, 2_000_000 * 1024);
        assert_eq!(info.used(), (2_014_256 - 1_187_520) * 1024);
    }

    #[test]
    fn meminfo_without_mem_available_estimates_it() {
        let info =
            parse_meminfo("MemTotal: 100 kB\nMemFree: 10 kB\nBuffers: 5 kB\nCached: 20 kB\n");
        assert_eq!(info.mem_available, 35 * 1024);
    }

    #[test]
    fn stat_sums_cpus_and_counts_cores() {
        let stat = parse_stat(&fixture("stat"));
        assert_eq!(stat.cpu_count, 2);
        assert_eq!(stat.cpu_ticks[0], 46_000);
        assert_eq!(stat.cpu_ticks[3], 800_000);
        assert_eq!(stat.cpu_ticks[7], 12);
        assert_eq!(stat.boot_time, 1_763_900_000);
    }

    #[test]
    fn stat_gives_each_cores_idle_and_iowait() {
        let stat = parse_stat(&fixture("stat"));
        let cores: Vec<(u32, u64, u64)> = stat
            .cores
            .iter()
            .map(|c| (c.core, c.idle, c.iowait))
            .collect();
        assert_eq!(cores, [(0, 400_000, 750), (1, 400_000, 750)]);
        // A core line cut short, or not a number, is left out, the others kept.
        let stat = parse_stat("cpu 1 2 3 4\ncpu0 1 2 3\ncpuX 1 2 3 4 5\ncpu3 1 2 3 4\n");
        assert_eq!(
            stat.cores,
            [CoreIdle {
                core: 3,
                idle: 4,
                iowait: 0
            }]
        );
        assert_eq!(stat.cpu_count, 3);
    }

    #[test]
    fn vmstat_gives_the_counters_it_has() {
        let vmstat = parse_vmstat(&fixture("vmstat"));
        assert_eq!(
            vmstat,
            Vmstat {
                oom_kill: Some(2),
                pswpin: Some(1520),
                pswpout: Some(4210),
                pgmajfault: Some(98_765),
            }
        );
        // A kernel before 4.13 has no oom_kill.
        let old = parse_vmstat("pswpin 1\npswpout 2\npgmajfault 3\n");
        assert_eq!(old.oom_kill, None);
        assert_eq!(old.pgmajfault, Some(3));
    }

    #[test]
    fn pressure_gives_the_totals() {
        let memory = parse_pressure(&fixture("pressure/memory")).unwrap();
        assert_eq!(memory.some_us, Some(4_567_890));
        assert_eq!(memory.full_us, Some(1_234_567));
        // Kernels before 5.13 write no `full` line for cpu.
        let cpu = parse_pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n").unwrap();
        assert_eq!((cpu.some_us, cpu.full_us), (Some(7), None));
        assert_eq!(parse_pressure(""), None);
        assert_eq!(parse_pressure("some avg10=1.00\n"), None);
    }

    #[test]
    fn diskstats_gives_sectors_and_busy_time() {
        let disks = parse_diskstats(&fixture("diskstats"));
        let vda = disks.iter().find(|d| d.device == "vda").unwrap();
        assert_eq!(
            (vda.sectors_read, vda.sectors_written, vda.io_ms),
            (5_107_450, 47_061_568, 281_560)
        );
        assert_eq!(disks.len(), 8);
        assert!(parse_diskstats("253 0 vda 1 2 3\n").is_empty());
    }

    #[test]
    fn net_dev_gives_each_interface() {
        let interfaces = parse_net_dev(&fixture("net/dev"));
        let names: Vec<&str> = interfaces.iter().map(|i| i.interface.as_str()).collect();
        assert_eq!(names, ["lo", "eth0", "docker0", "veth4f1c2a9"]);
        let eth0 = &interfaces[1];
        assert_eq!(
            eth0,
            &NetDev {
                interface: "eth0".into(),
                receive_bytes: 2_517_070_200,
                receive_packets: 11_900_123,
                receive_errors: 3,
                receive_drops: 17,
                transmit_bytes: 794_899_123,
                transmit_packets: 9_594_001,
                transmit_errors: 1,
                transmit_drops: 2,
            }
        );
    }

    #[test]
    fn snmp_counters_are_found_by_section_and_name() {
        let snmp = fixture("net/snmp");
        let netstat = fixture("net/netstat");
        assert_eq!(snmp_counter(&snmp, "Tcp", "RetransSegs"), Some(3141));
        assert_eq!(
            snmp_counter(&netstat, "TcpExt", "ListenOverflows"),
            Some(57)
        );
        assert_eq!(snmp_counter(&netstat, "TcpExt", "ListenDrops"), Some(61));
        // MaxConn is -1: not a counter.
        assert_eq!(snmp_counter(&snmp, "Tcp", "MaxConn"), None);
        assert_eq!(snmp_counter(&snmp, "Tcp", "NoSuchField"), None);
        assert_eq!(snmp_counter("Tcp: A B\nUdp: 1 2\n", "Tcp", "A"), None);
    }

    #[test]
    fn mounts_read_the_ro_option() {
        let mounts = parse_mounts(
            "/dev/vda1 / ext4 rw,relatime 0 0\n/dev/vda15 /boot/efi vfat ro,relatime 0 0\n\
             /dev/sdb /srv ext4 rw,errors=remount-ro 0 0\n/dev/sdc /old ext4\n",
        );
        let read_only: Vec<bool> = mounts.iter().map(|m| m.read_only).collect();
        assert_eq!(read_only, [false, true, false, false]);
    }

    #[test]
    fn statvfs_gives_inodes_and_the_read_only_flag() {
        let dir = tempfile::tempdir().unwrap();
        let space = statvfs(dir.path()).unwrap();
        assert!(!space.read_only, "a temp dir is writable");
        assert!(space.files >= space.files_free);
        // The read-only case needs a read-only mount: tests/host.rs mounts one.
    }

    #[test]
    fn loadavg_parses_three_figures() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/380 12345\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(parse_loadavg("garbage"), None);
    }

    #[test]
    fn uptime_is_the_first_figure() {
        assert_eq!(parse_uptime("3544.52 6901.80\n"), Some(3544.52));
        assert_eq!(parse_uptime(""), None);
    }

    #[test]
    fn pid_entries_give_each_process_directory_its_inode() {
        use std::os::unix::fs::MetadataExt;
        let root = tempfile::tempdir().unwrap();
        for name in ["12", "3", "self", "meminfo"] {
            std::fs::create_dir(root.path().join(name)).unwrap();
        }
        let inode = |name: &str| std::fs::metadata(root.path().join(name)).unwrap().ino();
        let procfs = ProcFs::new(root.path());
        assert_eq!(
            procfs.pid_entries().unwrap(),
            vec![(3, inode("3")), (12, inode("12"))]
        );
        assert_eq!(procfs.pids().unwrap(), vec![3, 12]);
    }

    #[test]
    fn mounts_unescape_spaces() {
        let mounts = parse_mounts(&fixture("mounts"));
        assert!(mounts
            .iter()
            .any(|m| m.mountpoint == "/" && m.fstype == "ext4"));
        assert!(mounts.iter().any(|m| m.mountpoint == "/mnt/my disk"));
    }

    #[test]
    fn pid_stat_shares_the_last_name_when_it_is_the_same() {
        let text = fixture("pid_stat");
        let first = parse_pid_stat(&text).unwrap();
        let again = parse_pid_stat_reusing(&text, Some(&first.comm)).unwrap();
        assert!(
            Arc::ptr_eq(&first.comm, &again.comm),
            "no new copy of the name"
        );
        assert_eq!(again, first);
        let renamed: Arc<str> = Arc::from("python3");
        let fresh = parse_pid_stat_reusing(&text, Some(&renamed)).unwrap();
        assert_eq!(
            &*fresh.comm, "gunicorn: (x) y",
            "an exec's new name is read"
        );
    }

    #[test]
    fn pid_stat_handles_parentheses_in_comm() {
        let stat = parse_pid_stat(&fixture("pid_stat")).unwrap();
        assert_eq!(&*stat.comm, "gunicorn: (x) y");
        assert_eq!(stat.ppid, 4120);
        assert_eq!(stat.cpu_ticks, 150 + 30 + 7 + 3);
        assert_eq!(stat.start_ticks, 9_876_543);
        assert_eq!(stat.rss_pages, 5_120);
        assert!(!stat.is_kernel_thread);
        assert!(!stat.is_zombie);
        let zombie = "77 (gunicorn) Z 1 1 1 0 -1 4227084 0 0 0 0 5 1 0 0 20 0 1 0 999 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        assert!(parse_pid_stat(zombie).unwrap().is_zombie);
    }

    #[test]
    fn pid_stat_flags_kernel_threads() {
        let line = "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 4 0 0 20 0 1 0 3 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
        assert!(parse_pid_stat(line).unwrap().is_kernel_thread);
        assert_eq!(parse_pid_stat("12 (trunc"), None);
    }

    #[test]
    fn smaps_rollup_gives_pss() {
        let pss = parse_smaps_rollup(&fixture("smaps_rollup")).unwrap();
        assert_eq!(pss.total, 10_450 * 1024);
        assert_eq!(pss.anon_and_shmem, 8_000 * 1024);
        // An old kernel without the split: all of it.
        let old = parse_smaps_rollup("Rss: 20 kB\nPss: 12 kB\nSwap: 4 kB\n").unwrap();
        assert_eq!((old.total, old.anon_and_shmem), (12 * 1024, 12 * 1024));
        // Before SwapPss (4.3), the process's own swapped pages.
        assert_eq!(old.swap, 4 * 1024);
        let swapped = parse_smaps_rollup("Pss: 12 kB\nSwap: 40 kB\nSwapPss: 20 kB\n").unwrap();
        assert_eq!(swapped.swap, 20 * 1024);
        assert_eq!(parse_smaps_rollup(""), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_kept_proc_file_reads_this_moments_content() {
        let procfs = ProcFs::new("/proc");
        let uptime = || parse_uptime(&procfs.read("uptime").unwrap()).unwrap();
        let first = uptime();
        assert!(procfs.kept_files()["uptime"].is_some(), "kept open");
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert!(
            uptime() > first,
            "read again from its start, not the first read's text"
        );
        // One that cannot be read is an error naming the file, and is not kept.
        let err = procfs.read("no-such-file").unwrap_err();
        assert!(err.to_string().contains("/proc/no-such-file"), "{err}");
        assert!(!procfs.kept_files().contains_key("no-such-file"));
    }

    /// On the real kernel: /proc files are read whole, one read for a one-record file that fits
    /// the buffer. net/netstat is one record, zoneinfo a record per zone, both more than a page
    /// on Linux 6.x: each gives every line std's reader gives, first read and kept.
    #[cfg(target_os = "linux")]
    #[test]
    fn proc_files_of_either_kind_are_read_whole() {
        let procfs = ProcFs::new("/proc");
        let keys = |text: &str| -> Vec<String> {
            let first = |line: &str| line.split_whitespace().next().unwrap_or("").to_string();
            text.lines().map(first).collect()
        };
        for name in [
            "net/netstat",
            "zoneinfo",
            "self/status",
            "stat",
            "vmstat",
            "loadavg",
        ] {
            let whole = std::fs::read_to_string(Path::new("/proc").join(name)).unwrap();
            for _ in 0..2 {
                let ours = procfs.read(name).unwrap();
                assert_eq!(keys(&ours), keys(&whole), "{name}");
                assert!(ours.ends_with('\n'), "{name}");
            }
        }
    }

    #[test]
    fn a_file_outside_procfs_is_opened_for_each_read() {
        // A copy of /proc under --path.procfs may be replaced by a rename: a kept descriptor
        // would go on reading the replaced file.
        let dir = tempfile::tempdir().unwrap();
        let procfs = ProcFs::new(dir.path());
        std::fs::write(dir.path().join("loadavg"), "0.1 0.2 0.3 1/100 1000\n").unwrap();
        assert_eq!(procfs.read("loadavg").unwrap(), "0.1 0.2 0.3 1/100 1000\n");
        std::fs::write(dir.path().join("new"), "0.5 0.2 0.3 1/100 1001\n").unwrap();
        std::fs::rename(dir.path().join("new"), dir.path().join("loadavg")).unwrap();
        assert_eq!(procfs.read("loadavg").unwrap(), "0.5 0.2 0.3 1/100 1001\n");
        assert!(procfs.kept_files().is_empty());
    }

    #[test]
    fn read_file_reads_files_larger_than_its_first_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let text = "x".repeat(10_000) + "\n";
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_file(&path).unwrap(), text);
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(
            read_whole(&file, true).unwrap(),
            text,
            "reads that fill the buffer go on"
        );
        assert_eq!(
            read_file(Path::new("/proc/self/stat"))
                .unwrap()
                .split(' ')
                .next(),
            Some(std::process::id().to_string().as_str())
        );
    }

    #[test]
    fn pid_stat_reads_the_argument_addresses() {
        // Fields 3 to 52 as the kernel writes them; 48 and 49 are arg_start and arg_end.
        let mut fields: Vec<String> = (3..=52).map(|_| "0".to_string()).collect();
        fields[0] = "S".into();
        fields[48 - 3] = "140735780522119".into();
        fields[49 - 3] = "140735780522266".into();
        let line = format!("9 (python3) {}", fields.join(" "));
        let stat = parse_pid_stat(&line).unwrap();
        assert_eq!(
            (stat.arg_start, stat.arg_end),
            (140735780522119, 140735780522266)
        );
        // An old kernel's shorter line: no addresses, still a process.
        let old = "9 (python3) S 1 9 9 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 50 0 7";
        assert_eq!(parse_pid_stat(old).unwrap().arg_start, 0);
    }

    #[test]
    fn parsers_survive_huge_and_hostile_input() {
        let huge = u64::MAX.to_string();
        let meminfo = format!("MemTotal: {huge} kB\nMemFree: {huge} kB\nCached: {huge} kB\n");
        assert_eq!(parse_meminfo(&meminfo).mem_total, u64::MAX);
        assert_eq!(parse_meminfo(&meminfo).mem_available, u64::MAX);
        let stat = format!(
            "1 (x) S 99999999999 1 1 0 -1 0 0 0 0 0 {huge} {huge} {huge} {huge} 0 0 1 0 5 0 {huge}"
        );
        assert_eq!(parse_pid_stat(&stat), None, "a PPID beyond u32 is refused");
        let stat = stat.replace("99999999999", "1");
        assert_eq!(parse_pid_stat(&stat).unwrap().cpu_ticks, u64::MAX);
        let smaps = format!("Pss: {huge} kB\nPss_Anon: {huge} kB\nPss_Shmem: {huge} kB\n");
        assert_eq!(parse_smaps_rollup(&smaps).unwrap().anon_and_shmem, u64::MAX);
        for text in ["", ")(", "1 (", "1 ) (", "\\", "a\\0", "\\04", "x\\777 y"] {
            let _ = parse_pid_stat(text);
            let _ = parse_mounts(&format!("{text} {text} {text}"));
            let _ = parse_stat(text);
            let _ = parse_meminfo(text);
            let _ = parse_loadavg(text);
            let _ = parse_smaps_rollup(text);
            let _ = parse_effective_capabilities(text);
            let _ = parse_vmstat(text);
            let _ = parse_pressure(text);
            let _ = parse_diskstats(text);
            let _ = parse_net_dev(text);
            let _ = snmp_counter(text, text, text);
            let _ = parse_cmdline(text.as_bytes());
        }
    }

    #[test]
    fn effective_capabilities_parse() {
        let status = "Name:\tx\nCapPrm:\t0000000000000000\nCapEff:\t000001fffeffffff\n";
        assert_eq!(parse_effective_capabilities(status), Some(0x1fffeffffff));
        assert_eq!(parse_effective_capabilities("CapEff:\tzz\n"), None);
    }

    #[test]
    fn cmdline_joins_arguments() {
        assert_eq!(
            parse_cmdline(b"/usr/bin/python3\0-m\0celery\0worker\0"),
            "/usr/bin/python3 -m celery worker"
        );
        assert_eq!(
            parse_cmdline(b"redis-server 127.0.0.1:6379\0\0\0\0"),
            "redis-server 127.0.0.1:6379"
        );
        assert_eq!(parse_cmdline(b""), "");
    }
}
