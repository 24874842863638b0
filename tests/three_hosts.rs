//! Issue 12, the plan's three-server production (H4) for real, on one machine: three network
//! namespaces joined to the root namespace by veth links stand for the app, DB and cache
//! servers, joined to each other by a bridge (their own network). In each runs a stack_exporter with its role's profile beside a real service process
//! (Gunicorn on app, a process matched as PostgreSQL on db, redis-server on cache). One real
//! Prometheus in the root namespace runs the shipped prometheus/prometheus-h4.yml, its file-based
//! discovery (prometheus/targets/*.yml) rendered with the namespaces' addresses, and sends to two
//! real Alertmanagers clustered as docs/alerting.md ships them, which post to a webhook here.
//!
//! Checked: every alert names its server (instance and role); a per-process memory budget too
//! small for the DB server's PostgreSQL fires for that server only; the plan's "no memory left
//! for the OS" holds per role (db and cache, not app); and the cache server's Redis stopped pages
//! A5 for the cache server only, once at the receiver although both Alertmanagers hold the alert.
//! Across servers: the app server's exporter reaches that Redis over the servers' network
//! (stack_redis_up{role="app", target="cache"}), and sees it go.
//!
//! Shortened, in a copy of rules/: `for: 2m` and `for: 15m` become `for: 30s`; every interval and
//! route stays as shipped. Needs root (`ip netns`); the test fails, not skips, without it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::servers::{prometheus_query, start_alertmanager_member, start_prometheus};
use common::{
    exporter_binary, free_port, http_get, require, temp_dir, wait_for, wait_for_port, webhook,
    write, Guard, Received,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const EXPORTER_PORT: u16 = 9488;

// ---- three hosts: network namespaces with veth links ------------------------------------------

/// One server of H4: its role, its namespace and the address the root namespace reaches it at.
struct Host {
    role: &'static str,
    netns: String,
    address: String,
    /// Its address on the servers' own network (the bridge in `Hosts::lan`).
    lan_address: String,
}

impl Host {
    fn instance(&self) -> String {
        format!("{}:{EXPORTER_PORT}", self.address)
    }

    /// `program args` run inside this host's namespace (ip netns exec execs it: same pid).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns]).arg(program);
        command
    }
}

/// The namespaces (and, with them, the veth links) this test made, removed when dropped: the
/// three servers and `lan`, a namespace holding the bridge that joins them to each other (the
/// app server reaches the cache server's Redis there, as in production, without routing through
/// the root namespace).
struct Hosts {
    hosts: Vec<Host>,
    lan: Option<String>,
}

const NETNS_HINT: &str = "this test makes network namespaces (`ip netns add`) and veth links: \
    run it as root (scripts/test.sh does), in a container with --privileged (or CAP_SYS_ADMIN \
    and CAP_NET_ADMIN), with iproute2 installed (apt-get install iproute2)";

fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip`: {e}; {NETNS_HINT}"));
    assert!(
        output.status.success(),
        "`ip {}` failed: {}; {NETNS_HINT}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

impl Hosts {
    /// The app, db and cache hosts, each at 10.N.i.2 behind a veth pair whose root end is
    /// 10.N.i.1, and at 10.N.100.i on their own bridged network.
    fn create() -> Hosts {
        require("ip", "apt-get install iproute2");
        let pid = std::process::id();
        let subnet = 100 + pid % 150;
        let mut made = Hosts {
            hosts: Vec::new(),
            lan: None,
        };
        for (i, role) in ["app", "db", "cache"].into_iter().enumerate() {
            let netns = format!("stack-test-{pid}-{role}");
            let (outer, inner) = (format!("stk{}{role}", pid % 100_000), "eth0");
            ip(&["netns", "add", &netns]);
            made.hosts.push(Host {
                role,
                netns: netns.clone(),
                address: format!("10.{subnet}.{}.2", i + 1),
                lan_address: format!("10.{subnet}.100.{}", i + 1),
            });
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", inner, "netns", &netns,
            ]);
            ip(&[
                "addr",
                "add",
                &format!("10.{subnet}.{}.1/24", i + 1),
                "dev",
                &outer,
            ]);
            ip(&["link", "set", &outer, "up"]);
            let address = format!("{}/24", made.hosts[i].address);
            ip(&["-n", &netns, "addr", "add", &address, "dev", inner]);
            ip(&["-n", &netns, "link", "set", inner, "up"]);
            ip(&["-n", &netns, "link", "set", "lo", "up"]);
        }
        made.join_on_a_bridge(&format!("stack-test-{pid}-lan"));
        made
    }

    /// A bridge in the namespace `lan`, and a veth from each host (its `lan0`) to it.
    fn join_on_a_bridge(&mut self, lan: &str) {
        ip(&["netns", "add", lan]);
        self.lan = Some(lan.to_string());
        ip(&["-n", lan, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", lan, "link", "set", "br0", "up"]);
        for host in &self.hosts {
            let port = format!("to-{}", host.role);
            ip(&[
                "-n",
                &host.netns,
                "link",
                "add",
                "lan0",
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                lan,
            ]);
            ip(&["-n", lan, "link", "set", &port, "master", "br0", "up"]);
            let address = format!("{}/24", host.lan_address);
            ip(&["-n", &host.netns, "addr", "add", &address, "dev", "lan0"]);
            ip(&["-n", &host.netns, "link", "set", "lan0", "up"]);
        }
    }

    fn get(&self, role: &str) -> &Host {
        self.hosts.iter().find(|h| h.role == role).unwrap()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // Removing a namespace removes its end of the veth pair, and with it the root end.
        let names = self.hosts.iter().map(|h| &h.netns).chain(&self.lan);
        for netns in names {
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
        }
    }
}

// ---- what runs on each host -------------------------------------------------------------------

/// The exporter of `host` with `config`, listening on the host's address: its guard, once the
/// root namespace can scrape it. Its log goes to `log`.
fn start_exporter(host: &Host, config: &Path, log: &Path) -> Guard {
    let guard = Guard::spawn(
        host.command(exporter_binary())
            .arg(format!("--web.listen-address={}", host.instance()))
            .arg(format!("--config.file={}", config.display()))
            // The machine's own OOM kills and mounts are not this test's (as tests/paging.rs).
            .args(["--no-collector.host", "--no-collector.filesystem"])
            .env_remove("STACK_MYSQL_URL")
            .env_remove("STACK_POSTGRES_URL")
            .env_remove("STACK_REDIS_URL")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap()),
    );
    let address: std::net::SocketAddr = host.instance().parse().unwrap();
    wait_for(
        &format!("the {} exporter at {address}", host.role),
        Duration::from_secs(20),
        || std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok(),
    );
    guard
}

/// The services every config here leaves out: a matcher nothing fits, no instance planned. All
/// three exporters see every process of the machine (one /proc), so each names only its own.
fn not_here(services: &[&str]) -> String {
    services
        .iter()
        .map(|s| {
            format!("[services.{s}]\ninstances = 0\nmatch = [{{ comm = 'no-such-process' }}]\n")
        })
        .collect()
}

/// `profile = "production-ROLE"`, `own` (the service running here), and every other built-in
/// service left out. The monitoring stack (all exporters, Prometheus, the Alertmanagers) runs on
/// this one machine, so it is left out too.
fn host_config(dir: &Path, role: &str, own: &str, own_section: &str) -> PathBuf {
    let others: Vec<&str> = common::BUILT_IN_SERVICES
        .into_iter()
        .filter(|s| *s != own)
        .collect();
    let path = dir.join(format!("{role}.toml"));
    write(
        &path,
        &format!(
            "profile = \"production-{role}\"\n{own_section}{}\
             [services.monitoring]\nmatch = [{{ comm = 'no-such-process' }}]\n",
            not_here(&others)
        ),
    );
    path
}

const WSGI_APP: &str = "def app(environ, start_response):\n    \
    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'ok']\n";

/// A Gunicorn named `name` in `host`, on its port 8000.
fn start_gunicorn(host: &Host, dir: &Path, name: &str) -> Guard {
    require("python3", "apt-get install python3");
    write(&dir.join("app.py"), WSGI_APP);
    Guard::spawn(
        host.command("python3")
            .args([
                "-m",
                "gunicorn",
                "--name",
                name,
                "--workers",
                "1",
                "--chdir",
            ])
            .arg(dir)
            .args(["--bind", "127.0.0.1:8000", "app:app"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// A stand-in for PostgreSQL in `host`: `sleep` copied as `dir/postgres` (its kernel name is
/// `postgres`), small enough that any real budget holds it.
fn start_postgres_stand_in(host: &Host, dir: &Path) -> Guard {
    let binary = dir.join("postgres");
    std::fs::copy(require("sleep", "apt-get install coreutils"), &binary).unwrap();
    Guard::spawn(
        host.command(&binary)
            .arg("100000")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// A redis-server in `host` on `port` of 127.0.0.1 (for its own exporter) and of the host's LAN
/// address (for the app server's).
fn start_redis(host: &Host, port: u16) -> Guard {
    let redis = require("redis-server", "apt-get install redis-server");
    let guard = Guard::spawn(
        host.command(redis)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                &host.lan_address,
            ])
            .args(["--protected-mode", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for("redis in its namespace", Duration::from_secs(10), || {
        host.command("redis-cli")
            .args(["-p", &port.to_string(), "PING"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
    });
    guard
}

// ---- the monitoring: shipped configs rendered with this test's addresses ------------------------

/// `text` with `from` replaced by `to`, failing if the shipped file no longer says `from`.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the shipped file no longer has {from:?}"
    );
    text.replace(from, to)
}

/// rules/ into `into`, `for: 2m` and `for: 15m` as `for: 30s`.
fn rules_copy(into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    for entry in std::fs::read_dir(Path::new(ROOT).join("rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let short = text
                .replace("for: 2m\n", "for: 30s\n")
                .replace("for: 15m\n", "for: 30s\n");
            write(&into.join(path.file_name().unwrap()), &short);
        }
    }
}

/// prometheus/prometheus-h4.yml and prometheus/targets/ in `dir`, with the hosts' addresses,
/// the rules copy and the two Alertmanagers on `am_ports`.
fn prometheus_h4(dir: &Path, hosts: &Hosts, am_ports: [u16; 2]) {
    let shipped =
        std::fs::read_to_string(Path::new(ROOT).join("prometheus/prometheus-h4.yml")).unwrap();
    let alertmanagers = format!(
        "[\"127.0.0.1:{}\", \"127.0.0.1:{}\"]",
        am_ports[0], am_ports[1]
    );
    let config = replaced(
        &shipped,
        "[\"production-app:9093\", \"production-app:9095\"]",
        &alertmanagers,
    );
    let config = replaced(&config, "../rules/*.yml", "rules/*.yml");
    write(&dir.join("prometheus.yml"), &config);
    rules_copy(&dir.join("rules"));
    std::fs::create_dir_all(dir.join("targets")).unwrap();
    for host in &hosts.hosts {
        let file = format!("production-{}.yml", host.role);
        let shipped =
            std::fs::read_to_string(Path::new(ROOT).join("prometheus/targets").join(&file))
                .unwrap();
        let from = format!("production-{}:{EXPORTER_PORT}", host.role);
        let text = replaced(&shipped, &from, &host.instance());
        assert!(text.contains(&format!("role: {}", host.role)));
        write(&dir.join("targets").join(file), &text);
    }
}

/// The shipped alertmanager/alertmanager.yml, posting to the webhook on `hook_port`.
fn alertmanager_config(path: &Path, hook_port: u16) {
    let shipped =
        std::fs::read_to_string(Path::new(ROOT).join("alertmanager/alertmanager.yml")).unwrap();
    let own = format!("url: http://127.0.0.1:{hook_port}/alerts");
    write(
        path,
        &replaced(&shipped, "url: http://127.0.0.1:5001/alerts", &own),
    );
}

/// The labels of each alert `name` Prometheus evaluates as firing.
fn firing(prom_port: u16, name: &str) -> Vec<serde_json::Value> {
    common::servers::firing_alerts(prom_port)
        .into_iter()
        .filter(|(n, _)| n == name)
        .map(|(_, labels)| labels)
        .collect()
}

/// (instance, role, service) of each labels set.
fn who(alerts: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = alerts
        .iter()
        .map(|l| {
            let get = |k: &str| l[k].as_str().unwrap_or("").to_string();
            (get("instance"), get("role"), get("service"))
        })
        .collect();
    out.sort();
    out
}

/// Webhook posts with a firing `alertname`, as the (instance, role, service) of each alert in them.
fn notified(received: &Received, alertname: &str) -> Vec<Vec<(String, String, String)>> {
    received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| {
            let alerts: Vec<serde_json::Value> = body["alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["labels"]["alertname"] == alertname && a["status"] == "firing")
                .map(|a| a["labels"].clone())
                .collect();
            who(&alerts)
        })
        .filter(|alerts| !alerts.is_empty())
        .collect()
}

/// Does the Alertmanager on `port` hold an active `alertname` for `instance`?
fn holds(port: u16, alertname: &str, instance: &str) -> bool {
    let (status, _, body) = http_get(port, "/api/v2/alerts", &[]);
    let alerts: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    status == 200
        && alerts
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["labels"]["alertname"] == alertname && a["labels"]["instance"] == instance)
}

/// The members the Alertmanager on `port` sees in its cluster.
fn cluster_members(port: u16) -> usize {
    let (_, _, body) = http_get(port, "/api/v2/status", &[]);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    status["cluster"]["peers"].as_array().map_or(0, Vec::len)
}

fn role_host(hosts: &Hosts, role: &str, service: &str) -> (String, String, String) {
    (hosts.get(role).instance(), role.into(), service.into())
}

#[test]
fn three_servers_alert_per_host_and_page_once_through_two_clustered_alertmanagers() {
    require("prometheus", "apt-get install prometheus");
    let dir = temp_dir();
    let hosts = Hosts::create();
    let (app, db, cache) = (hosts.get("app"), hosts.get("db"), hosts.get("cache"));

    // The services, each in its server's namespace.
    let gunicorn_name = common::unique_marker("h4-app");
    let app_dir = dir.path().join("app");
    std::fs::create_dir_all(&app_dir).unwrap();
    let _gunicorn = start_gunicorn(app, &app_dir, &gunicorn_name);
    let _postgres = start_postgres_stand_in(db, dir.path());
    let redis_port = free_port();
    let mut redis = start_redis(cache, redis_port);

    // Their exporters. The DB server's PostgreSQL gets a per-process budget no process fits in
    // (its total stays the plan's 8 GiB, the whole server).
    let app_config = host_config(
        dir.path(),
        "app",
        "wsgi",
        // The app server's Redis client (Celery's broker, the cache) is the cache server.
        &format!(
            "[services.wsgi]\ninstances = 1\nmatch = [{{ cmdline = '{gunicorn_name}' }}]\n\
             [[redis]]\nname = \"cache\"\nurl = \"redis://{}:{redis_port}/0\"\n",
            cache.lan_address
        ),
    );
    let db_config = host_config(
        dir.path(),
        "db",
        "postgresql",
        &format!(
            "[services.postgresql]\nprocess_memory_budget = \"16KiB\"\nmatch = [{{ comm = 'postgres', cmdline = '^{}' }}]\n",
            dir.path().join("postgres").display()
        ),
    );
    let cache_config = host_config(
        dir.path(),
        "cache",
        "redis",
        &format!(
            "[services.redis]\nmatch = [{{ comm = 'redis-server', cmdline = ':{redis_port}$' }}]\n\
             [[redis]]\nname = \"main\"\nurl = \"redis://127.0.0.1:{redis_port}/0\"\n"
        ),
    );
    let _exporters: Vec<Guard> = [(app, &app_config), (db, &db_config), (cache, &cache_config)]
        .into_iter()
        .map(|(host, config)| {
            let log = dir.path().join(format!("{}.log", host.role));
            start_exporter(host, config, &log)
        })
        .collect();

    // Two Alertmanagers in one cluster, and the receiver.
    let (hook_port, received) = webhook();
    let am_config = dir.path().join("alertmanager.yml");
    alertmanager_config(&am_config, hook_port);
    let gossip = [free_port(), free_port()];
    let (_am1, am1) =
        start_alertmanager_member(&am_config, &dir.path().join("am1"), gossip[0], &[gossip[1]]);
    let (_am2, am2) =
        start_alertmanager_member(&am_config, &dir.path().join("am2"), gossip[1], &[gossip[0]]);
    for port in [am1, am2] {
        wait_for_port(port, Duration::from_secs(20));
        wait_for(
            "both Alertmanagers in one cluster",
            Duration::from_secs(30),
            || cluster_members(port) == 2,
        );
    }

    // One Prometheus in the root namespace with the shipped H4 config.
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    prometheus_h4(&prom_dir, &hosts, [am1, am2]);
    let (_prom, prom) = start_prometheus(&prom_dir);
    wait_for("the three servers scraped", Duration::from_secs(60), || {
        prometheus_query(prom, "up{job=\"stack\", env=\"production\"} == 1")
            .and_then(|a| a["data"]["result"].as_array().map(Vec::len))
            == Some(3)
    });
    for host in &hosts.hosts {
        let query = format!(
            "stack_service_up{{instance=\"{}\", role=\"{}\"}} == 1",
            host.instance(),
            host.role
        );
        wait_for(
            &format!("the {} server's service seen running", host.role),
            Duration::from_secs(40),
            || {
                prometheus_query(prom, &query)
                    .and_then(|a| a["data"]["result"].as_array().map(Vec::len))
                    == Some(1)
            },
        );
    }

    // Across servers: the app server reaches the cache server's Redis over their network.
    let app_sees_cache = |up: u8| {
        let query = format!("stack_redis_up{{role=\"app\", target=\"cache\"}} == {up}");
        prometheus_query(prom, &query).and_then(|a| a["data"]["result"].as_array().map(Vec::len))
            == Some(1)
    };
    wait_for(
        "the app server reaching Redis on the cache server",
        Duration::from_secs(40),
        || app_sees_cache(1),
    );

    // The budget breach and the plan's contradictions, per server and role.
    let breach = "StackServiceProcessMemoryOverBudget";
    wait_for(breach, Duration::from_secs(90), || {
        !firing(prom, breach).is_empty()
    });
    assert_eq!(
        who(&firing(prom, breach)),
        [role_host(&hosts, "db", "postgresql")],
        "the DB server's budget breach must name that server only"
    );
    wait_for(
        "StackPlanLeavesNoSystemMemory",
        Duration::from_secs(60),
        || firing(prom, "StackPlanLeavesNoSystemMemory").len() >= 2,
    );
    let mut no_system = vec![role_host(&hosts, "db", ""), role_host(&hosts, "cache", "")];
    no_system.sort();
    assert_eq!(
        who(&firing(prom, "StackPlanLeavesNoSystemMemory")),
        no_system,
        "H4 gives the OS nothing on the DB and cache servers, and leaves 8 GiB on the app server"
    );
    assert!(
        firing(prom, "StackServiceDown").is_empty(),
        "a service down before any fault: {:?}",
        firing(prom, "StackServiceDown")
    );

    // The cache server's Redis stops: A5 for that server only, paged once.
    let stopped = Instant::now();
    redis.kill();
    wait_for(
        "StackServiceDown notified",
        Duration::from_secs(150),
        || !notified(&received, "StackServiceDown").is_empty(),
    );
    eprintln!(
        "Redis stopped to StackServiceDown at the webhook: {:.0?}",
        stopped.elapsed()
    );
    wait_for(
        "the app server losing Redis on the cache server",
        Duration::from_secs(30),
        || app_sees_cache(0),
    );
    for (name, port) in [("first", am1), ("second", am2)] {
        assert!(
            holds(port, "StackServiceDown", &cache.instance()),
            "the {name} Alertmanager did not receive the alert: Prometheus must send to both"
        );
    }
    // The second member waits its peer_timeout (15s) for the first one's notification log
    // before it would send: a duplicate would have come by now.
    std::thread::sleep(Duration::from_secs(40));
    let pages = notified(&received, "StackServiceDown");
    assert_eq!(
        pages,
        [vec![role_host(&hosts, "cache", "redis")]],
        "StackServiceDown must reach the receiver once, for the cache server's Redis only"
    );
    assert_eq!(
        who(&firing(prom, "StackServiceDown")),
        [role_host(&hosts, "cache", "redis")]
    );
}

/// The `--name=value` flags of ARGS in deploy/alertmanager-ha/prometheus-alertmanager-`member`.
fn shipped_member_flags(member: u8) -> Vec<(String, String)> {
    let path = format!("deploy/alertmanager-ha/prometheus-alertmanager-{member}");
    let text = std::fs::read_to_string(Path::new(ROOT).join(path)).unwrap();
    let args = text
        .lines()
        .find_map(|l| l.strip_prefix("ARGS=\""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("an ARGS=\"...\" line");
    args.split_whitespace()
        .map(|flag| {
            let (name, value) = flag.trim_start_matches("--").split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect()
}

fn flag<'a>(flags: &'a [(String, String)], name: &str) -> &'a str {
    flags
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no --{name} in {flags:?}"))
}

/// The port of an address such as `:9094` or `production-app:9094`.
fn port_of(address: &str) -> &str {
    address.rsplit_once(':').unwrap().1
}

#[test]
fn the_shipped_alertmanager_pair_is_one_cluster_and_prometheus_sends_to_both() {
    let (one, two) = (shipped_member_flags(1), shipped_member_flags(2));
    // Each member's peer is the other's cluster port (the live test above runs this topology).
    for (member, other) in [(&one, &two), (&two, &one)] {
        assert_eq!(
            port_of(flag(member, "cluster.peer")),
            port_of(flag(other, "cluster.listen-address"))
        );
    }
    assert_ne!(
        flag(&one, "storage.path"),
        flag(&two, "storage.path"),
        "each member needs storage of its own"
    );
    assert_eq!(flag(&one, "config.file"), flag(&two, "config.file"));
    let prometheus =
        std::fs::read_to_string(Path::new(ROOT).join("prometheus/prometheus-h4.yml")).unwrap();
    let targets = format!(
        "targets: [\"production-app:{}\", \"production-app:{}\"]",
        port_of(flag(&one, "web.listen-address")),
        port_of(flag(&two, "web.listen-address"))
    );
    assert!(
        prometheus.contains(&targets),
        "prometheus-h4.yml must send to both members: {targets}"
    );
}
