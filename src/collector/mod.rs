//! The collectors. Each file is one collector with its own config, code and tests; [`COLLECTORS`]
//! registers them (name, when it is on, what it collects, how it is built) and drives the
//! `--[no-]collector.NAME` flags, the landing page and the README's list. Each line builds the
//! collector's [`Work`]: blocking work (/proc, watched paths) for helper threads, or network work
//! bounded by the deadline; `scrape.rs` runs the enabled ones concurrently under the scrape's
//! deadline.
//!
//! Adding a collector: its file and one line in [`COLLECTORS`]; then `STACK_UPDATE_README=1 cargo
//! test --test cli readme` rewrites the README's list.

pub mod exporter;
pub mod filesystem;
pub mod host;
pub mod mysql;
pub mod nginx;
mod platform;
#[cfg(any(not(target_os = "linux"), test))]
pub mod portable;
pub mod postgres;
pub mod redis;
pub mod services;
#[cfg(target_os = "linux")]
pub mod sockets;
pub mod storage;
pub mod target;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
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
    /// Builds its work; `None` when it has nothing to watch (it logs why).
    pub build: fn(&mut Context) -> Option<Work>,
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
    Spec { name: "host", help: "CPU time by mode and per core, memory, swap and swap traffic, OOM kills, pressure stall information, load, boot time, disk and network I/O, TCP retransmits and listen-queue overflows", enabled: Enabled::Always, build: platform::host },
    Spec { name: "filesystem", help: "size, space available, inodes and read-only state of each real mount; a mount whose statvfs hangs is reported stuck and skipped", enabled: Enabled::Always, build: platform::filesystem },
    Spec { name: "nginx", help: "requests, latency and statuses from the access log, stub_status", enabled: Enabled::WhenConfigured("[nginx] or STACK_NGINX_ACCESS_LOG is set"), build: nginx },
    Spec { name: "storage", help: "size, files and newest file of backup and log directories", enabled: Enabled::WhenConfigured("[storage] directories, STACK_BACKUP_DIR or STACK_LOG_DIR are set"), build: storage },
    Spec { name: "sockets", help: "listen queues, connections and exposure per service", enabled: Enabled::Always, build: platform::sockets },
    Spec { name: "services", help: "each service's processes, memory (RSS, PSS), CPU against the plan's budgets", enabled: Enabled::Always, build: platform::services },
    Spec { name: "mysql", help: "MySQL/MariaDB connections and refusals, InnoDB, statements, sizes", enabled: Enabled::WhenConfigured("[[mysql]] or STACK_MYSQL_URL is set"), build: |c| target::collector::<mysql::Session>(Kind::Mysql, std::mem::take(&mut c.config.mysql)) },
    Spec { name: "postgres", help: "PostgreSQL connections, transactions, database sizes", enabled: Enabled::WhenConfigured("[[postgres]] or STACK_POSTGRES_URL is set"), build: |c| target::collector::<postgres::Session>(Kind::Postgres, std::mem::take(&mut c.config.postgres)) },
    Spec { name: "redis", help: "Redis memory, clients, persistence, keyspace", enabled: Enabled::WhenConfigured("[[redis]] or STACK_REDIS_URL is set"), build: |c| target::collector::<redis::Session>(Kind::Redis, std::mem::take(&mut c.config.redis)) },
];

/// `--collector.sockets.connections-max-age`'s default: PSS's.
pub const DEFAULT_CONNECTIONS_MAX_AGE: Duration = Duration::from_secs(60);

/// What the constructors may use: the flags and config they read, and the one matcher the
/// services and sockets collectors share (the same instances, each process matched once).
pub struct Context {
    pub procfs: ProcFs,
    /// `--path.rootfs`: where the host's mountpoints are seen.
    pub rootfs: PathBuf,
    /// `--path.sysfs`: where the services' memory cgroups are read (OOM kills).
    pub sysfs: PathBuf,
    /// `--collector.services.pss-max-age`.
    pub pss_max_age: Duration,
    /// `--collector.sockets.connections-max-age`.
    pub connections_max_age: Duration,
    pub config: Sections,
    /// Reads an environment variable (`std::env::var` outside tests).
    pub env: fn(&str) -> Option<String>,
    /// The /proc services matcher, shared by the services and sockets collectors.
    #[cfg(target_os = "linux")]
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
            sysfs: PathBuf::from("/sys"),
            pss_max_age,
            connections_max_age: DEFAULT_CONNECTIONS_MAX_AGE,
            config,
            env,
            #[cfg(target_os = "linux")]
            services: None,
        }
    }
}

