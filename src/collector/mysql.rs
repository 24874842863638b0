//! MySQL / MariaDB (THRESHOLDS rows A4, A5, P3, P6, C2, M2, D2): connections against
//! `max_connections`, questions and slow queries, statement latency from performance_schema, the
//! InnoDB buffer pool and its fill, the size of each schema, and threads by command and state.
//!
//! One connection per target is kept across scrapes and dropped on any error. mysql_async has no
//! connect timeout of its own: the whole round runs under the target's deadline. Variables and
//! schema sizes are fetched every `slow_interval` (60 s unless configured); status, the process
//! list and performance_schema on every scrape. Where performance_schema is off (MariaDB's
//! default) or not readable, the statement figures are left out, `stack_mysql_statements_readable`
//! is 0 and the target stays up; a schema whose tables the user cannot all see has
//! `stack_mysql_database_size_readable 0` and no size rather than a smaller one.
//!
//! The session leaves no trace in what it measures: it names itself (connect attribute
//! `program_name=stack_exporter`) and raises its own `long_query_time` and
//! `min_examined_row_limit`, so none of its queries reach the slow log or `Slow_queries`.

use std::collections::HashMap;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, Row, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::target::{describe_chain, printable, server_number, target_label, Health, Target};
use crate::logging::Condition;
use crate::metrics::MetricSet;

/// The `program_name` connect attribute of the exporter's sessions.
pub const PROGRAM_NAME: &str = "stack_exporter";

/// Keeps the exporter's own queries out of the slow log and `Slow_queries`: a year (the largest
/// `long_query_time` either server takes) and, for `log_queries_not_using_indexes` (which logs
/// and counts a full scan of information_schema whatever its time), a row floor no query of ours
/// reaches. Session variables: no privilege needed.
const QUIET_SESSION: &str =
    "SET SESSION long_query_time = 31536000, SESSION min_examined_row_limit = 4294967295";
/// The part of [`QUIET_SESSION`] every MySQL and MariaDB version takes.
const QUIET_SESSION_FALLBACK: &str = "SET SESSION long_query_time = 31536000";

/// Schemas of the server itself: a monitoring user need not see all of their tables.
const SYSTEM_SCHEMAS: &[&str] = &["mysql", "sys", "information_schema", "performance_schema"];

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
    /// performance_schema off or its statement summary refused.
    statements_unreadable: Condition,
    /// Schemas whose size cannot be read (tables the user may not see), or no way to tell.
    sizes_unreadable: Condition,
    /// The session could not raise its long_query_time: its queries may reach the slow log.
    loud_session: Condition,
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
    /// Each schema's size; `None` where the user cannot see all of its tables. Empty `sizes`
    /// with `sizes_checked` false: the server would not say which schemas exist.
    sizes: Vec<(String, Option<f64>)>,
    /// Whether InnoDB's own table list could be read to check what the user sees.
    sizes_checked: bool,
    /// performance_schema is on.
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
                    statements_unreadable: Condition::default(),
                    sizes_unreadable: Condition::default(),
                    loud_session: Condition::default(),
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

/// A variable's or a cell's value as a number: `ON`/`OFF` as 1/0, otherwise a finite number ≥ 0.
fn number(field: &str, text: Option<&String>) -> Option<f64> {
    let text = text?.trim();
    match text.to_ascii_uppercase().as_str() {
        "ON" => Some(1.0),
        "OFF" => Some(0.0),
        _ => server_number(field, text),
    }
}

/// A schema's name as InnoDB's table list spells it (`my@002ddb` for `my-db`), decoded; `None`
/// for an encoding other than `@` + four hex digits, which is then not compared.
fn decode_innodb_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        if c != '@' {
            out.push(c);
            continue;
        }
        let hex: String = chars.by_ref().take(4).collect();
        let code = u32::from_str_radix(&hex, 16)
            .ok()
            .filter(|_| hex.len() == 4)?;
        out.push(char::from_u32(code)?);
    }
    Some(out)
}

