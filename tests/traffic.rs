//! Traffic and sockets against real servers: Nginx in front of a Gunicorn WSGI app and a Uvicorn
//! ASGI app, a Gunicorn with a small backlog, Gunicorn's control socket, Uvicorn connections,
//! Redis bound two ways; an access log path that turns into a FIFO, a directory or a file the
//! exporter may not read.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    collector_success as success, must, require, wait_for, wait_for_port, Exporter, Guard,
};

const WSGI_APP: &str = r#"
import time

def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.endswith("/slow03"):
        time.sleep(0.3)
    elif path.endswith("/slow12"):
        time.sleep(1.2)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"#;

const ASGI_APP: &str = r#"
import asyncio

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"].endswith("/slow03"):
        await asyncio.sleep(0.3)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
"#;

fn python_tools() -> (PathBuf, PathBuf) {
    (
        require("gunicorn", "pip install gunicorn"),
        require("uvicorn", "pip install uvicorn"),
    )
}

/// A Gunicorn serving WSGI_APP on `port`. Gunicorn 25.1+ also listens on its control socket,
/// `gunicorn.ctl` in $XDG_RUNTIME_DIR (else ~/.gunicorn/): here `dir`, so that concurrent tests'
/// Gunicorns do not take one shared socket path from each other.
fn start_gunicorn(dir: &Path, port: u16, extra: &[&str]) -> Guard {
    let (gunicorn, _) = python_tools();
    std::fs::write(dir.join("wsgi_app.py"), WSGI_APP).unwrap();
    let guard = Guard::spawn(
        Command::new(gunicorn)
            .env("XDG_RUNTIME_DIR", dir)
            .arg(format!("--bind=127.0.0.1:{port}"))
            .arg(format!("--chdir={}", dir.display()))
            .args(extra)
            .arg("wsgi_app:app")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(20));
    guard
}

fn start_uvicorn(dir: &Path, port: u16) -> Guard {
    let (_, uvicorn) = python_tools();
    std::fs::write(dir.join("asgi_app.py"), ASGI_APP).unwrap();
    let guard = Guard::spawn(
        Command::new(uvicorn)
            .arg(format!("--app-dir={}", dir.display()))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--lifespan", "off", "--timeout-keep-alive", "60"])
            .args(["--log-level", "warning"])
            .arg("asgi_app:app")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(20));
    guard
}

/// Sends one request and reads the whole response; returns the status.
fn request(port: u16, path: &str, headers: &[(&str, &str)]) -> u16 {
    common::http_get(port, path, headers).0
}

struct Nginx {
    binary: PathBuf,
    prefix: PathBuf,
    _guard: Guard,
}

