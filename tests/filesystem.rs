//! The filesystem collector against a mount that really hangs: a FUSE mount whose daemon (this
//! test, holding /dev/fuse) never answers, so statvfs on it blocks in the kernel as on a dead NFS
//! server. The mount lives in the exporter's own mount namespace, so nothing else on the machine
//! (another test's exporter, `df`) can trip over it. Needs root and /dev/fuse.

mod common;

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{collector_success as success, metric, must, temp_dir, write, Exporter};

/// The exporter, started in a mount namespace of its own where `mountpoint` is a FUSE mount served
/// by `fuse` (an open /dev/fuse): nobody reads it, so every call on the mount waits until `fuse`
/// is closed, which aborts the connection and makes the calls return (ENOTCONN).
fn exporter_with_hung_mount(
    fuse: &std::fs::File,
    mountpoint: &std::path::Path,
    args: &[&str],
) -> Exporter {
    let target = CString::new(mountpoint.to_str().unwrap()).unwrap();
    let options = CString::new(format!(
        "fd={},rootmode=40000,user_id=0,group_id=0",
        fuse.as_raw_fd()
    ))
    .unwrap();
    let mut command = Command::new(common::exporter_binary());
    command
        .arg("--web.listen-address=127.0.0.1:0")
        .args(args)
        .env_remove("STACK_MYSQL_URL")
        .env_remove("STACK_POSTGRES_URL")
        .env_remove("STACK_REDIS_URL")
        .env_remove("STACK_NGINX_ACCESS_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only system calls on data prepared above; the /dev/fuse fd is
    // close-on-exec, so the exporter does not keep the connection alive itself.
    unsafe {
        command.pre_exec(move || {
            let root = c"/";
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    std::ptr::null(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                || libc::mount(
                    c"stuck".as_ptr(),
                    target.as_ptr(),
                    c"fuse".as_ptr(),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    options.as_ptr().cast(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Exporter::start_command(command)
}

/// /dev/fuse, whose holder is the daemon of the mounts made with it: this test, which never answers.
fn open_fuse() -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .expect(
            "this test needs root and /dev/fuse (the fuse kernel module) to make a real hung mount",
        )
}

#[test]
fn a_hung_mount_is_skipped_while_host_and_other_mounts_keep_flowing() {
    let fuse = open_fuse();
    let dir = temp_dir();
    let hung = dir.path().join("hung");
    let healthy = dir.path().join("healthy");
    std::fs::create_dir_all(&hung).unwrap();
    std::fs::create_dir_all(&healthy).unwrap();
    // The host's own /proc figures, and a mount table naming the hung mount and a healthy one.
    let procfs = dir.path().join("proc");
    std::fs::create_dir(&procfs).unwrap();
    for name in ["stat", "meminfo", "loadavg"] {
        std::os::unix::fs::symlink(format!("/proc/{name}"), procfs.join(name)).unwrap();
    }
    let (hung_at, healthy_at) = (hung.to_str().unwrap(), healthy.to_str().unwrap());
    write(
        &procfs.join("mounts"),
        &format!("stuck {hung_at} fuse rw 0 0\n/dev/vdz1 {healthy_at} ext4 rw 0 0\n"),
    );
    let exporter = exporter_with_hung_mount(
        &fuse,
        &hung,
        &[
            &format!("--path.procfs={}", procfs.display()),
            "--no-collector.services",
            "--no-collector.sockets",
        ],
    );
    let hung_mount = [("mountpoint", hung_at)];
    let healthy_mount = [("mountpoint", healthy_at)];
    let stuck_lines = |log: &str| {
        log.lines()
            .filter(|l| l.contains(&format!("filesystem {hung_at}: statvfs did not return")))
            .count()
    };

    for scrape in 0..3 {
        let started = Instant::now();
        let text = exporter.scrape();
        let took = started.elapsed();
        assert_eq!(success(&text, "host"), 1.0, "{text}");
        assert!(must(&text, "stack_host_memory_available_bytes", &[]) > 0.0);
        assert!(must(&text, "stack_host_cpu_cores", &[]) > 0.0);
        assert!(metric(&text, "stack_host_load1", &[]).is_some());
        assert_eq!(success(&text, "filesystem"), 1.0, "{text}");
        assert_eq!(must(&text, "stack_host_filesystem_stuck", &hung_mount), 1.0);
        assert!(metric(&text, "stack_host_filesystem_size_bytes", &hung_mount).is_none());
        assert_eq!(
            must(&text, "stack_host_filesystem_stuck", &healthy_mount),
            0.0
        );
        assert!(must(&text, "stack_host_filesystem_size_bytes", &healthy_mount) > 0.0);
        // The first scrape waits its second for the mount; later ones skip it without waiting.
        let bound = if scrape == 0 { 2000 } else { 800 };
        assert!(
            took < Duration::from_millis(bound),
            "scrape {scrape} took {took:?}"
        );
    }
    assert_eq!(stuck_lines(&exporter.log()), 1, "{}", exporter.log());

    // The daemon goes away: the hung call returns, the mount is measured (here: refused) again.
    drop(fuse);
    common::wait_for("the hung call to return", Duration::from_secs(5), || {
        exporter
            .log()
            .contains(&format!("filesystem {hung_at}: recovered"))
    });
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_host_filesystem_stuck", &hung_mount), 0.0);
    assert_eq!(stuck_lines(&exporter.log()), 1, "{}", exporter.log());
}

/// Use as `df` shows it, the plan's own tool: the exporter's size, free and avail of `/` give
/// df's Used, Avail and Use% (used / (used + avail), the root-reserved blocks left out), on
/// whatever disk this runs. A VM image that reserves most of its disk for root reads 70 % by
/// 1 - avail/size where df says 18 %.
#[test]
fn root_filesystem_use_agrees_with_df() {
    let exporter = Exporter::start(&["--no-collector.services"]);
    let text = exporter.scrape();
    let df = Command::new("df")
        .args(["-B1", "--output=size,used,avail,pcent", "/"])
        .output()
        .expect("df runs (apt-get install coreutils)");
    let df = String::from_utf8(df.stdout).unwrap();
    let fields: Vec<f64> = df
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|f| f.trim_end_matches('%').parse().unwrap())
        .collect();
    let (df_size, df_used, df_avail, df_percent) = (fields[0], fields[1], fields[2], fields[3]);

    let root = [("mountpoint", "/")];
    let size = must(&text, "stack_host_filesystem_size_bytes", &root);
    let free = must(&text, "stack_host_filesystem_free_bytes", &root);
    let avail = must(&text, "stack_host_filesystem_avail_bytes", &root);
    assert_eq!(size, df_size, "size of / differs from df's");
    // Other processes write between the scrape and df: 256 MiB of slack.
    let slack = f64::from(256u32 << 20);
    let used = size - free;
    assert!(
        (used - df_used).abs() < slack,
        "used {used} vs df {df_used}"
    );
    assert!(
        (avail - df_avail).abs() < slack,
        "avail {avail} vs df {df_avail}"
    );
    assert!(free >= avail, "free {free} below avail {avail}");
    // df rounds Use% up.
    let percent = (100.0 * used / (used + avail)).ceil();
    assert!(
        (percent - df_percent).abs() <= 1.0,
        "use {percent} % vs df {df_percent} %"
    );
}

/// The watched paths on a hung mount: an access log and a storage directory under a FUSE mount
/// that never answers. Their collectors fail (the first look or walk cannot end) while the host
/// collector keeps answering in time; once the mount is gone (the daemon closed, the mount lazily
/// unmounted in the exporter's namespace) the log is followed from the directory underneath.
#[test]
fn an_access_log_on_a_hung_mount_fails_its_collector_alone_and_is_followed_once_it_heals() {
    let fuse = open_fuse();
    let dir = temp_dir();
    let hung = dir.path().join("hung");
    std::fs::create_dir_all(&hung).unwrap();
    let access_log = hung.join("access.log");
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "[nginx]\naccess_log = \"{}\"\n[storage]\ndirectories = {{ logs = \"{}\" }}\n",
            access_log.display(),
            hung.display()
        ),
    );
    let exporter = exporter_with_hung_mount(
        &fuse,
        &hung,
        &[
            &format!("--config.file={}", config.display()),
            "--no-collector.services",
            "--no-collector.sockets",
            "--no-collector.filesystem",
            "--web.max-scrape-timeout=2s",
        ],
    );
    for scrape in 0..3 {
        let started = Instant::now();
        let text = exporter.scrape();
        let took = started.elapsed();
        assert_eq!(success(&text, "host"), 1.0, "{text}");
        assert!(must(&text, "stack_host_memory_available_bytes", &[]) > 0.0);
        assert_eq!(success(&text, "nginx"), 0.0, "{text}");
        let bound = if scrape == 0 { 2500 } else { 1500 };
        assert!(
            took < Duration::from_millis(bound),
            "scrape {scrape} took {took:?}"
        );
    }

    // The daemon goes away and the dead mount is taken off in the exporter's namespace: the
    // directory underneath now holds the log.
    drop(fuse);
    let unmounted = Command::new("nsenter")
        .args(["-t", &exporter.pid().to_string(), "-m", "umount", "-l"])
        .arg(&hung)
        .status()
        .expect("nsenter runs (apt-get install util-linux)");
    assert!(unmounted.success(), "umount -l in the exporter's namespace");
    let line = "127.0.0.1 - - [28/Nov/2026:10:00:00 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"t\"\n";
    write(&access_log, &line.repeat(5));
    common::wait_for(
        "the log followed after the mount healed",
        Duration::from_secs(15),
        || {
            let text = exporter.scrape();
            success(&text, "nginx") == 1.0
                && metric(&text, "stack_nginx_log_file_open", &[]) == Some(1.0)
        },
    );
    let text = exporter.scrape();
    assert_eq!(success(&text, "host"), 1.0);
}
