//! Traffic as Nginx sees it (THRESHOLDS.md rows P1, P2, P5, S4, S5, W2): the access log, followed
//! at scrape time, and `stub_status` when configured.
//!
//! Each scrape reads what the log gained since the last one (src/accesslog.rs: fixed-size chunks,
//! rotation by rename or copytruncate) and adds it to counters kept since the exporter started,
//! so no background thread runs between scrapes. All of it blocks (file reads, the stub_status
//! round trip), so it runs on a helper thread under the collector's run guard
//! (collector/mod.rs): a read stuck on a hung filesystem costs one thread, not one per scrape.
//! A path that cannot be followed is a series and one log line, never an error that hides the
//! counts. See docs/traffic.md.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::de::{self, Deserializer};
use serde::Deserialize;

use crate::accesslog::{self, Counts, Event, Follower, Format, Latency, Reason, Route, Routes};
use crate::config_error::{at, Nonsense};
use crate::logging::Condition;
use crate::metrics::{Histogram, MetricSet};
use crate::values::check_path;

mod stub_status;
use stub_status::StubStatusPage;

/// The environment variable that names the access log when the config does not.
pub const ACCESS_LOG_ENV: &str = "STACK_NGINX_ACCESS_LOG";

/// `[nginx]` in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NginxConfig {
    pub access_log: Option<PathBuf>,
    #[serde(default)]
    pub format: LogFormat,
    pub stub_status_url: Option<StubStatusUrl>,
    pub static_prefixes: Option<Vec<PathPrefix>>,
    pub websocket_prefixes: Option<Vec<PathPrefix>>,
    pub asgi_prefixes: Option<Vec<PathPrefix>>,
}

