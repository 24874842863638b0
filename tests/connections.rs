//! Bounded for any client: an idle-connection flood with slowloris sockets cannot lock a scraper
//! out, memory returns after a connection storm, and clients that hang up cost the next scrapes
//! nothing. Each case runs against the real binary for a few seconds.
//!
//! And counted right on a busy host: a service's connections, as the kernel has them, with
//! hundreds of unrelated connections beside them, across a restart and a listener moved to
//! another port.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::servers::RedisServer;
use common::{must, require, wait_for, Exporter, Guard};

/// Lets this test process hold `needed` sockets (the soft limit is often 1024).
fn raise_own_fd_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert!(
        limit.rlim_max >= needed,
        "this test needs {needed} file descriptors; the hard limit is {} (raise it with ulimit -Hn)",
        limit.rlim_max
    );
    limit.rlim_cur = limit.rlim_cur.max(needed);
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
}

/// Gives the running exporter the file-descriptor limit of a default systemd service or shell.
fn set_fd_limit(pid: u32, limit: u64) {
    let new = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: prlimit on our own child with a valid struct and no old-limit output.
    let done = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &new,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(done, 0, "prlimit: {}", std::io::Error::last_os_error());
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kib * 1024
}

fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).unwrap()
}

/// `count` connections, opened in bursts the exporter's accept queue can take: beyond it the kernel
/// drops the SYN and the client waits a second to retry, which would only slow the test down.
fn open_connections(port: u16, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|i| {
            if i % 256 == 255 {
                std::thread::sleep(Duration::from_millis(50));
            }
            connect(port)
        })
        .collect()
}

/// Every collector of a scrape succeeded.
fn assert_all_collectors_succeeded(body: &str, context: &str) {
    let mut seen = 0;
    for line in body.lines() {
        if line.starts_with("stack_scrape_collector_success{") {
            seen += 1;
            assert!(
                line.ends_with(" 1") || line.ends_with(" 1.0"),
                "{context}: {line}"
            );
        }
    }
    assert!(seen >= 3, "{context}: no collector outcomes in:\n{body}");
}

