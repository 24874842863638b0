//! PostgreSQL (THRESHOLDS rows A4, A5, P3, P6, D2): backends by state against `max_connections`,
//! the oldest open transaction, commits, rollbacks, deadlocks, buffer cache hits and reads, the
//! size of each database, and statement time from `pg_stat_statements` where it is installed.
//!
//! One connection per target is kept across scrapes (PostgreSQL forks a backend per connection);
//! it is dropped on any error and made again on the next scrape. Queries use the simple protocol
//! (no prepare round trip) and carry a server-side `statement_timeout` equal to the target's
//! timeout. `max_connections`, database sizes and whether `pg_stat_statements` is there are
//! fetched every `slow_interval` (60 s unless configured); everything else on every scrape.

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::target::{describe_chain, target_label, Health, Target};
use crate::metrics::MetricSet;

#[derive(Debug)]
pub struct Postgres {
    targets: Vec<PgTarget>,
}

struct PgTarget {
    target: Target,
    conn: Mutex<Option<PgConn>>,
    slow: std::sync::Mutex<Option<Slow>>,
    health: Health,
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
    sizes: Vec<(String, f64)>,
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

fn number(cell: &Option<String>) -> Option<f64> {
    cell.as_deref()?.trim().parse().ok()
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
            if let (Some(state), Some(n)) = (row[0].clone(), number(&row[1])) {
                let mut l = labels();
                l.push(("state", state));
                set.gauge(
                    "stack_postgres_connections",
                    "Client backends by state (the exporter's own is one of the active).",
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
        let oldest = query(
            "SELECT coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0) \
             FROM pg_stat_activity WHERE xact_start IS NOT NULL \
             AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .await?;
        if let Some(age) = oldest.first().and_then(|r| number(&r[0])) {
            set.gauge(
                "stack_postgres_oldest_transaction_seconds",
                "Age of the oldest open transaction of any client backend but the exporter's (0 if none).",
                labels(),
                age.max(0.0),
            );
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
            for ((name, help), cell) in counters.iter().zip(row) {
                if let Some(v) = number(cell) {
                    set.counter(name, help, labels(), v);
                }
            }
        }
        for (database, bytes) in &slow.sizes {
            let mut l = labels();
            l.push(("database", database.clone()));
            set.gauge(
                "stack_postgres_database_size_bytes",
                "Size of each database (pg_database_size), refreshed every slow_interval.",
                l,
                *bytes,
            );
        }
        if let Some(sql) = slow.statements_query {
            match query(sql).await {
                Ok(rows) => {
                    let row = rows.first();
                    if let Some(calls) = row.and_then(|r| number(&r[0])) {
                        set.counter(
                            "stack_postgres_statements_total",
                            "Statement calls counted by pg_stat_statements.",
                            labels(),
                            calls,
                        );
                    }
                    if let Some(seconds) = row.and_then(|r| number(&r[1])) {
                        set.counter(
                            "stack_postgres_statement_latency_seconds_total",
                            "Total execution time of the statements counted by pg_stat_statements.",
                            labels(),
                            seconds,
                        );
                    }
                }
                Err(reason) => {
                    // Installed but not loaded (shared_preload_libraries) or not readable: the
                    // figures are left out until the next slow refresh; the target stays up.
                    log::info!(
                        "postgres target {:?}: pg_stat_statements not readable, statement figures left out: {reason}",
                        self.target.name
                    );
                    if let Some(slow) = self.slow.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
                    {
                        slow.statements_query = None;
                    }
                }
            }
        }
        Ok(())
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
        let settings = query(
            "SELECT current_setting('max_connections'), current_setting('server_version_num'), \
             (SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements')",
        )
        .await?;
        let row = settings
            .first()
            .ok_or("no answer to SHOW max_connections")?;
        let version = number(&row[1]).unwrap_or(0.0);
        let installed = number(&row[2]).unwrap_or(0.0) > 0.0;
        let statements_query = installed.then_some(if version >= 130000.0 {
            "SELECT sum(calls), sum(total_exec_time) / 1000 FROM pg_stat_statements"
        } else {
            "SELECT sum(calls), sum(total_time) / 1000 FROM pg_stat_statements"
        });
        let sizes = query(
            "SELECT datname, pg_database_size(oid) FROM pg_database \
             WHERE datallowconn AND NOT datistemplate ORDER BY datname",
        )
        .await?
        .into_iter()
        .filter_map(|r| Some((r[0].clone()?, number(&r[1])?)))
        .collect();
        let slow = Slow {
            fetched: Instant::now(),
            max_connections: number(&row[0]),
            sizes,
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
        config
            .connect_timeout(self.target.timeout)
            .application_name("stack_exporter")
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
