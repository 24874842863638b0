//! Benchmark of the access-log reader and parser, as the nginx collector runs them: the file is
//! read by `accesslog::Follower` in fixed-size chunks and every line goes through
//! `Counts::add_line`. Run by scripts/bench-accesslog.sh.
//!
//!   bench_accesslog generate LINES PATH   write a synthetic log in the `stack` format
//!   bench_accesslog parse PATH [FORMAT]   parse it; print lines/s and peak RSS

use std::io::{BufWriter, Write};
use std::time::Instant;

use stack_exporter::accesslog::{Counts, Event, Follower, Format, Route, Routes};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("generate") if args.len() == 4 => {
            generate(args[2].parse().expect("LINES is a number"), &args[3])
        }
        Some("parse") if args.len() >= 3 => parse(
            &args[2],
            match args.get(3).map(String::as_str) {
                Some("combined") => Format::Combined,
                _ => Format::Stack,
            },
        ),
        _ => {
            eprintln!("usage: bench_accesslog generate LINES PATH | parse PATH [stack|combined]");
            std::process::exit(2);
        }
    }
}

/// A deterministic mix: 5 000 clients, static, API, async and websocket paths, a few errors and
/// a garbage line every 100 000.
fn generate(lines: u64, path: &str) {
    let file = std::fs::File::create(path).expect("create the log");
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let paths = [
        "/static/css/app.3f2a.css",
        "/media/uploads/2024/photo.jpg",
        "/api/v1/items/?page=2&ordering=-created",
        "/api/v1/predict/",
        "/async/notifications/",
        "/ws/chat/lobby/",
        "/admin/login/?next=/admin/",
        "/",
    ];
    let statuses = [200, 200, 200, 200, 304, 200, 404, 502, 200, 301];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let start = 1_728_561_336i64;
    for i in 0..lines {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if i % 100_000 == 99_999 {
            writeln!(out, "garbage {seed:x} \"unterminated").unwrap();
            continue;
        }
        let client = seed % 5000;
        let path = paths[(seed >> 16) as usize % paths.len()];
        let status = statuses[(seed >> 24) as usize % statuses.len()];
        let ms = (seed >> 32) % 1500;
        let time = start + (i / 1000) as i64;
        let rest = time % 86_400;
        writeln!(
            out,
            "10.{}.{}.{} - - [10/Oct/2024:{:02}:{:02}:{:02} +0000] \"GET {path} HTTP/1.1\" {status} {} \"https://example.com/\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\" rt={}.{:03} urt=\"{}.{:03}\" upgrade=\"{}\"",
            client >> 16 & 255,
            client >> 8 & 255,
            client & 255,
            rest / 3600,
            rest / 60 % 60,
            rest % 60,
            512 + seed % 20_000,
            ms / 1000,
            ms % 1000,
            ms / 1000,
            ms.saturating_sub(1) % 1000,
            if path.starts_with("/ws/") { "websocket" } else { "-" },
        )
        .unwrap();
    }
    out.flush().unwrap();
}

fn parse(path: &str, format: Format) {
    let routes = Routes {
        asgi_prefixes: vec!["/async/".into()],
        ..Routes::default()
    };
    let mut counts = Counts::default();
    let mut follower = Follower::from_start(path);
    let now = 1_728_561_336 + 3600;
    let started = Instant::now();
    loop {
        let before = counts.lines;
        follower
            .poll(|event| match event {
                Event::Line(line) => counts.add_line(line, format, &routes, now),
                Event::Broken => counts.add_broken(),
            })
            .expect("read the log");
        if counts.lines == before {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    let requests: u64 = counts.requests.iter().flatten().sum();
    println!(
        "lines {} requests {} parse_errors {} seconds {:.3} lines_per_second {:.0} mb_per_second {:.0} peak_rss_kib {}",
        counts.lines,
        requests,
        counts.parse_errors,
        seconds,
        counts.lines as f64 / seconds,
        bytes as f64 / seconds / 1e6,
        vm_hwm_kib(),
    );
    for route in Route::ALL {
        let latency = &counts.request_time[route as usize];
        println!(
            "  {:<9} requests {:>9} latency count {:>9} sum {:.0} s",
            route.name(),
            counts.requests[route as usize].iter().sum::<u64>(),
            latency.count,
            latency.sum_us as f64 / 1e6
        );
    }
}

/// Peak resident set size of this process (VmHWM), in KiB.
fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}
