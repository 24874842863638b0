//! Filesystems: size, space available, inodes and read-only state of each real mount (THRESHOLDS.md
//! rows A3, S3, D1), in a collector of its own so that a hung mount never costs the host's CPU,
//! memory and load figures.
//!
//! Each mount's statvfs runs on a helper thread (`crate::lane`) and is waited for at most
//! [`MOUNT_TIMEOUT`]. A call that has not returned by then leaves its mount *stuck*: reported by
//! `stack_host_filesystem_stuck{mountpoint}` and one log line, and skipped on later scrapes until
//! the call returns (as node_exporter's `stuckMounts`), so a dead NFS server holds one thread per
//! mount, not one per scrape, and the other mounts keep being measured.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lane::{Ended, Job, Lane};
use crate::logging::Condition;
use crate::metrics::MetricSet;
use crate::proc::{self, ProcFs, Space};

/// The longest one mount's statvfs is waited for before the mount is marked stuck. A healthy
/// local or network filesystem answers in well under a millisecond.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one mount's call may hold up the mounts behind it. A local filesystem answers in
/// microseconds, a network one in a round trip.
const MOUNT_STALL: Duration = Duration::from_millis(20);

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

/// Size and space available of the filesystem holding a path: `proc::statvfs`, or a stand-in in
/// unit tests.
pub type Statvfs = fn(&Path) -> io::Result<Space>;

#[derive(Debug)]
pub struct Filesystem {
    procfs: ProcFs,
    /// Where the host's root filesystem is seen (`--path.rootfs`): mountpoints are statted under it.
    rootfs: PathBuf,
    statvfs: Statvfs,
    /// Mountpoints whose statvfs has been called and has not returned yet. Each holds the condition
    /// that logs when the mount became stuck and when its call finally returned.
    pending: Arc<Mutex<HashMap<String, Arc<Condition>>>>,
}

impl Filesystem {
    pub fn new(procfs: ProcFs, rootfs: PathBuf) -> Filesystem {
        Filesystem::with_statvfs(procfs, rootfs, proc::statvfs)
    }

    pub fn with_statvfs(procfs: ProcFs, rootfs: PathBuf, statvfs: Statvfs) -> Filesystem {
        Filesystem {
            procfs,
            rootfs,
            statvfs,
            pending: Arc::default(),
        }
    }

    /// Runs on a helper thread; returns within [`MOUNT_TIMEOUT`] (or half the time left before
    /// `deadline`, when that is shorter) whatever the mounts do.
    pub fn collect(&self, deadline: Instant) -> anyhow::Result<MetricSet> {
        // PID 1's mounts are the host's even when this process runs in its own mount namespace.
        let text = self
            .procfs
            .read("1/mounts")
            .or_else(|_| self.procfs.read("mounts"))?;
        let mut seen = std::collections::HashSet::new();
        let mounts: Vec<proc::Mount> = proc::parse_mounts(&text)
            .into_iter()
            .filter(|m| is_real_filesystem(m) && seen.insert(m.mountpoint.clone()))
            .collect();
        let wait_until = Instant::now()
            + MOUNT_TIMEOUT.min(deadline.saturating_duration_since(Instant::now()) / 2);
        let sizes = self.measure(&mounts, wait_until);
        let mut out = MetricSet::default();
        for (mount, size) in mounts.iter().zip(sizes) {
            let labels = vec![
                ("mountpoint", mount.mountpoint.clone().into()),
                ("device", mount.device.clone().into()),
                ("fstype", mount.fstype.clone().into()),
            ];
            out.gauge(
                "stack_host_filesystem_stuck",
                "1 if statvfs of this mount did not return within 1 s (a hung network or FUSE \
                 mount): its size and avail are left out until the call returns; 0 otherwise.",
                labels.clone(),
                f64::from(matches!(size, Size::Stuck)),
            );
            out.gauge(
                "stack_host_filesystem_device_error",
                "1 if statvfs of this mount failed (refused, gone, not under --path.rootfs): its size \
                 and avail are left out rather than shown as 0; 0 otherwise.",
                labels.clone(),
                f64::from(matches!(size, Size::Failed)),
            );
            // Known from the mount table even when statvfs hangs or fails.
            let read_only = mount.read_only || matches!(size, Size::Measured(s) if s.read_only);
            out.gauge(
                "stack_host_filesystem_readonly",
                "1 if the filesystem refuses writes: mounted ro, or statvfs says ST_RDONLY (ext4 \
                 remounted read-only after an I/O error); 0 otherwise.",
                labels.clone(),
                f64::from(read_only),
            );
            let Size::Measured(space) = size else {
                continue;
            };
            let figures = [
                (
                    "stack_host_filesystem_size_bytes",
                    "Size of the filesystem.",
                    space.size,
                ),
                (
                    "stack_host_filesystem_free_bytes",
                    "Free space on the filesystem, the blocks reserved for root included.",
                    space.free,
                ),
                (
                    "stack_host_filesystem_avail_bytes",
                    "Space on the filesystem available to unprivileged users.",
                    space.avail,
                ),
                (
                    "stack_host_filesystem_files",
                    "Inodes of the filesystem (statvfs f_files); 0 where it has no fixed number \
                     (btrfs).",
                    space.files,
                ),
                (
                    "stack_host_filesystem_files_free",
                    "Free inodes of the filesystem (statvfs f_ffree).",
                    space.files_free,
                ),
            ];
            for (name, help, bytes) in figures {
                out.gauge(name, help, labels.clone(), bytes as f64);
            }
        }
        Ok(out)
    }

