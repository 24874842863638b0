//! Readers of the /proc files the collectors need: pure parsers tested on fixtures, and a [`ProcFs`]
//! that reads them under a configurable root (`--path.procfs`), so the exporter can run in a
//! container with the host's /proc mounted elsewhere.

use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct ProcFs {
    root: PathBuf,
}

impl ProcFs {
    pub fn new(root: impl Into<PathBuf>) -> ProcFs {
        ProcFs { root: root.into() }
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Reads a file under the root; the error names the file.
    pub fn read(&self, relative: &str) -> io::Result<String> {
        let path = self.path(relative);
        read_file(&path).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
    }

    /// The numeric entries of /proc: one per process (thread group), never per thread.
    pub fn pids(&self) -> io::Result<Vec<u32>> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.root.display())))?;
        let mut pids: Vec<u32> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort_unstable();
        Ok(pids)
    }

    pub fn pid_dir(&self, pid: u32) -> PathBuf {
        self.root.join(pid.to_string())
    }
}

/// Reads a /proc file. /proc files report a size of 0, so `std::fs::read_to_string` stats the file
/// and then reads it in small growing steps; a page-sized first read takes most of them whole,
/// which halves the system calls of a scrape.
pub fn read_file(path: &Path) -> io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
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
    for line in text.lines() {
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
            _ => {}
        }
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
    pub boot_time: u64,
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
                stat.cpu_count = stat.cpu_count.saturating_add(1)
            }
            Some("btime") => {
                stat.boot_time = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0)
            }
            _ => {}
        }
    }
    stat
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
}

pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some(Mount {
                device: unescape_octal(fields.next()?),
                mountpoint: unescape_octal(fields.next()?),
                fstype: fields.next()?.to_string(),
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
    pub comm: String,
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
    // comm may contain spaces and parentheses: it runs from the first '(' to the last ')'.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N of proc(5) is rest[N - 3].
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
        is_zombie: matches!(*rest.first()?, "Z" | "X"),
    })
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

/// Clock ticks per second and page size, asked of the kernel once.
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
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
    })
}

/// A filesystem's space as statvfs gives it. `free - avail` is reserved for root (ext4: 5 % by
/// default); `df` shows use as `(size - free) / (size - free + avail)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub size: u64,
    pub free: u64,
    pub avail: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/proc");

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(Path::new(FIXTURES).join(name)).unwrap()
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
    fn loadavg_parses_three_figures() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/380 12345\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(parse_loadavg("garbage"), None);
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
    fn pid_stat_handles_parentheses_in_comm() {
        let stat = parse_pid_stat(&fixture("pid_stat")).unwrap();
        assert_eq!(stat.comm, "gunicorn: (x) y");
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

    #[test]
    fn read_file_reads_files_larger_than_its_first_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let text = "x".repeat(10_000) + "\n";
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_file(&path).unwrap(), text);
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
