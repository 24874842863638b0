//! The sockets of one network namespace: its listeners, and the connections accepted on the
//! services' listeners. From sock_diag netlink, asked inside the namespace; where netlink is
//! refused, from the namespace's /proc/PID/net/tcp{,6} and /proc/PID/net/unix, read whole.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use foldhash::{HashMap, HashMapExt};

use crate::sockdiag::{self, Family, Queue, SockDiag, TcpSocket};

/// Where a listening socket listens.
#[derive(Debug, Clone, PartialEq)]
pub enum Address {
    Tcp {
        local: IpAddr,
        port: u16,
    },
    /// The path as /proc/net/unix prints it; empty for an unnamed listener.
    Unix(String),
}

/// A listening socket of one namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenSocket {
    pub inode: u64,
    pub address: Address,
    /// Accept-queue length and limit (the backlog), where the source says them.
    pub length: Option<u64>,
    pub limit: Option<u64>,
    /// The user that created the socket (TCP only).
    pub uid: u32,
}

/// Where a namespace's connections are counted from.
#[derive(Debug)]
enum Source {
    /// Asked again for the connections on the owned listeners' ports and paths.
    Netlink(SockDiag),
    /// Netlink was refused: every socket of the namespace's tables.
    Proc {
        tcp: Vec<TcpSocket>,
        unix: Vec<UnixSocket>,
    },
}

/// The sockets of one network namespace, read through one of its processes.
#[derive(Debug)]
pub struct Namespace {
    /// What /proc/PID/ns/net links to: the namespace's identity across scrapes.
    pub link: PathBuf,
    /// The /proc/PID directory it was read through.
    dir: PathBuf,
    pub listeners: Vec<ListenSocket>,
    source: Source,
}

/// Whose a listener is: a service and one of its instances, by index.
pub type Owner = (usize, usize);

impl Namespace {
    /// The namespace `link` read through `pid_dir` (/proc/PID, or /proc/self when `own`, which
    /// says the namespace is the exporter's: netlink needs no setns there).
    pub fn read(link: PathBuf, pid_dir: PathBuf, own: bool) -> Namespace {
        let ns_path = pid_dir.join("ns/net");
        let netlink = SockDiag::open((!own).then_some(ns_path.as_path()))
            .and_then(|mut diag| Ok((listeners_from_netlink(&mut diag)?, diag)));
        let (listeners, source) = match netlink {
            Ok((listeners, diag)) => (listeners, Source::Netlink(diag)),
            Err(e) => {
                log::debug!("sock_diag in {}: {e}; reading /proc", ns_path.display());
                let (tcp, unix) = read_tables(&pid_dir);
                (
                    listeners_from_tables(&tcp, &unix),
                    Source::Proc { tcp, unix },
                )
            }
        };
        Namespace {
            link,
            dir: pid_dir,
            listeners,
            source,
        }
    }

    /// A namespace with these listeners and no connections, for tests of what uses it.
    #[cfg(test)]
    pub fn with_listeners(link: &str, inodes: &[u64]) -> Namespace {
        let listeners = inodes.iter().map(|&inode| ListenSocket {
            inode,
            address: Address::Unix(format!("/run/{inode}.sock")),
            length: None,
            limit: None,
            uid: 0,
        });
        Namespace {
            link: PathBuf::from(link),
            dir: PathBuf::from("/nonexistent"),
            listeners: listeners.collect(),
            source: Source::Proc {
                tcp: Vec::new(),
                unix: Vec::new(),
            },
        }
    }

    /// A namespace with this one's listeners and the source its connections are counted from,
    /// which this one gives up (its own count is then of nothing): for a count made after the
    /// scrape, by a refresh.
    pub fn take_for_count(&mut self) -> Namespace {
        let nothing = Source::Proc {
            tcp: Vec::new(),
            unix: Vec::new(),
        };
        Namespace {
            link: self.link.clone(),
            dir: self.dir.clone(),
            listeners: self.listeners.clone(),
            source: std::mem::replace(&mut self.source, nothing),
        }
    }

