//! The Nginx access log: a parser of one line, the counts it adds up to, and a follower that reads
//! a log from where it left off and survives rotation.
//!
//! Nothing here depends on the rest of the crate, so `examples/bench_accesslog.rs` compiles this
//! very file to measure it. The parser works on bytes (a log may hold anything a client sent,
//! escaped or not) and never panics: a line it cannot read is counted as a parse error.
//!
//! Two formats: nginx's built-in `combined`, and `stack`, which is `combined` followed by
//! `rt=$request_time urt="$upstream_response_time" upgrade="$http_upgrade"` (docs/traffic.md).
//! In `combined` those trailing fields are used when present; in `stack` `rt=` is required, so a
//! log written in another format shows up as parse errors rather than as missing latencies.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How the log's lines are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Combined,
    Stack,
}

/// What kind of request a line was, by its path and headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Static = 0,
    Wsgi = 1,
    Asgi = 2,
    Websocket = 3,
}

impl Route {
    pub const ALL: [Route; 4] = [Route::Static, Route::Wsgi, Route::Asgi, Route::Websocket];

    pub fn name(self) -> &'static str {
        match self {
            Route::Static => "static",
            Route::Wsgi => "wsgi",
            Route::Asgi => "asgi",
            Route::Websocket => "websocket",
        }
    }
}

/// Status classes `1xx` to `5xx`, indexed by the first digit minus one.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The path prefixes that decide a request's route. A websocket is a request with
/// `Upgrade: websocket`, answered `101`, or under a websocket prefix; then static prefixes, then
/// ASGI prefixes; everything else is WSGI.
#[derive(Debug, Clone, PartialEq)]
pub struct Routes {
    pub static_prefixes: Vec<String>,
    pub websocket_prefixes: Vec<String>,
    pub asgi_prefixes: Vec<String>,
}

impl Default for Routes {
    /// What fits a Django site with no configuration.
    fn default() -> Routes {
        Routes {
            static_prefixes: vec!["/static/".into(), "/media/".into()],
            websocket_prefixes: vec!["/ws/".into()],
            asgi_prefixes: Vec::new(),
        }
    }
}

impl Routes {
    pub fn classify(&self, entry: &Entry) -> Route {
        let under = |prefixes: &[String]| {
            prefixes
                .iter()
                .any(|p| entry.path.starts_with(p.as_bytes()))
        };
        if entry.upgrade_websocket || entry.status == 101 || under(&self.websocket_prefixes) {
            Route::Websocket
        } else if under(&self.static_prefixes) {
            Route::Static
        } else if under(&self.asgi_prefixes) {
            Route::Asgi
        } else {
            Route::Wsgi
        }
    }
}

/// The fields of one line the collector uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'a> {
    pub client: &'a [u8],
    /// `$time_local` as Unix seconds.
    pub time: i64,
    /// The request target (path and query) of `$request`; empty when the request line was not
    /// HTTP (nginx logs `"-"` or the raw bytes for those).
    pub path: &'a [u8],
    pub status: u16,
    /// `$request_time` in microseconds.
    pub request_time_us: Option<u64>,
    /// `$upstream_response_time` in microseconds, summed over the upstreams tried; `None` when
    /// no upstream answered (`-`, static files).
    pub upstream_time_us: Option<u64>,
    pub upgrade_websocket: bool,
}

