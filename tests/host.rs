//! The host collector against the real kernel: its figures agree with /proc read in the same
//! moment, and the failures it exists to show really move them: an OOM kill in a memory-limited
//! cgroup, a filesystem that turns read-only, a listen queue that overflows, one core pinned busy;
//! and their alerts fire in a live Prometheus. The OOM kill and the mounts need root.

mod common;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{metric, must, temp_dir, wait_for, write, Exporter, Guard};

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Counter `name` of a `name value` file (/proc/vmstat).
fn vmstat(name: &str) -> f64 {
    read("/proc/vmstat")
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} "))?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /proc/vmstat"))
}

/// Field `name` of section `section` of /proc/net/snmp or /proc/net/netstat.
fn snmp(file: &str, section: &str, name: &str) -> f64 {
    let text = read(file);
    let mut lines = text
        .lines()
        .filter(|l| l.starts_with(&format!("{section}: ")));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let index = names.split_whitespace().position(|n| n == name).unwrap();
    values
        .split_whitespace()
        .nth(index)
        .unwrap()
        .parse()
        .unwrap()
}

/// The kernel's figure before and after a scrape: the exporter's must lie between them.
fn assert_between(what: &str, before: f64, scraped: f64, after: f64) {
    // Conversions to seconds and bytes are exact to a few ulps.
    let slack = 1e-9 * after.abs().max(1.0);
    assert!(
        before - slack <= scraped && scraped <= after + slack,
        "{what}: scraped {scraped}, the kernel said {before} before and {after} after"
    );
}

/// A series of the exporter (name and labels) and the kernel's figure for it.
type Figure = (String, Vec<(&'static str, String)>, f64);

/// Every figure the kernel gives, keyed by the exporter's series, in the exporter's units.
fn kernel_figures() -> Vec<Figure> {
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut figures = Vec::new();
    let mut add = |name: &str, labels: Vec<(&'static str, String)>, value: f64| {
        figures.push((name.to_string(), labels, value))
    };
    add("stack_host_oom_kills_total", vec![], vmstat("oom_kill"));
    add(
        "stack_host_swap_in_bytes_total",
        vec![],
        vmstat("pswpin") * page,
    );
    add(
        "stack_host_swap_out_bytes_total",
        vec![],
        vmstat("pswpout") * page,
    );
    add(
        "stack_host_major_page_faults_total",
        vec![],
        vmstat("pgmajfault"),
    );
    for line in read("/proc/stat").lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(core) = fields[0].strip_prefix("cpu").filter(|c| !c.is_empty()) else {
            continue;
        };
        for (mode, index) in [("idle", 4), ("iowait", 5)] {
            let labels = vec![("core", core.to_string()), ("mode", mode.to_string())];
            let value = fields[index].parse::<f64>().unwrap() / ticks;
            add("stack_host_cpu_core_seconds_total", labels, value);
        }
    }
    for resource in ["cpu", "memory", "io"] {
        for line in read(&format!("/proc/pressure/{resource}")).lines() {
            let kind = line.split(' ').next().unwrap();
            if resource == "cpu" && kind == "full" {
                continue; // undefined for the whole system
            }
            let total: f64 = line
                .rsplit_once("total=")
                .unwrap()
                .1
                .trim()
                .parse()
                .unwrap();
            let labels = vec![
                ("resource", resource.to_string()),
                ("kind", kind.to_string()),
            ];
            add(
                "stack_host_pressure_waiting_seconds_total",
                labels,
                total / 1e6,
            );
        }
    }
    for line in read("/proc/diskstats").lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let labels = vec![("device", f[2].to_string())];
        let number = |i: usize| f[i].parse::<f64>().unwrap();
        add(
            "stack_host_disk_read_bytes_total",
            labels.clone(),
            number(5) * 512.0,
        );
        add(
            "stack_host_disk_written_bytes_total",
            labels.clone(),
            number(9) * 512.0,
        );
        add(
            "stack_host_disk_io_time_seconds_total",
            labels,
            number(12) / 1e3,
        );
    }
    for line in read("/proc/1/net/dev").lines().skip(2) {
        let (name, rest) = line.split_once(':').unwrap();
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        let labels = vec![("interface", name.trim().to_string())];
        for (metric, index) in [
            ("receive_bytes", 0),
            ("receive_packets", 1),
            ("receive_errors", 2),
            ("receive_drops", 3),
            ("transmit_bytes", 8),
            ("transmit_packets", 9),
            ("transmit_errors", 10),
            ("transmit_drops", 11),
        ] {
            let name = format!("stack_host_network_{metric}_total");
            add(&name, labels.clone(), f[index]);
        }
    }
    let (snmp_file, netstat) = ("/proc/1/net/snmp", "/proc/1/net/netstat");
    let retrans = snmp(snmp_file, "Tcp", "RetransSegs");
    add(
        "stack_host_tcp_retransmitted_segments_total",
        vec![],
        retrans,
    );
    let overflows = snmp(netstat, "TcpExt", "ListenOverflows");
    add("stack_host_tcp_listen_overflows_total", vec![], overflows);
    let drops = snmp(netstat, "TcpExt", "ListenDrops");
    add("stack_host_tcp_listen_drops_total", vec![], drops);
    figures
}

