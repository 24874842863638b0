//! A database or Redis target's config: `[[mysql]]`, `[[postgres]]`, `[[redis]]`, or one target
//! named `default` from `STACK_MYSQL_URL`, `STACK_POSTGRES_URL`, `STACK_REDIS_URL`; its URL checked
//! by the driver while the config is parsed, with the password kept out of every message.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::values::ConfigDuration;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use tokio::time::Instant;

use super::{describe, describe_chain, printable};

/// How long a target's connect and queries may take in one scrape unless configured.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);
/// How often slow-changing figures (sizes, server variables) are fetched unless configured.
pub const DEFAULT_SLOW_INTERVAL: Duration = Duration::from_secs(60);
/// Time kept back from the scrape's deadline so that `up 0` and the rest are encoded in time.
pub const DEADLINE_MARGIN: Duration = Duration::from_millis(100);

/// The kind of server a target is: its URL schemes and the variable that gives a default target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Mysql,
    Postgres,
    Redis,
}

impl Kind {
    pub fn schemes(self) -> &'static [&'static str] {
        match self {
            Kind::Mysql => &["mysql"],
            Kind::Postgres => &["postgres", "postgresql"],
            Kind::Redis => &["redis", "rediss", "redis+unix", "unix"],
        }
    }

    /// The config section and collector name.
    pub fn section(self) -> &'static str {
        match self {
            Kind::Mysql => "mysql",
            Kind::Postgres => "postgres",
            Kind::Redis => "redis",
        }
    }

    /// The service the profiles plan for this kind (the `service` label of stack_service_up).
    pub fn service(self) -> &'static str {
        match self {
            Kind::Mysql => "mysql",
            Kind::Postgres => "postgresql",
            Kind::Redis => "redis",
        }
    }

    pub fn env_var(self) -> &'static str {
        match self {
            Kind::Mysql => "STACK_MYSQL_URL",
            Kind::Postgres => "STACK_POSTGRES_URL",
            Kind::Redis => "STACK_REDIS_URL",
        }
    }

    fn example(self) -> &'static str {
        match self {
            Kind::Mysql => "mysql://user[:password]@host:3306/",
            Kind::Postgres => "postgres://user[:password]@host:5432/postgres",
            Kind::Redis => "redis://[user:password@]host:6379/0",
        }
    }
}

/// A database URL. Its text is never shown: `Debug` prints its scheme only.
#[derive(Clone, PartialEq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL, for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks the scheme, then parses the URL as the driver will at connect time, so that a bad
    /// port or an unknown option is refused when the config is loaded rather than on every
    /// scrape. The message never repeats the URL or its password.
    pub fn parse(text: &str, kind: Kind) -> Result<SecretUrl, String> {
        let scheme = text.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme {
            Some(s) if kind.schemes().contains(&s.as_str()) => {}
            _ => {
                return Err(format!(
                    "not a {} URL (expected {})",
                    kind.schemes().join(":// or ") + "://",
                    kind.example()
                ))
            }
        }
        let bad = |why: String| {
            format!(
                "bad {} URL: {} (expected {})",
                kind.section(),
                redact(&why, &url_secrets(text)),
                kind.example()
            )
        };
        let (driver_url, _) = super::tls::split_url(text, kind).map_err(bad)?;
        check_with_driver(&driver_url, kind).map_err(bad)?;
        Ok(SecretUrl(text.to_string()))
    }
}

/// What the driver of `kind` says about the URL `text`, as it will parse it when connecting.
fn check_with_driver(text: &str, kind: Kind) -> Result<(), String> {
    match kind {
        Kind::Mysql => mysql_async::Opts::from_url(text)
            .map(drop)
            .map_err(|e| e.to_string()),
        Kind::Postgres => text
            .parse::<tokio_postgres::Config>()
            .map(drop)
            .map_err(|e| describe_chain(&e, None)),
        Kind::Redis => {
            use redis::IntoConnectionInfo;
            text.into_connection_info().map_err(|e| e.to_string())?;
            unknown_redis_options(text)
        }
    }
}

