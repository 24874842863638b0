//! The HTTP surface: content negotiation as client_golang does it, gzip, the landing page, health,
//! and output that `promtool check metrics` accepts.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use common::{http_get_bytes, must, require, Exporter};

#[test]
fn text_format_by_default_and_promtool_accepts_it() {
    let exporter = Exporter::start(&[]);
    let (status, head, body) = exporter.get("/metrics", &[]);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    assert!(!body.contains("# EOF"));
    assert!(body.contains("# TYPE stack_host_cpu_seconds_total counter"));
    for name in [
        "stack_host_memory_available_bytes",
        "stack_host_cpu_cores",
        "process_resident_memory_bytes",
    ] {
        assert!(must(&body, name, &[]) > 0.0, "{name}");
    }
    assert_eq!(
        must(
            &body,
            "stack_scrape_collector_success",
            &[("collector", "host")]
        ),
        1.0
    );
    assert_eq!(
        must(
            &body,
            "stack_scrape_collector_success",
            &[("collector", "services")]
        ),
        1.0
    );

    let promtool = require("promtool", "apt-get install prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let complaints = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "promtool check metrics: {complaints}"
    );
}

#[test]
fn openmetrics_when_asked_for() {
    let exporter = Exporter::start(&[]);
    let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, head, body) = exporter.get("/metrics", &[("Accept", accept)]);
    assert_eq!(status, 200);
    assert!(
        head.contains("application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.ends_with("# EOF\n"));
    assert!(body.contains("# TYPE stack_host_cpu_seconds counter"));
}

#[test]
fn gzip_when_accepted() {
    let exporter = Exporter::start(&[]);
    let (status, head, body) =
        http_get_bytes(exporter.port, "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: gzip"),
        "{head}"
    );
    let mut text = String::new();
    flate2::read::GzDecoder::new(body.as_slice())
        .read_to_string(&mut text)
        .unwrap();
    assert!(text.contains("stack_host_memory_total_bytes"));
}

#[test]
fn landing_page_health_and_unknown_paths() {
    let exporter = Exporter::start(&["--web.telemetry-path=/stack-metrics"]);
    let (status, _, page) = exporter.get("/", &[]);
    assert_eq!(status, 200);
    assert!(
        page.contains(env!("CARGO_PKG_VERSION")) && page.contains("href=\"/stack-metrics\""),
        "{page}"
    );
    assert_eq!(exporter.get("/-/healthy", &[]).0, 200);
    assert_eq!(exporter.get("/metrics", &[]).0, 404);
    assert_eq!(exporter.get("/stack-metrics", &[]).0, 200);
}

#[test]
fn concurrent_scrapes_all_succeed() {
    let exporter = Exporter::start(&[]);
    let port = exporter.port;
    let handles: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || common::http_get(port, "/metrics", &[])))
        .collect();
    for handle in handles {
        let (status, _, body) = handle.join().unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("stack_service_up"));
    }
}

#[test]
fn concurrent_scrapes_share_one_collection() {
    // A Redis target that accepts connections and never answers: every collection opens one
    // connection (the last one timed out), so the connections the kernel queued on this listener
    // count the collections.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = common::temp_dir();
    let config = dir.path().join("stack.toml");
    common::write(
        &config,
        &format!(
            "[[redis]]\nname = \"hang\"\nurl = \"redis://127.0.0.1:{port}/0\"\ntimeout = \"1s\"\n"
        ),
    );
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    let exporter_port = exporter.port;
    let scrapes: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || common::http_get(exporter_port, "/metrics", &[])))
        .collect();
    for scrape in scrapes {
        let (status, _, body) = scrape.join().unwrap();
        assert_eq!(status, 200);
        assert_eq!(must(&body, "stack_redis_up", &[("target", "hang")]), 0.0);
    }
    silent.set_nonblocking(true).unwrap();
    let collections = std::iter::from_fn(|| silent.accept().ok()).count();
    // 8 scrapes within one collection's second: one collection, or two if a scrape arrived just
    // as the first ended; never one per scrape.
    assert!(
        (1..=2).contains(&collections),
        "{collections} collections for 8 concurrent scrapes"
    );
}

