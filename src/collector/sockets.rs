//! Listening sockets and connections per service (THRESHOLDS.md rows W3, X1, C5, C6).
//!
//! Processes are matched to services and grouped into instances exactly as the services collector
//! does ([`Services::instance_pids`]). Each network namespace of the services' processes is asked
//! for its listening sockets (TCP and Unix, with their queues and limits, the backlog) through
//! sock_diag netlink (src/sockdiag.rs), in that namespace, so a service in a container is seen as
//! it sees itself. A listener belongs to the instance of the first service process that holds it
//! among its open files (a `socket:[inode]` link in /proc/PID/fd).
//!
//! A connection belongs to the listener that accepted it, and so to that listener's instance: the
//! established TCP connections on the owned listeners' ports, filtered by the kernel (the host's
//! other connections are not copied out), and the connected Unix sockets named after an owned
//! listener's path (an accepted socket carries it). A connection still in the accept queue has no
//! inode yet (no process holds it) and is counted in the queue length instead. A forking server's
//! workers share their master's listener: their connections are the instance's.
//!
//! A process's network namespace (its ns/net link) is kept with its identity (PID and start
//! time) and read again every one to two minutes, as its match is; a namespace is always opened
//! through a process whose link was just read.
//!
//! Which process holds which listener is read once per process and kept ([`Holders`]): walking a
//! busy server's fd table costs a readlink per connection. A process is read when it is first
//! seen; the processes of a namespace are read again when a listener appears there that no read
//! process held; each scrape checks only that the known holders still hold their listeners (one
//! readlink per listener per holder). Scrape cost is thus linear in the services' processes and
//! listeners, and the only per-connection work is the kernel's filtered dump of the services' own
//! connections (a listener passed to an already running process over a Unix socket, SCM_RIGHTS,
//! is seen only when that process is read again).
//!
//! Where netlink is refused, the namespace's /proc/PID/net/tcp{,6} and /proc/PID/net/unix are read
//! whole instead, and only the queue length of TCP listeners is published.
//!
//! A server's control socket (Gunicorn's `gunicorn.ctl`) is not a listener of the service: no
//! client of the app connects to it ([`CONTROL_SOCKET_NAMES`]).
//!
//! Besides the services' own listeners, listeners on the ports the plans name (3306, 5432, 6379,
//! 8000) that no watched service owns are published with `service="unknown"`: a Django dev server
//! left on 8000, or a container runtime's proxy publishing a database port.
//!
//! Without root (or CAP_SYS_PTRACE) the fd and ns/net of other users' processes are refused: their
//! sockets cannot be attributed. Those processes are counted per service in
//! `stack_sockets_unreadable_processes` and logged once; a planned-port listener created by the
//! user of such a process is published as `service="unreadable"`, not `"unknown"`, since it may
//! well be that service's own.

mod holders;
mod kept;
mod namespace;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet};

use crate::collector::services::{
    later, spread, ProcessKey, ScrapeKey, ServiceInstances, Services, MATCH_MAX_AGE,
};
use crate::logging::Condition;
use crate::metrics::MetricSet;
use crate::proc::ProcFs;
use crate::refresh::Refresh;
use holders::{Holders, Member};
use kept::{Kept, KeptCounts};
use kept::{COSTLY, COSTLY_HOST_SOCKETS};
pub use namespace::{parse_tcp_table, parse_unix_table, UnixSocket};
use namespace::{Address, ListenSocket, Namespace, Owner};

/// Ports whose listeners are published even when no watched service owns them.
pub const PLANNED_PORTS: [u16; 4] = [3306, 5432, 6379, 8000];

/// Basenames of Unix sockets a server listens on for its own control tool, never for the
/// application's clients: Gunicorn's `gunicornc` socket (Gunicorn 25.1+, on by default, in
/// `$XDG_RUNTIME_DIR` or `~/.gunicorn/`). Counting it would add a listener of the master to the
/// service's listeners and its queue to the request queue (W3). Only the exact default name:
/// a control socket given another name by `--control-socket` is counted, and no app socket is
/// ever dropped for looking like one.
const CONTROL_SOCKET_NAMES: [&str; 1] = ["gunicorn.ctl"];

/// The `service` label of a listener on a planned port that no watched service owns.
pub const UNKNOWN_SERVICE: &str = "unknown";

/// The `service` label of a listener on a planned port whose owner may be a watched process the
/// exporter was not allowed to read (the listener's user is that process's user).
pub const UNREADABLE_SERVICE: &str = "unreadable";

