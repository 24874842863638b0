//! The config file and the built-in plan profiles.
//!
//! Three layers, each a TOML document of the same shape: the standard service definitions
//! (`profiles/services.toml`), a plan profile (`profiles/<name>.toml`, chosen by the config's
//! `profile` key, `vps-2gb` by default) and the user's config file. A later layer overrides a
//! service's fields one by one, so `[services.redis] memory_budget = "256MiB"` keeps the standard
//! matchers. Every value is checked while it is parsed, so an error points at its file, line and key.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use regex::Regex;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::collector::nginx::NginxConfig;
use crate::collector::storage::StorageConfig;
use crate::collector::target::{self, DbTargetLayer, MysqlUrl, PostgresUrl, RedisTargetLayer};

pub const DEFAULT_PROFILE: &str = "vps-2gb";

/// The built-in profiles, embedded so the binary needs no files beside it.
pub const PROFILES: &[(&str, &str)] = &[
    ("vps-2gb", include_str!("../profiles/vps-2gb.toml")),
    ("dev", include_str!("../profiles/dev.toml")),
    ("staging", include_str!("../profiles/staging.toml")),
    ("production", include_str!("../profiles/production.toml")),
    (
        "production-app",
        include_str!("../profiles/production-app.toml"),
    ),
    (
        "production-db",
        include_str!("../profiles/production-db.toml"),
    ),
    (
        "production-cache",
        include_str!("../profiles/production-cache.toml"),
    ),
];

const STANDARD_SERVICES: &str = include_str!("../profiles/services.toml");

/// The configuration in force: the layers merged.
#[derive(Debug, Clone)]
pub struct Config {
    pub profile: String,
    pub plan: PlanConfig,
    pub services: Vec<Service>,
    /// `[[mysql]]`, `[[postgres]]`, `[[redis]]` targets (see collector/target.rs).
    pub mysql: Vec<target::Target>,
    pub postgres: Vec<target::Target>,
    pub redis: Vec<target::Target>,
    /// `[nginx]`: access log and stub_status (collector/nginx.rs).
    pub nginx: NginxConfig,
    /// `[storage]`: directories to size (collector/storage.rs).
    pub storage: StorageConfig,
}

/// A watched service with its matchers and, if the profile plans it, its budget.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub budget: Budget,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Budget {
    pub memory: Option<u64>,
    pub instance_memory: Option<u64>,
    pub process_memory: Option<u64>,
    pub cpu_cores: Option<f64>,
    pub instances: Option<u32>,
    pub processes: Option<u32>,
}

impl Budget {
    /// A service is planned when the profile says how many instances of it run.
    pub fn is_planned(&self) -> bool {
        self.instances.unwrap_or(0) > 0
    }
}

/// One way to recognise a service's process; every field given must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    pub comm: Option<WholePattern>,
    pub exe: Option<Pattern>,
    pub cmdline: Option<Pattern>,
    pub exclude_cmdline: Option<Pattern>,
    pub cgroup: Option<Pattern>,
}

/// Host-level figures of the plan.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    pub host_memory: Option<Bytes>,
    pub host_cpu_cores: Option<Cores>,
    pub swap: Option<Bytes>,
    pub system_memory: Option<Bytes>,
    pub buffer_memory: Option<Bytes>,
    pub database_pool_connections: Option<u32>,
}

impl PlanConfig {
    fn overlay(&mut self, top: PlanConfig) {
        let PlanConfig {
            host_memory,
            host_cpu_cores,
            swap,
            system_memory,
            buffer_memory,
            database_pool_connections,
        } = top;
        self.host_memory = host_memory.or(self.host_memory);
        self.host_cpu_cores = host_cpu_cores.or(self.host_cpu_cores);
        self.swap = swap.or(self.swap);
        self.system_memory = system_memory.or(self.system_memory);
        self.buffer_memory = buffer_memory.or(self.buffer_memory);
        self.database_pool_connections =
            database_pool_connections.or(self.database_pool_connections);
    }
}

/// A service as one layer gives it: any field may be left to the layer below.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceLayer {
    #[serde(rename = "match")]
    matchers: Option<Vec<Matcher>>,
    memory_budget: Option<Bytes>,
    instance_memory_budget: Option<Bytes>,
    process_memory_budget: Option<Bytes>,
    cpu_budget: Option<Cores>,
    instances: Option<u32>,
    processes: Option<u32>,
}

/// One TOML document: the standard services, a profile or the user's file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layer {
    profile: Option<ProfileName>,
    #[allow(dead_code)] // documents the profile files; shown by nobody yet
    description: Option<String>,
    #[serde(default)]
    plan: PlanConfig,
    #[serde(default)]
    services: OrderedServices,
    #[serde(default)]
    mysql: Vec<DbTargetLayer<MysqlUrl>>,
    #[serde(default)]
    postgres: Vec<DbTargetLayer<PostgresUrl>>,
    #[serde(default)]
    redis: Vec<RedisTargetLayer>,
    #[serde(default)]
    nginx: NginxConfig,
    #[serde(default)]
    storage: StorageConfig,
}