impl Nginx {
    fn start(dir: &Path, port: u16, wsgi: u16, asgi: u16) -> Nginx {
        let binary = require("nginx", "apt-get install nginx-light");
        std::fs::create_dir_all(dir.join("static")).unwrap();
        std::fs::write(dir.join("static/app.css"), "body {}\n").unwrap();
        let d = dir.display();
        let conf = format!(
            r#"
user root;
worker_processes 1;
error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{
    log_format stack '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time urt="$upstream_response_time" upgrade="$http_upgrade"';
    access_log {d}/access.log stack;
    keepalive_requests 3;
    keepalive_timeout 5s;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /static/ {{ alias {d}/static/; }}
        location = /nginx_status {{ stub_status; access_log off; }}
        location /async/ {{ proxy_pass http://127.0.0.1:{asgi}; }}
        location /ws/ {{
            proxy_pass http://127.0.0.1:{asgi};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
        }}
        location / {{ proxy_pass http://127.0.0.1:{wsgi}; }}
    }}
}}
"#
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let nginx = Nginx {
            _guard: Guard::spawn(
                Command::new(&binary)
                    .args(Nginx::args(dir))
                    .arg("-g")
                    .arg(format!("daemon off; pid {d}/nginx.pid;")),
            ),
            binary,
            prefix: dir.to_path_buf(),
        };
        wait_for_port(port, Duration::from_secs(10));
        nginx
    }

    fn args(dir: &Path) -> Vec<String> {
        vec![
            "-p".into(),
            dir.display().to_string(),
            "-c".into(),
            dir.join("nginx.conf").display().to_string(),
        ]
    }

    /// Asks Nginx to reopen its logs and waits until neither the master nor its worker still holds
    /// `rotated` open: `-s reopen` returns once the master has the new file, while the worker may
    /// write a few more lines to the old one.
    fn reopen(&self, rotated: &Path) {
        let output = Command::new(&self.binary)
            .args(Nginx::args(&self.prefix))
            .arg("-g")
            .arg(format!("pid {}/nginx.pid;", self.prefix.display()))
            .args(["-s", "reopen"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "nginx -s reopen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let pid_file = self.prefix.join("nginx.pid");
        let master: u32 = std::fs::read_to_string(pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_for(
            "nginx to close its rotated log",
            Duration::from_secs(10),
            || !family(master).iter().any(|&pid| holds_open(pid, rotated)),
        );
    }
}

/// `pid` and its children.
fn family(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let parent = status
            .lines()
            .find_map(|line| line.strip_prefix("PPid:"))
            .and_then(|ppid| ppid.trim().parse::<u32>().ok());
        if parent == Some(pid) {
            pids.push(child);
        }
    }
    pids
}

fn holds_open(pid: u32, path: &Path) -> bool {
    let path = path.canonicalize().unwrap();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
}

fn requests(text: &str, route: &str, class: &str) -> f64 {
    must(
        text,
        "stack_nginx_http_requests_total",
        &[("route", route), ("status_class", class)],
    )
}

fn bucket(text: &str, name: &str, route: &str, le: &str) -> f64 {
    must(text, name, &[("route", route), ("le", le)])
}

#[test]
fn nginx_access_log_counts_routes_and_latency_and_survives_rotation() {
    let dir = common::temp_dir();
    let (nginx_port, wsgi_port, asgi_port) = (
        common::free_port(),
        common::free_port(),
        common::free_port(),
    );
    let _gunicorn = start_gunicorn(dir.path(), wsgi_port, &["--workers=2"]);
    let _uvicorn = start_uvicorn(dir.path(), asgi_port);
    let nginx = Nginx::start(dir.path(), nginx_port, wsgi_port, asgi_port);
    let log = dir.path().join("access.log");
    // One request before the exporter starts: it follows from the end, so this is not counted.
    assert_eq!(request(nginx_port, "/", &[]), 200);

    let config = dir.path().join("stack.toml");
    std::fs::write(
        &config,
        format!(
            "[nginx]\naccess_log = \"{}\"\nformat = \"stack\"\n\
             stub_status_url = \"http://127.0.0.1:{nginx_port}/nginx_status\"\n\
             asgi_prefixes = [\"/async/\"]\n",
            log.display()
        ),
    )
    .unwrap();
    let exporter = Exporter::start(&[
        &format!("--config.file={}", config.display()),
        "--no-collector.host",
        "--no-collector.services",
        "--no-collector.sockets",
    ]);

    for _ in 0..5 {
        assert_eq!(request(nginx_port, "/", &[]), 200);
    }
    for _ in 0..3 {
        assert_eq!(request(nginx_port, "/api/slow03", &[]), 200);
    }
    for _ in 0..2 {
        assert_eq!(request(nginx_port, "/api/slow12", &[]), 200);
    }
    for _ in 0..4 {
        assert_eq!(request(nginx_port, "/static/app.css", &[]), 200);
    }
    assert_eq!(request(nginx_port, "/static/missing.css", &[]), 404);
    for _ in 0..3 {
        assert_eq!(request(nginx_port, "/async/hello", &[]), 200);
    }
    assert_eq!(request(nginx_port, "/async/slow03", &[]), 200);
    request(
        nginx_port,
        "/ws/chat/",
        &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")],
    );
    // A line no nginx wrote, and one cut short.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"this is not an access log line\n127.0.0.1 - - [10/Oct/2024:13:\n")
        .unwrap();

    let text = exporter.scrape();
    assert_eq!(requests(&text, "wsgi", "2xx"), 10.0, "{text}");
    assert_eq!(requests(&text, "static", "2xx"), 4.0);
    assert_eq!(requests(&text, "static", "4xx"), 1.0);
    assert_eq!(requests(&text, "asgi", "2xx"), 4.0);
    let websocket: f64 = ["1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .map(|c| requests(&text, "websocket", c))
        .sum();
    assert_eq!(websocket, 1.0);
    assert_eq!(must(&text, "stack_nginx_log_parse_errors_total", &[]), 2.0);
    assert_eq!(must(&text, "stack_nginx_recent_clients", &[]), 1.0);

    let duration = "stack_nginx_http_request_duration_seconds_bucket";
    assert_eq!(bucket(&text, duration, "wsgi", "0.2"), 5.0, "{text}");
    assert_eq!(bucket(&text, duration, "wsgi", "0.5"), 8.0);
    assert_eq!(bucket(&text, duration, "wsgi", "1"), 8.0);
    assert_eq!(bucket(&text, duration, "wsgi", "2"), 10.0);
    assert_eq!(bucket(&text, duration, "wsgi", "+Inf"), 10.0);
    assert_eq!(bucket(&text, duration, "asgi", "0.2"), 3.0);
    assert_eq!(bucket(&text, duration, "asgi", "0.5"), 4.0);
    assert_eq!(bucket(&text, duration, "static", "0.1"), 5.0);
    let sum = must(
        &text,
        "stack_nginx_http_request_duration_seconds_sum",
        &[("route", "wsgi")],
    );
    assert!((3.3..4.5).contains(&sum), "wsgi latency sum {sum}");
    let upstream = "stack_nginx_upstream_response_duration_seconds_count";
    assert_eq!(must(&text, upstream, &[("route", "wsgi")]), 10.0);
    assert_eq!(must(&text, upstream, &[("route", "static")]), 0.0);

    assert_eq!(must(&text, "stack_nginx_stub_status_up", &[]), 1.0);
    assert!(must(&text, "stack_nginx_connections_accepted_total", &[]) >= 20.0);
    assert!(must(&text, "stack_nginx_connections", &[("state", "active")]) >= 1.0);

    // Rotation by rename: Nginx writes to the old file until it reopens.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    for _ in 0..3 {
        assert_eq!(request(nginx_port, "/", &[]), 200);
    }
    let text = exporter.scrape();
    assert_eq!(requests(&text, "wsgi", "2xx"), 13.0, "{text}");
    assert_eq!(request(nginx_port, "/", &[]), 200); // still the old file
    nginx.reopen(&rotated);
    for _ in 0..2 {
        assert_eq!(request(nginx_port, "/", &[]), 200);
    }
    wait_for("the new log's lines", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.lines().count() >= 2)
    });
    let text = exporter.scrape();
    assert_eq!(requests(&text, "wsgi", "2xx"), 16.0, "{text}");
    assert_eq!(
        must(
            &text,
            "stack_nginx_log_rotations_total",
            &[("kind", "rename")]
        ),
        1.0
    );

    // copytruncate: copy, then truncate in place; Nginx goes on appending from 0.
    for _ in 0..4 {
        assert_eq!(request(nginx_port, "/", &[]), 200);
    }
    assert_eq!(requests(&exporter.scrape(), "wsgi", "2xx"), 20.0);
    std::fs::copy(&log, dir.path().join("access.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    for _ in 0..2 {
        assert_eq!(request(nginx_port, "/api/slow03", &[]), 200);
    }
    let text = exporter.scrape();
    assert_eq!(requests(&text, "wsgi", "2xx"), 22.0, "{text}");
    assert_eq!(
        must(
            &text,
            "stack_nginx_log_rotations_total",
            &[("kind", "truncate")]
        ),
        1.0
    );
    assert_eq!(must(&text, "stack_nginx_log_parse_errors_total", &[]), 2.0);

    // stub_status over a kept connection: nginx (keepalive_requests 3) accepts one for every
    // three scrapes, not one per scrape, and closes it after three; each scrape has the page.
    let accepted = |text: &str| must(text, "stack_nginx_connections_accepted_total", &[]);
    let before = accepted(&exporter.scrape());
    let mut text = String::new();
    for _ in 0..6 {
        text = exporter.scrape();
        assert_eq!(must(&text, "stack_nginx_stub_status_up", &[]), 1.0);
    }
    assert_eq!(
        accepted(&text) - before,
        2.0,
        "6 scrapes, 2 new connections"
    );
    // Idle past keepalive_timeout (5 s): nginx closes the kept connection, the next scrape
    // finds it closed and asks on a new one.
    std::thread::sleep(Duration::from_millis(5500));
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_nginx_stub_status_up", &[]), 1.0);
}

#[test]
fn nginx_log_that_does_not_exist_yet_is_followed_from_its_start() {
    let dir = common::temp_dir();
    let log = dir.path().join("later/access.log");
    let exporter = Exporter::start_with_env(
        &[
            "--no-collector.host",
            "--no-collector.services",
            "--no-collector.sockets",
        ],
        &[("STACK_NGINX_ACCESS_LOG", log.to_str().unwrap())],
    );
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_nginx_log_file_open", &[]), 0.0);
    assert_eq!(file_error(&text, "missing"), 1.0);
    assert_eq!(must(&text, "stack_nginx_log_read_errors_total", &[]), 0.0);
    assert_eq!(requests(&text, "wsgi", "2xx"), 0.0);
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(
        &log,
        "10.0.0.1 - - [10/Oct/2024:13:55:36 +0000] \"GET /media/a.png HTTP/1.1\" 200 5 \"-\" \"ua\"\n\
         10.0.0.2 - - [10/Oct/2024:13:55:37 +0000] \"GET / HTTP/1.1\" 502 5 \"-\" \"ua\"\n",
    )
    .unwrap();
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_nginx_log_file_open", &[]), 1.0);
    assert_eq!(file_error(&text, "missing"), 0.0);
    assert_eq!(requests(&text, "static", "2xx"), 1.0);
    assert_eq!(requests(&text, "wsgi", "5xx"), 1.0);
    // The combined format has no $request_time: no histograms rather than empty ones.
    assert!(!text.contains("stack_nginx_http_request_duration_seconds"));
}

fn file_error(text: &str, reason: &str) -> f64 {
    must(text, "stack_nginx_log_file_error", &[("reason", reason)])
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

fn append(path: &Path, text: &str) {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// `n` access-log lines in nginx's combined format, each a 200 for a WSGI path.
fn wsgi_lines(n: usize) -> String {
    "10.0.0.1 - - [10/Oct/2024:13:55:36 +0000] \"GET /a HTTP/1.1\" 200 5 \"-\" \"ua\"\n".repeat(n)
}

/// Lines of the exporter's log that contain `text`, once there are at least `expected` (its
/// log reaches the test through a reader thread) or after two seconds.
/// The follower's recovery line; other collectors (PSS, sockets) log recoveries of their own.
const ACCESS_LOG_RECOVERED: &str = ".log: recovered";

fn log_lines(exporter: &Exporter, text: &str, expected: usize) -> usize {
    let count = || exporter.log().lines().filter(|l| l.contains(text)).count();
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while count() < expected && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    count()
}

/// Ten scrapes (a FIFO opened by each would have held a thread each): each answers fast, the
/// /proc collectors succeed, the nginx collector reports the FIFO and succeeds too.
fn scrapes_stay_healthy_with_a_fifo(exporter: &Exporter) -> String {
    let mut text = String::new();
    for scrape in 0..10 {
        let (t, took) = exporter.scrape_timed();
        assert!(
            took < Duration::from_secs(3),
            "scrape {scrape} took {took:?}"
        );
        for collector in ["host", "services", "nginx"] {
            assert_eq!(
                success(&t, collector),
                1.0,
                "scrape {scrape}, {collector}:\n{t}"
            );
        }
        assert_eq!(must(&t, "stack_nginx_log_file_open", &[]), 0.0);
        assert_eq!(file_error(&t, "not_regular_file"), 1.0);
        text = t;
    }
    text
}

#[test]
fn a_fifo_at_the_access_log_path_wedges_nothing_and_a_file_replacing_it_is_read() {
    let dir = common::temp_dir();
    let log = dir.path().join("access.log");
    mkfifo(&log);
    // From start-up: the exporter binds (Exporter::start waits for it) and answers.
    let exporter = Exporter::start_with_env(
        &["--no-collector.sockets"],
        &[("STACK_NGINX_ACCESS_LOG", log.to_str().unwrap())],
    );
    let text = scrapes_stay_healthy_with_a_fifo(&exporter);
    assert_eq!(must(&text, "stack_nginx_log_read_errors_total", &[]), 10.0);
    assert_eq!(log_lines(&exporter, "is a FIFO, not a regular file", 1), 1);

    // The FIFO replaced by a file: read from its start, since it appeared after start-up.
    std::fs::remove_file(&log).unwrap();
    append(&log, &wsgi_lines(2));
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_nginx_log_file_open", &[]), 1.0, "{text}");
    assert_eq!(file_error(&text, "not_regular_file"), 0.0);
    assert_eq!(requests(&text, "wsgi", "2xx"), 2.0);
    assert_eq!(log_lines(&exporter, ACCESS_LOG_RECOVERED, 1), 1);

    // A FIFO renamed over the log mid-run: the old file is still read to its end.
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::rename(&fifo, &log).unwrap();
    append(&rotated, &wsgi_lines(1));
    let text = scrapes_stay_healthy_with_a_fifo(&exporter);
    assert_eq!(requests(&text, "wsgi", "2xx"), 3.0);
    assert_eq!(log_lines(&exporter, "is a FIFO, not a regular file", 2), 2);

    std::fs::remove_file(&log).unwrap();
    append(&log, &wsgi_lines(3));
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_nginx_log_file_open", &[]), 1.0, "{text}");
    assert_eq!(requests(&text, "wsgi", "2xx"), 6.0);
    append(&log, &wsgi_lines(1));
    assert_eq!(requests(&exporter.scrape(), "wsgi", "2xx"), 7.0);
}

#[test]
fn a_log_path_briefly_a_directory_after_rotation_loses_no_line() {
    let dir = common::temp_dir();
    // Only static files are requested: nothing listens on the upstream ports.
    let port = common::free_port();
    let nginx = Nginx::start(dir.path(), port, common::free_port(), common::free_port());
    let log = dir.path().join("access.log");
    let config = dir.path().join("stack.toml");
    std::fs::write(
        &config,
        format!(
            "[nginx]\naccess_log = \"{}\"\nformat = \"stack\"\n",
            log.display()
        ),
    )
    .unwrap();
    let exporter = Exporter::start(&[
        &format!("--config.file={}", config.display()),
        "--no-collector.host",
        "--no-collector.services",
        "--no-collector.sockets",
    ]);
    exporter.scrape();
    let get = |n: usize| {
        for _ in 0..n {
            assert_eq!(request(port, "/static/app.css", &[]), 200);
        }
    };
    get(3);
    assert_eq!(requests(&exporter.scrape(), "static", "2xx"), 3.0);

    // Rotated away, and a directory where the log was: Nginx still writes to the old file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::create_dir(&log).unwrap();
    get(4);
    let text = exporter.scrape();
    assert_eq!(requests(&text, "static", "2xx"), 7.0, "{text}");
    assert_eq!(must(&text, "stack_nginx_log_file_open", &[]), 0.0);
    assert_eq!(file_error(&text, "not_regular_file"), 1.0);
    assert_eq!(success(&text, "nginx"), 1.0);
    get(2);
    assert_eq!(requests(&exporter.scrape(), "static", "2xx"), 9.0);

    // The path heals and Nginx reopens: the new file is followed from its start.
    std::fs::remove_dir(&log).unwrap();
    nginx.reopen(&rotated);
    get(2);
    let text = exporter.scrape();
    assert_eq!(requests(&text, "static", "2xx"), 11.0, "{text}");
    assert_eq!(must(&text, "stack_nginx_log_file_open", &[]), 1.0);
    assert_eq!(file_error(&text, "not_regular_file"), 0.0);
    assert_eq!(
        must(
            &text,
            "stack_nginx_log_rotations_total",
            &[("kind", "rename")]
        ),
        1.0
    );
    get(1);
    assert_eq!(requests(&exporter.scrape(), "static", "2xx"), 12.0);
    assert_eq!(
        log_lines(&exporter, "is a directory, not a regular file", 1),
        1
    );
    assert_eq!(log_lines(&exporter, ACCESS_LOG_RECOVERED, 1), 1);
}

#[test]
fn an_access_log_the_exporter_may_not_read_is_reported_until_it_may() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let dir = common::temp_dir();
    mode(dir.path(), 0o755);
    let log = dir.path().join("access.log");
    append(&log, &wsgi_lines(1));
    mode(&log, 0o600); // root's alone: the exporter runs as nobody
    let config = dir.path().join("stack.toml");
    std::fs::write(
        &config,
        format!("[nginx]\naccess_log = \"{}\"\n", log.display()),
    )
    .unwrap();
    mode(&config, 0o644);
    let exporter = Exporter::start_unprivileged(&[
        &format!("--config.file={}", config.display()),
        "--no-collector.host",
        "--no-collector.services",
        "--no-collector.sockets",
    ]);
    for _ in 0..3 {
        let text = exporter.scrape();
        assert_eq!(must(&text, "stack_nginx_log_file_open", &[]), 0.0, "{text}");
        assert_eq!(file_error(&text, "permission_denied"), 1.0);
        assert_eq!(success(&text, "nginx"), 1.0);
    }
    assert_eq!(log_lines(&exporter, "Permission denied", 1), 1);

    mode(&log, 0o644);
    append(&log, &wsgi_lines(1));
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_nginx_log_file_open", &[]), 1.0, "{text}");
    assert_eq!(file_error(&text, "permission_denied"), 0.0);
    // Readable only after start-up: read from its start, like a log that appears late.
    assert_eq!(requests(&text, "wsgi", "2xx"), 2.0);
    assert_eq!(must(&text, "stack_nginx_log_read_errors_total", &[]), 3.0);
    assert_eq!(log_lines(&exporter, ACCESS_LOG_RECOVERED, 1), 1);
}

fn sockets_exporter(dir: &Path, services: &str) -> Exporter {
    let config = dir.join("sockets.toml");
    std::fs::write(&config, services).unwrap();
    Exporter::start(&[
        &format!("--config.file={}", config.display()),
        "--no-collector.host",
        "--no-collector.services",
        // Counted every scrape, even when other tests have filled the host's TCP tables.
        "--collector.sockets.connections-max-age=0s",
    ])
}

#[test]
fn gunicorn_backlog_shows_as_listen_queue() {
    let dir = common::temp_dir();
    let port = common::free_port();
    // Matched by its name, which survives setproctitle (`gunicorn: master [NAME]`); --bind does not.
    let name = common::unique_marker("backlog-test");
    let _gunicorn = start_gunicorn(
        dir.path(),
        port,
        &[
            "--workers=1",
            "--backlog=4",
            "--timeout=60",
            &format!("--name={name}"),
        ],
    );
    let exporter = sockets_exporter(
        dir.path(),
        &format!("[services.wsgi]\nmatch = [{{ cmdline = '{name}' }}]\n"),
    );
    let port_label = port.to_string();
    let labels = [("service", "wsgi"), ("port", port_label.as_str())];
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_service_listen_queue_length", &labels),
        0.0
    );
    assert_eq!(
        must(&text, "stack_service_listen_queue_limit", &labels),
        4.0
    );

    // Slow clients: one sync worker takes one at a time, the rest wait in the accept queue.
    let clients: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
                stream
                    .write_all(b"GET /slow12 HTTP/1.1\r\nHost: x\r\n\r\n")
                    .ok()?;
                std::thread::sleep(Duration::from_secs(3));
                Some(stream)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let text = exporter.scrape();
    let queued = must(&text, "stack_service_listen_queue_length", &labels);
    assert!(queued >= 3.0, "queue length {queued}:\n{text}");
    assert_eq!(
        must(
            &text,
            "stack_service_listen_info",
            &[("service", "wsgi"), ("address_class", "loopback")]
        ),
        1.0
    );
    for client in clients {
        let _ = client.join();
    }
}

/// The inode of the listening Unix socket bound at `path`, from /proc/net/unix.
fn unix_listener_inode(path: &Path) -> Option<u64> {
    const SO_ACCEPTCON: u32 = 0x0001_0000;
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    table.lines().skip(1).find_map(|line| {
        // Num RefCount Protocol Flags Type St Inode Path
        let fields: Vec<&str> = line.split_whitespace().collect();
        let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
        let listening = flags & SO_ACCEPTCON != 0;
        (listening && fields.get(7).map(Path::new) == Some(path)).then(|| fields[6].parse().ok())?
    })
}

/// Whether one of `pids` has the socket `inode` among its open files.
fn holds_socket(pids: &[u32], inode: u64) -> bool {
    let link = PathBuf::from(format!("socket:[{inode}]"));
    pids.iter().any(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.flatten()
                .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == link))
        })
    })
}

