//! The process entries of /proc, listed whole or only from a PID up.
//!
//! The kernel lists /proc's processes in PID order, and a listing can start at any PID: the
//! directory's position for a PID's entry is the PID plus a fixed offset (the entries before the
//! processes'). A full listing shows that offset (each entry's `d_off` is the next entry's
//! position); [`PidDir::list_from`] then seeks straight to a PID and lists only what is above it,
//! at a cost in the kernel of the entries listed, not of every process on the host. Where the
//! positions do not follow that rule (another kernel, another filesystem under
//! `--path.procfs`), only full listings are made.

use std::io;
use std::path::Path;

/// /proc kept open for its listings.
#[derive(Debug)]
pub struct PidDir {
    dir: std::fs::File,
    /// A PID's position in the listing minus the PID, once a full listing has shown it.
    offset: Option<i64>,
    buffer: Vec<u8>,
}

/// One entry as the kernel gave it: its name, inode and the position of the entry after it.
struct Entry<'a> {
    name: &'a [u8],
    inode: u64,
    next: i64,
}

impl PidDir {
    pub fn open(root: &Path) -> io::Result<PidDir> {
        let dir = kernel::open_dir(root)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", root.display())))?;
        Ok(PidDir {
            dir,
            offset: None,
            // A few hundred entries of about 24 bytes each: two or three reads for a whole
            // listing of a busy host, one for a partial one.
            buffer: vec![0; 8 * 1024],
        })
    }

    /// Every process's PID and the inode of its directory, in PID order.
    pub fn list_all(&mut self) -> io::Result<Vec<(u32, u64)>> {
        let mut pids = Vec::new();
        let mut positions = Vec::new(); // (PID, position of the entry after it)
        self.list(0, |entry| {
            if let Some(pid) = pid_of(entry.name) {
                pids.push((pid, entry.inode));
                positions.push((pid, entry.next));
            }
        })?;
        self.offset = offset_of(&positions);
        pids.sort_unstable();
        Ok(pids)
    }

    /// The processes whose PID is `first` or more, in PID order; `None` when the positions are
    /// not known (no full listing has shown them) or this listing breaks the rule they follow.
    pub fn list_from(&mut self, first: u32) -> io::Result<Option<Vec<(u32, u64)>>> {
        let Some(offset) = self.offset else {
            return Ok(None);
        };
        let (mut pids, mut unexpected) = (Vec::new(), false);
        self.list(i64::from(first) + offset, |entry| {
            match pid_of(entry.name) {
                Some(pid) if pid >= first => pids.push((pid, entry.inode)),
                _ => unexpected = true,
            }
        })?;
        if unexpected || !pids.is_sorted() {
            self.offset = None;
            return Ok(None);
        }
        Ok(Some(pids))
    }

    /// Every entry from `position` to the end.
    fn list(&mut self, position: i64, mut each: impl FnMut(&Entry)) -> io::Result<()> {
        kernel::seek(&self.dir, position)?;
        loop {
            let filled = kernel::read_entries(&self.dir, &mut self.buffer)?;
            if filled == 0 {
                return Ok(());
            }
            let mut at = 0;
            while let Some((entry, size)) = parse_entry(&self.buffer[at..filled]) {
                each(&entry);
                at += size;
            }
        }
    }
}

fn pid_of(name: &[u8]) -> Option<u32> {
    let name = std::str::from_utf8(name).ok()?;
    if name.starts_with('+') {
        return None; // "+1" parses as a u32, and is no entry of /proc
    }
    name.parse().ok()
}

/// The offset every consecutive pair of process entries agrees on: the position after one entry
/// is the next one's PID plus it. `None` without two entries to compare or where they disagree.
fn offset_of(positions: &[(u32, i64)]) -> Option<i64> {
    let mut offsets = positions
        .windows(2)
        .map(|pair| pair[0].1 - i64::from(pair[1].0));
    let first = offsets.next()?;
    offsets.all(|o| o == first).then_some(first)
}

/// A `linux_dirent64` record at the start of `bytes`, and its size.
fn parse_entry(bytes: &[u8]) -> Option<(Entry<'_>, usize)> {
    const NAME_AT: usize = 19; // d_ino u64, d_off i64, d_reclen u16, d_type u8
    let header = bytes.get(..NAME_AT)?;
    let inode = u64::from_ne_bytes(header[0..8].try_into().ok()?);
    let next = i64::from_ne_bytes(header[8..16].try_into().ok()?);
    let size = usize::from(u16::from_ne_bytes(header[16..18].try_into().ok()?));
    let name = bytes.get(NAME_AT..size)?;
    let name = &name[..name.iter().position(|&b| b == 0)?];
    Some((Entry { name, inode, next }, size))
}

#[cfg(target_os = "linux")]
mod kernel {
    use std::io;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::path::Path;

    pub fn open_dir(path: &Path) -> io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
    }

    pub fn seek(dir: &std::fs::File, position: i64) -> io::Result<()> {
        let position = libc::off_t::try_from(position)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "position out of range"))?;
        // SAFETY: lseek on a descriptor we own.
        if unsafe { libc::lseek(dir.as_raw_fd(), position, libc::SEEK_SET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Fills `buffer` with whole `linux_dirent64` records; 0 at the end of the directory.
    pub fn read_entries(dir: &std::fs::File, buffer: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: getdents64 writes at most `buffer.len()` bytes into `buffer`.
            let filled = unsafe {
                libc::syscall(
                    libc::SYS_getdents64,
                    dir.as_raw_fd(),
                    buffer.as_mut_ptr(),
                    buffer.len(),
                )
            };
            match usize::try_from(filled) {
                Ok(filled) => return Ok(filled),
                Err(_) => {
                    let error = io::Error::last_os_error();
                    if error.kind() != io::ErrorKind::Interrupted {
                        return Err(error);
                    }
                }
            }
        }
    }
}

