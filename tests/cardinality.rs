//! The exporter's cardinality budget per host (docs/metrics.md#cardinality-budget-per-host): with
//! every collector on, against real throwaway MariaDB, PostgreSQL and Redis, an access log and a
//! storage directory, every series served is put in the one thing that grows it (a core, a disk,
//! an interface, a mount, a service, a listening socket, a target, a schema, a queue, …), and
//!   - each group holds at most the documented series per item times its items,
//!   - its items are the machine's own (cores online, whole disks, interfaces, mounts) or the
//!     config's (services, targets, queues, directories), counted here from /proc, the config
//!     and the servers, not from the scrape,
//!   - the whole is within the budget those figures give for this machine,
//!   - and a metric that fits no group fails: a new metric is given its place in the budget.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::servers::{MariadbServer, PostgresServer, RedisServer, GOOD_PASSWORD};
use common::{temp_dir, write, Exporter};

/// What grows a group of series, and how many series each of its items may carry. The figures
/// are docs/metrics.md's table; change both together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Group {
    /// The exporter itself, the plan, the host's scalars: a fixed number.
    Fixed,
    Collector,
    Core,
    Disk,
    Interface,
    Mount,
    /// A watched service's measured and socket figures.
    Service,
    /// A service the profile plans: its budgets and expected counts.
    PlannedService,
    /// A listening socket of a watched service (or an unowned one on a database or app port).
    Listener,
    MysqlTarget,
    PostgresTarget,
    RedisTarget,
    /// A MySQL schema or a PostgreSQL database (size and readable).
    Schema,
    PostgresState,
    ProcesslistPair,
    RedisDb,
    Queue,
    /// The access log and stub_status, when `[nginx]` is set.
    Nginx,
    Directory,
}

use Group::*;

/// The collectors this test turns on: every one.
const EVERY_COLLECTOR: [&str; 9] = [
    "host",
    "filesystem",
    "services",
    "sockets",
    "nginx",
    "storage",
    "mysql",
    "postgres",
    "redis",
];

/// Each group with the row of docs/metrics.md#cardinality-budget-per-host that gives its figure.
const GROUPS: [(Group, &str); 19] = [
    (Fixed, "fixed"),
    (Collector, "collector"),
    (Core, "core"),
    (Disk, "disk"),
    (Interface, "interface"),
    (Mount, "mount"),
    (Service, "service"),
    (PlannedService, "planned_service"),
    (Listener, "listener"),
    (MysqlTarget, "mysql_target"),
    (PostgresTarget, "postgres_target"),
    (RedisTarget, "redis_target"),
    (Schema, "schema"),
    (PostgresState, "postgres_state"),
    (ProcesslistPair, "processlist_pair"),
    (RedisDb, "redis_db"),
    (Queue, "queue"),
    (Nginx, "nginx"),
    (Directory, "directory"),
];

/// The group's row in the budget table.
fn row(group: Group) -> &'static str {
    GROUPS
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(_, name)| *name)
        .unwrap()
}

/// Series per item of each row of docs/metrics.md's budget table: `| \`row\` | N | …`.
fn documented_budget() -> BTreeMap<String, usize> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let text = std::fs::read_to_string(path).unwrap();
    let section = text
        .split("\n## ")
        .find(|s| s.starts_with("Cardinality budget per host"))
        .expect("docs/metrics.md has no section \"Cardinality budget per host\"");
    section
        .lines()
        .filter_map(|line| {
            let mut cells = line.split('|').map(str::trim).skip(1);
            let name = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_string(), cells.next()?.parse().ok()?))
        })
        .collect()
}

