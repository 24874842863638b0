//! The MySQL/MariaDB answers → series: the status variables served (one table), memory against
//! the configured buffers, schema sizes, the process list and performance_schema's statements.
//! Pure functions of the recorded answers, so tests/golden_db.rs can pin their output.

use std::collections::HashMap;

use super::{Answers, SlowAnswers};
use crate::collector::target::{printable, server_number, target_label, Figures, Rows};

/// Schemas of the server itself: a monitoring user need not see all of their tables.
const SYSTEM_SCHEMAS: &[&str] = &["mysql", "sys", "information_schema", "performance_schema"];

/// At most this many (command, state) series per target; the rest are added up under
/// `state="other"`.
const MAX_PROCESSLIST_SERIES: usize = 50;

/// A status variable served as a series.
struct Status {
    variable: &'static str,
    metric: &'static str,
    help: &'static str,
    counter: bool,
    /// What the server's figure is divided by to make the metric's unit (ms to s: 1000).
    per_unit: f64,
}

const fn status_gauge(variable: &'static str, metric: &'static str, help: &'static str) -> Status {
    Status {
        variable,
        metric,
        help,
        counter: false,
        per_unit: 1.0,
    }
}

const fn status_counter(
    variable: &'static str,
    metric: &'static str,
    help: &'static str,
) -> Status {
    Status {
        variable,
        metric,
        help,
        counter: true,
        per_unit: 1.0,
    }
}

/// The status variables served, all read by one `SHOW GLOBAL STATUS` ([`super::STATUS_QUERY`] names
/// each of them; a unit test checks it).
const STATUS: &[Status] = &[
    status_gauge(
        "Threads_connected",
        "stack_mysql_connections",
        "Open client connections (Threads_connected), the exporter's own included.",
    ),
    status_gauge(
        "Threads_running",
        "stack_mysql_connections_running",
        "Connections running a statement (Threads_running).",
    ),
    status_gauge(
        "Max_used_connections",
        "stack_mysql_max_used_connections",
        "Most connections open at once since the server started.",
    ),
    status_gauge(
        "Innodb_buffer_pool_bytes_data",
        "stack_mysql_innodb_buffer_pool_data_bytes",
        "Bytes of data in the InnoDB buffer pool.",
    ),
    status_gauge(
        "Uptime",
        "stack_mysql_uptime_seconds",
        "Seconds since the server started (Uptime); it drops when the server restarts.",
    ),
    status_counter(
        "Aborted_connects",
        "stack_mysql_aborted_connects_total",
        "Failed connection attempts.",
    ),
    status_counter(
        "Connection_errors_max_connections",
        "stack_mysql_connection_errors_max_connections_total",
        "Connections refused because max_connections was reached (MariaDB leaves out those \
         refused after authentication in the slot kept for SUPER users; see Aborted_connects).",
    ),
    status_counter(
        "Aborted_clients",
        "stack_mysql_aborted_clients_total",
        "Connections dropped without closing properly (client killed, wait_timeout, network).",
    ),
    status_counter(
        "Questions",
        "stack_mysql_questions_total",
        "Statements sent by clients.",
    ),
    status_counter(
        "Slow_queries",
        "stack_mysql_slow_queries_total",
        "Statements that took longer than long_query_time.",
    ),
    status_counter(
        "Innodb_deadlocks",
        "stack_mysql_innodb_deadlocks_total",
        "InnoDB deadlocks (MariaDB's Innodb_deadlocks; MySQL's INNODB_METRICS lock_deadlocks).",
    ),
    status_counter(
        "Innodb_row_lock_waits",
        "stack_mysql_innodb_row_lock_waits_total",
        "Times a statement waited for an InnoDB row lock.",
    ),
    Status {
        per_unit: 1000.0,
        ..status_counter(
            "Innodb_row_lock_time",
            "stack_mysql_innodb_row_lock_wait_seconds_total",
            "Time spent waiting for InnoDB row locks (Innodb_row_lock_time, served in seconds).",
        )
    },
    status_counter(
        "Innodb_buffer_pool_read_requests",
        "stack_mysql_innodb_buffer_pool_read_requests_total",
        "Logical page reads from the InnoDB buffer pool.",
    ),
    status_counter(
        "Innodb_buffer_pool_reads",
        "stack_mysql_innodb_buffer_pool_reads_total",
        "Page reads the buffer pool could not serve, read from disk (hit ratio: 1 - reads / \
         read requests).",
    ),
    status_counter(
        "Created_tmp_tables",
        "stack_mysql_created_tmp_tables_total",
        "Internal temporary tables created, in memory or on disk.",
    ),
    status_counter(
        "Created_tmp_disk_tables",
        "stack_mysql_created_tmp_disk_tables_total",
        "Internal temporary tables created on disk.",
    ),
];

