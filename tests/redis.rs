//! The Redis collector against a real throwaway redis-server: values checked against the server's
//! own answers, a server stopped and started mid-run, a wrong password, a port that never answers.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::servers::{password_file, RedisServer, SilentListener};
use common::{metric, must, temp_dir, write, Exporter};

const GOOD_PASSWORD: &str = "Mon1tor-Pass-7731";
const ENV_PASSWORD: &str = "Env-Pass-5519";
const WRONG_PASSWORD: &str = "Wr0ng-Pass-4402";
const PRIORITY_QUEUE: &str = "celery\x06\x163";

/// The documented least-privilege ACL users: one for the config file, one for the env var.
fn create_users(redis: &RedisServer) {
    for (user, password) in [("monitor", GOOD_PASSWORD), ("envmon", ENV_PASSWORD)] {
        let pass = format!(">{password}");
        let out = redis.cli(&[
            "ACL",
            "SETUSER",
            user,
            "reset",
            "on",
            &pass,
            "+info",
            "+config|get",
            "+llen",
            "+ping",
            "+client|setname",
            "%R~celery*",
        ]);
        assert_eq!(out.trim(), "OK", "{out}");
    }
}

fn info_field(redis: &RedisServer, section: &str, field: &str) -> f64 {
    let text = redis.cli(&["INFO", section]);
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
        .parse()
        .unwrap()
}

