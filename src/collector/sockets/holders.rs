//! Which service processes hold which listening sockets, kept from scrape to scrape.
//!
//! Finding a socket's process means reading the fd tables of the services' processes, a readlink
//! per open file: 10 000 for a server with 10 000 connections, on every scrape. Listeners change
//! far less often than connections, and only listeners are needed (a connection belongs to the
//! listener that accepted it), so a process's fds are read when it is first seen, and the
//! processes of a namespace again when a listener appears there that no read process held: those
//! with small fd tables at once (once per such listener, not on every scrape it stays unknown),
//! the others at most once a minute ([`REREAD_INTERVAL`]). On a
//! busy host other programs open listeners all the time (a test suite, a CI runner), and each
//! would otherwise cost a read of every service process's whole fd table, 10 000 readlinks for a
//! server holding 10 000 connections. A reloading server is seen at once anyway: its new workers
//! are new processes, read on first sight, and they inherit the new listeners; a master holds
//! few files. Only a busy single process that opens a listener while running (Redis moved to
//! another port by `CONFIG SET`) waits up to a minute to be seen holding it. Each scrape checks that every known
//! holder still holds its listener at the same fd: one readlink per listener per holder.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt, HashSet};

use super::namespace::{Namespace, Owner};
use crate::proc::ProcFs;

/// A service's process as this scrape found it.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    pub service: usize,
    pub instance: usize,
    pub pid: u32,
    /// Its network namespace, an index into the scrape's namespaces.
    pub ns: usize,
}

/// The listeners among one process's open files, as (fd, socket inode), and the namespace they
/// were read in.
#[derive(Debug)]
struct Held {
    ns: PathBuf,
    fds: Vec<(u32, u64)>,
    /// The process's fd directory, kept open while it holds listeners: each scrape's check reads
    /// a link relative to it, not a path of four components the kernel looks up one by one.
    /// It stays the directory of that process: once the process exits, its links are gone, even if
    /// its PID is used again.
    fd_dir: Option<File>,
}

/// How often, at most, every service process of a namespace is read again for listeners that
/// appeared in running processes (or in other programs); processes with small fd tables are read
/// again at once ([`SMALL_FD_TABLE`]).
pub const REREAD_INTERVAL: Duration = Duration::from_secs(60);

/// Open files up to which a process's fd table is cheap to read again (a readlink each, ~1 µs).
const SMALL_FD_TABLE: u64 = 1000;

#[derive(Debug, Default)]
pub struct Holders {
    processes: HashMap<u32, Held>,
    /// Listeners looked for in every readable service process of their namespace and held by
    /// none (another program's, or an unreadable process's): not looked for again.
    unheld: HashSet<u64>,
    /// When each namespace's processes were last read again for an unknown listener.
    reread: HashMap<PathBuf, Instant>,
    /// Unknown listeners already looked for in the small fd tables since the last whole read:
    /// they are looked for again only in the next whole one, not in every scrape's small ones.
    searched_small: HashSet<u64>,
}