/// Loads the configuration: `path` may be absent, then the default profile runs as it is.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let user = match path {
        Some(path) => {
            let name = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: name.clone(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!("cannot read: {e}"),
            })?;
            Some((name, text))
        }
        None => None,
    };
    match &user {
        Some((name, text)) => load_str(Some((name.as_str(), text.as_str()))),
        None => load_str(None),
    }
}

/// Loads from a config text already read: `(file name for messages, text)`.
pub fn load_str(user: Option<(&str, &str)>) -> Result<Config, ConfigError> {
    let user_layer = match user {
        Some((name, text)) => parse_layer(name, text)?,
        None => Layer::default(),
    };
    let profile = user_layer
        .profile
        .as_ref()
        .map_or(DEFAULT_PROFILE, |p| p.0.as_str())
        .to_string();
    let profile_text = PROFILES
        .iter()
        .find(|(name, _)| *name == profile)
        .map(|(_, text)| *text)
        .expect("ProfileName only accepts built-in profiles");

    let standard = parse_layer("profiles/services.toml (built in)", STANDARD_SERVICES)?;
    let profile_layer = parse_layer(&format!("profiles/{profile}.toml (built in)"), profile_text)?;

    let mut plan = PlanConfig::default();
    let mut services: Vec<(String, ServiceLayer)> = Vec::new();
    for layer in [standard, profile_layer] {
        plan.overlay(layer.plan);
        merge_services(&mut services, layer.services.0);
    }
    let Layer {
        plan: user_plan,
        services: user_services,
        mysql,
        postgres,
        redis,
        nginx,
        storage,
        ..
    } = user_layer;
    plan.overlay(user_plan);
    merge_services(&mut services, user_services.0);
    let (mysql, postgres, redis) = (
        target::mysql_targets(mysql),
        target::postgres_targets(postgres),
        target::redis_targets(redis),
    );
    for (targets, section) in [
        (&mysql, "mysql"),
        (&postgres, "postgres"),
        (&redis, "redis"),
    ] {
        target::check_unique(targets, section).map_err(|message| ConfigError {
            file: user.map_or("(built in)", |(f, _)| f).to_string(),
            line: 0,
            column: 0,
            key: section.to_string(),
            message,
        })?;
    }

    let services = services
        .into_iter()
        .map(|(name, layer)| resolve_service(name, layer, user))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Config {
        profile,
        plan,
        services,
        mysql,
        postgres,
        redis,
        nginx,
        storage,
    })
}

/// Parses one layer and refuses values that parse but cannot be meant (see `check_layer`).
fn parse_layer(file: &str, text: &str) -> Result<Layer, ConfigError> {
    let layer: Layer = toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
    check_layer(&layer).map_err(|nonsense| ConfigError::at_path(file, text, nonsense))?;
    Ok(layer)
}

fn merge_services(into: &mut Vec<(String, ServiceLayer)>, layer: Vec<(String, ServiceLayer)>) {
    for (name, top) in layer {
        match into.iter_mut().find(|(n, _)| *n == name) {
            Some((_, below)) => {
                below.matchers = top.matchers.or(below.matchers.take());
                below.memory_budget = top.memory_budget.or(below.memory_budget);
                below.instance_memory_budget =
                    top.instance_memory_budget.or(below.instance_memory_budget);
                below.process_memory_budget =
                    top.process_memory_budget.or(below.process_memory_budget);
                below.cpu_budget = top.cpu_budget.or(below.cpu_budget);
                below.instances = top.instances.or(below.instances);
                below.processes = top.processes.or(below.processes);
            }
            None => into.push((name, top)),
        }
    }
}

fn resolve_service(
    name: String,
    layer: ServiceLayer,
    user: Option<(&str, &str)>,
) -> Result<Service, ConfigError> {
    let matchers = layer.matchers.unwrap_or_default();
    if matchers.is_empty() {
        let (file, text) = user.unwrap_or(("(built in)", ""));
        return Err(ConfigError::at_table(
            file,
            text,
            &format!("services.{name}"),
            "a service needs at least one matcher: match = [{ comm = \"...\" }]",
        ));
    }
    let instances = layer.instances;
    let memory = layer.memory_budget.map(|b| b.0);
    // Without a per-instance figure, the plan's total is shared evenly between its instances.
    let instance_memory = layer
        .instance_memory_budget
        .map(|b| b.0)
        .or(match instances {
            Some(n) if n > 0 => memory.map(|m| m / u64::from(n)),
            _ => None,
        });
    Ok(Service {
        name,
        matchers,
        budget: Budget {
            memory,
            instance_memory,
            process_memory: layer.process_memory_budget.map(|b| b.0),
            cpu_cores: layer.cpu_budget.map(|c| c.0),
            instances,
            processes: layer.processes,
        },
    })
}

