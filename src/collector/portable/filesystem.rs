//! `stack_host_filesystem_*` from sysinfo's disk list: size, space available, read-only state per
//! mount (a drive letter on Windows). Windows reserves no blocks for an administrator, so `free`
//! is the space available; inodes and the stuck-mount guard exist only on Linux.

use std::sync::Mutex;

use sysinfo::{DiskRefreshKind, Disks};

use crate::metrics::MetricSet;

#[derive(Debug)]
pub struct Filesystem {
    disks: Mutex<Option<Disks>>,
}

impl Default for Filesystem {
    fn default() -> Filesystem {
        Filesystem::new()
    }
}

impl Filesystem {
    /// Lists nothing yet: the first scrape does.
    pub fn new() -> Filesystem {
        Filesystem {
            disks: Mutex::new(None),
        }
    }

    pub fn collect(&self) -> anyhow::Result<MetricSet> {
        let mut slot = self.disks.lock().unwrap_or_else(|e| e.into_inner());
        let disks = slot.get_or_insert_with(Disks::new);
        // The list too: a drive plugged in or a share mapped since.
        disks.refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
        let mut out = MetricSet::default();
        for disk in disks.list() {
            let labels = vec![
                (
                    "mountpoint",
                    disk.mount_point().to_string_lossy().into_owned().into(),
                ),
                ("device", disk.name().to_string_lossy().into_owned().into()),
                (
                    "fstype",
                    disk.file_system().to_string_lossy().into_owned().into(),
                ),
            ];
            out.gauge(
                "stack_host_filesystem_readonly",
                "1 if the filesystem refuses writes; 0 otherwise.",
                labels.clone(),
                f64::from(disk.is_read_only()),
            );
            let figures = [
                (
                    "stack_host_filesystem_size_bytes",
                    "Size of the filesystem.",
                    disk.total_space(),
                ),
                (
                    "stack_host_filesystem_free_bytes",
                    "Free space on the filesystem (sysinfo backend: the space available).",
                    disk.available_space(),
                ),
                (
                    "stack_host_filesystem_avail_bytes",
                    "Space on the filesystem available to unprivileged users.",
                    disk.available_space(),
                ),
            ];
            for (name, help, bytes) in figures {
                out.gauge(name, help, labels.clone(), bytes as f64);
            }
        }
        Ok(out)
    }
}
