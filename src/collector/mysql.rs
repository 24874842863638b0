//! MySQL / MariaDB (THRESHOLDS rows A4, A5, P3, P6, C2, M2, D2): connections against
//! `max_connections` and those refused at it, questions and slow queries, statement latency from
//! performance_schema, the InnoDB buffer pool, its fill and hit ratio, deadlocks and row-lock
//! waits, temporary tables on disk, uptime, the size of each schema, and threads by command and
//! state.
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
//! `min_examined_row_limit`, so none of its queries reach the slow log or `Slow_queries`; and its
//! queries make no temporary table on disk (`Created_tmp_disk_tables`).
//!
//! This file holds the session and its queries; `mysql/figures.rs` turns their answers into
//! series.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, Opts, OptsBuilder, Row, Value};
use serde::{Deserialize, Serialize};

use super::target::{
    describe_chain, mysql_ssl_opts, Figures, Rows, Server, SlowCache, Target, Targets, TlsMode,
};
use crate::logging::Condition;

mod figures;
pub use figures::{figures, innodb_tables_per_schema, processlist_series, schema_sizes};
use figures::{name_values, number};

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

fn cells(rows: Vec<Row>) -> Rows {
    rows.into_iter()
        .map(|row| row.unwrap().iter().map(cell).collect())
        .collect()
}

/// The MySQL/MariaDB collector: the shared skeleton over [`Session`].
pub type Mysql = Targets<Session>;

/// A MySQL target's own state: its slow answers and when they were fetched, and whether its
/// session could be kept out of the slow log.
pub struct Session {
    slow: SlowCache<SlowAnswers>,
    /// The session could not raise its long_query_time: its queries may reach the slow log.
    loud_session: Condition,
}

/// What the server answered to the queries made every `slow_interval`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowAnswers {
    /// `SHOW GLOBAL VARIABLES` of max_connections, innodb_buffer_pool_size, performance_schema.
    pub variables: Rows,
    /// Each schema the user sees: name, data and index bytes, InnoDB tables it sees (a schema
    /// may have more than one row: they add up).
    pub schemas: Rows,
    /// InnoDB's own table names (`schema/table`); `None` where neither list is readable.
    pub innodb_tables: Option<Vec<String>>,
    /// The memory performance_schema holds for itself: `None` where it is off, the server's
    /// refusal where the user may not read it (or the server has no memory summary).
    #[serde(default)]
    pub performance_schema_memory: Option<Result<Rows, String>>,
}

/// What one round's queries answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    pub slow: SlowAnswers,
    /// `SHOW GLOBAL STATUS` of the variables in `STATUS` (mysql/figures.rs; on MySQL, with
    /// InnoDB's deadlock count from its metrics).
    pub status: Rows,
    /// `(command, state, 1)` for each thread in the process list.
    pub processlist: Rows,
    /// performance_schema's statement count and latency: `None` where it is off, the server's
    /// refusal where the user may not read it.
    pub statements: Option<Result<Rows, String>>,
}

const VARIABLES_QUERY: &str = "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('max_connections', \
     'innodb_buffer_pool_size', 'performance_schema', 'key_buffer_size', 'innodb_log_buffer_size', \
     'query_cache_size', 'aria_pagecache_buffer_size', 'sort_buffer_size', 'join_buffer_size', \
     'read_buffer_size', 'read_rnd_buffer_size', 'thread_stack', 'net_buffer_length', \
     'binlog_cache_size')";
const PERFORMANCE_SCHEMA_MEMORY_QUERY: &str = "SELECT SUM(CURRENT_NUMBER_OF_BYTES_USED) FROM \
     performance_schema.memory_summary_global_by_event_name \
     WHERE EVENT_NAME LIKE 'memory/performance_schema/%'";
