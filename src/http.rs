//! The HTTP server: `/metrics` (text format 0.0.4, or OpenMetrics when the scraper's Accept header
//! asks for it, gzip when accepted), `/` the status page (`crate::status`), `/-/healthy`. At most
//! `--web.max-connections` connections are open at once (see `connections`). With
//! `--web.config.file`, TLS and basic authentication as exporter-toolkit gives them (see `web`).

pub mod auth;
pub mod connections;
pub mod negotiate;
pub mod tls;
pub mod web;
pub mod webconfig;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::collector::exporter::HTTP_STATS as STATS;
use crate::metrics;
use crate::scrape::Scraper;
use crate::status::{self, Counters, Figures, Readings, Status};
use crate::warn_throttled;
use connections::{Connections, Slot};
use web::Web;

/// A client must send its whole request head within this time, and a kept-alive connection is
/// closed after this long without a new request (hyper restarts the same timer for each request).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A TLS client must complete its handshake within this time (a connection that never does is
/// also evictable at the cap, as it has sent no request).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// However short a scraper says its timeout is, the collection it starts (and others share) runs
/// for at least this long, capped by `--web.max-scrape-timeout`: a scraper asking for 1 µs gets
/// its answer at once, and the next scraper still finds working collectors.
const MIN_COLLECTION_TIME: Duration = Duration::from_secs(1);

pub struct Server {
    pub scraper: Scraper,
    pub telemetry_path: String,
    /// The longest a scrape may run when the scraper does not say how long it waits.
    pub default_timeout: Duration,
    /// The CPU counters of the latest two collections a scrape or the page read: the page's CPU
    /// use is measured from the earlier one to its own collection.
    counters: Mutex<[Option<Counters>; 2]>,
}

/// Seconds between the status page's own reloads.
const PAGE_REFRESH_SECONDS: u32 = 15;

/// A collection that ended this recently serves the status page as it is: a phone reloading the
/// page between two Prometheus scrapes adds no collection.
const PAGE_REUSE: Duration = Duration::from_secs(10);

impl Server {
    pub fn new(scraper: Scraper, telemetry_path: String, default_timeout: Duration) -> Server {
        Server {
            scraper,
            telemetry_path,
            default_timeout,
            counters: Mutex::new([None, None]),
        }
    }
}

/// Binds `address` (`:9488` means every interface, as in node_exporter), with an error that says
/// which address could not be had and why.
pub async fn bind(address: &str) -> anyhow::Result<TcpListener> {
    let candidates: Vec<String> = match address.strip_prefix(':') {
        Some(port) => vec![format!("[::]:{port}"), format!("0.0.0.0:{port}")],
        None => vec![address.to_string()],
    };
    let mut last_error = None;
    for candidate in &candidates {
        let addr: SocketAddr = match candidate.parse() {
            Ok(addr) => addr,
            Err(_) => match tokio::net::lookup_host(candidate.as_str()).await?.next() {
                Some(addr) => addr,
                None => anyhow::bail!("--web.listen-address {address:?}: no such host"),
            },
        };
        match listen(addr) {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                anyhow::bail!(
                    "cannot listen on {address}: the port is already in use by another program \
                     (choose another with --web.listen-address)"
                )
            }
            Err(e) => last_error = Some(e),
        }
    }
    let error = last_error.map_or_else(|| "no address".to_string(), |e| e.to_string());
    anyhow::bail!("cannot listen on {address}: {error}")
}

/// Connections the kernel completes and queues until we accept them (it caps this at
/// net.core.somaxconn). A burst of connections beyond the queue has its SYNs dropped, and each
/// client, a scraper among them, then waits a second to retry.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    max_connections: usize,
    web: Option<Arc<Web>>,
) -> anyhow::Result<()> {
    let connections = Connections::new(max_connections);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors (the cap is set too high for the limit): free one, wait
                // a moment, go on; never end the server.
                STATS
                    .accept_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn_throttled!("http accept failed", "accept failed: {e}");
                connections.evict_one();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Some(slot) = connections.admit() {
            tokio::spawn(serve_admitted(server.clone(), stream, slot, web.clone()));
        }
    }
}