/// Parses one line (without its newline). `None` means a parse error.
pub fn parse_line(line: &[u8], format: Format) -> Option<Entry<'_>> {
    // $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    // "$http_referer" "$http_user_agent" [stack fields]
    let space = memchr::memchr(b' ', line)?;
    let client = &line[..space];
    if client.is_empty() {
        return None;
    }
    let rest = &line[space + 1..];
    let open = memchr::memchr(b'[', rest)?;
    let rest = &rest[open + 1..];
    let close = memchr::memchr(b']', rest)?;
    let time = parse_time_local(&rest[..close])?;
    let rest = rest[close + 1..].strip_prefix(b" \"")?;
    let (request, rest) = quoted(rest)?;
    let rest = rest.strip_prefix(b" ")?;
    let (status, rest) = split_word(rest);
    let status = parse_status(status)?;
    let (bytes, rest) = split_word(rest);
    if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let rest = rest.strip_prefix(b"\"")?;
    let (_referer, rest) = quoted(rest)?;
    let rest = rest.strip_prefix(b" \"")?;
    let (_agent, tail) = quoted(rest)?;

    let mut entry = Entry {
        client,
        time,
        path: request_target(request),
        status,
        request_time_us: None,
        upstream_time_us: None,
        upgrade_websocket: false,
    };
    let mut has_rt = false;
    for (key, value) in fields(tail) {
        match key {
            b"rt" => {
                entry.request_time_us = Some(parse_seconds(value)?);
                has_rt = true;
            }
            b"urt" => entry.upstream_time_us = parse_upstream_times(value),
            b"upgrade" => entry.upgrade_websocket = value.eq_ignore_ascii_case(b"websocket"),
            _ => {}
        }
    }
    if format == Format::Stack && !has_rt {
        return None;
    }
    Some(entry)
}

/// The text up to the closing quote (a quote escaped with a backslash does not close), and what
/// follows it.
fn quoted(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut from = 0;
    loop {
        let at = from + memchr::memchr(b'"', &text[from..])?;
        let backslashes = text[..at].iter().rev().take_while(|&&b| b == b'\\').count();
        if backslashes % 2 == 0 {
            return Some((&text[..at], &text[at + 1..]));
        }
        from = at + 1;
    }
}

fn split_word(text: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', text) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &[]),
    }
}

fn parse_status(text: &[u8]) -> Option<u16> {
    match text {
        [a @ b'1'..=b'5', b, c] if b.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// The target of `METHOD TARGET PROTOCOL`; empty when the request line is not of that shape.
fn request_target(request: &[u8]) -> &[u8] {
    let Some(first) = memchr::memchr(b' ', request) else {
        return &[];
    };
    let rest = &request[first + 1..];
    match memchr::memchr(b' ', rest) {
        Some(second) => &rest[..second],
        None => rest,
    }
}

/// `key=value` or `key="value"` pairs separated by spaces.
fn fields(mut text: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || loop {
        while let [b' ', rest @ ..] = text {
            text = rest;
        }
        if text.is_empty() {
            return None;
        }
        let (word_end, eq) = match memchr::memchr2(b'=', b' ', text) {
            Some(i) if text[i] == b'=' => (i, true),
            Some(i) => (i, false),
            None => (text.len(), false),
        };
        if !eq {
            text = &text[word_end..];
            continue;
        }
        let key = &text[..word_end];
        let after = &text[word_end + 1..];
        if let Some(inner) = after.strip_prefix(b"\"") {
            let (value, rest) = quoted(inner).unwrap_or((inner, &[]));
            text = rest;
            return Some((key, value));
        }
        let (value, rest) = split_word(after);
        text = rest;
        return Some((key, value));
    })
}

/// `1.234` seconds as microseconds; at most 9 integer digits, extra fraction digits dropped.
pub fn parse_seconds(text: &[u8]) -> Option<u64> {
    let (whole, fraction) = match memchr::memchr(b'.', text) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &[][..]),
    };
    if whole.is_empty() || whole.len() > 9 || !whole.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !fraction.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Nine digits of seconds are under 10^15 microseconds: no overflow, checked all the same.
    let seconds = whole.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    let mut us = seconds.checked_mul(1_000_000)?;
    let mut scale = 100_000;
    for d in fraction.iter().take(6) {
        us = us.checked_add(u64::from(d - b'0') * scale)?;
        scale /= 10;
    }
    Some(us)
}

/// `$upstream_response_time`: `0.012`, `-`, or several times separated by `, ` (upstreams tried
/// in turn) or ` : ` (internal redirects). The sum of the numbers; `None` when there are none.
fn parse_upstream_times(text: &[u8]) -> Option<u64> {
    let mut total = None;
    for part in text.split(|&b| b == b',' || b == b':' || b == b' ') {
        match part {
            b"" | b"-" => {}
            number => total = Some(total.unwrap_or(0u64).checked_add(parse_seconds(number)?)?),
        }
    }
    total
}