#[test]
fn a_scrape_answers_through_an_idle_flood_and_slowloris() {
    raise_own_fd_limit(1400);
    let exporter = Exporter::start(&[]);
    set_fd_limit(exporter.pid(), 1024);
    let port = exporter.port;
    let idle = open_connections(port, 1000);
    // Slowloris: a request head that never ends, one byte every 2 s, reconnecting when the
    // exporter closes the socket, so the pressure stays on for the whole test.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slowloris = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sockets = open_connections(port, 200);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for socket in &mut sockets {
                    if socket.write_all(b"G").is_err() {
                        if let Ok(fresh) = TcpStream::connect(("127.0.0.1", port)) {
                            *socket = fresh;
                        }
                    }
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    for round in 0..3 {
        let (body, took) = exporter.scrape_timed();
        assert!(
            took < Duration::from_secs(3),
            "round {round}: a scrape through 1000 idle and 200 slowloris sockets took {took:?}"
        );
        assert_all_collectors_succeeded(&body, "under the flood");
        let open = must(&body, "stack_exporter_http_connections", &[]);
        let cap = must(&body, "stack_exporter_http_connections_max", &[]);
        assert!(
            open <= cap,
            "{open} connections open, over the cap of {cap}"
        );
        eprintln!("round {round}: scrape answered in {took:?} with {open} connections open");
        std::thread::sleep(Duration::from_secs(1));
    }
    let body = exporter.scrape();
    assert!(must(&body, "stack_exporter_http_connections_evicted_total", &[]) >= 1000.0);
    assert_eq!(
        must(&body, "stack_exporter_http_accept_errors_total", &[]),
        0.0
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    slowloris.join().unwrap();
    drop(idle);
    let log = exporter.log();
    let warnings = log.lines().filter(|l| l.contains("level=warn")).count();
    assert!(
        warnings <= 3,
        "the flood must not flood the log ({warnings} warnings):\n{log}"
    );
    assert!(!log.contains("accept failed"), "{log}");
}

/// Opens `count` connections at once, closes them, and returns the exporter's RSS before and after.
fn rss_around_a_storm(exporter: &Exporter, count: usize) -> (u64, u64, u64) {
    for _ in 0..5 {
        exporter.scrape();
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_bytes(exporter.pid());
    let storm = open_connections(exporter.port, count);
    std::thread::sleep(Duration::from_secs(1));
    let during = rss_bytes(exporter.pid());
    drop(storm);
    std::thread::sleep(Duration::from_secs(1));
    for _ in 0..5 {
        exporter.scrape();
    }
    std::thread::sleep(Duration::from_millis(500));
    (before, during, rss_bytes(exporter.pid()))
}

const MIB: f64 = 1024.0 * 1024.0;

#[test]
fn memory_returns_after_8000_connections() {
    raise_own_fd_limit(8200);
    // Under the default cap, and with a cap above the storm so every connection is really open
    // at once (the exporter inherits this process's raised limit).
    for cap in ["128", "10000"] {
        let exporter = Exporter::start(&[&format!("--web.max-connections={cap}")]);
        let (before, during, after) = rss_around_a_storm(&exporter, 8000);
        eprintln!(
            "--web.max-connections={cap}: RSS {:.1} MiB before 8000 connections, {:.1} MiB while open, {:.1} MiB after",
            before as f64 / MIB,
            during as f64 / MIB,
            after as f64 / MIB
        );
        assert!(
            // The bound: back within 2 MB of its start (measured 0.6-1.1 MB).
            after < before + 2_000_000,
            "cap {cap}: RSS {before} before 8000 connections, {after} after"
        );
    }
}

/// A request that hangs up 5 ms after sending: the scrape it started is cut off at the client.
fn hang_up_request(port: u16) {
    if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
        let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn hang_ups_cost_the_next_scrapes_nothing() {
    let exporter = Exporter::start(&[]);
    let port = exporter.port;
    let until = Instant::now() + Duration::from_secs(4);
    let hang_ups = std::thread::spawn(move || {
        let mut sent = 0;
        while Instant::now() < until {
            hang_up_request(port);
            sent += 1;
            std::thread::sleep(Duration::from_millis(45)); // about 20 a second
        }
        sent
    });
    let mut scrapes = 0;
    while Instant::now() < until {
        let body = exporter.scrape();
        assert_all_collectors_succeeded(&body, &format!("scrape {scrapes} among hang-ups"));
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    let sent = hang_ups.join().unwrap();
    assert!(
        sent >= 40 && scrapes >= 10,
        "{sent} hang-ups, {scrapes} scrapes"
    );
    let log = exporter.log();
    assert!(
        !log.contains("has not ended yet"),
        "a hung-up scrape left a collector running:\n{log}"
    );
}

/// A raw request; the answer's bytes (or what arrived before the exporter closed).
fn raw_request(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = connect(port);
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

#[test]
fn an_oversized_request_head_is_refused_and_the_exporter_goes_on() {
    let exporter = Exporter::start(&[]);
    let mut request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: ".to_vec();
    request.extend(std::iter::repeat_n(b'a', 64 * 1024));
    request.extend(b"\r\nConnection: close\r\n\r\n");
    let answer = raw_request(exporter.port, &request);
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "a 64 kB request head was read whole"
    );
    assert_all_collectors_succeeded(&exporter.scrape(), "after the big request");
}

/// Counts made on every scrape: the tests beside these (the storm's 8000 connections, and the
/// TIME-WAIT sockets they leave for a minute) fill the host's TCP tables, and counts made then
/// would be kept (see `a_small_count_is_kept_while_the_host_has_many_tcp_sockets`).
const EVERY_SCRAPE: &str = "--collector.sockets.connections-max-age=0s";

/// Config that watches the Redis listening on one of `ports` and nothing else: the machine's
/// other servers (and other tests') stay out of the figures.
fn watch_redis_only(dir: &std::path::Path, ports: &[u16]) -> std::path::PathBuf {
    let mut config = common::no_other_services("redis");
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    config.push_str(&format!(
        "[services.redis]\nmatch = [{{ comm = 'redis-server', cmdline = ':({})$' }}]\n",
        ports.join("|")
    ));
    let path = dir.join("stack.toml");
    std::fs::write(&path, config).unwrap();
    path
}

/// `count` connections to `port`, opened in bursts the listener's accept queue can take.
fn open_to(port: u16, count: usize) -> Vec<TcpStream> {
    open_connections(port, count)
}

/// Redis's connections as the exporter counts them, in total and for the busiest instance.
fn redis_connections(exporter: &Exporter) -> (f64, f64) {
    let text = exporter.scrape();
    let redis = [("service", "redis")];
    (
        must(&text, "stack_service_connections", &redis),
        must(&text, "stack_service_instance_max_connections", &redis),
    )
}

/// Waits until the exporter counts `expected` connections (the server accepts a burst in a few
/// milliseconds; until then the rest wait in the accept queue, which is not counted here), then
/// checks that the figure holds on the next scrape.
fn assert_counted(exporter: &Exporter, expected: usize, context: &str) {
    let expected = (expected as f64, expected as f64);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut counted = redis_connections(exporter);
    while counted != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        counted = redis_connections(exporter);
    }
    assert_eq!(counted, expected, "{context} (total, busiest instance)");
    assert_eq!(
        redis_connections(exporter),
        expected,
        "{context}, next scrape"
    );
}

/// Accepts every connection to `listener` on a thread of its own and keeps it open: a process
/// beside the service with its own busy port.
fn accept_and_hold(listener: TcpListener) {
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
}

#[test]
fn a_services_connections_are_counted_exactly_among_unrelated_ones() {
    const N: usize = 300;
    const M: usize = 200;
    raise_own_fd_limit((2 * N + 4 * M + 200) as u64);
    let mut redis = RedisServer::start();
    let unwatched = RedisServer::start();
    let moved_port = common::free_port();
    let config = watch_redis_only(redis.dir(), &[redis.port, moved_port]);
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display()), EVERY_SCRAPE]);
    assert_counted(&exporter, 0, "no connections");

    let service = open_to(redis.port, N);
    assert_counted(&exporter, N, "N connections to the service's port");

    // M to another Redis nobody watches, M to a listener of this test process: both ends of
    // those are on the host too, and neither is the service's.
    let _unwatched = open_to(unwatched.port, M);
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    accept_and_hold(other);
    let _others = open_to(other_port, M);
    assert_counted(&exporter, N, "N connections among 2M unrelated ones");

    // Outgoing connections of the service itself are not accepted connections: Redis connects
    // to its "master" when made a replica of the unwatched one.
    redis.cli(&["REPLICAOF", "127.0.0.1", &unwatched.port.to_string()]);
    wait_for("the replica's connection", Duration::from_secs(10), || {
        redis
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
    });
    assert_counted(
        &exporter,
        N,
        "N connections beside the service's outgoing one",
    );
    redis.cli(&["REPLICAOF", "NO", "ONE"]);

    drop(service);
    assert_counted(
        &exporter,
        0,
        "the service's connections closed, 2M unrelated ones open",
    );

    // Listeners that appear in a running process: Redis moves to another port, on IPv4 and
    // IPv6 (both families are counted from one dump of the kernel's table).
    redis.cli(&["CONFIG", "SET", "bind", "127.0.0.1 ::1"]);
    redis.cli(&["CONFIG", "SET", "port", &moved_port.to_string()]);
    let mut moved = open_to(moved_port, N / 4);
    moved.extend((0..N / 4).map(|_| {
        TcpStream::connect(("::1", moved_port))
            .expect("this test needs IPv6 on the loopback interface (::1)")
    }));
    assert_counted(
        &exporter,
        N / 2,
        "N/2 connections to the port Redis moved to",
    );
    drop(moved);

    // A restart: a new process with a new listener on the first port.
    redis.stop();
    redis.start_again();
    let _again = open_to(redis.port, N);
    assert_counted(&exporter, N, "N connections to the restarted service");
}

