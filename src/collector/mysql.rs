//! MySQL / MariaDB (THRESHOLDS rows A4, A5, P3, P6, C2, M2, D2): connections against
//! `max_connections`, questions and slow queries, statement latency from performance_schema, the
//! InnoDB buffer pool and its fill, the size of each schema, and threads by command and state.
//!
//! One connection per target is kept across scrapes and dropped on any error. mysql_async has no
//! connect timeout of its own: the whole round runs under the target's deadline. Variables and
//! schema sizes are fetched every `slow_interval` (60 s unless configured); status, the process
//! list and performance_schema on every scrape. Where performance_schema is off (MariaDB's
//! default) or not readable, the statement figures are left out and the target stays up.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::target::{describe_chain, target_label, Health, Target};
use crate::metrics::MetricSet;

/// At most this many (command, state) series per target; the rest are added up under
/// `state="other"`.
const MAX_PROCESSLIST_SERIES: usize = 50;

#[derive(Debug)]
pub struct Mysql {
    targets: Vec<MysqlTarget>,
}

struct MysqlTarget {
    target: Target,
    conn: Mutex<Option<Conn>>,
    slow: std::sync::Mutex<Option<Slow>>,
    health: Health,
    /// Whether the refusal of performance_schema has been logged: the slow figures are re-read
    /// every minute, and the refusal is worth one line, not one a minute.
    statements_refusal_logged: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for MysqlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("MysqlTarget")
            .field("target", &self.target)
            .finish()
    }
}

#[derive(Debug, Clone)]
struct Slow {
    fetched: Instant,
    variables: HashMap<String, String>,
    sizes: Vec<(String, f64)>,
    /// performance_schema is on and its statement summary readable.
    statements: bool,
}

/// Status variables served: (variable, metric, help, is counter).
const STATUS: &[(&str, &str, &str, bool)] = &[
    (
        "Threads_connected",
        "stack_mysql_connections",
        "Open client connections (Threads_connected), the exporter's own included.",
        false,
    ),
    (
        "Threads_running",
        "stack_mysql_connections_running",
        "Connections running a statement (Threads_running).",
        false,
    ),
    (
        "Max_used_connections",
        "stack_mysql_max_used_connections",
        "Most connections open at once since the server started.",
        false,
    ),
    (
        "Innodb_buffer_pool_bytes_data",
        "stack_mysql_innodb_buffer_pool_data_bytes",
        "Bytes of data in the InnoDB buffer pool.",
        false,
    ),
    (
        "Aborted_connects",
        "stack_mysql_aborted_connects_total",
        "Failed connection attempts.",
        true,
    ),
    (
        "Questions",
        "stack_mysql_questions_total",
        "Statements sent by clients.",
        true,
    ),
    (
        "Slow_queries",
        "stack_mysql_slow_queries_total",
        "Statements that took longer than long_query_time.",
        true,
    ),
];