/// The largest size any figure may have: 1 PiB, more memory than any host has.
const MAX_BYTES: u64 = 1 << 50;
/// The most cores a figure may name: Linux's largest `NR_CPUS`.
const MAX_CORES: f64 = 8192.0;
/// The most processes, instances or connections a figure may name: Linux's largest `pid_max`
/// (each is at least one process or thread).
const MAX_COUNT: u32 = 1 << 22;

/// Texts of every kind a matcher sees (an empty command line, a path, a command, a cgroup line):
/// a pattern found in all of them matches every process.
const ANY_PROCESS: &[&str] = &[
    "",
    "x",
    "/usr/sbin/nginx -g daemon off;",
    "0::/system.slice",
];

/// A value that parses but cannot be meant: where it is and why it is refused.
#[derive(Debug)]
struct Nonsense {
    path: Vec<Step>,
    message: String,
}

/// One step of a path into a TOML document.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// `at(&["plan", "host_memory"])`: turns a message into a `Nonsense` at that key.
fn at(keys: &[&str]) -> impl FnOnce(String) -> Nonsense {
    let path = keys.iter().map(|k| Step::Key(k.to_string())).collect();
    move |message| Nonsense { path, message }
}

/// Refuses what a layer's types accept but no one can mean: zero or absurdly large figures,
/// empty paths, matchers that match every process. The database targets check themselves
/// (collector/target.rs).
fn check_layer(layer: &Layer) -> Result<(), Nonsense> {
    check_plan(&layer.plan)?;
    for (name, service) in &layer.services.0 {
        check_service(name, service)?;
    }
    check_nginx(&layer.nginx)?;
    check_storage(&layer.storage)
}

fn check_plan(plan: &PlanConfig) -> Result<(), Nonsense> {
    let key = |key: &str| at(&["plan", key]);
    check_size(plan.host_memory, Some("a host has some memory")).map_err(key("host_memory"))?;
    check_cores(plan.host_cpu_cores, "a host has some CPU").map_err(key("host_cpu_cores"))?;
    check_size(plan.swap, None).map_err(key("swap"))?;
    check_size(plan.system_memory, None).map_err(key("system_memory"))?;
    check_size(plan.buffer_memory, None).map_err(key("buffer_memory"))?;
    check_count(
        plan.database_pool_connections,
        Some("the application could not reach its database"),
    )
    .map_err(key("database_pool_connections"))
}

fn check_service(name: &str, service: &ServiceLayer) -> Result<(), Nonsense> {
    let key = |key: &str| at(&["services", name, key]);
    let no_budget = "any use would be over budget (leave the key out for no budget)";
    check_size(service.memory_budget, Some(no_budget)).map_err(key("memory_budget"))?;
    check_size(service.instance_memory_budget, Some(no_budget))
        .map_err(key("instance_memory_budget"))?;
    check_size(service.process_memory_budget, Some(no_budget))
        .map_err(key("process_memory_budget"))?;
    check_cores(service.cpu_budget, no_budget).map_err(key("cpu_budget"))?;
    // 0 instances is how a profile says "watched, not planned".
    check_count(service.instances, None).map_err(key("instances"))?;
    check_count(
        service.processes,
        Some("an instance is at least one process"),
    )
    .map_err(key("processes"))?;
    let Some(matchers) = &service.matchers else {
        return Ok(());
    };
    if matchers.is_empty() {
        return Err(key("match")(
            "an empty list matches no process: give at least one matcher, \
             match = [{ comm = \"...\" }]"
                .to_string(),
        ));
    }
    for (index, matcher) in matchers.iter().enumerate() {
        check_matcher(matcher).map_err(|(field, message)| {
            let mut path: Vec<Step> = ["services", name, "match"]
                .iter()
                .map(|k| Step::Key(k.to_string()))
                .collect();
            path.push(Step::Index(index));
            path.extend(field.map(|f| Step::Key(f.to_string())));
            Nonsense { path, message }
        })?;
    }
    Ok(())
}