/// `count` connections to 127.0.0.1:`port` made inside the network namespace of process `pid`:
/// a thread enters it (setns) to open them, and they stay there.
fn open_in_namespace_of(pid: u32, port: u16, count: usize) -> std::io::Result<Vec<TcpStream>> {
    use std::os::fd::AsRawFd;
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    std::thread::spawn(move || {
        // SAFETY: setns on an open namespace file; only this thread moves.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        (0..count)
            .map(|i| {
                if i % 256 == 255 {
                    std::thread::sleep(Duration::from_millis(50));
                }
                TcpStream::connect(("127.0.0.1", port))
            })
            .collect()
    })
    .join()
    .unwrap()
}

/// A service in a network namespace of its own (a container's) is read in it: its connections
/// are counted there, and the same port number on the host, busy with another program's
/// connections, is not its. Needs root, as the exporter does to enter a namespace (unshare, setns).
#[test]
fn a_service_in_its_own_network_namespace_is_counted_there() {
    const N: usize = 150;
    const M: usize = 100;
    raise_own_fd_limit((2 * N + 2 * M + 200) as u64);
    let redis_server = require("redis-server", "apt-get install redis-server");
    let unshare = require("unshare", "apt-get install util-linux");
    require("ip", "apt-get install iproute2");
    let dir = common::temp_dir();
    let port = common::free_port();
    let redis = Guard::spawn(
        std::process::Command::new(unshare)
            .args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(&redis_server)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(std::process::Stdio::null()),
    );
    wait_for("Redis in its namespace", Duration::from_secs(10), || {
        open_in_namespace_of(redis.pid(), port, 1).is_ok()
    });
    // The host's own listener on the same port number, with connections of its own.
    let host = TcpListener::bind(("127.0.0.1", port)).unwrap();
    accept_and_hold(host);
    let _host_connections = open_to(port, M);

    let config = watch_redis_only(dir.path(), &[port]);
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display()), EVERY_SCRAPE]);
    assert_counted(
        &exporter,
        0,
        "no connections in the namespace, M on the host's port",
    );
    let _inside = open_in_namespace_of(redis.pid(), port, N).unwrap();
    assert_counted(
        &exporter,
        N,
        "N connections in the namespace, M on the host's port",
    );
    let text = exporter.scrape();
    let port = port.to_string();
    let listener = [("service", "redis"), ("port", port.as_str())];
    assert_eq!(
        must(
            &text,
            "stack_service_listen_info",
            &[listener[0], listener[1], ("address_class", "loopback")]
        ),
        1.0
    );
    // The backlog comes from sock_diag asked inside the namespace.
    assert!(must(&text, "stack_service_listen_queue_limit", &listener) > 0.0);
}

