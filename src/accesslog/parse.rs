//! One access-log line → the fields the collector uses. Works on bytes and never panics: `None`
//! is a parse error.

use super::Format;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accesslog::{Counts, Latency, Routes};

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
}