    /// The established connections accepted on each owned listener, added up by owner.
    /// `owners` maps listener inodes to their owners; `counted` says whether the connections of
    /// a Unix listener with that path count (not a control socket's).
    pub fn connections(
        &mut self,
        owners: &HashMap<u64, Owner>,
        counted: impl Fn(&str) -> bool,
    ) -> Vec<(Owner, u64)> {
        let mut tcp = TcpListeners::owned(&self.listeners, owners);
        let mut unix = UnixListeners::owned(&self.listeners, owners, counted);
        let result = match &mut self.source {
            Source::Netlink(diag) => count_from_netlink(diag, &mut tcp, &mut unix),
            Source::Proc {
                tcp: table,
                unix: unix_table,
            } => {
                count_from_tables(table, unix_table, &mut tcp, &mut unix);
                Ok(())
            }
        };
        if let Err(e) = result {
            log::debug!(
                "sock_diag in {}: {e}; counting from /proc",
                self.dir.display()
            );
            tcp.counts.iter_mut().for_each(|c| *c = 0);
            unix.counts.iter_mut().for_each(|c| *c = 0);
            let (table, unix_table) = read_tables(&self.dir);
            count_from_tables(&table, &unix_table, &mut tcp, &mut unix);
        }
        let tcp = tcp.candidates.iter().zip(&tcp.counts);
        let tcp = tcp.filter_map(|(c, &n)| Some((c.owner?, n)));
        let unix = unix.owners.iter().copied().zip(unix.counts.iter().copied());
        tcp.chain(unix).filter(|&(_, n)| n > 0).collect()
    }
}

/// The owned Unix listeners whose connections count, by path, with the connections counted for
/// each.
#[derive(Debug)]
struct UnixListeners<'a> {
    index: HashMap<&'a str, usize>,
    owners: Vec<Owner>,
    counts: Vec<u64>,
}

impl<'a> UnixListeners<'a> {
    fn owned(
        listeners: &'a [ListenSocket],
        owners: &HashMap<u64, Owner>,
        counted: impl Fn(&str) -> bool,
    ) -> UnixListeners<'a> {
        let mut found = UnixListeners {
            index: HashMap::new(),
            owners: Vec::new(),
            counts: Vec::new(),
        };
        for l in listeners {
            let (Address::Unix(path), Some(&owner)) = (&l.address, owners.get(&l.inode)) else {
                continue;
            };
            if path.is_empty() || !counted(path) || found.index.contains_key(path.as_str()) {
                continue;
            }
            found.index.insert(path, found.owners.len());
            found.owners.push(owner);
            found.counts.push(0);
        }
        found
    }

    /// Counts a connected socket named `path` (an accepted one carries its listener's path);
    /// `inode` 0 is one still in the accept queue.
    fn count(&mut self, path: &str, inode: u64) {
        if let (true, Some(&i)) = (inode != 0, self.index.get(path)) {
            self.counts[i] += 1;
        }
    }
}

/// A listener that may have accepted a service's connections.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    local: IpAddr,
    port: u16,
    owner: Option<Owner>,
}

/// The TCP listeners on the owned listeners' ports (another program's listener on such a port,
/// bound to a more specific address, takes the connections to that address), with the
/// connections counted for each.
#[derive(Debug)]
struct TcpListeners {
    candidates: Vec<Candidate>,
    counts: Vec<u64>,
    /// The owned listeners' ports and families: what the kernel is asked for.
    ports: Vec<u16>,
    families: Vec<Family>,
}

impl TcpListeners {
    fn owned(listeners: &[ListenSocket], owners: &HashMap<u64, Owner>) -> TcpListeners {
        let tcp = listeners.iter().filter_map(|l| match l.address {
            Address::Tcp { local, port } => Some(Candidate {
                local,
                port,
                owner: owners.get(&l.inode).copied(),
            }),
            Address::Unix(_) => None,
        });
        let tcp: Vec<Candidate> = tcp.collect();
        let owned = || tcp.iter().filter(|c| c.owner.is_some());
        let mut ports: Vec<u16> = owned().map(|c| c.port).collect();
        ports.sort_unstable();
        ports.dedup();
        let mut families: Vec<Family> = owned().map(|c| Family::of(&c.local)).collect();
        families.sort_unstable();
        families.dedup();
        let candidates: Vec<Candidate> = tcp
            .into_iter()
            .filter(|c| ports.binary_search(&c.port).is_ok())
            .collect();
        TcpListeners {
            counts: vec![0; candidates.len()],
            candidates,
            ports,
            families,
        }
    }

    /// Counts a connection to `local`:`port` for the listener that accepted it, found as the
    /// kernel finds it: of the listeners of the connection's family on its port (an accepted
    /// socket has its listener's family: an IPv4 client of a dual-stack `[::]` listener is an
    /// IPv6 socket with a v4-mapped address), the one bound to its address, else the one bound
    /// to every address. `inode` 0 is a connection still in the accept queue: not counted here.
    fn count(&mut self, local: IpAddr, port: u16, inode: u64) {
        if inode == 0 {
            return;
        }
        let mut wildcard = None;
        for (i, c) in self.candidates.iter().enumerate() {
            if c.port != port || Family::of(&c.local) != Family::of(&local) {
                continue;
            }
            if c.local == local {
                self.counts[i] += 1;
                return;
            }
            if c.local.is_unspecified() && wildcard.is_none() {
                wildcard = Some(i);
            }
        }
        if let Some(i) = wildcard {
            self.counts[i] += 1;
        }
    }
}

