//! Following a log file by path: reading what was appended since the last poll, across rotation,
//! truncation and paths that are briefly not a regular file.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What the follower hands on: a complete line (without its newline), or a line that was cut.
#[derive(Debug, PartialEq)]
pub enum Event<'a> {
    Line(&'a [u8]),
    Broken,
}

/// Size of the read buffer, and so the longest line read whole; longer lines are parse errors.
pub const CHUNK: usize = 64 * 1024;

/// Most bytes read in one poll, so that a huge backlog is worked off over several scrapes instead
/// of overrunning one scrape's deadline.
pub const MAX_BYTES_PER_POLL: u64 = 256 << 20;

/// Follows a log file by path across rotations. Each [`Follower::poll`] reads what was appended
/// since the last one, in fixed-size chunks: memory does not grow with the log.
///
/// - Renamed away (logrotate's default): the path now names another inode. The old file is kept
///   open and read to its end on this poll and the following ones until the new file has content
///   (the writer has reopened), so the lines Nginx writes before `nginx -s reopen` are not lost;
///   the new file is read from its start.
/// - Copied and truncated (`copytruncate`): the file is shorter than the offset, or the byte
///   before the offset is no longer a newline (it was truncated and has grown past the offset
///   since); reading restarts at 0. Lines written between the last poll and the truncation are in
///   the copy, not counted; a refill that happens to put a newline at the old offset goes unseen.
/// - Absent, or not a regular file (a directory, a FIFO, a device), or refused: nothing is opened
///   or read at the path until it is a regular file again, and then from its start; a file
///   already open (a rotated-away one) is still read to its end. [`Follower::problem`] says why.
///
/// Only regular files are ever opened, and without blocking: a FIFO or a device at the path is
/// seen by `stat` and never opened, and the open itself is `O_NONBLOCK` (checked again with
/// `fstat`) in case it is swapped in between.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    current: Option<Tail>,
    retired: Option<Tail>,
    buffer: Vec<u8>,
    /// Until [`Follower::start`]: a log found then is followed from its end.
    start_at_end: bool,
    problem: Option<Problem>,
    pub rotations: u64,
    pub truncations: u64,
    /// Polls that met an error other than a missing path (each counts once), and rotated-away
    /// files that could not be read to their end.
    pub errors: u64,
}

/// Why the path is not being followed right now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub reason: Reason,
    /// What was found, for a log line: an OS error's text, or "is a FIFO, not a regular file".
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Nothing at the path (yet): before Nginx first writes, between a rename and a reopen.
    Missing,
    /// A directory, a FIFO, a socket or a device: never opened.
    NotRegularFile,
    PermissionDenied,
    /// Any other error: EIO, a path component that is not a directory, too many links.
    IoError,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::Missing,
        Reason::NotRegularFile,
        Reason::PermissionDenied,
        Reason::IoError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::NotRegularFile => "not_regular_file",
            Reason::PermissionDenied => "permission_denied",
            Reason::IoError => "io_error",
        }
    }
}

impl Problem {
    fn io(e: &io::Error) -> Problem {
        let reason = match e.kind() {
            io::ErrorKind::NotFound => Reason::Missing,
            io::ErrorKind::PermissionDenied => Reason::PermissionDenied,
            io::ErrorKind::IsADirectory => Reason::NotRegularFile,
            _ => Reason::IoError,
        };
        Problem {
            reason,
            detail: e.to_string(),
        }
    }

    fn not_regular(kind: std::fs::FileType) -> Problem {
        Problem {
            reason: Reason::NotRegularFile,
            detail: format!(
                "is {}, not a regular file; not read until it is one",
                file_kind(kind)
            ),
        }
    }
}

#[derive(Debug)]
struct Tail {
    file: File,
    id: (u64, u64),
    /// Where the next unread line starts.
    offset: u64,
    /// Inside a line longer than the buffer: drop bytes until the next newline.
    skipping: bool,
}

impl Follower {
    /// Follows `path` from its end as found by [`Follower::start`] (or the first poll), so the
    /// backlog from before is not counted as if it had just happened; a file that appears later
    /// is read from its start. Touches nothing on disk.
    pub fn new(path: impl Into<PathBuf>) -> Follower {
        Follower {
            start_at_end: true,
            ..Follower::from_start(path)
        }
    }