#[derive(Debug)]
pub struct Sockets {
    procfs: ProcFs,
    services: Arc<Services>,
    /// Logged once while some services' processes cannot be read.
    unreadable: Condition,
    /// Logs when connection counts start and stop being kept.
    kept_counts: Condition,
    /// Which processes hold which listeners, from the previous scrapes.
    holders: Mutex<Holders>,
    /// Costly connection counts, kept for up to `connections_max_age`.
    kept: Arc<Mutex<KeptCounts>>,
    /// Makes the costly counts that came due again, after the scrape that found them due.
    recount: Refresh,
    connections_max_age: Duration,
    /// Each service process's network namespace, read again with its match (a process can
    /// enter another one, rarely): not a readlink per process per scrape.
    net_namespaces: Mutex<HashMap<ProcessKey, NamespaceReading>>,
}

#[derive(Debug)]
struct NamespaceReading {
    link: PathBuf,
    reread_at: Instant,
}

/// `loopback` (reachable only from this host: 127.0.0.0/8, ::1, and Unix sockets), `any` (every
/// interface: 0.0.0.0, ::) or `other` (a specific address).
pub fn address_class(address: &IpAddr) -> &'static str {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(*v6), IpAddr::V4),
        v4 => *v4,
    };
    if address.is_loopback() {
        "loopback"
    } else if address.is_unspecified() {
        "any"
    } else {
        "other"
    }
}

/// Whether a Unix socket path is a server's control socket ([`CONTROL_SOCKET_NAMES`]).
fn is_control_socket(path: &str) -> bool {
    Path::new(path)
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| CONTROL_SOCKET_NAMES.contains(&name))
}

/// Whether the connections of a Unix listener with this path count: not a control socket's.
fn counted(path: &str) -> bool {
    !is_control_socket(path)
}

/// Whether an error says the exporter may not read the process (rather than that it is gone).
fn is_refusal(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::PermissionDenied
}

/// A port's listeners of one service added up (IPv4 and IPv6, several instances).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Listener {
    length: Option<u64>,
    limit: Option<u64>,
}

impl Listener {
    fn add(&mut self, length: Option<u64>, limit: Option<u64>, first: bool) {
        let sum = |a: Option<u64>, b: Option<u64>| {
            if first {
                b
            } else {
                Some(a?.saturating_add(b?))
            }
        };
        self.length = sum(self.length, length);
        self.limit = sum(self.limit, limit);
    }
}

/// What one scrape found for one service.
#[derive(Debug, Default)]
struct ServiceSockets {
    listeners: BTreeMap<String, Listener>,
    info: BTreeSet<(String, &'static str)>,
    connections: Vec<u64>,
    /// Processes whose fd or ns/net was refused: their sockets are missing from the figures.
    unreadable: u64,
    /// How old the oldest count in `connections` is (0: counted in this scrape).
    connections_age: Duration,
}

impl ServiceSockets {
    /// Adds one of the service's listening sockets to its port's figures. Unnamed Unix
    /// listeners have no path to connect to, and a control socket no client of the app
    /// connects to: neither is the service's.
    fn add_listener(&mut self, listener: &ListenSocket) {
        let (port, class) = match &listener.address {
            Address::Tcp { local, port } => (port.to_string(), address_class(local)),
            Address::Unix(path) if path.is_empty() || is_control_socket(path) => return,
            Address::Unix(path) => (format!("unix:{path}"), "loopback"),
        };
        let first = !self.listeners.contains_key(&port);
        self.listeners
            .entry(port.clone())
            .or_default()
            .add(listener.length, listener.limit, first);
        self.info.insert((port, class));
    }
}

/// The services' processes of one scrape, grouped by network namespace.
#[derive(Debug, Default)]
struct Processes {
    members: Vec<Member>,
    namespaces: Vec<Namespace>,
    /// Per service: processes whose ns/net or fds were refused.
    unreadable: Vec<u64>,
    /// The users of the refused processes: a listener of theirs may be a service's own.
    unreadable_uids: HashSet<u32>,
}

impl Sockets {
    pub fn new(procfs: ProcFs, services: Arc<Services>, connections_max_age: Duration) -> Sockets {
        Sockets {
            procfs,
            services,
            unreadable: Condition::default(),
            kept_counts: Condition::default(),
            holders: Mutex::new(Holders::default()),
            kept: Arc::default(),
            recount: Refresh::default(),
            connections_max_age,
            net_namespaces: Mutex::default(),
        }
    }