/// A count of 1000 connections or more costs the kernel about a millisecond: it is kept for
/// `--collector.sockets.connections-max-age`, published with its age, and made again after it,
/// off the scrape's path.
#[test]
fn a_costly_count_is_kept_for_its_max_age_and_says_how_old_it_is() {
    const COSTLY: usize = 1000;
    raise_own_fd_limit((2 * (COSTLY + 100) + 200) as u64);
    let redis = RedisServer::start();
    let config = watch_redis_only(redis.dir(), &[redis.port]);
    let exporter = Exporter::start(&[
        &format!("--config.file={}", config.display()),
        // Long enough for a slow scrape of a loaded machine not to age the count out.
        "--collector.sockets.connections-max-age=20s",
    ]);
    let age = |text: &str| {
        must(
            text,
            "stack_service_connections_age_seconds",
            &[("service", "redis")],
        )
    };

    let mut held = open_to(redis.port, COSTLY + 100);
    assert_counted(&exporter, COSTLY + 100, "a costly count");
    held.truncate(100);
    let text = exporter.scrape();
    let redis = [("service", "redis")];
    assert_eq!(
        must(&text, "stack_service_connections", &redis),
        (COSTLY + 100) as f64,
        "the kept count is published until it is 20 s old"
    );
    assert!(
        age(&text) > 0.0 && age(&text) < 20.0,
        "its age: {}",
        age(&text)
    );

    // Once 20 s old, the scrape that finds it so publishes it once more, with its age, and
    // leaves counting again to a refresh off the scrape's path: a later scrape has the count.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut text = exporter.scrape();
    let mut published_when_due = false;
    while must(&text, "stack_service_connections", &redis) != 100.0 && Instant::now() < deadline {
        published_when_due |= age(&text) >= 20.0;
        std::thread::sleep(Duration::from_millis(200));
        text = exporter.scrape();
    }
    assert_eq!(
        must(&text, "stack_service_connections", &redis),
        100.0,
        "counted again after 20 s"
    );
    assert!(
        published_when_due,
        "the scrape that found the count due published the kept one, with its age"
    );
    assert!(age(&text) < 10.0, "the count made again: {}", age(&text));
}