/// The values of one label over the series of `name` in a scrape.
fn label_values(text: &str, name: &str, label: &str) -> BTreeSet<String> {
    let prefix = format!("{name}{{");
    let key = format!("{label}=\"");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| Some(rest.split_once(&key)?.1.split('"').next()?.to_string()))
        .collect()
}

#[test]
fn host_figures_agree_with_the_kernel() {
    assert!(
        Path::new("/proc/pressure/memory").exists(),
        "this test compares PSI too: it needs a kernel with /proc/pressure (4.20+, psi=1)"
    );
    let exporter = Exporter::start(&["--no-collector.services", "--no-collector.sockets"]);
    exporter.scrape(); // warm up: the first scrape builds what later ones reuse
    let before = kernel_figures();
    let text = exporter.scrape();
    let after = kernel_figures();
    assert_eq!(must(&text, "stack_host_pressure_available", &[]), 1.0);

    let keys = |figures: &[Figure]| -> Vec<String> {
        figures
            .iter()
            .map(|(n, l, _)| format!("{n}{l:?}"))
            .collect()
    };
    assert_eq!(
        keys(&before),
        keys(&after),
        "a device or interface came or went"
    );
    let disks = label_values(&text, "stack_host_disk_read_bytes_total", "device");
    let interfaces = label_values(&text, "stack_host_network_receive_bytes_total", "interface");
    let mut compared = 0;
    for ((name, labels, low), (_, _, high)) in before.iter().zip(&after) {
        let want: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let scraped = metric(&text, name, &want);
        let left_out = match want.first() {
            Some(("device", device)) => !disks.contains(*device),
            Some(("interface", interface)) => !interfaces.contains(*interface),
            _ => false,
        };
        if left_out {
            assert!(scraped.is_none(), "{name}{want:?} should be left out");
            continue;
        }
        let scraped = scraped.unwrap_or_else(|| panic!("no {name}{want:?} in:\n{text}"));
        assert_between(&format!("{name}{want:?}"), *low, scraped, *high);
        compared += 1;
    }
    assert!(compared > 20, "only {compared} figures compared");

    // Whole disks are the entries of /sys/block; partitions are not. loop, ram, zram and fd
    // devices are left out like node_exporter's default.
    let whole_disks: BTreeSet<String> = std::fs::read_dir("/sys/block")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| {
            !["loop", "ram", "zram", "fd"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .collect();
    assert_eq!(disks, whole_disks);
    assert!(!disks.is_empty(), "this machine has a disk");
    let real_interfaces: BTreeSet<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "lo" && !name.starts_with("veth"))
        .collect();
    assert_eq!(interfaces, real_interfaces);
}

/// Runs a Python that writes 200 MiB in a cgroup limited to 64 MiB, and asserts the kernel
/// killed it (SIGKILL: the OOM killer).
fn oom_kill_a_child() {
    let python = common::require("python3", "apt-get install python3");
    let cgroup = common::MemoryCgroup::create(64 << 20);
    // The shell moves itself into the cgroup, then becomes the Python.
    let script = format!(
        "echo $$ > '{}' && exec '{}' -c 'data = b\"x\" * (200 << 20); print(len(data))'",
        cgroup.procs.display(),
        python.display()
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "the child should have been OOM-killed: {status:?}"
    );
}

#[test]
fn a_real_oom_kill_moves_the_counter() {
    let exporter = Exporter::start(&["--no-collector.services", "--no-collector.sockets"]);
    let before = must(&exporter.scrape(), "stack_host_oom_kills_total", &[]);
    oom_kill_a_child();
    let after = must(&exporter.scrape(), "stack_host_oom_kills_total", &[]);
    assert!(after >= before + 1.0, "oom kills {before} -> {after}");
    assert!(after <= vmstat("oom_kill"));
}

/// A small tmpfs to mount in the exporter's namespace: where, read-only or not, and its options
/// (`size=1m,nr_inodes=100`).
struct Tmpfs {
    at: CString,
    read_only: bool,
    options: CString,
}

impl Tmpfs {
    fn new(at: &Path, read_only: bool, options: &str) -> Tmpfs {
        Tmpfs {
            at: CString::new(at.to_str().unwrap()).unwrap(),
            read_only,
            options: CString::new(options).unwrap(),
        }
    }
}

/// The exporter in a mount namespace of its own holding `mounts`; nothing outside the namespace
/// sees them.
fn exporter_with_tmpfs_mounts(mounts: Vec<Tmpfs>, args: &[&str]) -> Exporter {
    let mut command = Command::new(common::exporter_binary());
    command
        .arg("--web.listen-address=127.0.0.1:0")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only system calls on data prepared above.
    unsafe {
        command.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    c"/".as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for tmpfs in &mounts {
                let flags = if tmpfs.read_only { libc::MS_RDONLY } else { 0 };
                let mounted = libc::mount(
                    c"none".as_ptr(),
                    tmpfs.at.as_ptr(),
                    c"tmpfs".as_ptr(),
                    flags,
                    tmpfs.options.as_ptr().cast(),
                );
                if mounted != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    Exporter::start_command(command)
}

/// A fake /proc whose host files are the real ones and whose mount table is `mounts`: the
/// filesystems listed are statted in the exporter's own mount namespace.
fn procfs_with_mounts(dir: &Path, mounts: &str) -> PathBuf {
    let procfs = dir.join("proc");
    std::fs::create_dir(&procfs).unwrap();
    let host_files = [
        "stat",
        "meminfo",
        "loadavg",
        "vmstat",
        "pressure",
        "diskstats",
        "net",
    ];
    for name in host_files {
        std::os::unix::fs::symlink(format!("/proc/{name}"), procfs.join(name)).unwrap();
    }
    write(&procfs.join("mounts"), mounts);
    procfs
}

/// Runs `script` with sh in the mount namespace of the process `pid`.
fn in_namespace_of(pid: u32, script: &str) -> Command {
    let nsenter = common::require("nsenter", "apt-get install util-linux");
    let mut command = Command::new(nsenter);
    command.args(["-t", &pid.to_string(), "-m", "sh", "-c", script]);
    command
}

#[test]
fn a_filesystem_that_turns_read_only_is_seen_by_statvfs() {
    let dir = temp_dir();
    let (ro, rw) = (dir.path().join("ro"), dir.path().join("rw"));
    std::fs::create_dir(&ro).unwrap();
    std::fs::create_dir(&rw).unwrap();
    let (ro_at, rw_at) = (ro.to_str().unwrap(), rw.to_str().unwrap());
    // A mount table that says both are writable (as one read before the change would): what
    // reads 1 below can only come from statvfs's ST_RDONLY, the kernel's word now.
    let procfs = procfs_with_mounts(
        dir.path(),
        &format!("none {ro_at} tmpfs rw 0 0\nnone {rw_at} tmpfs rw 0 0\n"),
    );
    let exporter = exporter_with_tmpfs_mounts(
        vec![
            Tmpfs::new(&ro, true, "size=1m,nr_inodes=100"),
            Tmpfs::new(&rw, false, "size=1m,nr_inodes=200"),
        ],
        &[
            &format!("--path.procfs={}", procfs.display()),
            "--no-collector.services",
            "--no-collector.sockets",
        ],
    );
    let (ro_mount, rw_mount) = ([("mountpoint", ro_at)], [("mountpoint", rw_at)]);

    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_host_filesystem_readonly", &ro_mount),
        1.0
    );
    assert_eq!(
        must(&text, "stack_host_filesystem_readonly", &rw_mount),
        0.0
    );
    assert_eq!(must(&text, "stack_host_filesystem_files", &ro_mount), 100.0);
    assert_eq!(
        must(&text, "stack_host_filesystem_files_free", &ro_mount),
        99.0,
        "the root directory"
    );
    assert_eq!(must(&text, "stack_host_filesystem_files", &rw_mount), 200.0);

    // Inodes used up in the writable one show at once.
    let touch = format!("for i in $(seq 1 50); do : > {rw_at}/f$i; done");
    assert!(in_namespace_of(exporter.pid(), &touch)
        .status()
        .unwrap()
        .success());
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_host_filesystem_files_free", &rw_mount),
        149.0
    );

    // Remounted read-only, as the kernel does to an ext4 after an I/O error (errors=remount-ro).
    let remount = format!("mount -o remount,ro {rw_at}");
    let status = in_namespace_of(exporter.pid(), &remount).status().unwrap();
    assert!(status.success(), "remount,ro in the exporter's namespace");
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_host_filesystem_readonly", &rw_mount),
        1.0
    );
    // Nothing outside the exporter's namespace saw the mounts.
    assert!(!read("/proc/self/mounts").contains(rw_at));
}

