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

    /// Gathers this collector's metrics. Readers of /proc block on the kernel, so they run on the
    /// blocking pool and never stall the scrapes of network collectors. Network collectors bound
    /// each target's work by `deadline` (the scrape's end), so a slow server gives its own `up 0`
    /// in time instead of the whole collector being cut off.
    pub async fn collect(self: Arc<Self>, deadline: Instant) -> anyhow::Result<MetricSet> {
        match &*self {
            Collector::Mysql(c) => c.collect(deadline).await,
            Collector::Postgres(c) => c.collect(deadline).await,
            Collector::Redis(c) => c.collect(deadline).await,
            Collector::Nginx(c) => c.collect().await,
            Collector::Host(_)
            | Collector::Services(_)
            | Collector::Sockets(_)
            | Collector::Storage(_) => {
                tokio::task::spawn_blocking(move || match &*self {
                    Collector::Host(c) => c.collect(),
                    Collector::Services(c) => c.collect(deadline),
                    Collector::Sockets(c) => c.collect(deadline),
                    Collector::Storage(c) => c.collect(),
                    _ => unreachable!("network collectors run above"),
                })
                .await?
            }
        }
    }
}
