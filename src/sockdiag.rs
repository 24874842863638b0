//! Sockets from the kernel's sock_diag netlink interface, the source `ss` reads, asked only for
//! what the sockets collector needs:
//!
//! - listening TCP and Unix sockets with their accept queues: the current length (`rqueue`) and
//!   the limit, the backlog (`wqueue`), which /proc/net/tcp does not show and /proc/net/unix
//!   neither. A dump of listeners walks only the kernel's listening hash;
//! - established TCP sockets on a few local ports, filtered in the kernel by an inet_diag bytecode
//!   program, so the host's other connections are never copied out (only compared, under the
//!   kernel's hash-bucket lock);
//! - connected Unix sockets with their names (an accepted socket carries its listener's path).
//!
//! Each message is parsed where it lies in the receive buffer: nothing is allocated per socket.
//!
//! A netlink socket sees the sockets of the network namespace it was created in. For a service in
//! a container, [`SockDiag::open`] creates it inside the service's namespace: a short-lived thread
//! enters the namespace with setns(2) (needs CAP_SYS_ADMIN, i.e. root) and creates the socket
//! there; the socket stays bound to that namespace after the thread ends.
//!
//! The exporter's own namespace's socket and buffer are kept for the next scrape once their
//! last dump has ended cleanly ([`KEPT`]): a scrape then creates no socket and zeroes no buffer.
//! Another namespace's are not: a socket holds its namespace alive after its last process.

use std::borrow::Cow;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;

/// Queue figures of one listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    pub length: u32,
    pub limit: u32,
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// The older inet_diag request, whose dumps have no family: one walk of the kernel's connection
/// table for IPv4 and IPv6 together.
const TCPDIAG_GETSOCK: u16 = 18;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
pub const TCP_ESTABLISHED: u8 = 1;
pub const TCP_LISTEN: u8 = 10;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_RQLEN: u16 = 4;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_JMP: u8 = 1;
const INET_DIAG_BC_S_EQ: u8 = 11;

/// A TCP socket as sock_diag reports it, or as /proc/net/tcp{,6} lists it where netlink is
/// refused (`collector::sockets::parse_tcp_table`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TcpSocket {
    /// 0 for a connection still in its listener's accept queue: no process holds it yet.
    pub inode: u64,
    pub local: IpAddr,
    pub port: u16,
    pub state: u8,
    /// The user that created the socket: who owns a listener whose process cannot be read.
    pub uid: u32,
    /// For a listener, its accept queue (from /proc/net/tcp, a limit of 0: the table has none).
    pub queue: Queue,
}

/// A listening Unix socket: its inode, its name as /proc/net/unix prints it (empty when
/// unnamed) and its accept queue.
#[derive(Debug, Clone, PartialEq)]
pub struct UnixListener {
    pub inode: u64,
    pub path: String,
    pub queue: Option<Queue>,
}

/// The IP families a TCP dump is asked for one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(address: &IpAddr) -> Family {
        match address {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    fn code(self) -> u8 {
        match self {
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }
}

/// A sock_diag netlink socket of one network namespace, and the buffer its answers arrive in.
#[derive(Debug)]
pub struct SockDiag {
    /// `None` only once dropped into its [`Kept`].
    socket: Option<OwnedFd>,
    buffer: Vec<u8>,
    /// Where it goes back when dropped (the exporter's own namespace's).
    kept_in: Option<&'static Kept>,
    /// No dump under way or cut short: nothing of an earlier answer is left to read.
    clean: bool,
}

/// A socket and its buffer between two uses.
type Kept = Mutex<Option<(OwnedFd, Vec<u8>)>>;

/// The exporter's own namespace's.
static KEPT: Kept = Mutex::new(None);

fn lock(kept: &Kept) -> std::sync::MutexGuard<'_, Option<(OwnedFd, Vec<u8>)>> {
    kept.lock().unwrap_or_else(|e| e.into_inner())
}

impl SockDiag {
    /// A socket in the network namespace of `netns` (a `/proc/PID/ns/net` path), or in this
    /// process's when `None` (the one kept from the last use, if any).
    pub fn open(netns: Option<&Path>) -> io::Result<SockDiag> {
        let Some(path) = netns else {
            return SockDiag::reusing(&KEPT);
        };
        let path = path.to_path_buf();
        let socket = std::thread::scope(|s| s.spawn(move || socket_in_namespace(&path)).join())
            .map_err(|_| io::Error::other("namespace thread panicked"))??;
        Ok(SockDiag::new(socket, vec![0u8; 32 * 1024], None))
    }

