//! stack_exporter: one Prometheus exporter for a small web stack. Flags follow node_exporter.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, CommandFactory, FromArgMatches};

use stack_exporter::collector::{self, Collector, Enabled, Spec, COLLECTORS};
use stack_exporter::config::{self, parse_duration, parse_positive_duration};
use stack_exporter::proc::ProcFs;
use stack_exporter::{http, logging, scrape};

/// The flags clap's derive knows; each collector's `--[no-]collector.NAME` pair is added from the
/// registry by `with_collector_flags`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "stack_exporter",
    version,
    about = "Host, services against their planned budgets, databases and Redis: one exporter for a small web stack."
)]
struct Flags {
    /// Address to listen on; ":9488" means every interface.
    #[arg(
        global = true,
        long = "web.listen-address",
        default_value = ":9488",
        value_name = "ADDRESS"
    )]
    listen_address: String,

    /// exporter-toolkit web config (YAML): TLS, basic auth, HTTP headers, as node_exporter reads
    /// it; certificates and users are re-read when their files change. See docs/security.md.
    #[arg(global = true, long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,

    /// Path under which to expose metrics.
    #[arg(
        global = true,
        long = "web.telemetry-path",
        default_value = "/metrics",
        value_name = "PATH"
    )]
    telemetry_path: String,

    /// TOML config file: profile, budget and service overrides, database targets. Without it the
    /// built-in vps-2gb profile runs.
    #[arg(global = true, long = "config.file", value_name = "FILE")]
    config_file: Option<PathBuf>,

    /// Check the config file, print the resolved services and exit.
    #[arg(long = "config.check")]
    config_check: bool,

    /// procfs mountpoint (the host's /proc when running in a container).
    #[arg(
        global = true,
        long = "path.procfs",
        default_value = "/proc",
        value_name = "PATH"
    )]
    procfs: PathBuf,

    /// sysfs mountpoint: the services' memory cgroups are read under PATH/fs/cgroup.
    #[arg(
        global = true,
        long = "path.sysfs",
        default_value = "/sys",
        value_name = "PATH"
    )]
    sysfs: PathBuf,

    /// Where the host's root filesystem is mounted; filesystem sizes are read under it.
    #[arg(
        global = true,
        long = "path.rootfs",
        default_value = "/",
        value_name = "PATH"
    )]
    rootfs: PathBuf,

    /// Only log messages with this severity or above.
    #[arg(global = true, long = "log.level", value_enum, default_value = "info")]
    log_level: logging::LevelName,

    /// Output format of log messages.
    #[arg(
        global = true,
        long = "log.format",
        value_enum,
        default_value = "logfmt"
    )]
    log_format: logging::Format,

    /// Longest a scrape may take when the scraper sends no X-Prometheus-Scrape-Timeout-Seconds.
    #[arg(global = true, long = "web.max-scrape-timeout", default_value = "10s", value_parser = parse_positive_duration, value_name = "DURATION")]
    max_scrape_timeout: Duration,

    /// Most HTTP connections open at once. At the cap, a new connection closes the one that has
    /// waited longest without sending a request, so idle or slow clients cannot lock a scraper out.
    #[arg(long = "web.max-connections", default_value_t = 128, value_parser = clap::value_parser!(u16).range(1..), value_name = "N")]
    max_connections: u16,

    /// How long a process's PSS (from smaps_rollup, costly for big processes) is reused before it
    /// is read again; 0s reads it on every scrape. RSS and CPU are always read fresh.
    #[arg(global = true, long = "collector.services.pss-max-age", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pss_max_age: Duration,

    /// How long a costly connection count is reused before it is made again: one of 1000 or more
    /// connections in a network namespace, or one made while the host has 4000 or more TCP
    /// sockets (each count walks them all: about 1 ms of kernel time per 4000); other counts are
    /// made on every scrape, and 0s counts on every scrape whatever the cost.
    #[arg(global = true, long = "collector.sockets.connections-max-age", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    connections_max_age: Duration,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// The plan at a glance: host, services against their budgets, databases, Redis, exposure
    /// and backups, from the running exporter (or, when none answers, one collection of its
    /// own). Exits 2 when something is over an alert's threshold, 1 on an error.
    Status(StatusFlags),
}

