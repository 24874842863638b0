//! The thresholds and the plan's words the status is judged by, copied from the alerts of
//! `rules/*.yml` (the one place to change them): each limit names its alert, and a test fails
//! when a number, a severity, a summary or an action here differs from the rule's. The rules
//! judge over time (`for: 15m`, hour averages); the status judges the figures of now.

use serde::Serialize;

/// An alert's severity, as its rule labels it. `Info` is the plan's advice (scale up, add a
/// container), not an alert: it never makes `stack_exporter status` exit non-zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limit {
    pub alert: &'static str,
    /// THRESHOLDS.md rows, as the rule's `plan_ref`.
    pub rows: &'static str,
    /// The first number the rule's expression compares against, where the status uses it.
    pub at: Option<f64>,
    pub severity: Severity,
    pub summary: &'static str,
    /// What the plan says to do, in its own words (the scaling advisories' `action`).
    pub action: Option<&'static str>,
}

impl Limit {
    pub fn at(&self) -> f64 {
        self.at
            .expect("a limit the status compares against has a number")
    }
}

pub const HOST_MEMORY: Limit = Limit {
    alert: "StackHostMemoryHigh",
    rows: "A1",
    at: Some(0.85),
    severity: Severity::Warning,
    summary: "Host memory use is above the plan's 85% alert threshold.",
    action: None,
};
pub const HOST_MEMORY_SCALE_UP: Limit = Limit {
    alert: "StackHostMemoryScaleUp",
    rows: "S1",
    at: Some(0.9),
    severity: Severity::Info,
    summary: "Host memory has been consistently above 90%; the plan says to scale up.",
    action: Some("vertical: 4 GB RAM, 4 cores"),
};
pub const HOST_CPU: Limit = Limit {
    alert: "StackHostCpuBusy",
    rows: "A2",
    at: Some(0.8),
    severity: Severity::Warning,
    summary: "Host CPU has been more than 80% busy for over 5 minutes.",
    action: None,
};
pub const HOST_CPU_SCALE_UP: Limit = Limit {
    alert: "StackHostCpuScaleUp",
    rows: "S2",
    at: Some(0.8),
    severity: Severity::Info,
    summary: "Host CPU has been consistently above 80%; the plan says to scale up.",
    action: Some("vertical: 4 GB RAM, 4 cores; or horizontal: load balancer + app servers"),
};
pub const FILESYSTEM: Limit = Limit {
    alert: "StackHostFilesystemUsageHigh",
    rows: "A3,S3,D1",
    at: Some(0.8),
    severity: Severity::Warning,
    summary: "A filesystem is more than 80% full.",
    action: None,
};
pub const SWAP_DRIFT: Limit = Limit {
    alert: "StackSwapDrift",
    rows: "C7,M9",
    at: Some(0.9),
    severity: Severity::Warning,
    summary: "The host's swap differs from the swap the plan prescribes.",
    action: None,
};
pub const SYSTEM_MEMORY: Limit = Limit {
    alert: "StackSystemMemoryOverBudget",
    rows: "M1,H2,H3",
    at: Some(1.0),
    severity: Severity::Warning,
    summary: "The OS and unwatched processes use more memory than the plan allows them.",
    action: None,
};
pub const SERVICE_DOWN: Limit = Limit {
    alert: "StackServiceDown",
    rows: "A5",
    at: None,
    severity: Severity::Critical,
    summary: "A service the plan runs on this host has no running process.",
    action: None,
};
pub const INSTANCES: Limit = Limit {
    alert: "StackServiceInstancesMismatch",
    rows: "A5,H1,H2,H3,H4",
    at: None,
    severity: Severity::Warning,
    summary: "A service runs a different number of instances than the plan.",
    action: None,
};
pub const GUNICORN_WORKERS: Limit = Limit {
    alert: "StackGunicornWorkersDrift",
    rows: "C3,M4",
    at: None,
    severity: Severity::Warning,
    summary: "Gunicorn runs a different number of processes than the plan's 2 workers.",
    action: None,
};
pub const CELERY_POOL: Limit = Limit {
    alert: "StackCeleryPoolDrift",
    rows: "C4,M5",
    at: None,
    severity: Severity::Warning,
    summary: "The Celery worker runs more processes than the plan's single --pool=solo worker.",
    action: None,
};
pub const SERVICE_MEMORY: Limit = Limit {
    alert: "StackServiceMemoryOverBudget",
    rows: "M2,M3,M4,M5,M6,M7,H1,H2,H3,H4",
    at: Some(1.0),
    severity: Severity::Warning,
    summary: "A service uses more memory than the plan budgets for it.",
    action: None,
};
pub const MONITORING_MEMORY: Limit = Limit {
    alert: "StackMonitoringMemoryOverPlan",
    rows: "K3",
    at: Some(1.0),
    severity: Severity::Warning,
    summary: "The monitoring stack uses more memory than the plan gives it.",
    action: None,
};
pub const WSGI_CPU: Limit = Limit {
    alert: "StackWsgiScaleOutCpu",
    rows: "W1",
    at: Some(0.7),
    severity: Severity::Info,
    summary:
        "WSGI has used more than 70% of its CPU for 30 minutes; the plan adds a WSGI container.",
    action: Some("add 1 WSGI container"),
};
pub const WSGI_QUEUE: Limit = Limit {
    alert: "StackWsgiScaleOutQueue",
    rows: "W3",
    at: Some(50.0),
    severity: Severity::Info,
    summary: "More than 50 requests have been queued for WSGI for 30 minutes; the plan adds a WSGI container.",
    action: Some("add 1 WSGI container"),
};
pub const ASGI_CONNECTIONS: Limit = Limit {
    alert: "StackAsgiScaleOutConnections",
    rows: "X1",
    at: Some(150.0),
    severity: Severity::Info,
    summary: "An ASGI container has held more than 150 connections for 30 minutes; the plan adds an ASGI container.",
    action: Some("add 1 ASGI container"),
};
pub const ASGI_MEMORY: Limit = Limit {
    alert: "StackAsgiScaleOutMemory",
    rows: "X3",
    at: Some(0.85),
    severity: Severity::Info,
    summary: "An ASGI container has used more than 85% of its memory budget for 30 minutes; the plan adds an ASGI container.",
    action: Some("add 1 ASGI container"),
};
pub const DATABASE_POOL: Limit = Limit {
    alert: "StackDatabasePoolExhausted",
    rows: "A4,P6",
    at: Some(1.0),
    severity: Severity::Critical,
    summary: "Database connections have reached the plan's pool ceiling.",
    action: None,
};
pub const DATABASE_DOWN: Limit = Limit {
    alert: "StackDatabaseUnreachable",
    rows: "A5,K2",
    at: None,
    severity: Severity::Critical,
    summary: "The database does not answer the exporter's queries.",
    action: None,
};
pub const REDIS_DOWN: Limit = Limit {
    alert: "StackRedisUnreachable",
    rows: "A5,K2",
    at: None,
    severity: Severity::Critical,
    summary: "Redis does not answer the exporter.",
    action: None,
};
pub const REDIS_MAXMEMORY: Limit = Limit {
    alert: "StackRedisMaxmemoryUnset",
    rows: "C1",
    at: None,
    severity: Severity::Warning,
    summary: "Redis has no maxmemory limit.",
    action: None,
};
pub const REDIS_POLICY: Limit = Limit {
    alert: "StackRedisEvictionPolicyDrift",
    rows: "C1",
    at: None,
    severity: Severity::Warning,
    summary: "Redis evicts with another policy than the plan's allkeys-lru.",
    action: None,
};
pub const CELERY_BACKLOG: Limit = Limit {
    alert: "StackCeleryBacklogHigh",
    rows: "P4,C4",
    at: Some(150.0),
    severity: Severity::Warning,
    summary: "More Celery tasks are waiting than the solo worker clears in 5 minutes.",
    action: None,
};
pub const DATASTORE_EXPOSED: Limit = Limit {
    alert: "StackDatastoreListensBeyondLoopback",
    rows: "C5",
    at: None,
    severity: Severity::Warning,
    summary: "MySQL or Redis listens on an address other than localhost.",
    action: None,
};
pub const DEV_PORT_OPEN: Limit = Limit {
    alert: "StackDevServerPortOpen",
    rows: "C6,H0",
    at: None,
    severity: Severity::Warning,
    summary: "Port 8000 is open although nginx is set up.",
    action: None,
};
pub const BACKUP_STALE: Limit = Limit {
    alert: "StackBackupStale",
    rows: "D4",
    at: Some(93600.0),
    severity: Severity::Warning,
    summary: "The newest backup is more than a day old.",
    action: None,
};
pub const BACKUP_MISSING: Limit = Limit {
    alert: "StackBackupMissing",
    rows: "D4",
    at: None,
    severity: Severity::Warning,
    summary: "The backups directory holds no backup.",
    action: None,
};