/// A TCP listener on loopback with an accept queue of one connection, never accepted from.
fn listener_with_backlog_one() -> std::net::TcpListener {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // Listening again on a listening socket sets its backlog.
    assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 1) }, 0);
    listener
}

/// Starts a non-blocking connect to `port`; the socket is kept open so the kernel keeps trying.
fn start_connect(port: u16) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a sockaddr_in built here.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0);
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let result = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let error = std::io::Error::last_os_error();
        assert!(
            result == 0 || error.raw_os_error() == Some(libc::EINPROGRESS),
            "connect: {error}"
        );
        std::os::fd::OwnedFd::from_raw_fd(fd)
    }
}

/// Connections sent to a backlog-1 listener that never accepts: 20, of which at least
/// `OVERFLOWED` find its queue full. Keep the result: the sockets keep retrying while it lives.
const CONNECTS: usize = 20;
/// The queue holds backlog + 1 = 2 connections: every later SYN finds it full and is dropped,
/// and counted, at least once (again at each retransmission).
const OVERFLOWED: usize = CONNECTS - 2;

fn overflow_a_listen_queue() -> (std::net::TcpListener, Vec<std::os::fd::OwnedFd>) {
    let listener = listener_with_backlog_one();
    let port = listener.local_addr().unwrap().port();
    let sockets = (0..CONNECTS).map(|_| start_connect(port)).collect();
    std::thread::sleep(Duration::from_millis(300));
    (listener, sockets)
}