    /// Each mount's size: a mount whose previous call has not returned is not called again, and
    /// one that does not answer by `wait_until` is left stuck. The calls run one after another on
    /// a lane of helper threads: a hung one holds its own thread, and the mounts behind it go on
    /// on another after [`MOUNT_STALL`].
    fn measure(&self, mounts: &[proc::Mount], wait_until: Instant) -> Vec<Size> {
        let mut sizes: Vec<Size> = mounts.iter().map(|_| Size::Stuck).collect();
        let (mut calls, mut call_of) = (Vec::new(), Vec::new());
        for (index, mount) in mounts.iter().enumerate() {
            if !self.is_pending(&mount.mountpoint) {
                calls.push(self.statvfs_call(mount));
                call_of.push(index);
            } // else still stuck from an earlier scrape
        }
        let ended = Lane::start("statvfs calls", calls, MOUNT_STALL).wait_until(wait_until);
        for (index, ended) in call_of.into_iter().zip(ended) {
            sizes[index] = match ended {
                Ended::Done(Ok(space), _) => Size::Measured(space),
                Ended::Done(Err(e), _) => {
                    crate::warn_throttled!(
                        "filesystem_statvfs_failed",
                        "statvfs {} failed ({e}): its size is left out and \
                         stack_host_filesystem_device_error is 1",
                        mounts[index].mountpoint
                    );
                    Size::Failed
                }
                Ended::Panicked => Size::Failed,
                Ended::NotYet => Size::Stuck,
            };
        }
        for (mount, size) in mounts.iter().zip(&sizes) {
            if matches!(size, Size::Stuck) {
                self.report_stuck(&mount.mountpoint);
            }
        }
        sizes
    }

    fn is_pending(&self, mountpoint: &str) -> bool {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.contains_key(mountpoint)
    }

    /// The statvfs of `mount`, pending from when it starts until it returns.
    fn statvfs_call(&self, mount: &proc::Mount) -> Job<io::Result<Space>> {
        let mountpoint = mount.mountpoint.clone();
        let path = self.rootfs.join(mountpoint.trim_start_matches('/'));
        let (statvfs, pending) = (self.statvfs, self.pending.clone());
        Box::new(move || {
            let condition = Arc::new(Condition::default());
            let lock = || pending.lock().unwrap_or_else(|e| e.into_inner());
            lock().insert(mountpoint.clone(), condition.clone());
            let started = Instant::now();
            let result = statvfs(&path);
            lock().remove(&mountpoint);
            condition.set(&stuck_subject(&mountpoint), None);
            if started.elapsed() > MOUNT_TIMEOUT {
                log::debug!(
                    "statvfs of {mountpoint} returned after {:?}",
                    started.elapsed()
                );
            }
            result
        })
    }

    /// Logs (once, until its call returns) a mount whose statvfs is still pending.
    fn report_stuck(&self, mountpoint: &str) {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(condition) = pending.get(mountpoint) {
            condition.set(
                &stuck_subject(mountpoint),
                Some(format!(
                    "statvfs did not return within {MOUNT_TIMEOUT:?} (a hung network or FUSE \
                     mount?); its size is left out and stack_host_filesystem_stuck is 1 until \
                     the call returns"
                )),
            );
        }
    }
}

fn stuck_subject(mountpoint: &str) -> String {
    format!("filesystem {mountpoint}")
}