/// Each schema once with nothing, and once more with the sum of its tables where it has any
/// (added up in `size_figures`). information_schema and sys are left out of the table scan:
/// sizing their views makes about 110 temporary tables, 19 of them on disk (MariaDB 10.11),
/// which Created_tmp_disk_tables would count against the application; a join of SCHEMATA and
/// TABLES cannot use the schema filter and makes as many. sys holds views and one tiny table.
const SCHEMAS_QUERY: &str = "SELECT SCHEMA_NAME, 0, 0 FROM information_schema.SCHEMATA \
     WHERE SCHEMA_NAME NOT IN ('information_schema', 'performance_schema', 'sys') \
     UNION ALL SELECT TABLE_SCHEMA, COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0), \
     COALESCE(SUM(ENGINE = 'InnoDB'), 0) FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA NOT IN ('information_schema', 'performance_schema', 'sys') \
     GROUP BY TABLE_SCHEMA";
const STATUS_QUERY: &str = "SHOW GLOBAL STATUS WHERE Variable_name IN ('Threads_connected', \
     'Threads_running', 'Max_used_connections', 'Innodb_buffer_pool_bytes_data', 'Uptime', \
     'Aborted_connects', 'Connection_errors_max_connections', 'Aborted_clients', 'Questions', \
     'Slow_queries', 'Innodb_deadlocks', 'Innodb_row_lock_waits', 'Innodb_row_lock_time', \
     'Innodb_buffer_pool_read_requests', 'Innodb_buffer_pool_reads', 'Created_tmp_tables', \
     'Created_tmp_disk_tables')";
/// MySQL has no Innodb_deadlocks status variable; its InnoDB metrics count them (enabled by
/// default, readable with PROCESS). Asked only where the status has none. Answers like a status
/// row, so the figures need not tell the servers apart.
const DEADLOCKS_QUERY: &str = "SELECT 'Innodb_deadlocks', COUNT FROM \
     information_schema.INNODB_METRICS WHERE NAME = 'lock_deadlocks' AND STATUS = 'enabled'";
/// SHOW PROCESSLIST rather than a GROUP BY over information_schema.PROCESSLIST: the latter makes
/// two temporary tables, one on disk, on every scrape, which Created_tmp_disk_tables would count
/// against the application (StackMysqlTmpDiskTablesHigh). The threads are grouped here.
const PROCESSLIST_QUERY: &str = "SHOW PROCESSLIST";
const STATEMENTS_QUERY: &str = "SELECT SUM(COUNT_STAR), SUM(SUM_TIMER_WAIT) FROM \
     performance_schema.events_statements_summary_global_by_event_name";

impl Server for Session {
    type Conn = Conn;
    type Answers = Answers;
    const NAME: &'static str = "mysql";
    const UP: (&'static str, &'static str) = (
        "stack_mysql_up",
        "1 if the last query round on this MySQL/MariaDB target succeeded.",
    );

    fn new(_: &Target) -> Session {
        Session {
            slow: SlowCache::default(),
            loud_session: Condition::default(),
        }
    }