/// Serves one connection counted against the cap, until it ends or is evicted.
async fn serve_admitted(
    server: Arc<Server>,
    stream: tokio::net::TcpStream,
    slot: Arc<Slot>,
    web: Option<Arc<Web>>,
) {
    let evicted = slot.evicted.clone();
    let serve = async move {
        match web {
            Some(web) => serve_with_web_config(server, stream, slot, web).await,
            None => serve_io(server, stream, Some(slot), None).await,
        }
    };
    tokio::select! {
        () = serve => {}
        () = evicted.notified() => {}
    }
}

/// Under a web config: the configuration in force for this connection (re-read if a file
/// changed), the TLS handshake if it asks for TLS, then requests checked against its users.
async fn serve_with_web_config(
    server: Arc<Server>,
    stream: tokio::net::TcpStream,
    slot: Arc<Slot>,
    web: Arc<Web>,
) {
    let loaded = web.fresh().await;
    let access = Access { web };
    let Some(acceptor) = &loaded.acceptor else {
        return serve_io(server, stream, Some(slot), Some(access)).await;
    };
    // TLS writes the head and the body as separate records: without NODELAY the second waits for
    // the client's delayed ACK (40 ms on Linux) behind Nagle's algorithm.
    if let Err(e) = stream.set_nodelay(true) {
        log::debug!("TCP_NODELAY: {e}");
    }
    let failure = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => return serve_io(server, tls, Some(slot), Some(access)).await,
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no handshake within {TLS_HANDSHAKE_TIMEOUT:?}"),
    };
    STATS
        .tls_handshake_failures
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    warn_throttled!(
        "tls handshake failed",
        "TLS handshake failed: {failure} (plain HTTP, an untrusted or missing client certificate, or a port scan)"
    );
}

/// The web config's users and headers, as they are on disk when each request arrives.
#[derive(Clone)]
struct Access {
    web: Arc<Web>,
}

impl Access {
    /// As exporter-toolkit: the configured headers on every answer, and with users configured,
    /// every path (`/-/healthy` too) needs credentials.
    async fn handle(&self, server: &Server, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let loaded = self.web.fresh().await;
        let users = &loaded.users;
        let allowed = users.is_empty()
            || self
                .web
                .auth
                .allows(users, req.headers().get(AUTHORIZATION))
                .await;
        let mut response = if allowed {
            server.handle(req).await
        } else {
            unauthorized()
        };
        for (name, value) in &loaded.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    }
}

fn unauthorized() -> Response<Full<Bytes>> {
    STATS
        .unauthorized
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    warn_throttled!(
        "http unauthorized",
        "refused a request without valid basic auth credentials"
    );
    let mut response = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
    response
}

/// Serves one client connection until it closes or times out. Any byte stream works, so the fuzz
/// target drives it with an in-memory pipe.
pub async fn serve_connection<I>(server: Arc<Server>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    serve_io(server, io, None, None).await;
}

async fn serve_io<I>(server: Arc<Server>, io: I, slot: Option<Arc<Slot>>, access: Option<Access>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let server = server.clone();
        // Between requests the connection waits, and may be evicted at the cap.
        let busy = slot.as_ref().map(Slot::busy);
        let access = access.clone();
        async move {
            let response = match access {
                Some(access) => access.handle(&server, req).await,
                None => server.handle(req).await,
            };
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    // Small buffers: hyper's read buffer may otherwise grow to 400 kB for a client that sends a
    // big request, and stays that size while the connection lives. Prometheus's requests are a
    // few hundred bytes; 8 kB (the smallest hyper takes) fits any sane request head. writev:
    // the body goes out from its own buffer instead of being copied into hyper's write buffer,
    // which would keep the size of the largest answer for the life of a kept-alive connection.
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(8192)
        .writev(true)
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        log::debug!("connection closed with error: {e}");
    }
}

