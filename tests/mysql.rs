//! The MySQL/MariaDB collector against a real throwaway mariadbd: values checked against the
//! server's own answers, a server stopped and started mid-run, a wrong password, a port that
//! never answers, connections refused at max_connections, a deadlock and temporary tables.

mod common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::servers::{MariadbServer, Scenario, GOOD_PASSWORD, NARROW_PASSWORD};
use common::{metric, must, temp_dir, wait_for, write, Exporter};

fn status(db: &MariadbServer, variable: &str) -> f64 {
    let out = db.sql(&format!("SHOW GLOBAL STATUS LIKE '{variable}'"));
    out.split('\t').nth(1).unwrap().trim().parse().unwrap()
}

/// A client session that stays connected and idle.
fn session(db: &MariadbServer) -> Child {
    let mut child = db
        .client_command()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.as_mut().unwrap(), "SELECT 1;").unwrap();
    child
}

const SIZE_QUERY: &str = "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) \
                          FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'";

/// The shared scenario (common::servers::Scenario) and the figures of MySQL against the server's
/// own answers.
#[test]
fn mysql_collector_against_a_real_server() {
    let mut db = MariadbServer::start();
    db.create_monitoring_users();
    let scenario = Scenario::start(&db, "timeout = \"2s\"\nslow_interval = \"0s\"");
    let exporter = &scenario.exporter;
    let text = exporter.scrape();

    // Settings as the server says.
    let max: f64 = db.sql("SELECT @@max_connections").parse().unwrap();
    assert_eq!(
        must(&text, "stack_mysql_max_connections", &[("target", "main")]),
        max
    );
    let pool: f64 = db.sql("SELECT @@innodb_buffer_pool_size").parse().unwrap();
    assert_eq!(
        must(
            &text,
            "stack_mysql_innodb_buffer_pool_size_bytes",
            &[("target", "main")]
        ),
        pool
    );
    let data = must(
        &text,
        "stack_mysql_innodb_buffer_pool_data_bytes",
        &[("target", "main")],
    );
    assert!(data > 0.0 && data <= pool, "{data} of {pool}");

    // M2: what the configuration sets aside beside the pool, as the server says.
    let global: f64 = db
        .sql(
            "SELECT SUM(VARIABLE_VALUE) FROM information_schema.GLOBAL_VARIABLES WHERE \
             VARIABLE_NAME IN ('KEY_BUFFER_SIZE', 'INNODB_LOG_BUFFER_SIZE', 'QUERY_CACHE_SIZE', \
             'ARIA_PAGECACHE_BUFFER_SIZE')",
        )
        .parse()
        .unwrap();
    assert_eq!(
        must(
            &text,
            "stack_mysql_global_buffers_bytes",
            &[("target", "main")]
        ),
        global
    );
    let sort: f64 = db.sql("SELECT @@sort_buffer_size").parse().unwrap();
    let per_session = must(
        &text,
        "stack_mysql_session_buffers_bytes",
        &[("target", "main")],
    );
    assert!(
        per_session > sort,
        "one session's buffers {per_session} include sort's {sort}"
    );
    let own: f64 = db
        .sql(
            "SELECT SUM(CURRENT_NUMBER_OF_BYTES_USED) FROM \
             performance_schema.memory_summary_global_by_event_name \
             WHERE EVENT_NAME LIKE 'memory/performance_schema/%'",
        )
        .parse()
        .unwrap();
    let seen = must(
        &text,
        "stack_mysql_performance_schema_memory_bytes",
        &[("target", "main")],
    );
    // performance_schema grows a little as it instruments new threads.
    assert!(
        seen > 1e6 && (seen - own).abs() < 0.1 * own,
        "performance_schema holds {own}, the exporter says {seen}"
    );

    // N more sessions: N more connections, seen sleeping in the process list. The server counts
    // a connection from its handshake on, so the `badpass` target, refused in the same scrape,
    // may add one to Threads_connected: the figures below allow for it rather than race it.
    let before = status(&db, "Threads_connected") - 1.0; // less the client asking
    let mut sessions: Vec<Child> = (0..4).map(|_| session(&db)).collect();
    let mut text = String::new();
    // A new session shows as Sleep once its first statement is over.
    wait_for(
        "4 more connections, asleep",
        Duration::from_secs(10),
        || {
            text = exporter.scrape();
            let sleeping = metric(
                &text,
                "stack_mysql_processlist_threads",
                &[("target", "main"), ("command", "Sleep"), ("state", "none")],
            );
            must(&text, "stack_mysql_connections", &[("target", "main")]) >= before + 4.0
                && sleeping >= Some(4.0)
        },
    );
    let server = status(&db, "Threads_connected") - 1.0;
    let seen = must(&text, "stack_mysql_connections", &[("target", "main")]);
    assert!(
        seen == server || seen == server + 1.0,
        "the exporter says {seen} connections, the server {server} (+1 while `badpass` is refused)"
    );
    assert!(
        must(
            &text,
            "stack_mysql_processlist_threads",
            &[("target", "main"), ("command", "Sleep"), ("state", "none")]
        ) >= 4.0
    );
    assert!(
        must(
            &text,
            "stack_mysql_max_used_connections",
            &[("target", "main")]
        ) >= before + 4.0
    );
    must(
        &text,
        "stack_mysql_connections_running",
        &[("target", "main")],
    );
    for mut s in sessions.drain(..) {
        let _ = s.kill();
        let _ = s.wait();
    }

    // Slow queries and questions count up as the server counts them.
    let slow = must(
        &text,
        "stack_mysql_slow_queries_total",
        &[("target", "main")],
    );
    db.sql("SET SESSION long_query_time = 0; SELECT 1; SELECT 2;");
    let text = exporter.scrape();
    let seen = must(
        &text,
        "stack_mysql_slow_queries_total",
        &[("target", "main")],
    );
    assert!(
        seen >= slow + 2.0 && seen <= status(&db, "Slow_queries"),
        "{slow} -> {seen}"
    );
    assert!(
        must(&text, "stack_mysql_questions_total", &[("target", "main")])
            <= status(&db, "Questions")
    );
    must(
        &text,
        "stack_mysql_aborted_connects_total",
        &[("target", "main")],
    );

    // Statement latency from performance_schema (picoseconds to seconds).
    let statements = must(&text, "stack_mysql_statements_total", &[("target", "main")]);
    let server: f64 = db
        .sql("SELECT SUM(COUNT_STAR) FROM performance_schema.events_statements_summary_global_by_event_name")
        .parse()
        .unwrap();
    assert!(
        statements > 0.0 && statements <= server,
        "{statements} vs {server}"
    );
    let latency = must(
        &text,
        "stack_mysql_statement_latency_seconds_total",
        &[("target", "main")],
    );
    assert!(latency > 0.0 && latency < 3600.0, "{latency}");

    // A schema with known data: its size grows and matches the server's own figure.
    let empty = must(
        &text,
        "stack_mysql_database_size_bytes",
        &[("target", "main"), ("database", "shop")],
    );
    db.sql(
        "SET SESSION max_recursive_iterations = 100000; \
         CREATE TABLE shop.items (id INT PRIMARY KEY, body VARCHAR(255)) ENGINE=InnoDB; \
         INSERT INTO shop.items WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s \
         WHERE n < 20000) SELECT n, REPEAT('x', 200) FROM s; \
         ANALYZE TABLE shop.items;",
    );
    let text = exporter.scrape();
    let size: f64 = db.sql(SIZE_QUERY).parse().unwrap();
    assert!(size > 2e6 && size > empty, "shop: {empty} -> {size}");
    assert_eq!(
        must(
            &text,
            "stack_mysql_database_size_bytes",
            &[("target", "main"), ("database", "shop")]
        ),
        size
    );

    // A restart between two scrapes shows as an uptime that drops.
    let uptime = |text: &str| must(text, "stack_mysql_uptime_seconds", &[("target", "main")]);
    let mut before = 0.0;
    wait_for("3 s of uptime", Duration::from_secs(10), || {
        before = uptime(&exporter.scrape());
        before >= 3.0
    });
    scenario.outage(&mut db, "stack_mysql_connections");
    let after = uptime(&exporter.scrape());
    assert!(
        after < before,
        "uptime {before} -> {after} across a restart"
    );

    // One connection per target kept across scrapes.
    let connects = status(&db, "Connections");
    for _ in 0..3 {
        exporter.scrape();
    }
    // Only the badpass target (and our own status queries) connect again.
    assert!(status(&db, "Connections") - connects <= 3.0 + 2.0 + 1.0);

    scenario.check_log("Access denied");
}