#[test]
fn redis_collector_against_a_real_server() {
    let mut redis = RedisServer::start();
    create_users(&redis);
    let silent = SilentListener::start();
    let dir = temp_dir();
    let secret = password_file(dir.path(), GOOD_PASSWORD);
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "[[redis]]\nname = \"cache\"\nurl = \"redis://monitor@127.0.0.1:{port}/0\"\n\
             password_file = {secret:?}\ntimeout = \"1s\"\n\
             queues = [\"celery\", \"celery\\u0006\\u00163\"]\n\n\
             [[redis]]\nname = \"badpass\"\nurl = \"redis://monitor:{WRONG_PASSWORD}@127.0.0.1:{port}/0\"\n\
             timeout = \"1s\"\n\n\
             [[redis]]\nname = \"hang\"\nurl = \"redis://127.0.0.1:{silent}/0\"\ntimeout = \"500ms\"\n",
            port = redis.port,
            silent = silent.port,
        ),
    );
    let env_url = format!("redis://envmon:{ENV_PASSWORD}@127.0.0.1:{}/0", redis.port);
    let exporter = Exporter::start_with_env(
        &[&format!("--config.file={}", config.display())],
        &[("STACK_REDIS_URL", &env_url)],
    );

    // Up where it should be, down where it should be, and quickly despite the silent port.
    let (text, took) = exporter.scrape_timed();
    assert!(took < Duration::from_millis(2500), "scrape took {took:?}");
    assert_eq!(must(&text, "stack_redis_up", &[("target", "cache")]), 1.0);
    assert_eq!(must(&text, "stack_redis_up", &[("target", "default")]), 1.0);
    assert_eq!(must(&text, "stack_redis_up", &[("target", "badpass")]), 0.0);
    assert_eq!(must(&text, "stack_redis_up", &[("target", "hang")]), 0.0);
    assert!(metric(
        &text,
        "stack_redis_memory_used_bytes",
        &[("target", "hang")]
    )
    .is_none());
    assert_eq!(
        must(
            &text,
            "stack_scrape_collector_success",
            &[("collector", "redis")]
        ),
        1.0
    );
    must(&text, "stack_host_memory_total_bytes", &[]);

    // maxmemory and the policy, as set.
    redis.cli(&["CONFIG", "SET", "maxmemory", "64mb"]);
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_redis_maxmemory_bytes", &[("target", "cache")]),
        (64 << 20) as f64
    );
    must(
        &text,
        "stack_redis_maxmemory_policy_info",
        &[("target", "cache"), ("policy", "allkeys-lru")],
    );

    // Queue lengths, including Celery's priority queue with control characters in its name.
    assert_eq!(
        must(
            &text,
            "stack_redis_queue_length",
            &[("target", "cache"), ("queue", "celery")]
        ),
        0.0
    );
    redis.cli(&["RPUSH", "celery", "a", "b", "c"]);
    redis.cli(&["RPUSH", PRIORITY_QUEUE, "x", "y"]);
    let text = exporter.scrape();
    assert_eq!(
        must(
            &text,
            "stack_redis_queue_length",
            &[("target", "cache"), ("queue", "celery")]
        ),
        3.0
    );
    assert_eq!(
        must(
            &text,
            "stack_redis_queue_length",
            &[("target", "cache"), ("queue", r"celery\\x06\\x163")]
        ),
        2.0
    );
    // The env target watches the default queue only.
    assert_eq!(
        must(
            &text,
            "stack_redis_queue_length",
            &[("target", "default"), ("queue", "celery")]
        ),
        3.0
    );

    // Keys per database, as DBSIZE says.
    for i in 0..5 {
        redis.cli(&["-n", "2", "SET", &format!("k{i}"), "v"]);
    }
    let text = exporter.scrape();
    let dbsize: f64 = redis.cli(&["-n", "2", "DBSIZE"]).trim().parse().unwrap();
    assert_eq!(dbsize, 5.0);
    assert_eq!(
        must(
            &text,
            "stack_redis_db_keys",
            &[("target", "cache"), ("db", "2")]
        ),
        dbsize
    );

    // Memory near the server's own figure.
    let used = info_field(&redis, "memory", "used_memory");
    let seen = must(
        &text,
        "stack_redis_memory_used_bytes",
        &[("target", "cache")],
    );
    assert!(
        (seen - used).abs() / used < 0.2,
        "exporter {seen}, INFO {used}"
    );
    must(
        &text,
        "stack_redis_memory_rss_bytes",
        &[("target", "cache")],
    );

    // Hits and misses count up (the exporter's own LLENs count as hits too, after its INFO).
    let hits = must(
        &text,
        "stack_redis_keyspace_hits_total",
        &[("target", "cache")],
    );
    redis.cli(&["-n", "2", "GET", "k1"]);
    redis.cli(&["-n", "2", "GET", "nope"]);
    let text = exporter.scrape();
    let seen = must(
        &text,
        "stack_redis_keyspace_hits_total",
        &[("target", "cache")],
    );
    let server = info_field(&redis, "stats", "keyspace_hits");
    assert!(
        seen >= hits + 1.0 && seen <= server,
        "{hits} -> {seen}, server {server}"
    );
    must(
        &text,
        "stack_redis_keyspace_misses_total",
        &[("target", "cache")],
    );
    must(
        &text,
        "stack_redis_evicted_keys_total",
        &[("target", "cache")],
    );
    must(
        &text,
        "stack_redis_expired_keys_total",
        &[("target", "cache")],
    );
    must(&text, "stack_redis_blocked_clients", &[("target", "cache")]);

    // N more clients, N more connected_clients; and the exporter keeps its connection.
    let before = must(
        &text,
        "stack_redis_connected_clients",
        &[("target", "cache")],
    );
    let extra: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", redis.port)).unwrap())
        .collect();
    // Other targets of this test (the wrong-password one) connect briefly on every scrape; the
    // count settles at exactly N more once their attempts are over.
    let want = before + extra.len() as f64;
    common::wait_for(
        &format!("{want} connected clients"),
        Duration::from_secs(10),
        || {
            metric(
                &exporter.scrape(),
                "stack_redis_connected_clients",
                &[("target", "cache")],
            ) == Some(want)
        },
    );
    drop(extra);

    // Stopped mid-run: up 0 within the timeout, the rest of /metrics intact.
    redis.stop();
    let (text, took) = exporter.scrape_timed();
    assert!(took < Duration::from_millis(2500), "scrape took {took:?}");
    assert_eq!(must(&text, "stack_redis_up", &[("target", "cache")]), 0.0);
    assert!(metric(
        &text,
        "stack_redis_memory_used_bytes",
        &[("target", "cache")]
    )
    .is_none());
    must(&text, "stack_host_memory_total_bytes", &[]);

    // Back: the next scrape reconnects by itself.
    redis.start_again();
    create_users(&redis);
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_redis_up", &[("target", "cache")]), 1.0);
    assert_eq!(must(&text, "stack_redis_up", &[("target", "default")]), 1.0);

    // The wrong password is logged as a reason, and no password appears in the log or /metrics.
    let log = exporter.log();
    assert!(
        log.contains("level=warn") && log.contains("badpass"),
        "no warning for the bad password:\n{log}"
    );
    eprintln!("exporter log:\n{log}");
    for secret in [GOOD_PASSWORD, ENV_PASSWORD, WRONG_PASSWORD] {
        assert!(!log.contains(secret), "the log shows a password:\n{log}");
        assert!(!text.contains(secret), "/metrics shows a password");
    }
}

