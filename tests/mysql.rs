//! The MySQL/MariaDB collector against a real throwaway mariadbd: values checked against the
//! server's own answers, a server stopped and started mid-run, a wrong password, a port that
//! never answers.

mod common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::servers::{password_file, MariadbServer, SilentListener};
use common::{metric, must, temp_dir, wait_for, write, Exporter};

const GOOD_PASSWORD: &str = "My-Mon-Pass-2291";
const ENV_PASSWORD: &str = "My-Env-Pass-7340";
const WRONG_PASSWORD: &str = "My-Wr0ng-Pass-1187";

/// The documented least privileges, plus SELECT on the application schema for its size.
fn setup(db: &MariadbServer) {
    db.sql("CREATE DATABASE shop");
    for (user, password) in [("monitor", GOOD_PASSWORD), ("envmon", ENV_PASSWORD)] {
        db.sql(&format!(
            "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; \
             GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO '{user}'@'127.0.0.1'; \
             GRANT SELECT ON performance_schema.* TO '{user}'@'127.0.0.1'; \
             GRANT SELECT ON shop.* TO '{user}'@'127.0.0.1';"
        ));
    }
}

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

#[test]
fn mysql_collector_against_a_real_server() {
    let mut db = MariadbServer::start();
    setup(&db);
    let silent = SilentListener::start();
    let dir = temp_dir();
    let secret = password_file(dir.path(), GOOD_PASSWORD);
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "[[mysql]]\nname = \"main\"\nurl = \"mysql://monitor@127.0.0.1:{port}/\"\n\
             password_file = {secret:?}\ntimeout = \"2s\"\nslow_interval = \"0s\"\n\n\
             [[mysql]]\nname = \"badpass\"\n\
             url = \"mysql://monitor:{WRONG_PASSWORD}@127.0.0.1:{port}/\"\n\n\
             [[mysql]]\nname = \"hang\"\nurl = \"mysql://monitor@127.0.0.1:{silent}/\"\n\
             timeout = \"500ms\"\n",
            port = db.port,
            silent = silent.port,
        ),
    );
    let env_url = format!("mysql://envmon:{ENV_PASSWORD}@127.0.0.1:{}/", db.port);
    let exporter = Exporter::start_with_env(
        &[&format!("--config.file={}", config.display())],
        &[("STACK_MYSQL_URL", &env_url)],
    );

    let (text, took) = exporter.scrape_timed();
    assert!(took < Duration::from_millis(2500), "scrape took {took:?}");
    assert_eq!(must(&text, "stack_mysql_up", &[("target", "main")]), 1.0);
    assert_eq!(must(&text, "stack_mysql_up", &[("target", "default")]), 1.0);
    assert_eq!(must(&text, "stack_mysql_up", &[("target", "badpass")]), 0.0);
    assert_eq!(must(&text, "stack_mysql_up", &[("target", "hang")]), 0.0);
    must(&text, "stack_host_memory_total_bytes", &[]);

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

    // N more sessions: N more connections, seen sleeping in the process list.
    let before = must(&text, "stack_mysql_connections", &[("target", "main")]);
    let mut sessions: Vec<Child> = (0..4).map(|_| session(&db)).collect();
    let mut text = String::new();
    wait_for("4 more connections", Duration::from_secs(10), || {
        text = exporter.scrape();
        must(&text, "stack_mysql_connections", &[("target", "main")]) == before + 4.0
    });
    assert_eq!(
        must(&text, "stack_mysql_connections", &[("target", "main")]),
        status(&db, "Threads_connected") - 1.0, // less the client asking
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

    // Stopped mid-run: up 0 within the timeout, the rest intact.
    db.stop();
    let (text, took) = exporter.scrape_timed();
    assert!(took < Duration::from_millis(2500), "scrape took {took:?}");
    assert_eq!(must(&text, "stack_mysql_up", &[("target", "main")]), 0.0);
    assert!(metric(&text, "stack_mysql_connections", &[("target", "main")]).is_none());
    must(&text, "stack_host_memory_total_bytes", &[]);

    // Back: reconnects by itself.
    db.start_again();
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_mysql_up", &[("target", "main")]), 1.0);
    assert_eq!(must(&text, "stack_mysql_up", &[("target", "default")]), 1.0);

    // One connection per target kept across scrapes.
    let connects = status(&db, "Connections");
    for _ in 0..3 {
        exporter.scrape();
    }
    // Only the badpass target (and our own status queries) connect again.
    assert!(status(&db, "Connections") - connects <= 3.0 + 2.0 + 1.0);

    let log = exporter.log();
    eprintln!("exporter log:\n{log}");
    assert!(
        log.contains("level=warn") && log.contains("badpass") && log.contains("Access denied"),
        "no warning for the bad password:\n{log}"
    );
    for secret in [GOOD_PASSWORD, ENV_PASSWORD, WRONG_PASSWORD] {
        assert!(!log.contains(secret), "the log shows a password:\n{log}");
        assert!(!text.contains(secret), "/metrics shows a password");
    }
}
