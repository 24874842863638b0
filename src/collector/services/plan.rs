//! The plan and the services as the config gives them (`[plan]`, `[services.NAME]`): the types
//! the services collector reads, and the checks that refuse what no one can mean. `config` merges
//! the layers into these; this module uses only the leaf modules (`values`, `config_error`).

use regex::Regex;
use serde::Deserialize;

use crate::config_error::{at, Nonsense};
use crate::values::{
    check_cores, check_count, check_size, overlay, Bytes, Cores, Pattern, WholePattern,
};

/// A watched service with its matchers and, if the profile plans it, its budget.
#[derive(Debug, Clone)]
pub struct Service {
    /// Shared with every sample it labels (`stack_service_*{service}`), not copied into each.
    pub name: std::sync::Arc<str>,
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
    /// A service is planned when the profile says how many instances of it run or how much
    /// memory it may use (the monitoring stack: a budget, but no fixed count of process trees).
    pub fn is_planned(&self) -> bool {
        self.instances.unwrap_or(0) > 0 || self.memory.is_some()
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
    /// Searched in /proc/PID/maps of the process and of its children (a Gunicorn master loads
    /// its worker class's libraries only in the workers); read only once the other keys fit.
    pub maps: Option<Pattern>,
    pub exclude_maps: Option<Pattern>,
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
    /// Overrides each figure `top` gives, keeps the others.
    pub fn overlay(&mut self, top: PlanConfig) {
        overlay!(
            self,
            top;
            host_memory,
            host_cpu_cores,
            swap,
            system_memory,
            buffer_memory,
            database_pool_connections,
        );
    }

    /// Refuses figures no plan can mean: a host without memory or CPU, more than any host has.
    pub fn check(&self) -> Result<(), Nonsense> {
        let key = |key: &str| at(&["plan", key]);
        check_size(self.host_memory, Some("a host has some memory")).map_err(key("host_memory"))?;
        check_cores(self.host_cpu_cores, "a host has some CPU").map_err(key("host_cpu_cores"))?;
        check_size(self.swap, None).map_err(key("swap"))?;
        check_size(self.system_memory, None).map_err(key("system_memory"))?;
        check_size(self.buffer_memory, None).map_err(key("buffer_memory"))?;
        check_count(
            self.database_pool_connections,
            Some("the application could not reach its database"),
        )
        .map_err(key("database_pool_connections"))
    }
}

/// Texts of every kind a matcher sees (an empty command line, a path, a command, a cgroup line):
/// a pattern found in all of them matches every process.
const ANY_PROCESS: &[&str] = &[
    "",
    "x",
    "/usr/sbin/nginx -g daemon off;",
    "0::/system.slice",
];

impl Matcher {
    /// A matcher must pick some processes out: at least one of `comm`, `exe`, `cmdline`,
    /// `cgroup` that does not match everything, and no empty pattern. The error names the
    /// field, if one.
    pub fn check(&self) -> Result<(), (Option<&'static str>, String)> {
        let Matcher {
            comm,
            exe,
            cmdline,
            exclude_cmdline,
            cgroup,
            maps,
            exclude_maps,
        } = self;
        let positive = [
            ("comm", comm.as_ref().map(|p| (p.source(), &p.0))),
            ("exe", searched(exe)),
            ("cmdline", searched(cmdline)),
            ("cgroup", searched(cgroup)),
        ];
        let exclude = searched(exclude_cmdline);
        let filters = [
            ("exclude_cmdline", exclude),
            ("maps", searched(maps)),
            ("exclude_maps", searched(exclude_maps)),
        ];
        for (field, pattern) in positive.iter().chain(filters.iter()) {
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
}

/// A searched pattern as `(source, regex)`.
fn searched(pattern: &Option<Pattern>) -> Option<(&str, &Regex)> {
    pattern.as_ref().map(|p| (p.0.as_str(), &p.0))
}

fn matches_any_process(regex: &Regex) -> bool {
    ANY_PROCESS.iter().all(|text| regex.is_match(text))
}