/// How many lines of `log` contain `needle`.
fn lines_with(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

/// A queue the ACL user may not LLEN, and a queue key that is not a list: each is
/// `stack_redis_queue_readable 0` with no length (not a length that vanishes as if the queue were
/// empty), the other queues and the target stay fine, and the condition is logged once when it
/// starts and once when it ends. The exporter's connection is named in CLIENT LIST; a user that
/// may not CLIENT SETNAME is still served, with one log line.
#[test]
fn unreadable_queues_are_series_and_sessions_are_named() {
    let redis = RedisServer::start();
    create_users(&redis);
    let out = redis.cli(&[
        "ACL",
        "SETUSER",
        "bare",
        "reset",
        "on",
        ">Bare-Pass-6610",
        "+info",
        "+llen",
        "+ping",
        "%R~*",
    ]);
    assert_eq!(out.trim(), "OK", "{out}");
    redis.cli(&["RPUSH", "celery", "a", "b"]);
    redis.cli(&["RPUSH", "reports", "x", "y", "z"]);
    redis.cli(&["SET", "celery_flag", "not a list"]);
    let dir = temp_dir();
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "[[redis]]\nname = \"cache\"\nurl = \"redis://monitor:{GOOD_PASSWORD}@127.0.0.1:{port}/0\"\n\
             queues = [\"celery\", \"reports\", \"celery_flag\"]\n\n\
             [[redis]]\nname = \"bare\"\nurl = \"redis://bare:Bare-Pass-6610@127.0.0.1:{port}/0\"\n",
            port = redis.port,
        ),
    );
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);

    for _ in 0..3 {
        let text = exporter.scrape();
        let cache = |queue| [("target", "cache"), ("queue", queue)];
        assert_eq!(must(&text, "stack_redis_up", &[("target", "cache")]), 1.0);
        assert_eq!(
            must(&text, "stack_redis_queue_readable", &cache("celery")),
            1.0
        );
        assert_eq!(
            must(&text, "stack_redis_queue_length", &cache("celery")),
            2.0
        );
        // Outside the ACL's key pattern %R~celery*.
        assert_eq!(
            must(&text, "stack_redis_queue_readable", &cache("reports")),
            0.0
        );
        assert_eq!(
            metric(&text, "stack_redis_queue_length", &cache("reports")),
            None
        );
        // Readable, but a string: WRONGTYPE.
        assert_eq!(
            must(&text, "stack_redis_queue_readable", &cache("celery_flag")),
            0.0
        );
        assert_eq!(
            metric(&text, "stack_redis_queue_length", &cache("celery_flag")),
            None
        );
        // The user without CLIENT SETNAME is served all the same.
        assert_eq!(must(&text, "stack_redis_up", &[("target", "bare")]), 1.0);
        assert_eq!(
            must(
                &text,
                "stack_redis_queue_readable",
                &[("target", "bare"), ("queue", "celery")]
            ),
            1.0
        );
    }
    let log = exporter.log();
    assert_eq!(lines_with(&log, "queue lengths unknown"), 1, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("queue lengths unknown"))
        .unwrap();
    assert!(
        line.contains("level=warn") && line.contains("reports") && line.contains("celery_flag")
    );
    assert!(
        line.contains("NOPERM") || line.contains("permission"),
        "{line}"
    );
    assert_eq!(lines_with(&log, "not named stack_exporter"), 1, "{log}");

    // CLIENT LIST shows the exporter's connection by name, as the user that made it.
    let clients = redis.cli(&["CLIENT", "LIST"]);
    let named: Vec<&str> = clients
        .lines()
        .filter(|l| l.contains(" name=stack_exporter "))
        .collect();
    assert_eq!(named.len(), 1, "{clients}");
    assert!(named[0].contains(" user=monitor "), "{clients}");

    // Granted: readable again, one line says so.
    redis.cli(&["ACL", "SETUSER", "monitor", "%R~reports"]);
    redis.cli(&["DEL", "celery_flag"]);
    let text = exporter.scrape();
    for (queue, length) in [("reports", 3.0), ("celery_flag", 0.0)] {
        let labels = [("target", "cache"), ("queue", queue)];
        assert_eq!(must(&text, "stack_redis_queue_readable", &labels), 1.0);
        assert_eq!(must(&text, "stack_redis_queue_length", &labels), length);
    }
    exporter.scrape();
    let log = exporter.log();
    assert_eq!(lines_with(&log, "queue lengths unknown"), 2, "{log}");
    assert!(log
        .lines()
        .any(|l| l.contains("queue lengths unknown") && l.contains("recovered")));
    assert!(
        !log.contains(GOOD_PASSWORD) && !log.contains("Bare-Pass-6610"),
        "{log}"
    );
}