impl Server {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        }
        match req.uri().path() {
            path if path == self.telemetry_path => self.metrics(&req).await,
            "/" => self.status_page(&req).await,
            "/-/healthy" | "/-/ready" => text(StatusCode::OK, "OK\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn metrics(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let headers = req.headers();
        let timeout = negotiate::scrape_timeout(headers, self.default_timeout);
        let collect_for = timeout.max(MIN_COLLECTION_TIME.min(self.default_timeout));
        let set = self.scraper.scrape(timeout, collect_for).await;
        self.remember(Counters::from_set(&set, Instant::now()));
        let format = if negotiate::wants_openmetrics(headers) {
            metrics::Format::OpenMetrics
        } else {
            metrics::Format::PrometheusText
        };
        let content_type = format.content_type();
        let body = metrics::encode(set, format);
        let gzipped = negotiate::accepts_gzip(headers);
        let body = if gzipped {
            gzip(body.as_bytes())
        } else {
            body.into_bytes()
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if gzipped {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        response
    }

    /// `/`: the status of a collection shared with the scrapes (one that ended within
    /// [`PAGE_REUSE`], or the one under way, or a new one), rendered without the collectors'
    /// histograms and process lists.
    async fn status_page(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let set = match self.scraper.recent(PAGE_REUSE) {
            Some(set) => set,
            None => {
                let timeout = negotiate::scrape_timeout(req.headers(), self.default_timeout);
                let collect_for = timeout.max(MIN_COLLECTION_TIME.min(self.default_timeout));
                self.scraper.scrape(timeout, collect_for).await
            }
        };
        let figures = Figures::from_set(&set);
        drop(set);
        let current = Counters::from_figures(&figures, Instant::now());
        let previous = self.remember(current.clone());
        let readings = Readings {
            previous: previous.as_ref(),
            current: &current,
            now_unix: unix_now(),
        };
        let status = Status::build(&figures, &readings);
        // Every registered collector, running or not, so the page says what could be turned on.
        let running = self.scraper.collector_names();
        let page = status::html::Page {
            telemetry_path: &self.telemetry_path,
            collectors: crate::collector::COLLECTORS
                .iter()
                .map(|spec| (spec.name, running.contains(&spec.name), spec.help))
                .collect(),
            refresh_seconds: PAGE_REFRESH_SECONDS,
        };
        let mut response =
            Response::new(Full::new(Bytes::from(status::html::render(&status, &page))));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }

    /// Keeps `counters` as the latest reading and gives the one before it. A reading of the
    /// collection already kept (a page load and a scrape share one), or less than a second after
    /// it, replaces nothing: the rate is then measured from the reading before.
    fn remember(&self, counters: Counters) -> Option<Counters> {
        let mut kept = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let [before, latest] = &mut *kept;
        let same = latest.as_ref().is_some_and(|l| {
            l.host_total == counters.host_total
                || counters.at.duration_since(l.at) < Duration::from_secs(1)
        });
        if same {
            return before.clone();
        }
        *before = latest.replace(counters);
        before.clone()
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn gzip(data: &[u8]) -> Vec<u8> {
    // Metrics text compresses about fivefold: room for that, grown only for an odd one.
    let room = Vec::with_capacity(data.len() / 4);
    let mut encoder = flate2::write::GzEncoder::new(room, flate2::Compression::fast());
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The fuzz target's way in: one connection over an in-memory pipe.
    #[test]
    fn serve_connection_serves_an_in_memory_stream() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let answer = runtime.block_on(async {
            let server = Arc::new(Server::new(
                Scraper::new(Vec::new()),
                "/metrics".to_string(),
                Duration::from_secs(1),
            ));
            let (mut client, io): (tokio::io::DuplexStream, _) = tokio::io::duplex(64 * 1024);
            tokio::spawn(serve_connection(server, io));
            client
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Prometheus-Scrape-Timeout-Seconds: 1e300\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            client.read_to_end(&mut answer).await.unwrap();
            String::from_utf8_lossy(&answer).into_owned()
        });
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("stack_exporter_build_info"), "{answer}");
    }
}