    /// A socket of the exporter's namespace: the one in `kept` if any, which it goes back to.
    fn reusing(kept: &'static Kept) -> io::Result<SockDiag> {
        let (socket, buffer) = match lock(kept).take() {
            Some(last) => last,
            None => (netlink_socket()?, vec![0u8; 32 * 1024]),
        };
        Ok(SockDiag::new(socket, buffer, Some(kept)))
    }

    fn new(socket: OwnedFd, buffer: Vec<u8>, kept_in: Option<&'static Kept>) -> SockDiag {
        SockDiag {
            socket: Some(socket),
            buffer,
            kept_in,
            clean: true,
        }
    }

    fn fd(&self) -> i32 {
        self.socket.as_ref().map_or(-1, AsRawFd::as_raw_fd)
    }

    /// Every listening TCP socket, IPv4 and IPv6 in one dump, with its accept queue.
    pub fn tcp_listeners(&mut self) -> io::Result<Vec<TcpSocket>> {
        let mut found = Vec::new();
        let request = any_family_request(TCP_LISTEN, &[]);
        self.dump(TCPDIAG_GETSOCK, &request, |msg| {
            found.extend(parse_inet_diag(msg))
        })?;
        Ok(found)
    }

    /// Hands each established TCP socket of `families` whose local port is one of `ports` to
    /// `each`. The kernel runs the port filter: the other connections are not copied out. It
    /// walks its whole connection table for every dump (about 0.7 ms for the 262 144 buckets of a
    /// 24 GB host, a sixteenth of that on a 2 GB one), so both families are asked for in one dump.
    pub fn established_tcp(
        &mut self,
        families: &[Family],
        ports: &[u16],
        mut each: impl FnMut(&TcpSocket),
    ) -> io::Result<()> {
        if ports.is_empty() || families.is_empty() {
            return Ok(());
        }
        let filter = local_port_filter(ports);
        let mut parse = |msg: &[u8]| {
            if let Some(socket) = parse_inet_diag(msg) {
                each(&socket);
            }
        };
        if let [family] = families {
            let request = inet_request(*family, TCP_ESTABLISHED, &filter);
            return self.dump(SOCK_DIAG_BY_FAMILY, &request, parse);
        }
        self.dump(
            TCPDIAG_GETSOCK,
            &any_family_request(TCP_ESTABLISHED, &filter),
            &mut parse,
        )
    }

    /// Every listening Unix socket with its name and accept queue.
    pub fn unix_listeners(&mut self) -> io::Result<Vec<UnixListener>> {
        let mut found = Vec::new();
        let request = unix_request(TCP_LISTEN, UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN);
        self.dump(SOCK_DIAG_BY_FAMILY, &request, |msg| {
            if let Some(socket) = parse_unix_diag(msg) {
                found.push(UnixListener {
                    inode: socket.inode,
                    path: socket.name.map(unix_path).unwrap_or_default().into_owned(),
                    queue: socket.queue,
                });
            }
        })?;
        Ok(found)
    }

    /// Hands the inode and name (as /proc/net/unix prints it) of each connected Unix socket that
    /// has a name to `each`: an accepted socket has its listener's.
    pub fn connected_unix(&mut self, mut each: impl FnMut(u64, &str)) -> io::Result<()> {
        let request = unix_request(TCP_ESTABLISHED, UDIAG_SHOW_NAME);
        self.dump(SOCK_DIAG_BY_FAMILY, &request, |msg| {
            if let Some(UnixDiag {
                inode,
                name: Some(name),
                ..
            }) = parse_unix_diag(msg)
            {
                each(inode, &unix_path(name));
            }
        })
    }

    /// Sends one dump request of netlink type `kind` and hands each answer's payload to `each`.
    fn dump(&mut self, kind: u16, payload: &[u8], each: impl FnMut(&[u8])) -> io::Result<()> {
        self.clean = false;
        self.dump_to_end(kind, payload, each)?;
        self.clean = true;
        Ok(())
    }