impl Mysql {
    pub fn new(targets: Vec<Target>) -> Mysql {
        Mysql {
            targets: targets
                .into_iter()
                .map(|target| MysqlTarget {
                    target,
                    conn: Mutex::new(None),
                    slow: std::sync::Mutex::new(None),
                    health: Health::default(),
                    statements_refusal_logged: Default::default(),
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

/// A cell of the text protocol as text; `None` for NULL.
fn cell(value: &Value) -> Option<String> {
    match value {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::UInt(n) => Some(n.to_string()),
        Value::Float(n) => Some(n.to_string()),
        Value::Double(n) => Some(n.to_string()),
        other => Some(other.as_sql(true)),
    }
}

fn cells(rows: Vec<Row>) -> Vec<Vec<Option<String>>> {
    rows.into_iter()
        .map(|row| row.unwrap().iter().map(cell).collect())
        .collect()
}

/// `Variable_name`, `Value` rows as a map.
fn name_values(rows: &[Vec<Option<String>>]) -> HashMap<String, String> {
    rows.iter()
        .filter_map(|r| Some((r.first()?.clone()?, r.get(1)?.clone().unwrap_or_default())))
        .collect()
}

fn number(text: Option<&String>) -> Option<f64> {
    let text = text?.trim();
    match text.to_ascii_uppercase().as_str() {
        "ON" => Some(1.0),
        "OFF" => Some(0.0),
        _ => text.parse().ok(),
    }
}

/// `(command, state, threads)` from the grouped process list: empty or NULL becomes `none`, and
/// past `MAX_PROCESSLIST_SERIES` distinct pairs the rest are added up as `(command, "other")`.
pub fn processlist_series(rows: &[Vec<Option<String>>]) -> Vec<(String, String, f64)> {
    let label = |c: Option<&Option<String>>| {
        c.and_then(|c| c.as_deref())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("none")
            .to_string()
    };
    let mut out: Vec<(String, String, f64)> = Vec::new();
    for row in rows {
        let command = label(row.first());
        let mut state = label(row.get(1));
        let n = row
            .get(2)
            .and_then(|c| c.as_deref())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        let known = out.iter().any(|(c, s, _)| *c == command && *s == state);
        if !known && out.len() >= MAX_PROCESSLIST_SERIES {
            state = "other".to_string();
        }
        match out
            .iter_mut()
            .find(|(c, s, _)| *c == command && *s == state)
        {
            Some(existing) => existing.2 += n,
            None => out.push((command, state, n)),
        }
    }
    out
}

impl MysqlTarget {
    async fn scrape(&self, deadline: Instant) -> MetricSet {
        let mut guard = self.conn.lock().await;
        let work = async {
            let mut gathered = MetricSet::default();
            self.gather(&mut guard, &mut gathered)
                .await
                .map(|()| gathered)
        };
        let up = (
            "stack_mysql_up",
            "1 if the last query round on this MySQL/MariaDB target succeeded.",
        );
        let (is_up, set) =
            super::target::round("mysql", &self.target, &self.health, deadline, up, work).await;
        if !is_up {
            // Closing a connection to a server that hangs could hang too: just let it go.
            *guard = None;
            *self.slow.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        set
    }

    async fn gather(&self, slot: &mut Option<Conn>, set: &mut MetricSet) -> Result<(), String> {
        let mut password = self.target.file_password()?;
        if slot.is_none() {
            *slot = Some(self.connect(&mut password).await?);
        }
        let conn = slot.as_mut().expect("connected above");
        let fail = |e: mysql_async::Error| describe_chain(&e, password.as_deref());
        let labels = || target_label(&self.target.name);

        let slow = self.slow_figures(conn, &fail).await?;

        let status: Vec<Row> = conn
            .query(
                "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', \
                 'Threads_running', 'Max_used_connections', 'Aborted_connects', 'Questions', \
                 'Slow_queries', 'Innodb_buffer_pool_bytes_data')",
            )
            .await
            .map_err(fail)?;
        let status = name_values(&cells(status));
        for (variable, metric, help, is_counter) in STATUS {
            if let Some(v) = number(status.get(*variable)) {
                if *is_counter {
                    set.counter(metric, help, labels(), v);
                } else {
                    set.gauge(metric, help, labels(), v);
                }
            }
        }
        if let Some(v) = number(slow.variables.get("max_connections")) {
            set.gauge(
                "stack_mysql_max_connections",
                "The max_connections setting.",
                labels(),
                v,
            );
        }
        if let Some(v) = number(slow.variables.get("innodb_buffer_pool_size")) {
            set.gauge(
                "stack_mysql_innodb_buffer_pool_size_bytes",
                "The innodb_buffer_pool_size setting.",
                labels(),
                v,
            );
        }

        let threads: Vec<Row> = conn
            .query(
                "SELECT COMMAND, STATE, COUNT(*) FROM information_schema.PROCESSLIST \
                 GROUP BY COMMAND, STATE",
            )
            .await
            .map_err(fail)?;
        for (command, state, n) in processlist_series(&cells(threads)) {
            let mut l = labels();
            l.push(("command", command));
            l.push(("state", state));
            set.gauge(
                "stack_mysql_processlist_threads",
                "Threads by command and state (information_schema.PROCESSLIST; empty is none).",
                l,
                n,
            );
        }

        for (database, bytes) in &slow.sizes {
            let mut l = labels();
            l.push(("database", database.clone()));
            set.gauge(
                "stack_mysql_database_size_bytes",
                "Data and index size of each schema (information_schema.TABLES), refreshed every slow_interval.",
                l,
                *bytes,
            );
        }

        if slow.statements {
            let result: Result<Vec<Row>, _> = conn
                .query(
                    "SELECT SUM(COUNT_STAR), SUM(SUM_TIMER_WAIT) FROM \
                     performance_schema.events_statements_summary_global_by_event_name",
                )
                .await;
            match result {
                Ok(rows) => {
                    let rows = cells(rows);
                    let row = rows.first();
                    if let Some(n) = row.and_then(|r| number(r.first()?.as_ref())) {
                        set.counter(
                            "stack_mysql_statements_total",
                            "Statements counted by performance_schema.",
                            labels(),
                            n,
                        );
                    }
                    // SUM_TIMER_WAIT is in picoseconds.
                    if let Some(ps) = row.and_then(|r| number(r.get(1)?.as_ref())) {
                        set.counter(
                            "stack_mysql_statement_latency_seconds_total",
                            "Total latency of the statements counted by performance_schema.",
                            labels(),
                            ps / 1e12,
                        );
                    }
                }
                Err(e @ mysql_async::Error::Server(_)) => {
                    let logged = &self.statements_refusal_logged;
                    if !logged.swap(true, std::sync::atomic::Ordering::Relaxed) {
                        log::info!(
                        "mysql target {:?}: performance_schema statement summary not readable, \
                         latency left out: {}",
                        self.target.name,
                        fail(e)
                    );
                    }
                    if let Some(slow) = self.slow.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
                    {
                        slow.statements = false;
                    }
                }
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(())
    }

    async fn slow_figures(
        &self,
        conn: &mut Conn,
        fail: &impl Fn(mysql_async::Error) -> String,
    ) -> Result<Slow, String> {
        let cached = self.slow.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(slow) = cached.filter(|s| s.fetched.elapsed() < self.target.slow_interval) {
            return Ok(slow);
        }
        let rows: Vec<Row> = conn
            .query(
                "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('max_connections', \
                 'innodb_buffer_pool_size', 'performance_schema')",
            )
            .await
            .map_err(fail)?;
        let variables = name_values(&cells(rows));
        let rows: Vec<Row> = conn
            .query(
                "SELECT s.SCHEMA_NAME, COALESCE(SUM(t.DATA_LENGTH + t.INDEX_LENGTH), 0) \
                 FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t \
                 ON t.TABLE_SCHEMA = s.SCHEMA_NAME \
                 WHERE s.SCHEMA_NAME NOT IN ('information_schema', 'performance_schema') \
                 GROUP BY s.SCHEMA_NAME ORDER BY s.SCHEMA_NAME",
            )
            .await
            .map_err(fail)?;
        let sizes = cells(rows)
            .into_iter()
            .filter_map(|r| Some((r.first()?.clone()?, number(r.get(1)?.as_ref())?)))
            .collect();
        let slow = Slow {
            fetched: Instant::now(),
            statements: number(variables.get("performance_schema")) == Some(1.0),
            variables,
            sizes,
        };
        *self.slow.lock().unwrap_or_else(|e| e.into_inner()) = Some(slow.clone());
        Ok(slow)
    }

    async fn connect(&self, file_password: &mut Option<String>) -> Result<Conn, String> {
        let opts = Opts::from_url(self.target.url.expose())
            .map_err(|e| format!("bad URL: {}", describe_chain(&e, file_password.as_deref())))?;
        let mut builder = OptsBuilder::from_opts(opts.clone())
            .prefer_socket(false)
            .stmt_cache_size(0);
        match file_password.as_deref() {
            Some(p) => builder = builder.pass(Some(p)),
            // Keep the URL's password at hand, to cut it out of any message.
            None => *file_password = opts.pass().map(str::to_string),
        }
        Conn::new(builder)
            .await
            .map_err(|e| describe_chain(&e, file_password.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(command: Option<&str>, state: Option<&str>, n: u32) -> Vec<Option<String>> {
        vec![
            command.map(String::from),
            state.map(String::from),
            Some(n.to_string()),
        ]
    }

    #[test]
    fn empty_states_are_none() {
        let series = processlist_series(&[
            row(Some("Sleep"), Some(""), 4),
            row(Some("Query"), Some("Sending data"), 1),
            row(Some("Daemon"), None, 5),
        ]);
        assert_eq!(
            series,
            vec![
                ("Sleep".into(), "none".into(), 4.0),
                ("Query".into(), "Sending data".into(), 1.0),
                ("Daemon".into(), "none".into(), 5.0),
            ]
        );
    }

    #[test]
    fn series_are_bounded() {
        let rows: Vec<_> = (0..200)
            .map(|i| row(Some("Query"), Some(&format!("state {i}")), 1))
            .collect();
        let series = processlist_series(&rows);
        assert_eq!(series.len(), MAX_PROCESSLIST_SERIES + 1);
        let other = series.iter().find(|s| s.1 == "other").unwrap();
        assert_eq!(other.2, (200 - MAX_PROCESSLIST_SERIES) as f64);
        assert_eq!(series.iter().map(|s| s.2).sum::<f64>(), 200.0);
    }

    #[test]
    fn switches_and_numbers_parse() {
        assert_eq!(number(Some(&"ON".to_string())), Some(1.0));
        assert_eq!(number(Some(&"134217728".to_string())), Some(134_217_728.0));
        assert_eq!(number(None), None);
    }
}