    pub fn collect(&self, scrape: ScrapeKey) -> anyhow::Result<MetricSet> {
        let groups = self.services.instance_pids(scrape)?;
        let own_ns = std::fs::read_link(self.procfs.path("self/ns/net")).ok();
        let mut processes = self.processes(&groups, own_ns.as_ref());
        let owners = self.owners(&mut processes);
        self.log_unreadable(&groups, &processes.unreadable);
        let found = self.attribute(&groups, &mut processes, &owners);

        let mut out = MetricSet::default();
        declare(&mut out);
        for ((name, _), service) in groups.iter().zip(&found) {
            emit_service(&mut out, name, service);
        }
        let own = processes
            .namespaces
            .iter()
            .find(|n| Some(&n.link) == own_ns.as_ref());
        let read;
        let own = match own {
            Some(namespace) => namespace,
            None => {
                let link = own_ns.unwrap_or_default();
                read = Namespace::read(link, self.procfs.path("self"), true);
                &read
            }
        };
        emit_unowned(&mut out, own, &owners, &processes.unreadable_uids);
        Ok(out)
    }

    /// Each listener's owner, from the processes that hold them (read anew where needed: see
    /// [`Holders`]); the processes whose fds were refused counted as unreadable.
    fn owners(&self, processes: &mut Processes) -> HashMap<u64, Owner> {
        let mut holders = self.holders.lock().unwrap_or_else(|e| e.into_inner());
        let refused = holders.update(
            &self.procfs,
            &processes.members,
            &processes.namespaces,
            Instant::now(),
        );
        for index in refused {
            let member = processes.members[index];
            processes.refused(member.service, &self.procfs.pid_dir(member.pid));
        }
        holders.owners(&processes.members)
    }

    /// The services' processes with their network namespaces, each namespace's listeners read
    /// once; the processes whose namespace is refused counted as unreadable.
    fn processes(&self, groups: &[ServiceInstances], own_ns: Option<&PathBuf>) -> Processes {
        let mut found = Processes {
            unreadable: vec![0; groups.len()],
            ..Processes::default()
        };
        let mut namespace_ids: HashMap<PathBuf, usize> = HashMap::new();
        let now = Instant::now();
        let mut known = self
            .net_namespaces
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut previous = std::mem::take(&mut *known);
        for (service, (_, instances)) in groups.iter().enumerate() {
            for (instance, processes) in instances.iter().enumerate() {
                for &key @ (pid, _) in processes {
                    let dir = self.procfs.pid_dir(pid);
                    // A namespace not yet opened in this scrape (and not the exporter's own,
                    // which needs no setns) is opened through this process: its link is then
                    // read anew, so that a process gone since the listing is never the one.
                    let opened = |r: &NamespaceReading| {
                        own_ns == Some(&r.link) || namespace_ids.contains_key(&r.link)
                    };
                    let cached = previous.remove(&key);
                    let reading = match cached.filter(|r| now < r.reread_at && opened(r)) {
                        Some(reading) => Ok(reading),
                        None => std::fs::read_link(dir.join("ns/net")).map(|link| {
                            let reread_at = later(now, spread(MATCH_MAX_AGE, pid));
                            NamespaceReading { link, reread_at }
                        }),
                    };
                    let link = reading.map(|reading| {
                        let link = reading.link.clone();
                        known.insert(key, reading);
                        link
                    });
                    match link {
                        Ok(link) => {
                            let ns = *namespace_ids.entry(link.clone()).or_insert_with(|| {
                                let own = own_ns == Some(&link);
                                found.namespaces.push(Namespace::read(link, dir, own));
                                found.namespaces.len() - 1
                            });
                            found.members.push(Member {
                                service,
                                instance,
                                pid,
                                ns,
                            });
                        }
                        Err(e) if is_refusal(&e) => found.refused(service, &dir),
                        Err(_) => {} // gone since the listing
                    }
                }
            }
        }
        found
    }

