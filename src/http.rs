//! The HTTP server: `/metrics` (text format 0.0.4, or OpenMetrics when the scraper's Accept header
//! asks for it, gzip when accepted), `/` a landing page, `/-/healthy`.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::collector::exporter::VERSION;
use crate::metrics;
use crate::scrape::Scraper;

pub struct Server {
    pub scraper: Scraper,
    pub telemetry_path: String,
    /// The longest a scrape may run when the scraper does not say how long it waits.
    pub default_timeout: Duration,
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
        match TcpListener::bind(addr).await {
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

pub async fn serve(server: Arc<Server>, listener: TcpListener) -> anyhow::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Running out of file descriptors must not end the server: wait and go on.
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(serve_connection(server.clone(), stream));
    }
}

/// Serves one client connection until it closes or times out. Any byte stream works, so the fuzz
/// target drives it with an in-memory pipe.
pub async fn serve_connection<I>(server: Arc<Server>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(server.handle(req).await) }
    });
    // A client that connects and never sends its request is dropped after 30 s, so idle
    // connections cannot pile up and use every file descriptor.
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
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
            "/" => self.landing_page(),
            "/-/healthy" | "/-/ready" => text(StatusCode::OK, "OK\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    async fn metrics(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let timeout = scrape_timeout(req, self.default_timeout);
        let set = self.scraper.scrape(timeout).await;
        let format = if wants_openmetrics(req) {
            metrics::Format::OpenMetrics
        } else {
            metrics::Format::PrometheusText
        };
        let content_type = format.content_type();
        let body = metrics::encode(set, format);
        let gzipped = accepts_gzip(req);
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

    fn landing_page(&self) -> Response<Full<Bytes>> {
        let path = &self.telemetry_path;
        let collectors = self.scraper.collector_names().join(", ");
        let page = format!(
            "<!DOCTYPE html>\n<html><head><title>stack_exporter</title></head><body>\n\
             <h1>stack_exporter {VERSION}</h1>\n\
             <p>Host, services against their planned budgets, databases and Redis, for one small web stack.</p>\n\
             <p><a href=\"{path}\">Metrics</a></p>\n<p>Collectors: {collectors}</p>\n</body></html>\n"
        );
        let mut response = Response::new(Full::new(Bytes::from(page)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        response
    }
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

/// Prometheus says how long it waits in `X-Prometheus-Scrape-Timeout-Seconds`; finish a little
/// before that so the answer, with whatever collectors finished, arrives in time.
fn scrape_timeout(req: &Request<Incoming>, default: Duration) -> Duration {
    let asked = req
        .headers()
        .get("X-Prometheus-Scrape-Timeout-Seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64((s - 0.5).max(s / 2.0)));
    asked.map_or(default, |asked| asked.min(default))
}

fn wants_openmetrics(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

fn accepts_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder
        .write_all(data)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}
