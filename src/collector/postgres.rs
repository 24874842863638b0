//! PostgreSQL (THRESHOLDS rows A4, A5, P3, P6, D2): backends by state against `max_connections`,
//! the oldest open transaction, commits, rollbacks, deadlocks, buffer cache hits and reads, the
//! size of each database, and statement time from `pg_stat_statements` where it is installed.
//!
//! One connection per target is kept across scrapes (PostgreSQL forks a backend per connection);
//! it is dropped on any error and made again on the next scrape. Queries use the simple protocol
//! (no prepare round trip) and carry a server-side `statement_timeout` equal to the target's
//! timeout. `max_connections`, database sizes and whether `pg_stat_statements` is there are
//! fetched every `slow_interval` (60 s unless configured); everything else on every scrape.
//!
//! The session is `application_name=stack_exporter` unless the URL names one. What the role may
//! not read is a `…_readable 0` series and one log line, never a smaller number: a database it may
//! not CONNECT to (no size), other roles' sessions without `pg_read_all_stats` (their state and
//! transaction age hidden), `pg_stat_statements` absent or refused.

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::target::{describe_chain, printable, server_number, target_label, Health, Target};
use crate::logging::Condition;
use crate::metrics::MetricSet;

/// The `application_name` of the exporter's sessions, unless the URL gives one.
pub const APPLICATION_NAME: &str = "stack_exporter";

#[derive(Debug)]
pub struct Postgres {
    targets: Vec<PgTarget>,
}

struct PgTarget {
    target: Target,
    conn: Mutex<Option<PgConn>>,
    slow: std::sync::Mutex<Option<Slow>>,
    health: Health,
    /// Databases whose size the role may not read.
    sizes_unreadable: Condition,
    /// Other roles' sessions hidden (no pg_read_all_stats).
    activity_unreadable: Condition,
    /// pg_stat_statements absent, not loaded or refused.
    statements_unreadable: Condition,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("PgTarget")
            .field("target", &self.target)
            .finish()
    }
}

/// A client and the task that drives its socket; the task ends with the client.
struct PgConn {
    client: Client,
    driver: JoinHandle<()>,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Figures fetched every `slow_interval`.
#[derive(Debug, Clone)]
struct Slow {
    fetched: Instant,
    max_connections: Option<f64>,
    /// Each database's size; `None` where the role may not read it.
    sizes: Vec<(String, Option<f64>)>,
    /// The role sees every session's state (superuser or pg_read_all_stats).
    activity_readable: bool,
    /// The query of `pg_stat_statements` that fits the server's version, if the extension is
    /// installed in the database the exporter connects to.
    statements_query: Option<&'static str>,
}

/// The rows of a simple query, each cell as text (`None` for NULL).
type Rows = Vec<Vec<Option<String>>>;

impl Postgres {
    pub fn new(targets: Vec<Target>) -> Postgres {
        Postgres {
            targets: targets
                .into_iter()
                .map(|target| PgTarget {
                    target,
                    conn: Mutex::new(None),
                    slow: std::sync::Mutex::new(None),
                    health: Health::default(),
                    sizes_unreadable: Condition::default(),
                    activity_unreadable: Condition::default(),
                    statements_unreadable: Condition::default(),
                })
                .collect(),
        }
    }

