//! The collectors. Each file is one collector with its own config, code and tests; [`COLLECTORS`]
//! registers them (name, when it is on, what it collects, how it is built) and drives the
//! `--[no-]collector.NAME` flags, the landing page and the README's list. The [`Collector`] enum
//! names them for `scrape.rs`, which runs the enabled ones concurrently under the scrape's deadline.
//!
//! Adding a collector: its file, a variant below with its arms in `name()` and `collect()` (the
//! compiler lists them), and one line in [`COLLECTORS`]; then `STACK_UPDATE_README=1 cargo test
//! --test cli readme` rewrites the README's list.

pub mod exporter;
pub mod filesystem;
pub mod host;
pub mod mysql;
pub mod nginx;
pub mod postgres;
pub mod redis;
pub mod services;
pub mod sockets;
pub mod storage;
pub mod target;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::MetricSet;
use crate::proc::ProcFs;
use target::Kind;

/// The configuration in force: every collector's section, as `config` assembles them from the
/// layers. Defined here, beside the sections' owners, so that no collector needs `config`.
#[derive(Debug, Clone)]
pub struct Sections {
    pub profile: String,
    pub plan: services::PlanConfig,
    pub services: Vec<services::Service>,
    /// `[[mysql]]`, `[[postgres]]`, `[[redis]]` targets (see collector/target.rs).
    pub mysql: Vec<target::Target>,
    pub postgres: Vec<target::Target>,
    pub redis: Vec<target::Target>,
    /// `[nginx]`: access log and stub_status (collector/nginx.rs).
    pub nginx: nginx::NginxConfig,
    /// `[storage]`: directories to size (collector/storage.rs).
    pub storage: storage::StorageConfig,
}

impl target::TargetLists for Sections {
    fn targets_mut(&mut self, kind: Kind) -> &mut Vec<target::Target> {
        match kind {
            Kind::Mysql => &mut self.mysql,
            Kind::Postgres => &mut self.postgres,
            Kind::Redis => &mut self.redis,
        }
    }
}

/// One registered collector.
#[derive(Debug)]
pub struct Spec {
    /// The `collector` label of its duration and success metrics, and the name in its flags.
    pub name: &'static str,
    /// What it publishes: `--help`, the landing page and the README say it.
    pub help: &'static str,
    pub enabled: Enabled,
    /// Builds it; `None` when it has nothing to watch (it logs why).
    pub build: fn(&mut Context) -> Option<Collector>,
}

/// When a collector runs, unless `--no-collector.NAME` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enabled {
    Always,
    /// Only when what it watches is configured; the text says what that is.
    WhenConfigured(&'static str),
}

#[rustfmt::skip]
pub const COLLECTORS: &[Spec] = &[
    Spec { name: "host", help: "CPU time by mode, memory, swap, load, boot time", enabled: Enabled::Always, build: |c| Some(Collector::Host(host::Host::new(c.procfs.clone()))) },
    Spec { name: "filesystem", help: "size and space available of each real mount; a mount whose statvfs hangs is reported stuck and skipped", enabled: Enabled::Always, build: |c| Some(Collector::Filesystem(filesystem::Filesystem::new(c.procfs.clone(), c.rootfs.clone()))) },
    Spec { name: "nginx", help: "requests, latency and statuses from the access log, stub_status", enabled: Enabled::WhenConfigured("[nginx] or STACK_NGINX_ACCESS_LOG is set"), build: nginx },
    Spec { name: "storage", help: "size, files and newest file of backup and log directories", enabled: Enabled::WhenConfigured("[storage] directories, STACK_BACKUP_DIR or STACK_LOG_DIR are set"), build: storage },
    Spec { name: "sockets", help: "listen queues, connections and exposure per service", enabled: Enabled::Always, build: |c| Some(Collector::Sockets(sockets::Sockets::new(c.procfs.clone(), c.services()))) },
    Spec { name: "services", help: "each service's processes, memory (RSS, PSS), CPU against the plan's budgets", enabled: Enabled::Always, build: |c| Some(Collector::Services(c.services())) },
    Spec { name: "mysql", help: "MySQL/MariaDB status, connections, replication", enabled: Enabled::WhenConfigured("[[mysql]] or STACK_MYSQL_URL is set"), build: |c| target::collector(Kind::Mysql, std::mem::take(&mut c.config.mysql)) },
    Spec { name: "postgres", help: "PostgreSQL connections, transactions, database sizes", enabled: Enabled::WhenConfigured("[[postgres]] or STACK_POSTGRES_URL is set"), build: |c| target::collector(Kind::Postgres, std::mem::take(&mut c.config.postgres)) },
    Spec { name: "redis", help: "Redis memory, clients, persistence, keyspace", enabled: Enabled::WhenConfigured("[[redis]] or STACK_REDIS_URL is set"), build: |c| target::collector(Kind::Redis, std::mem::take(&mut c.config.redis)) },
];