/// `Variable_name`, `Value` rows as a map, borrowed from the rows (no copy of each).
pub(super) fn name_values(rows: &[Vec<Option<String>>]) -> HashMap<&str, &str> {
    rows.iter()
        .filter_map(|r| {
            Some((
                r.first()?.as_deref()?,
                r.get(1)?.as_deref().unwrap_or_default(),
            ))
        })
        .collect()
}

/// A variable's or a cell's value as a number: `ON`/`OFF` as 1/0, otherwise a finite number ≥ 0.
pub(super) fn number(field: &str, text: Option<&str>) -> Option<f64> {
    let text = text?.trim();
    if text.eq_ignore_ascii_case("ON") {
        Some(1.0)
    } else if text.eq_ignore_ascii_case("OFF") {
        Some(0.0)
    } else {
        server_number(field, text)
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
/// Buffers the server allocates once, beside the InnoDB buffer pool (Aria's is MariaDB's).
const GLOBAL_BUFFERS: &[&str] = &[
    "key_buffer_size",
    "innodb_log_buffer_size",
    "query_cache_size",
    "aria_pagecache_buffer_size",
];
/// Buffers one connection may allocate for itself (the per-thread figures of mysqltuner).
const SESSION_BUFFERS: &[&str] = &[
    "sort_buffer_size",
    "join_buffer_size",
    "read_buffer_size",
    "read_rnd_buffer_size",
    "thread_stack",
    "net_buffer_length",
    "binlog_cache_size",
];
/// The figures of one round's answers.
pub fn figures(target: &str, answers: &Answers) -> Figures {
    let mut out = Figures::default();
    status_figures(target, &answers.status, &mut out);
    let labels = || target_label(target);
    let set = &mut out.set;
    let variables = name_values(&answers.slow.variables);
    if let Some(v) = number("max_connections", variables.get("max_connections").copied()) {
        set.gauge(
            "stack_mysql_max_connections",
            "The max_connections setting.",
            labels(),
            v,
        );
    }
    if let Some(v) = number(
        "innodb_buffer_pool_size",
        variables.get("innodb_buffer_pool_size").copied(),
    ) {
        set.gauge(
            "stack_mysql_innodb_buffer_pool_size_bytes",
            "The innodb_buffer_pool_size setting.",
            labels(),
            v,
        );
    }
    for (command, state, n) in processlist_series(&answers.processlist) {
        let mut l = labels();
        l.push(("command", command.into()));
        l.push(("state", state.into()));
        set.gauge(
            "stack_mysql_processlist_threads",
            "Threads by command and state (SHOW PROCESSLIST; empty is none).",
            l,
            n,
        );
    }
    memory_figures(target, &answers.slow, &variables, &mut out);
    size_figures(target, &answers.slow, &mut out);
    statement_figures(target, answers.statements.as_ref(), &mut out);
    out
}

/// The series of the status variables in [`STATUS`], and whether the deadlock count was read.
fn status_figures(target: &str, rows: &Rows, out: &mut Figures) {
    let status = name_values(rows);
    for served in STATUS {
        let Some(v) = number(served.variable, status.get(served.variable).copied()) else {
            continue;
        };
        let labels = target_label(target);
        let v = v / served.per_unit;
        if served.counter {
            out.set.counter(served.metric, served.help, labels, v);
        } else {
            out.set.gauge(served.metric, served.help, labels, v);
        }
    }
    out.note(
        format!(
            "mysql target {target:?}: InnoDB deadlocks left out (stack_mysql_innodb_deadlocks_total)"
        ),
        (!status.contains_key("Innodb_deadlocks")).then(|| {
            "neither the status variable Innodb_deadlocks (MariaDB) nor INNODB_METRICS' \
             lock_deadlocks (MySQL: needs PROCESS, and the counter enabled) could be read"
                .to_string()
        }),
    );
}

/// What the server's configuration sets aside beside the buffer pool (M2: the plan budgets MySQL
/// the pool's size alone): the global buffers, one connection's buffers, and the memory
/// performance_schema holds (0 where it is off; left out where it may not be read).
fn memory_figures(
    target: &str,
    slow: &SlowAnswers,
    variables: &HashMap<&str, &str>,
    out: &mut Figures,
) {
    let labels = || target_label(target);
    let sum = |names: &[&str]| -> Option<f64> {
        let present: Vec<f64> = names
            .iter()
            .filter_map(|name| number(name, variables.get(*name).copied()))
            .collect();
        (!present.is_empty()).then(|| present.iter().sum())
    };
    if let Some(bytes) = sum(GLOBAL_BUFFERS) {
        out.set.gauge(
            "stack_mysql_global_buffers_bytes",
            "Buffers allocated once beside the InnoDB buffer pool: key_buffer_size, \
             innodb_log_buffer_size, query_cache_size, aria_pagecache_buffer_size (MariaDB).",
            labels(),
            bytes,
        );
    }
    if let Some(bytes) = sum(SESSION_BUFFERS) {
        out.set.gauge(
            "stack_mysql_session_buffers_bytes",
            "Buffers one connection may allocate: sort, join, read and read_rnd buffers, \
             thread_stack, net_buffer_length, binlog_cache_size.",
            labels(),
            bytes,
        );
    }
    // Off, it holds nothing; refused, its figure is left out with one log line.
    let (performance_schema, refused) = match &slow.performance_schema_memory {
        None => (Some(0.0), None),
        Some(Ok(rows)) => (
            rows.first()
                .and_then(|r| number("performance_schema memory", r.first()?.as_deref())),
            None,
        ),
        Some(Err(reason)) => (
            None,
            Some(format!(
                "performance_schema's memory summary is refused \
                 (GRANT SELECT ON performance_schema.*): {reason}"
            )),
        ),
    };
    if let Some(bytes) = performance_schema {
        out.set.gauge(
            "stack_mysql_performance_schema_memory_bytes",
            "Memory performance_schema holds for itself (0 when it is off); left out where its \
             memory summary may not be read.",
            labels(),
            bytes,
        );
    }
    out.note(
        format!(
            "mysql target {target:?}: performance_schema's own memory left out \
             (stack_mysql_performance_schema_memory_bytes)"
        ),
        refused,
    );
}

/// `stack_mysql_database_size_bytes` of each schema whose tables the user can all see, and
/// `stack_mysql_database_size_readable` of every schema known.
fn size_figures(target: &str, slow: &SlowAnswers, out: &mut Figures) {
    let mut visible: Vec<(String, f64, usize)> = Vec::new();
    for row in &slow.schemas {
        let read = || {
            let schema = row.first()?.clone()?;
            let bytes = number("schema size", row.get(1)?.as_deref())?;
            let innodb = number("schema tables", row.get(2)?.as_deref())?;
            Some((schema, bytes, innodb as usize))
        };
        let Some((schema, bytes, innodb)) = read() else {
            continue;
        };
        match visible.iter_mut().find(|(s, _, _)| *s == schema) {
            Some(seen) => {
                seen.1 += bytes;
                seen.2 += innodb;
            }
            None => visible.push((schema, bytes, innodb)),
        }
    }
    let sizes_checked = slow.innodb_tables.is_some();
    let sizes = match &slow.innodb_tables {
        Some(names) => schema_sizes(&visible, &innodb_tables_per_schema(names)),
        None => visible
            .iter()
            .map(|(s, b, _)| (s.clone(), Some(*b)))
            .collect(),
    };
    let mut unreadable = Vec::new();
    for (database, bytes) in &sizes {
        let mut l = target_label(target);
        l.push(("database", database.clone().into()));
        if let Some(bytes) = bytes {
            out.set.gauge(
                "stack_mysql_database_size_bytes",
                "Data and index size of each schema (information_schema.TABLES), refreshed \
                 every slow_interval; left out when stack_mysql_database_size_readable is 0.",
                l.clone(),
                *bytes,
            );
        } else if !SYSTEM_SCHEMAS.contains(&database.as_str()) {
            unreadable.push(printable(database));
        }
        if sizes_checked {
            out.set.gauge(
                "stack_mysql_database_size_readable",
                "1 if the exporter's user sees every InnoDB table of this schema; 0 if it \
                 lacks a grant on some, so the schema's size is unknown.",
                l,
                f64::from(bytes.is_some()),
            );
        }
    }
    let why = if !sizes_checked {
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
    out.note(format!("mysql target {target:?}: schema sizes"), why);
}

/// Statement count and latency from performance_schema, and whether they could be read.
fn statement_figures(target: &str, statements: Option<&Result<Rows, String>>, out: &mut Figures) {
    let labels = || target_label(target);
    let refused = match statements {
        None => Some(
            "performance_schema is OFF (set performance_schema = ON in the server's config)"
                .to_string(),
        ),
        Some(Err(reason)) => Some(format!(
            "performance_schema's statement summary is refused \
             (GRANT SELECT ON performance_schema.*): {reason}"
        )),
        Some(Ok(rows)) => {
            let row = rows.first();
            if let Some(n) = row.and_then(|r| number("COUNT_STAR", r.first()?.as_deref())) {
                out.set.counter(
                    "stack_mysql_statements_total",
                    "Statements counted by performance_schema.",
                    labels(),
                    n,
                );
            }
            // SUM_TIMER_WAIT is in picoseconds.
            if let Some(ps) = row.and_then(|r| number("SUM_TIMER_WAIT", r.get(1)?.as_deref())) {
                out.set.counter(
                    "stack_mysql_statement_latency_seconds_total",
                    "Total latency of the statements counted by performance_schema.",
                    labels(),
                    ps / 1e12,
                );
            }
            None
        }
    };
    out.set.gauge(
        "stack_mysql_statements_readable",
        "1 if performance_schema's statement totals were read; 0 if performance_schema is \
         off or refused (the statement series are then left out; see Slow_queries).",
        labels(),
        f64::from(refused.is_none()),
    );
    out.note(
        format!(
            "mysql target {target:?}: statement latency left out (stack_mysql_statements_readable 0)"
        ),
        refused,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::mysql::STATUS_QUERY;

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
        assert_eq!(number("x", Some("ON")), Some(1.0));
        assert_eq!(number("x", Some("134217728")), Some(134_217_728.0));
        assert_eq!(number("x", Some("-5")), None);
        assert_eq!(number("x", Some("1e400")), None);
        assert_eq!(number("x", None), None);
    }

    fn status_rows(pairs: &[(&str, &str)]) -> Rows {
        pairs
            .iter()
            .map(|(n, v)| vec![Some(n.to_string()), Some(v.to_string())])
            .collect()
    }

    #[test]
    fn the_status_query_asks_for_every_variable_served() {
        for served in STATUS {
            assert!(
                STATUS_QUERY.contains(&format!("'{}'", served.variable)),
                "{} is served but not asked for",
                served.variable
            );
        }
        let asked = STATUS_QUERY.matches('\'').count() / 2;
        assert_eq!(
            asked,
            STATUS.len(),
            "asked for a variable that is not served"
        );
    }

    #[test]
    fn row_lock_time_is_served_in_seconds() {
        let mut out = Figures::default();
        let rows = status_rows(&[
            ("Innodb_row_lock_time", "2500"),
            ("Innodb_row_lock_waits", "3"),
            ("Innodb_deadlocks", "1"),
        ]);
        status_figures("t", &rows, &mut out);
        let t = [("target", "t")];
        let value = |name| out.set.value(name, &t);
        assert_eq!(
            value("stack_mysql_innodb_row_lock_wait_seconds_total"),
            Some(2.5)
        );
        assert_eq!(value("stack_mysql_innodb_row_lock_waits_total"), Some(3.0));
        assert_eq!(value("stack_mysql_innodb_deadlocks_total"), Some(1.0));
        assert!(out.notes.iter().all(|(_, why)| why.is_none()));
    }

    #[test]
    fn deadlocks_come_from_innodb_metrics_on_mysql_or_are_said_missing() {
        // MySQL 8: no Innodb_deadlocks status; DEADLOCKS_QUERY's row has the same shape.
        let mut out = Figures::default();
        let rows = status_rows(&[("Uptime", "10"), ("Innodb_deadlocks", "4")]);
        status_figures("t", &rows, &mut out);
        let t = [("target", "t")];
        assert_eq!(
            out.set.value("stack_mysql_innodb_deadlocks_total", &t),
            Some(4.0)
        );
        // Neither readable: no series, and a note says why.
        let mut out = Figures::default();
        status_figures("t", &status_rows(&[("Uptime", "10")]), &mut out);
        assert_eq!(
            out.set.value("stack_mysql_innodb_deadlocks_total", &t),
            None
        );
        assert_eq!(out.set.value("stack_mysql_uptime_seconds", &t), Some(10.0));
        assert!(out
            .notes
            .iter()
            .any(|(what, why)| what.contains("deadlocks") && why.is_some()));
    }

    #[test]
    fn one_row_per_thread_adds_up() {
        let series = processlist_series(&[
            row(Some("Sleep"), Some(""), 1),
            row(Some("Query"), Some("starting"), 1),
            row(Some("Sleep"), Some(""), 1),
        ]);
        assert_eq!(
            series,
            vec![
                ("Sleep".into(), "none".into(), 2.0),
                ("Query".into(), "starting".into(), 1.0),
            ]
        );
    }

    #[test]
    fn a_schemas_rows_add_up() {
        let slow = SlowAnswers {
            schemas: vec![
                vec![Some("shop".into()), Some("0".into()), Some("0".into())],
                vec![Some("empty".into()), Some("0".into()), Some("0".into())],
                vec![Some("shop".into()), Some("32768".into()), Some("2".into())],
            ],
            innodb_tables: Some(vec!["shop/a".into(), "shop/b".into()]),
            ..SlowAnswers::default()
        };
        let mut out = Figures::default();
        size_figures("t", &slow, &mut out);
        let size = |db| {
            out.set.value(
                "stack_mysql_database_size_bytes",
                &[("target", "t"), ("database", db)],
            )
        };
        assert_eq!(size("shop"), Some(32768.0));
        assert_eq!(size("empty"), Some(0.0));
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