    /// Each service's listeners, and its instances' connections, from the namespaces' sockets
    /// (or a costly count kept from an earlier scrape: see [`kept`]).
    fn attribute(
        &self,
        groups: &[ServiceInstances],
        processes: &mut Processes,
        owners: &HashMap<u64, Owner>,
    ) -> Vec<ServiceSockets> {
        let mut found: Vec<ServiceSockets> = groups
            .iter()
            .zip(&processes.unreadable)
            .map(|((_, instances), &unreadable)| ServiceSockets {
                connections: vec![0; instances.len()],
                unreadable,
                ..ServiceSockets::default()
            })
            .collect();
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let host_sockets = self.host_tcp_sockets();
        let mut recounts = Vec::new();
        for namespace in &mut processes.namespaces {
            let mut owned = Vec::new();
            for listener in &namespace.listeners {
                if let Some(&owner) = owners.get(&listener.inode) {
                    found[owner.0].add_listener(listener);
                    owned.push((listener.inode, owner));
                }
            }
            owned.sort_unstable();
            let (connections, age) =
                match kept.kept(&namespace.link, &owned, (now, self.connections_max_age)) {
                    Some(Kept { found, age, due }) => {
                        if due {
                            recounts.push((namespace.take_for_count(), owned));
                        }
                        (found, age)
                    }
                    None => {
                        let connections = namespace.connections(owners, counted);
                        let link = namespace.link.clone();
                        kept.record(link, owned, connections.clone(), now, host_sockets);
                        (connections, Duration::ZERO)
                    }
                };
            for ((service, instance), n) in connections {
                found[service].connections[instance] += n;
                found[service].connections_age = found[service].connections_age.max(age);
            }
        }
        let namespaces = &processes.namespaces;
        kept.retain(|link| namespaces.iter().any(|ns| &ns.link == link));
        self.log_kept(kept.any_costly());
        drop(kept);
        self.recount_later(recounts, owners.clone(), host_sockets);
        found
    }

    /// Makes the namespaces' counts that came due again, off the scrape's path; the next scrape
    /// publishes them. `host_sockets` is the scrape's (see [`KeptCounts::record`]).
    fn recount_later(
        &self,
        recounts: Vec<(Namespace, Vec<(u64, Owner)>)>,
        owners: HashMap<u64, Owner>,
        host_sockets: Option<u64>,
    ) {
        if recounts.is_empty() {
            return;
        }
        let kept = self.kept.clone();
        self.recount
            .start("sockets collector: connection recount", move || {
                for (mut namespace, listeners) in recounts {
                    let at = Instant::now();
                    let connections = namespace.connections(&owners, counted);
                    let link = namespace.link.clone();
                    let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                    kept.record(link, listeners, connections, at, host_sockets);
                }
            });
    }

    /// The host's TCP sockets, which every connection count walks (see [`kept`]); None when
    /// /proc/net/sockstat cannot be read, and counts are then made every scrape.
    fn host_tcp_sockets(&self) -> Option<u64> {
        let text = self.procfs.read("net/sockstat").ok()?;
        crate::proc::parse_sockstat_tcp_sockets(&text)
    }

    /// One line when counts start being kept (the figures are then up to max-age old), one
    /// when they are made every scrape again.
    fn log_kept(&self, costly: bool) {
        let max_age = self.connections_max_age;
        let why = (costly && !max_age.is_zero()).then(|| {
            format!(
                "counting connections is costly here ({COSTLY}+ connections to the services, or \
                 {COSTLY_HOST_SOCKETS}+ TCP sockets on the host): each count is kept up to \
                 {max_age:?} (stack_service_connections_age_seconds; \
                 --collector.sockets.connections-max-age)"
            )
        });
        let again = "connection counts are made every scrape again";
        self.kept_counts.note("sockets collector", why, again);
    }

