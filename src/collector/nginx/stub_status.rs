//! Nginx's `stub_status` page, asked over one connection kept from scrape to scrape.
//!
//! A connection per scrape cost both ends a TCP handshake and teardown, more than the page
//! itself, and counted the exporter in nginx's `accepts`. The request is HTTP/1.0 with
//! `Connection: keep-alive`: nginx then answers with a Content-Length and keeps the connection
//! only when it says so (`Connection: keep-alive`), never chunked. An answer without that header
//! is read to its end and the connection dropped, as before. A kept connection that nginx has
//! closed meanwhile (`keepalive_timeout`, `keepalive_requests`, a reload) fails before the first
//! byte of an answer: the request goes again on a new one, within the same deadline.
//!
//! The exporter's own connection shows in nginx's `Active connections` as before: the page is
//! written while the request that asks for it is in flight.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StubStatusUrl;

/// The round trip's bound, within the scrape's own deadline.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The most of an answer read: a stub_status page is a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// The figures of Nginx's stub_status page.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StubStatus {
    pub active: u64,
    pub accepted: u64,
    pub handled: u64,
    pub requests: u64,
    pub reading: u64,
    pub writing: u64,
    pub waiting: u64,
}

/// Parses
/// ```text
/// Active connections: 291
/// server accepts handled requests
///  16630948 16630948 31070465
/// Reading: 6 Writing: 179 Waiting: 106
/// ```
pub fn parse(text: &str) -> Option<StubStatus> {
    let mut lines = text.lines();
    let active = lines
        .next()?
        .strip_prefix("Active connections:")?
        .trim()
        .parse()
        .ok()?;
    lines.next()?.starts_with("server").then_some(())?;
    let totals: Vec<u64> = lines
        .next()?
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let words: Vec<&str> = lines.next()?.split_whitespace().collect();
    let field = |name: &str| -> Option<u64> {
        let at = words.iter().position(|w| *w == name)?;
        words.get(at + 1)?.parse().ok()
    };
    Some(StubStatus {
        active,
        accepted: *totals.first()?,
        handled: *totals.get(1)?,
        requests: *totals.get(2)?,
        reading: field("Reading:")?,
        writing: field("Writing:")?,
        waiting: field("Waiting:")?,
    })
}

/// One stub_status URL and the connection kept to it. Runs of the collector never overlap, so
/// the lock is never waited for.
#[derive(Debug)]
pub struct StubStatusPage {
    pub url: StubStatusUrl,
    kept: Mutex<Option<TcpStream>>,
}

/// How an exchange failed: on a kept connection before any answer (nginx had closed it: ask
/// again on a new one), or otherwise.
enum Failure {
    Stale(anyhow::Error),
    Failed(anyhow::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::Failed(e.into())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Failed(e)
    }
}

impl StubStatusPage {
    pub fn new(url: StubStatusUrl) -> StubStatusPage {
        StubStatusPage {
            url,
            kept: Mutex::new(None),
        }
    }

    /// The page's figures, by `deadline` and within [`TIMEOUT`]: one bound for the whole round
    /// trip, so a server that drips one byte a second cannot stretch it by resetting a per-read
    /// timeout.
    pub fn fetch(&self, deadline: Instant) -> anyhow::Result<StubStatus> {
        let end = deadline.min(Instant::now() + TIMEOUT);
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let body = match kept.take() {
            Some(stream) => match self.exchange(stream, end, true) {
                Ok((body, stream)) => {
                    *kept = stream;
                    body
                }
                Err(Failure::Stale(e)) => {
                    log::debug!("stub_status: the kept connection was closed ({e:#}); a new one");
                    self.fetch_on_new(end, &mut kept)?
                }
                Err(Failure::Failed(e)) => return Err(e),
            },
            None => self.fetch_on_new(end, &mut kept)?,
        };
        parse(&body).ok_or_else(|| anyhow::anyhow!("not a stub_status page: {body:.80}"))
    }

