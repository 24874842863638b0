//! The Redis collector against a real throwaway redis-server: values checked against the server's
//! own answers, a server stopped and started mid-run, a wrong password, a port that never answers.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::servers::{RedisServer, Scenario, GOOD_PASSWORD};
use common::{metric, must, temp_dir, write, Exporter};

const PRIORITY_QUEUE: &str = "celery\x06\x163";

/// The value seen most often; the first of those on a tie.
fn most_common(values: impl Iterator<Item = f64>) -> f64 {
    let values: Vec<f64> = values.collect();
    let count = |v: f64| values.iter().filter(|&&w| w == v).count();
    let mut best = *values.first().expect("no scrape returned a value");
    for &v in &values {
        if count(v) > count(best) {
            best = v;
        }
    }
    best
}

fn info_field(redis: &RedisServer, section: &str, field: &str) -> f64 {
    let text = redis.cli(&["INFO", section]);
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in INFO {section}"))
        .parse()
        .unwrap()
}

/// The shared scenario (common::servers::Scenario) and the figures of Redis against the server's
/// own answers.
#[test]
fn redis_collector_against_a_real_server() {
    let mut redis = RedisServer::start();
    redis.create_monitoring_users();
    let scenario = Scenario::start(
        &redis,
        "timeout = \"1s\"\nqueues = [\"celery\", \"celery\\u0006\\u00163\"]",
    );
    let exporter = &scenario.exporter;
    let text = exporter.scrape();
    assert_eq!(
        metric(
            &text,
            "stack_redis_memory_used_bytes",
            &[("target", "hang")]
        ),
        None
    );

    // maxmemory and the policy, as set.
    redis.cli(&["CONFIG", "SET", "maxmemory", "64mb"]);
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_redis_maxmemory_bytes", &[("target", "main")]),
        (64 << 20) as f64
    );
    must(
        &text,
        "stack_redis_maxmemory_policy_info",
        &[("target", "main"), ("policy", "allkeys-lru")],
    );

    // Queue lengths, including Celery's priority queue with control characters in its name.
    assert_eq!(
        must(
            &text,
            "stack_redis_queue_length",
            &[("target", "main"), ("queue", "celery")]
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
            &[("target", "main"), ("queue", "celery")]
        ),
        3.0
    );
    assert_eq!(
        must(
            &text,
            "stack_redis_queue_length",
            &[("target", "main"), ("queue", r"celery\\x06\\x163")]
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
            &[("target", "main"), ("db", "2")]
        ),
        dbsize
    );

    // Memory near the server's own figure.
    let used = info_field(&redis, "memory", "used_memory");
    let seen = must(
        &text,
        "stack_redis_memory_used_bytes",
        &[("target", "main")],
    );
    assert!(
        (seen - used).abs() / used < 0.2,
        "exporter {seen}, INFO {used}"
    );
    must(&text, "stack_redis_memory_rss_bytes", &[("target", "main")]);

    // Hits and misses count up (the exporter's own LLENs count as hits too, after its INFO).
    let hits = must(
        &text,
        "stack_redis_keyspace_hits_total",
        &[("target", "main")],
    );
    redis.cli(&["-n", "2", "GET", "k1"]);
    redis.cli(&["-n", "2", "GET", "nope"]);
    let text = exporter.scrape();
    let seen = must(
        &text,
        "stack_redis_keyspace_hits_total",
        &[("target", "main")],
    );
    let server = info_field(&redis, "stats", "keyspace_hits");
    assert!(
        seen >= hits + 1.0 && seen <= server,
        "{hits} -> {seen}, server {server}"
    );
    must(
        &text,
        "stack_redis_keyspace_misses_total",
        &[("target", "main")],
    );
    must(
        &text,
        "stack_redis_evicted_keys_total",
        &[("target", "main")],
    );
    must(
        &text,
        "stack_redis_expired_keys_total",
        &[("target", "main")],
    );
    must(&text, "stack_redis_blocked_clients", &[("target", "main")]);

    // N more clients, N more connected_clients; and the exporter keeps its connection. Other
    // targets of this test (the wrong-password one) connect briefly during every scrape, so a
    // scrape may or may not count one of theirs: the baseline is the count most scrapes see.
    let connected = || {
        metric(
            &exporter.scrape(),
            "stack_redis_connected_clients",
            &[("target", "main")],
        )
    };
    let before = most_common((0..9).filter_map(|_| connected()));
    let extra: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", redis.port)).unwrap())
        .collect();
    let want = before + extra.len() as f64;
    common::wait_for(
        &format!("{want} connected clients"),
        Duration::from_secs(10),
        || connected() == Some(want),
    );
    drop(extra);
    common::wait_for(
        &format!("{before} connected clients again"),
        Duration::from_secs(10),
        || connected() == Some(before),
    );

    // Clients against maxclients, persistence as INFO says (this server saves nothing: --save "").
    let main = [("target", "main")];
    assert_eq!(
        must(&text, "stack_redis_maxclients", &main),
        info_field(&redis, "clients", "maxclients")
    );
    assert_eq!(
        must(&text, "stack_redis_rejected_connections_total", &main),
        0.0
    );
    assert_eq!(
        must(&text, "stack_redis_rdb_last_bgsave_success", &main),
        1.0
    );
    assert_eq!(must(&text, "stack_redis_rdb_save_points", &main), 0.0);
    assert!(must(&text, "stack_redis_rdb_changes_since_last_save", &main) >= 5.0);
    must(&text, "stack_redis_rdb_last_save_timestamp_seconds", &main);
    assert_eq!(must(&text, "stack_redis_aof_enabled", &main), 0.0);
    assert_eq!(
        metric(&text, "stack_redis_aof_last_write_success", &main),
        None,
        "AOF is off: its write status says nothing"
    );

    // A restart between two scrapes shows as an uptime that drops.
    let uptime = |text: &str| must(text, "stack_redis_uptime_seconds", &[("target", "main")]);
    let mut before = 0.0;
    common::wait_for("3 s of uptime", Duration::from_secs(10), || {
        before = uptime(&exporter.scrape());
        before >= 3.0
    });
    scenario.outage(&mut redis, "stack_redis_memory_used_bytes");
    let after = uptime(&exporter.scrape());
    assert!(
        after < before,
        "uptime {before} -> {after} across a restart"
    );
    scenario.check_log("Password authentication failed");
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
    redis.create_monitoring_users();
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