/// InnoDB tables per schema from InnoDB's own list (`schema/table` names, readable with the
/// PROCESS privilege whatever the table grants): partitions (`t#P#p0`) count once; full-text
/// index tables (`FTS_…`), temporary tables (`#sql…`) and the system schemas are left out.
pub fn innodb_tables_per_schema(names: &[String]) -> HashMap<String, usize> {
    let mut tables: HashMap<String, std::collections::HashSet<&str>> = HashMap::new();
    for name in names {
        let Some((schema, table)) = name.split_once('/') else {
            continue; // SYS_FOREIGN and other tables of InnoDB itself
        };
        let table = table.split("#P#").next().unwrap_or(table);
        let table = table.split("#p#").next().unwrap_or(table);
        if table.starts_with("FTS_") || table.starts_with('#') || table.is_empty() {
            continue;
        }
        let Some(schema) = decode_innodb_name(schema) else {
            continue;
        };
        if SYSTEM_SCHEMAS.contains(&schema.as_str()) {
            continue;
        }
        tables.entry(schema).or_default().insert(table);
    }
    tables.into_iter().map(|(s, t)| (s, t.len())).collect()
}

/// Each schema's size, or `None` where InnoDB has more tables in it than the user can see (its
/// size would be too small), including schemas the user cannot see at all. `visible` rows are
/// (schema, size, InnoDB tables seen).
pub fn schema_sizes(
    visible: &[(String, f64, usize)],
    innodb: &HashMap<String, usize>,
) -> Vec<(String, Option<f64>)> {
    let mut out: Vec<(String, Option<f64>)> = visible
        .iter()
        .map(|(schema, bytes, seen)| {
            let complete = innodb.get(schema).is_none_or(|all| seen >= all);
            (schema.clone(), complete.then_some(*bytes))
        })
        .collect();
    for schema in innodb.keys() {
        if !visible.iter().any(|(s, _, _)| s == schema) {
            out.push((schema.clone(), None));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
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
            .and_then(|n| server_number("PROCESSLIST count", n))
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
            if let Some(v) = number(variable, status.get(*variable)) {
                if *is_counter {
                    set.counter(metric, help, labels(), v);
                } else {
                    set.gauge(metric, help, labels(), v);
                }
            }
        }
        if let Some(v) = number("max_connections", slow.variables.get("max_connections")) {
            set.gauge(
                "stack_mysql_max_connections",
                "The max_connections setting.",
                labels(),
                v,
            );
        }
        if let Some(v) = number(
            "innodb_buffer_pool_size",
            slow.variables.get("innodb_buffer_pool_size"),
        ) {
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

        self.serve_sizes(&slow, set);
        self.statement_totals(conn, slow.statements, set, &fail)
            .await
    }

    /// `stack_mysql_database_size_bytes` of each schema whose tables the user can all see, and
    /// `stack_mysql_database_size_readable` of every schema known.
    fn serve_sizes(&self, slow: &Slow, set: &mut MetricSet) {
        let mut unreadable = Vec::new();
        for (database, bytes) in &slow.sizes {
            let mut l = target_label(&self.target.name);
            l.push(("database", database.clone()));
            if let Some(bytes) = bytes {
                set.gauge(
                    "stack_mysql_database_size_bytes",
                    "Data and index size of each schema (information_schema.TABLES), refreshed \
                     every slow_interval; left out when stack_mysql_database_size_readable is 0.",
                    l.clone(),
                    *bytes,
                );
            } else if !SYSTEM_SCHEMAS.contains(&database.as_str()) {
                unreadable.push(printable(database));
            }
            if slow.sizes_checked {
                set.gauge(
                    "stack_mysql_database_size_readable",
                    "1 if the exporter's user sees every InnoDB table of this schema; 0 if it \
                     lacks a grant on some, so the schema's size is unknown.",
                    l,
                    f64::from(bytes.is_some()),
                );
            }
        }
        let why = if !slow.sizes_checked {
            Some(
                "InnoDB's table list (information_schema.INNODB_SYS_TABLES or INNODB_TABLES, \
                 PROCESS privilege) is not readable, so a schema the user has no grant on cannot \
                 be told apart from no schema; stack_mysql_database_size_readable left out"
                    .to_string(),
            )
        } else if !unreadable.is_empty() {
            Some(format!(
                "no grant on (some of) the tables of {}: sizes unknown, \
                 stack_mysql_database_size_readable 0 (GRANT SELECT ON schema.* to the exporter's user)",
                unreadable.join(", ")
            ))
        } else {
            None
        };
        self.sizes_unreadable.set(
            &format!("mysql target {:?}: schema sizes", self.target.name),
            why,
        );
    }

    /// Statement count and latency from performance_schema, and whether they could be read.
    async fn statement_totals(
        &self,
        conn: &mut Conn,
        enabled: bool,
        set: &mut MetricSet,
        fail: &impl Fn(mysql_async::Error) -> String,
    ) -> Result<(), String> {
        let labels = || target_label(&self.target.name);
        let refused = if !enabled {
            Some(
                "performance_schema is OFF (set performance_schema = ON in the server's config)"
                    .to_string(),
            )
        } else {
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
                    if let Some(n) = row.and_then(|r| number("COUNT_STAR", r.first()?.as_ref())) {
                        set.counter(
                            "stack_mysql_statements_total",
                            "Statements counted by performance_schema.",
                            labels(),
                            n,
                        );
                    }
                    // SUM_TIMER_WAIT is in picoseconds.
                    if let Some(ps) = row.and_then(|r| number("SUM_TIMER_WAIT", r.get(1)?.as_ref()))
                    {
                        set.counter(
                            "stack_mysql_statement_latency_seconds_total",
                            "Total latency of the statements counted by performance_schema.",
                            labels(),
                            ps / 1e12,
                        );
                    }
                    None
                }
                Err(e @ mysql_async::Error::Server(_)) => Some(format!(
                    "performance_schema's statement summary is refused \
                     (GRANT SELECT ON performance_schema.*): {}",
                    fail(e)
                )),
                Err(e) => return Err(fail(e)),
            }
        };
        set.gauge(
            "stack_mysql_statements_readable",
            "1 if performance_schema's statement totals were read; 0 if performance_schema is \
             off or refused (the statement series are then left out; see Slow_queries).",
            labels(),
            f64::from(refused.is_none()),
        );
        self.statements_unreadable.set(
            &format!(
                "mysql target {:?}: statement latency left out (stack_mysql_statements_readable 0)",
                self.target.name
            ),
            refused,
        );
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
                "SELECT s.SCHEMA_NAME, COALESCE(SUM(t.DATA_LENGTH + t.INDEX_LENGTH), 0), \
                 COALESCE(SUM(t.ENGINE = 'InnoDB'), 0) \
                 FROM information_schema.SCHEMATA s LEFT JOIN information_schema.TABLES t \
                 ON t.TABLE_SCHEMA = s.SCHEMA_NAME \
                 WHERE s.SCHEMA_NAME NOT IN ('information_schema', 'performance_schema') \
                 GROUP BY s.SCHEMA_NAME ORDER BY s.SCHEMA_NAME",
            )
            .await
            .map_err(fail)?;
        let visible: Vec<(String, f64, usize)> = cells(rows)
            .into_iter()
            .filter_map(|r| {
                let schema = r.first()?.clone()?;
                let bytes = number("schema size", r.get(1)?.as_ref())?;
                let innodb = number("schema tables", r.get(2)?.as_ref())?;
                Some((schema, bytes, innodb as usize))
            })
            .collect();
        let innodb = self.innodb_tables(conn, fail).await?;
        let sizes = match &innodb {
            Some(innodb) => schema_sizes(&visible, innodb),
            None => visible
                .iter()
                .map(|(s, b, _)| (s.clone(), Some(*b)))
                .collect(),
        };
        let slow = Slow {
            fetched: Instant::now(),
            statements: number("performance_schema", variables.get("performance_schema"))
                == Some(1.0),
            variables,
            sizes,
            sizes_checked: innodb.is_some(),
        };
        *self.slow.lock().unwrap_or_else(|e| e.into_inner()) = Some(slow.clone());
        Ok(slow)
    }

    /// InnoDB's own table list per schema (MariaDB and MySQL 5.7: INNODB_SYS_TABLES, MySQL 8:
    /// INNODB_TABLES; the PROCESS privilege reads either); `None` where neither is readable.
    async fn innodb_tables(
        &self,
        conn: &mut Conn,
        fail: &impl Fn(mysql_async::Error) -> String,
    ) -> Result<Option<HashMap<String, usize>>, String> {
        for table in ["INNODB_SYS_TABLES", "INNODB_TABLES"] {
            let sql = format!("SELECT NAME FROM information_schema.{table} WHERE NAME LIKE '%/%'");
            match conn.query::<Row, _>(sql).await {
                Ok(rows) => {
                    let names: Vec<String> = cells(rows)
                        .into_iter()
                        .filter_map(|r| r.into_iter().next().flatten())
                        .collect();
                    return Ok(Some(innodb_tables_per_schema(&names)));
                }
                Err(mysql_async::Error::Server(_)) => continue,
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(None)
    }

    async fn connect(&self, file_password: &mut Option<String>) -> Result<Conn, String> {
        let opts = Opts::from_url(self.target.url.expose())
            .map_err(|e| format!("bad URL: {}", describe_chain(&e, file_password.as_deref())))?;
        // max_allowed_packet and wait_timeout given, so that mysql_async does not ask the server
        // for them before the session is quiet (that query would reach the slow log).
        let mut builder = OptsBuilder::from_opts(opts.clone())
            .prefer_socket(false)
            .stmt_cache_size(0)
            .max_allowed_packet(Some(16 << 20))
            .wait_timeout(Some(28_800))
            .connect_attribute("program_name", PROGRAM_NAME);
        match file_password.as_deref() {
            Some(p) => builder = builder.pass(Some(p)),
            // Keep the URL's password at hand, to cut it out of any message.
            None => *file_password = opts.pass().map(str::to_string),
        }
        let mut conn = Conn::new(builder)
            .await
            .map_err(|e| describe_chain(&e, file_password.as_deref()))?;
        self.quiet_session(&mut conn, file_password.as_deref())
            .await?;
        Ok(conn)
    }

    /// Raises the session's own slow-log thresholds; a server that refuses is logged once (the
    /// exporter's queries may then count as slow ones) and still served.
    async fn quiet_session(&self, conn: &mut Conn, password: Option<&str>) -> Result<(), String> {
        let fail = |e: mysql_async::Error| describe_chain(&e, password);
        let refused = match conn.query_drop(QUIET_SESSION).await {
            Ok(()) => None,
            Err(mysql_async::Error::Server(_)) => {
                match conn.query_drop(QUIET_SESSION_FALLBACK).await {
                    Ok(()) => None,
                    Err(e @ mysql_async::Error::Server(_)) => Some(fail(e)),
                    Err(e) => return Err(fail(e)),
                }
            }
            Err(e) => return Err(fail(e)),
        };
        self.loud_session.set(
            &format!(
                "mysql target {:?}: cannot raise the session's long_query_time; the exporter's \
                 queries may reach the slow log and Slow_queries",
                self.target.name
            ),
            refused,
        );
        Ok(())
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
        assert_eq!(number("x", Some(&"ON".to_string())), Some(1.0));
        assert_eq!(
            number("x", Some(&"134217728".to_string())),
            Some(134_217_728.0)
        );
        assert_eq!(number("x", Some(&"-5".to_string())), None);
        assert_eq!(number("x", Some(&"1e400".to_string())), None);
        assert_eq!(number("x", None), None);
    }

    #[test]
    fn innodb_names_count_tables_once() {
        let names: Vec<String> = [
            "SYS_FOREIGN",
            "shop/a",
            "shop/FTS_0000000000000012_CONFIG",
            "shop/b#P#p0",
            "shop/b#P#p1",
            "shop/#sql-1a2b_3",
            "my@002ddb/t",
            "odd@zz/t",
            "mysql/innodb_table_stats",
            "hidden/c",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let counts = innodb_tables_per_schema(&names);
        assert_eq!(counts.get("shop"), Some(&2));
        assert_eq!(counts.get("my-db"), Some(&1));
        assert_eq!(counts.get("hidden"), Some(&1));
        assert_eq!(counts.len(), 3, "{counts:?}");
    }

    #[test]
    fn a_schema_with_hidden_tables_has_no_size() {
        let innodb: HashMap<String, usize> = [
            ("shop".to_string(), 2),
            ("hidden".to_string(), 1),
            ("full".to_string(), 1),
        ]
        .into();
        let visible = vec![
            ("full".to_string(), 100.0, 1),
            ("mysql".to_string(), 5.0, 0),
            ("shop".to_string(), 10.0, 1),
        ];
        assert_eq!(
            schema_sizes(&visible, &innodb),
            vec![
                ("full".to_string(), Some(100.0)),
                ("hidden".to_string(), None),
                ("mysql".to_string(), Some(5.0)),
                ("shop".to_string(), None),
            ]
        );
    }
}