    /// Follows `path` from its start (tests, the benchmark).
    pub fn from_start(path: impl Into<PathBuf>) -> Follower {
        Follower {
            path: path.into(),
            current: None,
            retired: None,
            buffer: vec![0; CHUNK],
            start_at_end: false,
            problem: None,
            rotations: 0,
            truncations: 0,
            errors: 0,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the log is a regular file being followed.
    pub fn is_open(&self) -> bool {
        self.current.is_some() && self.problem.is_none()
    }

    /// Why the log is not followed, as of the last poll.
    pub fn problem(&self) -> Option<&Problem> {
        self.problem.as_ref()
    }

    /// The first look at the path (once; the first poll does it if nobody did): a regular file
    /// there is opened and followed from its end. May block on a hung filesystem, like a poll.
    pub fn start(&mut self) {
        if !std::mem::take(&mut self.start_at_end) {
            return;
        }
        let on_disk = std::fs::metadata(&self.path);
        if let Ok(tail) = self.open_current(&on_disk, true) {
            self.current = Some(tail);
        }
    }

    /// Reads everything appended since the last poll and hands each line to `sink`. A path that
    /// cannot be followed is not an error here: it is [`Follower::problem`], and every poll tries
    /// again. The error is for lines lost: a rotated-away file that could not be read to its end.
    pub fn poll(&mut self, mut sink: impl FnMut(Event)) -> io::Result<()> {
        self.start();
        let mut budget = MAX_BYTES_PER_POLL;
        let on_disk = std::fs::metadata(&self.path);
        let mut lost = Ok(());
        if self.current_was_replaced(&on_disk) {
            // A file rotated twice between polls: the older one is finished now.
            if let Some(older) = self.retired.take() {
                lost = lost.and(finish(older, &mut self.buffer, &mut budget, &mut sink));
            }
            self.retired = self.current.take();
            self.rotations += 1;
        }
        lost = lost.and(self.read_retired(&on_disk, &mut budget, &mut sink));
        self.problem = self.read_current(&on_disk, &mut budget, &mut sink).err();
        let failed = self
            .problem
            .as_ref()
            .is_some_and(|p| p.reason != Reason::Missing);
        self.errors += u64::from(failed) + u64::from(lost.is_err());
        lost
    }

    /// Whether the path no longer names the open file: gone, or another inode. A path that
    /// cannot be looked at (EACCES, EIO) says nothing either way; the open file is kept.
    fn current_was_replaced(&self, on_disk: &io::Result<std::fs::Metadata>) -> bool {
        let Some(tail) = &self.current else {
            return false;
        };
        match on_disk {
            Ok(meta) => tail.id != os::file_id(meta),
            Err(e) => e.kind() == io::ErrorKind::NotFound,
        }
    }

    /// Reads the rotated-away file, and finishes it once the writer has moved to the new one:
    /// nothing more came and the file at the path has content.
    fn read_retired(
        &mut self,
        on_disk: &io::Result<std::fs::Metadata>,
        budget: &mut u64,
        sink: &mut impl FnMut(Event),
    ) -> io::Result<()> {
        let Some(retired) = &mut self.retired else {
            return Ok(());
        };
        let read = match retired.read(&mut self.buffer, budget, false, sink) {
            Ok(read) => read,
            Err(e) => {
                self.retired = None;
                return Err(e);
            }
        };
        let writer_moved = self.current.as_ref().is_some_and(|t| t.offset > 0)
            || on_disk.as_ref().is_ok_and(|m| m.is_file() && m.len() > 0);
        if read == 0 && *budget > 0 && writer_moved {
            if let Some(old) = self.retired.take() {
                return finish(old, &mut self.buffer, budget, sink);
            }
        }
        Ok(())
    }

    /// Opens the file at the path if none is open, and reads it.
    fn read_current(
        &mut self,
        on_disk: &io::Result<std::fs::Metadata>,
        budget: &mut u64,
        sink: &mut impl FnMut(Event),
    ) -> Result<(), Problem> {
        if self.current.is_none() {
            self.current = Some(self.open_current(on_disk, false)?);
        }
        let Some(tail) = &mut self.current else {
            return Ok(());
        };
        if tail.truncated().map_err(|e| Problem::io(&e))? {
            tail.offset = 0;
            tail.skipping = false;
            self.truncations += 1;
        }
        tail.read(&mut self.buffer, budget, false, sink)
            .map_err(|e| Problem::io(&e))?;
        match on_disk {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Problem::io(e)),
            _ => Ok(()),
        }
    }

    fn open_current(
        &mut self,
        on_disk: &io::Result<std::fs::Metadata>,
        start_at_end: bool,
    ) -> Result<Tail, Problem> {
        let meta = on_disk.as_ref().map_err(Problem::io)?;
        if !meta.is_file() {
            return Err(Problem::not_regular(meta.file_type()));
        }
        // The rotated-away file back under its name: go on where it was.
        let id = os::file_id(meta);
        if let Some(tail) = self.retired.take_if(|t| t.id == id) {
            return Ok(tail);
        }
        let mut tail = Tail::open(&self.path)?;
        if start_at_end {
            tail.skip_to_end().map_err(|e| Problem::io(&e))?;
        }
        Ok(tail)
    }
}

/// Reads a rotated-away file to its end, its cut last line counted as broken. What the budget
/// leaves unread is lost, and said so.
fn finish(
    mut old: Tail,
    buffer: &mut [u8],
    budget: &mut u64,
    sink: &mut impl FnMut(Event),
) -> io::Result<()> {
    old.read(buffer, budget, true, sink)?;
    if *budget == 0 {
        let size = old.file.metadata()?.len();
        let left = size.saturating_sub(old.offset);
        if left > 0 {
            return Err(io::Error::other(format!(
                "{left} bytes of a rotated-away file skipped: more than {MAX_BYTES_PER_POLL} bytes to read in one scrape"
            )));
        }
    }
    Ok(())
}

impl Tail {
    /// Opens a regular file without blocking: `O_NONBLOCK` makes an open of a FIFO or a device
    /// swapped in since `stat` return at once, and `fstat` refuses it (reads of a regular file
    /// ignore the flag). `O_NOCTTY`: a terminal never becomes ours.
    fn open(path: &Path) -> Result<Tail, Problem> {
        let file = os::open_nonblocking(path).map_err(|e| Problem::io(&e))?;
        let meta = file.metadata().map_err(|e| Problem::io(&e))?;
        if !meta.is_file() {
            return Err(Problem::not_regular(meta.file_type()));
        }
        Ok(Tail {
            file,
            id: os::file_id(&meta),
            offset: 0,
            skipping: false,
        })
    }

