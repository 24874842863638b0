//! Helpers shared by the integration tests: free ports, the exporter binary started as a user
//! would start it, scrapes, and reading a value out of the text format.
#![allow(dead_code)] // each test binary uses its own subset

pub mod pki;
pub mod servers;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The exporter's arguments as every test gives them. Port 0: the kernel picks a free port and
/// the exporter logs it, so two tests can never race for the same port. No database target
/// comes from the environment the tests run in; stderr is piped for the log.
fn exporter_args(command: &mut Command, args: &[&str]) {
    command
        .arg("--web.listen-address=127.0.0.1:0")
        .args(args)
        .env_remove("STACK_MYSQL_URL")
        .env_remove("STACK_POSTGRES_URL")
        .env_remove("STACK_REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The path of a program the test needs, or a failure that says what to install. Tests never skip
/// themselves quietly.
pub fn require(program: &str, install_hint: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{program}` is not installed; install it with: {install_hint} (or run scripts/test.sh, which does)")
    })
}

/// Waits until `check` returns true, up to `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

pub fn wait_for_port(port: u16, timeout: Duration) {
    wait_for(&format!("port {port}"), timeout, || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// A child process, in a process group of its own, stopped with everything it started when
/// dropped: SIGTERM to the group (nginx and Gunicorn masters take their workers down), then
/// SIGKILL to whatever is left, so no worker outlives the test holding its pipes open.
pub struct Guard {
    pub child: Child,
}

impl Guard {
    pub fn spawn(command: &mut Command) -> Guard {
        use std::os::unix::process::CommandExt;
        let child = command
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        Guard { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: kill(2) with a negative pid signals our child's own process group.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The exporter binary built by cargo for these tests.
pub fn exporter_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_stack_exporter"))
}

/// A running stack_exporter on a free port, its log collected.
pub struct Exporter {
    guard: Guard,
    pub port: u16,
    log: Arc<StderrLog>,
}

/// The exporter's stderr, copied by a thread. Bytes leave the pipe only while `text` is locked,
/// so "the pipe is empty" seen under that lock means every byte written so far is in `text`:
/// a test reading the log right after a scrape never misses a line the scrape logged.
struct StderrLog {
    text: Mutex<Vec<u8>>,
    /// The pipe's read end (a duplicate), to ask how many bytes are still unread.
    pipe: OwnedFd,
}

impl StderrLog {
    fn drain(&self, pipe: OwnedFd) {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let mut ready = libc::pollfd {
                fd: pipe.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            if unsafe { libc::poll(&mut ready, 1, -1) } < 0 {
                continue; // EINTR
            }
            let mut text = self.text.lock().unwrap();
            let read =
                unsafe { libc::read(pipe.as_raw_fd(), buffer.as_mut_ptr().cast(), buffer.len()) };
            if read <= 0 {
                return; // EOF: the exporter and every copy of its stderr are gone
            }
            text.extend_from_slice(&buffer[..read as usize]);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.text.lock().unwrap()).into_owned()
    }

    /// The text once the pipe holds nothing unread.
    fn settled(&self) -> String {
        let started = Instant::now();
        loop {
            let text = self.text.lock().unwrap();
            let mut unread: libc::c_int = 0;
            let asked = unsafe { libc::ioctl(self.pipe.as_raw_fd(), libc::FIONREAD, &mut unread) };
            if asked != 0 || unread == 0 || started.elapsed() > Duration::from_secs(5) {
                return String::from_utf8_lossy(&text).into_owned();
            }
            drop(text);
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Exporter {
    pub fn start(args: &[&str]) -> Exporter {
        Exporter::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Exporter {
        let mut command = Command::new(exporter_binary());
        exporter_args(&mut command, args);
        for (key, value) in env {
            command.env(key, value);
        }
        Exporter::start_command(command)
    }

    /// The exporter run as user `nobody` (no capabilities), as `setpriv` leaves it: what an
    /// install without root or the unit's capabilities sees.
    pub fn start_unprivileged(args: &[&str]) -> Exporter {
        let setpriv = require("setpriv", "apt-get install util-linux");
        let mut command = Command::new(setpriv);
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(exporter_binary());
        exporter_args(&mut command, args);
        Exporter::start_command(command)
    }

    /// Starts a prepared exporter command (stderr piped) and waits until it listens.
    pub fn start_command(mut command: Command) -> Exporter {
        let mut guard = Guard::spawn(&mut command);
        let stderr = OwnedFd::from(guard.child.stderr.take().unwrap());
        let log = Arc::new(StderrLog {
            text: Mutex::new(Vec::new()),
            pipe: stderr.try_clone().unwrap(),
        });
        let sink = log.clone();
        std::thread::spawn(move || sink.drain(stderr));
        let start = Instant::now();
        let port = loop {
            if let Some(port) = listening_port(&log.text()) {
                break port;
            }
            if let Ok(Some(status)) = guard.child.try_wait() {
                panic!("exporter exited with {status}: {}", log.text());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "exporter did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Exporter { guard, port, log }
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// Everything the exporter has written to stderr so far: a line logged before a response
    /// it sent is in it (see [`StderrLog::settled`]).
    pub fn log(&self) -> String {
        self.log.settled()
    }

    /// GET /metrics, and how long it took.
    pub fn scrape_timed(&self) -> (String, Duration) {
        let started = Instant::now();
        let text = self.scrape();
        (text, started.elapsed())
    }

    /// GET /metrics in text format.
    pub fn scrape(&self) -> String {
        let (status, _, body) = http_get(self.port, "/metrics", &[]);
        assert_eq!(status, 200, "scrape failed: {body}");
        body
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
        http_get(self.port, path, headers)
    }
}

/// The port of the exporter's "listening on 127.0.0.1:PORT" log line.
fn listening_port(log: &str) -> Option<u16> {
    let rest = log.split("listening on 127.0.0.1:").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// A plain HTTP/1.1 GET: status, headers, body (bodies are read raw, so gzip stays compressed
/// text only if the caller did not ask for it).
pub fn http_get(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let (status, head, body) = http_get_bytes(port, path, headers);
    (status, head, String::from_utf8_lossy(&body).into_owned())
}

pub fn http_get_bytes(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP response without header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw[split + 4..].to_vec();
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (status, head, if chunked { dechunk(&body) } else { body })
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = body.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    out
}

/// The value of the sample `name{labels}` whose labels include every pair of `want`.
pub fn metric(text: &str, name: &str, want: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let all = want
                .iter()
                .all(|(k, v)| labels.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse().ok()).flatten()
        })
}

/// Like [`metric`], but fails with the scrape when the sample is absent.
pub fn must(text: &str, name: &str, want: &[(&str, &str)]) -> f64 {
    metric(text, name, want).unwrap_or_else(|| panic!("no {name}{want:?} in:\n{text}"))
}

/// `stack_scrape_collector_success` of one collector: 1 if it ran to the end in that scrape.
pub fn collector_success(text: &str, collector: &str) -> f64 {
    must(
        text,
        "stack_scrape_collector_success",
        &[("collector", collector)],
    )
}

/// A fresh temporary directory kept for the test's life.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("stack-exporter-test-")
        .tempdir()
        .unwrap()
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// A name no other process on the machine carries, for matching a test's own processes by
/// their command line (or their setproctitle title, which keeps Gunicorn's `--name`).
pub fn unique_marker(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{what}-{}-{nanos}", std::process::id())
}

/// Makes `path` readable (and its directories searchable) by every user, for a test that runs
/// the exporter as `nobody` on a file in a temp dir.
pub fn make_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = if path.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Compares `text` with the golden file at `path`, or rewrites that file when STACK_UPDATE_GOLDEN
/// is set. A mismatch fails naming the first differing line and the command that rewrites the file
/// on purpose (`test` is the integration test's name, as in `cargo test --test <test>`).
pub fn check_golden(path: &Path, text: &str, test: &str) {
    if std::env::var_os("STACK_UPDATE_GOLDEN").is_some() {
        std::fs::write(path, text).unwrap();
        eprintln!("rewrote {}", path.display());
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    if text != want {
        let first = text
            .lines()
            .zip(want.lines())
            .position(|(got, want)| got != want)
            .unwrap_or(text.lines().count().min(want.lines().count()));
        panic!(
            "{} differs from the golden text at line {}:\n  golden: {:?}\n  now:    {:?}\n\
             If the change is meant, run STACK_UPDATE_GOLDEN=1 cargo test --test {test} \
             and commit the new file after reading its diff.",
            path.display(),
            first + 1,
            want.lines().nth(first),
            text.lines().nth(first),
        );
    }
}

/// A memory cgroup of its own, removed when dropped: cgroup v2 where it has the memory
/// controller, else the v1 memory hierarchy.
pub struct MemoryCgroup {
    dir: PathBuf,
    /// Write a PID here to move that process into the cgroup.
    pub procs: PathBuf,
}

impl MemoryCgroup {
    pub fn create(limit_bytes: u64) -> MemoryCgroup {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        let name = format!("stack-exporter-oom-{}", std::process::id());
        let v2 = mounts.lines().find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let root = PathBuf::from(f[1]);
            let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
            (f[2] == "cgroup2" && controllers.split_whitespace().any(|c| c == "memory"))
                .then_some(root)
        });
        let v1 = || {
            mounts.lines().find_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                (f[2] == "cgroup" && f[3].split(',').any(|o| o == "memory"))
                    .then(|| PathBuf::from(f[1]))
            })
        };
        if let Some(root) = v2 {
            // The controller must be on for the children of the root.
            let _ = std::fs::write(root.join("cgroup.subtree_control"), "+memory");
            let dir = root.join(name);
            std::fs::create_dir(&dir).expect("creating a cgroup needs root");
            write(&dir.join("memory.max"), &limit_bytes.to_string());
            if dir.join("memory.swap.max").exists() {
                write(&dir.join("memory.swap.max"), "0");
            }
            return MemoryCgroup {
                procs: dir.join("cgroup.procs"),
                dir,
            };
        }
        let root = v1().expect("this test needs the memory cgroup controller (v1 or v2)");
        let dir = root.join(name);
        std::fs::create_dir(&dir).expect("creating a cgroup needs root");
        write(&dir.join("memory.limit_in_bytes"), &limit_bytes.to_string());
        // Where swap is accounted, memory + swap gets the same limit: the child cannot swap.
        if dir.join("memory.memsw.limit_in_bytes").exists() {
            write(
                &dir.join("memory.memsw.limit_in_bytes"),
                &limit_bytes.to_string(),
            );
        }
        MemoryCgroup {
            procs: dir.join("cgroup.procs"),
            dir,
        }
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// The services the exporter knows without a config (profiles/services.toml), but `monitoring`.
pub const BUILT_IN_SERVICES: [&str; 8] = [
    "nginx",
    "wsgi",
    "asgi",
    "celery_worker",
    "celery_beat",
    "mysql",
    "postgresql",
    "redis",
];

/// Every service profiles/services.toml defines: the built-in ones and `monitoring`, which
/// watches every stack_exporter on the host (the exporters of the tests running beside one come
/// and go with listeners of their own).
pub fn every_service() -> impl Iterator<Item = &'static str> {
    BUILT_IN_SERVICES.into_iter().chain(["monitoring"])
}

/// Config that gives every service but `keep` a matcher nothing fits, so the servers of the
/// machine and of other tests stay out of a test's figures and log lines.
pub fn no_other_services(keep: &str) -> String {
    every_service()
        .filter(|&name| name != keep)
        .map(|name| format!("[services.{name}]\nmatch = [{{ comm = 'no-such-process' }}]\n"))
        .collect()
}

/// The JSON bodies a [`webhook`] received, with when each came.
pub type Received = Arc<Mutex<Vec<(Instant, serde_json::Value)>>>;

/// Accepts Alertmanager's webhook posts on a free port and keeps each JSON body.
pub fn webhook() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let keep = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(json) = serde_json::from_slice(&body) {
                    keep.lock().unwrap().push((Instant::now(), json));
                }
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (port, received)
}
