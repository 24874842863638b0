//! The PostgreSQL collector against a real throwaway cluster: values checked against the server's
//! own answers, a server stopped and started mid-run, a wrong password, a port that never answers.

mod common;

use std::io::Write;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::servers::{PostgresServer, Scenario, GOOD_PASSWORD, NARROW_PASSWORD};
use common::{metric, must, temp_dir, wait_for, write, Exporter};

/// A psql session that stays connected, with `sql` run first.
fn session(pg: &PostgresServer, sql: &str) -> Child {
    let mut child = pg
        .psql_command("postgres")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    writeln!(child.stdin.as_mut().unwrap(), "{sql}").unwrap();
    child
}

fn total_connections(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("stack_postgres_connections{") && l.contains("target=\"main\""))
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<f64>().unwrap())
        .sum()
}

/// The shared scenario (common::servers::Scenario) and the figures of PostgreSQL against the
/// server's own answers.
#[test]
fn postgres_collector_against_a_real_server() {
    let mut pg = PostgresServer::start();
    pg.create_monitoring_roles();
    let scenario = Scenario::start(&pg, "timeout = \"2s\"\nslow_interval = \"0s\"");
    let exporter = &scenario.exporter;
    let text = exporter.scrape();

    // max_connections as the server says.
    let max: f64 = pg.psql("postgres", "SHOW max_connections").parse().unwrap();
    assert_eq!(
        must(
            &text,
            "stack_postgres_max_connections",
            &[("target", "main")]
        ),
        max
    );

    // N more sessions, N more connections; one left in a transaction shows its age and state.
    let before = total_connections(&text);
    let mut sessions: Vec<Child> = (0..3).map(|_| session(&pg, "SELECT 1;")).collect();
    sessions.push(session(&pg, "BEGIN; SELECT txid_current();"));
    let mut text = String::new();
    wait_for("4 more connections", Duration::from_secs(10), || {
        text = exporter.scrape();
        total_connections(&text) == before + 4.0
    });
    std::thread::sleep(Duration::from_millis(1500));
    let text = exporter.scrape();
    assert!(
        must(
            &text,
            "stack_postgres_connections",
            &[("target", "main"), ("state", "idle in transaction")]
        ) >= 1.0
    );
    let age = must(
        &text,
        "stack_postgres_oldest_transaction_seconds",
        &[("target", "main")],
    );
    assert!((1.4..30.0).contains(&age), "oldest transaction {age} s");
    for mut s in sessions {
        let _ = s.kill();
        let _ = s.wait();
    }

    // A database with known data: its size as pg_database_size says.
    pg.psql("postgres", "CREATE DATABASE shop");
    pg.psql(
        "shop",
        "CREATE TABLE items AS SELECT g AS id, repeat('x', 200) AS body FROM generate_series(1, 20000) g",
    );
    let text = exporter.scrape();
    let size: f64 = pg
        .psql("postgres", "SELECT pg_database_size('shop')")
        .parse()
        .unwrap();
    assert!(size > 4e6, "shop is {size} bytes");
    assert_eq!(
        must(
            &text,
            "stack_postgres_database_size_bytes",
            &[("target", "main"), ("database", "shop")]
        ),
        size
    );

    // Counters move with the server's own statistics.
    let rollbacks = must(
        &text,
        "stack_postgres_rollbacks_total",
        &[("target", "main")],
    );
    for _ in 0..3 {
        pg.psql("shop", "BEGIN; SELECT 1; ROLLBACK;");
    }
    let mut text = String::new();
    wait_for("3 more rollbacks", Duration::from_secs(10), || {
        text = exporter.scrape();
        must(
            &text,
            "stack_postgres_rollbacks_total",
            &[("target", "main")],
        ) >= rollbacks + 3.0
    });
    let server_rollbacks: f64 = pg
        .psql(
            "postgres",
            "SELECT sum(xact_rollback) FROM pg_stat_database",
        )
        .parse()
        .unwrap();
    assert!(
        must(
            &text,
            "stack_postgres_rollbacks_total",
            &[("target", "main")]
        ) <= server_rollbacks
    );
    must(&text, "stack_postgres_commits_total", &[("target", "main")]);
    must(
        &text,
        "stack_postgres_deadlocks_total",
        &[("target", "main")],
    );
    assert!(
        must(
            &text,
            "stack_postgres_blocks_hit_total",
            &[("target", "main")]
        ) > 0.0
    );
    must(
        &text,
        "stack_postgres_blocks_read_total",
        &[("target", "main")],
    );

    // pg_stat_statements: calls and total time, as the view says.
    let calls = must(
        &text,
        "stack_postgres_statements_total",
        &[("target", "main")],
    );
    assert!(calls > 0.0);
    let server_calls: f64 = pg
        .psql("postgres", "SELECT sum(calls) FROM pg_stat_statements")
        .parse()
        .unwrap();
    assert!(calls <= server_calls, "{calls} > {server_calls}");
    assert!(
        must(
            &text,
            "stack_postgres_statement_latency_seconds_total",
            &[("target", "main")]
        ) > 0.0
    );

    // A restart between two scrapes shows as a later start time, as the server says.
    let started = |text: &str| {
        must(
            text,
            "stack_postgres_start_time_seconds",
            &[("target", "main")],
        )
    };
    let before = started(&exporter.scrape());
    let server: f64 = pg
        .psql(
            "postgres",
            "SELECT extract(epoch FROM pg_postmaster_start_time())",
        )
        .parse()
        .unwrap();
    assert!((before - server).abs() < 1e-3, "{before} vs {server}");
    scenario.outage(&mut pg, "stack_postgres_max_connections");
    let after = started(&exporter.scrape());
    assert!(
        after > before,
        "start time {before} -> {after} across a restart"
    );

    // One connection per target kept across scrapes, not one per scrape.
    let backends = || -> f64 {
        pg.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'stack_exporter'",
        )
        .parse()
        .unwrap()
    };
    for _ in 0..3 {
        exporter.scrape();
    }
    assert_eq!(backends(), 2.0, "main and default: one backend each");
    // Each scrape runs statements prepared once per connection (after the restart above, on the
    // new one): its sessions' last query is an EXECUTE, not the query text.
    let last_queries = pg.psql(
        "postgres",
        "SELECT string_agg(query, '|') FROM pg_stat_activity \
         WHERE application_name = 'stack_exporter'",
    );
    assert!(
        last_queries
            .split('|')
            .all(|q| q.starts_with("EXECUTE stack_")),
        "{last_queries}"
    );

    scenario.check_log("password");
}

