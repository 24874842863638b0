//! The collectors. Each file is one collector with its own config, code and tests; this enum lists
//! them, and `scrape.rs` runs the enabled ones concurrently, each under the scrape's deadline.

pub mod exporter;
pub mod host;
pub mod nginx;
pub mod services;
pub mod sockets;
pub mod storage;

use std::sync::Arc;

use crate::metrics::MetricSet;

#[derive(Debug)]
pub enum Collector {
    Host(host::Host),
    Services(services::Services),
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
            Collector::Nginx(_) => "nginx",
            Collector::Sockets(_) => "sockets",
            Collector::Storage(_) => "storage",
        }
    }

    /// Gathers this collector's metrics. Readers of /proc block on the kernel, so they run on the
    /// blocking pool and never stall the scrapes of network collectors.
    pub async fn collect(self: Arc<Self>) -> anyhow::Result<MetricSet> {
        match &*self {
            Collector::Nginx(c) => c.collect().await,
            Collector::Host(_)
            | Collector::Services(_)
            | Collector::Sockets(_)
            | Collector::Storage(_) => {
                tokio::task::spawn_blocking(move || match &*self {
                    Collector::Host(c) => c.collect(),
                    Collector::Services(c) => c.collect(),
                    Collector::Sockets(c) => c.collect(),
                    Collector::Storage(c) => c.collect(),
                    Collector::Nginx(_) => unreachable!("runs on its own above"),
                })
                .await?
            }
        }
    }
}