/// Runs SQL as `user` over TCP, as the exporter connects; its output.
fn sql_as(db: &MariadbServer, user: &str, password: &str, sql: &str) -> String {
    let output = std::process::Command::new("mariadb")
        .arg("--no-defaults")
        .args([
            "--protocol=TCP",
            "-h",
            "127.0.0.1",
            "-P",
            &db.port.to_string(),
        ])
        .arg(format!("-u{user}"))
        .arg(format!("-p{password}"))
        .args(["--batch", "--skip-column-names", "-e", sql])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Slow-log entries written for `user` (each entry has a `# User@Host: user[user] @ …` line).
fn slow_log_entries(path: &std::path::Path, user: &str) -> usize {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let marker = format!("# User@Host: {user}[{user}]");
    log.lines().filter(|l| l.starts_with(&marker)).count()
}

/// The exporter leaves no trace in what it measures: with every statement slow
/// (long_query_time = 0, log_queries_not_using_indexes = ON), several scrapes that each read the
/// schema sizes add no entry to the slow log and nothing to Slow_queries, where the same query
/// from a session of the same user does both. Its session names itself (program_name in
/// performance_schema.session_connect_attrs). What the user may not read is a 0 series and one
/// log line, never a smaller or missing number: a schema with a table it has no grant on, and
/// performance_schema refused to a second user.
#[test]
fn the_exporter_leaves_no_trace_and_says_what_it_cannot_read() {
    let db = MariadbServer::start();
    db.create_monitoring_users();
    db.sql(
        "CREATE TABLE shop.orders (id INT PRIMARY KEY) ENGINE=InnoDB; \
         CREATE TABLE shop.items (id INT PRIMARY KEY) ENGINE=InnoDB; \
         CREATE DATABASE ledger; \
         CREATE TABLE ledger.entries (id INT PRIMARY KEY) ENGINE=InnoDB; \
         CREATE TABLE ledger.audit (id INT PRIMARY KEY) ENGINE=InnoDB; \
         GRANT SELECT ON ledger.entries TO 'monitor'@'127.0.0.1'; \
         CREATE DATABASE vault; \
         CREATE TABLE vault.keys (id INT PRIMARY KEY) ENGINE=InnoDB;",
    );
    let dir = temp_dir();
    let slow_log = dir.path().join("slow.log");
    db.sql(&format!(
        "SET GLOBAL slow_query_log_file = '{}'; SET GLOBAL log_output = 'FILE'; \
         SET GLOBAL long_query_time = 0; SET GLOBAL log_queries_not_using_indexes = ON; \
         SET GLOBAL slow_query_log = ON;",
        slow_log.display()
    ));
    let slow_queries = || status(&db, "Slow_queries");
    // Reading Slow_queries is itself a slow query, counted once it has answered.
    let (a, b) = (slow_queries(), slow_queries());
    let per_read = b - a;

    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "[[mysql]]\nname = \"main\"\nurl = \"mysql://monitor:{GOOD_PASSWORD}@127.0.0.1:{port}/\"\n\
             slow_interval = \"0s\"\n\n\
             [[mysql]]\nname = \"narrow\"\nurl = \"mysql://narrow:{NARROW_PASSWORD}@127.0.0.1:{port}/\"\n",
            port = db.port,
        ),
    );
    let disk_tables = || status(&db, "Created_tmp_disk_tables");
    let disk_before = disk_tables();
    let before = slow_queries();
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    for _ in 0..4 {
        let text = exporter.scrape();
        let main = |database| [("target", "main"), ("database", database)];
        assert_eq!(must(&text, "stack_mysql_up", &[("target", "main")]), 1.0);
        // shop: every table granted. ledger: one of two tables. vault: none (the schema is
        // invisible to the user, yet InnoDB's table list names it).
        assert_eq!(
            must(&text, "stack_mysql_database_size_readable", &main("shop")),
            1.0
        );
        must(&text, "stack_mysql_database_size_bytes", &main("shop"));
        for hidden in ["ledger", "vault"] {
            assert_eq!(
                must(&text, "stack_mysql_database_size_readable", &main(hidden)),
                0.0
            );
            assert_eq!(
                metric(&text, "stack_mysql_database_size_bytes", &main(hidden)),
                None
            );
        }
        assert_eq!(
            must(
                &text,
                "stack_mysql_statements_readable",
                &[("target", "main")]
            ),
            1.0
        );
        // narrow: no grant on performance_schema; up all the same.
        assert_eq!(must(&text, "stack_mysql_up", &[("target", "narrow")]), 1.0);
        assert_eq!(
            must(
                &text,
                "stack_mysql_statements_readable",
                &[("target", "narrow")]
            ),
            0.0
        );
        assert_eq!(
            metric(
                &text,
                "stack_mysql_statements_total",
                &[("target", "narrow")]
            ),
            None
        );
        // Nor on its memory summary: left out, not 0.
        assert_eq!(
            metric(
                &text,
                "stack_mysql_performance_schema_memory_bytes",
                &[("target", "narrow")]
            ),
            None
        );
    }
    let after = slow_queries();
    assert_eq!(
        after - before,
        per_read,
        "the exporter's queries raised Slow_queries ({before} -> {after})"
    );

    assert_eq!(
        slow_log_entries(&slow_log, "monitor"),
        0,
        "the exporter's queries are in the slow log"
    );
    assert_eq!(
        slow_log_entries(&slow_log, "narrow"),
        0,
        "the exporter's queries are in the slow log"
    );

    // The same size query from a session of the same user is slow on both counts: the checks
    // above can fail.
    sql_as(&db, "monitor", GOOD_PASSWORD, SIZE_QUERY);
    assert!(slow_log_entries(&slow_log, "monitor") >= 1);
    assert_eq!(slow_queries() - after, per_read + 1.0);

    // Nor temporary tables on disk, which StackMysqlTmpDiskTablesHigh would count against the
    // application (every scrape read the schema sizes and the process list; SIZE_QUERY makes
    // none either).
    let disk_after = disk_tables();
    assert_eq!(
        disk_after, disk_before,
        "the exporter's queries made temporary tables on disk"
    );
    // The grouped process list the exporter used to read does make one.
    sql_as(
        &db,
        "monitor",
        GOOD_PASSWORD,
        "SELECT COMMAND, STATE, COUNT(*) FROM information_schema.PROCESSLIST GROUP BY 1, 2",
    );
    assert!(disk_tables() > disk_after);

    // The exporter's sessions name themselves.
    let named = db.sql(
        "SELECT p.USER FROM performance_schema.session_connect_attrs a \
         JOIN information_schema.PROCESSLIST p ON p.ID = a.PROCESSLIST_ID \
         WHERE a.ATTR_NAME = 'program_name' AND a.ATTR_VALUE = 'stack_exporter' ORDER BY p.USER",
    );
    assert_eq!(named, "monitor\nnarrow");

    // One line each when the condition starts; one when it ends.
    let log = exporter.log();
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        lines("\"mysql target \\\"main\\\": schema sizes"),
        1,
        "{log}"
    );
    let sizes_line = log.lines().find(|l| l.contains("schema sizes")).unwrap();
    assert!(
        sizes_line.contains("ledger") && sizes_line.contains("vault"),
        "{sizes_line}"
    );
    assert_eq!(
        lines("\\\"narrow\\\": statement latency left out"),
        1,
        "{log}"
    );
    assert_eq!(
        lines("\\\"main\\\": statement latency left out"),
        0,
        "{log}"
    );
    assert_eq!(
        lines("\\\"narrow\\\": performance_schema's own memory left out"),
        1,
        "{log}"
    );
    db.sql(
        "GRANT SELECT ON ledger.audit TO 'monitor'@'127.0.0.1'; \
         GRANT SELECT ON vault.keys TO 'monitor'@'127.0.0.1';",
    );
    let text = exporter.scrape();
    for database in ["ledger", "vault"] {
        let labels = [("target", "main"), ("database", database)];
        assert_eq!(
            must(&text, "stack_mysql_database_size_readable", &labels),
            1.0
        );
        must(&text, "stack_mysql_database_size_bytes", &labels);
    }
    let log = exporter.log();
    assert!(
        log.lines()
            .any(|l| l.contains("schema sizes: recovered") && l.contains("level=info")),
        "{log}"
    );
    assert!(!log.contains(GOOD_PASSWORD) && !log.contains(NARROW_PASSWORD));
}