#[test]
fn a_waiting_scrape_keeps_to_its_own_timeout() {
    // The first scrape collects for 3 s (a Redis target that never answers); a second one that
    // Prometheus gives 1.5 s must not wait those 3 s for it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let dir = common::temp_dir();
    let config = dir.path().join("stack.toml");
    common::write(
        &config,
        &format!(
            "[[redis]]\nname = \"hang\"\nurl = \"redis://127.0.0.1:{port}/0\"\ntimeout = \"3s\"\n"
        ),
    );
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    let exporter_port = exporter.port;
    let slow = std::thread::spawn(move || {
        common::http_get(
            exporter_port,
            "/metrics",
            &[("X-Prometheus-Scrape-Timeout-Seconds", "10")],
        )
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let started = std::time::Instant::now();
    let (status, _, body) = exporter.get(
        "/metrics",
        &[("X-Prometheus-Scrape-Timeout-Seconds", "1.5")],
    );
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        took < std::time::Duration::from_millis(1500),
        "the second scrape took {took:?}"
    );
    assert_eq!(
        must(
            &body,
            "stack_scrape_collector_success",
            &[("collector", "redis")]
        ),
        0.0
    );
    assert!(must(&body, "process_resident_memory_bytes", &[]) > 0.0);
    let (status, _, body) = slow.join().unwrap();
    assert_eq!(status, 200);
    assert_eq!(must(&body, "stack_redis_up", &[("target", "hang")]), 0.0);
}

#[test]
fn json_logs_when_asked_for() {
    let exporter = Exporter::start(&["--log.format=json"]);
    common::wait_for("a log line", std::time::Duration::from_secs(5), || {
        !exporter.log().is_empty()
    });
    let first = exporter.log().lines().next().unwrap().to_string();
    assert!(
        first.starts_with("{\"ts\":\"") && first.contains("\"level\":\"info\""),
        "{first}"
    );
}

/// A request with raw header bytes (not necessarily UTF-8); the status code of the answer.
fn raw_status(port: u16, header: &[u8]) -> u16 {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(15)))
        .unwrap();
    let mut request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
    request.extend_from_slice(header);
    request.extend_from_slice(b"\r\n\r\n");
    stream.write_all(&request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[test]
fn any_scrape_timeout_header_is_answered_and_the_exporter_lives_on() {
    let exporter = Exporter::start(&[]);
    let values: &[&[u8]] = &[
        b"1e20",
        b"1e300",
        b"1.79e308",
        b"inf",
        b"-inf",
        b"nan",
        b"-1",
        b"0",
        b"0.000001",
        b"1e-400",
        b"banana",
        b"",
        b"\xff\xfe\x80",
    ];
    for value in values {
        let mut header = b"X-Prometheus-Scrape-Timeout-Seconds: ".to_vec();
        header.extend_from_slice(value);
        let status = raw_status(exporter.port, &header);
        assert_eq!(
            status,
            200,
            "timeout header {:?}",
            String::from_utf8_lossy(value)
        );
    }
    let body = exporter.scrape();
    for collector in ["host", "services", "sockets"] {
        assert_eq!(
            must(
                &body,
                "stack_scrape_collector_success",
                &[("collector", collector)]
            ),
            1.0,
            "{collector}"
        );
    }
    assert_eq!(must(&body, "stack_exporter_panics_total", &[]), 0.0);
}

#[test]
fn tiny_timeouts_neither_flood_the_log_nor_fail_the_next_scrape() {
    let exporter = Exporter::start(&[]);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let mut sent = 0;
    while std::time::Instant::now() < until {
        let (status, _, body) = exporter.get(
            "/metrics",
            &[("X-Prometheus-Scrape-Timeout-Seconds", "0.000001")],
        );
        assert_eq!(status, 200);
        assert!(body.contains("stack_scrape_collector_success"), "{body}");
        sent += 1;
    }
    // Its collection ran to a sane deadline of its own: the next scrape shares or repeats it.
    let body = exporter.scrape();
    for collector in ["host", "services", "sockets"] {
        assert_eq!(
            must(
                &body,
                "stack_scrape_collector_success",
                &[("collector", collector)]
            ),
            1.0,
            "{collector} after {sent} tiny-timeout scrapes"
        );
    }
    let log = exporter.log();
    let warnings = log.lines().filter(|l| l.contains("level=warn")).count();
    assert!(
        sent >= 20 && warnings <= 2,
        "{sent} tiny-timeout scrapes logged {warnings} warnings:\n{log}"
    );
}

#[test]
fn accept_q_values_are_honoured() {
    let exporter = Exporter::start(&[]);
    let format = |accept: &str| {
        let (status, head, _) = exporter.get("/metrics", &[("Accept", accept)]);
        assert_eq!(status, 200);
        if head.contains("application/openmetrics-text") {
            "openmetrics"
        } else {
            assert!(head.contains("version=0.0.4"), "{head}");
            "text"
        }
    };
    assert_eq!(format("application/openmetrics-text;q=0"), "text");
    assert_eq!(
        format("application/openmetrics-text; q=0.0, text/plain"),
        "text"
    );
    assert_eq!(
        format("application/openmetrics-text;q=0.3,text/plain;version=0.0.4;q=0.5"),
        "text"
    );
    assert_eq!(
        format("text/plain;version=0.0.4;q=0.5,application/openmetrics-text;q=0.6"),
        "openmetrics"
    );
    assert_eq!(format("application/openmetrics-text"), "openmetrics");

    let gzipped = |accept_encoding: &str| {
        let (status, head, _) = http_get_bytes(
            exporter.port,
            "/metrics",
            &[("Accept-Encoding", accept_encoding)],
        );
        assert_eq!(status, 200);
        head.to_ascii_lowercase().contains("content-encoding: gzip")
    };
    for refused in [
        "gzip;q=0",
        "gzip;q=0.0",
        "gzip; q=0.000",
        "*;q=0",
        "identity",
    ] {
        assert!(!gzipped(refused), "{refused}");
    }
    for accepted in ["gzip", "*", "*;q=0.5", "deflate, gzip;q=0.2"] {
        assert!(gzipped(accepted), "{accepted}");
    }
}