    fn fetch_on_new(&self, end: Instant, kept: &mut Option<TcpStream>) -> anyhow::Result<String> {
        let address = (self.url.host.as_str(), self.url.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{} resolves to no address", self.url.host))?;
        let stream = TcpStream::connect_timeout(&address, time_left(end)?)?;
        match self.exchange(stream, end, false) {
            Ok((body, stream)) => {
                *kept = stream;
                Ok(body)
            }
            Err(Failure::Stale(e) | Failure::Failed(e)) => Err(e),
        }
    }

    /// Sends the request on `stream` and reads the answer: its body, and the stream when nginx
    /// keeps the connection.
    fn exchange(
        &self,
        mut stream: TcpStream,
        end: Instant,
        reused: bool,
    ) -> Result<(String, Option<TcpStream>), Failure> {
        let stale = |e: anyhow::Error| {
            if reused {
                Failure::Stale(e)
            } else {
                Failure::Failed(e)
            }
        };
        stream.set_write_timeout(Some(time_left(end)?))?;
        // One write, one segment: `write!` on the stream itself sends each piece of the format
        // as a segment of its own, each a wake-up of nginx.
        let request = format!(
            "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: stack_exporter\r\nConnection: keep-alive\r\n\r\n",
            self.url.path, self.url.host
        );
        stream
            .write_all(request.as_bytes())
            .map_err(|e| stale(e.into()))?;
        let mut raw = Vec::new();
        let head_end = loop {
            if let Some(at) = find(&raw, b"\r\n\r\n") {
                break at + 4;
            }
            // Closed or reset before the first byte: on a kept connection, nginx let it go.
            match read_some(&mut stream, &mut raw, end) {
                Ok(0) | Err(_) if raw.is_empty() => {
                    return Err(stale(anyhow::anyhow!("closed before an answer")))
                }
                Ok(0) => return Err(anyhow::anyhow!("not an HTTP response").into()),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        };
        let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
        let status = head.split_whitespace().nth(1).unwrap_or("");
        let length = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok());
        let keep_alive = header(&head, "connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive"))
            && length.is_some();
        // The body: as long as Content-Length says on a kept connection, else to the end.
        let body_end = |raw: &Vec<u8>| match length {
            // Saturating: a Content-Length near usize::MAX is an answer read to its end.
            Some(n) if keep_alive => raw.len() >= head_end.saturating_add(n),
            _ => false,
        };
        while !body_end(&raw) {
            if read_some(&mut stream, &mut raw, end)? == 0 {
                break;
            }
        }
        let body_len = raw.len() - head_end;
        // An answer longer than it said is not one this reader understands: drop the connection.
        let kept = (keep_alive && length == Some(body_len)).then_some(stream);
        if status != "200" {
            return Err(anyhow::anyhow!("stub_status answered {status}").into());
        }
        Ok((String::from_utf8_lossy(&raw[head_end..]).into_owned(), kept))
    }
}

