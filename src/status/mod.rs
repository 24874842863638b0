//! The plan at a glance: one collection's figures judged against the plan's budgets and the
//! alerts' thresholds, as one [`Status`] that `stack_exporter status` prints (`text`) and `/`
//! shows (`html`). Pure: figures in, rows out; where the figures come from is `figures` (an
//! exposition, fetched by `fetch`, or a collection of this process).
//!
//! The rules judge over time (15 minutes over a budget, an hour's average for the scale-up
//! advice); this judges the figures of now, so it shows a crossing the moment it happens. CPU is
//! a rate: it needs two readings, the previous one passed in as [`Counters`].

pub mod fetch;
pub mod figures;
pub mod html;
pub mod limits;
pub mod text;

use serde::Serialize;

pub use figures::{Counters, Figures};
use limits::{Limit, Severity};

/// How a row stands, worst last: `Alert` is over an alert's threshold (`stack_exporter status`
/// exits non-zero), `Advice` past one of the plan's scaling thresholds, `Unknown` not measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Unknown,
    Advice,
    Alert,
}

impl Level {
    fn of(limit: &Limit) -> Level {
        match limit.severity {
            Severity::Info => Level::Advice,
            Severity::Warning | Severity::Critical => Level::Alert,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Unknown => "unknown",
            Level::Advice => "advice",
            Level::Alert => "alert",
        }
    }
}

/// One measured figure against what the plan says of it.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub name: String,
    /// The figure in words: `1.2 GiB of 2.0 GiB`.
    pub value: String,
    /// The share drawn as a bar (used / total, used / budget), where there is one.
    pub ratio: Option<f64>,
    /// Where the bar's threshold is (a share as `ratio`).
    pub limit: Option<f64>,
    pub level: Level,
    /// What the plan says: `alert above 85 % (A1)`.
    pub plan: String,
}

/// One service the plan runs (or budgets), measured.
#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub up: bool,
    /// Planned: the profile runs it (`stack_service_expected_instances`); otherwise it only has
    /// a budget (the monitoring stack).
    pub planned: bool,
    pub instances: f64,
    pub expected_instances: Option<f64>,
    pub processes: f64,
    /// All instances' processes, where the plan fixes them per instance.
    pub expected_processes: Option<f64>,
    /// PSS plus swap, as the budget alerts count it.
    pub memory_bytes: f64,
    pub budget_bytes: Option<f64>,
    pub budget_ratio: Option<f64>,
    /// Cores used between the two readings (absent with only one).
    pub cpu_cores: Option<f64>,
    /// The plan's cores, or the host's where it gives none (W1 counts against those).
    pub cpu_budget_cores: Option<f64>,
    pub level: Level,
    pub note: String,
}

impl Service {
    /// `21.5 MiB of 600 MiB`, or the memory alone where there is no budget.
    pub fn memory_of_budget(&self) -> String {
        match self.budget_bytes {
            Some(budget) => format!("{} of {}", bytes(self.memory_bytes), bytes(budget)),
            None => bytes(self.memory_bytes),
        }
    }

    /// `0.12 of 2 cores`, `0.12 cores` without a budget, or nothing before a second reading.
    pub fn cpu_of_budget(&self) -> Option<String> {
        let cores = self.cpu_cores?;
        Some(match self.cpu_budget_cores {
            Some(budget) => format!("{cores:.2} of {budget} cores"),
            None => format!("{cores:.2} cores"),
        })
    }
}

/// An expected count, or `-` where the plan fixes none.
pub fn expected(count: Option<f64>) -> String {
    count.map_or("-".to_string(), |n| format!("{n}"))
}

/// A threshold crossed, in the alert's and the plan's words.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What crossed it: `host`, a service, a mountpoint, a target.
    pub subject: String,
    pub level: Level,
    pub alert: &'static str,
    pub rows: &'static str,
    pub summary: &'static str,
    /// The plan's action, where it names one.
    pub action: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub version: String,
    pub profile: String,
    /// The worst level of any row.
    pub level: Level,
    /// Seconds between the two readings CPU use is measured over; absent when there was one
    /// reading (CPU is then the average since boot).
    pub cpu_window_seconds: Option<f64>,
    pub host: Vec<Row>,
    pub services: Vec<Service>,
    pub datastores: Vec<Row>,
    pub exposure: Vec<Row>,
    pub backups: Vec<Row>,
    pub findings: Vec<Finding>,
    /// Collectors that failed in this collection: their rows are missing.
    pub failed_collectors: Vec<String>,
}