/// Elsewhere no collector lists /proc (src/collector/platform/): the calls say so.
#[cfg(not(target_os = "linux"))]
mod kernel {
    use std::io;
    use std::path::Path;

    fn unsupported() -> io::Error {
        io::Error::new(io::ErrorKind::Unsupported, "/proc exists only on Linux")
    }

    pub fn open_dir(_path: &Path) -> io::Result<std::fs::File> {
        Err(unsupported())
    }

    pub fn seek(_dir: &std::fs::File, _position: i64) -> io::Result<()> {
        Err(unsupported())
    }

    pub fn read_entries(_dir: &std::fs::File, _buffer: &mut [u8]) -> io::Result<usize> {
        Err(unsupported())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A child that sleeps until killed: a process with a PID above most of the host's.
    fn sleeper() -> std::process::Child {
        std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep(1) from coreutils")
    }

    #[test]
    fn a_full_listing_has_every_process_and_learns_the_positions() {
        let child = sleeper();
        let mut dir = PidDir::open(Path::new("/proc")).unwrap();
        let listed = dir.list_all().unwrap();
        let mut expected: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        expected.sort_unstable();
        let pids: Vec<u32> = listed.iter().map(|&(pid, _)| pid).collect();
        for pid in [std::process::id(), child.id(), 1] {
            assert!(pids.contains(&pid), "{pid} missing from {pids:?}");
        }
        // Processes come and go on a busy host: the two listings share nearly all.
        let common = pids.iter().filter(|p| expected.contains(p)).count();
        assert!(
            common * 10 >= expected.len() * 9,
            "{pids:?} against {expected:?}"
        );
        let (_, inode) = listed.iter().find(|(pid, _)| *pid == child.id()).unwrap();
        let meta = std::fs::metadata(format!("/proc/{}", child.id())).unwrap();
        assert_eq!(*inode, std::os::unix::fs::MetadataExt::ino(&meta));
        assert!(
            dir.offset.is_some(),
            "this kernel's positions follow the rule"
        );
        kill(child);
    }

    #[test]
    fn a_listing_from_a_pid_has_the_processes_from_it_and_only_those() {
        let first = sleeper();
        let mut dir = PidDir::open(Path::new("/proc")).unwrap();
        let all = dir.list_all().unwrap();
        let second = sleeper();
        let from = dir.list_from(first.id()).unwrap().expect("positions known");
        let pids: Vec<u32> = from.iter().map(|&(pid, _)| pid).collect();
        assert!(pids.contains(&first.id()), "{pids:?}");
        assert!(
            pids.contains(&second.id()),
            "started after the full listing: {pids:?}"
        );
        assert!(pids.iter().all(|&pid| pid >= first.id()), "{pids:?}");
        let below = all.iter().filter(|(pid, _)| *pid < first.id()).count();
        assert!(
            below > 0,
            "PID 1 at least is below, and not listed: {pids:?}"
        );
        kill(first);
        kill(second);
    }

    #[test]
    fn without_a_full_listing_no_partial_one_is_made() {
        let mut dir = PidDir::open(Path::new("/proc")).unwrap();
        assert_eq!(dir.list_from(1).unwrap(), None);
    }

    #[test]
    fn a_directory_whose_positions_break_the_rule_gets_full_listings() {
        let root = tempfile::tempdir().unwrap();
        for pid in [10, 20, 30, 40] {
            std::fs::create_dir(root.path().join(pid.to_string())).unwrap();
        }
        let mut dir = PidDir::open(root.path()).unwrap();
        let all = dir.list_all().unwrap();
        assert_eq!(
            all.iter().map(|e| e.0).collect::<Vec<_>>(),
            [10, 20, 30, 40]
        );
        assert_eq!(
            dir.list_from(25).unwrap(),
            None,
            "a hashed directory's order"
        );
    }

    #[test]
    fn offsets_agree_or_are_unknown() {
        assert_eq!(offset_of(&[(1, 260), (2, 261), (3, 262)]), Some(258));
        assert_eq!(offset_of(&[(1, 260), (2, 270), (3, 262)]), None);
        assert_eq!(offset_of(&[(1, 259)]), None);
        assert_eq!(pid_of(b"+12"), None);
        assert_eq!(pid_of(b"self"), None);
        assert_eq!(pid_of(b"42"), Some(42));
    }

    /// A record as the kernel lays it out: inode, next position, size, type, NUL-ended name.
    fn record(name: &[u8], size: u16) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend(7u64.to_ne_bytes());
        bytes.extend(300i64.to_ne_bytes());
        bytes.extend(size.to_ne_bytes());
        bytes.push(4); // DT_DIR
        bytes.extend(name);
        bytes.push(0);
        bytes.resize(usize::from(size).max(bytes.len()), 0);
        bytes
    }

    #[test]
    fn records_are_read_only_within_their_bounds() {
        let whole = record(b"42", 24);
        let (entry, size) = parse_entry(&whole).expect("a whole record");
        assert_eq!(
            (entry.name, entry.inode, entry.next, size),
            (&b"42"[..], 7, 300, 24)
        );
        // A size of 0 would never move on, one past the buffer would read beyond it, a name
        // without its NUL has no end, and a header cut short is no record.
        assert!(parse_entry(&record(b"42", 0)).is_none());
        assert!(parse_entry(&record(b"42", 200)[..24]).is_none());
        let mut unended = record(b"4242", 24);
        unended[19..24].copy_from_slice(b"42424");
        assert!(parse_entry(&unended).is_none());
        assert!(parse_entry(&record(b"42", 24)[..10]).is_none());
    }

    fn kill(mut child: std::process::Child) {
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