/// What one mount's statvfs gave in this scrape.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Size {
    Measured(Space),
    /// Refused or failed (logged at debug level): the mount is left out, as node_exporter does.
    Failed,
    /// Not returned in time, now or in an earlier scrape.
    Stuck,
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
    use std::sync::atomic::{AtomicBool, Ordering};

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

    fn fixture_procfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(format!("{FIXTURES}/mounts"), dir.path().join("mounts")).unwrap();
        dir
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[test]
    fn measures_real_mounts_under_rootfs() {
        // The fixture's "/" is statted for real; its "/mnt/my disk" does not exist here and is
        // left out quietly, not reported stuck.
        let dir = fixture_procfs();
        let filesystem = Filesystem::new(ProcFs::new(dir.path()), PathBuf::from("/"));
        let set = filesystem.collect(soon()).unwrap();
        assert!(set
            .value("stack_host_filesystem_size_bytes", &[("mountpoint", "/")])
            .is_some_and(|v| v > 0.0));
        assert_eq!(
            set.value(
                "stack_host_filesystem_stuck",
                &[("mountpoint", "/mnt/my disk")]
            ),
            Some(0.0)
        );
        assert_eq!(
            set.value(
                "stack_host_filesystem_size_bytes",
                &[("mountpoint", "/mnt/my disk")]
            ),
            None
        );
    }

    /// While set, statvfs of "/run" (under rootfs "/") hangs as on a dead NFS server.
    static RUN_HANGS: AtomicBool = AtomicBool::new(true);

    fn hanging_statvfs(path: &Path) -> io::Result<Space> {
        if path == Path::new("/run") {
            while RUN_HANGS.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(Space {
            size: 1000,
            free: 450,
            avail: 400,
            files: 100,
            files_free: 60,
            // "/" refuses writes though the fixture mounts it rw (an ext4 remounted read-only
            // after an I/O error, which statvfs reports at once).
            read_only: path == Path::new("/"),
        })
    }

    #[test]
    fn a_stuck_mount_is_skipped_until_its_call_returns() {
        let dir = fixture_procfs();
        let filesystem =
            Filesystem::with_statvfs(ProcFs::new(dir.path()), PathBuf::from("/"), hanging_statvfs);
        let run = [("mountpoint", "/run")];
        let root = [("mountpoint", "/")];
        for scrape in 0..2 {
            let started = Instant::now();
            let set = filesystem.collect(soon()).unwrap();
            assert!(started.elapsed() < MOUNT_TIMEOUT + Duration::from_millis(500));
            assert_eq!(set.value("stack_host_filesystem_stuck", &run), Some(1.0));
            assert_eq!(set.value("stack_host_filesystem_size_bytes", &run), None);
            assert_eq!(set.value("stack_host_filesystem_stuck", &root), Some(0.0));
            assert_eq!(
                set.value("stack_host_filesystem_size_bytes", &root),
                Some(1000.0)
            );
            if scrape == 1 {
                // Skipped, not called again: the later scrape does not wait for it.
                assert!(
                    started.elapsed() < MOUNT_TIMEOUT / 2,
                    "{:?}",
                    started.elapsed()
                );
            }
        }
        RUN_HANGS.store(false, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(5);
        while filesystem.pending.lock().unwrap().contains_key("/run") {
            assert!(Instant::now() < deadline, "the hung call never returned");
            std::thread::sleep(Duration::from_millis(10));
        }
        let set = filesystem.collect(soon()).unwrap();
        assert_eq!(set.value("stack_host_filesystem_stuck", &run), Some(0.0));
        assert_eq!(
            set.value("stack_host_filesystem_avail_bytes", &run),
            Some(400.0)
        );
    }

    #[test]
    fn inodes_and_read_only_state_come_from_statvfs_and_the_mount_table() {
        let dir = fixture_procfs();
        std::fs::write(
            dir.path().join("mounts"),
            "/dev/vda1 / ext4 rw,relatime 0 0\n/dev/vda15 /boot/efi vfat ro,relatime 0 0\n\
             tmpfs /run tmpfs rw,nosuid 0 0\n",
        )
        .unwrap();
        let filesystem =
            Filesystem::with_statvfs(ProcFs::new(dir.path()), PathBuf::from("/"), |path| {
                let mut space = hanging_statvfs(Path::new("/"))?;
                space.read_only = path == Path::new("/");
                Ok(space)
            });
        let set = filesystem.collect(soon()).unwrap();
        let readonly = |mountpoint| {
            set.value(
                "stack_host_filesystem_readonly",
                &[("mountpoint", mountpoint)],
            )
        };
        assert_eq!(readonly("/"), Some(1.0), "statvfs says ST_RDONLY");
        assert_eq!(readonly("/boot/efi"), Some(1.0), "mounted ro");
        assert_eq!(readonly("/run"), Some(0.0));
        let root = [("mountpoint", "/")];
        assert_eq!(set.value("stack_host_filesystem_files", &root), Some(100.0));
        assert_eq!(
            set.value("stack_host_filesystem_files_free", &root),
            Some(60.0)
        );
    }
}
