//! stack_exporter: one Prometheus exporter for a small web stack. Flags follow node_exporter.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

use stack_exporter::collector::sockets::Sockets;
use stack_exporter::collector::{
    self, host::Host, nginx::Nginx, services::Services, storage::Storage, Collector,
};
use stack_exporter::config::{self, parse_duration};
use stack_exporter::proc::ProcFs;
use stack_exporter::{http, logging, scrape};

#[derive(Debug, Parser)]
#[command(
    name = "stack_exporter",
    version,
    about = "Host, services against their planned budgets, databases and Redis: one exporter for a small web stack."
)]
struct Flags {
    /// Address to listen on; ":9488" means every interface.
    #[arg(
        long = "web.listen-address",
        default_value = ":9488",
        value_name = "ADDRESS"
    )]
    listen_address: String,

    /// Path under which to expose metrics.
    #[arg(
        long = "web.telemetry-path",
        default_value = "/metrics",
        value_name = "PATH"
    )]
    telemetry_path: String,

    /// TOML config file: profile, budget and service overrides, database targets. Without it the
    /// built-in vps-2gb profile runs.
    #[arg(long = "config.file", value_name = "FILE")]
    config_file: Option<PathBuf>,

    /// Check the config file, print the resolved services and exit.
    #[arg(long = "config.check")]
    config_check: bool,

    /// procfs mountpoint (the host's /proc when running in a container).
    #[arg(long = "path.procfs", default_value = "/proc", value_name = "PATH")]
    procfs: PathBuf,

    /// sysfs mountpoint. Accepted for node_exporter compatibility; no collector reads sysfs yet.
    #[arg(long = "path.sysfs", default_value = "/sys", value_name = "PATH")]
    sysfs: PathBuf,

    /// Where the host's root filesystem is mounted; filesystem sizes are read under it.
    #[arg(long = "path.rootfs", default_value = "/", value_name = "PATH")]
    rootfs: PathBuf,

    /// Only log messages with this severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    log_level: logging::LevelName,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    log_format: logging::Format,

    /// Longest a scrape may take when the scraper sends no X-Prometheus-Scrape-Timeout-Seconds.
    #[arg(long = "web.max-scrape-timeout", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    max_scrape_timeout: Duration,

    /// Disable the host collector.
    #[arg(long = "no-collector.host")]
    no_host: bool,

    /// Disable the services collector.
    #[arg(long = "no-collector.services")]
    no_services: bool,

    /// Disable the nginx collector (on when [nginx] or STACK_NGINX_ACCESS_LOG is set).
    #[arg(long = "no-collector.nginx")]
    no_nginx: bool,

    /// Disable the sockets collector (listen queues, connections and exposure per service).
    #[arg(long = "no-collector.sockets")]
    no_sockets: bool,

    /// Disable the storage collector (on when [storage] directories, STACK_BACKUP_DIR or
    /// STACK_LOG_DIR are set).
    #[arg(long = "no-collector.storage")]
    no_storage: bool,

    /// How long a process's PSS (from smaps_rollup, costly for big processes) is reused before it
    /// is read again; 0s reads it on every scrape. RSS and CPU are always read fresh.
    #[arg(long = "collector.services.pss-max-age", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pss_max_age: Duration,
}

fn main() {
    // glibc gives every thread that allocates its own malloc arena; a scrape touches several
    // threads, and their arenas would hold megabytes of RSS for a few kilobytes of live data.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let flags = Flags::parse();
    logging::init(flags.log_level, flags.log_format);
    collector::exporter::install_panic_hook();
    if let Err(e) = run(flags) {
        log::error!("{e:#}");
        std::process::exit(1);
    }
}

fn run(flags: Flags) -> anyhow::Result<()> {
    let mut config = config::load(flags.config_file.as_deref())?;
    collector::target::add_env_targets(&mut config, |var| std::env::var(var).ok())
        .map_err(anyhow::Error::msg)?;
    if flags.config_check {
        print_config(&config);
        return Ok(());
    }
    let collectors = build_collectors(&flags, config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = http::bind(&flags.listen_address).await?;
        log::info!(
            "listening on {} ({}); collectors: {}",
            listener.local_addr()?,
            flags.telemetry_path,
            collectors
                .iter()
                .map(|c| c.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let server = Arc::new(http::Server {
            scraper: scrape::Scraper::new(collectors),
            telemetry_path: flags.telemetry_path.clone(),
            default_timeout: flags.max_scrape_timeout,
        });
        tokio::select! {
            result = http::serve(server, listener) => result,
            _ = shutdown_signal() => {
                log::info!("shutting down");
                Ok(())
            }
        }
    })
}

fn build_collectors(flags: &Flags, config: config::Config) -> Vec<Collector> {
    let procfs = ProcFs::new(&flags.procfs);
    let mut collectors = Vec::new();
    if !flags.no_host {
        collectors.push(Collector::Host(Host::new(
            procfs.clone(),
            flags.rootfs.clone(),
        )));
    }
    let env = |key: &str| std::env::var(key).ok();
    if !flags.no_nginx {
        if let Some(nginx) = Nginx::new(&config.nginx, env) {
            log::info!("nginx collector: {}", nginx.describe());
            collectors.push(Collector::Nginx(nginx));
        }
    }
    if !flags.no_storage {
        if let Some(storage) = Storage::new(&config.storage, env) {
            log::info!("storage collector: {}", storage.describe());
            collectors.push(Collector::Storage(storage));
        }
    }
    // One matcher for the services and sockets collectors: the same instance assignment, and
    // each process's match computed once.
    let services = Arc::new(Services::new(
        procfs.clone(),
        config.profile,
        config.plan,
        config.services,
        flags.pss_max_age,
    ));
    collector::services::log_missing_capabilities(&procfs, !flags.no_services, !flags.no_sockets);
    if !flags.no_sockets {
        collectors.push(Collector::Sockets(Sockets::new(procfs, services.clone())));
    }
    if !flags.no_services {
        collectors.push(Collector::Services(services));
    }
    collectors.extend(collector::target::collectors(
        config.mysql,
        config.postgres,
        config.redis,
    ));
    collectors
}

fn print_config(config: &config::Config) {
    println!("profile: {}", config.profile);
    for service in &config.services {
        let budget = &service.budget;
        let planned = if budget.is_planned() {
            "planned"
        } else {
            "watched"
        };
        let memory = budget
            .memory
            .map_or_else(|| "-".to_string(), |m| format!("{} MiB", m >> 20));
        println!(
            "  {:<14} {planned:<8} memory budget {memory}, {} matcher(s)",
            service.name,
            service.matchers.len()
        );
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = tokio::signal::ctrl_c() => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3 fortnights").is_err());
        assert!(parse_duration("1e20s").is_err());
        assert_eq!(parse_duration(" 250ms "), Ok(Duration::from_millis(250)));
    }
}