impl NginxConfig {
    /// Refuses what parses but no one can mean: an empty path, a NUL in it, port 0.
    pub fn check(&self) -> Result<(), Nonsense> {
        if let Some(path) = &self.access_log {
            check_path(path).map_err(at(&["nginx", "access_log"]))?;
        }
        if let Some(url) = &self.stub_status_url {
            if url.port == 0 {
                return Err(at(&["nginx", "stub_status_url"])(
                    "port 0: no server listens there".to_string(),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Combined,
    Stack,
}

/// A URL path prefix: starts with `/`.
#[derive(Debug, Clone, PartialEq)]
pub struct PathPrefix(pub String);

impl<'de> Deserialize<'de> for PathPrefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if !text.starts_with('/') {
            return Err(de::Error::custom(format!(
                "a path prefix starts with \"/\" (got {text:?})"
            )));
        }
        Ok(PathPrefix(text))
    }
}

/// `http://host[:port]/path` of Nginx's `stub_status` page. Plain HTTP only: it is meant to be
/// served on loopback.
#[derive(Debug, Clone, PartialEq)]
pub struct StubStatusUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl StubStatusUrl {
    pub fn parse(text: &str) -> Result<StubStatusUrl, String> {
        // Messages never repeat the URL: it may carry a password.
        let rest = text.strip_prefix("http://").ok_or_else(|| {
            "stub_status_url must be a plain http:// URL like http://127.0.0.1/nginx_status"
                .to_string()
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(
                "stub_status_url must not carry a user or password: serve stub_status on loopback \
                 without authentication"
                    .to_string(),
            );
        }
        // An IPv6 address is written in brackets: [::1]:8080.
        let (host, port) = match authority.strip_prefix('[') {
            Some(inner) => {
                let (host, after) = inner
                    .split_once(']')
                    .ok_or_else(|| "stub_status_url: unclosed [ in the host".to_string())?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(port) => port
                .parse()
                .map_err(|_| "stub_status_url: the port is not a number".to_string())?,
            None => 80,
        };
        if host.is_empty() {
            return Err("stub_status_url: no host".to_string());
        }
        Ok(StubStatusUrl {
            host: host.into(),
            port,
            path: path.into(),
        })
    }
}

impl<'de> Deserialize<'de> for StubStatusUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StubStatusUrl::parse(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

#[derive(Debug)]
pub struct Nginx {
    log: Option<Arc<Mutex<AccessLog>>>,
    /// The access log's path, also outside the lock (held while the log is read).
    log_path: Option<PathBuf>,
    stub_status: Option<StubStatusPage>,
}

#[derive(Debug)]
struct AccessLog {
    follower: Follower,
    counts: Counts,
    format: Format,
    routes: Routes,
    /// Why the log cannot be followed, logged when it starts and when it ends.
    unfollowed: Condition,
}

impl Nginx {
    /// The collector, or `None` when neither an access log (config or `STACK_NGINX_ACCESS_LOG`)
    /// nor a stub_status URL is configured. Looks at nothing on disk itself: the first look at
    /// the access log runs on a thread of its own, so counting starts when the exporter does
    /// while start-up never waits on the path (a FIFO, a hung mount).
    pub fn new(config: &NginxConfig, env: impl Fn(&str) -> Option<String>) -> Option<Nginx> {
        let path = config.access_log.clone().or_else(|| {
            env(ACCESS_LOG_ENV)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        });
        if path.is_none() && config.stub_status_url.is_none() {
            return None;
        }
        let defaults = Routes::default();
        let prefixes = |given: &Option<Vec<PathPrefix>>, default: Vec<String>| match given {
            Some(list) => list.iter().map(|p| p.0.clone()).collect(),
            None => default,
        };
        let routes = Routes {
            static_prefixes: prefixes(&config.static_prefixes, defaults.static_prefixes),
            websocket_prefixes: prefixes(&config.websocket_prefixes, defaults.websocket_prefixes),
            asgi_prefixes: prefixes(&config.asgi_prefixes, defaults.asgi_prefixes),
        };
        let log = path.clone().map(|path| {
            Arc::new(Mutex::new(AccessLog {
                follower: Follower::new(path),
                counts: Counts::default(),
                format: match config.format {
                    LogFormat::Combined => Format::Combined,
                    LogFormat::Stack => Format::Stack,
                },
                routes,
                unfollowed: Condition::default(),
            }))
        });
        if let Some(log) = &log {
            start_following(log.clone());
        }
        Some(Nginx {
            log,
            log_path: path,
            stub_status: config.stub_status_url.clone().map(StubStatusPage::new),
        })
    }

    pub fn describe(&self) -> String {
        let log = self
            .log_path
            .as_ref()
            .map(|path| format!("access log {}", path.display()));
        let stub = self
            .stub_status
            .as_ref()
            .map(|page| &page.url)
            .map(|u| format!("stub_status http://{}:{}{}", u.host, u.port, u.path));
        [log, stub]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Blocks (file reads, the stub_status round trip): called on a helper thread. The
    /// stub_status round trip ends by `deadline`.
    pub fn collect(&self, deadline: Instant) -> anyhow::Result<MetricSet> {
        let mut out = MetricSet::default();
        if let Some(log) = &self.log {
            let Some(mut log) = lock_within(
                log,
                FIRST_LOOK_WAIT.min(deadline.saturating_duration_since(Instant::now())),
            ) else {
                anyhow::bail!("the first look at the access log has not ended (a hung filesystem?)")
            };
            log.poll();
            log.emit(&mut out);
        }
        if let Some(page) = &self.stub_status {
            emit_stub_status(&mut out, page, deadline);
        }
        Ok(out)
    }
}

/// How long a scrape waits for the first look at the access log, under way at start-up: a
/// busy host takes a moment; a hung filesystem would take forever.
const FIRST_LOOK_WAIT: Duration = Duration::from_secs(1);

/// The access log's lock, if it is free within `wait`. Only the first look can hold it here (runs
/// of the collector never overlap): a stuck one fails this run rather than joining it.
fn lock_within(log: &Mutex<AccessLog>, wait: Duration) -> Option<MutexGuard<'_, AccessLog>> {
    let until = Instant::now() + wait;
    loop {
        match log.try_lock() {
            Ok(log) => return Some(log),
            Err(TryLockError::Poisoned(e)) => return Some(e.into_inner()),
            Err(TryLockError::WouldBlock) if Instant::now() >= until => return None,
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Takes the first look at the access log on a thread that nothing waits for.
fn start_following(log: Arc<Mutex<AccessLog>>) {
    let spawned = std::thread::Builder::new()
        .name("nginx-log-start".into())
        .spawn(move || {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.follower.start();
        });
    if let Err(e) = spawned {
        log::warn!(
            "cannot start a thread for the access log ({e}): counting starts at the first scrape"
        );
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl AccessLog {
    fn poll(&mut self) {
        let now = unix_now();
        let AccessLog {
            follower,
            counts,
            format,
            routes,
            unfollowed,
        } = self;
        let lost = follower.poll(|event| match event {
            Event::Line(line) => counts.add_line(line, *format, routes, now),
            Event::Broken => counts.add_broken(),
        });
        let path = follower.path().display();
        if let Err(e) = lost {
            crate::warn_throttled!(
                "nginx_log_lines_lost",
                "nginx access log {path}: a rotated-away file could not be read to its end, its last lines are not counted: {e}"
            );
        }
        unfollowed.set(
            &format!("nginx access log {path}"),
            follower.problem().map(|p| p.detail.clone()),
        );
    }

    fn emit(&self, out: &mut MetricSet) {
        let counts = &self.counts;
        for route in Route::ALL {
            for (class, name) in accesslog::STATUS_CLASSES.iter().enumerate() {
                out.counter(
                    "stack_nginx_http_requests_total",
                    "Requests in the Nginx access log since the exporter started, by route (static, wsgi, asgi, websocket) and status class.",
                    vec![("route", route.name().into()), ("status_class", (*name).into())],
                    counts.requests[route as usize][class] as f64,
                );
            }
        }
        if counts.has_latency || self.format == Format::Stack {
            for route in Route::ALL {
                out.histogram(
                    "stack_nginx_http_request_duration_seconds",
                    "$request_time of the requests in the access log, by route. A websocket's is its whole connection.",
                    vec![("route", route.name().into())],
                    histogram(&counts.request_time[route as usize]),
                );
            }
            for route in Route::ALL {
                out.histogram(
                    "stack_nginx_upstream_response_duration_seconds",
                    "$upstream_response_time (summed over the upstreams tried) of the requests that reached an upstream, by route.",
                    vec![("route", route.name().into())],
                    histogram(&counts.upstream_time[route as usize]),
                );
            }
        }
        out.counter(
            "stack_nginx_log_lines_total",
            "Lines read from the access log since the exporter started.",
            vec![],
            counts.lines as f64,
        );
        out.counter(
            "stack_nginx_log_parse_errors_total",
            "Access log lines that did not parse (garbage, cut short, or in another log_format).",
            vec![],
            counts.parse_errors as f64,
        );
        for (kind, n) in [
            ("rename", self.follower.rotations),
            ("truncate", self.follower.truncations),
        ] {
            out.counter(
                "stack_nginx_log_rotations_total",
                "Rotations of the access log the exporter followed: renamed away, or truncated in place (copytruncate).",
                vec![("kind", kind.into())],
                n as f64,
            );
        }
        out.gauge(
            "stack_nginx_log_file_open",
            "1 if the access log is a regular file being followed, 0 if not (stack_nginx_log_file_error says why).",
            vec![],
            f64::from(self.follower.is_open()),
        );
        let why = self.follower.problem().map(|p| p.reason);
        for reason in Reason::ALL {
            out.gauge(
                "stack_nginx_log_file_error",
                "1 for the reason the access log is not followed now: missing, not_regular_file (a directory, a FIFO, a device: never opened), permission_denied, io_error; all 0 while it is followed.",
                vec![("reason", reason.name().into())],
                f64::from(why == Some(reason)),
            );
        }
        out.counter(
            "stack_nginx_log_read_errors_total",
            "Scrapes whose read of the access log failed (any reason but a missing file), and rotated-away files that could not be read to their end (lines lost).",
            vec![],
            self.follower.errors as f64,
        );
        out.gauge(
            "stack_nginx_recent_clients",
            "Distinct client addresses in the access log over the last 5 to 6 minutes (HyperLogLog estimate, about 1.6 % error): the concurrent-users estimate.",
            vec![],
            counts.clients.estimate(unix_now()).round(),
        );
    }
}

fn histogram(latency: &Latency) -> Histogram {
    let mut buckets: Vec<(f64, u64)> = accesslog::BUCKETS_US
        .iter()
        .map(|&us| us as f64 / 1e6)
        .chain([f64::INFINITY])
        .zip(latency.buckets.iter().copied())
        .collect();
    buckets.shrink_to_fit();
    Histogram {
        sum: latency.sum_us as f64 / 1e6,
        count: latency.count,
        buckets,
    }
}

fn emit_stub_status(out: &mut MetricSet, page: &StubStatusPage, deadline: Instant) {
    let url = &page.url;
    let status = match page.fetch(deadline) {
        Ok(status) => Some(status),
        Err(e) => {
            crate::warn_throttled!(
                "nginx_stub_status",
                "nginx stub_status at {}:{}{}: {e:#}",
                url.host,
                url.port,
                url.path
            );
            None
        }
    };
    out.gauge(
        "stack_nginx_stub_status_up",
        "1 if Nginx's stub_status page answered in this scrape.",
        vec![],
        f64::from(status.is_some()),
    );
    let Some(s) = status else {
        return;
    };
    for (state, value) in [
        ("active", s.active),
        ("reading", s.reading),
        ("writing", s.writing),
        ("waiting", s.waiting),
    ] {
        out.gauge(
            "stack_nginx_connections",
            "Client connections of Nginx by state, from stub_status (active = reading + writing + waiting).",
            vec![("state", state.into())],
            value as f64,
        );
    }
    out.counter(
        "stack_nginx_connections_accepted_total",
        "Client connections Nginx accepted, from stub_status.",
        vec![],
        s.accepted as f64,
    );
    out.counter(
        "stack_nginx_connections_handled_total",
        "Client connections Nginx handled (less than accepted when a limit was hit), from stub_status.",
        vec![],
        s.handled as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_status_urls() {
        assert_eq!(
            StubStatusUrl::parse("http://127.0.0.1:8080/nginx_status"),
            Ok(StubStatusUrl {
                host: "127.0.0.1".into(),
                port: 8080,
                path: "/nginx_status".into()
            })
        );
        let url = StubStatusUrl::parse("http://[::1]/s").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 80));
        assert!(StubStatusUrl::parse("https://x/").is_err());
        assert!(StubStatusUrl::parse("http://x:port/").is_err());
        let refused = StubStatusUrl::parse("http://admin:s3cret@127.0.0.1/s").unwrap_err();
        assert!(!refused.contains("s3cret"), "{refused}");
        for bad in [
            "ftp://admin:s3cret@x/",
            "http://[admin:s3cret",
            "http://x:s3cret/",
        ] {
            assert!(
                !StubStatusUrl::parse(bad).unwrap_err().contains("s3cret"),
                "{bad}"
            );
        }
    }

    #[test]
    fn off_unless_configured_and_env_names_the_log() {
        let none = |_: &str| None;
        assert!(Nginx::new(&NginxConfig::default(), none).is_none());
        let env = |k: &str| (k == ACCESS_LOG_ENV).then(|| "/nonexistent/access.log".to_string());
        let nginx = Nginx::new(&NginxConfig::default(), env).unwrap();
        assert!(nginx.describe().contains("/nonexistent/access.log"));
    }

    #[test]
    fn histograms_end_with_inf_and_hold_the_thresholds() {
        let mut latency = Latency::default();
        latency.observe(500_000);
        let h = histogram(&latency);
        let bounds: Vec<f64> = h.buckets.iter().map(|b| b.0).collect();
        for threshold in [0.1, 0.2, 0.5, 1.0, 2.0] {
            assert!(bounds.contains(&threshold), "{threshold}");
        }
        assert_eq!(*bounds.last().unwrap(), f64::INFINITY);
        assert_eq!(h.buckets.iter().find(|b| b.0 == 0.5).unwrap().1, 1);
        assert_eq!((h.count, h.sum), (1, 0.5));
    }
}