/// The redis crate ignores query options it does not know (a typo such as `?protocl=resp3`
/// would pass silently): refuse them. It reads `protocol`, and for `unix://` also `db`, `user`,
/// `pass`.
fn unknown_redis_options(text: &str) -> Result<(), String> {
    let scheme = text.split_once("://").map_or("", |(s, _)| s);
    let known: &[&str] = if matches!(scheme, "unix" | "redis+unix") {
        &["protocol", "db", "user", "pass"]
    } else {
        &["protocol"]
    };
    let query = text.split('#').next().and_then(|t| t.split_once('?'));
    let keys = query
        .map_or("", |(_, q)| q)
        .split('&')
        .filter(|p| !p.is_empty());
    for pair in keys {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if !known.contains(&key) {
            return Err(format!(
                "unknown option `{}` (known: {})",
                printable(key),
                known.join(", ")
            ));
        }
    }
    Ok(())
}

/// The secrets a URL's text may hold: the password of its `user:password@` part and the value
/// of a `password=` or `pass=` option, as written and percent-decoded.
fn url_secrets(text: &str) -> Vec<String> {
    let mut secrets = Vec::new();
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    if let Some((userinfo, _)) = rest.rsplit_once('@') {
        if let Some((_, password)) = userinfo.split_once(':') {
            secrets.push(password.to_string());
        }
    }
    if let Some((_, query)) = text.split_once('?') {
        for pair in query.split(['&', '#']) {
            if let Some(("password" | "pass", value)) = pair.split_once('=') {
                secrets.push(value.to_string());
            }
        }
    }
    let decoded: Vec<String> = secrets.iter().map(|s| percent_decode(s)).collect();
    secrets.extend(decoded);
    secrets.retain(|s| !s.is_empty());
    secrets
}

/// `%HH` escapes decoded (invalid ones kept as written), for [`url_secrets`].
pub(super) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `message` with every secret replaced by `***`, and any URL's credentials cut out.
fn redact(message: &str, secrets: &[String]) -> String {
    let mut text = message.to_string();
    for secret in secrets {
        text = text.replace(secret.as_str(), "***");
    }
    describe(&text, None)
}

/// A target's `timeout`: more than zero (a zero timeout fails every scrape) and at most
/// `MAX_TIMEOUT` (longer than any scrape may run).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetTimeout(pub Duration);

/// The longest `timeout` a target may have: no scrape runs longer.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

impl<'de> Deserialize<'de> for TargetTimeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ConfigDuration(timeout) = ConfigDuration::deserialize(d)?;
        if timeout.is_zero() || timeout > MAX_TIMEOUT {
            return Err(de::Error::custom(format!(
                "a target's timeout is more than 0s and at most {}s (got {}s)",
                MAX_TIMEOUT.as_secs(),
                timeout.as_secs_f64()
            )));
        }
        Ok(TargetTimeout(timeout))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let scheme = self.0.split_once("://").map_or("?", |(s, _)| s);
        write!(f, "SecretUrl({scheme}://…)")
    }
}

/// A target's name, the value of its `target` label: short, printable, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetName(pub String);

impl<'de> Deserialize<'de> for TargetName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if ok {
            Ok(TargetName(name))
        } else {
            Err(de::Error::custom(format!(
                "a target name is 1 to 64 letters, digits, '_', '-' or '.' (got {name:?})"
            )))
        }
    }
}

macro_rules! url_type {
    ($name:ident, $kind:expr) => {
        /// A URL of this kind, checked while the config is parsed.
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(pub SecretUrl);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                SecretUrl::parse(&text, $kind)
                    .map($name)
                    .map_err(de::Error::custom)
            }
        }
    };
}

url_type!(MysqlUrl, Kind::Mysql);
url_type!(PostgresUrl, Kind::Postgres);
url_type!(RedisUrl, Kind::Redis);

/// `[[mysql]]` or `[[postgres]]` as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbTargetLayer<U> {
    pub name: TargetName,
    pub url: U,
    pub password_file: Option<PathBuf>,
    pub timeout: Option<TargetTimeout>,
    /// How often sizes and server variables are fetched.
    pub slow_interval: Option<ConfigDuration>,
    /// A managed service (RDS): no process of it runs on this host.
    pub managed: Option<bool>,
}

/// `[[redis]]` as written in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisTargetLayer {
    pub name: TargetName,
    pub url: RedisUrl,
    pub password_file: Option<PathBuf>,
    pub timeout: Option<TargetTimeout>,
    /// How often the settings read with CONFIG GET (save points, maxclients) are fetched.
    pub slow_interval: Option<ConfigDuration>,
    /// Celery queue lists to LLEN; `["celery"]` when not given.
    pub queues: Option<Vec<String>>,
    /// A managed service (ElastiCache): no process of it runs on this host.
    pub managed: Option<bool>,
}