    async fn connect(
        &self,
        target: &Target,
        password: &mut Option<String>,
    ) -> Result<Conn, String> {
        let (url, tls) = target.tls()?;
        let opts = Opts::from_url(&url)
            .map_err(|e| format!("bad URL: {}", describe_chain(&e, password.as_deref())))?;
        // max_allowed_packet and wait_timeout given, so that mysql_async does not ask the server
        // for them before the session is quiet (that query would reach the slow log).
        let mut builder = OptsBuilder::from_opts(opts.clone())
            .prefer_socket(false)
            .stmt_cache_size(0)
            .max_allowed_packet(Some(16 << 20))
            .wait_timeout(Some(28_800))
            .connect_attribute("program_name", PROGRAM_NAME)
            .ssl_opts(mysql_ssl_opts(&tls));
        match password.as_deref() {
            Some(p) => builder = builder.pass(Some(p)),
            // Keep the URL's password at hand, to cut it out of any message.
            None => *password = opts.pass().map(str::to_string),
        }
        let mut conn = match Conn::new(builder.clone()).await {
            // PREFERRED: plain text where the server offers no TLS.
            Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer))
                if tls.mode == TlsMode::Prefer =>
            {
                Conn::new(builder.ssl_opts(None)).await
            }
            other => other,
        }
        .map_err(|e| refusal(&e, tls.mode, password.as_deref()))?;
        self.quiet_session(target, &mut conn, password.as_deref())
            .await?;
        Ok(conn)
    }

    async fn ask(
        &self,
        target: &Target,
        conn: &mut Conn,
        password: Option<&str>,
    ) -> Result<Answers, String> {
        let fail = |e: mysql_async::Error| describe_chain(&e, password);
        let slow = self.slow_answers(target, conn, &fail).await?;
        let (mut status, processlist, statements) =
            status_threads_statements(conn, performance_schema_on(&slow))
                .await
                .map_err(fail)?;
        let statements = statements.map(|answer| answer.map_err(fail));
        if !name_values(&status).contains_key("Innodb_deadlocks") {
            match query(conn, DEADLOCKS_QUERY).await {
                Ok(rows) => status.extend(rows),
                // Not readable (no PROCESS): left out, and the figures say so.
                Err(mysql_async::Error::Server(_)) => {}
                Err(e) => return Err(fail(e)),
            }
        }
        Ok(Answers {
            slow,
            status,
            processlist,
            statements,
        })
    }

    fn figures(target: &str, answers: &Answers) -> Figures {
        figures(target, answers)
    }

    fn forget(&self) {
        self.slow.forget();
    }

    fn refresh_due(&self, target: &Target) -> bool {
        self.slow.due(target.slow_interval)
    }

    async fn refresh(
        &self,
        _: &Target,
        conn: &mut Conn,
        password: Option<&str>,
    ) -> Result<(), String> {
        let fail = |e: mysql_async::Error| describe_chain(&e, password);
        self.fetch_slow_answers(conn, &fail).await.map(|_| ())
    }
}

/// Why a connection failed, and with TLS off the likely cause of a refusal: a server with
/// require_secure_transport (RDS's parameter, MariaDB's, MySQL's) refuses plain text, MariaDB
/// with "Access denied" (1045), MySQL with error 3159.
fn refusal(error: &mysql_async::Error, tls: TlsMode, password: Option<&str>) -> String {
    let text = describe_chain(error, password);
    match error {
        mysql_async::Error::Server(e)
            if tls == TlsMode::Disable && matches!(e.code, 1045 | 3159) =>
        {
            format!(
                "{text}; a server with require_secure_transport refuses connections without TLS \
                 this way: if that is the cause, set ssl-mode in the URL"
            )
        }
        _ => text,
    }
}

/// A query's rows, each cell as text.
async fn query(conn: &mut Conn, sql: &str) -> Result<Rows, mysql_async::Error> {
    conn.query::<Row, _>(sql).await.map(cells)
}

/// Global status, the process list and, with `statements`, performance_schema's statement
/// summary: one round trip, the statements run in order. A refused summary (no grant) is its own
/// answer; any other failure fails the round.
async fn status_threads_statements(
    conn: &mut Conn,
    statements: bool,
) -> Result<(Rows, Rows, Option<Result<Rows, mysql_async::Error>>), mysql_async::Error> {
    let mut batch = vec![STATUS_QUERY, PROCESSLIST_QUERY];
    if statements {
        batch.push(STATEMENTS_QUERY);
    }
    let mut answers = conn.query_iter(batch.join("; ")).await?;
    let status = cells(answers.collect::<Row>().await?);
    let threads = threads(answers.collect::<Row>().await?);
    let statements = match statements {
        false => None,
        true => match answers.collect::<Row>().await {
            Ok(rows) => Some(Ok(cells(rows))),
            Err(e @ mysql_async::Error::Server(_)) => Some(Err(e)),
            Err(e) => return Err(e),
        },
    };
    Ok((status, threads, statements))
}