fn count_from_netlink(
    diag: &mut SockDiag,
    tcp: &mut TcpListeners,
    unix: &mut UnixListeners,
) -> io::Result<()> {
    let (families, ports) = (tcp.families.clone(), tcp.ports.clone());
    diag.established_tcp(&families, &ports, |s| tcp.count(s.local, s.port, s.inode))?;
    if !unix.owners.is_empty() {
        diag.connected_unix(|inode, path| unix.count(path, inode))?;
    }
    Ok(())
}

fn count_from_tables(
    table: &[TcpSocket],
    unix_table: &[UnixSocket],
    tcp: &mut TcpListeners,
    unix: &mut UnixListeners,
) {
    for s in table
        .iter()
        .filter(|s| s.state == sockdiag::TCP_ESTABLISHED)
    {
        tcp.count(s.local, s.port, s.inode);
    }
    for u in unix_table.iter().filter(|u| u.connected && !u.listening) {
        unix.count(&u.path, u.inode);
    }
}

/// Every listening TCP and Unix socket of the netlink socket's namespace.
fn listeners_from_netlink(diag: &mut SockDiag) -> io::Result<Vec<ListenSocket>> {
    let tcp = diag.tcp_listeners()?.into_iter().map(|s| ListenSocket {
        inode: s.inode,
        address: Address::Tcp {
            local: s.local,
            port: s.port,
        },
        length: Some(u64::from(s.queue.length)),
        limit: Some(u64::from(s.queue.limit)),
        uid: s.uid,
    });
    let mut listeners: Vec<ListenSocket> = tcp.collect();
    listeners.extend(diag.unix_listeners()?.into_iter().map(|u| ListenSocket {
        inode: u.inode,
        address: Address::Unix(u.path),
        length: u.queue.map(|q| u64::from(q.length)),
        limit: u.queue.map(|q| u64::from(q.limit)),
        uid: 0,
    }));
    Ok(listeners)
}

/// The TCP (IPv4 and IPv6) and Unix tables of the namespace of /proc/PID (missing ones empty).
fn read_tables(pid_dir: &Path) -> (Vec<TcpSocket>, Vec<UnixSocket>) {
    let read = |name: &str| crate::proc::read_file(&pid_dir.join("net").join(name)).ok();
    let mut tcp = Vec::new();
    for table in ["tcp", "tcp6"] {
        tcp.extend(read(table).map(|t| parse_tcp_table(&t)).unwrap_or_default());
    }
    let unix = read("unix")
        .map(|t| parse_unix_table(&t))
        .unwrap_or_default();
    (tcp, unix)
}

/// The listeners of the tables: TCP with their queue length only (/proc/net/tcp has no limit),
/// Unix without queue figures.
fn listeners_from_tables(tcp: &[TcpSocket], unix: &[UnixSocket]) -> Vec<ListenSocket> {
    let tcp = tcp
        .iter()
        .filter(|s| s.state == sockdiag::TCP_LISTEN)
        .map(|s| ListenSocket {
            inode: s.inode,
            address: Address::Tcp {
                local: s.local,
                port: s.port,
            },
            length: Some(u64::from(s.queue.length)),
            limit: None,
            uid: s.uid,
        });
    let unix = unix.iter().filter(|u| u.listening).map(|u| ListenSocket {
        inode: u.inode,
        address: Address::Unix(u.path.clone()),
        length: None,
        limit: None,
        uid: 0,
    });
    tcp.chain(unix).collect()
}

/// One line of /proc/net/unix.
#[derive(Debug, Clone, PartialEq)]
pub struct UnixSocket {
    pub inode: u64,
    pub listening: bool,
    pub connected: bool,
    pub path: String,
}