/// Asks Gunicorn's control socket `show workers`, as `gunicornc` does (a 4-byte big-endian
/// length, then JSON), and keeps the connection open: the answer proves it was accepted.
fn control_session(control: &Path) -> std::os::unix::net::UnixStream {
    use std::io::Read;
    let mut stream = std::os::unix::net::UnixStream::connect(control).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = br#"{"id": 1, "command": "show", "args": ["workers"]}"#;
    stream
        .write_all(&(request.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(request).unwrap();
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).unwrap();
    let mut answer = vec![0u8; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains(r#""status": "ok""#), "{answer}");
    stream
}

/// Every sample of the sockets collector's per-port series whose port is `port`.
fn port_series<'a>(text: &'a str, port: &str) -> Vec<&'a str> {
    let label = format!("port=\"{port}\"");
    text.lines()
        .filter(|line| line.starts_with("stack_service_listen_") && line.contains(&label))
        .collect()
}

/// Gunicorn's control socket (`gunicorn.ctl`, on by default since Gunicorn 25.1, for
/// `gunicornc`) is a Unix listener of the master that no client of the app ever connects to: not
/// one of WSGI's listeners, not in its request queue (W3), its sessions not WSGI connections. The
/// app's own TCP and Unix listeners are.
#[test]
fn gunicorn_control_socket_is_not_a_wsgi_listener() {
    let dir = common::temp_dir();
    let port = common::free_port();
    let app_socket = dir.path().join("app.sock");
    let name = common::unique_marker("control-socket-test");
    let gunicorn = start_gunicorn(
        dir.path(),
        port,
        &[
            "--workers=1",
            &format!("--bind=unix:{}", app_socket.display()),
            &format!("--name={name}"),
        ],
    );
    // The default path, in $XDG_RUNTIME_DIR: a listener held by the service's own processes.
    let control = dir.path().join("gunicorn.ctl");
    let mut control_inode = None;
    wait_for("Gunicorn's control socket", Duration::from_secs(20), || {
        control_inode = unix_listener_inode(&control);
        control_inode.is_some()
    });
    assert!(
        holds_socket(&family(gunicorn.pid()), control_inode.unwrap()),
        "{} is not Gunicorn's",
        control.display()
    );
    let _session = control_session(&control);

    let exporter = sockets_exporter(
        dir.path(),
        &format!("[services.wsgi]\nmatch = [{{ cmdline = '{name}' }}]\n"),
    );
    let text = exporter.scrape();
    let control_port = format!("unix:{}", control.display());
    assert_eq!(port_series(&text, &control_port), Vec::<&str>::new());
    let app_unix = format!("unix:{}", app_socket.display());
    let tcp = port.to_string();
    for listener in [tcp.as_str(), app_unix.as_str()] {
        let labels = [("service", "wsgi"), ("port", listener)];
        assert_eq!(
            must(&text, "stack_service_listen_info", &labels),
            1.0,
            "{text}"
        );
        must(&text, "stack_service_listen_queue_length", &labels);
        must(&text, "stack_service_listen_queue_limit", &labels);
    }
    let wsgi = [("service", "wsgi")];
    // The control session is open and not a WSGI connection...
    assert_eq!(must(&text, "stack_service_connections", &wsgi), 0.0);
    // ...while a request on the app's Unix socket is.
    let request = std::thread::spawn(move || {
        let mut stream = std::os::unix::net::UnixStream::connect(app_socket).unwrap();
        stream
            .write_all(b"GET /slow12 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
        answer
    });
    wait_for("the request counted", Duration::from_secs(5), || {
        must(&exporter.scrape(), "stack_service_connections", &wsgi) == 1.0
    });
    assert!(request.join().unwrap().starts_with("HTTP/1.1 200"));
}

#[test]
fn uvicorn_connections_are_counted() {
    let dir = common::temp_dir();
    let port = common::free_port();
    let _uvicorn = start_uvicorn(dir.path(), port);
    let exporter = sockets_exporter(
        dir.path(),
        &format!("[services.asgi]\nmatch = [{{ cmdline = 'uvicorn .*--port {port}\\b' }}]\n"),
    );
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_service_connections", &[("service", "asgi")]),
        0.0
    );
    let open: Vec<TcpStream> = (0..7)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_service_connections", &[("service", "asgi")]),
        7.0,
        "{text}"
    );
    assert_eq!(
        must(
            &text,
            "stack_service_instance_max_connections",
            &[("service", "asgi")]
        ),
        7.0
    );
    drop(open);
}