#[test]
fn an_overflowing_listen_queue_moves_the_counters() {
    let exporter = Exporter::start(&["--no-collector.services", "--no-collector.sockets"]);
    let text = exporter.scrape();
    let overflows_before = must(&text, "stack_host_tcp_listen_overflows_total", &[]);
    let drops_before = must(&text, "stack_host_tcp_listen_drops_total", &[]);

    let _queue = overflow_a_listen_queue();

    let text = exporter.scrape();
    let overflows = must(&text, "stack_host_tcp_listen_overflows_total", &[]) - overflows_before;
    let drops = must(&text, "stack_host_tcp_listen_drops_total", &[]) - drops_before;
    let caused = OVERFLOWED as f64;
    assert!(
        overflows >= caused,
        "{overflows} overflows, {caused} caused"
    );
    assert!(
        drops >= overflows,
        "ListenDrops counts the overflows too: {drops} < {overflows}"
    );
}

/// Pins the calling thread to `core`.
fn pin_to(core: usize) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it for core < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "sched_setaffinity"
        );
    }
}

#[test]
fn a_core_pinned_busy_shows_in_its_own_counters() {
    // The last online core.
    let core: usize = read("/proc/stat")
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .strip_prefix("cpu")?
                .parse()
                .ok()
        })
        .max()
        .unwrap();
    let exporter = Exporter::start(&["--no-collector.services", "--no-collector.sockets"]);
    let label = core.to_string();
    let not_busy = |text: &str| {
        ["idle", "iowait"]
            .iter()
            .map(|mode| {
                must(
                    text,
                    "stack_host_cpu_core_seconds_total",
                    &[("core", &label), ("mode", mode)],
                )
            })
            .sum::<f64>()
    };
    let spinner = std::thread::spawn(move || {
        pin_to(core);
        let until = Instant::now() + Duration::from_secs(3);
        let mut spins = 0u64;
        while Instant::now() < until {
            spins = std::hint::black_box(spins + 1);
        }
    });
    std::thread::sleep(Duration::from_millis(200)); // the spinner runs on its core
    let (first, started) = (not_busy(&exporter.scrape()), Instant::now());
    std::thread::sleep(Duration::from_secs(2));
    let (second, elapsed) = (not_busy(&exporter.scrape()), started.elapsed());
    spinner.join().unwrap();
    let busy = 1.0 - (second - first) / elapsed.as_secs_f64();
    assert!(
        busy >= 0.9,
        "core {core} was {busy:.2} busy while a thread spun on it"
    );
}