/// The inputs of a status besides the figures: the CPU counters of an earlier reading, and the
/// time (Unix seconds) ages are measured at.
pub struct Readings<'a> {
    pub previous: Option<&'a Counters>,
    pub current: &'a Counters,
    pub now_unix: f64,
}

impl Status {
    pub fn build(figures: &Figures, readings: &Readings) -> Status {
        let mut builder = Builder {
            figures,
            findings: Vec::new(),
        };
        let cpu = cpu_window(readings);
        let host = builder.host(readings, cpu);
        let services = builder.services(readings, cpu);
        let datastores = builder.datastores();
        let exposure = builder.exposure();
        let backups = builder.backups(readings.now_unix);
        let failed_collectors: Vec<String> = figures
            .all("stack_scrape_collector_success")
            .iter()
            .filter(|s| s.value == 0.0)
            .map(|s| s.label("collector").to_string())
            .collect();
        let rows = host
            .iter()
            .chain(&datastores)
            .chain(&exposure)
            .chain(&backups);
        let level = rows
            .map(|r| r.level)
            .chain(services.iter().map(|s| s.level))
            .chain(builder.findings.iter().map(|f| f.level))
            .chain((!failed_collectors.is_empty()).then_some(Level::Unknown))
            .max()
            .unwrap_or(Level::Ok);
        let label_of = |name: &str, label: &str| {
            figures
                .all(name)
                .first()
                .map_or("unknown", |s| s.label(label))
                .to_string()
        };
        Status {
            version: label_of("stack_exporter_build_info", "version"),
            profile: label_of("stack_plan_info", "profile"),
            level,
            cpu_window_seconds: cpu.map(|w| w.seconds),
            host,
            services,
            datastores,
            exposure,
            backups,
            findings: builder.findings,
            failed_collectors,
        }
    }

    /// Whether something is over an alert's threshold: the exit code of `stack_exporter status`.
    pub fn alerting(&self) -> bool {
        self.level == Level::Alert
    }
}

/// The `for` of A2's alert: CPU measured over less is not judged an alert.
const CPU_ALERT_WINDOW_SECONDS: f64 = 300.0;

/// Two readings far enough apart to give a rate.
#[derive(Clone, Copy)]
struct Window {
    seconds: f64,
}

fn cpu_window(readings: &Readings) -> Option<Window> {
    let previous = readings.previous?;
    let seconds = readings
        .current
        .at
        .checked_duration_since(previous.at)?
        .as_secs_f64();
    let counted = readings.current.host_total - previous.host_total;
    (seconds >= 0.5 && counted > 0.0).then_some(Window { seconds })
}

struct Builder<'a> {
    figures: &'a Figures,
    findings: Vec<Finding>,
}