/// One configured server, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub name: String,
    pub kind: Kind,
    pub url: SecretUrl,
    pub password_file: Option<PathBuf>,
    pub timeout: Duration,
    pub slow_interval: Duration,
    /// Redis only.
    pub queues: Vec<String>,
    /// Declared managed (`managed = true`): measured remotely, no local process expected.
    pub managed: bool,
}

impl Target {
    fn from_db<U>(layer: DbTargetLayer<U>, kind: Kind, url: impl Fn(U) -> SecretUrl) -> Target {
        Target {
            name: layer.name.0,
            kind,
            url: url(layer.url),
            password_file: layer.password_file,
            timeout: layer.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            slow_interval: layer.slow_interval.map_or(DEFAULT_SLOW_INTERVAL, |t| t.0),
            queues: Vec::new(),
            managed: layer.managed.unwrap_or(false),
        }
    }

    /// The URL the driver gets (TLS options taken out) and the TLS options; checked at load, so
    /// an error here means the URL was changed since.
    pub fn tls(&self) -> Result<(String, super::TlsOptions), String> {
        super::tls::split_url(self.url.expose(), self.kind)
            .map_err(|e| format!("bad URL: {}", redact(&e, &url_secrets(self.url.expose()))))
    }

    /// The password from `password_file`, if one is configured (read at each connect, so a
    /// rotated secret is picked up); trailing newlines are dropped.
    pub fn file_password(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.password_file else {
            return Ok(None);
        };
        std::fs::read_to_string(path)
            .map(|text| Some(text.trim_end_matches(['\r', '\n']).to_string()))
            .map_err(|e| format!("cannot read password_file {}: {}", path.display(), e.kind()))
    }

    /// When this target's work in a scrape must end: its own timeout or the scrape's deadline
    /// less a margin, whichever comes first.
    pub fn work_deadline(&self, scrape_deadline: Instant) -> Instant {
        let scrape = scrape_deadline
            .checked_sub(DEADLINE_MARGIN)
            .unwrap_or(scrape_deadline);
        // The timeout is bounded at load, but a deadline past the clock's range must not panic.
        Instant::now()
            .checked_add(self.timeout)
            .map_or(scrape, |own| own.min(scrape))
    }
}

pub fn mysql_targets(layers: Vec<DbTargetLayer<MysqlUrl>>) -> Vec<Target> {
    layers
        .into_iter()
        .map(|l| Target::from_db(l, Kind::Mysql, |u| u.0))
        .collect()
}

pub fn postgres_targets(layers: Vec<DbTargetLayer<PostgresUrl>>) -> Vec<Target> {
    layers
        .into_iter()
        .map(|l| Target::from_db(l, Kind::Postgres, |u| u.0))
        .collect()
}

pub fn redis_targets(layers: Vec<RedisTargetLayer>) -> Vec<Target> {
    layers
        .into_iter()
        .map(|l| Target {
            name: l.name.0,
            kind: Kind::Redis,
            url: l.url.0,
            password_file: l.password_file,
            timeout: l.timeout.map_or(DEFAULT_TIMEOUT, |t| t.0),
            slow_interval: l.slow_interval.map_or(DEFAULT_SLOW_INTERVAL, |t| t.0),
            queues: l.queues.unwrap_or_else(|| vec!["celery".to_string()]),
            managed: l.managed.unwrap_or(false),
        })
        .collect()
}

/// Adds the target named `default` that `STACK_*_URL` gives, unless the config has one by that
/// name. `lookup` reads the environment (a parameter so tests need not change theirs).
pub fn add_env_target(
    targets: &mut Vec<Target>,
    kind: Kind,
    lookup: &impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let var = kind.env_var();
    let Some(text) = lookup(var).filter(|t| !t.trim().is_empty()) else {
        return Ok(());
    };
    let url = SecretUrl::parse(text.trim(), kind).map_err(|e| format!("{var}: {e}"))?;
    if targets.iter().any(|t| t.name == "default") {
        log::info!("{var} ignored: the config file already has a target named \"default\"");
        return Ok(());
    }
    targets.push(Target {
        name: "default".to_string(),
        kind,
        url,
        password_file: None,
        timeout: DEFAULT_TIMEOUT,
        slow_interval: DEFAULT_SLOW_INTERVAL,
        queues: if kind == Kind::Redis {
            vec!["celery".to_string()]
        } else {
            Vec::new()
        },
        managed: false,
    });
    Ok(())
}