/// What a role may not read is a `…_readable 0` series and one log line, never a smaller or
/// missing number: a database it may not CONNECT to (no size), other roles' sessions without
/// pg_read_all_stats (no oldest transaction), a database without pg_stat_statements. Sessions
/// are `application_name=stack_exporter` in pg_stat_activity unless the URL names them.
#[test]
fn unreadable_figures_are_series_and_sessions_are_named() {
    let pg = PostgresServer::start();
    pg.create_monitoring_roles();
    for sql in [
        "CREATE DATABASE private",
        "REVOKE CONNECT ON DATABASE private FROM PUBLIC",
        "CREATE DATABASE other",
    ] {
        pg.psql("postgres", sql);
    }
    let mut open = session(&pg, "BEGIN; SELECT txid_current();");
    let dir = temp_dir();
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "[[postgres]]\nname = \"main\"\nurl = \"postgres://monitor:{GOOD_PASSWORD}@127.0.0.1:{port}/postgres\"\n\
             slow_interval = \"0s\"\n\n\
             [[postgres]]\nname = \"plain\"\nurl = \"postgres://narrow:{NARROW_PASSWORD}@127.0.0.1:{port}/postgres\"\n\
             slow_interval = \"0s\"\n\n\
             [[postgres]]\nname = \"named\"\n\
             url = \"postgres://monitor:{GOOD_PASSWORD}@127.0.0.1:{port}/other?application_name=custom\"\n",
            port = pg.port,
        ),
    );
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    for _ in 0..3 {
        let text = exporter.scrape();
        let at = |target| [("target", target)];
        let db = |target, database| [("target", target), ("database", database)];
        for target in ["main", "plain", "named"] {
            assert_eq!(
                must(&text, "stack_postgres_up", &at(target)),
                1.0,
                "{target}"
            );
        }
        // main: pg_monitor reads everything.
        assert_eq!(
            must(&text, "stack_postgres_activity_readable", &at("main")),
            1.0
        );
        must(
            &text,
            "stack_postgres_oldest_transaction_seconds",
            &at("main"),
        );
        assert_eq!(
            must(
                &text,
                "stack_postgres_database_size_readable",
                &db("main", "private")
            ),
            1.0
        );
        must(
            &text,
            "stack_postgres_database_size_bytes",
            &db("main", "private"),
        );
        assert_eq!(
            must(&text, "stack_postgres_statements_readable", &at("main")),
            1.0
        );
        // plain: no pg_read_all_stats, no CONNECT on private.
        assert_eq!(
            must(&text, "stack_postgres_activity_readable", &at("plain")),
            0.0
        );
        assert_eq!(
            metric(
                &text,
                "stack_postgres_oldest_transaction_seconds",
                &at("plain")
            ),
            None
        );
        assert_eq!(
            must(
                &text,
                "stack_postgres_database_size_readable",
                &db("plain", "private")
            ),
            0.0
        );
        assert_eq!(
            metric(
                &text,
                "stack_postgres_database_size_bytes",
                &db("plain", "private")
            ),
            None
        );
        assert_eq!(
            must(
                &text,
                "stack_postgres_database_size_readable",
                &db("plain", "other")
            ),
            1.0
        );
        must(
            &text,
            "stack_postgres_database_size_bytes",
            &db("plain", "other"),
        );
        // named: connected to a database without pg_stat_statements.
        assert_eq!(
            must(&text, "stack_postgres_statements_readable", &at("named")),
            0.0
        );
        assert_eq!(
            metric(&text, "stack_postgres_statements_total", &at("named")),
            None
        );
    }

    // Sessions by name, as pg_stat_activity shows them.
    let names = pg.psql(
        "postgres",
        "SELECT application_name || ' ' || usename FROM pg_stat_activity \
         WHERE application_name IN ('stack_exporter', 'custom') ORDER BY 1",
    );
    assert_eq!(
        names,
        "custom monitor\nstack_exporter monitor\nstack_exporter narrow"
    );

    let log = exporter.log();
    let lines = |needle: &str| log.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(lines("\\\"plain\\\": database sizes unknown"), 1, "{log}");
    assert_eq!(
        lines("\\\"plain\\\": other roles' sessions hidden"),
        1,
        "{log}"
    );
    assert_eq!(
        lines("\\\"named\\\": statement figures left out"),
        1,
        "{log}"
    );
    assert_eq!(lines("\\\"main\\\""), 0, "{log}");

    pg.psql("postgres", "GRANT CONNECT ON DATABASE private TO narrow");
    let text = exporter.scrape();
    let labels = [("target", "plain"), ("database", "private")];
    assert_eq!(
        must(&text, "stack_postgres_database_size_readable", &labels),
        1.0
    );
    must(&text, "stack_postgres_database_size_bytes", &labels);
    let log = exporter.log();
    assert!(
        log.lines()
            .any(|l| l.contains("\\\"plain\\\": database sizes unknown") && l.contains("recovered")),
        "{log}"
    );
    assert!(!log.contains(GOOD_PASSWORD) && !log.contains(NARROW_PASSWORD));
    let _ = open.kill();
    let _ = open.wait();
}

/// Database sizes and settings, fetched every `slow_interval`, are fetched again after the round
/// that finds them due: no scrape waits for them.
#[test]
fn postgres_slow_answers_are_fetched_after_the_round_that_finds_them_due() {
    let pg = PostgresServer::start();
    pg.create_monitoring_roles();
    common::servers::slow_answers_are_fetched_after_the_round_that_finds_them_due(
        &pg,
        "postgres",
        || {
            pg.psql(
                "postgres",
                "CREATE TABLE grown AS SELECT g AS id, repeat('x', 200) AS body \
                 FROM generate_series(1, 20000) g",
            );
        },
    );
}