/// `10/Oct/2000:13:55:36 -0700` as Unix seconds.
pub fn parse_time_local(text: &[u8]) -> Option<i64> {
    if text.len() != 26 || text[2] != b'/' || text[6] != b'/' || text[20] != b' ' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = text.get(range)?;
        digits.iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let month = MONTHS.iter().position(|m| &text[3..6] == *m)? as i64 + 1;
    let (day, year) = (num(0..2)?, num(7..11)?);
    if text[11] != b':' || text[14] != b':' || text[17] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(12..14)?, num(15..17)?, num(18..20)?);
    let sign = match text[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = sign * (num(22..24)? * 3600 + num(24..26)? * 60);
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Upper bounds of the latency buckets in microseconds; the plans' thresholds (0.1, 0.2, 0.5, 1
/// and 2 s) are bounds exactly. A last bucket, +Inf, follows.
pub const BUCKETS_US: [u64; 16] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 200_000, 300_000, 500_000, 750_000, 1_000_000,
    1_500_000, 2_000_000, 3_000_000, 5_000_000, 10_000_000, 30_000_000,
];

/// A latency histogram in whole microseconds: exact sums, no float drift.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Latency {
    /// Observations per bucket (not cumulative); the last is +Inf.
    pub buckets: [u64; BUCKETS_US.len() + 1],
    pub count: u64,
    pub sum_us: u64,
}

impl Latency {
    pub fn observe(&mut self, us: u64) {
        let bucket = BUCKETS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BUCKETS_US.len());
        if let Some(n) = self.buckets.get_mut(bucket) {
            *n = n.saturating_add(1);
        }
        self.count = self.count.saturating_add(1);
        self.sum_us = self.sum_us.saturating_add(us);
    }
}

/// Everything the log has added up to since the exporter started.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    /// Requests per [`Route`] and status class.
    pub requests: [[u64; 5]; 4],
    pub request_time: [Latency; 4],
    pub upstream_time: [Latency; 4],
    pub lines: u64,
    pub parse_errors: u64,
    /// Whether any line carried `rt=` (then the histograms mean something).
    pub has_latency: bool,
    pub clients: RecentClients,
}

impl Counts {
    /// Adds one line; `now` (Unix seconds) places its client in the recent-clients window.
    pub fn add_line(&mut self, line: &[u8], format: Format, routes: &Routes, now: i64) {
        self.lines = self.lines.saturating_add(1);
        let Some(entry) = parse_line(line, format) else {
            self.parse_errors = self.parse_errors.saturating_add(1);
            return;
        };
        let route = routes.classify(&entry) as usize;
        // parse_status admits 100 to 599 only; a class outside 1xx-5xx is dropped, not a panic.
        let class = usize::from(entry.status / 100).checked_sub(1);
        if let Some(n) = class.and_then(|c| self.requests[route].get_mut(c)) {
            *n = n.saturating_add(1);
        }
        if let Some(us) = entry.request_time_us {
            self.has_latency = true;
            self.request_time[route].observe(us);
        }
        if let Some(us) = entry.upstream_time_us {
            self.upstream_time[route].observe(us);
        }
        self.clients.insert(entry.client, entry.time, now);
    }

    /// A line cut short (a rotated file that ended without a newline, or a line longer than the
    /// reader's buffer).
    pub fn add_broken(&mut self) {
        self.lines = self.lines.saturating_add(1);
        self.parse_errors = self.parse_errors.saturating_add(1);
    }
}

/// Distinct client addresses over the current minute and the five before it (a window of 5 to 6
/// minutes): one HyperLogLog sketch of 2^12 one-byte registers per minute, 24 KiB in all whatever
/// the traffic. Standard error 1.04/√4096 ≈ 1.6 %; below a few hundred clients the small-range
/// (linear counting) estimate is within about one client.
#[derive(Debug, Clone)]
pub struct RecentClients {
    slots: [(i64, Box<[u8; HLL_REGISTERS]>); WINDOW_MINUTES],
}