#[derive(Debug, clap::Args)]
struct StatusFlags {
    /// The running exporter's metrics URL (http or https); by default from
    /// --web.listen-address, --web.telemetry-path and the web config's TLS.
    #[arg(long, value_name = "URL")]
    url: Option<String>,

    /// text (colour on a terminal unless NO_COLOR is set) or json.
    #[arg(long, value_enum, default_value = "text")]
    output: Output,

    /// Basic auth user for an exporter whose web config has users (by default its only user).
    #[arg(long = "web.username", value_name = "USER")]
    username: Option<String>,

    /// File holding that user's password.
    #[arg(long = "web.password-file", value_name = "FILE")]
    password_file: Option<PathBuf>,

    /// CA certificates (PEM) to trust for an https exporter, besides the system's.
    #[arg(long = "tls.ca-file", value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

// The process's only calls into glibc's libm (the access log's HyperLogLog estimate, and a
// dependency's float powers; `log2` in debug builds), served from the pure-Rust `libm` crate:
// linking glibc's libm.so for them mapped 0.3 MB at start-up and 0.6 MB after a few scrapes, more
// than the code they run. tests/cli.rs checks that the binary loads no libm.so.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[no_mangle]
pub extern "C" fn log(x: f64) -> f64 {
    libm::log(x)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[no_mangle]
pub extern "C" fn log2(x: f64) -> f64 {
    libm::log2(x)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

fn main() {
    // glibc gives every thread that allocates its own malloc arena; a scrape touches several
    // threads, and their arenas would hold megabytes of RSS for a few kilobytes of live data.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let matches = with_collector_flags(Flags::command()).get_matches();
    let flags = Flags::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let disabled = disabled_collectors(&matches);
    logging::init(flags.log_level, flags.log_format);
    collector::exporter::install_panic_hook();
    let result = match flags.command {
        Some(Command::Status(ref options)) => status_command(&flags, options, &disabled),
        None => run(flags, &disabled).map(|()| 0),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            log::error!("{e:#}");
            std::process::exit(1);
        }
    }
}

/// How long SIGTERM waits for blocking work (a /proc read, a directory walk) to end: a thread stuck
/// in the kernel (a FIFO, a hung network mount) cannot be stopped, and must not keep us alive.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

fn run(flags: Flags, disabled: &[&str]) -> anyhow::Result<()> {
    let mut config = config::load(flags.config_file.as_deref())?;
    collector::target::add_env_targets(&mut config, |var| std::env::var(var).ok())
        .map_err(anyhow::Error::msg)?;
    if flags.config_check {
        print_config(&config);
        return Ok(());
    }
    // Before the port: a bad web config refuses to start, naming the file, line and key.
    let web = flags
        .web_config_file
        .as_deref()
        .map(http::web::Web::load)
        .transpose()?;
    // Before the runtime: its threads inherit the signal mask that leaves SIGTERM to this one.
    let shutdown = shutdown_signal();
    // One worker: the blocking collectors run on lanes of their own (src/lane.rs), so the
    // worker only waits on sockets, and a second one cost a wake-up per hand-off (4 % CPU and
    // 5 context switches a scrape, docs/performance.md). SIGTERM does not need it (see
    // `shutdown_signal`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(8)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        // The port first: whatever a collector's set-up meets, the exporter is reachable and says
        // where it listens.
        let listener = http::bind(&flags.listen_address).await?;
        let scheme = match web.as_ref().map(|web| web.current()) {
            Some(loaded) if loaded.acceptor.is_some() => "https",
            _ => "http",
        };
        log::info!(
            "listening on {} ({scheme}, {})",
            listener.local_addr()?,
            flags.telemetry_path
        );
        warn_if_over_fd_limit(flags.max_connections.into());
        let collectors = build_collectors(&flags, config, disabled);
        let names: Vec<_> = collectors.iter().map(|c| c.name()).collect();
        log::info!("collectors: {}", names.join(", "));
        let server = Arc::new(http::Server::new(
            scrape::Scraper::new(collectors),
            flags.telemetry_path.clone(),
            flags.max_scrape_timeout,
        ));
        // A task on the workers, not this thread's future: each accepted connection's task then
        // starts where it was accepted, without a hand-off from the main thread.
        let serving = tokio::spawn(http::serve(
            server,
            listener,
            flags.max_connections.into(),
            web,
        ));
        tokio::select! {
            result = serving => result.unwrap_or_else(|e| Err(anyhow::anyhow!("HTTP server: {e}"))),
            () = shutdown => {
                log::info!("shutting down");
                Ok(())
            }
        }
    });
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

/// The cap must leave file descriptors for the collectors (database connections, /proc files,
/// directory walks): warn when it takes more than half of them. Windows has no such limit.
fn warn_if_over_fd_limit(max_connections: u64) {
    let Some(limit) = stack_exporter::proc::open_files_limit() else {
        return;
    };
    if max_connections.saturating_mul(2) > limit {
        log::warn!(
            "--web.max-connections={max_connections} is more than half the file descriptor limit \
             ({limit}); raise LimitNOFILE or lower the cap"
        );
    }
}

/// How long `stack_exporter status` waits for the exporter, and between its two readings (CPU
/// use is a rate).
const STATUS_TIMEOUT: Duration = Duration::from_secs(15);
const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// `stack_exporter status`: two readings a second apart from the running exporter, or from
/// collections of its own when nothing listens there; the status printed; 2 when something is
/// over an alert's threshold.
fn status_command(flags: &Flags, options: &StatusFlags, disabled: &[&str]) -> anyhow::Result<i32> {
    use stack_exporter::status::{self, fetch, Counters, Figures, Readings, Status};
    let web = flags
        .web_config_file
        .as_deref()
        .map(http::web::Web::load)
        .transpose()?;
    let loaded = web.as_ref().map(|web| web.current());
    let tls = loaded.as_ref().is_some_and(|l| l.acceptor.is_some());
    let only_user = loaded
        .as_ref()
        .filter(|l| l.users.len() == 1)
        .and_then(|l| l.users.keys().next().cloned());
    let credentials = match (
        &options.password_file,
        options.username.clone().or(only_user),
    ) {
        (Some(file), Some(user)) => {
            let password = std::fs::read_to_string(file)
                .map_err(|e| anyhow::anyhow!("--web.password-file {}: {e}", file.display()))?;
            Some((user, password.trim_end_matches(['\n', '\r']).to_string()))
        }
        (Some(_), None) => anyhow::bail!("--web.password-file needs --web.username"),
        (None, _) => None,
    };
    let source = fetch::Source {
        url: options.url.clone().unwrap_or_else(|| {
            fetch::url_for_listen_address(&flags.listen_address, &flags.telemetry_path, tls)
        }),
        credentials,
        ca_file: options.ca_file.clone(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (previous, current, figures) = runtime.block_on(async {
        match fetch::get(&source, STATUS_TIMEOUT).await {
            Ok(first) => {
                let previous = Counters::from_figures(
                    &Figures::from_exposition(&first),
                    std::time::Instant::now(),
                );
                drop(first);
                tokio::time::sleep(STATUS_INTERVAL).await;
                let second = fetch::get(&source, STATUS_TIMEOUT)
                    .await
                    .map_err(anyhow::Error::msg)?;
                let figures = Figures::from_exposition(&second);
                let current = Counters::from_figures(&figures, std::time::Instant::now());
                Ok::<_, anyhow::Error>((previous, current, figures))
            }
            Err(fetch::FetchError::Unreachable(why)) => {
                eprintln!("no exporter answers ({why}); collecting here instead");
                let mut config = config::load(flags.config_file.as_deref())?;
                collector::target::add_env_targets(&mut config, |var| std::env::var(var).ok())
                    .map_err(anyhow::Error::msg)?;
                let scraper = scrape::Scraper::new(build_collectors(flags, config, disabled));
                let timeout = flags.max_scrape_timeout;
                let first = scraper.scrape(timeout, timeout).await;
                let previous = Counters::from_set(&first, std::time::Instant::now());
                drop(first);
                tokio::time::sleep(STATUS_INTERVAL).await;
                let second = scraper.scrape(timeout, timeout).await;
                let current = Counters::from_set(&second, std::time::Instant::now());
                Ok((previous, current, Figures::from_set(&second)))
            }
            Err(e) => Err(anyhow::Error::msg(e)),
        }
    })?;
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let readings = Readings {
        previous: Some(&previous),
        current: &current,
        now_unix,
    };
    let status = Status::build(&figures, &readings);
    let text = match options.output {
        Output::Json => status::text::json(&status),
        Output::Text => {
            use std::io::IsTerminal;
            let no_color = std::env::var("NO_COLOR").ok();
            let style =
                status::text::Style::detect(std::io::stdout().is_terminal(), no_color.as_deref());
            status::text::render(&status, style)
        }
    };
    print!("{text}");
    Ok(if status.alerting() { 2 } else { 0 })
}

/// `--collector.NAME` and `--no-collector.NAME` for every registered collector, as node_exporter
/// spells them; the later of the two wins. Only the positive one is listed in `--help`.
fn with_collector_flags(mut command: clap::Command) -> clap::Command {
    // clap (without its "string" feature) takes 'static names; these are made once at start-up.
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    for spec in COLLECTORS {
        let (on, off) = (
            leak(format!("collector.{}", spec.name)),
            leak(format!("no-collector.{}", spec.name)),
        );
        let when = match spec.enabled {
            Enabled::Always => "on by default".to_string(),
            Enabled::WhenConfigured(when) => format!("on when {when}"),
        };
        command = command
            .arg(
                Arg::new(on)
                    .long(on)
                    .action(ArgAction::SetTrue)
                    .global(true)
                    .overrides_with(off)
                    .help(format!(
                        "The {} collector: {} ({when}; --{off} turns it off).",
                        spec.name, spec.help
                    )),
            )
            .arg(
                Arg::new(off)
                    .long(off)
                    .action(ArgAction::SetTrue)
                    .global(true)
                    .overrides_with(on)
                    .hide(true),
            );
    }
    command
}

/// The collectors turned off by a `--no-collector.NAME` that no later `--collector.NAME` undid.
fn disabled_collectors(matches: &ArgMatches) -> Vec<&'static str> {
    COLLECTORS
        .iter()
        .filter(|spec| matches.get_flag(&format!("no-collector.{}", spec.name)))
        .map(|spec| spec.name)
        .collect()
}

fn build_collectors(flags: &Flags, config: config::Config, disabled: &[&str]) -> Vec<Collector> {
    let procfs = ProcFs::new(&flags.procfs);
    let is_on = |name: &str| !disabled.contains(&name);
    let mut context = collector::Context::new(
        procfs.clone(),
        flags.rootfs.clone(),
        flags.pss_max_age,
        config,
        |key| std::env::var(key).ok(),
    );
    context.sysfs = flags.sysfs.clone();
    context.connections_max_age = flags.connections_max_age;
    let collectors = collector::build(context, |spec: &Spec| is_on(spec.name));
    // Capabilities are Linux's: elsewhere the sysinfo backend reads what the user may read.
    #[cfg(target_os = "linux")]
    {
        let running: Vec<&str> = collectors.iter().map(Collector::name).collect();
        collector::services::log_missing_capabilities(&procfs, &running);
    }
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

/// SIGTERM (systemd, docker stop) or Ctrl-C, taken by a thread of its own with sigwait(2): the
/// signals are blocked in this thread and so in every thread started after it, and a task that
/// holds the runtime's worker (which drives tokio's own signal handling) cannot keep the exporter
/// from stopping. The future needs no worker either: the thread's send wakes `block_on`.
#[cfg(unix)]
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let (heard, signalled) = tokio::sync::oneshot::channel::<()>();
    // SAFETY: a zeroed sigset_t is initialised by sigemptyset before any other use; the calls
    // only read and write that local set and this thread's mask.
    let signals = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let waiter = std::thread::Builder::new()
        .name("signals".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut signal = 0;
            // SAFETY: sigwait with an initialised set and a valid out pointer.
            while unsafe { libc::sigwait(&signals, &mut signal) } != 0 {}
            let _ = heard.send(());
        });
    if let Err(e) = waiter {
        // SAFETY: as above, on this thread's mask only.
        unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, &signals, std::ptr::null_mut()) };
        log::error!("cannot start the signal thread ({e}); SIGTERM ends the exporter at once");
    }
    async move {
        if signalled.await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Windows has no SIGTERM: Ctrl-C (or Ctrl-Break) in a console; a scheduled task or service is
/// ended by the system, which needs nothing of us (docs/windows.md).
#[cfg(not(unix))]
async fn shutdown_signal() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
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
