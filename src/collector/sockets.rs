//! Listening sockets and connections per service (THRESHOLDS.md rows W3, X1, C5, C6).
//!
//! Processes are matched to services and grouped into instances exactly as the services collector
//! does ([`Services::instance_pids`]). A service's sockets are the `socket:[inode]` links in its
//! processes' /proc/PID/fd; each inode is looked up in the socket tables of the process's own
//! network namespace, so a service in a container is seen as it sees itself: TCP sockets and
//! listener queues with their limits (the backlog) from sock_diag netlink (src/sockdiag.rs), Unix
//! sockets from /proc/PID/net/unix. Where netlink is refused, TCP comes from /proc/PID/net/tcp{,6}
//! and only the queue length of TCP listeners is published.
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use crate::collector::services::{ScrapeKey, Services};
use crate::logging::Condition;
use crate::metrics::MetricSet;
use crate::proc::ProcFs;
use crate::sockdiag::{self, Queue};

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

const TCP_ESTABLISHED: u8 = 0x01;
const TCP_LISTEN: u8 = 0x0A;

#[derive(Debug)]
pub struct Sockets {
    procfs: ProcFs,
    services: Arc<Services>,
    /// Logged once while some services' processes cannot be read.
    unreadable: Condition,
}

/// One line of /proc/net/tcp or tcp6.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpSocket {
    pub inode: u64,
    pub local: IpAddr,
    pub port: u16,
    pub state: u8,
    /// For a listener, the accept queue's current length.
    pub rx_queue: u32,
    /// The user that created the socket.
    pub uid: u32,
}

/// One line of /proc/net/unix.
#[derive(Debug, Clone, PartialEq)]
pub struct UnixSocket {
    pub inode: u64,
    pub listening: bool,
    pub connected: bool,
    pub path: String,
}

pub fn parse_tcp_table(text: &str) -> Vec<TcpSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (address, port) = fields.get(1)?.split_once(':')?;
            let (_, rx_queue) = fields.get(4)?.split_once(':')?;
            Some(TcpSocket {
                inode: fields.get(9)?.parse().ok()?,
                local: parse_hex_address(address)?,
                port: u16::from_str_radix(port, 16).ok()?,
                state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
                rx_queue: u32::from_str_radix(rx_queue, 16).ok()?,
                uid: fields.get(7)?.parse().ok()?,
            })
        })
        .collect()
}

