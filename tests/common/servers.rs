//! Throwaway MariaDB, PostgreSQL and Redis servers for the integration tests: started from the
//! binaries on PATH, in temp dirs, on free ports, never the servers on this machine's standard
//! ports. Each is stopped (and its directory removed) when dropped; `stop` and `start` let a test
//! take a server away mid-run and bring it back on the same port with the same data.
#![allow(dead_code)] // each test binary uses its own server

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require, wait_for, wait_for_port, Guard};

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The smallest WSGI app: `ok` to every request.
pub const WSGI_APP: &str = "def app(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'ok']\n";

/// A Gunicorn named `name` (`--name`) with `workers` workers, serving [`WSGI_APP`] from `dir`:
/// its command line shows the name, and so does the title setproctitle gives it
/// (`gunicorn: master [name]`), so tests match it by that name.
pub fn start_gunicorn(dir: &Path, workers: u32, name: &str) -> (Guard, u16) {
    require("python3", "apt-get install python3");
    let port = free_port();
    std::fs::write(dir.join("app.py"), WSGI_APP).unwrap();
    let guard = Guard::spawn(
        Command::new("python3")
            .args(["-m", "gunicorn", "--name", name, "--chdir"])
            .arg(dir)
            .args(["--workers", &workers.to_string(), "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("app:app")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(20));
    (guard, port)
}

/// A TCP port that accepts connections (the kernel completes the handshake into the backlog) and
/// never says a word: a server that hangs.
pub struct SilentListener {
    listener: TcpListener,
    pub port: u16,
}

impl SilentListener {
    pub fn start() -> SilentListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        SilentListener { listener, port }
    }
}

/// A real Alertmanager (Debian's binary) with `config`, keeping its state in `storage`, alone (no
/// cluster) on a free port: the guard that stops it and the port.
pub fn start_alertmanager(config: &Path, storage: &Path) -> (Guard, u16) {
    start_alertmanager_with(config, storage, &["--cluster.listen-address=".to_string()])
}

/// A real Alertmanager that gossips on `cluster_port` (127.0.0.1) with the members listening on
/// `peers`, as one member of an HA pair would run (docs/alerting.md#alertmanager-in-ha).
pub fn start_alertmanager_member(
    config: &Path,
    storage: &Path,
    cluster_port: u16,
    peers: &[u16],
) -> (Guard, u16) {
    let mut cluster = vec![format!("--cluster.listen-address=127.0.0.1:{cluster_port}")];
    cluster.extend(
        peers
            .iter()
            .map(|p| format!("--cluster.peer=127.0.0.1:{p}")),
    );
    start_alertmanager_with(config, storage, &cluster)
}

fn start_alertmanager_with(config: &Path, storage: &Path, cluster: &[String]) -> (Guard, u16) {
    let alertmanager = require(
        "prometheus-alertmanager",
        "apt-get install prometheus-alertmanager",
    );
    let port = free_port();
    let guard = Guard::spawn(
        Command::new(alertmanager)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(cluster)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    (guard, port)
}

/// A real Prometheus (Debian's binary) run in `dir` with `dir/prometheus.yml` (relative paths in
/// it are relative to `dir`) and its TSDB in `dir/tsdb`, on a free port: the guard that stops it
/// and the port, once it listens.
pub fn start_prometheus(dir: &Path) -> (Guard, u16) {
    let prometheus = require("prometheus", "apt-get install prometheus");
    let port = free_port();
    let guard = Guard::spawn(
        Command::new(prometheus)
            .arg("--config.file=prometheus.yml")
            .arg("--storage.tsdb.path=tsdb")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(30));
    (guard, port)
}

/// The answer of the Prometheus on `port` to the instant query `promql`; None until it is ready.
pub fn prometheus_query(port: u16, promql: &str) -> Option<serde_json::Value> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
            b => format!("%{b:02X}"),
        })
        .collect();
    let path = format!("/api/v1/query?query={encoded}");
    let (status, _, body) = super::http_get(port, &path, &[]);
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// A file holding `password` (as a secret mounted by a container would), in `dir`.
pub fn password_file(dir: &Path, password: &str) -> PathBuf {
    let path = dir.join("password");
    std::fs::write(&path, format!("{password}\n")).unwrap();
    path
}

// ---------------------------------------------------------------------------------------- Redis

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    guard: Option<Guard>,
    binary: PathBuf,
    /// Arguments after the defaults, which they override (`--maxclients 3`).
    extra: Vec<String>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// A server started with `extra` arguments after the defaults (the last of each wins).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let binary = require("redis-server", "apt-get install redis-server");
        require("redis-cli", "apt-get install redis-tools");
        let mut server = RedisServer {
            port: free_port(),
            dir: super::temp_dir(),
            guard: None,
            binary,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        server.start_again();
        server
    }

    /// Starts the server (again) on its port.
    pub fn start_again(&mut self) {
        assert!(self.guard.is_none(), "redis is already running");
        let guard = Guard::spawn(
            Command::new(&self.binary)
                .args(["--port", &self.port.to_string()])
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .args(&self.extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        self.guard = Some(guard);
        wait_for("redis to answer PING", Duration::from_secs(10), || {
            self.try_cli(&["PING"]).is_some_and(|o| o.trim() == "PONG")
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            guard.kill();
        }
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs one command as the default user; its raw output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// --------------------------------------------------------------------------------------- Celery

/// Writes the tests' Celery app, `tasks.py` in `dir`, on the Redis at `redis_port` (its default
/// queue `celery`). Its one task, `tasks.count`, adds 1 to the Redis key `tasks_done`, so a test
/// can see the worker consume.
pub fn write_celery_app(dir: &Path, redis_port: u16) {
    super::write(
        &dir.join("tasks.py"),
        &format!(
            "import redis\nfrom celery import Celery\n\n\
             BROKER = 'redis://127.0.0.1:{redis_port}/0'\n\
             app = Celery('tasks', broker=BROKER)\n\
             done = redis.Redis.from_url(BROKER)\n\n\
             @app.task\ndef count():\n    done.incr('tasks_done')\n"
        ),
    );
}

/// `python3 -m celery -A tasks ARGS` in `dir`, where [`write_celery_app`] wrote the app.
pub fn start_celery(dir: &Path, args: &[&str]) -> Guard {
    require("python3", "apt-get install python3");
    Guard::spawn(
        Command::new("python3")
            .args(["-m", "celery", "-A", "tasks"])
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// The user a database server runs as: this one, or `nobody` when the tests run as root (postgres
/// refuses to run as root).
fn unprivileged_ids() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("nobody:"))
        .expect("running as root needs a `nobody` user to run postgres as");
    let fields: Vec<&str> = line.split(':').collect();
    Some((fields[2].parse().unwrap(), fields[3].parse().unwrap()))
}

fn chown_tree(path: &Path, ids: (u32, u32)) {
    std::os::unix::fs::chown(path, Some(ids.0), Some(ids.1)).unwrap();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            chown_tree(&entry.unwrap().path(), ids);
        }
    }
}

fn as_user(command: &mut Command, ids: Option<(u32, u32)>) -> &mut Command {
    use std::os::unix::process::CommandExt;
    if let Some((uid, gid)) = ids {
        command.uid(uid).gid(gid).env("HOME", "/tmp");
    }
    command
}

/// Asks a server started by a Guard to shut down cleanly (SIGINT is PostgreSQL's fast shutdown,
/// SIGTERM MariaDB's) and waits for it; SIGKILL after 20 s.
fn shut_down(guard: &mut Guard, signal: i32) {
    // SAFETY: kill with a pid we own.
    unsafe {
        libc::kill(guard.pid() as i32, signal);
    }
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(Some(_)) = guard.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    guard.kill();
}

// ----------------------------------------------------------------------------------- PostgreSQL

pub struct PostgresServer {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    ids: Option<(u32, u32)>,
    guard: Option<Guard>,
}

fn postgres_bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("postgres").is_file())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    match found.pop() {
        Some(bin) => bin,
        None => require("postgres", "apt-get install postgresql postgresql-contrib")
            .parent()
            .unwrap()
            .to_path_buf(),
    }
}

impl PostgresServer {
    /// A fresh cluster: local (socket) connections trusted, TCP needs a password (scram), and
    /// pg_stat_statements preloaded.
    pub fn start() -> PostgresServer {
        let mut server = PostgresServer::init();
        server.start_again();
        server
    }

    /// A fresh cluster as [`PostgresServer::start`] with `ssl = on` (the certificate and key
    /// given) and TCP allowed over TLS only (`hostssl`), as RDS with `rds.force_ssl`.
    pub fn start_with_tls(cert: &Path, key: &Path) -> PostgresServer {
        let mut server = PostgresServer::init();
        let data = server.dir.path().join("data");
        for (from, to) in [(cert, "server.crt"), (key, "server.key")] {
            let to = data.join(to);
            std::fs::copy(from, &to).unwrap();
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            if let Some(ids) = server.ids {
                chown_tree(&to, ids);
            }
        }
        let hba = data.join("pg_hba.conf");
        let text = std::fs::read_to_string(&hba).unwrap();
        let tls_only: String = text
            .lines()
            .map(|l| match l.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{l}\n"),
            })
            .collect();
        std::fs::write(&hba, tls_only).unwrap();
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\n");
        std::fs::write(&conf, text).unwrap();
        server.start_again();
        server
    }

    /// initdb into a temp dir; not started.
    fn init() -> PostgresServer {
        let bin = postgres_bin_dir();
        let ids = unprivileged_ids();
        let dir = super::temp_dir();
        if let Some(ids) = ids {
            chown_tree(dir.path(), ids);
        }
        let data = dir.path().join("data");
        run(as_user(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args([
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ])
                .args(["--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C"]),
            ids,
        ));
        PostgresServer {
            port: free_port(),
            dir,
            bin,
            ids,
            guard: None,
        }
    }

    pub fn start_again(&mut self) {
        assert!(self.guard.is_none(), "postgres is already running");
        let log = std::fs::File::create(self.dir.path().join("postgres.log")).unwrap();
        if let Some(ids) = self.ids {
            chown_tree(&self.dir.path().join("postgres.log"), ids);
        }
        let guard = Guard::spawn(as_user(
            Command::new(self.bin.join("postgres"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .args(["-p", &self.port.to_string(), "-k"])
                .arg(self.dir.path())
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args(["-c", "shared_preload_libraries=pg_stat_statements"])
                .args(["-c", "fsync=off", "-c", "max_connections=40"])
                .stdout(Stdio::null())
                .stderr(log),
            self.ids,
        ));
        self.guard = Some(guard);
        wait_for(
            "postgres to accept queries",
            Duration::from_secs(20),
            || self.try_psql("postgres", "SELECT 1").is_some(),
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            shut_down(&mut guard, libc::SIGINT);
        }
    }

    /// A psql command line as the superuser over the socket; add `-c SQL` or stdin.
    pub fn psql_command(&self, database: &str) -> Command {
        let mut command = Command::new(self.bin.join("psql"));
        command
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"]);
        as_user(&mut command, self.ids);
        command
    }

    fn try_psql(&self, database: &str, sql: &str) -> Option<String> {
        let output = self
            .psql_command(database)
            .args(["-c", sql])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Runs SQL as the superuser; its output, unaligned, tuples only.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let output = run(self.psql_command(database).args(["-c", sql]));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// -------------------------------------------------------------------------------------- MariaDB

pub struct MariadbServer {
    pub port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
    guard: Option<Guard>,
    /// Options after the defaults, which they override (`--max-connections=10`).
    extra: Vec<String>,
}

impl MariadbServer {
    /// A fresh datadir; root logs in over the socket without a password, TCP users need one.
    /// performance_schema is on (MariaDB's default is off) so statement latency can be checked.
    pub fn start() -> MariadbServer {
        MariadbServer::start_with(&[])
    }

    /// A fresh server started with `extra` options after the defaults (the last of each wins).
    pub fn start_with(extra: &[&str]) -> MariadbServer {
        let install = require("mariadb-install-db", "apt-get install mariadb-server");
        let binary = require("mariadbd", "apt-get install mariadb-server");
        require("mariadb", "apt-get install mariadb-client");
        let dir = super::temp_dir();
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| {
                // SAFETY: geteuid has no preconditions.
                if unsafe { libc::geteuid() } == 0 {
                    "root".into()
                } else {
                    "nobody".into()
                }
            });
        // Temporary tables in a directory of this server's own: in the shared /tmp, the
        // bootstraps of servers started side by side by other tests lost theirs (ENOENT).
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        run(Command::new(install)
            .arg("--no-defaults")
            .arg("--auth-root-authentication-method=normal")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .arg(format!("--tmpdir={}", dir.path().join("tmp").display()))
            .arg(format!("--user={user}"))
            .args(["--skip-test-db", "--skip-name-resolve"]));
        let mut server = MariadbServer {
            port: free_port(),
            dir,
            binary,
            guard: None,
            extra: extra.iter().map(|a| a.to_string()).collect(),
        };
        server.start_again();
        server
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    pub fn start_again(&mut self) {
        assert!(self.guard.is_none(), "mariadbd is already running");
        let dir = self.dir.path();
        let mut command = Command::new(&self.binary);
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", dir.join("error.log").display()))
            .arg(format!("--port={}", self.port))
            .args(["--bind-address=127.0.0.1", "--skip-name-resolve"])
            .args(["--performance-schema=ON", "--innodb-buffer-pool-size=32M"])
            .args([
                "--innodb-log-file-size=8M",
                "--skip-log-bin",
                "--max-connections=60",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            command.arg("--user=root");
        }
        self.guard = Some(Guard::spawn(&mut command));
        wait_for_port(self.port, Duration::from_secs(30));
        wait_for("mariadbd to answer", Duration::from_secs(30), || {
            self.try_sql("SELECT 1").is_some()
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            shut_down(&mut guard, libc::SIGTERM);
        }
    }

    /// The mariadb client as root over the socket; add `-e SQL` or stdin.
    pub fn client_command(&self) -> Command {
        let mut command = Command::new("mariadb");
        command
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args(["-uroot", "--batch", "--skip-column-names"]);
        command
    }

    fn try_sql(&self, sql: &str) -> Option<String> {
        let output = self
            .client_command()
            .args(["-e", sql])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Runs SQL as root; its output, tab-separated, without column names.
    pub fn sql(&self, sql: &str) -> String {
        let output = run(self.client_command().args(["-e", sql]));
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }
}

impl Drop for MariadbServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// ------------------------------------------------------------- users and the shared scenario

/// The password of the `monitor` user every server gets.
pub const GOOD_PASSWORD: &str = "Mon1tor-Pass-7731";
/// The password of `envmon`, the user of the `STACK_*_URL` target.
pub const ENV_PASSWORD: &str = "Env-Pass-5519";
/// A password no user has.
pub const WRONG_PASSWORD: &str = "Wr0ng-Pass-4402";
/// The password of `narrow`, a user without the grants that some figures need.
pub const NARROW_PASSWORD: &str = "Narrow-Pass-5151";

impl MariadbServer {
    /// `monitor` and `envmon` with the documented least privileges plus SELECT on the
    /// application schema `shop` (for its size); `narrow` with PROCESS only.
    pub fn create_monitoring_users(&self) {
        self.sql("CREATE DATABASE shop");
        for (user, password) in [("monitor", GOOD_PASSWORD), ("envmon", ENV_PASSWORD)] {
            self.sql(&format!(
                "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}'; \
                 GRANT PROCESS, REPLICATION CLIENT, SLAVE MONITOR ON *.* TO '{user}'@'127.0.0.1'; \
                 GRANT SELECT ON performance_schema.* TO '{user}'@'127.0.0.1'; \
                 GRANT SELECT ON shop.* TO '{user}'@'127.0.0.1';"
            ));
        }
        self.sql(&format!(
            "CREATE USER 'narrow'@'127.0.0.1' IDENTIFIED BY '{NARROW_PASSWORD}'; \
             GRANT PROCESS ON *.* TO 'narrow'@'127.0.0.1';"
        ));
    }
}

impl PostgresServer {
    /// `monitor` and `envmon` in pg_monitor, `narrow` without it, and pg_stat_statements.
    pub fn create_monitoring_roles(&self) {
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE monitor LOGIN PASSWORD '{GOOD_PASSWORD}' IN ROLE pg_monitor; \
                 CREATE ROLE envmon LOGIN PASSWORD '{ENV_PASSWORD}' IN ROLE pg_monitor; \
                 CREATE ROLE narrow LOGIN PASSWORD '{NARROW_PASSWORD}'; \
                 CREATE EXTENSION pg_stat_statements;"
            ),
        );
    }
}

impl RedisServer {
    /// The documented least-privilege ACL users `monitor` and `envmon` (keys `celery*` only).
    /// Redis forgets them when it restarts.
    pub fn create_monitoring_users(&self) {
        for (user, password) in [("monitor", GOOD_PASSWORD), ("envmon", ENV_PASSWORD)] {
            let pass = format!(">{password}");
            let out = self.cli(&[
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
}

/// A throwaway server as the shared scenario drives it.
pub trait DbServer {
    /// The config section, the `STACK_…_URL` variable's kind and the metric prefix.
    const KIND: &'static str;
    fn port(&self) -> u16;
    /// The URL of `user` (with `password`, if given) on `port`.
    fn url(user: &str, password: Option<&str>, port: u16) -> String;
    /// Stops the server; its data stays.
    fn stop(&mut self);
    /// Starts it again on the same port, its users as before.
    fn start_again(&mut self);
}

fn userinfo(user: &str, password: Option<&str>) -> String {
    match password {
        Some(p) => format!("{user}:{p}"),
        None => user.to_string(),
    }
}

impl DbServer for MariadbServer {
    const KIND: &'static str = "mysql";
    fn port(&self) -> u16 {
        self.port
    }
    fn url(user: &str, password: Option<&str>, port: u16) -> String {
        format!("mysql://{}@127.0.0.1:{port}/", userinfo(user, password))
    }
    fn stop(&mut self) {
        MariadbServer::stop(self)
    }
    fn start_again(&mut self) {
        MariadbServer::start_again(self)
    }
}

impl DbServer for PostgresServer {
    const KIND: &'static str = "postgres";
    fn port(&self) -> u16 {
        self.port
    }
    fn url(user: &str, password: Option<&str>, port: u16) -> String {
        format!(
            "postgres://{}@127.0.0.1:{port}/postgres",
            userinfo(user, password)
        )
    }
    fn stop(&mut self) {
        PostgresServer::stop(self)
    }
    fn start_again(&mut self) {
        PostgresServer::start_again(self)
    }
}

impl DbServer for RedisServer {
    const KIND: &'static str = "redis";
    fn port(&self) -> u16 {
        self.port
    }
    fn url(user: &str, password: Option<&str>, port: u16) -> String {
        format!("redis://{}@127.0.0.1:{port}/0", userinfo(user, password))
    }
    fn stop(&mut self) {
        RedisServer::stop(self)
    }
    fn start_again(&mut self) {
        RedisServer::start_again(self);
        self.create_monitoring_users();
    }
}

/// The scenario every database collector passes against its real server: targets `main`
/// (`monitor`, its password in a file), `badpass` (a wrong password), `hang` (a port that never
/// answers) and `default` (`envmon`, from `STACK_…_URL`); up where it should be and quickly; a
/// server stopped mid-run is `up 0` in time with the rest of /metrics intact, and reconnected by
/// itself when back; the bad password is one warning, and no password is ever logged or served.
pub struct Scenario {
    pub exporter: super::Exporter,
    _dir: tempfile::TempDir,
    _silent: SilentListener,
}

/// A scrape's `up` of `target` for the collector of kind `S`.
pub fn up<S: DbServer>(text: &str, target: &str) -> f64 {
    super::must(
        text,
        &format!("stack_{}_up", S::KIND),
        &[("target", target)],
    )
}

/// How long a scrape may take although a target hangs (its timeout is 500 ms).
const QUICK: Duration = Duration::from_millis(2500);

/// The config of the target `main`: the monitoring user on `port`, its password from a file
/// written in `dir`, and `extra` lines.
fn main_target<S: DbServer>(port: u16, dir: &Path, extra: &str) -> String {
    let secret = password_file(dir, GOOD_PASSWORD);
    let url = S::url("monitor", None, port);
    format!(
        "[[{kind}]]\nname = \"main\"\nurl = \"{url}\"\npassword_file = {secret:?}\n{extra}\n",
        kind = S::KIND
    )
}

impl Scenario {
    /// Starts the exporter on `server` (already holding the monitoring users) with `main_extra`
    /// config lines for `main`, and checks the first scrape.
    pub fn start<S: DbServer>(server: &S, main_extra: &str) -> Scenario {
        let dir = super::temp_dir();
        let silent = SilentListener::start();
        let (kind, port) = (S::KIND, server.port());
        let config = dir.path().join("stack.toml");
        super::write(
            &config,
            &format!(
                "{main}\n\
                 [[{kind}]]\nname = \"badpass\"\nurl = \"{badpass}\"\n\n\
                 [[{kind}]]\nname = \"hang\"\nurl = \"{hang}\"\ntimeout = \"500ms\"\n",
                main = main_target::<S>(port, dir.path(), main_extra),
                badpass = S::url("monitor", Some(WRONG_PASSWORD), port),
                hang = S::url("monitor", None, silent.port),
            ),
        );
        let env_var = format!("STACK_{}_URL", kind.to_uppercase());
        let exporter = super::Exporter::start_with_env(
            &[&format!("--config.file={}", config.display())],
            &[(&env_var, &S::url("envmon", Some(ENV_PASSWORD), port))],
        );
        let (text, took) = exporter.scrape_timed();
        assert!(took < QUICK, "scrape took {took:?}");
        assert_eq!(up::<S>(&text, "main"), 1.0);
        assert_eq!(up::<S>(&text, "default"), 1.0);
        assert_eq!(up::<S>(&text, "badpass"), 0.0);
        assert_eq!(up::<S>(&text, "hang"), 0.0);
        let success = [("collector", kind)];
        assert_eq!(
            super::must(&text, "stack_scrape_collector_success", &success),
            1.0
        );
        super::must(&text, "stack_host_memory_total_bytes", &[]);
        Scenario {
            exporter,
            _dir: dir,
            _silent: silent,
        }
    }

    /// Stops `server` mid-run: `up 0` within the timeout, `figure` of `main` gone and the rest of
    /// /metrics intact. Then starts it again: the next scrape reconnects by itself.
    pub fn outage<S: DbServer>(&self, server: &mut S, figure: &str) {
        server.stop();
        let (text, took) = self.exporter.scrape_timed();
        assert!(took < QUICK, "scrape took {took:?}");
        assert_eq!(up::<S>(&text, "main"), 0.0);
        assert_eq!(super::metric(&text, figure, &[("target", "main")]), None);
        super::must(&text, "stack_host_memory_total_bytes", &[]);

        server.start_again();
        let text = self.exporter.scrape();
        assert_eq!(up::<S>(&text, "main"), 1.0);
        assert_eq!(up::<S>(&text, "default"), 1.0);
    }

    /// The bad password is a warning naming `badpass` and saying `why`; no password appears in
    /// the log or in /metrics.
    pub fn check_log(&self, why: &str) {
        let text = self.exporter.scrape();
        let log = self.exporter.log();
        eprintln!("exporter log:\n{log}");
        assert!(
            log.lines()
                .any(|l| l.contains("level=warn") && l.contains("badpass") && l.contains(why)),
            "no warning for the bad password:\n{log}"
        );
        for secret in [GOOD_PASSWORD, ENV_PASSWORD, WRONG_PASSWORD, NARROW_PASSWORD] {
            assert!(!log.contains(secret), "the log shows a password:\n{log}");
            assert!(!text.contains(secret), "/metrics shows a password");
        }
    }
}

/// Copies the shipped rules/ into `into` with every `for:` shortened to 0s, so that a live test
/// sees the wiring in seconds (the durations are promtool's to test, tests/rules/).
pub fn rules_firing_at_once(into: &Path) {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    std::fs::create_dir_all(into).unwrap();
    for entry in std::fs::read_dir(rules).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let fast: String = text
                .lines()
                .map(|line| match line.trim_start().strip_prefix("for:") {
                    Some(_) => {
                        format!("{}for: 0s\n", &line[..line.len() - line.trim_start().len()])
                    }
                    None => format!("{line}\n"),
                })
                .collect();
            std::fs::write(into.join(path.file_name().unwrap()), fast).unwrap();
        }
    }
}

/// A real Prometheus in `dir` (config, TSDB) scraping the exporters on `targets` every second as
/// job `stack`, evaluating the rules of `dir/rules/*.yml` every second and sending to the
/// Alertmanager on `alertmanager`, if any: the guard that stops it and its port, once it listens.
pub fn start_prometheus_scraping(
    dir: &Path,
    targets: &[u16],
    alertmanager: Option<u16>,
) -> (Guard, u16) {
    let targets: Vec<String> = targets.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    let alerting = alertmanager
        .map(|port| {
            format!("alerting: {{ alertmanagers: [ {{ static_configs: [ {{ targets: ['127.0.0.1:{port}'] }} ] }} ] }}\n")
        })
        .unwrap_or_default();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: ['rules/*.yml']\n\
             {alerting}\
             scrape_configs:\n  - job_name: stack\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    start_prometheus(dir)
}

/// The alerts Prometheus evaluates as firing, as (alert name, labels) pairs.
pub fn firing_alerts(prom_port: u16) -> Vec<(String, serde_json::Value)> {
    let (status, _, body) = super::http_get(prom_port, "/api/v1/alerts", &[]);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["state"] == "firing")
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap().to_string(),
                a["labels"].clone(),
            )
        })
        .collect()
}

/// Whether `alert` fires with every label of `want`.
pub fn fires(prom_port: u16, alert: &str, want: &[(&str, &str)]) -> bool {
    firing_alerts(prom_port)
        .iter()
        .any(|(name, labels)| name == alert && want.iter().all(|(k, v)| labels[*k] == *v))
}

/// The slow answers (database sizes) of `server` are kept for `slow_interval` (4 s here). The
/// round that finds them that old still publishes the kept ones, and fetches them again after it
/// in a task of its own; a later scrape has them. `grow` makes `database` bigger right after the
/// first scrape, so kept and fetched sizes differ.
pub fn slow_answers_are_fetched_after_the_round_that_finds_them_due<S: DbServer>(
    server: &S,
    database: &str,
    grow: impl FnOnce(),
) {
    const INTERVAL: f64 = 4.0;
    let dir = super::temp_dir();
    let kind = S::KIND;
    let config = dir.path().join("stack.toml");
    let extra = format!("slow_interval = \"{INTERVAL}s\"");
    super::write(
        &config,
        &main_target::<S>(server.port(), dir.path(), &extra),
    );
    let exporter = super::Exporter::start(&[&format!("--config.file={}", config.display())]);
    let name = format!("stack_{kind}_database_size_bytes");
    let labels = [("target", "main"), ("database", database)];
    let size = |text: &str| super::must(text, &name, &labels);
    let text = exporter.scrape();
    let fetched = Instant::now(); // the sizes were fetched before this
    let before = size(&text);
    grow();
    assert!(
        fetched.elapsed().as_secs_f64() < INTERVAL / 2.0,
        "too slow a machine"
    );
    assert_eq!(
        size(&exporter.scrape()),
        before,
        "kept while younger than slow_interval"
    );

    // Surely due (they were fetched before `fetched`), and no scrape in between: this one finds
    // them due, publishes them once more and has them fetched after it.
    std::thread::sleep(Duration::from_secs_f64(INTERVAL + 0.2).saturating_sub(fetched.elapsed()));
    assert_eq!(
        size(&exporter.scrape()),
        before,
        "the round that finds them due publishes the kept ones"
    );
    let mut now = before;
    super::wait_for("the sizes fetched again", Duration::from_secs(30), || {
        now = size(&exporter.scrape());
        now != before
    });
    assert!(now > before, "{database}: {before} -> {now}");
}