/// `(command, state, 1)` for each thread of `SHOW PROCESSLIST`, which [`processlist_series`]
/// adds up. Columns are found by name: MariaDB has one more (Progress) than MySQL.
fn threads(rows: Vec<Row>) -> Rows {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    let column = |name: &str| {
        first
            .columns_ref()
            .iter()
            .position(|c| c.name_str().eq_ignore_ascii_case(name))
    };
    let (command, state) = (column("Command"), column("State"));
    let cell_at = |row: &Row, i: Option<usize>| i.and_then(|i| row.as_ref(i)).and_then(cell);
    rows.iter()
        .map(|row| vec![cell_at(row, command), cell_at(row, state), Some("1".into())])
        .collect()
}

fn performance_schema_on(slow: &SlowAnswers) -> bool {
    variables_say_performance_schema_on(&slow.variables)
}

fn variables_say_performance_schema_on(variables: &Rows) -> bool {
    let variables = name_values(variables);
    number(
        "performance_schema",
        variables.get("performance_schema").copied(),
    ) == Some(1.0)
}

impl Session {
    /// The slow answers: the kept ones (fetched again after the round once `slow_interval`
    /// old), or fetched now where there are none.
    async fn slow_answers(
        &self,
        target: &Target,
        conn: &mut Conn,
        fail: &(impl Fn(mysql_async::Error) -> String + Sync),
    ) -> Result<SlowAnswers, String> {
        match self.slow.get(target.slow_interval) {
            Some(slow) => Ok(slow),
            None => self.fetch_slow_answers(conn, fail).await,
        }
    }

    /// Asks the server the slow queries, and keeps the answers.
    async fn fetch_slow_answers(
        &self,
        conn: &mut Conn,
        fail: &(impl Fn(mysql_async::Error) -> String + Sync),
    ) -> Result<SlowAnswers, String> {
        let variables = query(conn, VARIABLES_QUERY).await.map_err(fail)?;
        let performance_schema_memory = if variables_say_performance_schema_on(&variables) {
            match query(conn, PERFORMANCE_SCHEMA_MEMORY_QUERY).await {
                Ok(rows) => Some(Ok(rows)),
                Err(e @ mysql_async::Error::Server(_)) => Some(Err(fail(e))),
                Err(e) => return Err(fail(e)),
            }
        } else {
            None
        };
        let slow = SlowAnswers {
            variables,
            schemas: query(conn, SCHEMAS_QUERY).await.map_err(fail)?,
            innodb_tables: innodb_tables(conn, fail).await?,
            performance_schema_memory,
        };
        self.slow.store(slow.clone());
        Ok(slow)
    }

    /// Raises the session's own slow-log thresholds; a server that refuses is logged once (the
    /// exporter's queries may then count as slow ones) and still served.
    async fn quiet_session(
        &self,
        target: &Target,
        conn: &mut Conn,
        password: Option<&str>,
    ) -> Result<(), String> {
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
                target.name
            ),
            refused,
        );
        Ok(())
    }
}

/// InnoDB's own table names (MariaDB and MySQL 5.7: INNODB_SYS_TABLES, MySQL 8: INNODB_TABLES;
/// the PROCESS privilege reads either); `None` where neither is readable.
async fn innodb_tables(
    conn: &mut Conn,
    fail: &(impl Fn(mysql_async::Error) -> String + Sync),
) -> Result<Option<Vec<String>>, String> {
    for table in ["INNODB_SYS_TABLES", "INNODB_TABLES"] {
        let sql = format!("SELECT NAME FROM information_schema.{table} WHERE NAME LIKE '%/%'");
        match query(conn, &sql).await {
            Ok(rows) => {
                let names = rows
                    .into_iter()
                    .filter_map(|r| r.into_iter().next().flatten());
                return Ok(Some(names.collect()));
            }
            Err(mysql_async::Error::Server(_)) => continue,
            Err(e) => return Err(fail(e)),
        }
    }
    Ok(None)
}