/// An exporter watching `redis` as `monitor`, its settings read on every scrape.
fn exporter_on(redis: &RedisServer, dir: &std::path::Path) -> Exporter {
    let config = dir.join("stack.toml");
    write(
        &config,
        &format!(
            "[[redis]]\nname = \"main\"\nurl = \"redis://monitor:{GOOD_PASSWORD}@127.0.0.1:{}/0\"\n\
             slow_interval = \"0s\"\n",
            redis.port
        ),
    );
    Exporter::start(&[&format!("--config.file={}", config.display())])
}

/// What a new connection to `port` is told first after a PING: PONG, or the refusal.
fn first_answer(port: u16) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(b"PING\r\n");
    let mut answer = [0u8; 128];
    let n = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).trim().to_string()
}

/// Refused connections: with `maxclients 3`, the exporter's connection and two held ones fill
/// the server; each connection of a burst is refused (`-ERR max number of clients reached`) and
/// counted in `stack_redis_rejected_connections_total`.
#[test]
fn refused_connections_against_a_real_server() {
    let redis = RedisServer::start_with(&["--maxclients", "3"]);
    redis.create_monitoring_users();
    let dir = temp_dir();
    let exporter = exporter_on(&redis, dir.path());
    let main = [("target", "main")];
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_redis_maxclients", &main), 3.0);
    let before = must(&text, "stack_redis_rejected_connections_total", &main);
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", redis.port)).unwrap())
        .collect();
    common::wait_for("3 clients", Duration::from_secs(10), || {
        metric(&exporter.scrape(), "stack_redis_connected_clients", &main) == Some(3.0)
    });

    let answers: Vec<String> = (0..5).map(|_| first_answer(redis.port)).collect();
    let refused = answers
        .iter()
        .filter(|a| a.contains("max number of clients reached"))
        .count();
    assert_eq!(refused, 5, "{answers:?}");
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_redis_rejected_connections_total", &main) - before,
        refused as f64
    );
    // Room again: a new connection is served and nothing more is counted.
    drop(held);
    common::wait_for("a free slot", Duration::from_secs(10), || {
        first_answer(redis.port) == "+PONG"
    });
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_redis_rejected_connections_total", &main) - before,
        refused as f64
    );
}

/// Waits until no BGSAVE runs; INFO persistence's `rdb_last_bgsave_status`.
fn bgsave_status(redis: &RedisServer) -> String {
    let field = |name: &str| {
        redis
            .cli(&["INFO", "persistence"])
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name}:")).map(String::from))
            .unwrap()
    };
    common::wait_for("BGSAVE to end", Duration::from_secs(20), || {
        field("rdb_bgsave_in_progress") == "0"
    });
    field("rdb_last_bgsave_status")
}