/// What the constructors may use: the flags and config they read, and the one matcher the
/// services and sockets collectors share (the same instances, each process matched once).
pub struct Context {
    pub procfs: ProcFs,
    /// `--path.rootfs`: where the host's mountpoints are seen.
    pub rootfs: PathBuf,
    /// `--collector.services.pss-max-age`.
    pub pss_max_age: Duration,
    pub config: Sections,
    /// Reads an environment variable (`std::env::var` outside tests).
    pub env: fn(&str) -> Option<String>,
    services: Option<Arc<services::Services>>,
}

impl Context {
    pub fn new(
        procfs: ProcFs,
        rootfs: PathBuf,
        pss_max_age: Duration,
        config: Sections,
        env: fn(&str) -> Option<String>,
    ) -> Context {
        Context {
            procfs,
            rootfs,
            pss_max_age,
            config,
            env,
            services: None,
        }
    }

    /// The matcher, built by the first collector that asks for it.
    fn services(&mut self) -> Arc<services::Services> {
        let Context {
            procfs,
            pss_max_age,
            config,
            services,
            ..
        } = self;
        services
            .get_or_insert_with(|| {
                Arc::new(services::Services::new(
                    procfs.clone(),
                    config.profile.clone(),
                    config.plan.clone(),
                    config.services.clone(),
                    *pss_max_age,
                ))
            })
            .clone()
    }
}

fn nginx(c: &mut Context) -> Option<Collector> {
    let nginx = nginx::Nginx::new(&c.config.nginx, c.env)?;
    log::info!("nginx collector: {}", nginx.describe());
    Some(Collector::Nginx(nginx))
}

fn storage(c: &mut Context) -> Option<Collector> {
    let storage = storage::Storage::new(&c.config.storage, c.env)?;
    log::info!("storage collector: {}", storage.describe());
    Some(Collector::Storage(storage))
}

/// Builds the registered collectors that `enabled` lets run, in the table's order.
pub fn build(mut context: Context, enabled: impl Fn(&Spec) -> bool) -> Vec<Collector> {
    COLLECTORS
        .iter()
        .filter(|spec| enabled(spec))
        .filter_map(|spec| (spec.build)(&mut context))
        .collect()
}

/// The README's collector list, one row per registered collector.
pub fn markdown_table() -> String {
    let mut table = String::from("| collector | on | what it publishes |\n|---|---|---|\n");
    for spec in COLLECTORS {
        let on = match spec.enabled {
            Enabled::Always => "by default".to_string(),
            Enabled::WhenConfigured(when) => format!("when {when}"),
        };
        table.push_str(&format!("| `{}` | {on} | {} |\n", spec.name, spec.help));
    }
    table
}

#[derive(Debug)]
pub enum Collector {
    Host(host::Host),
    Filesystem(filesystem::Filesystem),
    Services(Arc<services::Services>),
    Mysql(mysql::Mysql),
    Postgres(postgres::Postgres),
    Redis(redis::Redis),
    Nginx(nginx::Nginx),
    Sockets(sockets::Sockets),
    Storage(storage::Storage),
}

impl Collector {
    /// Its name in [`COLLECTORS`].
    pub fn name(&self) -> &'static str {
        match self {
            Collector::Host(_) => "host",
            Collector::Filesystem(_) => "filesystem",
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
            | Collector::Filesystem(_)
            | Collector::Services(_)
            | Collector::Sockets(_)
            | Collector::Nginx(_)
            | Collector::Storage(_) => {
                tokio::task::spawn_blocking(move || {
                    let _run = run; // ends with the work itself, not with the scrape's wait
                    match &*self {
                        Collector::Host(c) => c.collect(),
                        Collector::Filesystem(c) => c.collect(deadline.into_std()),
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
    fn every_registered_collector_is_built_under_its_own_name() {
        let names: Vec<&str> = COLLECTORS.iter().map(|s| s.name).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "two collectors share a name");
        // Everything configured through the environment: an access log, a backup directory and
        // one target of each database kind.
        let env = |key: &str| {
            let value = match key {
                "STACK_NGINX_ACCESS_LOG" => "/nonexistent/access.log",
                "STACK_BACKUP_DIR" => "/nonexistent/backups",
                _ => return None,
            };
            Some(value.to_string())
        };
        let mut config = crate::config::load(None).unwrap();
        target::add_env_targets(&mut config, |key| {
            let value = match key {
                "STACK_MYSQL_URL" => "mysql://u@127.0.0.1:1/",
                "STACK_POSTGRES_URL" => "postgres://u@127.0.0.1:1/db",
                "STACK_REDIS_URL" => "redis://127.0.0.1:1",
                _ => return None,
            };
            Some(value.to_string())
        })
        .unwrap();
        let context = Context::new(
            ProcFs::new("/proc"),
            PathBuf::from("/"),
            Duration::ZERO,
            config,
            env,
        );
        let built: Vec<&str> = build(context, |_| true).iter().map(|c| c.name()).collect();
        assert_eq!(built, names);
        let context = Context::new(
            ProcFs::new("/proc"),
            PathBuf::from("/"),
            Duration::ZERO,
            crate::config::load(None).unwrap(),
            |_| None,
        );
        let defaults: Vec<&str> = build(context, |s| s.name != "host")
            .iter()
            .map(|c| c.name())
            .collect();
        assert_eq!(defaults, ["filesystem", "sockets", "services"]);
    }

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