/// Reads what has come into `raw`, within `end`; 0 at the end of the stream.
fn read_some(stream: &mut TcpStream, raw: &mut Vec<u8>, end: Instant) -> anyhow::Result<usize> {
    anyhow::ensure!(raw.len() < MAX_ANSWER, "an answer over {MAX_ANSWER} bytes");
    let mut chunk = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(time_left(end)?))?;
        match stream.read(&mut chunk) {
            Ok(n) => {
                raw.extend_from_slice(chunk.get(..n).unwrap_or_default());
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The time left before `end`, or an error once it has passed.
fn time_left(end: Instant) -> anyhow::Result<Duration> {
    let left = end.saturating_duration_since(Instant::now());
    anyhow::ensure!(!left.is_zero(), "no answer within {TIMEOUT:?}");
    Ok(left)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value of header `name` (lower case) in an answer's head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn stub_status_page_parses() {
        let page = "Active connections: 291 \nserver accepts handled requests\n 16630948 16630947 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n";
        assert_eq!(
            parse(page),
            Some(StubStatus {
                active: 291,
                accepted: 16_630_948,
                handled: 16_630_947,
                requests: 31_070_465,
                reading: 6,
                writing: 179,
                waiting: 106,
            })
        );
        assert_eq!(parse("<html>"), None);
    }

    #[test]
    fn headers_are_found_whatever_their_case() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 97\r\nCONNECTION: Keep-Alive\r\n\r\n";
        assert_eq!(header(head, "content-length"), Some("97"));
        assert_eq!(header(head, "connection"), Some("Keep-Alive"));
        assert_eq!(header(head, "server"), None);
    }

    const PAGE: &str = "Active connections: 1 \nserver accepts handled requests\n 5 5 9 \nReading: 0 Writing: 1 Waiting: 0 \n";

    /// A server that accepts one connection per entry of `answers`, writes that entry's answers
    /// one per request, then closes the connection; it returns how many it accepted.
    fn server(answers: Vec<Vec<String>>) -> (u16, std::thread::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let mut accepted = 0;
            for answers in answers {
                let (mut conn, _) = listener.accept().unwrap();
                accepted += 1;
                for answer in answers {
                    let mut got = Vec::new();
                    let mut byte = [0u8; 1];
                    while find(&got, b"\r\n\r\n").is_none() {
                        if conn.read(&mut byte).unwrap() == 0 {
                            break;
                        }
                        got.push(byte[0]);
                    }
                    conn.write_all(answer.as_bytes()).unwrap();
                }
            }
            accepted
        });
        (port, handle)
    }

    fn page(url_port: u16) -> StubStatusPage {
        StubStatusPage::new(
            StubStatusUrl::parse(&format!("http://127.0.0.1:{url_port}/s")).unwrap(),
        )
    }

    fn kept(len: usize) -> String {
        format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: keep-alive\r\n\r\n{PAGE}")
    }

    #[test]
    fn a_kept_connection_serves_the_next_scrapes_and_a_closed_one_is_replaced() {
        // Connection 1: two answers kept alive, then closed by the server (as keepalive_timeout
        // does); connection 2: one answer with `Connection: close`; connection 3: one kept.
        let close = format!("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{PAGE}");
        let (port, server) = server(vec![
            vec![kept(PAGE.len()), kept(PAGE.len())],
            vec![close],
            vec![kept(PAGE.len())],
        ]);
        let page = page(port);
        let deadline = || Instant::now() + Duration::from_secs(5);
        for _ in 0..4 {
            assert_eq!(page.fetch(deadline()).unwrap().requests, 9);
        }
        assert_eq!(
            server.join().unwrap(),
            3,
            "four scrapes over three connections"
        );
        assert!(
            page.kept.lock().unwrap().is_some(),
            "the last answer kept its connection"
        );
    }

    #[test]
    fn an_answer_longer_than_it_says_drops_the_connection() {
        let long = format!("{}trailing bytes", kept(PAGE.len()));
        let (port, server) = server(vec![vec![long], vec![kept(PAGE.len())]]);
        let page = page(port);
        let deadline = || Instant::now() + Duration::from_secs(5);
        assert_eq!(page.fetch(deadline()).unwrap().active, 1);
        assert!(page.kept.lock().unwrap().is_none());
        assert_eq!(page.fetch(deadline()).unwrap().active, 1);
        drop(page);
        assert_eq!(server.join().unwrap(), 2);
    }

    #[test]
    fn a_hostile_content_length_neither_panics_nor_keeps_the_connection() {
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{PAGE}",
            usize::MAX
        );
        let (port, _server) = server(vec![vec![huge]]);
        let page = page(port);
        // Read to its end (the server closes after its answer), within the deadline.
        let status = page.fetch(Instant::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(status.requests, 9);
        assert!(
            page.kept.lock().unwrap().is_none(),
            "a body shorter than it said"
        );
    }

    #[test]
    fn a_refusal_is_an_error_naming_the_status() {
        let (port, _server) = server(vec![vec![
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n".into(),
        ]]);
        let err = page(port)
            .fetch(Instant::now() + Duration::from_secs(5))
            .unwrap_err();
        assert!(err.to_string().contains("403"), "{err}");
    }
}