/// `--config.check` refuses, for every kind of database target, a URL its driver would refuse at
/// connect time (a bad port, an unknown option) and a zero timeout: non-zero exit, the file, line
/// and key, and never the password.
#[test]
fn config_check_refuses_bad_database_targets() {
    const SECRET: &str = "Sekr1t-Pass-8080";
    let dir = temp_dir();
    let cases = [
        (
            "[[mysql]]\nname = \"a\"\nurl = \"mysql://u:{S}@db:99999/\"\n",
            3,
            "mysql.url",
            "invalid port",
        ),
        (
            "[[mysql]]\nname = \"a\"\nurl = \"mysql://u:{S}@db:3306/?colour=red\"\n",
            3,
            "mysql.url",
            "colour",
        ),
        (
            "[[postgres]]\nname = \"a\"\nurl = \"postgres://u:{S}@db:abc/app\"\n",
            3,
            "postgres.url",
            "postgres URL",
        ),
        (
            "[[postgres]]\nname = \"a\"\nurl = \"postgres://u:{S}@db/app?colour=red\"\n",
            3,
            "postgres.url",
            "unknown option `colour`",
        ),
        (
            "[[redis]]\nname = \"a\"\nurl = \"redis://u:{S}@cache:6379/0?colour=red\"\n",
            3,
            "redis.url",
            "unknown option `colour`",
        ),
        (
            "[[redis]]\nname = \"a\"\nurl = \"redis://u:{S}@cache:99999/0\"\n",
            3,
            "redis.url",
            "redis URL",
        ),
        (
            "[[mysql]]\nname = \"a\"\nurl = \"mysql://u:{S}@db/\"\ntimeout = \"0s\"\n",
            4,
            "mysql.timeout",
            "more than 0s",
        ),
        (
            "[[redis]]\nname = \"a\"\nurl = \"redis://u:{S}@cache/0\"\n\ntimeout = 0\n",
            5,
            "redis.timeout",
            "more than 0s",
        ),
    ];
    for (i, (text, line, key, why)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        write(&path, &text.replace("{S}", SECRET));
        let output = std::process::Command::new(common::exporter_binary())
            .arg("--config.check")
            .arg(format!("--config.file={}", path.display()))
            .env_remove("STACK_MYSQL_URL")
            .env_remove("STACK_POSTGRES_URL")
            .env_remove("STACK_REDIS_URL")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!output.status.success(), "case {i} accepted:\n{said}");
        let place = format!("case{i}.toml:{line}:");
        assert!(said.contains(&place), "case {i}: no {place}:\n{said}");
        assert!(
            said.contains(&format!("key `{key}`")),
            "case {i}: no key {key}:\n{said}"
        );
        assert!(said.contains(why), "case {i}: no {why:?}:\n{said}");
        assert!(
            !said.contains(SECRET),
            "case {i} shows the password:\n{said}"
        );
    }
}