/// Whatever keeps the targets of each kind (the assembled config): the targets live there, this
/// module only knows how to add to them, so it needs nothing of `config`.
pub trait TargetLists {
    fn targets_mut(&mut self, kind: Kind) -> &mut Vec<Target>;
}

/// Adds the `default` targets of `STACK_MYSQL_URL`, `STACK_POSTGRES_URL` and `STACK_REDIS_URL`.
pub fn add_env_targets(
    config: &mut impl TargetLists,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    for kind in [Kind::Mysql, Kind::Postgres, Kind::Redis] {
        add_env_target(config.targets_mut(kind), kind, &lookup)?;
    }
    Ok(())
}

/// Rejects two targets of one kind with the same name (their series would collide).
pub fn check_unique(targets: &[Target], section: &str) -> Result<(), String> {
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|o| o.name == t.name) {
            return Err(format!(
                "[[{section}]]: two targets are named {:?}; each needs its own name",
                t.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_debug_hides_credentials() {
        let url = SecretUrl::parse("mysql://u:hunter2@db:3306/", Kind::Mysql).unwrap();
        assert!(!format!("{url:?}").contains("hunter2"));
    }

    #[test]
    fn wrong_scheme_message_does_not_repeat_url() {
        let err = SecretUrl::parse("http://u:hunter2@db/", Kind::Postgres).unwrap_err();
        assert!(err.contains("postgres://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn env_target_is_named_default() {
        let mut targets = Vec::new();
        add_env_target(&mut targets, Kind::Redis, &|v| {
            (v == "STACK_REDIS_URL").then(|| "redis://127.0.0.1:6379/0".to_string())
        })
        .unwrap();
        assert_eq!(targets[0].name, "default");
        assert_eq!(targets[0].queues, vec!["celery"]);
        let err = add_env_target(&mut targets, Kind::Mysql, &|_| {
            Some("postgres://a:sekrit@h/".into())
        })
        .unwrap_err();
        assert!(err.starts_with("STACK_MYSQL_URL"), "{err}");
        assert!(!err.contains("sekrit"), "{err}");
    }

    #[test]
    fn driver_refuses_bad_ports_and_unknown_options_without_echoing_the_password() {
        let cases = [
            ("mysql://u:Hunter-2@db:99999/", Kind::Mysql),
            ("mysql://u:Hunter-2@db:abc/", Kind::Mysql),
            ("mysql://u:Hunter-2@db:3306/?bogus=1", Kind::Mysql),
            ("postgres://u:Hunter-2@db:99999/app", Kind::Postgres),
            ("postgres://u:Hunter-2@db:abc/app", Kind::Postgres),
            ("postgres://u:Hunter-2@db:5432/app?bogus=1", Kind::Postgres),
            (
                "postgres://u@db:5432/app?password=Hunter-2&bogus=1",
                Kind::Postgres,
            ),
            ("redis://u:Hunter-2@db:99999/0", Kind::Redis),
            ("redis://u:Hunter-2@db:abc/0", Kind::Redis),
            ("redis://u:Hunter-2@db:6379/0?bogus=1", Kind::Redis),
            ("redis://u:Hunter-2@db:6379/x", Kind::Redis),
            ("unix:///run/redis.sock?pass=Hunter-2&bogus=1", Kind::Redis),
            // TLS options: unknown modes, missing files, options without TLS.
            (
                "postgres://u:Hunter-2@db/app?sslmode=verify_full",
                Kind::Postgres,
            ),
            (
                "postgres://u:Hunter-2@db/app?sslmode=verify-full",
                Kind::Postgres,
            ),
            (
                "postgres://u:Hunter-2@db/app?sslrootcert=/nonexistent",
                Kind::Postgres,
            ),
            ("mysql://u:Hunter-2@db/?ssl-mode=VERIFY", Kind::Mysql),
            ("mysql://u:Hunter-2@db/?ssl-mode=VERIFY_CA", Kind::Mysql),
            ("mysql://u:Hunter-2@db/?ssl-ca=/nonexistent", Kind::Mysql),
            ("mysql://u:Hunter-2@db/?require_ssl=true", Kind::Mysql),
            (
                "redis://u:Hunter-2@db:6379/0?ssl_ca_certs=/etc/hostname",
                Kind::Redis,
            ),
            (
                "rediss://u:Hunter-2@db:6379/0?ssl_certfile=/etc/hostname",
                Kind::Redis,
            ),
            (
                "rediss://u:Hunter-2@db:6379/0?ssl_cert_reqs=none",
                Kind::Redis,
            ),
        ];
        for (url, kind) in cases {
            let err = SecretUrl::parse(url, kind).expect_err(url);
            assert!(err.starts_with("bad "), "{url}: {err}");
            assert!(!err.contains("Hunter-2"), "{url}: {err}");
        }
        for (url, kind) in [
            ("mysql://u:p@db:3306/", Kind::Mysql),
            ("mysql://u:p@db/?prefer_socket=false", Kind::Mysql),
            (
                "postgres://u:p@db:5432/app?application_name=x",
                Kind::Postgres,
            ),
            ("postgresql://u@db/app?sslmode=disable", Kind::Postgres),
            ("redis://:p@db:6379/0?protocol=resp3", Kind::Redis),
            ("unix:///run/redis.sock?db=1&pass=p", Kind::Redis),
            ("rediss://u:p@db:6380/0", Kind::Redis),
            (
                "rediss://:p@db:6380/0?ssl_cert_reqs=CERT_REQUIRED&ssl_ca_certs=/etc/hostname",
                Kind::Redis,
            ),
            ("postgres://u@db/app?sslmode=require", Kind::Postgres),
            (
                "postgres://u@db/app?sslmode=verify-full&sslrootcert=system",
                Kind::Postgres,
            ),
            ("mysql://u:p@db/?ssl-mode=required", Kind::Mysql),
            (
                "mysql://u:p@db/?ssl-mode=VERIFY_IDENTITY&ssl-ca=/etc/hostname",
                Kind::Mysql,
            ),
        ] {
            SecretUrl::parse(url, kind).unwrap_or_else(|e| panic!("{url}: {e}"));
        }
    }

    #[test]
    fn tls_options_leave_the_url_and_keep_their_meaning() {
        let (url, tls) = super::super::tls::split_url(
            "postgres://u@db/app?application_name=x&sslmode=verify-ca&sslrootcert=/etc/hostname",
            Kind::Postgres,
        )
        .unwrap();
        assert_eq!(url, "postgres://u@db/app?application_name=x");
        assert_eq!(tls.mode, super::super::TlsMode::VerifyCa);
        let (url, tls) =
            super::super::tls::split_url("mysql://u@db/?ssl-mode=Preferred", Kind::Mysql).unwrap();
        assert_eq!(url, "mysql://u@db/");
        assert_eq!(tls.mode, super::super::TlsMode::Prefer);
        let (_, tls) = super::super::tls::split_url("rediss://db/0", Kind::Redis).unwrap();
        assert_eq!(tls.mode, super::super::TlsMode::VerifyFull);
    }

    #[test]
    fn secrets_are_found_encoded_and_decoded() {
        let secrets = url_secrets("postgres://u:p%40ss@h/db?password=x%2Fy");
        assert!(secrets.contains(&"p%40ss".to_string()), "{secrets:?}");
        assert!(secrets.contains(&"p@ss".to_string()), "{secrets:?}");
        assert!(secrets.contains(&"x/y".to_string()), "{secrets:?}");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn timeouts_of_zero_or_absurd_length_are_refused() {
        #[derive(Deserialize)]
        struct T {
            timeout: TargetTimeout,
        }
        let parse = |text: &str| toml::from_str::<T>(text).map(|t| t.timeout.0);
        assert_eq!(parse("timeout = \"2s\"").unwrap(), Duration::from_secs(2));
        for bad in ["\"0s\"", "0", "\"0ms\"", "\"11m\"", "\"100000000h\""] {
            let err = parse(&format!("timeout = {bad}")).expect_err(bad);
            assert!(err.to_string().contains("timeout"), "{bad}: {err}");
        }
    }

    #[test]
    fn work_deadline_is_the_earlier() {
        let target = Target {
            name: "x".into(),
            kind: Kind::Redis,
            managed: false,
            url: SecretUrl::parse("redis://h/", Kind::Redis).unwrap(),
            password_file: None,
            timeout: Duration::from_secs(3),
            slow_interval: DEFAULT_SLOW_INTERVAL,
            queues: vec![],
        };
        let soon = Instant::now() + Duration::from_secs(1);
        assert!(target.work_deadline(soon) <= soon - DEADLINE_MARGIN);
        let late = Instant::now() + Duration::from_secs(30);
        assert!(target.work_deadline(late) <= Instant::now() + Duration::from_secs(3));
    }
}