impl Builder<'_> {
    /// The level of a figure against `limit` (`value > at`, or `>=` for `inclusive`), noting
    /// a crossing.
    fn judge(&mut self, subject: &str, limit: &'static Limit, crossed: bool) -> Level {
        if !crossed {
            return Level::Ok;
        }
        self.findings.push(Finding {
            subject: subject.to_string(),
            level: Level::of(limit),
            alert: limit.alert,
            rows: limit.rows,
            summary: limit.summary,
            action: limit.action,
        });
        Level::of(limit)
    }

    fn one(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.figures.one(name, want)
    }

    fn host(&mut self, readings: &Readings, cpu: Option<Window>) -> Vec<Row> {
        let mut rows = Vec::new();
        if let (Some(total), Some(available)) = (
            self.one("stack_host_memory_total_bytes", &[]),
            self.one("stack_host_memory_available_bytes", &[]),
        ) {
            let used = total - available;
            let ratio = ratio(used, total);
            let r = ratio.unwrap_or(0.0);
            let level = self
                .judge("host", &limits::HOST_MEMORY, r > limits::HOST_MEMORY.at())
                .max(self.judge(
                    "host",
                    &limits::HOST_MEMORY_SCALE_UP,
                    r > limits::HOST_MEMORY_SCALE_UP.at(),
                ));
            rows.push(Row {
                name: "memory".into(),
                value: format!("{} of {} used", bytes(used), bytes(total)),
                ratio,
                limit: limits::HOST_MEMORY.at,
                level,
                plan: format!(
                    "alert above {} (A1), scale up above {} (S1)",
                    percent(limits::HOST_MEMORY.at()),
                    percent(limits::HOST_MEMORY_SCALE_UP.at())
                ),
            });
        }
        if let Some(row) = self.cpu(readings, cpu) {
            rows.push(row);
        }
        if let Some(row) = self.swap() {
            rows.push(row);
        }
        if let (Some(used), Some(budget)) = (
            self.one("stack_system_memory_bytes", &[]),
            self.one("stack_system_memory_budget_bytes", &[]),
        ) {
            let ratio = ratio(used, budget);
            let over = ratio.unwrap_or(0.0) > limits::SYSTEM_MEMORY.at();
            rows.push(Row {
                name: "system (OS, unwatched)".into(),
                value: format!("{} of {}", bytes(used), bytes(budget)),
                ratio,
                limit: Some(1.0),
                level: self.judge("system", &limits::SYSTEM_MEMORY, over),
                plan: format!("budget {} (M1)", bytes(budget)),
            });
        }
        rows.extend(self.filesystems());
        rows
    }

    fn cpu(&mut self, readings: &Readings, cpu: Option<Window>) -> Option<Row> {
        let cores = self.one("stack_host_cpu_cores", &[])?;
        let current = readings.current;
        let (busy, over) = match (cpu, readings.previous) {
            (Some(window), Some(previous)) => {
                let idle = (current.host_idle - previous.host_idle) / window.seconds;
                (1.0 - idle / cores, format!("over {:.0} s", window.seconds))
            }
            _ if current.host_total > 0.0 => (
                1.0 - current.host_idle / current.host_total,
                "since boot".to_string(),
            ),
            _ => return None,
        };
        let busy = busy.clamp(0.0, 1.0);
        // A2 alerts after 5 minutes above 80 %: a reading over seconds (or the average since
        // boot) that crosses it is worth a look, not an alert of its own.
        let sustained = cpu.is_some_and(|w| w.seconds >= CPU_ALERT_WINDOW_SECONDS);
        let busy_now = self.judge("host", &limits::HOST_CPU, busy > limits::HOST_CPU.at());
        let level = match sustained {
            true => busy_now,
            false => busy_now.min(Level::Advice),
        };
        if !sustained {
            if let Some(finding) = self
                .findings
                .last_mut()
                .filter(|f| f.alert == limits::HOST_CPU.alert)
            {
                finding.level = Level::Advice;
            }
        }
        let level = level.max(self.judge(
            "host",
            &limits::HOST_CPU_SCALE_UP,
            busy > limits::HOST_CPU_SCALE_UP.at(),
        ));
        Some(Row {
            name: "CPU".into(),
            value: format!("{} busy of {cores} cores ({over})", percent(busy)),
            ratio: Some(busy),
            limit: limits::HOST_CPU.at,
            level,
            plan: format!(
                "alert above {} for 5 min (A2), scale up when consistently above {} (S2)",
                percent(limits::HOST_CPU.at()),
                percent(limits::HOST_CPU_SCALE_UP.at())
            ),
        })
    }

    fn swap(&mut self) -> Option<Row> {
        let total = self.one("stack_host_swap_total_bytes", &[])?;
        let free = self.one("stack_host_swap_free_bytes", &[]).unwrap_or(total);
        let plan = self.one("stack_plan_swap_bytes", &[]);
        let drift = plan.is_some_and(|plan| {
            let share = total / plan;
            !(limits::SWAP_DRIFT.at()..=1.1).contains(&share)
        });
        Some(Row {
            name: "swap".into(),
            value: format!("{} of {} used", bytes(total - free), bytes(total)),
            ratio: ratio(total - free, total),
            limit: None,
            level: self.judge("host", &limits::SWAP_DRIFT, drift),
            plan: match plan {
                Some(plan) => format!("{} configured (C7, M9)", bytes(plan)),
                None => "none prescribed".into(),
            },
        })
    }

    fn filesystems(&mut self) -> Vec<Row> {
        let sizes = self
            .figures
            .all("stack_host_filesystem_size_bytes")
            .to_vec();
        let mut rows = Vec::new();
        for size in sizes.iter().filter(|s| s.value > 0.0) {
            let mountpoint = size.label("mountpoint");
            let want = [("mountpoint", mountpoint)];
            let (Some(free), Some(avail)) = (
                self.one("stack_host_filesystem_free_bytes", &want),
                self.one("stack_host_filesystem_avail_bytes", &want),
            ) else {
                continue;
            };
            let used = size.value - free;
            let ratio = ratio(used, used + avail);
            let over = ratio.unwrap_or(0.0) > limits::FILESYSTEM.at();
            rows.push(Row {
                name: format!("disk {mountpoint}"),
                value: format!("{} of {} used", bytes(used), bytes(used + avail)),
                ratio,
                limit: limits::FILESYSTEM.at,
                level: self.judge(mountpoint, &limits::FILESYSTEM, over),
                plan: format!("alert above {} (A3, S3)", percent(limits::FILESYSTEM.at())),
            });
        }
        rows
    }

    fn services(&mut self, readings: &Readings, cpu: Option<Window>) -> Vec<Service> {
        let names = self.figures.label_values("stack_service_up", "service");
        let mut services = Vec::new();
        for name in names {
            let want = [("service", name.as_str())];
            let expected_instances = self.one("stack_service_expected_instances", &want);
            let budget = self.one("stack_service_memory_budget_bytes", &want);
            // Planned services, and budgeted ones that run (the monitoring stack); a service
            // the config watches but does not run (`instances = 0`) shows only while it runs.
            let up = self.one("stack_service_up", &want) == Some(1.0);
            if expected_instances.is_none() && !(budget.is_some() && up) {
                continue;
            }
            services.push(self.service(&name, readings, cpu));
        }
        services
    }

    fn service(&mut self, name: &str, readings: &Readings, cpu: Option<Window>) -> Service {
        let want = [("service", name)];
        let get = |metric: &str| self.figures.one(metric, &want);
        let up = get("stack_service_up") == Some(1.0);
        let expected_instances = get("stack_service_expected_instances");
        let planned = expected_instances.is_some();
        let instances = get("stack_service_instances").unwrap_or(0.0);
        let processes = get("stack_service_processes").unwrap_or(0.0);
        let expected_processes = get("stack_service_expected_processes")
            .map(|per_instance| per_instance * expected_instances.unwrap_or(1.0));
        let memory = get("stack_service_proportional_memory_bytes").unwrap_or(0.0)
            + get("stack_service_swap_bytes").unwrap_or(0.0);
        let budget = get("stack_service_memory_budget_bytes");
        let budget_ratio = budget.and_then(|b| ratio(memory, b));
        let cpu_budget =
            get("stack_service_cpu_budget_cores").or_else(|| self.one("stack_host_cpu_cores", &[]));
        let cpu_cores = cpu.filter(|_| up).and_then(|window| {
            let now = readings.current.service(name)?;
            let before = readings.previous?.service(name)?;
            Some(((now - before) / window.seconds).max(0.0))
        });
        let instance_ratio = match (
            get("stack_service_instance_max_memory_bytes"),
            get("stack_service_instance_memory_budget_bytes"),
        ) {
            (Some(used), Some(budget)) => ratio(used, budget),
            _ => budget_ratio,
        };
        let remote = !up && self.answers_from_elsewhere(name);
        let mut note = String::new();
        let mut level = Level::Ok;
        if planned && !up {
            if remote {
                note = "no process here; answers from elsewhere (K2)".into();
            } else {
                note = "not running".into();
                level = level.max(self.judge(name, &limits::SERVICE_DOWN, true));
            }
        }
        if up && expected_instances.is_some_and(|e| e != instances) {
            level = level.max(self.judge(name, &limits::INSTANCES, true));
        }
        let process_limit = match name {
            "wsgi" => Some(&limits::GUNICORN_WORKERS),
            "celery_worker" => Some(&limits::CELERY_POOL),
            _ => None,
        };
        if let (Some(limit), Some(expected), true) = (process_limit, expected_processes, up) {
            let drift = match name {
                "celery_worker" => processes > expected,
                _ => processes != expected,
            };
            level = level.max(self.judge(name, limit, drift));
        }
        let memory_limit = match name {
            "monitoring" => &limits::MONITORING_MEMORY,
            _ => &limits::SERVICE_MEMORY,
        };
        let over = budget_ratio.is_some_and(|r| r > memory_limit.at());
        level = level.max(self.judge(name, memory_limit, over));
        let cpu_ratio = cpu_cores.zip(cpu_budget).and_then(|(c, b)| ratio(c, b));
        if planned {
            level = level.max(self.scaling(name, cpu_ratio, instance_ratio));
        }
        Service {
            name: name.to_string(),
            up,
            planned,
            instances,
            expected_instances,
            processes,
            expected_processes,
            memory_bytes: memory,
            budget_bytes: budget,
            budget_ratio,
            cpu_cores,
            cpu_budget_cores: cpu_budget,
            level,
            note,
        }
    }

    /// The hybrid plan's scaling guidelines for WSGI and ASGI (W1, W3, X1, X3).
    fn scaling(
        &mut self,
        name: &str,
        cpu_ratio: Option<f64>,
        instance_ratio: Option<f64>,
    ) -> Level {
        let want = [("service", name)];
        match name {
            "wsgi" => {
                let cpu = cpu_ratio.is_some_and(|r| r > limits::WSGI_CPU.at());
                let queue = self
                    .figures
                    .sum("stack_service_listen_queue_length", &want)
                    .is_some_and(|q| q > limits::WSGI_QUEUE.at());
                self.judge(name, &limits::WSGI_CPU, cpu).max(self.judge(
                    name,
                    &limits::WSGI_QUEUE,
                    queue,
                ))
            }
            "asgi" => {
                let connections = self
                    .one("stack_service_instance_max_connections", &want)
                    .is_some_and(|c| c > limits::ASGI_CONNECTIONS.at());
                let memory = instance_ratio.is_some_and(|r| r > limits::ASGI_MEMORY.at());
                self.judge(name, &limits::ASGI_CONNECTIONS, connections)
                    .max(self.judge(name, &limits::ASGI_MEMORY, memory))
            }
            _ => Level::Ok,
        }
    }

    /// A datastore with no process here whose target answers: managed, or on another host.
    fn answers_from_elsewhere(&self, service: &str) -> bool {
        let up = match service {
            "mysql" => "stack_mysql_up",
            "postgresql" => "stack_postgres_up",
            "redis" => "stack_redis_up",
            _ => return false,
        };
        self.figures.all(up).iter().any(|s| s.value == 1.0)
    }

    fn datastores(&mut self) -> Vec<Row> {
        let mut rows = Vec::new();
        let pool = self.one("stack_plan_database_pool_connections", &[]);
        for (kind, up, connections, max) in [
            (
                "MySQL",
                "stack_mysql_up",
                "stack_mysql_connections",
                "stack_mysql_max_connections",
            ),
            (
                "PostgreSQL",
                "stack_postgres_up",
                "stack_postgres_connections",
                "stack_postgres_max_connections",
            ),
        ] {
            for target in self.figures.label_values(up, "target") {
                let want = [("target", target.as_str())];
                let name = format!("{kind} {target} connections");
                if self.one(up, &want) != Some(1.0) {
                    rows.push(self.down(name, &format!("{kind} {target}"), &limits::DATABASE_DOWN));
                    continue;
                }
                let used = self.figures.sum(connections, &want).unwrap_or(0.0);
                let ratio = pool.and_then(|p| ratio(used, p));
                let exhausted = ratio.is_some_and(|r| r >= limits::DATABASE_POOL.at());
                let max = self.one(max, &want);
                rows.push(Row {
                    name,
                    value: match (pool, max) {
                        (Some(p), Some(m)) => format!("{used} of pool {p} (max_connections {m})"),
                        (Some(p), None) => format!("{used} of pool {p}"),
                        _ => format!("{used}"),
                    },
                    ratio,
                    limit: Some(1.0),
                    level: self.judge(
                        &format!("{kind} {target}"),
                        &limits::DATABASE_POOL,
                        exhausted,
                    ),
                    plan: "max 20 concurrent connections (A4, P6)".into(),
                });
            }
        }
        for target in self.figures.label_values("stack_redis_up", "target") {
            rows.extend(self.redis(&target));
        }
        rows
    }

    fn down(&mut self, name: String, subject: &str, limit: &'static Limit) -> Row {
        Row {
            name,
            value: "does not answer".into(),
            ratio: None,
            limit: None,
            level: self.judge(subject, limit, true),
            plan: "must answer (A5)".into(),
        }
    }

    fn redis(&mut self, target: &str) -> Vec<Row> {
        let want = [("target", target)];
        let subject = format!("Redis {target}");
        if self.one("stack_redis_up", &want) != Some(1.0) {
            let name = format!("Redis {target}");
            return vec![self.down(name, &subject, &limits::REDIS_DOWN)];
        }
        let used = self
            .one("stack_redis_memory_used_bytes", &want)
            .unwrap_or(0.0);
        let maxmemory = self
            .one("stack_redis_maxmemory_bytes", &want)
            .unwrap_or(0.0);
        let unset = maxmemory == 0.0;
        let memory = Row {
            name: format!("Redis {target} memory"),
            value: if unset {
                format!("{} used, no maxmemory", bytes(used))
            } else {
                format!("{} of maxmemory {}", bytes(used), bytes(maxmemory))
            },
            ratio: ratio(used, maxmemory),
            limit: None,
            level: self.judge(&subject, &limits::REDIS_MAXMEMORY, unset),
            plan: "maxmemory 512mb (C1; M3 budgets 128 MB)".into(),
        };
        let policy = self
            .figures
            .all("stack_redis_maxmemory_policy_info")
            .iter()
            .find(|s| s.label("target") == target)
            .map(|s| s.label("policy").to_string());
        let drift = policy.as_deref().is_some_and(|p| p != "allkeys-lru");
        let policy = Row {
            name: format!("Redis {target} eviction"),
            value: policy.unwrap_or_else(|| "unknown".into()),
            ratio: None,
            limit: None,
            level: self.judge(&subject, &limits::REDIS_POLICY, drift),
            plan: "allkeys-lru (C1)".into(),
        };
        let mut rows = vec![memory, policy];
        if let Some(length) = self.figures.sum("stack_redis_queue_length", &want) {
            let over = length > limits::CELERY_BACKLOG.at();
            rows.push(Row {
                name: format!("Redis {target} Celery queue"),
                value: format!("{length} tasks waiting"),
                ratio: ratio(length, limits::CELERY_BACKLOG.at()),
                limit: Some(1.0),
                level: self.judge(&subject, &limits::CELERY_BACKLOG, over),
                plan: format!(
                    "alert above {} (what the solo worker clears in 5 min)",
                    limits::CELERY_BACKLOG.at()
                ),
            });
        }
        rows
    }

    fn exposure(&mut self) -> Vec<Row> {
        let listeners = self.figures.all("stack_service_listen_info").to_vec();
        let planned = |b: &Builder, service: &str| {
            b.one("stack_service_expected_instances", &[("service", service)])
                .is_some()
        };
        let nginx_runs = planned(self, "nginx")
            && self.one("stack_service_up", &[("service", "nginx")]) == Some(1.0);
        let mut rows = Vec::new();
        for l in &listeners {
            let (service, port, class) = (
                l.label("service"),
                l.label("port"),
                l.label("address_class"),
            );
            let datastore = (matches!(service, "mysql" | "redis") && planned(self, service))
                || (service == "unknown" && matches!(port, "3306" | "6379"));
            let dev_port = port == "8000";
            // A Unix socket is reached from this host alone.
            if port.starts_with("unix:") || (!datastore && !dev_port) {
                continue;
            }
            let (limit, crossed, plan) = if datastore {
                (
                    &limits::DATASTORE_EXPOSED,
                    class != "loopback",
                    "localhost only (C5)",
                )
            } else {
                let open = class != "loopback" || !matches!(service, "wsgi" | "asgi");
                (
                    &limits::DEV_PORT_OPEN,
                    open && nginx_runs,
                    "gone once nginx is set up (C6)",
                )
            };
            rows.push(Row {
                name: format!("{service} port {port}"),
                value: format!("listens on {class} addresses"),
                ratio: None,
                limit: None,
                level: self.judge(service, limit, crossed),
                plan: plan.into(),
            });
        }
        if rows.is_empty() && !listeners.is_empty() {
            rows.push(Row {
                name: "ports 3306, 6379, 8000".into(),
                value: "none listening".into(),
                ratio: None,
                limit: None,
                level: Level::Ok,
                plan: "3306 and 6379 on localhost only (C5); 8000 gone once nginx is set up (C6)"
                    .into(),
            });
        }
        rows
    }

    fn backups(&mut self, now_unix: f64) -> Vec<Row> {
        let want = [("directory", "backups")];
        let Some(present) = self.one("stack_directory_present", &want) else {
            return vec![Row {
                name: "backups".into(),
                value: "not watched ([storage] or STACK_BACKUP_DIR)".into(),
                ratio: None,
                limit: None,
                level: Level::Unknown,
                plan: "daily, kept 7-14 days (D4)".into(),
            }];
        };
        let files = self.one("stack_directory_files", &want).unwrap_or(0.0);
        let newest = self.one("stack_directory_newest_file_timestamp_seconds", &want);
        let truncated = self.one("stack_directory_walk_truncated", &want) == Some(1.0);
        let stale_after = limits::BACKUP_STALE.at();
        let (value, ratio, level) = if present == 0.0 || files == 0.0 {
            let level = self.judge("backups", &limits::BACKUP_MISSING, true);
            ("no backup".to_string(), None, level)
        } else if let Some(newest) = newest {
            let age = (now_unix - newest).max(0.0);
            let stale = age > stale_after && !truncated;
            let level = self.judge("backups", &limits::BACKUP_STALE, stale);
            let size = self.one("stack_directory_size_bytes", &want).unwrap_or(0.0);
            let value = format!(
                "newest {} old, {files} files, {}",
                duration(age),
                bytes(size)
            );
            (value, Some(age / stale_after), level)
        } else {
            ("unreadable".to_string(), None, Level::Unknown)
        };
        vec![Row {
            name: "backups".into(),
            value,
            ratio,
            limit: Some(1.0),
            level,
            plan: format!(
                "daily: alert when the newest is over {} old (D4)",
                duration(stale_after)
            ),
        }]
    }
}