    /// Places the offset at the end; a line still being written there is skipped, not counted
    /// as broken.
    fn skip_to_end(&mut self) -> io::Result<()> {
        self.offset = self.file.metadata()?.len();
        self.skipping = !self.newline_before_offset()?;
        Ok(())
    }

    /// Whether the file was truncated in place since the last read (copytruncate).
    fn truncated(&mut self) -> io::Result<bool> {
        let size = self.file.metadata()?.len();
        Ok(size < self.offset || (!self.skipping && !self.newline_before_offset()?))
    }

    /// Whether the byte before the offset is the newline that ended the last line read (true at
    /// offset 0). If not, the file was truncated and has grown past the offset again since.
    fn newline_before_offset(&mut self) -> io::Result<bool> {
        let Some(before) = self.offset.checked_sub(1) else {
            return Ok(true);
        };
        let mut byte = [0u8; 1];
        let n = os::read_at(&self.file, &mut byte, before)?;
        Ok(n == 1 && byte[0] == b'\n')
    }

    /// Reads complete lines from the offset to the end of the file, at most `budget` bytes. A
    /// partial last line is left for the next read, unless `finish`: then it is a broken line.
    /// Returns the bytes consumed.
    fn read(
        &mut self,
        buffer: &mut [u8],
        budget: &mut u64,
        finish: bool,
        sink: &mut impl FnMut(Event),
    ) -> io::Result<u64> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        let start = self.offset;
        let mut filled = 0;
        loop {
            if *budget == 0 {
                break;
            }
            let room = buffer.len().saturating_sub(filled);
            let want = room.min(usize::try_from(*budget).unwrap_or(usize::MAX));
            let Some(space) = buffer.get_mut(filled..filled + want) else {
                break;
            };
            let n = match self.file.read(space) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                break;
            }
            *budget = budget.saturating_sub(n as u64);
            filled += n;
            let mut line_start = 0;
            while let Some(newline) = memchr::memchr(b'\n', &buffer[line_start..filled]) {
                let line = &buffer[line_start..line_start + newline];
                if self.skipping {
                    self.skipping = false;
                } else {
                    sink(Event::Line(line));
                }
                line_start += newline + 1;
            }
            self.offset += line_start as u64;
            if line_start == 0 && filled == buffer.len() {
                // One line fills the buffer: count it once and drop it up to its newline.
                if !self.skipping {
                    sink(Event::Broken);
                }
                self.skipping = true;
                self.offset += filled as u64;
                filled = 0;
                continue;
            }
            buffer.copy_within(line_start..filled, 0);
            filled -= line_start;
        }
        if finish && filled > 0 && *budget > 0 {
            if !self.skipping {
                sink(Event::Broken);
            }
            self.offset += filled as u64;
        }
        Ok(self.offset - start)
    }
}