#[test]
fn redis_on_every_interface_is_exposed_and_on_loopback_is_not() {
    let redis = require("redis-server", "apt-get install redis-server");
    let (exposed, local) = (common::free_port(), common::free_port());
    let dir = common::temp_dir();
    let start = |port: u16, bind: &str| {
        Guard::spawn(
            Command::new(&redis)
                .args(["--port", &port.to_string(), "--bind", bind])
                .args(["--save", "", "--appendonly", "no"])
                .args(["--dir", dir.path().to_str().unwrap()])
                .stdout(std::process::Stdio::null()),
        )
    };
    let _exposed = start(exposed, "0.0.0.0");
    let _local = start(local, "127.0.0.1");
    wait_for_port(exposed, Duration::from_secs(10));
    wait_for_port(local, Duration::from_secs(10));
    let exporter = sockets_exporter(
        dir.path(),
        &format!(
            "[services.redis]\nmatch = [{{ comm = 'redis-server', cmdline = ':({exposed}|{local})\\b' }}]\n"
        ),
    );
    let text = exporter.scrape();
    let info = |port: u16, class: &str| {
        common::metric(
            &text,
            "stack_service_listen_info",
            &[
                ("service", "redis"),
                ("port", port.to_string().as_str()),
                ("address_class", class),
            ],
        )
    };
    assert_eq!(info(exposed, "any"), Some(1.0), "{text}");
    assert_eq!(info(exposed, "loopback"), None);
    assert_eq!(info(local, "loopback"), Some(1.0));
    assert_eq!(info(local, "any"), None);
}