/// A matcher must pick some processes out: at least one of `comm`, `exe`, `cmdline`, `cgroup`
/// that does not match everything, and no empty pattern. The error names the field, if one.
fn check_matcher(matcher: &Matcher) -> Result<(), (Option<&'static str>, String)> {
    let Matcher {
        comm,
        exe,
        cmdline,
        exclude_cmdline,
        cgroup,
    } = matcher;
    let positive = [
        ("comm", comm.as_ref().map(|p| (p.source(), &p.0))),
        ("exe", searched(exe)),
        ("cmdline", searched(cmdline)),
        ("cgroup", searched(cgroup)),
    ];
    let exclude = searched(exclude_cmdline);
    for (field, pattern) in positive.iter().chain([("exclude_cmdline", exclude)].iter()) {
        if let Some((source, _)) = pattern {
            if source.is_empty() {
                return Err((Some(field), "an empty pattern".to_string()));
            }
        }
    }
    if let Some((source, regex)) = exclude {
        if matches_any_process(regex) {
            return Err((
                Some("exclude_cmdline"),
                format!("{source:?} excludes every process: the matcher could never match"),
            ));
        }
    }
    let given: Vec<_> = positive
        .iter()
        .filter_map(|(field, p)| p.map(|(source, regex)| (*field, source, regex)))
        .collect();
    if given.is_empty() {
        return Err((
            None,
            "a matcher without comm, exe, cmdline or cgroup matches every process".to_string(),
        ));
    }
    if given.iter().all(|(_, _, regex)| matches_any_process(regex)) {
        let (field, source, _) = given[0];
        return Err((
            Some(field),
            format!("{source:?} matches every process: name the service's own program"),
        ));
    }
    Ok(())
}

/// A searched pattern as `(source, regex)`.
fn searched(pattern: &Option<Pattern>) -> Option<(&str, &Regex)> {
    pattern.as_ref().map(|p| (p.0.as_str(), &p.0))
}

fn matches_any_process(regex: &Regex) -> bool {
    ANY_PROCESS.iter().all(|text| regex.is_match(text))
}

fn check_nginx(nginx: &NginxConfig) -> Result<(), Nonsense> {
    if let Some(path) = &nginx.access_log {
        check_path(path).map_err(at(&["nginx", "access_log"]))?;
    }
    if let Some(url) = &nginx.stub_status_url {
        if url.port == 0 {
            return Err(at(&["nginx", "stub_status_url"])(
                "port 0: no server listens there".to_string(),
            ));
        }
    }
    Ok(())
}

fn check_storage(storage: &StorageConfig) -> Result<(), Nonsense> {
    for (name, path) in &storage.directories {
        check_path(path).map_err(at(&["storage", "directories", &name.0]))?;
    }
    let never_starts = "every walk would stop before it starts";
    if storage.max_files == Some(0) {
        return Err(at(&["storage", "max_files"])(format!(
            "0 entries: {never_starts}"
        )));
    }
    if storage.max_duration.is_some_and(|d| d.0.is_zero()) {
        return Err(at(&["storage", "max_duration"])(format!(
            "0s: {never_starts}"
        )));
    }
    Ok(())
}

/// A size at most `MAX_BYTES`; `zero` says why 0 cannot be meant, when it cannot.
fn check_size(size: Option<Bytes>, zero: Option<&str>) -> Result<(), String> {
    match (size, zero) {
        (Some(Bytes(0)), Some(why)) => Err(format!("0 bytes: {why}")),
        (Some(Bytes(n)), _) if n > MAX_BYTES => Err(format!(
            "{n} bytes is more than 1 PiB, more memory than any host has"
        )),
        _ => Ok(()),
    }
}

/// Cores: more than 0 (`zero` says why) and at most `MAX_CORES`.
fn check_cores(cores: Option<Cores>, zero: &str) -> Result<(), String> {
    match cores {
        Some(Cores(0.0)) => Err(format!("0 cores: {zero}")),
        Some(Cores(n)) if n > MAX_CORES => Err(format!(
            "{n} cores is more than Linux supports ({MAX_CORES})"
        )),
        _ => Ok(()),
    }
}

/// A count at most `MAX_COUNT`; `zero` says why 0 cannot be meant, when it cannot.
fn check_count(count: Option<u32>, zero: Option<&str>) -> Result<(), String> {
    match (count, zero) {
        (Some(0), Some(why)) => Err(format!("0: {why}")),
        (Some(n), _) if n > MAX_COUNT => Err(format!(
            "{n} is more than the {MAX_COUNT} processes Linux allows at most"
        )),
        _ => Ok(()),
    }
}

/// A path the exporter can open: not empty (which would be the working directory) and without
/// a NUL character (which no system call takes).
fn check_path(path: &Path) -> Result<(), String> {
    let text = path.as_os_str();
    if text.is_empty() {
        return Err("an empty path".to_string());
    }
    if text.as_encoded_bytes().contains(&0) {
        return Err("a path cannot contain a NUL character".to_string());
    }
    Ok(())
}