/// What stands at a watched path, for a message: "a FIFO", "a directory", "a regular file".
pub fn file_kind(kind: std::fs::FileType) -> &'static str {
    if kind.is_file() {
        "a regular file"
    } else if kind.is_dir() {
        "a directory"
    } else {
        os::special_kind(kind)
    }
}

/// What following a file needs of the system: a file's identity across renames, an open that
/// cannot block, a read at an offset.
#[cfg(unix)]
mod os {
    use std::fs::File;
    use std::io;
    use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
    use std::path::Path;

    /// Device and inode: the same file under any name.
    pub fn file_id(meta: &std::fs::Metadata) -> (u64, u64) {
        (meta.dev(), meta.ino())
    }

    pub fn open_nonblocking(path: &Path) -> io::Result<File> {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
    }

    pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        file.read_at(buf, offset)
    }

    pub fn special_kind(kind: std::fs::FileType) -> &'static str {
        if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "something else"
        }
    }
}

/// Windows: std gives no stable file identity, so a rotation is seen only when the file at the
/// path shrinks (docs/windows.md); there are no FIFOs to block an open.
#[cfg(not(unix))]
mod os {
    use std::fs::File;
    use std::io;
    use std::path::Path;

    pub fn file_id(_meta: &std::fs::Metadata) -> (u64, u64) {
        (0, 0)
    }

    pub fn open_nonblocking(path: &Path) -> io::Result<File> {
        File::open(path)
    }

    pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::windows::fs::FileExt::seek_read(file, buf, offset)
    }

    pub fn special_kind(_kind: std::fs::FileType) -> &'static str {
        "something else"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn collect(follower: &mut Follower) -> Vec<String> {
        let mut lines = Vec::new();
        follower
            .poll(|event| match event {
                Event::Line(l) => lines.push(String::from_utf8_lossy(l).into_owned()),
                Event::Broken => lines.push("BROKEN".into()),
            })
            .unwrap();
        lines
    }

    fn append(path: &Path, text: &str) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn follower_waits_for_a_missing_file_and_keeps_partial_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut f = Follower::new(&path);
        assert!(collect(&mut f).is_empty());
        append(&path, "one\ntw");
        assert_eq!(collect(&mut f), ["one"]);
        append(&path, "o\n");
        assert_eq!(collect(&mut f), ["two"]);
    }

    #[test]
    fn follower_starts_at_the_end_found_by_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        append(&path, "old\n");
        let mut f = Follower::new(&path);
        f.start();
        append(&path, "new\n");
        f.start(); // once only
        assert_eq!(collect(&mut f), ["new"]);
    }

    #[test]
    fn follower_starts_at_the_end_found_by_its_first_poll() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut f = Follower::new(&path); // before the file exists: new() looks at nothing
        append(&path, "old\nhalf a li");
        assert!(collect(&mut f).is_empty());
        // The rest of the line being written at the first poll is not counted as broken.
        append(&path, "ne\nnew\n");
        assert_eq!(collect(&mut f), ["new"]);
    }

    /// Polls on another thread: a poll that blocks (an open of a FIFO) fails the test instead
    /// of hanging it.
    fn collect_within_a_second(follower: Follower) -> (Follower, Vec<String>) {
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut follower = follower;
            let lines = collect(&mut follower);
            let _ = send.send((follower, lines));
        });
        receive
            .recv_timeout(std::time::Duration::from_secs(1))
            .expect("a poll blocked")
    }

    fn reason(f: &Follower) -> Option<Reason> {
        f.problem().map(|p| p.reason)
    }

    #[test]
    fn follower_never_opens_a_fifo_and_recovers_when_a_file_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let fifo = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let (f, lines) = collect_within_a_second(Follower::new(&path));
        assert!(lines.is_empty());
        assert!(!f.is_open());
        assert_eq!(reason(&f), Some(Reason::NotRegularFile));
        assert!(
            f.problem().unwrap().detail.contains("FIFO"),
            "{:?}",
            f.problem()
        );
        let (f, _) = collect_within_a_second(f);
        assert_eq!(f.errors, 2, "one per poll");
        std::fs::remove_file(&path).unwrap();
        append(&path, "a\nb\n");
        // A log that appears after the first poll is read from its start.
        let (f, lines) = collect_within_a_second(f);
        assert_eq!(lines, ["a", "b"]);
        assert!(f.is_open());
        assert_eq!(f.problem(), None);
    }

    #[test]
    fn a_fifo_swapped_in_by_rename_never_blocks_and_the_old_file_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let fifo_path = dir.path().join("fifo");
        let fifo = std::ffi::CString::new(fifo_path.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo(3) with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let mut f = Follower::from_start(&path);
        append(&path, "a\n");
        assert_eq!(collect(&mut f), ["a"]);
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        append(&dir.path().join("access.log.1"), "b\n");
        std::fs::rename(&fifo_path, &path).unwrap();
        let (f, lines) = collect_within_a_second(f);
        assert_eq!(lines, ["b"]);
        assert_eq!(reason(&f), Some(Reason::NotRegularFile));
        std::fs::remove_file(&path).unwrap();
        append(&path, "c\n");
        let (f, lines) = collect_within_a_second(f);
        assert_eq!(lines, ["c"]);
        assert!(f.is_open());
    }

    #[test]
    fn follower_recovers_after_the_path_was_briefly_a_directory_and_loses_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let mut f = Follower::from_start(&path);
        append(&path, "a\n");
        assert_eq!(collect(&mut f), ["a"]);
        std::fs::rename(&path, &rotated).unwrap();
        std::fs::create_dir(&path).unwrap();
        // The writer has not reopened: it still appends to the old file.
        append(&rotated, "b\n");
        assert_eq!(collect(&mut f), ["b"]);
        assert_eq!(reason(&f), Some(Reason::NotRegularFile));
        assert!(!f.is_open());
        append(&rotated, "c\n");
        assert_eq!(collect(&mut f), ["c"], "the old file is still read");
        std::fs::remove_dir(&path).unwrap();
        append(&path, "d\n");
        assert_eq!(collect(&mut f), ["d"]);
        assert!(f.is_open());
        assert_eq!(f.problem(), None);
        append(&path, "e\n");
        assert_eq!(collect(&mut f), ["e"]);
        assert_eq!(f.rotations, 1);
    }

    #[test]
    fn a_file_renamed_away_and_back_goes_on_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let aside = dir.path().join("aside");
        let mut f = Follower::from_start(&path);
        append(&path, "a\n");
        assert_eq!(collect(&mut f), ["a"]);
        std::fs::rename(&path, &aside).unwrap();
        assert!(collect(&mut f).is_empty());
        assert_eq!(reason(&f), Some(Reason::Missing));
        std::fs::rename(&aside, &path).unwrap();
        append(&path, "b\n");
        assert_eq!(collect(&mut f), ["b"], "not read again from its start");
        assert!(f.is_open());
    }

    #[test]
    fn io_errors_have_a_reason() {
        let reason = |kind| Problem::io(&io::Error::from(kind)).reason;
        assert_eq!(reason(io::ErrorKind::NotFound), Reason::Missing);
        assert_eq!(
            reason(io::ErrorKind::PermissionDenied),
            Reason::PermissionDenied
        );
        assert_eq!(reason(io::ErrorKind::IsADirectory), Reason::NotRegularFile);
        assert_eq!(reason(io::ErrorKind::Other), Reason::IoError);
    }

    #[test]
    fn follower_survives_rename_rotation_with_late_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let rotated = dir.path().join("access.log.1");
        let mut f = Follower::from_start(&path);
        append(&path, "a\n");
        assert_eq!(collect(&mut f), ["a"]);
        std::fs::rename(&path, &rotated).unwrap();
        append(&rotated, "b\n");
        assert_eq!(collect(&mut f), ["b"]);
        // The writer still writes to the old file until it reopens.
        append(&rotated, "c\npart");
        std::fs::File::create(&path).unwrap();
        assert_eq!(collect(&mut f), ["c"]);
        append(&path, "d\n");
        // The new file has content: the old one is finished, its cut line counted as broken.
        assert_eq!(collect(&mut f), ["BROKEN", "d"]);
        append(&path, "e\n");
        assert_eq!(collect(&mut f), ["e"]);
        assert_eq!(f.rotations, 1);
    }

    #[test]
    fn follower_restarts_after_copytruncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut f = Follower::from_start(&path);
        append(&path, "first line\nsecond line\n");
        assert_eq!(collect(&mut f).len(), 2);
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        append(&path, "x\n");
        assert_eq!(collect(&mut f), ["x"]);
        assert_eq!(f.truncations, 1);
        // Truncated and grown past the old offset again between two polls.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        append(&path, "yyyy\n");
        assert_eq!(collect(&mut f), ["yyyy"]);
        assert_eq!(f.truncations, 2);
    }

    #[test]
    fn follower_cuts_overlong_lines_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let mut f = Follower::from_start(&path);
        append(&path, &format!("{}\nok\n", "x".repeat(CHUNK * 2 + 7)));
        assert_eq!(collect(&mut f), ["BROKEN", "ok"]);
    }
}