/// A failed BGSAVE, as a fork failure under memory pressure ends: the directory Redis saves to is
/// gone (removed while Redis runs in it: the snapshot cannot be created, as root too). The
/// exporter shows `stack_redis_rdb_last_bgsave_success 0`, and with a save point set Redis
/// refuses writes, as StackRedisBgsaveFailed's runbook says. A successful BGSAVE first: 1, and
/// the last save time moves.
#[test]
fn a_failed_bgsave_shows_and_writes_are_refused() {
    let data = temp_dir();
    let rdb_dir = data.path().join("rdb");
    std::fs::create_dir(&rdb_dir).unwrap();
    let redis = RedisServer::start_with(&["--dir", rdb_dir.to_str().unwrap()]);
    redis.create_monitoring_users();
    redis.cli(&["SET", "k", "v"]);
    let dir = temp_dir();
    let exporter = exporter_on(&redis, dir.path());
    let main = [("target", "main")];
    let text = exporter.scrape();
    let saved_at = must(&text, "stack_redis_rdb_last_save_timestamp_seconds", &main);
    assert!(must(&text, "stack_redis_rdb_changes_since_last_save", &main) >= 1.0);

    std::thread::sleep(Duration::from_millis(1100)); // a save time one second later
    redis.cli(&["BGSAVE"]);
    assert_eq!(bgsave_status(&redis), "ok");
    assert!(rdb_dir.join("dump.rdb").is_file());
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_redis_rdb_last_bgsave_success", &main),
        1.0
    );
    assert!(must(&text, "stack_redis_rdb_last_save_timestamp_seconds", &main) > saved_at);
    assert_eq!(
        must(&text, "stack_redis_rdb_changes_since_last_save", &main),
        0.0
    );

    std::fs::remove_dir_all(&rdb_dir).unwrap();
    redis.cli(&["SET", "k", "w"]);
    redis.cli(&["BGSAVE"]);
    assert_eq!(bgsave_status(&redis), "err");
    redis.cli(&["CONFIG", "SET", "save", "3600 1"]);
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_redis_rdb_last_bgsave_success", &main),
        0.0
    );
    assert_eq!(must(&text, "stack_redis_rdb_save_points", &main), 1.0);
    assert!(must(&text, "stack_redis_rdb_changes_since_last_save", &main) >= 1.0);
    let refused = redis.cli(&["SET", "k", "x"]);
    assert!(refused.contains("MISCONF"), "{refused}");
}

/// Runs redis-cli against `port`; with `last`, that is the command's last argument, read from
/// stdin (-x). Its output.
fn redis_cli(port: u16, args: &[&str], last: Option<&str>) -> String {
    use std::io::Write;
    let mut command = std::process::Command::new("redis-cli");
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if last.is_some() {
        command.arg("-x");
    }
    let mut child = command
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(last.unwrap_or("").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A write to the append-only file that fails: Redis runs under a file size limit (SIGXFSZ
/// ignored, so the write fails with EFBIG rather than killing it), and a value larger than the
/// limit cannot be appended. `stack_redis_aof_last_write_success` goes from 1 to 0, and Redis
/// refuses writes.
#[test]
fn a_failed_aof_write_shows_and_writes_are_refused() {
    use std::os::unix::process::CommandExt;
    let binary = common::require("redis-server", "apt-get install redis-server");
    let data = temp_dir();
    let port = common::free_port();
    let mut command = std::process::Command::new(binary);
    command
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--dir"])
        .arg(data.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 256 << 10,
                rlim_max: 256 << 10,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let _server = common::Guard::spawn(&mut command);
    common::wait_for_port(port, Duration::from_secs(10));
    let cli = |args: &[&str]| redis_cli(port, args, None);
    common::wait_for("redis", Duration::from_secs(10), || {
        cli(&["PING"]) == "PONG"
    });
    let dir = temp_dir();
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!("[[redis]]\nname = \"main\"\nurl = \"redis://127.0.0.1:{port}/0\"\n"),
    );
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    let main = [("target", "main")];
    cli(&["SET", "small", "v"]);
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_redis_aof_enabled", &main), 1.0);
    assert_eq!(
        must(&text, "stack_redis_aof_last_write_success", &main),
        1.0
    );

    // 300 KiB does not fit under the 256 KiB limit.
    let big = "x".repeat(300 << 10);
    // Too long for a command line: the value from stdin (-x).
    redis_cli(port, &["SET", "big"], Some(&big));
    common::wait_for("the AOF write to fail", Duration::from_secs(10), || {
        metric(
            &exporter.scrape(),
            "stack_redis_aof_last_write_success",
            &main,
        ) == Some(0.0)
    });
    let refused = cli(&["SET", "after", "v"]);
    assert!(refused.contains("MISCONF"), "{refused}");
}