    fn dump_to_end(
        &mut self,
        kind: u16,
        payload: &[u8],
        mut each: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        let message = netlink_message(kind, payload);
        // SAFETY: the buffer is valid for its length; a netlink socket needs no address for send.
        let sent = unsafe { libc::send(self.fd(), message.as_ptr().cast(), message.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        loop {
            // SAFETY: the buffer is valid for its length.
            let n = unsafe {
                libc::recv(
                    self.fd(),
                    self.buffer.as_mut_ptr().cast(),
                    self.buffer.len(),
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
            let data = self.buffer.get(..n as usize).unwrap_or_default();
            if data.is_empty() {
                return Ok(());
            }
            for message in Messages(data) {
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
}

impl Drop for SockDiag {
    /// Keeps the own namespace's socket for the next use when its last dump ended (an answer cut
    /// short by an error or a timeout may still have messages queued: that socket is closed).
    fn drop(&mut self) {
        let (Some(kept), true) = (self.kept_in, self.clean) else {
            return;
        };
        let mut kept = lock(kept);
        if kept.is_none() {
            *kept = self
                .socket
                .take()
                .map(|socket| (socket, std::mem::take(&mut self.buffer)));
        }
    }
}

/// An inet_diag_req_v2 for TCP sockets of `family` in `state`, any address, with an optional
/// bytecode filter attribute.
fn inet_request(family: Family, state: u8, bytecode: &[u8]) -> Vec<u8> {
    let mut request = Vec::with_capacity(60 + bytecode.len());
    request.extend_from_slice(&[family.code(), libc::IPPROTO_TCP as u8, 0, 0]);
    request.extend_from_slice(&(1u32 << state).to_ne_bytes());
    request.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: any
    push_bytecode(&mut request, bytecode);
    request
}

/// The older inet_diag_req (family, src_len, dst_len, ext, sockid, states, dbs) for TCP sockets
/// of both families in `state`, with a bytecode filter attribute.
fn any_family_request(state: u8, bytecode: &[u8]) -> Vec<u8> {
    let mut request = Vec::with_capacity(64 + bytecode.len());
    request.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]); // the family is ignored
    request.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: any
    request.extend_from_slice(&(1u32 << state).to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    push_bytecode(&mut request, bytecode);
    request
}

/// Appends an INET_DIAG_REQ_BYTECODE attribute, unless the program is empty.
fn push_bytecode(request: &mut Vec<u8>, bytecode: &[u8]) {
    if !bytecode.is_empty() {
        let len = 4 + bytecode.len() as u16;
        request.extend_from_slice(&len.to_ne_bytes());
        request.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        request.extend_from_slice(bytecode);
    }
}

/// A unix_diag_req for Unix sockets in `state`, any inode, with the attributes of `show`.
fn unix_request(state: u8, show: u32) -> Vec<u8> {
    let mut request = Vec::with_capacity(24);
    request.extend_from_slice(&[libc::AF_UNIX as u8, 0, 0, 0]);
    request.extend_from_slice(&(1u32 << state).to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes()); // any inode
    request.extend_from_slice(&show.to_ne_bytes());
    request.extend_from_slice(&[0xff; 8]); // no cookie
    request
}

/// An inet_diag bytecode program that accepts a socket whose local port is one of `ports`.
///
/// One 12-byte block per port: `S_EQ port` (4 bytes, then the port in a second op's `no`), then
/// `JMP` to the end. The kernel checks a program by walking it along the `yes` offsets, so every
/// block is on that path: S_EQ's `yes` leads to its JMP, whose `yes` leads to the next block; a
/// match jumps (JMP's `no`) to the end, which accepts; a miss goes on to the next block, and the
/// last block's miss jumps 4 bytes past the end, which rejects.
pub fn local_port_filter(ports: &[u16]) -> Vec<u8> {
    const BLOCK: usize = 12;
    let len = ports.len() * BLOCK;
    let mut program = Vec::with_capacity(len);
    for (i, &port) in ports.iter().enumerate() {
        let at = i * BLOCK;
        let miss = if i + 1 == ports.len() {
            BLOCK + 4
        } else {
            BLOCK
        };
        program.extend_from_slice(&[INET_DIAG_BC_S_EQ, 8]);
        program.extend_from_slice(&(miss as u16).to_ne_bytes());
        program.extend_from_slice(&[0, 0]);
        program.extend_from_slice(&port.to_ne_bytes());
        program.extend_from_slice(&[INET_DIAG_BC_JMP, 4]);
        program.extend_from_slice(&((len - at - 8) as u16).to_ne_bytes());
    }
    program
}

/// The native-endian u32 at `at`, if the message is long enough.
fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes(word.try_into().ok()?))
}

/// One inet_diag_msg: family, state, timer, retrans, sockid (sport, dport, src[16], dst[16], if,
/// cookie[2]), expires, rqueue, wqueue, uid, inode. A listener's queue is rqueue of wqueue.
pub fn parse_inet_diag(msg: &[u8]) -> Option<TcpSocket> {
    let (&family, &state) = (msg.first()?, msg.get(1)?);
    let local = if family == libc::AF_INET as u8 {
        let v4: [u8; 4] = msg.get(8..12)?.try_into().ok()?;
        IpAddr::V4(Ipv4Addr::from(v4))
    } else {
        let v6: [u8; 16] = msg.get(8..24)?.try_into().ok()?;
        IpAddr::V6(Ipv6Addr::from(v6))
    };
    let port: [u8; 2] = msg.get(4..6)?.try_into().ok()?;
    Some(TcpSocket {
        inode: u64::from(u32_at(msg, 68)?),
        local,
        port: u16::from_be_bytes(port),
        state,
        uid: u32_at(msg, 64)?,
        queue: Queue {
            length: u32_at(msg, 56)?,
            limit: u32_at(msg, 60)?,
        },
    })
}

/// What one unix_diag_msg (family, type, state, pad, inode, cookie[8]) and its attributes say.
#[derive(Debug, PartialEq)]
pub struct UnixDiag<'a> {
    pub inode: u64,
    /// UNIX_DIAG_NAME: the bound address's sun_path bytes, when the socket has one.
    pub name: Option<&'a [u8]>,
    /// UNIX_DIAG_RQLEN: a listener's queue.
    pub queue: Option<Queue>,
}

pub fn parse_unix_diag(msg: &[u8]) -> Option<UnixDiag<'_>> {
    let mut found = UnixDiag {
        inode: u64::from(u32_at(msg, 4)?),
        name: None,
        queue: None,
    };
    let mut attrs = msg.get(16..)?;
    while let (Some(len), Some(kind)) = (attrs.get(0..2), attrs.get(2..4)) {
        let len = usize::from(u16::from_ne_bytes(len.try_into().ok()?));
        let kind = u16::from_ne_bytes(kind.try_into().ok()?);
        let attr = attrs.get(..len).filter(|_| len >= 4)?;
        match kind {
            UNIX_DIAG_NAME => found.name = attr.get(4..),
            UNIX_DIAG_RQLEN => {
                found.queue = Some(Queue {
                    length: u32_at(attr, 4)?,
                    limit: u32_at(attr, 8)?,
                })
            }
            _ => {}
        }
        attrs = attrs.get(aligned(len)?..).unwrap_or_default();
    }
    Some(found)
}

/// A Unix socket's name as /proc/net/unix prints it: a path without its terminating NUL, an
/// abstract name (first byte NUL) with `@` in front, every NUL inside shown as `@`. Borrowed,
/// not copied, for the usual path.
pub fn unix_path(name: &[u8]) -> Cow<'_, str> {
    let name = match name.split_first() {
        Some((0, _)) => name,
        _ => name.get(..name.len().saturating_sub(1)).unwrap_or_default(),
    };
    if name.contains(&0) {
        let shown: Vec<u8> = name
            .iter()
            .map(|&b| if b == 0 { b'@' } else { b })
            .collect();
        Cow::Owned(String::from_utf8_lossy(&shown).into_owned())
    } else {
        String::from_utf8_lossy(name)
    }
}

/// Netlink messages and attributes are padded to 4 bytes.
fn aligned(len: usize) -> Option<usize> {
    Some(len.checked_add(3)? & !3)
}

/// One netlink message of type `kind` with a 16-byte header carrying `payload`: a dump request.
fn netlink_message(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(16 + payload.len());
    message.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
    message.extend_from_slice(&kind.to_ne_bytes());
    message.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    message.extend_from_slice(payload);
    message
}

/// What one netlink message said.
#[derive(Debug, PartialEq)]
pub enum Message<'a> {
    Payload(&'a [u8]),
    Done,
    Error(i32),
}

/// The netlink messages of one recv's bytes; ends at the first malformed header.
pub struct Messages<'a>(pub &'a [u8]);

