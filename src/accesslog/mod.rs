//! The Nginx access log: a parser of one line, the counts it adds up to, and a follower that reads
//! a log from where it left off and survives rotation.
//!
//! Nothing here depends on the rest of the crate, so `examples/bench_accesslog.rs` measures this
//! module alone. The parser works on bytes (a log may hold anything a client sent,
//! escaped or not) and never panics: a line it cannot read is counted as a parse error.
//!
//! Two formats: nginx's built-in `combined`, and `stack`, which is `combined` followed by
//! `rt=$request_time urt="$upstream_response_time" upgrade="$http_upgrade"` (docs/traffic.md).
//! In `combined` those trailing fields are used when present; in `stack` `rt=` is required, so a
//! log written in another format shows up as parse errors rather than as missing latencies.
//!
//! Three files: this one holds the routes and the counts lines add up to; `parse.rs` reads one
//! line; `follow.rs` reads a log from where it left off, across rotation and truncation.

mod follow;
mod parse;

pub use follow::{file_kind, Event, Follower, Problem, Reason, CHUNK, MAX_BYTES_PER_POLL};
pub use parse::{parse_line, parse_seconds, parse_time_local, Entry};

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
        let harmonic: f64 = union.iter().map(|&r| power_of_half(r)).sum();
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / harmonic;
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }
}

/// 2^-r, built from its exponent bits: exact (r is at most 65 here), and no `powi` call per
/// register, 4096 of them per scrape.
fn power_of_half(r: u8) -> f64 {
    f64::from_bits((1023 - u64::from(r)) << 52)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_of_half_is_exact_for_every_rank() {
        for r in 0..=65u8 {
            assert_eq!(power_of_half(r), 2f64.powi(-i32::from(r)), "2^-{r}");
        }
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