// ------------------------------------------------------------ refusals, locks, temporary tables

const APP_PASSWORD: &str = "App-Pass-3141";

/// An exporter watching `db` as `monitor` (one kept connection), no other target.
fn exporter_on(db: &MariadbServer, dir: &std::path::Path) -> Exporter {
    let config = dir.join("stack.toml");
    write(
        &config,
        &format!(
            "[[mysql]]\nname = \"main\"\nurl = \"mysql://monitor:{GOOD_PASSWORD}@127.0.0.1:{}/\"\n",
            db.port
        ),
    );
    Exporter::start(&[&format!("--config.file={}", config.display())])
}

/// The mariadb client as `app` over TCP without TLS (so that a refusal before the handshake
/// reads `ERROR 1040 (HY000)` and one after it `ERROR 1040 (08004)`).
fn app_client(db: &MariadbServer) -> std::process::Command {
    let mut command = std::process::Command::new("mariadb");
    command
        .args([
            "--no-defaults",
            "--skip-ssl",
            "--protocol=TCP",
            "-h",
            "127.0.0.1",
        ])
        .args(["-P", &db.port.to_string(), "-uapp"])
        .arg(format!("-p{APP_PASSWORD}"))
        .args(["--batch", "--skip-column-names"]);
    command
}

/// An `app` session over TCP that stays connected and idle.
fn app_session(db: &MariadbServer) -> Child {
    let mut child = app_client(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.as_mut().unwrap(), "SELECT 1;").unwrap();
    child
}