/// The kernel prints each 32-bit word of the address as the native-endian integer it holds.
fn parse_hex_address(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let digits = hex.get(i.checked_mul(8)?..i.checked_mul(8)?.checked_add(8)?)?;
        Some(u32::from_str_radix(digits, 16).ok()?.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let [a, b, c, d] = [word(0)?, word(1)?, word(2)?, word(3)?];
            let bytes: Vec<u8> = [a, b, c, d].concat();
            let bytes: [u8; 16] = bytes.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

pub fn parse_unix_table(text: &str) -> Vec<UnixSocket> {
    const SO_ACCEPTCON: u32 = 0x0001_0000;
    const SS_CONNECTED: &str = "03";
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode [Path]
            let mut fields = line.split_whitespace();
            let flags = u32::from_str_radix(fields.nth(3)?, 16).ok()?;
            let state = fields.nth(1)?;
            let inode = fields.next()?.parse().ok()?;
            Some(UnixSocket {
                inode,
                listening: flags & SO_ACCEPTCON != 0,
                connected: state == SS_CONNECTED,
                path: fields.collect::<Vec<_>>().join(" "),
            })
        })
        .collect()
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

/// Whether an error says the exporter may not read the process (rather than that it is gone).
fn is_refusal(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::PermissionDenied
}

/// The socket inodes among a process's open files.
fn socket_inodes(pid_dir: &Path) -> std::io::Result<Vec<u64>> {
    let entries = std::fs::read_dir(pid_dir.join("fd"))?;
    Ok(entries
        .filter_map(|entry| {
            let target = std::fs::read_link(entry.ok()?.path()).ok()?;
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect())
}

/// The socket tables of one network namespace, read through one of its processes.
#[derive(Debug, Default)]
struct Namespace {
    tcp: HashMap<u64, TcpSocket>,
    unix: HashMap<u64, UnixSocket>,
    /// From sock_diag; `None` when it was refused.
    queues: Option<HashMap<u64, Queue>>,
}

impl Namespace {
    /// `pid_dir` is /proc/PID (or /proc/self); `own` says the namespace is the exporter's. TCP
    /// sockets come from sock_diag when it answers, else from /proc/PID/net/tcp{,6}.
    fn read(pid_dir: &Path, own: bool) -> Namespace {
        let read = |name: &str| crate::proc::read_file(&pid_dir.join("net").join(name));
        let ns_path = pid_dir.join("ns/net");
        let mut namespace = Namespace {
            unix: read("unix")
                .map(|t| parse_unix_table(&t))
                .unwrap_or_default()
                .into_iter()
                .map(|s| (s.inode, s))
                .collect(),
            ..Namespace::default()
        };
        match sockdiag::snapshot((!own).then_some(ns_path.as_path())) {
            Ok(snapshot) => {
                for s in snapshot.tcp {
                    let rx_queue = snapshot.queues.get(&s.inode).map_or(0, |q| q.length);
                    namespace.tcp.insert(
                        s.inode,
                        TcpSocket {
                            inode: s.inode,
                            local: s.local,
                            port: s.port,
                            state: s.state,
                            rx_queue,
                            uid: s.uid,
                        },
                    );
                }
                namespace.queues = Some(snapshot.queues);
            }
            Err(e) => {
                log::debug!("sock_diag in {}: {e}; reading /proc", ns_path.display());
                for table in ["tcp", "tcp6"] {
                    for socket in read(table).map(|t| parse_tcp_table(&t)).unwrap_or_default() {
                        namespace.tcp.insert(socket.inode, socket);
                    }
                }
            }
        }
        namespace
    }
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
}

impl Sockets {
    pub fn new(procfs: ProcFs, services: Arc<Services>) -> Sockets {
        Sockets {
            procfs,
            services,
            unreadable: Condition::default(),
        }
    }

    pub fn collect(&self, scrape: ScrapeKey) -> anyhow::Result<MetricSet> {
        let groups = self.services.instance_pids(scrape)?;
        let own_ns = std::fs::read_link(self.procfs.path("self/ns/net")).ok();

        // Every socket of every service's process: its owner and its namespace.
        let mut namespaces: Vec<Namespace> = Vec::new();
        let mut namespace_ids: HashMap<std::path::PathBuf, usize> = HashMap::new();
        let mut owners: HashMap<u64, (usize, usize, usize)> = HashMap::new();
        let mut unreadable = vec![0u64; groups.len()];
        // The users of the refused processes: a listener of theirs may be a service's own.
        let mut unreadable_uids = HashSet::new();
        for (service, (_, instances)) in groups.iter().enumerate() {
            for (instance, pids) in instances.iter().enumerate() {
                for &pid in pids {
                    let dir = self.procfs.pid_dir(pid);
                    let inodes = std::fs::read_link(dir.join("ns/net")).and_then(|ns| {
                        let own = own_ns.as_ref() == Some(&ns);
                        let inodes = socket_inodes(&dir)?;
                        let ns_index = *namespace_ids.entry(ns).or_insert_with(|| {
                            namespaces.push(Namespace::read(&dir, own));
                            namespaces.len() - 1
                        });
                        Ok((ns_index, inodes))
                    });
                    match inodes {
                        Ok((ns_index, inodes)) => {
                            for inode in inodes {
                                owners.entry(inode).or_insert((service, instance, ns_index));
                            }
                        }
                        Err(e) if is_refusal(&e) => {
                            unreadable[service] += 1;
                            if let Ok(meta) = std::fs::metadata(&dir) {
                                unreadable_uids.insert(std::os::unix::fs::MetadataExt::uid(&meta));
                            }
                        }
                        Err(_) => {} // gone since the listing
                    }
                }
            }
        }
        self.log_unreadable(&groups, &unreadable);

        let mut found: Vec<ServiceSockets> = groups
            .iter()
            .zip(&unreadable)
            .map(|((_, instances), &unreadable)| ServiceSockets {
                connections: vec![0; instances.len()],
                unreadable,
                ..ServiceSockets::default()
            })
            .collect();
        // Listeners first: they say which local ports and paths are each instance's.
        let mut instance_ports: HashSet<(usize, usize, u16)> = HashSet::new();
        let mut instance_paths: HashSet<(usize, usize, &str)> = HashSet::new();
        for (inode, &(service, instance, ns)) in &owners {
            let namespace = &namespaces[ns];
            let queue = namespace.queues.as_ref().and_then(|q| q.get(inode));
            let out = &mut found[service];
            if let Some(tcp) = namespace.tcp.get(inode).filter(|t| t.state == TCP_LISTEN) {
                let port = tcp.port.to_string();
                let first = !out.listeners.contains_key(&port);
                out.listeners.entry(port.clone()).or_default().add(
                    Some(u64::from(tcp.rx_queue)),
                    queue.map(|q| u64::from(q.limit)),
                    first,
                );
                out.info.insert((port, address_class(&tcp.local)));
                instance_ports.insert((service, instance, tcp.port));
            } else if let Some(unix) = namespace.unix.get(inode).filter(|u| u.listening) {
                // Unnamed listeners have no path to connect to; a control socket no client of
                // the app connects to (nor do its connections count: the path stays unknown).
                if unix.path.is_empty() || is_control_socket(&unix.path) {
                    continue;
                }
                let port = format!("unix:{}", unix.path);
                let first = !out.listeners.contains_key(&port);
                out.listeners.entry(port.clone()).or_default().add(
                    queue.map(|q| u64::from(q.length)),
                    queue.map(|q| u64::from(q.limit)),
                    first,
                );
                out.info.insert((port, "loopback"));
                instance_paths.insert((service, instance, unix.path.as_str()));
            }
        }
        // Then the connections accepted on those ports and paths, per instance.
        for (inode, &(service, instance, ns)) in &owners {
            let namespace = &namespaces[ns];
            let accepted = match (namespace.tcp.get(inode), namespace.unix.get(inode)) {
                (Some(tcp), _) => {
                    tcp.state == TCP_ESTABLISHED
                        && instance_ports.contains(&(service, instance, tcp.port))
                }
                (None, Some(unix)) => {
                    unix.connected
                        && !unix.listening
                        && instance_paths.contains(&(service, instance, unix.path.as_str()))
                }
                (None, None) => false,
            };
            if accepted {
                found[service].connections[instance] += 1;
            }
        }

        let mut out = MetricSet::default();
        declare(&mut out);
        for ((name, _), service) in groups.iter().zip(&found) {
            emit_service(&mut out, name, service);
        }
        let own = own_ns.and_then(|ns| namespace_ids.get(&ns)).copied();
        let own = match own {
            Some(index) => &namespaces[index],
            None => &Namespace::read(&self.procfs.path("self"), true),
        };
        emit_unowned(&mut out, own, &owners, &unreadable_uids);
        Ok(out)
    }

    /// One line when some services' processes start being unreadable, one when all are readable.
    fn log_unreadable(&self, groups: &[(String, Vec<Vec<u32>>)], unreadable: &[u64]) {
        let refused: Vec<&str> = groups
            .iter()
            .zip(unreadable)
            .filter(|(_, &count)| count > 0)
            .map(|((name, _), _)| name.as_str())
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

/// Listeners on planned ports in the exporter's own namespace that no service owns.
fn emit_unowned(
    out: &mut MetricSet,
    own: &Namespace,
    owners: &HashMap<u64, (usize, usize, usize)>,
    unreadable_uids: &HashSet<u32>,
) {
    for (port, class, service) in unowned_listeners(own.tcp.values(), owners, unreadable_uids) {
        listen_info(out, service, &port.to_string(), class);
    }
}

/// Port, address class and `service` label of each planned-port listener no service owns:
/// "unreadable" when its user is that of a process the exporter could not read, else "unknown".
fn unowned_listeners<'a>(
    sockets: impl Iterator<Item = &'a TcpSocket>,
    owners: &HashMap<u64, (usize, usize, usize)>,
    unreadable_uids: &HashSet<u32>,
) -> BTreeSet<(u16, &'static str, &'static str)> {
    sockets
        .filter(|s| s.state == TCP_LISTEN && PLANNED_PORTS.contains(&s.port))
        .filter(|s| !owners.contains_key(&s.inode))
        .map(|s| {
            let service = if unreadable_uids.contains(&s.uid) {
                UNREADABLE_SERVICE
            } else {
                UNKNOWN_SERVICE
            };
            (s.port, address_class(&s.local), service)
        })
        .collect()
}

const QUEUE_LENGTH_HELP: &str = "Connections waiting in the accept queue of the service's listening sockets on this port (the Gunicorn request queue).";
const QUEUE_LIMIT_HELP: &str =
    "Accept-queue limit (the listen backlog) of the service's listening sockets on this port.";
const LISTEN_INFO_HELP: &str = "1 per port a service listens on; address_class is loopback (127.0.0.0/8, ::1, Unix socket), any (0.0.0.0, ::) or other. service=\"unknown\" for a planned port (3306, 5432, 6379, 8000) no watched service owns; service=\"unreadable\" when its owner may be a watched process the exporter may not read (see stack_sockets_unreadable_processes).";
const UNREADABLE_HELP: &str = "Processes of the service whose /proc/PID/fd or ns/net the exporter may not read (it lacks root or CAP_SYS_PTRACE): their connections and listen queues are missing from the other series. 0 when every process was read.";

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
            ("service", service.to_string()),
            ("port", port.to_string()),
            ("address_class", class.to_string()),
        ],
        1.0,
    );
}

fn emit_service(out: &mut MetricSet, name: &str, found: &ServiceSockets) {
    if found.connections.is_empty() {
        return; // not running
    }
    let labels = || vec![("service", name.to_string())];
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
        "stack_service_instance_max_connections",
        "Established connections of the service's busiest instance (one container, one master and its workers).",
        labels(),
        found.connections.iter().copied().max().unwrap_or(0) as f64,
    );
    for (port, listener) in &found.listeners {
        let port_labels = || vec![("service", name.to_string()), ("port", port.clone())];
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

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000   106        0 20117 1 0000000000000000 100 0 0 10 0
   1: 00000000:1F40 00000000:0000 0A 00000000:00000005 00:00000000 00000000     0        0 30001 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F40 0100007F:D2B6 01 00000000:00000000 00:00000000 00000000     0        0 30002 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 40002 1 0000000000000000 100 0 0 10 0
";
    const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 50001 /run/gunicorn.sock
0000000000000000: 00000003 00000000 00000000 0001 03 50002 /run/gunicorn.sock
0000000000000000: 00000003 00000000 00000000 0001 03 50003
0000000000000000: 00000002 00000000 00010000 0001 01 50004 @/tmp/.X11-unix/X0
";

    #[test]
    fn tcp_tables_parse() {
        let sockets = parse_tcp_table(TCP);
        assert_eq!(sockets.len(), 3);
        assert_eq!(sockets[0].local, IpAddr::from([127, 0, 0, 1]));
        assert_eq!((sockets[0].port, sockets[0].state), (6379, TCP_LISTEN));
        assert_eq!((sockets[1].port, sockets[1].rx_queue), (8000, 5));
        assert_eq!(address_class(&sockets[1].local), "any");
        assert_eq!(sockets[2].state, TCP_ESTABLISHED);
        let v6 = parse_tcp_table(TCP6);
        assert_eq!(v6[0].local, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(address_class(&v6[0].local), "loopback");
        assert_eq!(v6[1].local, "::ffff:127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(address_class(&v6[1].local), "loopback");
    }

    #[test]
    fn unix_table_parses() {
        let sockets = parse_unix_table(UNIX);
        assert_eq!(sockets.len(), 4);
        assert!(sockets[0].listening && !sockets[0].connected);
        assert_eq!(sockets[0].path, "/run/gunicorn.sock");
        assert!(sockets[1].connected && sockets[1].path == "/run/gunicorn.sock");
        assert_eq!(sockets[2].path, "");
    }

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

    #[test]
    fn an_unowned_listener_of_an_unreadable_user_is_not_unknown() {
        let sockets = parse_tcp_table(TCP);
        let mut planned = sockets[0].clone(); // 127.0.0.1:6379, uid 106
        planned.port = 6379;
        let mut other_user = sockets[1].clone(); // 0.0.0.0:8000, uid 0
        other_user.port = 8000;
        let owners = HashMap::new();
        let all = [planned.clone(), other_user.clone()];
        assert_eq!(
            unowned_listeners(all.iter(), &owners, &HashSet::from([106])),
            BTreeSet::from([
                (6379, "loopback", UNREADABLE_SERVICE),
                (8000, "any", UNKNOWN_SERVICE)
            ])
        );
        // Owned by a watched process that was read: not published here at all.
        let owners = HashMap::from([(planned.inode, (0, 0, 0))]);
        assert_eq!(
            unowned_listeners(all.iter(), &owners, &HashSet::new()),
            BTreeSet::from([(8000, "any", UNKNOWN_SERVICE)])
        );
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
    fn tcp_table_parser_survives_hostile_lines() {
        for line in [
            "",
            "x",
            "0: :",
            "0: 0100007F:18EB 0:0 0A 0:0 0 0 106 0 1",
            "0: FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF:1 a b c d e f g h",
        ] {
            let _ = parse_tcp_table(&format!("header\n{line}\n"));
            let _ = parse_unix_table(&format!("header\n{line}\n"));
        }
        assert_eq!(
            parse_hex_address("0100007F"),
            Some(IpAddr::from([127, 0, 0, 1]))
        );
        assert_eq!(parse_hex_address("é100007F"), None);
        assert_eq!(parse_hex_address("0000000000000000000000000100000é"), None);
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