/// The group of one series, from its name and labels; None: a metric the budget does not know.
fn group_of(name: &str, labels: &BTreeMap<String, String>) -> Option<Group> {
    let has = |key: &str| labels.contains_key(key);
    let group = if name.starts_with("stack_nginx_") {
        Nginx
    } else if has("collector") {
        Collector
    } else if has("core") {
        Core
    } else if name.starts_with("stack_host_disk_") && has("device") {
        Disk
    } else if has("interface") {
        Interface
    } else if has("mountpoint") {
        Mount
    } else if has("service") && has("port") {
        Listener
    } else if has("service") && name == "stack_database_target_info" {
        target_group(labels)?
    } else if has("service") && is_plan_series(name) {
        PlannedService
    } else if has("service") {
        Service
    } else if has("directory") {
        Directory
    } else if has("queue") {
        Queue
    } else if has("database") {
        Schema
    } else if name == "stack_postgres_connections" {
        PostgresState
    } else if name == "stack_mysql_processlist_threads" {
        ProcesslistPair
    } else if name == "stack_redis_db_keys" {
        RedisDb
    } else if has("target") {
        match name.split('_').nth(1)? {
            "mysql" => MysqlTarget,
            "postgres" => PostgresTarget,
            "redis" => RedisTarget,
            _ => return None,
        }
    } else if labels.is_empty()
        || name.starts_with("stack_host_")
        || name.starts_with("stack_plan_")
        || name.starts_with("stack_exporter_")
    {
        Fixed
    } else {
        return None;
    };
    Some(group)
}

/// `stack_database_target_info` counts with its target's own figures.
fn target_group(labels: &BTreeMap<String, String>) -> Option<Group> {
    match labels.get("service")?.as_str() {
        "mysql" => Some(MysqlTarget),
        "postgresql" => Some(PostgresTarget),
        "redis" => Some(RedisTarget),
        _ => None,
    }
}

fn is_plan_series(name: &str) -> bool {
    name.ends_with("_budget_bytes") || name.ends_with("_budget_cores") || name.contains("expected")
}

/// The item a series of `group` belongs to (the core's number, the mountpoint, …); a schema's
/// starts with its kind (`mysql/main/shop`), as two kinds may have targets of the same name.
fn item_of(group: Group, name: &str, labels: &BTreeMap<String, String>) -> String {
    if group == Schema {
        let kind = name.split('_').nth(1).unwrap_or_default();
        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
        return format!("{kind}/{}/{}", label("target"), label("database"));
    }
    let keys: &[&str] = match group {
        Fixed | Nginx => &[],
        Collector => &["collector"],
        Core => &["core"],
        Disk => &["device"],
        Interface => &["interface"],
        Mount => &["mountpoint"],
        Service | PlannedService => &["service"],
        Listener => &["service", "port"],
        MysqlTarget | PostgresTarget | RedisTarget => &["target"],
        Schema => unreachable!("a schema's item starts with its kind"),
        PostgresState => &["target", "state"],
        ProcesslistPair => &["target", "command", "state"],
        RedisDb => &["target", "db"],
        Queue => &["target", "queue"],
        Directory => &["directory"],
    };
    keys.iter()
        .map(|k| labels.get(*k).cloned().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("/")
}

/// Each sample of a text exposition: its name and labels. Histograms' `_bucket`, `_sum` and
/// `_count` are series of their own, as Prometheus stores them.
fn series(text: &str) -> Vec<(String, BTreeMap<String, String>)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let series = line.rsplit_once(' ').unwrap().0;
            match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((name, rest)) => (name.to_string(), parse_labels(rest.trim_end_matches('}'))),
            }
        })
        .collect()
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        // A value ends at the first quote not escaped by a backslash.
        let mut end = 0;
        let bytes = after.as_bytes();
        while bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        labels.insert(
            key.trim_start_matches(',').to_string(),
            after[..end].to_string(),
        );
        rest = &after[end + 1..];
    }
    labels
}

// ---- the machine's items, from /proc, not from the scrape ----------------------------------------

fn proc_text(paths: &[&str]) -> String {
    paths
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| panic!("cannot read any of {paths:?}"))
}