    pub async fn collect(&self, deadline: Instant) -> anyhow::Result<MetricSet> {
        let sets =
            futures_util::future::join_all(self.targets.iter().map(|t| t.scrape(deadline))).await;
        let mut out = MetricSet::default();
        for set in sets {
            out.extend(set);
        }
        Ok(out)
    }
}

/// Column `i` of a row as a number: a finite number ≥ 0, or `None` (NULL, absent, nonsense).
fn number(row: &[Option<String>], i: usize, field: &str) -> Option<f64> {
    server_number(field, row.get(i)?.as_deref()?)
}

/// Column `i` of a row as text.
fn text(row: &[Option<String>], i: usize) -> Option<String> {
    row.get(i)?.clone()
}

impl PgTarget {
    async fn scrape(&self, deadline: Instant) -> MetricSet {
        let mut guard = self.conn.lock().await;
        let work = async {
            let mut gathered = MetricSet::default();
            self.gather(&mut guard, &mut gathered)
                .await
                .map(|()| gathered)
        };
        let up = (
            "stack_postgres_up",
            "1 if the last query round on this PostgreSQL target succeeded.",
        );
        let (is_up, set) =
            super::target::round("postgres", &self.target, &self.health, deadline, up, work).await;
        if !is_up {
            *guard = None;
            *self.slow.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        set
    }

    async fn gather(&self, slot: &mut Option<PgConn>, set: &mut MetricSet) -> Result<(), String> {
        let mut password = self.target.file_password()?;
        if slot.is_none() {
            *slot = Some(self.connect(&mut password).await?);
        }
        let client = &slot.as_ref().expect("connected above").client;
        let query = |sql: &'static str| {
            let password = password.clone();
            async move {
                let messages = client
                    .simple_query(sql)
                    .await
                    .map_err(|e| describe_chain(&e, password.as_deref()))?;
                Ok::<Rows, String>(rows(messages))
            }
        };
        let labels = || target_label(&self.target.name);

        let slow = self.slow_figures(&query).await?;

        for row in query(
            "SELECT coalesce(state, 'none'), count(*) FROM pg_stat_activity \
             WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 1",
        )
        .await?
        {
            if let (Some(state), Some(n)) = (text(&row, 0), number(&row, 1, "backends")) {
                let mut l = labels();
                l.push(("state", state));
                set.gauge(
                    "stack_postgres_connections",
                    "Client backends by state (the exporter's own is one of the active; other \
                     roles' are under none when stack_postgres_activity_readable is 0).",
                    l,
                    n,
                );
            }
        }
        if let Some(max) = slow.max_connections {
            set.gauge(
                "stack_postgres_max_connections",
                "The max_connections setting.",
                labels(),
                max,
            );
        }
        set.gauge(
            "stack_postgres_activity_readable",
            "1 if the exporter's role sees every session's state (superuser or \
             pg_read_all_stats); 0 if other roles' states and transactions are hidden.",
            labels(),
            f64::from(slow.activity_readable),
        );
        self.activity_unreadable.set(
            &format!(
                "postgres target {:?}: other roles' sessions hidden (stack_postgres_activity_readable 0)",
                self.target.name
            ),
            (!slow.activity_readable).then(|| {
                "the role is neither superuser nor a member of pg_read_all_stats (GRANT pg_monitor): \
                 their state counts as none and the oldest transaction is left out"
                    .to_string()
            }),
        );
        if slow.activity_readable {
            let oldest = query(
                "SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0) \
                 FROM pg_stat_activity WHERE xact_start IS NOT NULL \
                 AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            )
            .await?;
            if let Some(age) = oldest.first().and_then(|r| number(r, 0, "transaction age")) {
                set.gauge(
                    "stack_postgres_oldest_transaction_seconds",
                    "Age of the oldest open transaction of any client backend but the exporter's \
                     (0 if none); left out when stack_postgres_activity_readable is 0.",
                    labels(),
                    age,
                );
            }
        }
        let totals = query(
            "SELECT sum(xact_commit), sum(xact_rollback), sum(deadlocks), sum(blks_hit), \
             sum(blks_read) FROM pg_stat_database",
        )
        .await?;
        if let Some(row) = totals.first() {
            let counters: [(&str, &'static str); 5] = [
                (
                    "stack_postgres_commits_total",
                    "Transactions committed, all databases.",
                ),
                (
                    "stack_postgres_rollbacks_total",
                    "Transactions rolled back, all databases.",
                ),
                (
                    "stack_postgres_deadlocks_total",
                    "Deadlocks detected, all databases.",
                ),
                (
                    "stack_postgres_blocks_hit_total",
                    "Block reads served from the buffer cache, all databases.",
                ),
                (
                    "stack_postgres_blocks_read_total",
                    "Blocks read from disk (or the OS cache), all databases.",
                ),
            ];
            for (i, (name, help)) in counters.iter().enumerate() {
                if let Some(v) = number(row, i, name) {
                    set.counter(name, help, labels(), v);
                }
            }
        }
        self.serve_sizes(&slow, set);
        self.statement_totals(&slow, &query, set).await;
        Ok(())
    }

    /// `stack_postgres_database_size_bytes` of each database the role may read, and
    /// `stack_postgres_database_size_readable` of every one.
    fn serve_sizes(&self, slow: &Slow, set: &mut MetricSet) {
        let mut unreadable = Vec::new();
        for (database, bytes) in &slow.sizes {
            let mut l = target_label(&self.target.name);
            l.push(("database", database.clone()));
            match bytes {
                Some(bytes) => set.gauge(
                    "stack_postgres_database_size_bytes",
                    "Size of each database (pg_database_size), refreshed every slow_interval; \
                     left out when stack_postgres_database_size_readable is 0.",
                    l.clone(),
                    *bytes,
                ),
                None => unreadable.push(printable(database)),
            }
            set.gauge(
                "stack_postgres_database_size_readable",
                "1 if the exporter's role may read this database's size; 0 if it has neither \
                 CONNECT on it nor pg_read_all_stats, so the size is unknown.",
                l,
                f64::from(bytes.is_some()),
            );
        }
        self.sizes_unreadable.set(
            &format!(
                "postgres target {:?}: database sizes unknown (stack_postgres_database_size_readable 0)",
                self.target.name
            ),
            (!unreadable.is_empty()).then(|| {
                format!(
                    "no CONNECT on {} and no pg_read_all_stats (GRANT pg_monitor to the exporter's role)",
                    unreadable.join(", ")
                )
            }),
        );
    }

    /// Statement calls and time from pg_stat_statements, and whether they could be read.
    async fn statement_totals<F, Fut>(&self, slow: &Slow, query: &F, set: &mut MetricSet)
    where
        F: Fn(&'static str) -> Fut,
        Fut: std::future::Future<Output = Result<Rows, String>>,
    {
        let labels = || target_label(&self.target.name);
        let refused = match slow.statements_query {
            None => Some(
                "pg_stat_statements is not installed in the database the exporter connects to \
                 (CREATE EXTENSION pg_stat_statements)"
                    .to_string(),
            ),
            // Installed but not loaded (shared_preload_libraries) or refused: the target stays
            // up; tried again on every scrape.
            Some(sql) => match query(sql).await {
                Ok(rows) => {
                    let row = rows.first();
                    if let Some(calls) = row.and_then(|r| number(r, 0, "calls")) {
                        set.counter(
                            "stack_postgres_statements_total",
                            "Statement calls counted by pg_stat_statements.",
                            labels(),
                            calls,
                        );
                    }
                    if let Some(seconds) = row.and_then(|r| number(r, 1, "total_exec_time")) {
                        set.counter(
                            "stack_postgres_statement_latency_seconds_total",
                            "Total execution time of the statements counted by pg_stat_statements.",
                            labels(),
                            seconds,
                        );
                    }
                    None
                }
                Err(reason) => Some(format!("pg_stat_statements not readable: {reason}")),
            },
        };
        set.gauge(
            "stack_postgres_statements_readable",
            "1 if pg_stat_statements' totals were read; 0 if the extension is absent, not \
             loaded or refused (the statement series are then left out).",
            labels(),
            f64::from(refused.is_none()),
        );
        self.statements_unreadable.set(
            &format!(
                "postgres target {:?}: statement figures left out (stack_postgres_statements_readable 0)",
                self.target.name
            ),
            refused,
        );
    }

    /// The slow-changing figures: fetched again when older than `slow_interval`.
    async fn slow_figures<F, Fut>(&self, query: &F) -> Result<Slow, String>
    where
        F: Fn(&'static str) -> Fut,
        Fut: std::future::Future<Output = Result<Rows, String>>,
    {
        let cached = self.slow.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(slow) = cached.filter(|s| s.fetched.elapsed() < self.target.slow_interval) {
            return Ok(slow);
        }
        // pg_database_size needs CONNECT on the database or pg_read_all_stats (which also shows
        // every session's state): ask first rather than have the whole query refused.
        let settings = query(
            "SELECT current_setting('max_connections'), current_setting('server_version_num'), \
             (SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'), \
             CASE WHEN current_setting('is_superuser') = 'on' THEN 1 \
             WHEN to_regrole('pg_read_all_stats') IS NULL THEN 0 \
             WHEN pg_has_role('pg_read_all_stats', 'USAGE') THEN 1 ELSE 0 END",
        )
        .await?;
        let row = settings
            .first()
            .ok_or("no answer to SHOW max_connections")?;
        let version = number(row, 1, "server_version_num").unwrap_or(0.0);
        let installed = number(row, 2, "pg_extension count").unwrap_or(0.0) > 0.0;
        let statements_query = installed.then_some(if version >= 130000.0 {
            "SELECT sum(calls), sum(total_exec_time) / 1000 FROM pg_stat_statements"
        } else {
            "SELECT sum(calls), sum(total_time) / 1000 FROM pg_stat_statements"
        });
        let activity_readable = number(row, 3, "pg_read_all_stats") == Some(1.0);
        let sizes = query(if activity_readable {
            "SELECT datname, pg_database_size(oid) FROM pg_database \
             WHERE datallowconn AND NOT datistemplate ORDER BY datname"
        } else {
            "SELECT datname, CASE WHEN has_database_privilege(oid, 'CONNECT') \
             THEN pg_database_size(oid) END FROM pg_database \
             WHERE datallowconn AND NOT datistemplate ORDER BY datname"
        })
        .await?
        .into_iter()
        .filter_map(|r| Some((text(&r, 0)?, number(&r, 1, "pg_database_size"))))
        .collect();
        let slow = Slow {
            fetched: Instant::now(),
            max_connections: number(row, 0, "max_connections"),
            sizes,
            activity_readable,
            statements_query,
        };
        *self.slow.lock().unwrap_or_else(|e| e.into_inner()) = Some(slow.clone());
        Ok(slow)
    }

    async fn connect(&self, file_password: &mut Option<String>) -> Result<PgConn, String> {
        let mut config: tokio_postgres::Config =
            self.target.url.expose().parse().map_err(|e| {
                format!("bad URL: {}", describe_chain(&e, file_password.as_deref()))
            })?;
        match file_password.as_deref() {
            Some(p) => {
                config.password(p);
            }
            // Keep the URL's password at hand, to cut it out of any message.
            None => {
                *file_password = config
                    .get_password()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
            }
        }
        let timeout_ms = self.target.timeout.as_millis().max(1);
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        config
            .connect_timeout(self.target.timeout)
            .options(format!("-c statement_timeout={timeout_ms}"));
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| describe_chain(&e, file_password.as_deref()))?;
        let driver = tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("postgres connection ended: {e}");
            }
        });
        Ok(PgConn { client, driver })
    }
}

fn rows(messages: Vec<SimpleQueryMessage>) -> Rows {
    messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_string))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}