/// `n` `app` clients connecting at once; the error output of each that was refused.
fn burst(db: &MariadbServer, n: usize) -> Vec<String> {
    let clients: Vec<Child> = (0..n)
        .map(|_| {
            app_client(db)
                .args(["-e", "SELECT 1"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    clients
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .filter(|o| !o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .collect()
}

fn stop(children: Vec<Child>) {
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A2/A4/P6 seen as refusals, not only as a sampled gauge. MariaDB's `max_connections` cannot go
/// below 10; it admits one more connection, kept for SUPER users, and a user without SUPER that
/// takes it is refused after authenticating. Full server (the exporter, 9 `app` sessions and a
/// root session in the extra slot): a burst of 10 is refused before the handshake, and
/// `stack_mysql_connection_errors_max_connections_total` counts every refusal. With the extra
/// slot free, a lone refused client is refused after the handshake, which MariaDB counts in
/// Aborted_connects only: the counter does not move (MariaDB 10.11's sql_acl.cc raises the error
/// without counting it), as docs/databases.md says.
#[test]
fn refused_connections_are_counted_where_mariadb_counts_them() {
    let db = MariadbServer::start_with(&["--max-connections=10"]);
    db.create_monitoring_users();
    db.sql(&format!(
        "CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '{APP_PASSWORD}'; \
         GRANT SELECT ON shop.* TO 'app'@'127.0.0.1';"
    ));
    assert_eq!(db.sql("SELECT @@max_connections"), "10");
    let dir = temp_dir();
    let exporter = exporter_on(&db, dir.path());
    let main = [("target", "main")];
    let connections_reach = |n: f64| {
        wait_for(&format!("{n} connections"), Duration::from_secs(30), || {
            let seen = metric(&exporter.scrape(), "stack_mysql_connections", &main);
            eprintln!("connections {seen:?}");
            seen == Some(n)
        })
    };
    let app: Vec<Child> = (0..9).map(|_| app_session(&db)).collect();
    connections_reach(10.0);
    // root (SUPER) takes the extra slot: every other connect is refused at once.
    let root = session(&db);
    connections_reach(11.0);
    let text = exporter.scrape();
    let refused_before = must(
        &text,
        "stack_mysql_connection_errors_max_connections_total",
        &main,
    );
    let aborted_before = must(&text, "stack_mysql_aborted_connects_total", &main);
    let clients_before = must(&text, "stack_mysql_aborted_clients_total", &main);

    let errors = burst(&db, 10);
    assert_eq!(errors.len(), 10, "every client of the burst is refused");
    assert!(
        errors.iter().all(|e| e.contains("ERROR 1040 (HY000)")),
        "refused before the handshake: {errors:?}"
    );
    let text = exporter.scrape();
    let refused = must(
        &text,
        "stack_mysql_connection_errors_max_connections_total",
        &main,
    ) - refused_before;
    assert!(
        refused >= errors.len() as f64,
        "{} refusals, the counter rose by {refused}",
        errors.len()
    );
    assert_eq!(refused, errors.len() as f64, "nothing else was refused");
    let aborted = must(&text, "stack_mysql_aborted_connects_total", &main) - aborted_before;
    assert!(aborted >= errors.len() as f64, "aborted connects {aborted}");

    // The extra slot free again (root's client killed: an aborted client): a lone app client
    // is refused after authenticating; only Aborted_connects sees it.
    stop(vec![root]);
    connections_reach(10.0);
    let text = exporter.scrape();
    let refused_before = must(
        &text,
        "stack_mysql_connection_errors_max_connections_total",
        &main,
    );
    let aborted_before = must(&text, "stack_mysql_aborted_connects_total", &main);
    assert!(
        must(&text, "stack_mysql_aborted_clients_total", &main) > clients_before,
        "a client killed without closing is an aborted client"
    );
    let errors = burst(&db, 1);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("ERROR 1040 (08004)"), "{errors:?}");
    let text = exporter.scrape();
    assert_eq!(
        must(
            &text,
            "stack_mysql_connection_errors_max_connections_total",
            &main
        ),
        refused_before,
        "MariaDB does not count a refusal after authentication"
    );
    assert_eq!(
        must(&text, "stack_mysql_aborted_connects_total", &main) - aborted_before,
        1.0
    );
    // The extra slot was used: Max_used_connections says the server was full.
    assert_eq!(
        must(&text, "stack_mysql_max_used_connections", &main),
        must(&text, "stack_mysql_max_connections", &main) + 1.0
    );
    stop(app);
}

/// A session of root over the socket that runs `statements` one line at a time, its output
/// (and errors) in `log`.
fn scripted_session(db: &MariadbServer, log: &std::path::Path) -> Child {
    let file = std::fs::File::create(log).unwrap();
    db.client_command()
        .arg("--force") // go on after an error (the deadlock victim's)
        .stdin(Stdio::piped())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

fn say(session: &mut Child, sql: &str) {
    writeln!(session.stdin.as_mut().unwrap(), "{sql}").unwrap();
}

/// InnoDB parity with PostgreSQL and C2/P3: a real deadlock between two sessions, the row-lock
/// wait before it (at least the second the first session waited), a GROUP BY on a TEXT column
/// that makes a temporary table on disk, and buffer pool reads, each as the server counts them.
#[test]
fn innodb_locks_and_temporary_tables_against_a_real_server() {
    let db = MariadbServer::start();
    db.create_monitoring_users();
    db.sql(
        "CREATE TABLE shop.counters (id INT PRIMARY KEY, v INT) ENGINE=InnoDB; \
         INSERT INTO shop.counters VALUES (1, 0), (2, 0); \
         CREATE TABLE shop.notes (id INT PRIMARY KEY, body TEXT) ENGINE=InnoDB; \
         INSERT INTO shop.notes VALUES (1, 'a'), (2, 'b'), (3, 'a');",
    );
    let dir = temp_dir();
    let exporter = exporter_on(&db, dir.path());
    let main = [("target", "main")];
    let text = exporter.scrape();
    let before = |name| must(&text, name, &main);
    let deadlocks = before("stack_mysql_innodb_deadlocks_total");
    let waits = before("stack_mysql_innodb_row_lock_waits_total");
    let waited = before("stack_mysql_innodb_row_lock_wait_seconds_total");
    let tmp = before("stack_mysql_created_tmp_tables_total");
    let tmp_disk = before("stack_mysql_created_tmp_disk_tables_total");
    let requests = before("stack_mysql_innodb_buffer_pool_read_requests_total");

    // A holds row 1, B row 2; A waits for row 2 for a second, then B asks for row 1.
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = scripted_session(&db, &log_a);
    let mut b = scripted_session(&db, &log_b);
    say(
        &mut a,
        "BEGIN; UPDATE shop.counters SET v = v + 1 WHERE id = 1;",
    );
    say(
        &mut b,
        "BEGIN; UPDATE shop.counters SET v = v + 1 WHERE id = 2;",
    );
    std::thread::sleep(Duration::from_millis(500));
    say(&mut a, "UPDATE shop.counters SET v = v + 1 WHERE id = 2;");
    std::thread::sleep(Duration::from_millis(1200));
    say(&mut b, "UPDATE shop.counters SET v = v + 1 WHERE id = 1;");
    for mut s in [a, b] {
        say(&mut s, "COMMIT;");
        drop(s.stdin.take());
        assert!(s.wait().unwrap().code().is_some());
    }
    let logs = std::fs::read_to_string(&log_a).unwrap() + &std::fs::read_to_string(&log_b).unwrap();
    assert!(logs.contains("1213"), "no deadlock: {logs}");
    assert_eq!(status(&db, "Innodb_deadlocks"), deadlocks + 1.0);

    // A temporary table on disk: MariaDB's in-memory engine takes no TEXT.
    db.sql("SELECT body, COUNT(*) FROM shop.notes GROUP BY body");

    let text = exporter.scrape();
    let now = |name| must(&text, name, &main);
    assert_eq!(now("stack_mysql_innodb_deadlocks_total"), deadlocks + 1.0);
    assert!(now("stack_mysql_innodb_row_lock_waits_total") >= waits + 1.0);
    let seconds = now("stack_mysql_innodb_row_lock_wait_seconds_total") - waited;
    // Innodb_row_lock_time is in milliseconds; A waited about 1.2 s.
    assert!((1.0..30.0).contains(&seconds), "waited {seconds} s");
    assert!(
        now("stack_mysql_innodb_row_lock_wait_seconds_total")
            <= status(&db, "Innodb_row_lock_time") / 1000.0
    );
    assert!(now("stack_mysql_created_tmp_disk_tables_total") >= tmp_disk + 1.0);
    assert!(now("stack_mysql_created_tmp_tables_total") >= tmp + 1.0);
    assert!(
        now("stack_mysql_created_tmp_disk_tables_total") <= status(&db, "Created_tmp_disk_tables")
    );
    let read_requests = now("stack_mysql_innodb_buffer_pool_read_requests_total");
    let reads = now("stack_mysql_innodb_buffer_pool_reads_total");
    assert!(read_requests > requests, "{requests} -> {read_requests}");
    assert!(
        reads > 0.0 && reads < read_requests,
        "{reads} of {read_requests}"
    );
    assert!(read_requests <= status(&db, "Innodb_buffer_pool_read_requests"));
}

/// Schema sizes and server variables, fetched every `slow_interval`, are fetched again after the
/// round that finds them due: no scrape waits for the walk of information_schema.
#[test]
fn mysql_slow_answers_are_fetched_after_the_round_that_finds_them_due() {
    let db = MariadbServer::start();
    db.create_monitoring_users();
    common::servers::slow_answers_are_fetched_after_the_round_that_finds_them_due(
        &db,
        "shop",
        || {
            db.sql(
                "SET SESSION max_recursive_iterations = 100000; \
             CREATE TABLE shop.grown (id INT PRIMARY KEY, body VARCHAR(255)) ENGINE=InnoDB; \
             INSERT INTO shop.grown WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 \
             FROM s WHERE n < 20000) SELECT n, REPEAT('x', 200) FROM s; \
             ANALYZE TABLE shop.grown;",
            );
        },
    );
}