/// End to end, live: a real Prometheus with the shipped rules (every `for:` at 0s; the durations
/// are promtool's) scrapes an exporter whose host really suffers each fault: an OOM kill, a listen
/// queue overflowed, a filesystem out of inodes, one filling up, one turned read-only; beside
/// them a mount read-only by design never alerts.
#[test]
fn host_alerts_fire_in_a_live_prometheus() {
    use common::servers::{fires, firing_alerts, rules_firing_at_once, start_prometheus_scraping};
    let dir = temp_dir();
    let mount = |name: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir(&path).unwrap();
        path
    };
    let (by_design, turns_ro, inodes, fills) = (
        mount("by-design"),
        mount("turns-ro"),
        mount("inodes"),
        mount("fills"),
    );
    let at = |path: &Path| path.to_str().unwrap().to_string();
    let procfs = procfs_with_mounts(
        dir.path(),
        &format!(
            "none {} tmpfs ro 0 0\nnone {} tmpfs rw 0 0\nnone {} tmpfs rw 0 0\nnone {} tmpfs rw 0 0\n",
            at(&by_design),
            at(&turns_ro),
            at(&inodes),
            at(&fills)
        ),
    );
    let exporter = exporter_with_tmpfs_mounts(
        vec![
            Tmpfs::new(&by_design, true, "size=1m"),
            Tmpfs::new(&turns_ro, false, "size=1m"),
            Tmpfs::new(&inodes, false, "size=1m,nr_inodes=100"),
            Tmpfs::new(&fills, false, "size=1m"),
        ],
        &[
            &format!("--path.procfs={}", procfs.display()),
            "--no-collector.services",
            "--no-collector.sockets",
        ],
    );
    rules_firing_at_once(&dir.path().join("rules"));
    let (_prometheus, prom_port) = start_prometheus_scraping(dir.path(), &[exporter.port], None);
    let instance = format!("127.0.0.1:{}", exporter.port);
    wait_for("the exporter scraped", Duration::from_secs(30), || {
        let (_, _, body) = common::http_get(prom_port, "/api/v1/query?query=up", &[]);
        body.contains(&instance) && body.contains("\"1\"]")
    });
    let writable_since = Instant::now();

    oom_kill_a_child();
    let _queue = overflow_a_listen_queue();
    // 95 files and the root directory: 96 of the 100 inodes.
    let touch = format!("for i in $(seq 1 95); do : > {}/f$i; done", at(&inodes));
    assert!(in_namespace_of(exporter.pid(), &touch)
        .status()
        .unwrap()
        .success());
    // 600 KiB of the 1 MiB, then 8 KiB more a second.
    let fill = format!(
        "head -c 614400 /dev/zero > {0}/big && while :; do head -c 8192 /dev/zero >> {0}/big; sleep 1; done",
        at(&fills)
    );
    let _writer = Guard::spawn(in_namespace_of(exporter.pid(), &fill).stderr(Stdio::null()));

    let expected = [
        ("StackHostOomKill", vec![]),
        ("StackHostListenOverflows", vec![]),
        (
            "StackHostFilesystemInodesLow",
            vec![("mountpoint", at(&inodes))],
        ),
        (
            "StackHostFilesystemFillsWithin7Days",
            vec![("mountpoint", at(&fills))],
        ),
    ];
    for (alert, labels) in &expected {
        let mut want: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        want.push(("instance", &instance));
        wait_for(alert, Duration::from_secs(60), || {
            fires(prom_port, alert, &want)
        });
    }

    // Writable for a while (the rule asks: for most of the last day), then remounted read-only.
    let writable_for = Duration::from_secs(15);
    std::thread::sleep(writable_for.saturating_sub(writable_since.elapsed()));
    let remount = format!("mount -o remount,ro {}", at(&turns_ro));
    assert!(in_namespace_of(exporter.pid(), &remount)
        .status()
        .unwrap()
        .success());
    let turned = [
        ("mountpoint", at(&turns_ro)),
        ("instance", instance.clone()),
    ];
    let turned: Vec<(&str, &str)> = turned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    wait_for(
        "StackHostFilesystemReadOnly",
        Duration::from_secs(10),
        || fires(prom_port, "StackHostFilesystemReadOnly", &turned),
    );
    let alerts = firing_alerts(prom_port);
    let read_only: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|(name, _)| name == "StackHostFilesystemReadOnly")
        .map(|(_, labels)| labels)
        .collect();
    assert_eq!(
        read_only.len(),
        1,
        "the mount read-only by design must not alert: {read_only:#?}"
    );
    assert_eq!(read_only[0]["severity"], "critical");
    assert_eq!(read_only[0]["plan_ref"], "A3");
}