fn online_cores() -> BTreeSet<String> {
    proc_text(&["/proc/stat"])
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.strip_prefix("cpu"))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whole disks, as docs/metrics.md says: partitions, RAM disks, zram, loop devices and floppies
/// left out (node_exporter's default exclusion).
fn whole_disks() -> BTreeSet<String> {
    let ignored = regex::Regex::new(r"^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$").unwrap();
    proc_text(&["/proc/diskstats"])
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .filter(|d| !ignored.is_match(d))
        .collect()
}

/// Interfaces but `lo` and `veth*`, of PID 1's network namespace (the host's).
fn interfaces() -> BTreeSet<String> {
    proc_text(&["/proc/1/net/dev", "/proc/net/dev"])
        .lines()
        .filter_map(|l| Some(l.split_once(':')?.0.trim().to_string()))
        .filter(|i| i != "lo" && !i.starts_with("veth"))
        .collect()
}

/// Filesystems that hold no user data, and where the container runtimes and the kernel's own
/// trees are mounted: docs/metrics.md#filesystems-collector-filesystem.
const PSEUDO_FSTYPES: &str = "autofs binfmt_misc bpf cgroup cgroup2 configfs debugfs devpts \
    devtmpfs fusectl hugetlbfs iso9660 mqueue nsfs overlay proc procfs pstore rpc_pipefs \
    securityfs selinuxfs squashfs erofs sysfs tracefs";
const PSEUDO_PREFIXES: [&str; 6] = [
    "/dev",
    "/proc",
    "/sys",
    "/run/credentials",
    "/var/lib/docker",
    "/var/lib/containers/storage",
];

/// The real mounts of PID 1's mount table, unescaped as the exporter labels them.
fn real_mounts() -> BTreeSet<String> {
    let pseudo: BTreeSet<&str> = PSEUDO_FSTYPES.split_whitespace().collect();
    proc_text(&["/proc/1/mounts", "/proc/mounts"])
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            Some((*fields.get(1)?, *fields.get(2)?))
        })
        .filter(|(mountpoint, fstype)| {
            !pseudo.contains(fstype)
                && !PSEUDO_PREFIXES
                    .iter()
                    .any(|p| mountpoint == p || mountpoint.starts_with(&format!("{p}/")))
        })
        .map(|(m, _)| {
            m.replace("\\040", " ")
                .replace("\\011", "\t")
                .replace("\\134", "\\")
        })
        .collect()
}

// ---- the stack: throwaway servers watched as the services, every collector on --------------------

const QUEUES: [&str; 3] = ["celery", "emails", "reports"];
const DIRECTORIES: [&str; 2] = ["backups", "logs"];

/// A line of each route and status class in nginx's `stack` format.
fn access_log(path: &Path) {
    let lines: String = [
        ("/", 200, "-"),
        ("/api/items", 302, "-"),
        ("/static/a.css", 404, "-"),
        ("/boom", 503, "-"),
        ("/ws/chat", 101, "websocket"),
        ("/media/a.png", 200, "-"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (path, status, upgrade))| {
        format!(
            "10.0.0.{i} - - [28/Nov/2026:05:00:00 +0000] \"GET {path} HTTP/1.1\" {status} 5 \"-\" \
             \"test\" rt=0.0{i}1 urt=\"0.0{i}1\" upgrade=\"{upgrade}\"\n"
        )
    })
    .collect();
    write(path, &lines);
}