/// A size in bytes: an integer, or a string such as "512MiB", "512MB", "512M" or "1.5GiB".
/// As in MySQL's and Redis's own configs, K, M, G and T are powers of 1024 with or without `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            de::Error::custom(
                "expected a size: a whole number of bytes or a string like \"512MiB\"",
            )
        })? {
            Raw::Int(n) if n < 0 => Err(de::Error::custom(format!(
                "a size cannot be negative (got {n})"
            ))),
            Raw::Int(n) => Ok(Bytes(n as u64)),
            Raw::Text(s) => parse_size(&s).map(Bytes).map_err(de::Error::custom),
        }
    }
}

pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"512MiB\""))?;
    if value < 0.0 {
        return Err(format!("a size cannot be negative (got {text:?})"));
    }
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?} (use B, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    Ok((value * multiplier as f64).round() as u64)
}

/// A duration in the config: "3s", "500ms", "2m", "1h", or a whole number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        let expected = "expected a duration like \"2s\", \"500ms\" or \"5m\"";
        match Raw::deserialize(d).map_err(|_| de::Error::custom(expected))? {
            Raw::Int(n) => parse_duration(&n.to_string())
                .map(ConfigDuration)
                .map_err(|e| de::Error::custom(format!("{expected}: {e}"))),
            Raw::Text(text) => parse_duration(&text)
                .map(ConfigDuration)
                .map_err(de::Error::custom),
        }
    }
}

const MAX_DURATION_SECONDS: f64 = 86_400.0;

/// A duration such as "3s", "500ms", "2m" or "1h"; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    let (number, unit) = trimmed.split_at(
        trimmed
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(trimmed.len()),
    );
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"3s\", \"500ms\" or \"2m\""))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit in {text:?} (use ms, s, m or h)")),
    };
    if !(seconds >= 0.0 && seconds.is_finite()) {
        return Err(format!("{text:?} is not a positive duration"));
    }
    // Longer is never meant, and an Instant plus a huge duration overflows.
    if seconds > MAX_DURATION_SECONDS {
        return Err(format!("{text:?} is longer than a day"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A number of CPU cores, possibly fractional, never negative.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cores(pub f64);

impl<'de> Deserialize<'de> for Cores {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = f64::deserialize(d)?;
        if !(value >= 0.0 && value.is_finite()) {
            return Err(de::Error::custom(format!(
                "a number of cores is finite and not negative (got {value})"
            )));
        }
        Ok(Cores(value))
    }
}

/// A regex searched anywhere in the text.
#[derive(Debug, Clone)]
pub struct Pattern(pub Regex);

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Regex::new(&text).map(Pattern).map_err(|e| {
            de::Error::custom(format!(
                "bad regex {text:?}: {}",
                first_line(&e.to_string())
            ))
        })
    }
}

/// A regex that must match the whole text (used for `comm`, as process-exporter does).
#[derive(Debug, Clone)]
pub struct WholePattern(pub Regex);

impl<'de> Deserialize<'de> for WholePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Regex::new(&text).map_err(|e| {
            de::Error::custom(format!(
                "bad regex {text:?}: {}",
                first_line(&e.to_string())
            ))
        })?;
        Ok(WholePattern(
            Regex::new(&format!("^(?:{text})$")).expect("checked above"),
        ))
    }
}

impl WholePattern {
    /// The pattern as the config gave it, without the anchors added here.
    pub fn source(&self) -> &str {
        let anchored = self.0.as_str();
        anchored
            .strip_prefix("^(?:")
            .and_then(|s| s.strip_suffix(")$"))
            .unwrap_or(anchored)
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(text)
        .trim()
        .to_string()
}

/// A built-in profile's name.
#[derive(Debug, Clone)]
struct ProfileName(String);

impl<'de> Deserialize<'de> for ProfileName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        if PROFILES.iter().any(|(known, _)| *known == name) {
            return Ok(ProfileName(name));
        }
        let known: Vec<&str> = PROFILES.iter().map(|(n, _)| *n).collect();
        Err(de::Error::custom(format!(
            "unknown profile {name:?}; the built-in profiles are {}",
            known.join(", ")
        )))
    }
}

/// `[services.NAME]` tables in the order the document gives them: the first service whose matcher
/// fits a process wins, so order is meaning.
#[derive(Debug, Default)]
struct OrderedServices(Vec<(String, ServiceLayer)>);

impl<'de> Deserialize<'de> for OrderedServices {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct OrderedVisitor;
        impl<'de> Visitor<'de> for OrderedVisitor {
            type Value = OrderedServices;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of services")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut services = Vec::new();
                while let Some((name, service)) = map.next_entry::<String, ServiceLayer>()? {
                    services.push((name, service));
                }
                Ok(OrderedServices(services))
            }
        }
        d.deserialize_map(OrderedVisitor)
    }
}