fn nginx(c: &mut Context) -> Option<Work> {
    let nginx = nginx::Nginx::new(&c.config.nginx, c.env)?;
    log::info!("nginx collector: {}", nginx.describe());
    Some(Work::blocking(nginx, |n, d| n.collect(d.into_std())))
}

fn storage(c: &mut Context) -> Option<Work> {
    let storage = storage::Storage::new(&c.config.storage, c.env)?;
    log::info!("storage collector: {}", storage.describe());
    Some(Work::blocking(storage, |s, _| s.collect()))
}

/// Builds the registered collectors that `enabled` lets run, in the table's order.
pub fn build(mut context: Context, enabled: impl Fn(&Spec) -> bool) -> Vec<Collector> {
    COLLECTORS
        .iter()
        .filter(|spec| enabled(spec))
        .filter_map(|spec| {
            let work = (spec.build)(&mut context)?;
            Some(Collector {
                name: spec.name,
                work,
            })
        })
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

/// A built collector: the name of its [`Spec`] and its work.
pub struct Collector {
    name: &'static str,
    work: Work,
}

/// How a collector gathers its metrics, given the scrape's deadline.
pub enum Work {
    /// Reads /proc or watched paths (the access log, storage directories, mounts), which block in
    /// the kernel: runs on helper threads (`crate::lane`), never on the threads that serve the
    /// scrapes.
    Blocking(Arc<BlockingFn>),
    /// Talks to servers, each target bounded by the deadline so a slow one gives its own `up 0`
    /// in time: runs as a task.
    Network(Box<NetworkFn>),
}

type BlockingFn = dyn Fn(Instant) -> anyhow::Result<MetricSet> + Send + Sync;
type NetworkFn = dyn Fn(Instant) -> BoxFuture<'static, anyhow::Result<MetricSet>> + Send + Sync;

impl Work {
    /// Blocking work: `collect` called with the collector and the deadline.
    pub fn blocking<C: Send + Sync + 'static>(
        collector: C,
        collect: fn(&C, Instant) -> anyhow::Result<MetricSet>,
    ) -> Work {
        Work::Blocking(Arc::new(move |deadline| collect(&collector, deadline)))
    }

    /// Network work: `collect` returns the future of one round of the collector's targets.
    pub fn network<C, F>(collector: C, collect: fn(Arc<C>, Instant) -> F) -> Work
    where
        C: Send + Sync + 'static,
        F: std::future::Future<Output = anyhow::Result<MetricSet>> + Send + 'static,
    {
        let collector = Arc::new(collector);
        Work::Network(Box::new(move |deadline| {
            Box::pin(collect(collector.clone(), deadline))
        }))
    }
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("name", &self.name)
            .finish()
    }
}

impl Collector {
    /// A collector that does `work` under `name` (tests build their own).
    #[cfg(test)]
    pub fn new(name: &'static str, work: Work) -> Collector {
        Collector { name, work }
    }

    /// Its name in [`COLLECTORS`].
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its work for this scrape. `run` is held until the work really ends, which for blocking work
    /// can be after the scrape stopped waiting (a timeout cannot stop a thread stuck in the
    /// kernel): the next scrapes skip the collector and say so until it has, instead of stacking a
    /// stuck thread each (a hung NFS mount under the access log must not use up the threads).
    /// Network work ends, finished or dropped at the deadline, with its future.
    pub fn start(&self, deadline: Instant, run: RunGuard) -> Started {
        match &self.work {
            Work::Network(collect) => {
                let collect = collect(deadline);
                Started::Future(Box::pin(async move {
                    let _run = run;
                    collect.await
                }))
            }
            Work::Blocking(collect) => {
                let collect = collect.clone();
                Started::Job(Box::new(move || {
                    let _run = run; // ends with the work itself, not with the scrape's wait
                    collect(deadline)
                }))
            }
        }
    }
}

/// A collector's work for one scrape: a job for the scrape's lane of blocking work
/// (`crate::lane`), or a future to run as a task.
pub enum Started {
    Job(crate::lane::Job<anyhow::Result<MetricSet>>),
    Future(BoxFuture<'static, anyhow::Result<MetricSet>>),
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