/// Every limit above, for the test that holds them to the rules.
pub const ALL: &[Limit] = &[
    HOST_MEMORY,
    HOST_MEMORY_SCALE_UP,
    HOST_CPU,
    HOST_CPU_SCALE_UP,
    FILESYSTEM,
    SWAP_DRIFT,
    SYSTEM_MEMORY,
    SERVICE_DOWN,
    INSTANCES,
    GUNICORN_WORKERS,
    CELERY_POOL,
    SERVICE_MEMORY,
    MONITORING_MEMORY,
    WSGI_CPU,
    WSGI_QUEUE,
    ASGI_CONNECTIONS,
    ASGI_MEMORY,
    DATABASE_POOL,
    DATABASE_DOWN,
    REDIS_DOWN,
    REDIS_MAXMEMORY,
    REDIS_POLICY,
    CELERY_BACKLOG,
    DATASTORE_EXPOSED,
    DEV_PORT_OPEN,
    BACKUP_STALE,
    BACKUP_MISSING,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// `{alert: rule}` of every alert in rules/*.yml.
    fn rules() -> std::collections::HashMap<String, serde_norway::Value> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let mut alerts = std::collections::HashMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yml") {
                continue;
            }
            let doc: serde_norway::Value =
                serde_norway::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for group in doc["groups"].as_sequence().unwrap() {
                for rule in group["rules"].as_sequence().unwrap() {
                    if let Some(alert) = rule["alert"].as_str() {
                        alerts.insert(alert.to_string(), rule.clone());
                    }
                }
            }
        }
        alerts
    }

    /// The first number an expression compares against, as grafana/build_dashboards.py reads
    /// it: `> 0.85`, `>= 1`, `> 26 * 3600`.
    fn first_limit(expr: &str) -> Option<f64> {
        let comparison = regex::Regex::new(
            r"(?:[<>]=?|[=!]=)\s*(?:bool\s+)?(\d+(?:\.\d+)?(?:\s*[*^]\s*\d+(?:\.\d+)?)*)(?:[^\w.]|$)",
        )
        .unwrap();
        let text = &comparison.captures(expr)?[1];
        Some(text.split('*').fold(1.0, |value, factor| {
            let (base, power) = factor.split_once('^').unwrap_or((factor, "1"));
            value
                * base
                    .trim()
                    .parse::<f64>()
                    .unwrap()
                    .powf(power.trim().parse().unwrap())
        }))
    }

    #[test]
    fn every_limit_is_its_rules() {
        let rules = rules();
        for limit in ALL {
            let rule = rules
                .get(limit.alert)
                .unwrap_or_else(|| panic!("{} is no alert of rules/*.yml", limit.alert));
            let annotations = &rule["annotations"];
            let expr = rule["expr"].as_str().unwrap();
            if let Some(at) = limit.at {
                assert_eq!(first_limit(expr), Some(at), "{}: {expr}", limit.alert);
            }
            let severity = rule["labels"]["severity"].as_str().unwrap();
            assert_eq!(
                serde_norway::to_string(&limit.severity).unwrap().trim(),
                severity,
                "{}",
                limit.alert
            );
            assert_eq!(rule["labels"]["plan_ref"].as_str(), Some(limit.rows));
            assert_eq!(annotations["summary"].as_str(), Some(limit.summary));
            assert_eq!(
                annotations["action"].as_str(),
                limit.action,
                "{}",
                limit.alert
            );
        }
    }
}
