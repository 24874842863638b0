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
