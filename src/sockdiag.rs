//! TCP sockets and the accept queues of listening sockets from the kernel's sock_diag netlink
//! interface, the source `ss` reads: for a listener, the current queue (`rqueue`) and its limit,
//! the backlog (`wqueue`). /proc/net/tcp gives the queue but not the limit, /proc/net/unix
//! neither, and /proc/net/tcp lists every TIME_WAIT socket (20 ms of kernel time for 3 000).
//!
//! A netlink socket sees the sockets of the network namespace it was created in. For a service in
//! a container, [`snapshot`] creates it inside the service's namespace: a short-lived thread
//! enters the namespace with setns(2) (needs CAP_SYS_ADMIN, i.e. root) and creates the socket
//! there; the socket stays bound to that namespace after the thread ends.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Queue figures of one listening socket, by inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    pub length: u32,
    pub limit: u32,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_ESTABLISHED: u32 = 1;
const TCP_LISTEN: u32 = 10;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_RQLEN: u16 = 4;

/// A TCP socket as sock_diag reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpSocket {
    pub inode: u64,
    pub local: IpAddr,
    pub port: u16,
    pub state: u8,
    /// The user that created the socket: who owns a listener whose process cannot be read.
    pub uid: u32,
}

/// What one namespace's sock_diag dump found: listening and established TCP sockets, and the
/// queue of every listening TCP and Unix socket by inode.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub tcp: Vec<TcpSocket>,
    pub queues: HashMap<u64, Queue>,
}

/// The listening and established TCP sockets (IPv4 and IPv6) and the listening Unix sockets'
/// queues in the network namespace of `netns` (a `/proc/PID/ns/net` path), or of this process
/// when `None`. The kernel filters by state, so the TIME_WAIT crowd of a busy host that makes
/// /proc/net/tcp slow to read costs nothing here.
pub fn snapshot(netns: Option<&Path>) -> io::Result<Snapshot> {
    let socket = match netns {
        None => netlink_socket()?,
        Some(path) => {
            let path = path.to_path_buf();
            std::thread::scope(|s| s.spawn(move || socket_in_namespace(&path)).join())
                .map_err(|_| io::Error::other("namespace thread panicked"))??
        }
    };
    let mut found = Snapshot::default();
    let states = (1u32 << TCP_LISTEN) | (1u32 << TCP_ESTABLISHED);
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        let mut request = Vec::with_capacity(56);
        request.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
        request.extend_from_slice(&states.to_ne_bytes());
        request.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: any
        dump(&socket, &request, |msg| {
            if let Some((socket, queue)) = parse_inet_diag(msg) {
                if let Some(queue) = queue {
                    found.queues.insert(socket.inode, queue);
                }
                found.tcp.push(socket);
            }
        })?;
    }
    let mut request = Vec::with_capacity(24);
    request.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    request.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes()); // any inode
    request.extend_from_slice(&UDIAG_SHOW_RQLEN.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]); // no cookie
    dump(&socket, &request, |msg| {
        if let Some((inode, queue)) = parse_unix_diag(msg) {
            found.queues.insert(inode, queue);
        }
    })?;
    Ok(found)
}

/// The native-endian u32 at `at`, if the message is long enough.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(word.try_into().ok()?))
}

/// One inet_diag_msg: family, state, timer, retrans, sockid (sport, dport, src[16], dst[16], if,
/// cookie[2]), expires, rqueue, wqueue, uid, inode. A listener's queue is rqueue of wqueue.
pub fn parse_inet_diag(msg: &[u8]) -> Option<(TcpSocket, Option<Queue>)> {
    let (&family, &state) = (msg.first()?, msg.get(1)?);
    let local = if family == libc::AF_INET as u8 {
        let v4: [u8; 4] = msg.get(8..12)?.try_into().ok()?;
        IpAddr::V4(Ipv4Addr::from(v4))
    } else {
        let v6: [u8; 16] = msg.get(8..24)?.try_into().ok()?;
        IpAddr::V6(Ipv6Addr::from(v6))
    };
    let port: [u8; 2] = msg.get(4..6)?.try_into().ok()?;
    let socket = TcpSocket {
        inode: u64::from(u32_at(msg, 68)?),
        local,
        port: u16::from_be_bytes(port),
        state,
        uid: u32_at(msg, 64)?,
    };
    let queue = (u32::from(state) == TCP_LISTEN).then_some(Queue {
        length: u32_at(msg, 56)?,
        limit: u32_at(msg, 60)?,
    });
    Some((socket, queue))
}

/// One unix_diag_msg (family, type, state, pad, inode, cookie[8]) and its attributes: the
/// listener's inode and queue, when the UNIX_DIAG_RQLEN attribute is there.
pub fn parse_unix_diag(msg: &[u8]) -> Option<(u64, Queue)> {
    let inode = u64::from(u32_at(msg, 4)?);
    let mut attrs = msg.get(16..)?;
    while let (Some(len), Some(kind)) = (attrs.get(0..2), attrs.get(2..4)) {
        let len = usize::from(u16::from_ne_bytes(len.try_into().ok()?));
        let kind = u16::from_ne_bytes(kind.try_into().ok()?);
        let attr = attrs.get(..len).filter(|_| len >= 4)?;
        if kind == UNIX_DIAG_RQLEN {
            let queue = Queue {
                length: u32_at(attr, 4)?,
                limit: u32_at(attr, 8)?,
            };
            return Some((inode, queue));
        }
        attrs = attrs.get(aligned(len)?..).unwrap_or_default();
    }
    None
}