/// `part / whole`, where `whole` is above 0.
fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

/// A share as a whole percentage: `85 %`.
pub fn percent(share: f64) -> String {
    format!("{:.0} %", share * 100.0)
}

/// Bytes in binary units, as `free -h` shows them.
pub fn bytes(value: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = value;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{value:.0} B"),
        _ if value.abs() >= 100.0 => format!("{value:.0} {}", UNITS[unit]),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

/// An age in the largest whole unit: `3 h`, `2 d`.
pub fn duration(seconds: f64) -> String {
    match seconds {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.0} h", s / 3600.0),
        s => format!("{:.0} d", s / 86400.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const EXPOSITION: &str = "\
stack_plan_info{profile=\"vps-2gb\"} 1
stack_plan_swap_bytes 2147483648
stack_plan_database_pool_connections 20
stack_host_cpu_cores 2
stack_host_memory_total_bytes 2000
stack_host_memory_available_bytes 1000
stack_host_swap_total_bytes 2147483648
stack_host_swap_free_bytes 2147483648
stack_service_up{service=\"wsgi\"} 1
stack_service_up{service=\"redis\"} 0
stack_service_up{service=\"celery_beat\"} 0
stack_service_up{service=\"unplanned\"} 1
stack_service_expected_instances{service=\"wsgi\"} 1
stack_service_expected_instances{service=\"redis\"} 1
stack_service_expected_instances{service=\"celery_beat\"} 1
stack_service_expected_processes{service=\"wsgi\"} 3
stack_service_instances{service=\"wsgi\"} 1
stack_service_processes{service=\"wsgi\"} 3
stack_service_proportional_memory_bytes{service=\"wsgi\"} 300
stack_service_swap_bytes{service=\"wsgi\"} 60
stack_service_memory_budget_bytes{service=\"wsgi\"} 600
stack_service_cpu_seconds_total{service=\"wsgi\"} 10
stack_redis_up{target=\"default\"} 1
stack_redis_maxmemory_bytes{target=\"default\"} 0
stack_redis_maxmemory_policy_info{target=\"default\",policy=\"noeviction\"} 1
stack_redis_queue_length{target=\"default\",queue=\"celery\"} 3
stack_service_listen_info{service=\"redis\",port=\"6379\",address_class=\"any\"} 1
stack_scrape_collector_success{collector=\"host\"} 1
";

    fn status(text: &str) -> Status {
        let figures = Figures::from_exposition(text);
        let current = Counters::from_figures(&figures, Instant::now());
        let readings = Readings {
            previous: None,
            current: &current,
            now_unix: 0.0,
        };
        Status::build(&figures, &readings)
    }

    #[test]
    fn services_are_judged_against_the_plan() {
        let status = status(EXPOSITION);
        assert_eq!(status.profile, "vps-2gb");
        let names: Vec<&str> = status.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["wsgi", "redis", "celery_beat"], "planned only");
        let wsgi = &status.services[0];
        assert_eq!(
            wsgi.budget_ratio,
            Some(0.6),
            "PSS and swap against the budget"
        );
        assert_eq!(wsgi.level, Level::Ok);
        let redis = &status.services[1];
        assert_eq!(redis.level, Level::Ok, "answers from elsewhere: {redis:?}");
        assert_eq!(
            status.services[2].level,
            Level::Alert,
            "celery_beat is down"
        );
        let alerts: Vec<&str> = status.findings.iter().map(|f| f.alert).collect();
        for alert in [
            "StackServiceDown",
            "StackRedisMaxmemoryUnset",
            "StackRedisEvictionPolicyDrift",
            "StackDatastoreListensBeyondLoopback",
        ] {
            assert!(alerts.contains(&alert), "{alert} in {alerts:?}");
        }
        assert!(status.alerting());
        assert_eq!(status.host[0].ratio, Some(0.5));
    }

    #[test]
    fn over_budget_is_an_alert_and_scaling_is_advice() {
        let text = EXPOSITION.replace("bytes{service=\"wsgi\"} 300", "bytes{service=\"wsgi\"} 700");
        let status = status(&text);
        let wsgi = &status.services[0];
        assert_eq!(wsgi.level, Level::Alert);
        assert!(status
            .findings
            .iter()
            .any(|f| f.alert == "StackServiceMemoryOverBudget" && f.subject == "wsgi"));
    }

    #[test]
    fn cpu_is_a_rate_between_two_readings() {
        let figures = Figures::from_exposition(EXPOSITION);
        let start = Instant::now();
        let mut before = Counters::from_figures(&figures, start);
        before.host_total = 100.0;
        before.host_idle = 50.0;
        before.services = vec![("wsgi".into(), 4.0)];
        let mut after = before.clone();
        after.at = start + Duration::from_secs(10);
        after.host_total = 120.0;
        after.host_idle = 51.0;
        after.services = vec![("wsgi".into(), 20.0)];
        let readings = Readings {
            previous: Some(&before),
            current: &after,
            now_unix: 0.0,
        };
        let status = Status::build(&figures, &readings);
        let cpu = status.host.iter().find(|r| r.name == "CPU").unwrap();
        assert!((cpu.ratio.unwrap() - 0.95).abs() < 1e-9, "{cpu:?}");
        let wsgi = &status.services[0];
        assert!((wsgi.cpu_cores.unwrap() - 1.6).abs() < 1e-9);
        let crossed: Vec<&str> = status.findings.iter().map(|f| f.alert).collect();
        assert!(crossed.contains(&"StackHostCpuBusy"), "{crossed:?}");
        assert_eq!(cpu.level, Level::Advice, "10 s is no 5-minute alert");
        assert!(crossed.contains(&"StackHostCpuScaleUp"));
        assert!(crossed.contains(&"StackWsgiScaleOutCpu"), "1.6 of 2 cores");
    }

    #[test]
    fn sizes_read_as_free_shows_them() {
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(600.0 * 1048576.0), "600 MiB");
        assert_eq!(bytes(1.5 * 1073741824.0), "1.5 GiB");
        assert_eq!(percent(0.855), "86 %");
        assert_eq!(duration(93600.0), "26 h");
    }
}
