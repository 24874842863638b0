//! The access-log line parser, in both formats, and the counters it feeds: any bytes a log file
//! can hold must parse or be counted as a parse error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stack_exporter::accesslog::{self, Counts, Format, Routes};

/// A fixed "now" near the seeds' timestamps (27/Nov/2026), as the system clock would give it.
const NOW: i64 = 1_795_807_250;

fuzz_target!(|data: &[u8]| {
    let routes = Routes::default();
    for format in [Format::Combined, Format::Stack] {
        let mut counts = Counts::default();
        for line in data.split(|&b| b == b'\n') {
            if let Some(entry) = accesslog::parse_line(line, format) {
                let _ = routes.classify(&entry);
            }
            counts.add_line(line, format, &routes, NOW);
            let _ = accesslog::parse_seconds(line);
            let _ = accesslog::parse_time_local(line);
        }
        counts.add_broken();
        let _ = counts.clients.estimate(NOW);
    }
});