/// Netlink messages and attributes are padded to 4 bytes.
fn aligned(len: usize) -> Option<usize> {
    Some(len.checked_add(3)? & !3)
}

/// What one netlink message said.
#[derive(Debug, PartialEq)]
pub enum Message<'a> {
    Payload(&'a [u8]),
    Done,
    Error(i32),
}

/// Splits one recv's bytes into netlink messages; stops at the first malformed header.
pub fn parse_messages(mut data: &[u8]) -> Vec<Message<'_>> {
    let mut messages = Vec::new();
    while let (Some(len), Some(kind)) = (u32_at(data, 0), data.get(4..6)) {
        let len = len as usize;
        let kind = u16::from_ne_bytes([kind[0], kind[1]]);
        let Some(body) = data.get(16..len) else {
            break; // shorter than a header, or longer than what arrived
        };
        messages.push(match kind {
            NLMSG_DONE => Message::Done,
            // nlmsgerr: the negative errno, then the request that failed.
            NLMSG_ERROR => Message::Error(u32_at(body, 0).map_or(0, |c| c as i32)),
            _ => Message::Payload(body),
        });
        data = aligned(len)
            .and_then(|next| data.get(next..))
            .unwrap_or_default();
    }
    messages
}

fn netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before it is owned.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: timeout outlives the call; the size matches.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        );
    }
    Ok(socket)
}

/// Runs on a thread of its own: setns changes only the calling thread's namespace.
fn socket_in_namespace(netns: &Path) -> io::Result<OwnedFd> {
    let ns = std::fs::File::open(netns)?;
    // SAFETY: ns is an open namespace file; only this thread moves.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    netlink_socket()
}

/// Sends one dump request and hands each answer's payload to `each`.
fn dump(socket: &OwnedFd, payload: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let mut message = Vec::with_capacity(16 + payload.len());
    message.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    message.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    message.extend_from_slice(payload);
    // SAFETY: the buffer is valid for its length; a netlink socket needs no address for send.
    let sent = unsafe {
        libc::send(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buffer = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let data = buffer.get(..n as usize).unwrap_or_default();
        if data.is_empty() {
            return Ok(());
        }
        for message in parse_messages(data) {
            match message {
                Message::Payload(body) => each(body),
                Message::Done => return Ok(()),
                Message::Error(code) => {
                    return Err(io::Error::from_raw_os_error(code.saturating_neg()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn inode_of(fd: i32) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .ino()
    }

    #[test]
    fn sees_a_tcp_listener_queue_and_backlog() {
        // std's TcpListener uses a backlog of 128 (or SOMAXCONN when smaller).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let _clients: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let found = snapshot(None).unwrap();
        let inode = inode_of(listener.as_raw_fd());
        let queue = found.queues[&inode];
        assert_eq!(queue.length, 2);
        assert!(queue.limit > 0);
        let socket = found.tcp.iter().find(|s| s.inode == inode).unwrap();
        assert_eq!((socket.local, socket.port), (address.ip(), address.port()));
        let clients = found
            .tcp
            .iter()
            .filter(|s| s.state == 1 && s.port != address.port())
            .filter(|s| {
                _clients
                    .iter()
                    .any(|c| c.local_addr().unwrap().port() == s.port)
            })
            .count();
        assert_eq!(clients, 2);
    }

    #[test]
    fn sees_a_unix_listener() {
        let dir = tempfile::tempdir().unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(dir.path().join("s")).unwrap();
        let queues = snapshot(None).unwrap().queues;
        let queue = queues[&inode_of(listener.as_raw_fd())];
        assert_eq!(queue.length, 1);
        assert!(queue.limit > 0);
    }

    #[test]
    fn parsers_survive_any_bytes() {
        // Every length up to past the structures, in several fillings: no panic, and a message
        // too short for its fields is refused.
        for fill in [0u8, 0xff, 0x04, 0x10] {
            for len in 0..120 {
                let bytes = vec![fill; len];
                let inet = parse_inet_diag(&bytes);
                assert_eq!(inet.is_some(), len >= 72, "inet_diag of {len} bytes");
                let _ = parse_unix_diag(&bytes);
                let _ = parse_messages(&bytes);
            }
        }
        // A message that claims more than arrived, or less than its header, ends the batch.
        let mut short = 100u32.to_ne_bytes().to_vec();
        short.extend_from_slice(&[0; 12]);
        assert_eq!(parse_messages(&short), vec![]);
        let mut error = 16u32.to_ne_bytes().to_vec();
        error.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error.extend_from_slice(&[0; 10]);
        assert_eq!(parse_messages(&error), vec![Message::Error(0)]);
    }

    #[test]
    fn enters_a_namespace_given_by_path() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let own = Path::new("/proc/self/ns/net");
        let queues = snapshot(Some(own)).unwrap().queues;
        assert!(queues.contains_key(&inode_of(listener.as_raw_fd())));
    }
}
