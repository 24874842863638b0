//! The config file and the built-in plan profiles.
//!
//! Three layers, each a TOML document of the same shape: the standard service definitions
//! (`profiles/services.toml`), a plan profile (`profiles/<name>.toml`, chosen by the config's
//! `profile` key, `vps-2gb` by default) and the user's config file. A later layer overrides a
//! service's fields one by one, so `[services.redis] memory_budget = "256MiB"` keeps the standard
//! matchers. Every value is checked while it is parsed, so an error points at its file, line and key.
//!
//! This module only assembles: the value types (sizes, durations) are in `values.rs`, the located
//! errors in `config_error.rs`, and each section's type and its checks in the collector it
//! configures (`[plan]` and `[services]` in collector/services/plan.rs, `[nginx]`, `[storage]`,
//! the database targets in collector/target.rs). Dependencies point one way: config imports the
//! collectors' section types; a collector never imports config (tests/layers.rs checks it).

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::collector::nginx::NginxConfig;
use crate::collector::services::{Budget, Matcher, PlanConfig, Service};
use crate::collector::storage::StorageConfig;
use crate::collector::target::{self, DbTargetLayer, MysqlUrl, PostgresUrl, RedisTargetLayer};
use crate::config_error::{at, Nonsense, Step};
use crate::values::{check_cores, check_count, check_size, overlay, Bytes, Cores};

// Kept reachable here, where main.rs and the fuzz target have always found them.
pub use crate::config_error::ConfigError;
pub use crate::values::{parse_duration, parse_positive_duration, parse_size, ConfigDuration};

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

/// The configuration in force: the layers merged into the collectors' sections.
pub use crate::collector::Sections as Config;

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

impl ServiceLayer {
    /// Overrides each field `top` gives, keeps the others (the matchers as a whole).
    fn overlay(&mut self, top: ServiceLayer) {
        overlay!(
            self,
            top;
            matchers,
            memory_budget,
            instance_memory_budget,
            process_memory_budget,
            cpu_budget,
            instances,
            processes,
        );
    }
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
            Some((_, below)) => below.overlay(top),
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
        name: name.into(),
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

/// Refuses what a layer's types accept but no one can mean: zero or absurdly large figures,
/// empty paths, matchers that match every process. Each section's owner has its check; the
/// database targets check themselves while they parse (collector/target.rs).
fn check_layer(layer: &Layer) -> Result<(), Nonsense> {
    layer.plan.check()?;
    for (name, service) in &layer.services.0 {
        check_service(name, service)?;
    }
    layer.nginx.check()?;
    layer.storage.check()
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
        matcher.check().map_err(|(field, message)| {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        load_str(Some(("stack.toml", text)))
    }

    fn service<'a>(config: &'a Config, name: &str) -> &'a Service {
        config.services.iter().find(|s| *s.name == *name).unwrap()
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
    fn every_profile_budgets_the_monitoring_stack_apart_from_the_os() {
        for (name, _) in PROFILES {
            let config = load_text(&format!("profile = {name:?}\n")).unwrap();
            let monitoring = service(&config, "monitoring").budget.memory;
            assert!(monitoring.is_some(), "{name} gives monitoring no budget");
        }
        // K3: the hybrid plan's headroom "for OS and monitoring" is the OS's share plus
        // monitoring's budget, to the MiB.
        for (name, headroom) in [("staging", 1.7), ("production", 2.5)] {
            let config = load_text(&format!("profile = {name:?}\n")).unwrap();
            let os = config.plan.system_memory.unwrap().0;
            let monitoring = service(&config, "monitoring").budget.memory.unwrap();
            let headroom = (headroom * f64::from(1u32 << 30)) as u64;
            assert!(
                (os + monitoring).abs_diff(headroom) < 1 << 20,
                "{name}: {os} + {monitoring} is not the {headroom} headroom"
            );
        }
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
        assert_eq!(&*config.services.last().unwrap().name, "flower");
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
             queues = [\"celery\", \"celery\\u0006\\u00163\"]\nslow_interval = \"5m\"\n",
        )
        .unwrap();
        assert_eq!(config.mysql[0].name, "main");
        assert_eq!(config.mysql[0].timeout, std::time::Duration::from_secs(2));
        assert_eq!(config.redis[0].queues[1], "celery\x06\x163");
        assert_eq!(
            config.redis[0].slow_interval,
            std::time::Duration::from_secs(300)
        );
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