    /// One line when some services' processes start being unreadable, one when all are readable.
    fn log_unreadable(&self, groups: &[ServiceInstances], unreadable: &[u64]) {
        let refused: Vec<&str> = groups
            .iter()
            .zip(unreadable)
            .filter(|(_, &count)| count > 0)
            .map(|((name, _), _)| &**name)
            .collect();
        let why = (!refused.is_empty()).then(|| {
            format!(
                "/proc/PID/fd refused for processes of {}: their connections are not counted and \
                 their listen queues (rows W3, X1) are absent; give the exporter CAP_SYS_PTRACE \
                 and CAP_DAC_READ_SEARCH or run it as root (see stack_sockets_unreadable_processes)",
                refused.join(", ")
            )
        });
        self.unreadable.set("sockets collector", why);
    }
}

impl Processes {
    /// Counts a process of `service` the exporter may not read, and notes its user.
    fn refused(&mut self, service: usize, pid_dir: &Path) {
        self.unreadable[service] += 1;
        if let Ok(meta) = std::fs::metadata(pid_dir) {
            self.unreadable_uids
                .insert(std::os::unix::fs::MetadataExt::uid(&meta));
        }
    }
}

/// Listeners on planned ports in the exporter's own namespace that no service owns.
fn emit_unowned(
    out: &mut MetricSet,
    own: &Namespace,
    owners: &HashMap<u64, Owner>,
    unreadable_uids: &HashSet<u32>,
) {
    for (port, class, service) in unowned_listeners(&own.listeners, owners, unreadable_uids) {
        listen_info(out, service, &port.to_string(), class);
    }
}

/// Port, address class and `service` label of each planned-port TCP listener no service owns:
/// "unreadable" when its user is that of a process the exporter could not read, else "unknown".
fn unowned_listeners(
    listeners: &[ListenSocket],
    owners: &HashMap<u64, Owner>,
    unreadable_uids: &HashSet<u32>,
) -> BTreeSet<(u16, &'static str, &'static str)> {
    listeners
        .iter()
        .filter(|l| !owners.contains_key(&l.inode))
        .filter_map(|l| match l.address {
            Address::Tcp { local, port } if PLANNED_PORTS.contains(&port) => {
                let service = if unreadable_uids.contains(&l.uid) {
                    UNREADABLE_SERVICE
                } else {
                    UNKNOWN_SERVICE
                };
                Some((port, address_class(&local), service))
            }
            _ => None,
        })
        .collect()
}

const QUEUE_LENGTH_HELP: &str = "Connections waiting in the accept queue of the service's listening sockets on this port (the Gunicorn request queue).";
const QUEUE_LIMIT_HELP: &str =
    "Accept-queue limit (the listen backlog) of the service's listening sockets on this port.";
const LISTEN_INFO_HELP: &str = "1 per port a service listens on; address_class is loopback (127.0.0.0/8, ::1, Unix socket), any (0.0.0.0, ::) or other. service=\"unknown\" for a planned port (3306, 5432, 6379, 8000) no watched service owns; service=\"unreadable\" when its owner may be a watched process the exporter may not read (see stack_sockets_unreadable_processes).";
const UNREADABLE_HELP: &str = "Processes of the service whose /proc/PID/fd or ns/net the exporter may not read (it lacks root or CAP_SYS_PTRACE): the listeners only they hold, with their queues and connections, are missing from the other series. 0 when every process was read.";

fn declare(out: &mut MetricSet) {
    out.declare_gauge("stack_service_listen_queue_length", QUEUE_LENGTH_HELP);
    out.declare_gauge("stack_service_listen_queue_limit", QUEUE_LIMIT_HELP);
    out.declare_gauge("stack_service_listen_info", LISTEN_INFO_HELP);
    out.declare_gauge("stack_sockets_unreadable_processes", UNREADABLE_HELP);
}

fn listen_info(out: &mut MetricSet, service: &str, port: &str, class: &str) {
    out.gauge(
        "stack_service_listen_info",
        LISTEN_INFO_HELP,
        vec![
            ("service", service.to_string().into()),
            ("port", port.to_string().into()),
            ("address_class", class.to_string().into()),
        ],
        1.0,
    );
}

fn emit_service(out: &mut MetricSet, name: &Arc<str>, found: &ServiceSockets) {
    if found.connections.is_empty() {
        return; // not running
    }
    let labels = || vec![("service", name.into())];
    out.gauge(
        "stack_sockets_unreadable_processes",
        UNREADABLE_HELP,
        labels(),
        found.unreadable as f64,
    );
    out.gauge(
        "stack_service_connections",
        "Established connections the service's processes accepted on its listening ports and Unix sockets (connections still in the accept queue are in stack_service_listen_queue_length).",
        labels(),
        found.connections.iter().sum::<u64>() as f64,
    );
    out.gauge(
        "stack_service_connections_age_seconds",
        "How long ago the service's connections were counted: 0 when counted in this scrape; up to --collector.sockets.connections-max-age where a namespace holds 1000 connections or more, whose count is kept that long (counting costs the kernel about a microsecond per connection), and then made again after the scrape that finds it that old.",
        labels(),
        found.connections_age.as_secs_f64(),
    );
    out.gauge(
        "stack_service_instance_max_connections",
        "Established connections of the service's busiest instance (one container, one master and its workers).",
        labels(),
        found.connections.iter().copied().max().unwrap_or(0) as f64,
    );
    for (port, listener) in &found.listeners {
        let port_labels = || vec![("service", name.into()), ("port", port.clone().into())];
        if let Some(length) = listener.length {
            out.gauge(
                "stack_service_listen_queue_length",
                QUEUE_LENGTH_HELP,
                port_labels(),
                length as f64,
            );
        }
        if let Some(limit) = listener.limit {
            out.gauge(
                "stack_service_listen_queue_limit",
                QUEUE_LIMIT_HELP,
                port_labels(),
                limit as f64,
            );
        }
    }
    for (port, class) in &found.info {
        listen_info(out, name, port, class);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        for (address, class) in [
            ("127.0.0.53", "loopback"),
            ("0.0.0.0", "any"),
            ("::", "any"),
            ("10.0.0.5", "other"),
            ("fe80::1", "other"),
        ] {
            assert_eq!(address_class(&address.parse().unwrap()), class, "{address}");
        }
    }

    fn tcp_listener(inode: u64, local: &str, port: u16, uid: u32) -> ListenSocket {
        ListenSocket {
            inode,
            address: Address::Tcp {
                local: local.parse().unwrap(),
                port,
            },
            length: Some(0),
            limit: Some(128),
            uid,
        }
    }

    #[test]
    fn an_unowned_listener_of_an_unreadable_user_is_not_unknown() {
        let all = [
            tcp_listener(20117, "127.0.0.1", 6379, 106),
            tcp_listener(30001, "0.0.0.0", 8000, 0),
            tcp_listener(30002, "0.0.0.0", 8001, 106), // not a planned port
        ];
        let owners = HashMap::new();
        assert_eq!(
            unowned_listeners(&all, &owners, &HashSet::from_iter([106])),
            BTreeSet::from([
                (6379, "loopback", UNREADABLE_SERVICE),
                (8000, "any", UNKNOWN_SERVICE)
            ])
        );
        // Owned by a watched process that was read: not published here at all.
        let owners = HashMap::from_iter([(20117, (0, 0))]);
        assert_eq!(
            unowned_listeners(&all, &owners, &HashSet::default()),
            BTreeSet::from([(8000, "any", UNKNOWN_SERVICE)])
        );
    }

    #[test]
    fn a_service_listener_is_published_by_port_and_unix_path() {
        let mut found = ServiceSockets::default();
        found.add_listener(&tcp_listener(1, "127.0.0.1", 8000, 0));
        found.add_listener(&tcp_listener(2, "::1", 8000, 0));
        let unix = |inode, path: &str| ListenSocket {
            inode,
            address: Address::Unix(path.to_string()),
            length: Some(2),
            limit: None,
            uid: 0,
        };
        found.add_listener(&unix(3, "/run/app.sock"));
        found.add_listener(&unix(4, "/run/gunicorn.ctl"));
        found.add_listener(&unix(5, ""));
        let ports: Vec<&str> = found.listeners.keys().map(String::as_str).collect();
        assert_eq!(ports, ["8000", "unix:/run/app.sock"]);
        assert_eq!(found.listeners["8000"].limit, Some(256));
        assert_eq!(found.listeners["unix:/run/app.sock"].length, Some(2));
        assert_eq!(found.listeners["unix:/run/app.sock"].limit, None);
        assert!(found
            .info
            .contains(&("unix:/run/app.sock".to_string(), "loopback")));
    }

    #[test]
    fn only_the_exact_control_socket_name_is_a_control_socket() {
        for path in [
            "/root/.gunicorn/gunicorn.ctl",
            "/run/user/1000/gunicorn.ctl",
            "gunicorn.ctl",
        ] {
            assert!(is_control_socket(path), "{path}");
        }
        for path in [
            "/run/gunicorn.sock",
            "/run/gunicorn.ctl.sock",
            "/run/app/my-gunicorn.ctl",
            "/run/gunicorn.ctl/app.sock",
            "@gunicorn.ctl",
            "",
        ] {
            assert!(!is_control_socket(path), "{path}");
        }
    }

    #[test]
    fn listeners_of_a_port_add_up() {
        let mut l = Listener::default();
        l.add(Some(3), Some(128), true);
        l.add(Some(2), Some(128), false);
        assert_eq!(
            l,
            Listener {
                length: Some(5),
                limit: Some(256)
            }
        );
        l.add(Some(1), None, false);
        assert_eq!(l.limit, None);
    }
}