impl<'a> Iterator for Messages<'a> {
    type Item = Message<'a>;

    fn next(&mut self) -> Option<Message<'a>> {
        let data = self.0;
        let (len, kind) = (u32_at(data, 0)? as usize, data.get(4..6)?);
        let kind = u16::from_ne_bytes([kind[0], kind[1]]);
        // Shorter than a header, or longer than what arrived: nothing more to read.
        let Some(body) = data.get(16..len) else {
            self.0 = &[];
            return None;
        };
        self.0 = aligned(len)
            .and_then(|next| data.get(next..))
            .unwrap_or_default();
        Some(match kind {
            NLMSG_DONE => Message::Done,
            // nlmsgerr: the negative errno, then the request that failed.
            NLMSG_ERROR => Message::Error(u32_at(body, 0).map_or(0, |c| c as i32)),
            _ => Message::Payload(body),
        })
    }
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
        let listeners = SockDiag::open(None).unwrap().tcp_listeners().unwrap();
        let inode = inode_of(listener.as_raw_fd());
        let socket = listeners.iter().find(|s| s.inode == inode).unwrap();
        assert_eq!((socket.local, socket.port), (address.ip(), address.port()));
        assert_eq!(socket.state, TCP_LISTEN);
        assert_eq!(socket.queue.length, 2);
        assert!(socket.queue.limit > 0);
        // IPv6 listeners come in the same dump.
        let v6 = std::net::TcpListener::bind(("::1", 0))
            .expect("this test needs IPv6 on the loopback interface (::1)");
        let listeners = SockDiag::open(None).unwrap().tcp_listeners().unwrap();
        let inode = inode_of(v6.as_raw_fd());
        let socket = listeners.iter().find(|s| s.inode == inode).unwrap();
        assert_eq!(socket.local, v6.local_addr().unwrap().ip());
    }

    /// A socket of the exporter's namespace goes back to be used again after a dump that ended,
    /// not after one cut short (its answer's rest could still be queued), nor another
    /// namespace's (it would hold that namespace alive).
    #[test]
    fn the_own_namespace_socket_is_used_again_after_a_whole_dump() {
        static OWN: Kept = Mutex::new(None);
        let mut diag = SockDiag::reusing(&OWN).unwrap();
        diag.tcp_listeners().unwrap();
        let first = inode_of(diag.fd());
        drop(diag);
        let mut diag = SockDiag::reusing(&OWN).unwrap();
        assert_eq!(inode_of(diag.fd()), first, "the same socket");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listed = diag.tcp_listeners().unwrap();
        assert!(listed
            .iter()
            .any(|s| s.inode == inode_of(listener.as_raw_fd())));
        // A request the kernel refuses (no family): the dump fails, the socket is closed.
        assert!(diag.dump(SOCK_DIAG_BY_FAMILY, &[0; 4], |_| {}).is_err());
        drop(diag);
        assert!(lock(&OWN).is_none(), "not kept");
        let other = SockDiag::new(netlink_socket().unwrap(), Vec::new(), None);
        drop(other);
        assert!(lock(&OWN).is_none());
    }

    #[test]
    fn established_sockets_are_filtered_by_local_port_in_the_kernel() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _clients: Vec<_> = (0..3)
            .map(|_| std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap())
            .collect();
        let _others: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap())
            .collect();
        let accepted: Vec<_> = (0..2).map(|_| listener.accept().unwrap().0).collect();
        let mut diag = SockDiag::open(None).unwrap();
        let mut seen = Vec::new();
        diag.established_tcp(&[Family::V4], &[port], |s| seen.push(*s))
            .unwrap();
        // Three server ends on the port, the client ends (ephemeral ports) and the other
        // listener's connections left out; the one still queued has no inode yet.
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen
            .iter()
            .all(|s| s.port == port && s.state == TCP_ESTABLISHED));
        let mut inodes: Vec<u64> = seen.iter().map(|s| s.inode).filter(|&i| i != 0).collect();
        let mut expected: Vec<u64> = accepted.iter().map(|s| inode_of(s.as_raw_fd())).collect();
        inodes.sort_unstable();
        expected.sort_unstable();
        assert_eq!(inodes, expected);
        let mut v6 = 0;
        diag.established_tcp(&[Family::V6], &[port], |_| v6 += 1)
            .unwrap();
        assert_eq!(v6, 0);
        // Several ports: the kernel takes the longer program, and the server ends of both.
        let other_port = other.local_addr().unwrap().port();
        let mut both = 0;
        diag.established_tcp(&[Family::V4], &[1, other_port, port], |_| both += 1)
            .unwrap();
        assert_eq!(both, 5);
        // Both families in one dump.
        let v6 = std::net::TcpListener::bind(("::1", 0))
            .expect("this test needs IPv6 on the loopback interface (::1)");
        let v6_port = v6.local_addr().unwrap().port();
        let _v6_client = std::net::TcpStream::connect(v6.local_addr().unwrap()).unwrap();
        let mut families = Vec::new();
        let all = [Family::V4, Family::V6];
        diag.established_tcp(&all, &[port, v6_port], |s| {
            families.push(Family::of(&s.local))
        })
        .unwrap();
        families.sort_unstable();
        assert_eq!(families, [Family::V4, Family::V4, Family::V4, Family::V6]);
    }

    /// Runs a [`local_port_filter`] program as the kernel's inet_diag_bc_run does: true when it
    /// accepts a socket whose local port is `port`.
    fn run_local_port_filter(program: &[u8], port: u16) -> bool {
        let mut at = 0usize;
        while at < program.len() {
            let op = &program[at..];
            let (code, yes, no) = (
                op[0],
                op[1] as usize,
                u16::from_ne_bytes([op[2], op[3]]) as usize,
            );
            let matched = match code {
                INET_DIAG_BC_S_EQ => u16::from_ne_bytes([op[6], op[7]]) == port,
                _ => false, // JMP
            };
            at += if matched { yes } else { no };
        }
        at == program.len()
    }

    #[test]
    fn the_port_filter_accepts_its_ports_only() {
        for ports in [vec![80], vec![80, 443], vec![6379, 8000, 5432, 3306, 65535]] {
            let program = local_port_filter(&ports);
            for port in [0, 1, 79, 80, 81, 443, 3306, 5432, 6379, 8000, 65535] {
                assert_eq!(
                    run_local_port_filter(&program, port),
                    ports.contains(&port),
                    "{ports:?} on {port}"
                );
            }
        }
    }

    #[test]
    fn sees_a_unix_listener_and_its_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let _client = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let mut diag = SockDiag::open(None).unwrap();
        let listeners = diag.unix_listeners().unwrap();
        let inode = inode_of(listener.as_raw_fd());
        let found = listeners.iter().find(|l| l.inode == inode).unwrap();
        assert_eq!(found.path, path.to_str().unwrap());
        let queue = found.queue.unwrap();
        assert_eq!(queue.length, 1);
        assert!(queue.limit > 0);
        let accepted = listener.accept().unwrap().0;
        let mut named = Vec::new();
        diag.connected_unix(|inode, name| {
            if name == path.to_str().unwrap() {
                named.push(inode)
            }
        })
        .unwrap();
        assert_eq!(named, vec![inode_of(accepted.as_raw_fd())]);
    }

    #[test]
    fn unix_names_print_as_in_proc_net_unix() {
        assert_eq!(unix_path(b"/run/app.sock\0"), "/run/app.sock");
        assert_eq!(unix_path(b"\0abstract"), "@abstract");
        assert_eq!(unix_path(b"\0a\0b"), "@a@b");
        assert_eq!(unix_path(b""), "");
        assert!(matches!(unix_path(b"/run/app.sock\0"), Cow::Borrowed(_)));
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
                let _ = Messages(&bytes).count();
                let _ = unix_path(&bytes);
            }
        }
        // A message that claims more than arrived, or less than its header, ends the batch.
        let mut short = 100u32.to_ne_bytes().to_vec();
        short.extend_from_slice(&[0; 12]);
        assert_eq!(Messages(&short).collect::<Vec<_>>(), vec![]);
        let mut error = 16u32.to_ne_bytes().to_vec();
        error.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error.extend_from_slice(&[0; 10]);
        assert_eq!(
            Messages(&error).collect::<Vec<_>>(),
            vec![Message::Error(0)]
        );
    }

    #[test]
    fn enters_a_namespace_given_by_path() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let own = Path::new("/proc/self/ns/net");
        let listeners = SockDiag::open(Some(own)).unwrap().tcp_listeners().unwrap();
        let inode = inode_of(listener.as_raw_fd());
        assert!(listeners.iter().any(|l| l.inode == inode));
    }
}