impl Holders {
    /// Brings the record up to date with this scrape's processes and listeners. Returns the
    /// members whose fds the exporter may not read (by index).
    pub fn update(
        &mut self,
        procfs: &ProcFs,
        members: &[Member],
        namespaces: &[Namespace],
        now: Instant,
    ) -> Vec<usize> {
        let listening: Vec<HashSet<u64>> = namespaces
            .iter()
            .map(|ns| ns.listeners.iter().map(|l| l.inode).collect())
            .collect();
        let current: HashMap<u32, &Path> = members
            .iter()
            .map(|m| (m.pid, namespaces[m.ns].link.as_path()))
            .collect();
        self.processes
            .retain(|pid, held| current.get(pid) == Some(&held.ns.as_path()));

        let mut refused = Vec::new();
        let mut read = vec![false; members.len()];
        for (i, m) in members.iter().enumerate() {
            if !self.still_holds(m, &listening[m.ns]) {
                self.read(procfs, m, namespaces, &listening[m.ns], &mut refused, i);
                read[i] = true;
            }
        }
        for (ns, listens) in listening.iter().enumerate() {
            let held: HashSet<u64> = self.held_inodes().collect();
            let unknown: Vec<u64> = listens
                .iter()
                .filter(|inode| !held.contains(inode) && !self.unheld.contains(inode))
                .copied()
                .collect();
            let Some(&inode) = unknown.first() else {
                continue;
            };
            let link = &namespaces[ns].link;
            let whole = self
                .reread
                .get(link)
                .is_none_or(|&at| now >= at + REREAD_INTERVAL);
            if !whole && unknown.iter().all(|i| self.searched_small.contains(i)) {
                continue;
            }
            log::debug!(
                "listener {inode} in {} held by no service process read so far: reading the fds \
                 of the namespace's service processes{}",
                link.display(),
                if whole { "" } else { " with small fd tables" }
            );
            for (i, m) in members.iter().enumerate() {
                if m.ns == ns && !read[i] && (whole || small_fd_table(procfs, m.pid)) {
                    self.read(procfs, m, namespaces, listens, &mut refused, i);
                    read[i] = true;
                }
            }
            if whole {
                self.reread.insert(link.clone(), now);
                let held: HashSet<u64> = self.held_inodes().collect();
                self.unheld
                    .extend(listens.iter().filter(|inode| !held.contains(inode)));
                self.searched_small.retain(|inode| !listens.contains(inode));
            } else {
                self.searched_small.extend(unknown);
            }
        }
        self.unheld
            .retain(|inode| listening.iter().any(|l| l.contains(inode)));
        self.searched_small
            .retain(|inode| listening.iter().any(|l| l.contains(inode)));
        self.reread
            .retain(|link, _| namespaces.iter().any(|ns| &ns.link == link));
        refused
    }

    /// Each listener's owner: the first member, in the services' and instances' order, that
    /// holds it.
    pub fn owners(&self, members: &[Member]) -> HashMap<u64, Owner> {
        let mut owners = HashMap::new();
        for m in members {
            for &(_, inode) in self.processes.get(&m.pid).map_or(&[][..], |h| &h.fds) {
                owners.entry(inode).or_insert((m.service, m.instance));
            }
        }
        owners
    }

    fn held_inodes(&self) -> impl Iterator<Item = u64> + '_ {
        self.processes
            .values()
            .flat_map(|held| held.fds.iter().map(|&(_, inode)| inode))
    }

    /// Whether the member was read before and still holds, at the same fds, the listeners it
    /// held then (those since closed forgotten).
    fn still_holds(&mut self, m: &Member, listening: &HashSet<u64>) -> bool {
        let Some(held) = self.processes.get_mut(&m.pid) else {
            return false;
        };
        held.fds.retain(|(_, inode)| listening.contains(inode));
        match &held.fd_dir {
            Some(dir) => held
                .fds
                .iter()
                .all(|&(fd, inode)| socket_inode_at(dir, fd) == Some(inode)),
            None => held.fds.is_empty(),
        }
    }

    /// Reads the member's fd table anew.
    fn read(
        &mut self,
        procfs: &ProcFs,
        m: &Member,
        namespaces: &[Namespace],
        listening: &HashSet<u64>,
        refused: &mut Vec<usize>,
        index: usize,
    ) {
        self.processes.remove(&m.pid);
        match held_listeners(&procfs.pid_dir(m.pid).join("fd"), listening) {
            Ok((fds, fd_dir)) => {
                let ns = namespaces[m.ns].link.clone();
                // Not kept for a process that holds no listener: it is never checked.
                let fd_dir = (!fds.is_empty()).then_some(fd_dir);
                self.processes.insert(m.pid, Held { ns, fds, fd_dir });
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => refused.push(index),
            Err(_) => {} // gone since the listing
        }
    }
}