/// The sockets of /proc/net/tcp or tcp6, as sock_diag would give them, except that the table
/// has no backlog: a listener's queue has its length (rx_queue) and a limit of 0, unknown.
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
                uid: fields.get(7)?.parse().ok()?,
                queue: Queue {
                    length: u32::from_str_radix(rx_queue, 16).ok()?,
                    limit: 0,
                },
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
        assert_eq!(
            (sockets[0].port, sockets[0].state),
            (6379, sockdiag::TCP_LISTEN)
        );
        assert_eq!((sockets[1].port, sockets[1].queue.length), (8000, 5));
        assert_eq!(sockets[1].local, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(sockets[2].state, sockdiag::TCP_ESTABLISHED);
        let v6 = parse_tcp_table(TCP6);
        assert_eq!(v6[0].local, "::1".parse::<IpAddr>().unwrap());
        assert_eq!(v6[1].local, "::ffff:127.0.0.1".parse::<IpAddr>().unwrap());
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

    /// A namespace read from the fixture tables, as where netlink is refused.
    fn from_tables(tcp: &str, unix: &str) -> Namespace {
        let (tcp, unix) = (parse_tcp_table(tcp), parse_unix_table(unix));
        Namespace {
            link: PathBuf::from("net:[1]"),
            dir: PathBuf::from("/nonexistent"),
            listeners: listeners_from_tables(&tcp, &unix),
            source: Source::Proc { tcp, unix },
        }
    }

    #[test]
    fn tables_give_listeners_with_their_queue_length_only() {
        let ns = from_tables(TCP, UNIX);
        let inodes: Vec<u64> = ns.listeners.iter().map(|l| l.inode).collect();
        assert_eq!(inodes, [20117, 30001, 50001, 50004]);
        assert_eq!(
            (ns.listeners[1].length, ns.listeners[1].limit),
            (Some(5), None)
        );
        assert_eq!(ns.listeners[0].uid, 106);
        assert_eq!(
            ns.listeners[2].address,
            Address::Unix("/run/gunicorn.sock".to_string())
        );
    }

    #[test]
    fn connections_belong_to_the_listener_that_accepted_them() {
        let mut ns = from_tables(TCP, UNIX);
        // 0.0.0.0:8000 and /run/gunicorn.sock are service 0's second instance; 6379 nobody's.
        let owners = HashMap::from_iter([(30001, (0, 1)), (50001, (0, 1))]);
        let mut counts = ns.connections(&owners, |_| true);
        counts.sort_unstable();
        assert_eq!(counts, [((0, 1), 1), ((0, 1), 1)]);
        // A Unix path whose connections do not count (a control socket's).
        assert_eq!(ns.connections(&owners, |_| false), [((0, 1), 1)]);
        assert_eq!(ns.connections(&HashMap::new(), |_| true), []);
    }

    fn candidate(local: &str, port: u16, owner: Option<Owner>) -> Candidate {
        Candidate {
            local: local.parse().unwrap(),
            port,
            owner,
        }
    }

    fn accepted_by(listeners: &[Candidate], local: &str, port: u16, inode: u64) -> Vec<u64> {
        let mut tcp = TcpListeners {
            candidates: listeners.to_vec(),
            counts: vec![0; listeners.len()],
            ports: vec![],
            families: vec![],
        };
        tcp.count(local.parse().unwrap(), port, inode);
        tcp.counts
    }

    #[test]
    fn a_connection_goes_to_the_most_specific_listener_of_its_family() {
        let listeners = [
            candidate("0.0.0.0", 8000, Some((0, 0))),
            candidate("10.0.0.5", 8000, None), // another program on one address
            candidate("::", 8000, Some((0, 1))),
        ];
        assert_eq!(accepted_by(&listeners, "127.0.0.1", 8000, 7), [1, 0, 0]);
        assert_eq!(accepted_by(&listeners, "10.0.0.5", 8000, 7), [0, 1, 0]);
        // An IPv4 client of the dual-stack listener: an IPv6 socket, v4-mapped.
        assert_eq!(
            accepted_by(&listeners, "::ffff:10.0.0.5", 8000, 7),
            [0, 0, 1]
        );
        assert_eq!(accepted_by(&listeners, "::1", 8000, 7), [0, 0, 1]);
        // Another port; still in the accept queue (no inode yet): nobody's.
        assert_eq!(accepted_by(&listeners, "127.0.0.1", 8001, 7), [0, 0, 0]);
        assert_eq!(accepted_by(&listeners, "127.0.0.1", 8000, 0), [0, 0, 0]);
        // Without a wildcard listener of its family, a connection to another address is nobody's.
        let specific = [candidate("127.0.0.1", 6379, Some((1, 0)))];
        assert_eq!(accepted_by(&specific, "127.0.0.2", 6379, 7), [0]);
    }

    #[test]
    fn only_the_owned_listeners_ports_and_families_are_asked_for() {
        let listener = |inode, local: &str, port| ListenSocket {
            inode,
            address: Address::Tcp {
                local: local.parse().unwrap(),
                port,
            },
            length: None,
            limit: None,
            uid: 0,
        };
        let listeners = [
            listener(1, "127.0.0.1", 6379),
            listener(2, "127.0.0.1", 8000),
            listener(3, "10.0.0.5", 6379),
            listener(4, "127.0.0.1", 6380),
        ];
        let tcp = TcpListeners::owned(&listeners, &HashMap::from_iter([(1, (0, 0))]));
        assert_eq!(tcp.ports, [6379]);
        assert_eq!(tcp.families, [Family::V4]);
        let ports: Vec<u16> = tcp.candidates.iter().map(|c| c.port).collect();
        assert_eq!(ports, [6379, 6379]);
        let owned = TcpListeners::owned(&listeners, &HashMap::new());
        assert!(owned.ports.is_empty() && owned.families.is_empty());
    }
}