/// Every collector on: the three servers as the only watched services (matched by their ports,
/// so the machine's own servers and other tests' stay out), the production-db profile's plan,
/// an access log, two storage directories and three queues.
fn stack_config(
    dir: &Path,
    mariadb: &MariadbServer,
    pg: &PostgresServer,
    redis: &RedisServer,
) -> String {
    let own = [
        (
            "mysql",
            format!(
                "{{ comm = 'mariadbd', cmdline = '--port={}' }}",
                mariadb.port
            ),
        ),
        (
            "postgresql",
            format!("{{ comm = 'postgres', cmdline = '-p {} ' }}", pg.port),
        ),
        (
            "redis",
            format!("{{ comm = 'redis-server', cmdline = ':{}' }}", redis.port),
        ),
    ];
    let mut services = String::new();
    for name in common::every_service() {
        let matcher = own
            .iter()
            .find(|(service, _)| *service == name)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| "{ comm = 'no-such-process' }".into());
        services.push_str(&format!("[services.{name}]\nmatch = [{matcher}]\n"));
    }
    let log = dir.join("access.log");
    access_log(&log);
    let mut directories = Vec::new();
    for name in DIRECTORIES {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).unwrap();
        write(&path.join("a"), "x");
        directories.push(format!("{name} = {:?}", path.display().to_string()));
    }
    let queues: Vec<String> = QUEUES.iter().map(|q| format!("{q:?}")).collect();
    format!(
        "profile = \"production-db\"\n{services}\
         [[mysql]]\nname = \"main\"\nurl = \"mysql://monitor:{GOOD_PASSWORD}@127.0.0.1:{my}/\"\n\
         [[postgres]]\nname = \"main\"\nurl = \"postgres://monitor:{GOOD_PASSWORD}@127.0.0.1:{pgp}/postgres\"\n\
         [[redis]]\nname = \"cache\"\nurl = \"redis://monitor:{GOOD_PASSWORD}@127.0.0.1:{rp}/0\"\n\
         queues = [{queues}]\n\
         [nginx]\naccess_log = {log:?}\nformat = \"stack\"\n\
         [storage]\ndirectories = {{ {directories} }}\n",
        my = mariadb.port,
        pgp = pg.port,
        rp = redis.port,
        queues = queues.join(", "),
        log = log.display().to_string(),
        directories = directories.join(", "),
    )
}