/// A config problem, located: `file:line:column: key: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    fn from_toml(file: &str, text: &str, error: &toml::de::Error) -> ConfigError {
        let offset = error.span().map_or(0, |s| s.start);
        let (line, column) = line_and_column(text, offset);
        ConfigError {
            file: file.to_string(),
            line,
            column,
            key: key_at(text, line),
            message: error.message().trim().to_string(),
        }
    }

    /// Locates a value refused after parsing: the key is the path up to any array index, the
    /// line and column those of the value itself.
    fn at_path(file: &str, text: &str, nonsense: Nonsense) -> ConfigError {
        let (line, column) =
            span_of(text, &nonsense.path).map_or((0, 0), |offset| line_and_column(text, offset));
        let key: Vec<&str> = nonsense
            .path
            .iter()
            .map_while(|step| match step {
                Step::Key(key) => Some(key.as_str()),
                Step::Index(_) => None,
            })
            .collect();
        ConfigError {
            file: file.to_string(),
            line,
            column,
            key: key.join("."),
            message: nonsense.message,
        }
    }

    fn at_table(file: &str, text: &str, table: &str, message: &str) -> ConfigError {
        let header = format!("[{table}]");
        let line = text
            .lines()
            .position(|l| l.trim_start().starts_with(&header))
            .map_or(0, |i| i + 1);
        ConfigError {
            file: file.to_string(),
            line,
            column: 1,
            key: table.to_string(),
            message: message.to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// The offset of the value at `path` in `text`, or of the deepest step of it that is there.
fn span_of(text: &str, path: &[Step]) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut table = root.get_ref();
    let mut array = None;
    let mut offset = None;
    for step in path {
        let value = match step {
            Step::Key(key) => table.get(key.as_str()),
            Step::Index(index) => array.and_then(|a: &toml::de::DeArray| a.get(*index)),
        };
        let Some(value) = value else { break };
        offset = Some(value.span().start);
        let inner = value.get_ref();
        if let Some(t) = inner.as_table() {
            table = t;
        }
        array = inner.as_array();
    }
    offset
}

/// The dotted key at `line` (1-based): the nearest `[table]` header above it and the nearest
/// `key =` at or above it within that table (an inline table in a multi-line array has its key
/// lines above).
fn key_at(text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.lines().take(line).map(str::trim).collect();
    let mut key = None;
    for current in lines.iter().rev() {
        if current.starts_with('[') {
            let table = current.trim_matches(|c| c == '[' || c == ']').trim();
            return match key {
                Some(key) => format!("{table}.{key}"),
                None => table.to_string(),
            };
        }
        if key.is_none() {
            key = bare_key(current);
        }
    }
    key.unwrap_or_default().to_string()
}

/// `name` of a `name = value` line.
fn bare_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let is_key = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    is_key.then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        load_str(Some(("stack.toml", text)))
    }

    fn service<'a>(config: &'a Config, name: &str) -> &'a Service {
        config.services.iter().find(|s| s.name == name).unwrap()
    }

    #[test]
    fn no_config_runs_the_vps_profile() {
        let config = load_str(None).unwrap();
        assert_eq!(config.profile, "vps-2gb");
        assert_eq!(config.plan.host_memory, Some(Bytes(2 << 30)));
        assert_eq!(config.plan.database_pool_connections, Some(20));
        let wsgi = service(&config, "wsgi");
        assert_eq!(wsgi.budget.memory, Some(600 << 20));
        assert_eq!(wsgi.budget.process_memory, Some(300 << 20));
        assert_eq!(wsgi.budget.processes, Some(3));
        assert!(service(&config, "redis").budget.is_planned());
        // Watched but not planned on this profile.
        assert!(!service(&config, "postgresql").budget.is_planned());
        assert!(!service(&config, "asgi").budget.is_planned());
    }

    #[test]
    fn every_profile_parses_and_plans_something() {
        for (name, _) in PROFILES {
            let config = load_text(&format!("profile = {name:?}\n")).unwrap();
            assert!(
                config.services.iter().any(|s| s.budget.is_planned()),
                "{name} plans nothing"
            );
        }
    }

    #[test]
    fn per_instance_budget_defaults_to_an_even_share() {
        let config = load_text("profile = \"production-app\"\n").unwrap();
        let wsgi = service(&config, "wsgi");
        assert_eq!(wsgi.budget.memory, Some(3 << 30));
        assert_eq!(wsgi.budget.instance_memory, Some(3 << 29));
        assert_eq!(wsgi.budget.cpu_cores, Some(4.0));
    }

    #[test]
    fn user_override_keeps_standard_matchers() {
        let config = load_text("[services.redis]\nmemory_budget = \"256MiB\"\n").unwrap();
        let redis = service(&config, "redis");
        assert_eq!(redis.budget.memory, Some(256 << 20));
        assert_eq!(redis.budget.instances, Some(1));
        assert_eq!(redis.matchers.len(), 1);
    }

    #[test]
    fn user_defined_service_is_added_in_order() {
        let config = load_text(
            "[services.flower]\nmatch = [{ cmdline = 'celery .*flower' }]\ninstances = 1\n",
        )
        .unwrap();
        assert_eq!(config.services.last().unwrap().name, "flower");
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512mb"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err =
            load_text("profile = \"vps-2gb\"\n\n[services.redis]\nmemroy_budget = \"1GiB\"\n")
                .unwrap_err();
        assert_eq!((err.file.as_str(), err.line), ("stack.toml", 4));
        assert_eq!(err.key, "services.redis.memroy_budget");
        assert!(err.message.contains("unknown field"), "{err}");
    }

    #[test]
    fn bad_regex_is_located() {
        let err = load_text("[services.web]\nmatch = [{ cmdline = 'gunicorn(' }]\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.key, "services.web.match");
        assert!(err.message.contains("bad regex"), "{err}");
    }

    #[test]
    fn negative_budget_is_located() {
        let err = load_text("[services.redis]\nmemory_budget = -5\n").unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.key, "services.redis.memory_budget");
        assert!(err.message.contains("negative"), "{err}");
        let err = load_text("[services.redis]\ncpu_budget = -1.5\n").unwrap_err();
        assert!(err.message.contains("negative"), "{err}");
    }

    #[test]
    fn unknown_profile_lists_the_known_ones() {
        let err = load_text("# my box\nprofile = \"vps-4gb\"\n").unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (2, "profile"));
        assert!(err.message.contains("production-cache"), "{err}");
        assert_eq!(
            err.to_string().lines().next().unwrap(),
            format!("stack.toml:2:11: key `profile`: {}", err.message)
        );
    }

    #[test]
    fn traffic_and_storage_sections_parse_and_are_checked() {
        let config = load_text(
            "[nginx]\naccess_log = \"/var/log/nginx/access.log\"\nformat = \"stack\"\n\
             asgi_prefixes = [\"/api/async/\"]\n\
             [storage]\ndirectories = { backups = \"/var/backups/mysql\" }\nmax_duration = \"1s\"\n",
        )
        .unwrap();
        assert_eq!(config.nginx.asgi_prefixes.unwrap()[0].0, "/api/async/");
        assert_eq!(config.storage.directories.len(), 1);
        let err = load_text("[nginx]\nformat = \"json\"\n").unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (2, "nginx.format"));
        let err = load_text("[nginx]\nstatic_prefixes = [\"static/\"]\n").unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (2, "nginx.static_prefixes"));
        let err = load_text("[nginx]\n\nstub_status_url = \"https://x/\"\n").unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (3, "nginx.stub_status_url"));
        let err = load_text("[storage]\ndirectories = { Backups = \"/b\" }\n").unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        let err = load_text("[storage]\nmax_duration = \"soon\"\n").unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (2, "storage.max_duration"));
    }

    #[test]
    fn new_service_without_matcher_is_refused() {
        let err = load_text("[services.flower]\ninstances = 1\n").unwrap_err();
        assert_eq!((err.line, err.key.as_str()), (1, "services.flower"));
    }

    #[test]
    fn database_targets_parse() {
        let config = load_text(
            "[[mysql]]\nname = \"main\"\nurl = \"mysql://monitor@db:3306/\"\n\
             password_file = \"/run/secrets/x\"\ntimeout = \"2s\"\n\
             [[redis]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:6379/0\"\n\
             queues = [\"celery\", \"celery\\u0006\\u00163\"]\n",
        )
        .unwrap();
        assert_eq!(config.mysql[0].name, "main");
        assert_eq!(config.mysql[0].timeout, std::time::Duration::from_secs(2));
        assert_eq!(config.redis[0].queues[1], "celery\x06\x163");
        assert!(config.postgres.is_empty());
    }

    #[test]
    fn bad_database_url_is_located_without_its_text() {
        let err =
            load_text("[[postgres]]\nname = \"pg\"\nurl = \"mysql://u:sekrit@h/\"\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.key, "postgres.url");
        assert!(!err.to_string().contains("sekrit"), "{err}");
    }

    /// (line, column, key) of the error `text` gives.
    fn refused(text: &str) -> (usize, usize, String, String) {
        let err = load_text(text).expect_err(text);
        (err.line, err.column, err.key, err.message)
    }

    #[test]
    fn a_matcher_that_matches_every_process_is_refused() {
        let (line, column, key, message) = refused("[services.web]\ninstances = 1\nmatch = [{}]\n");
        assert_eq!((line, column, key.as_str()), (3, 10, "services.web.match"));
        assert!(message.contains("matches every process"), "{message}");
        let (line, _, key, message) =
            refused("[services.web]\nmatch = [\n  { comm = \"x\" },\n  { cmdline = '.*' },\n]\n");
        assert_eq!((line, key.as_str()), (4, "services.web.match"));
        assert!(
            message.contains("\".*\" matches every process"),
            "{message}"
        );
        for matcher in [
            "{ exclude_cmdline = 'x' }",
            "{ comm = '' }",
            "{ comm = 'x', exclude_cmdline = '' }",
            "{ comm = '.*' }",
            "{ exe = '', cmdline = 'x' }",
            "{ cgroup = '.?', comm = '.+|' }",
            "{ comm = 'redis', exclude_cmdline = '^' }",
        ] {
            let (line, _, key, _) = refused(&format!("[services.redis]\nmatch = [{matcher}]\n"));
            assert_eq!(
                (line, key.as_str()),
                (2, "services.redis.match"),
                "{matcher}"
            );
        }
        let (_, _, key, message) = refused("[services.redis]\nmatch = []\n");
        assert_eq!(key, "services.redis.match");
        assert!(message.contains("no process"), "{message}");
        // Patterns that match much but not every text are the user's choice.
        load_text("[services.kthreads]\nmatch = [{ cmdline = '^$' }]\n").unwrap();
        load_text("[services.web]\nmatch = [{ comm = '.*', cgroup = 'docker' }]\n").unwrap();
    }

    #[test]
    fn impossible_figures_are_refused_with_their_key() {
        for (text, key) in [
            ("[plan]\nhost_memory = 0\n", "plan.host_memory"),
            (
                "[plan]\nhost_memory = \"17179869184GiB\"\n",
                "plan.host_memory",
            ),
            ("[plan]\nswap = \"2PiB\"\n", "plan.swap"),
            ("[plan]\nswap = \"2048TiB\"\n", "plan.swap"),
            ("[plan]\nhost_cpu_cores = 0\n", "plan.host_cpu_cores"),
            ("[plan]\nhost_cpu_cores = 1e6\n", "plan.host_cpu_cores"),
            (
                "[plan]\ndatabase_pool_connections = 0\n",
                "plan.database_pool_connections",
            ),
            (
                "[services.redis]\nmemory_budget = \"0MiB\"\n",
                "services.redis.memory_budget",
            ),
            (
                "[services.redis]\nmemory_budget = \"16777216TiB\"\n",
                "services.redis.memory_budget",
            ),
            (
                "[services.redis]\ninstance_memory_budget = 0\n",
                "services.redis.instance_memory_budget",
            ),
            (
                "[services.redis]\nprocess_memory_budget = \"0.1\"\n",
                "services.redis.process_memory_budget",
            ),
            (
                "[services.redis]\ncpu_budget = 0.0\n",
                "services.redis.cpu_budget",
            ),
            (
                "[services.redis]\ninstances = 4294967295\n",
                "services.redis.instances",
            ),
            (
                "[services.redis]\nprocesses = 0\n",
                "services.redis.processes",
            ),
            ("[nginx]\naccess_log = \"\"\n", "nginx.access_log"),
            (
                "[nginx]\naccess_log = \"/var/log/a\\u0000b\"\n",
                "nginx.access_log",
            ),
            (
                "[nginx]\nstub_status_url = \"http://127.0.0.1:0/s\"\n",
                "nginx.stub_status_url",
            ),
            (
                "[storage]\ndirectories = { backups = \"\" }\n",
                "storage.directories.backups",
            ),
            (
                "[storage.directories]\nbackups = \"\"\n",
                "storage.directories.backups",
            ),
            ("[storage]\nmax_files = 0\n", "storage.max_files"),
            ("[storage]\nmax_duration = \"0s\"\n", "storage.max_duration"),
        ] {
            let (line, column, found, _) = refused(&format!("# comment\n{text}"));
            assert_eq!((line, found.as_str()), (3, key), "{text}");
            assert!(column > 1, "{text}: the column points at the value");
        }
        // Zero is meant here: no swap, no allowance, watched but not planned, walk every scrape.
        load_text(
            "[plan]\nswap = 0\nsystem_memory = 0\nbuffer_memory = 0\n\
             [services.redis]\ninstances = 0\n[storage]\nmin_interval = \"0s\"\n",
        )
        .unwrap();
    }

    #[test]
    fn dotted_keys_are_located_too() {
        let (line, column, key, _) = refused("profile = \"dev\"\nplan.host_memory = 0\n");
        assert_eq!((line, column, key.as_str()), (2, 20, "plan.host_memory"));
    }

    #[test]
    fn duplicate_target_names_are_refused() {
        let err = load_text(
            "[[redis]]\nname = \"a\"\nurl = \"redis://h/\"\n[[redis]]\nname = \"a\"\nurl = \"redis://i/\"\n",
        )
        .unwrap_err();
        assert!(err.message.contains("two targets"), "{err}");
    }
}
