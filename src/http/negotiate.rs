//! What a scraper asks for in its request headers: the format (`Accept`), gzip
//! (`Accept-Encoding`), both with q-values as RFC 9110 defines them, and how long it waits
//! (`X-Prometheus-Scrape-Timeout-Seconds`). Any header value, however malformed, gives an answer.

use std::time::Duration;

use hyper::header::{HeaderMap, ACCEPT, ACCEPT_ENCODING};

pub const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// How long to collect for a scraper that says it waits `X-Prometheus-Scrape-Timeout-Seconds`:
/// half a second less (or half the time, when it waits under a second), so the answer arrives in
/// time; never more than `default`. A value that is not a positive finite number of seconds
/// (garbage, `inf`, `nan`, `0`, negative, not UTF-8) gets `default`; a huge one is clamped to it.
pub fn scrape_timeout(headers: &HeaderMap, default: Duration) -> Duration {
    let asked = headers
        .get(SCRAPE_TIMEOUT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds > 0.0);
    let Some(seconds) = asked else {
        return default;
    };
    let margin = (seconds - 0.5).max(seconds / 2.0);
    // try_: a value beyond what a Duration holds (1e20 seconds) would panic in from_secs_f64.
    Duration::try_from_secs_f64(margin).map_or(default, |asked| asked.min(default))
}

/// OpenMetrics when the scraper lists it with a q above 0 and at least that of the text format
/// (`text/plain`, `text/*`, `*/*`); the text format 0.0.4 otherwise, as client_golang does.
pub fn wants_openmetrics(headers: &HeaderMap) -> bool {
    let mut openmetrics: Option<f64> = None;
    let mut text = 0.0_f64;
    for (range, q) in weighted(headers, ACCEPT) {
        if range.eq_ignore_ascii_case("application/openmetrics-text") {
            openmetrics = Some(openmetrics.map_or(q, |best| best.max(q)));
        } else if ["text/plain", "text/*", "*/*"]
            .iter()
            .any(|r| range.eq_ignore_ascii_case(r))
        {
            text = text.max(q);
        }
    }
    openmetrics.is_some_and(|q| q > 0.0 && q >= text)
}

/// Whether gzip is acceptable: its own q if listed, else that of `*`, and not acceptable when
/// neither is listed or the q is 0 (`gzip;q=0`, `q=0.000`).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any): (Option<f64>, Option<f64>) = (None, None);
    for (coding, q) in weighted(headers, ACCEPT_ENCODING) {
        let best = |seen: Option<f64>| Some(seen.map_or(q, |s| s.max(q)));
        if coding.eq_ignore_ascii_case("gzip") {
            gzip = best(gzip);
        } else if coding == "*" {
            any = best(any);
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// Each element of every `name` header, with its q-value.
fn weighted<'a>(
    headers: &'a HeaderMap,
    name: hyper::header::HeaderName,
) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|element| {
            let mut parts = element.split(';');
            let value = parts.next()?.trim();
            (!value.is_empty()).then(|| (value, quality(parts)))
        })
}

/// The `q` parameter: 1 when absent; an unreadable or out-of-range one counts as 0 (refused), so
/// a malformed header never makes us send what the client may not read.
fn quality<'a>(params: impl Iterator<Item = &'a str>) -> f64 {
    for param in params {
        if let Some((key, value)) = param.split_once('=') {
            if key.trim().eq_ignore_ascii_case("q") {
                return value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))
                    .unwrap_or(0.0);
            }
        }
    }
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    fn timeout(value: &[u8]) -> Duration {
        scrape_timeout(
            &headers(&[(SCRAPE_TIMEOUT_HEADER, value)]),
            Duration::from_secs(10),
        )
    }

    #[test]
    fn any_timeout_header_gives_a_sane_duration() {
        let default = Duration::from_secs(10);
        assert_eq!(timeout(b"10"), Duration::from_millis(9500));
        assert_eq!(timeout(b"0.5"), Duration::from_millis(250));
        assert_eq!(timeout(b"0.000001"), Duration::from_nanos(500));
        for huge in ["1e20", "1e300", "1.79e308", "60", "inf", "+Inf"] {
            assert_eq!(timeout(huge.as_bytes()), default, "{huge}");
        }
        for bad in ["nan", "-1", "0", "-0", "", "soon", "1e-400", "0x10"] {
            assert_eq!(timeout(bad.as_bytes()), default, "{bad}");
        }
        assert_eq!(timeout(b"\xff\xfe"), default, "not UTF-8");
        assert_eq!(scrape_timeout(&HeaderMap::new(), default), default);
    }

    fn openmetrics(accept: &str) -> bool {
        wants_openmetrics(&headers(&[("accept", accept.as_bytes())]))
    }

    #[test]
    fn accept_q_values_choose_the_format() {
        // What Prometheus 2.x sends.
        assert!(openmetrics(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        ));
        assert!(openmetrics("application/openmetrics-text"));
        assert!(!openmetrics("application/openmetrics-text;q=0"));
        assert!(!openmetrics(
            "application/openmetrics-text; q=0.0, text/plain"
        ));
        assert!(!openmetrics(
            "application/openmetrics-text;q=0.4,text/plain;q=0.5"
        ));
        assert!(openmetrics(
            "text/plain;q=0.5, application/openmetrics-text;q=0.6"
        ));
        assert!(!openmetrics(
            "*/*;q=0.9, application/openmetrics-text;q=0.2"
        ));
        assert!(!openmetrics("application/openmetrics-text;q=banana"));
        assert!(!openmetrics("text/plain"));
        assert!(!openmetrics(""));
    }

    fn gzip(accept_encoding: &[u8]) -> bool {
        accepts_gzip(&headers(&[("accept-encoding", accept_encoding)]))
    }

    #[test]
    fn accept_encoding_q_values_decide_gzip() {
        assert!(gzip(b"gzip"));
        assert!(gzip(b"deflate, GZIP;q=0.5"));
        assert!(gzip(b"*"));
        assert!(gzip(b"*;q=0.1"));
        for refused in [
            "gzip;q=0",
            "gzip; q=0.0",
            "gzip;q=0.000",
            "*;q=0",
            "gzip;q=0, *",
            "identity",
            "gzip;q=2",
            "",
        ] {
            assert!(!gzip(refused.as_bytes()), "{refused}");
        }
        assert!(!gzip(b"\xffgzip"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