#[test]
fn every_series_has_its_place_in_the_budget_and_the_budget_holds_on_this_machine() {
    let documented = documented_budget();
    let rows: BTreeSet<&str> = GROUPS.iter().map(|(_, name)| *name).collect();
    let doc_rows: BTreeSet<&str> = documented.keys().map(String::as_str).collect();
    assert_eq!(
        doc_rows, rows,
        "docs/metrics.md's budget table and this test's groups differ"
    );
    let per_item = |group: Group| documented[row(group)];

    let mariadb = MariadbServer::start();
    mariadb.create_monitoring_users();
    let pg = PostgresServer::start();
    pg.create_monitoring_roles();
    pg.psql("postgres", "CREATE DATABASE shop");
    let redis = RedisServer::start();
    redis.create_monitoring_users();
    redis.cli(&["RPUSH", "celery", "a", "b"]);
    redis.cli(&["SELECT", "3"]);
    redis.cli(&["-n", "3", "SET", "session", "x"]);

    let dir = temp_dir();
    let config = dir.path().join("stack.toml");
    write(&config, &stack_config(dir.path(), &mariadb, &pg, &redis));
    let (cores, disks, interfaces_before, mounts) =
        (online_cores(), whole_disks(), interfaces(), real_mounts());
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    exporter.scrape(); // the first scrape starts the slow figures
    let text = exporter.scrape();
    // Other tests add and remove interfaces and mounts: what was there before or after the scrape.
    let interfaces: BTreeSet<String> = interfaces_before.union(&interfaces()).cloned().collect();
    let mounts: BTreeSet<String> = mounts.union(&real_mounts()).cloned().collect();
    for collector in EVERY_COLLECTOR {
        assert_eq!(
            common::collector_success(&text, collector),
            1.0,
            "{collector} failed:\n{text}"
        );
    }

    // Every series in its group, each group's items.
    let mut groups: BTreeMap<Group, (usize, BTreeSet<String>)> = BTreeMap::new();
    let mut unknown = BTreeSet::new();
    let all = series(&text);
    for (name, labels) in &all {
        match group_of(name, labels) {
            Some(group) => {
                let entry = groups.entry(group).or_default();
                entry.0 += 1;
                entry.1.insert(item_of(group, name, labels));
            }
            None => {
                unknown.insert(name.clone());
            }
        }
    }
    assert!(
        unknown.is_empty(),
        "metrics with no place in the cardinality budget (give them one here and in \
         docs/metrics.md#cardinality-budget-per-host): {unknown:?}"
    );
    let items = |group: Group| groups.get(&group).map(|g| g.1.clone()).unwrap_or_default();
    let report: Vec<String> = groups
        .iter()
        .map(|(g, (n, items))| format!("{g:?}: {n} series, {} items", items.len()))
        .collect();
    eprintln!("{} series:\n  {}", all.len(), report.join("\n  "));
    eprintln!("listeners: {:?}", items(Listener));

    // Each group within its per-item figure.
    for (group, (count, group_items)) in &groups {
        let allowed = per_item(*group) * group_items.len();
        assert!(
            *count <= allowed,
            "{group:?}: {count} series for {} items, more than {} each: {group_items:?}",
            group_items.len(),
            per_item(*group)
        );
    }

    // The items are the machine's and the config's own.
    let subset = |group: Group, machine: &BTreeSet<String>| {
        let served = items(group);
        assert!(
            served.is_subset(machine),
            "{group:?} served for items this machine does not have: {:?} (has {machine:?})",
            served.difference(machine).collect::<Vec<_>>()
        );
    };
    subset(Core, &cores);
    subset(Disk, &disks);
    subset(Interface, &interfaces);
    subset(Mount, &mounts);
    let services: BTreeSet<String> = common::every_service().map(String::from).collect();
    subset(Service, &services);
    subset(PlannedService, &services);
    subset(
        Collector,
        &EVERY_COLLECTOR.iter().map(|c| c.to_string()).collect(),
    );
    subset(
        Directory,
        &DIRECTORIES.iter().map(|d| d.to_string()).collect(),
    );
    subset(
        Queue,
        &QUEUES.iter().map(|q| format!("cache/{q}")).collect(),
    );
    let schemas: BTreeSet<String> = [
        "mysql/main/shop",
        "postgres/main/postgres",
        "postgres/main/shop",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    subset(Schema, &schemas);
    subset(
        RedisDb,
        &["cache/0", "cache/3"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    // Listening sockets: the three servers' own (TCP, and the Unix sockets of MariaDB and
    // PostgreSQL), and unowned ones on the four well-known ports, which the machine's own servers
    // may hold: at most one per port and address class (loopback, any, other).
    let listeners = items(Listener);
    let own_listeners = listeners
        .iter()
        .filter(|l| !l.starts_with("unknown/") && !l.starts_with("unreadable/"))
        .count();
    assert!(
        own_listeners <= 5,
        "listeners beyond the three servers': {listeners:?}"
    );

    // The whole within the budget this machine and this config give.
    let budget = per_item(Fixed)
        + per_item(Collector) * EVERY_COLLECTOR.len()
        + per_item(Core) * cores.len()
        + per_item(Disk) * disks.len()
        + per_item(Interface) * interfaces.len()
        + per_item(Mount) * mounts.len()
        + (per_item(Service) + per_item(PlannedService)) * services.len()
        + per_item(Listener) * (5 + 8)
        + per_item(MysqlTarget)
        + per_item(PostgresTarget)
        + per_item(RedisTarget)
        + per_item(Schema) * schemas.len()
        + per_item(PostgresState)
        // At most 50 pairs and one `other`: the test's server has a handful of threads.
        + per_item(ProcesslistPair) * 51
        + per_item(RedisDb) * 16
        + per_item(Queue) * QUEUES.len()
        + per_item(Nginx)
        + per_item(Directory) * DIRECTORIES.len();
    eprintln!("budget for this machine: {budget}");
    assert!(
        all.len() <= budget,
        "{} series, over the budget of {budget} for this machine ({} cores, {} disks, {} \
         interfaces, {} mounts)",
        all.len(),
        cores.len(),
        disks.len(),
        interfaces.len(),
        mounts.len()
    );
}