/// Whether the process holds few enough files to read its fd table again at once. The size of
/// /proc/PID/fd is its number of open files since Linux 6.2 (0 before: every table is small).
fn small_fd_table(procfs: &ProcFs, pid: u32) -> bool {
    std::fs::metadata(procfs.pid_dir(pid).join("fd")).map_or(true, |m| m.len() <= SMALL_FD_TABLE)
}

/// The socket inode the link `fd` in the fd directory `dir` points to, if it is a socket.
fn socket_inode_at(dir: &File, fd: u32) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // The fd's number, NUL-terminated, written without an allocation.
    let mut name = [0u8; 11];
    let digits = fd.checked_ilog10().unwrap_or(0) as usize + 1;
    let mut rest = fd;
    for place in name[..digits].iter_mut().rev() {
        *place = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    let mut target = [0u8; 64];
    // SAFETY: `name` is NUL-terminated (u32 has at most 10 digits); `target` is writable for its
    // length, which readlinkat does not exceed.
    let length = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr().cast(),
            target.as_mut_ptr().cast(),
            target.len(),
        )
    };
    parse_socket_link(target.get(..usize::try_from(length).ok()?)?)
}

/// The inode of a `socket:[inode]` link target.
fn parse_socket_link(target: &[u8]) -> Option<u64> {
    let digits = target.strip_prefix(b"socket:[")?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The listeners of `listening` among a process's open files (`fd_dir`, its /proc/PID/fd), as
/// (fd, inode), and the directory opened, each link read relative to it as the checks read them.
fn held_listeners(fd_dir: &Path, listening: &HashSet<u64>) -> io::Result<(Vec<(u32, u64)>, File)> {
    let dir = File::open(fd_dir)?;
    let mut held = Vec::new();
    for entry in std::fs::read_dir(fd_dir)?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        match socket_inode_at(&dir, fd) {
            Some(inode) if listening.contains(&inode) => held.push((fd, inode)),
            _ => {}
        }
    }
    Ok((held, dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake /proc: each process's ns/net link and its fds, as links to `socket:[inode]`.
    struct FakeProc(tempfile::TempDir);

    impl FakeProc {
        fn new() -> FakeProc {
            FakeProc(tempfile::tempdir().unwrap())
        }

        fn procfs(&self) -> ProcFs {
            ProcFs::new(self.0.path())
        }

        fn process(&self, pid: u32, ns: &str) {
            let dir = self.0.path().join(pid.to_string());
            std::fs::create_dir_all(dir.join("fd")).unwrap();
            std::fs::create_dir_all(dir.join("ns")).unwrap();
            symlink(ns, dir.join("ns/net")).unwrap();
        }

        fn open(&self, pid: u32, fd: u32, inode: u64) {
            let link = self.0.path().join(format!("{pid}/fd/{fd}"));
            symlink(format!("socket:[{inode}]"), link).unwrap();
        }

        fn close(&self, pid: u32, fd: u32) {
            std::fs::remove_file(self.0.path().join(format!("{pid}/fd/{fd}"))).unwrap();
        }
    }

    fn member(service: usize, instance: usize, pid: u32) -> Member {
        Member {
            service,
            instance,
            pid,
            ns: 0,
        }
    }

    #[test]
    fn a_socket_is_read_through_the_kept_fd_directory() {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = File::from(std::os::fd::OwnedFd::from(listener.try_clone().unwrap()))
            .metadata()
            .unwrap()
            .ino();
        let fd = listener.as_raw_fd() as u32;
        let dir = File::open("/proc/self/fd").unwrap();
        assert_eq!(socket_inode_at(&dir, fd), Some(inode));
        let (held, _) =
            held_listeners(Path::new("/proc/self/fd"), &HashSet::from_iter([inode])).unwrap();
        assert_eq!(held, [(fd, inode)], "found among the open files");
        // Not a socket (the directory's own fd), and an fd not open.
        assert_eq!(socket_inode_at(&dir, dir.as_raw_fd() as u32), None);
        assert_eq!(socket_inode_at(&dir, u32::MAX), None);
        drop(listener);
        assert_eq!(socket_inode_at(&dir, fd), None);
    }

    #[test]
    fn listeners_are_found_once_and_followed() {
        let proc = FakeProc::new();
        proc.process(100, "net:[1]");
        proc.open(100, 3, 500);
        proc.open(100, 4, 900); // a connection: not a listener, not kept
        let mut holders = Holders::default();
        let start = Instant::now();
        let later = start + REREAD_INTERVAL;
        let members = [member(0, 0, 100)];
        let ns = |inodes: &[u64]| [Namespace::with_listeners("net:[1]", inodes)];
        holders.update(&proc.procfs(), &members, &ns(&[500]), start);
        assert_eq!(
            holders.owners(&members),
            HashMap::from_iter([(500, (0, 0))])
        );
        assert_eq!(holders.processes[&100].fds, [(3, 500)]);

        // A listener opened by a running process: unknown, so the namespace is read again.
        proc.open(100, 5, 600);
        holders.update(&proc.procfs(), &members, &ns(&[500, 600]), start);
        assert_eq!(holders.owners(&members).get(&600), Some(&(0, 0)));

        // Another program's listener within the minute: looked for in the small fd tables once,
        // and not again in every scrape's: a service process that came to hold it since (passed
        // to it, or opened at the same inode) is seen in the minute's whole read.
        holders.update(&proc.procfs(), &members, &ns(&[500, 600, 700]), start);
        assert!(!holders.unheld.contains(&700));
        assert!(holders.searched_small.contains(&700));
        proc.open(100, 6, 700);
        holders.update(&proc.procfs(), &members, &ns(&[500, 600, 700]), start);
        assert_eq!(holders.owners(&members).get(&700), None);
        holders.update(&proc.procfs(), &members, &ns(&[500, 600, 700]), later);
        assert_eq!(holders.owners(&members).get(&700), Some(&(0, 0)));
        assert!(holders.searched_small.is_empty());

        // Closed again, it is another program's listener: after the minute's whole read,
        // remembered as nobody's.
        proc.close(100, 6);
        let later = later + REREAD_INTERVAL;
        holders.update(&proc.procfs(), &members, &ns(&[500, 600, 700]), later);
        holders.update(&proc.procfs(), &members, &ns(&[500, 600, 700]), later);
        assert!(holders.unheld.contains(&700));
        assert_eq!(holders.owners(&members).get(&700), None);

        // A new process (a second instance) is read on first sight and holds a listener too; the
        // first holder in the services' order owns it.
        proc.process(101, "net:[1]");
        proc.open(101, 3, 500);
        let members = [member(0, 0, 100), member(0, 1, 101)];
        holders.update(&proc.procfs(), &members, &ns(&[500, 600, 700]), later);
        assert_eq!(holders.processes[&101].fds, [(3, 500)]);
        assert_eq!(holders.owners(&members).get(&500), Some(&(0, 0)));

        // The first holder closes it (found by the per-scrape check); a closed listener is
        // forgotten, and with it what was remembered about it.
        proc.close(100, 3);
        holders.update(&proc.procfs(), &members, &ns(&[500, 600]), later);
        assert_eq!(holders.owners(&members).get(&500), Some(&(0, 1)));
        assert_eq!(holders.processes[&100].fds, [(5, 600)]);
        assert!(!holders.unheld.contains(&700));

        // A process gone, or in another namespace now, is forgotten.
        holders.update(&proc.procfs(), &members[..1], &ns(&[500, 600]), later);
        assert!(!holders.processes.contains_key(&101));
        let elsewhere = [Namespace::with_listeners("net:[2]", &[500, 600])];
        holders.update(&proc.procfs(), &members[..1], &elsewhere, later);
        assert_eq!(holders.processes[&100].ns, PathBuf::from("net:[2]"));
    }
}