/// The host's TCP sockets: /proc/net/sockstat's `alloc` + `tw`, read as the exporter reads them.
fn host_tcp_sockets() -> u64 {
    let text = std::fs::read_to_string("/proc/net/sockstat").unwrap();
    stack_exporter::proc::parse_sockstat_tcp_sockets(&text).expect("a TCP line in sockstat")
}

/// Every count walks all of the host's TCP sockets, however few the service's: with 4000 of
/// them or more (2000 unrelated loopback connections here), a small count is kept too, with its
/// age, and the exporter says so once in its log.
#[test]
fn a_small_count_is_kept_while_the_host_has_many_tcp_sockets() {
    const COSTLY_HOST_SOCKETS: u64 = 4000;
    const UNRELATED: usize = 2000;
    raise_own_fd_limit((2 * UNRELATED + 400) as u64);
    let redis = RedisServer::start();
    let config = watch_redis_only(redis.dir(), &[redis.port]);
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    accept_and_hold(other);
    let _unrelated = open_to(other_port, UNRELATED);
    assert!(host_tcp_sockets() >= COSTLY_HOST_SOCKETS);

    let exporter = Exporter::start(&[
        &format!("--config.file={}", config.display()),
        "--collector.sockets.connections-max-age=20s",
    ]);
    let mut service = open_to(redis.port, 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    let redis_label = [("service", "redis")];
    let connections = |text: &str| must(text, "stack_service_connections", &redis_label);
    let mut text = exporter.scrape();
    while connections(&text) != 3.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        text = exporter.scrape();
    }
    assert_eq!(connections(&text), 3.0, "the first count");
    service.extend(open_to(redis.port, 2));
    std::thread::sleep(Duration::from_millis(300));
    let text = exporter.scrape();
    assert_eq!(connections(&text), 3.0, "kept, not made again");
    let age = must(&text, "stack_service_connections_age_seconds", &redis_label);
    assert!(age > 0.0 && age < 20.0, "its age: {age}");
    let said = "counting connections is costly here";
    assert_eq!(
        exporter.log().matches(said).count(),
        1,
        "{}",
        exporter.log()
    );
}

/// A connection cap above half the open-files limit is named at start-up: the collectors' reads
/// and kept /proc files need the rest.
#[test]
fn a_cap_over_half_the_open_files_limit_is_named() {
    let prlimit = require("prlimit", "apt-get install util-linux");
    let mut command = std::process::Command::new(prlimit);
    command
        .arg("--nofile=1000:1000")
        .arg(common::exporter_binary())
        .args([
            "--web.listen-address=127.0.0.1:0",
            "--web.max-connections=600",
        ])
        .env_remove("STACK_MYSQL_URL")
        .env_remove("STACK_POSTGRES_URL")
        .env_remove("STACK_REDIS_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let exporter = Exporter::start_command(command);
    let warning = "--web.max-connections=600 is more than half the file descriptor limit (1000)";
    wait_for("the warning", Duration::from_secs(5), || {
        exporter.log().contains(warning)
    });
}
