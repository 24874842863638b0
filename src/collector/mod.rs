//! The collectors. Each file is one collector with its own config, code and tests; this enum lists
//! them, and `scrape.rs` runs the enabled ones concurrently, each under the scrape's deadline.

pub mod exporter;
pub mod host;
pub mod mysql;
pub mod nginx;
pub mod postgres;
pub mod redis;
pub mod services;
pub mod sockets;
pub mod storage;
pub mod target;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use crate::metrics::MetricSet;

#[derive(Debug)]
pub enum Collector {
    Host(host::Host),
    Services(Arc<services::Services>),
    Mysql(mysql::Mysql),
    Postgres(postgres::Postgres),
    Redis(redis::Redis),
    Nginx(nginx::Nginx),
    Sockets(sockets::Sockets),
    Storage(storage::Storage),
}

impl Collector {
    /// The `collector` label of its duration and success metrics, and the name of its flags.
    pub fn name(&self) -> &'static str {
        match self {
            Collector::Host(_) => "host",
            Collector::Services(_) => "services",
            Collector::Mysql(_) => "mysql",
            Collector::Postgres(_) => "postgres",
            Collector::Redis(_) => "redis",
            Collector::Nginx(_) => "nginx",
            Collector::Sockets(_) => "sockets",
            Collector::Storage(_) => "storage",
        }
    }

    /// Gathers this collector's metrics. Readers of /proc and of watched paths (the access log,
    /// storage directories) block on the kernel, so they run on the blocking pool and never stall
    /// the scrapes of network collectors. Network collectors bound
    /// each target's work by `deadline` (the scrape's end), so a slow server gives its own `up 0`
    /// in time instead of the whole collector being cut off.
    ///
    /// `run` is held until the work really ends, which for the blocking readers can be after the
    /// scrape stopped waiting (a timeout cannot stop a thread stuck in the kernel): the next
    /// scrapes skip the collector and say so until it has, instead of stacking a stuck thread
    /// each (a hung NFS mount under the access log must not use up the blocking pool).
    pub async fn collect(
        self: Arc<Self>,
        deadline: Instant,
        run: RunGuard,
    ) -> anyhow::Result<MetricSet> {
        // A network collector's `run` ends with this future, finished or dropped at the deadline.
        match &*self {
            Collector::Mysql(c) => c.collect(deadline).await,
            Collector::Postgres(c) => c.collect(deadline).await,
            Collector::Redis(c) => c.collect(deadline).await,
            Collector::Host(_)
            | Collector::Services(_)
            | Collector::Sockets(_)
            | Collector::Nginx(_)
            | Collector::Storage(_) => {
                tokio::task::spawn_blocking(move || {
                    let _run = run; // ends with the work itself, not with the scrape's wait
                    match &*self {
                        Collector::Host(c) => c.collect(),
                        Collector::Services(c) => c.collect(deadline),
                        Collector::Sockets(c) => c.collect(deadline),
                        Collector::Nginx(c) => c.collect(deadline.into_std()),
                        Collector::Storage(c) => c.collect(),
                        _ => unreachable!("network collectors run above"),
                    }
                })
                .await?
            }
        }
    }
}

/// Whether a collector's previous run is still under way: a run that never ends (statvfs on a hung
/// NFS mount, a read of a stuck /proc file) is not joined by another every scrape, which would
/// use up the blocking threads one scrape at a time.
#[derive(Debug, Default)]
pub struct Running(AtomicBool);

impl Running {
    /// A guard for a new run, or `None` while the previous one has not ended.
    pub fn start(self: &Arc<Self>) -> Option<RunGuard> {
        (!self.0.swap(true, Ordering::AcqRel)).then(|| RunGuard(self.clone()))
    }
}

/// Marks its collector's run as ended when dropped.
#[derive(Debug)]
pub struct RunGuard(Arc<Running>);

impl Drop for RunGuard {
    fn drop(&mut self) {
        (self.0).0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_has_not_ended_blocks_the_next() {
        let running = Arc::new(Running::default());
        let first = running.start().expect("nothing runs yet");
        assert!(
            running.start().is_none(),
            "the first run is still under way"
        );
        drop(first);
        assert!(running.start().is_some(), "the first run ended");
    }
}