const HLL_BITS: u32 = 12;
const HLL_REGISTERS: usize = 1 << HLL_BITS;
pub const WINDOW_MINUTES: usize = 6;

impl Default for RecentClients {
    fn default() -> RecentClients {
        RecentClients {
            slots: std::array::from_fn(|_| (i64::MIN, Box::new([0u8; HLL_REGISTERS]))),
        }
    }
}

impl RecentClients {
    /// Counts `client` seen at `time`; lines older than the window are ignored and lines from the
    /// future (a clock ahead of ours) count in the current minute.
    pub fn insert(&mut self, client: &[u8], time: i64, now: i64) {
        let now_minute = now.div_euclid(60);
        let minute = time.div_euclid(60).min(now_minute);
        if minute <= now_minute.saturating_sub(WINDOW_MINUTES as i64) {
            return;
        }
        let slot = &mut self.slots[minute.rem_euclid(WINDOW_MINUTES as i64) as usize];
        if slot.0 != minute {
            slot.0 = minute;
            slot.1.fill(0);
        }
        let hash = hash64(client);
        let register = (hash >> (64 - HLL_BITS)) as usize;
        let rank = ((hash << HLL_BITS) | (1 << (HLL_BITS - 1))).leading_zeros() as u8 + 1;
        let cell = &mut slot.1[register];
        *cell = (*cell).max(rank);
    }

    /// The estimated number of distinct clients in the window ending at `now`.
    pub fn estimate(&self, now: i64) -> f64 {
        let now_minute = now.div_euclid(60);
        let mut union = [0u8; HLL_REGISTERS];
        for (minute, registers) in &self.slots {
            if *minute > now_minute.saturating_sub(WINDOW_MINUTES as i64) && *minute <= now_minute {
                for (u, r) in union.iter_mut().zip(registers.iter()) {
                    *u = (*u).max(*r);
                }
            }
        }
        let m = HLL_REGISTERS as f64;
        let zeros = union.iter().filter(|&&r| r == 0).count();
        let harmonic: f64 = union.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / harmonic;
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

/// FNV-1a, then MurmurHash3's finaliser so that every bit depends on every byte.
fn hash64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

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
            Ok(meta) => tail.id != (meta.dev(), meta.ino()),
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
        let id = (meta.dev(), meta.ino());
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
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| Problem::io(&e))?;
        let meta = file.metadata().map_err(|e| Problem::io(&e))?;
        if !meta.is_file() {
            return Err(Problem::not_regular(meta.file_type()));
        }
        Ok(Tail {
            file,
            id: (meta.dev(), meta.ino()),
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
        use std::os::unix::fs::FileExt;
        let Some(before) = self.offset.checked_sub(1) else {
            return Ok(true);
        };
        let mut byte = [0u8; 1];
        let n = self.file.read_at(&mut byte, before)?;
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
    use std::os::unix::fs::FileTypeExt;
    if kind.is_file() {
        "a regular file"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "something else"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const STACK_LINE: &[u8] = br#"203.0.113.9 - - [10/Oct/2024:13:55:36 +0200] "GET /api/items?page=2 HTTP/1.1" 200 512 "-" "curl/8.0" rt=0.305 urt="0.300" upgrade="-""#;

    #[test]
    fn parses_the_stack_format() {
        let e = parse_line(STACK_LINE, Format::Stack).unwrap();
        assert_eq!(e.client, b"203.0.113.9");
        assert_eq!(e.time, 1_728_561_336);
        assert_eq!(e.path, b"/api/items?page=2");
        assert_eq!(e.status, 200);
        assert_eq!(e.request_time_us, Some(305_000));
        assert_eq!(e.upstream_time_us, Some(300_000));
        assert!(!e.upgrade_websocket);
    }

    #[test]
    fn parses_combined_and_requires_rt_only_in_stack() {
        let line = br#"::1 - alice [01/Jan/1970:00:00:00 +0000] "POST /login HTTP/2.0" 302 0 "https://x/\"q\"" "Mozilla/5.0 (X11) \"quoted\"""#;
        let e = parse_line(line, Format::Combined).unwrap();
        assert_eq!((e.client, e.time, e.status), (&b"::1"[..], 0, 302));
        assert_eq!(e.request_time_us, None);
        assert_eq!(parse_line(line, Format::Stack), None);
    }

    #[test]
    fn odd_requests_still_count() {
        let line = br#"10.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "\x16\x03\x01" 400 150 "-" "-" rt=0.000 urt="-" upgrade="-""#;
        let e = parse_line(line, Format::Stack).unwrap();
        assert_eq!(
            (e.path, e.status, e.upstream_time_us),
            (&b""[..], 400, None)
        );
        let dash = br#"10.0.0.1 - - [10/Oct/2024:13:55:36 +0000] "-" 408 0 "-" "-""#;
        assert_eq!(parse_line(dash, Format::Combined).unwrap().status, 408);
    }

    #[test]
    fn upstream_times_of_retries_add_up() {
        assert_eq!(parse_upstream_times(b"0.001, 0.250 : 0.100"), Some(351_000));
        assert_eq!(parse_upstream_times(b"-"), None);
        assert_eq!(parse_upstream_times(b"-, 0.5"), Some(500_000));
    }

    #[test]
    fn garbage_is_refused() {
        for line in [
            &b""[..],
            b"hello",
            b"1.2.3.4 - - [bad] \"GET / HTTP/1.1\" 200 1 \"-\" \"-\"",
            b"1.2.3.4 - - [10/Oct/2024:13:55:36 +0000] \"GET / HTTP/1.1\" 999 1 \"-\" \"-\"",
            b"1.2.3.4 - - [10/Oct/2024:13:55:36 +0000] \"GET / HTTP/1.1\" 200 1 \"-\"",
            &STACK_LINE[..STACK_LINE.len() - 40],
        ] {
            assert_eq!(parse_line(line, Format::Combined), None, "{line:?}");
        }
        let bad_rt =
            br#"1.2.3.4 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 1 "-" "-" rt=abc"#;
        assert_eq!(parse_line(bad_rt, Format::Combined), None);
    }

    #[test]
    fn routes_follow_prefixes_and_upgrade() {
        let routes = Routes {
            asgi_prefixes: vec!["/async/".into()],
            ..Routes::default()
        };
        let route = |path: &str, status: u16, upgrade: bool| {
            routes.classify(&Entry {
                client: b"x",
                time: 0,
                path: path.as_bytes(),
                status,
                request_time_us: None,
                upstream_time_us: None,
                upgrade_websocket: upgrade,
            })
        };
        assert_eq!(route("/static/app.css", 200, false), Route::Static);
        assert_eq!(route("/media/a.png", 304, false), Route::Static);
        assert_eq!(route("/ws/chat/", 400, false), Route::Websocket);
        assert_eq!(route("/chat", 101, false), Route::Websocket);
        assert_eq!(route("/async/x", 200, true), Route::Websocket);
        assert_eq!(route("/async/x", 200, false), Route::Asgi);
        assert_eq!(route("/admin/", 200, false), Route::Wsgi);
        assert_eq!(route("", 400, false), Route::Wsgi);
    }

    #[test]
    fn buckets_hold_the_thresholds_exactly() {
        let mut h = Latency::default();
        for us in [100_000, 100_001, 2_000_000, 60_000_000] {
            h.observe(us);
        }
        assert_eq!(h.buckets[4], 1); // le 0.1
        assert_eq!(h.buckets[5], 1); // le 0.2
        assert_eq!(h.buckets[11], 1); // le 2
        assert_eq!(h.buckets[16], 1); // +Inf
        assert_eq!((h.count, h.sum_us), (4, 62_200_001));
    }

    #[test]
    fn time_local_handles_offsets_and_leap_years() {
        assert_eq!(
            parse_time_local(b"29/Feb/2024:00:00:00 +0000"),
            Some(1_709_164_800)
        );
        assert_eq!(
            parse_time_local(b"01/Jan/2000:01:00:00 +0100"),
            Some(946_684_800)
        );
        assert_eq!(parse_time_local(b"01/Foo/2000:01:00:00 +0100"), None);
    }

    #[test]
    fn recent_clients_counts_distinct_addresses_in_the_window() {
        let mut clients = RecentClients::default();
        let now = 1_000_000 * 60;
        for i in 0..40 {
            let addr = format!("10.0.0.{i}");
            clients.insert(addr.as_bytes(), now - 30, now);
            clients.insert(addr.as_bytes(), now - 120, now); // the same 40 again
        }
        for i in 0..10 {
            clients.insert(format!("192.168.0.{i}").as_bytes(), now - 4 * 60, now);
            clients.insert(format!("172.16.0.{i}").as_bytes(), now - 10 * 60, now);
            // too old
        }
        let estimate = clients.estimate(now);
        assert!((estimate - 50.0).abs() <= 1.0, "{estimate}");
        // Ten minutes on, all of them have left the window.
        assert_eq!(clients.estimate(now + 600), 0.0);
    }

    #[test]
    fn recent_clients_error_stays_small_for_many() {
        let mut clients = RecentClients::default();
        for i in 0..20_000u32 {
            clients.insert(&i.to_be_bytes(), 60, 60);
        }
        let estimate = clients.estimate(60);
        assert!((estimate - 20_000.0).abs() < 20_000.0 * 0.1, "{estimate}");
    }

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

    #[test]
    fn arithmetic_on_huge_values_saturates_or_refuses() {
        assert_eq!(
            parse_seconds(b"999999999.999999"),
            Some(999_999_999_999_999)
        );
        assert_eq!(parse_seconds(b"1e308"), None);
        assert_eq!(parse_seconds(b"99999999999"), None);
        let many = vec!["999999999.999"; 30_000].join(", ");
        assert_eq!(parse_upstream_times(many.as_bytes()), None, "overflows u64");
        let mut h = Latency::default();
        h.observe(u64::MAX);
        h.observe(u64::MAX);
        assert_eq!((h.count, h.sum_us, h.buckets[16]), (2, u64::MAX, 2));
        let status = br#"1.2.3.4 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 99999999999 1 "-" "-" rt=1e308"#;
        let mut counts = Counts::default();
        counts.add_line(status, Format::Combined, &Routes::default(), i64::MIN);
        counts.clients.insert(b"x", i64::MAX, i64::MIN);
        counts.clients.insert(b"x", i64::MIN, i64::MAX);
        assert_eq!((counts.lines, counts.parse_errors), (1, 1));
        assert!(counts.clients.estimate(i64::MIN) >= 0.0);
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

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
                let mut counts = Counts::default();
                counts.add_line(&bytes, Format::Stack, &Routes::default(), 0);
                counts.add_line(&bytes, Format::Combined, &Routes::default(), 0);
                prop_assert_eq!(counts.lines, 2);
            }

            #[test]
            fn truncated_lines_never_panic_and_mostly_fail(cut in 0usize..150) {
                let line = br#"203.0.113.9 - - [10/Oct/2024:13:55:36 +0200] "GET /api/items?page=2 HTTP/1.1" 200 512 "-" "curl/8.0" rt=0.305 urt="0.300" upgrade="-""#;
                let cut = cut.min(line.len());
                let parsed = parse_line(&line[..cut], Format::Stack);
                // Cut anywhere before the request time's last digit, the line cannot parse.
                if cut < line.len() - 28 {
                    prop_assert!(parsed.is_none());
                }
            }

            #[test]
            fn mangled_lines_never_panic(
                noise in proptest::collection::vec(any::<u8>(), 1..8),
                at in 0usize..150,
            ) {
                let mut line = br#"10.1.2.3 - - [10/Oct/2024:13:55:36 +0200] "GET /ws/x HTTP/1.1" 101 0 "-" "ua" rt=12.5 urt="0.1, 0.2" upgrade="websocket""#.to_vec();
                let at = at.min(line.len());
                line.splice(at..at, noise);
                let mut counts = Counts::default();
                counts.add_line(&line, Format::Stack, &Routes::default(), 1_728_561_336);
                prop_assert_eq!(counts.lines, 1);
            }
        }
    }
}
