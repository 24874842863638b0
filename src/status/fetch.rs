//! `stack_exporter status` reading a running exporter: one HTTP/1.1 GET of its metrics, over TLS
//! when the URL says https (the system's CAs, or a CA file for a self-signed exporter), with
//! basic auth when given a user. A client this small needs no HTTP client crate: the exporter
//! answers with a Content-Length and closes when asked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where and how to reach the exporter.
#[derive(Debug, Clone)]
pub struct Source {
    pub url: String,
    /// Basic auth, as the web config's `basic_auth_users` checks it.
    pub credentials: Option<(String, String)>,
    /// CAs to trust for an https URL besides the system's.
    pub ca_file: Option<PathBuf>,
}

/// Why a fetch failed: nothing listens (the caller may collect itself), or anything else.
#[derive(Debug)]
pub enum FetchError {
    Unreachable(String),
    Failed(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            FetchError::Unreachable(why) | FetchError::Failed(why) => f.write_str(why),
        }
    }
}

/// The parts of an `http://host:port/path` URL.
#[derive(Debug, PartialEq)]
struct Url {
    tls: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("{url}: not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or(format!("{url}: bad host"))?;
        let port = after.strip_prefix(':');
        (host.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (authority.to_string(), None),
        }
    };
    let port = match port {
        Some(port) => port.parse().map_err(|_| format!("{url}: bad port"))?,
        None => default_port,
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Url {
        tls,
        host,
        port,
        path: path.to_string(),
    })
}

/// The URL of the metrics of an exporter listening on `address` (`:9488`, `0.0.0.0:9488`,
/// `[::]:9488`, `host:port`): every-interface addresses are reached on loopback.
pub fn url_for_listen_address(address: &str, telemetry_path: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let (host, port) = match address.rsplit_once(':') {
        Some((host, port)) => (host, port),
        None => (address, "9488"),
    };
    let host = match host {
        "" | "0.0.0.0" | "[::]" => "127.0.0.1",
        other => other,
    };
    format!("{scheme}://{host}:{port}{telemetry_path}")
}

/// The body of a GET of `source.url`, within `timeout`.
pub async fn get(source: &Source, timeout: Duration) -> Result<String, FetchError> {
    let url = parse_url(&source.url).map_err(FetchError::Failed)?;
    match tokio::time::timeout(timeout, get_url(source, &url)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Failed(format!(
            "{}: no answer within {timeout:?}",
            source.url
        ))),
    }
}

async fn get_url(source: &Source, url: &Url) -> Result<String, FetchError> {
    let stream = TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                FetchError::Unreachable(format!("{}: {e}", source.url))
            }
            _ => FetchError::Failed(format!("{}: {e}", source.url)),
        })?;
    let failed = |e: String| FetchError::Failed(format!("{}: {e}", source.url));
    if !url.tls {
        return exchange(stream, source, url).await.map_err(failed);
    }
    let connector = tls_connector(source).map_err(failed)?;
    let name = ServerName::try_from(url.host.clone()).map_err(|e| failed(e.to_string()))?;
    let tls = connector
        .connect(name, stream)
        .await
        .map_err(|e| failed(format!("TLS: {e}")))?;
    exchange(tls, source, url).await.map_err(failed)
}

fn tls_connector(source: &Source) -> Result<tokio_rustls::TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(path) = &source.ca_file {
        let extra = crate::collector::target::tls::roots_from_file(path)?;
        roots.roots.extend(extra.roots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// Largest answer read: a few hundred kB is a big exporter's; anything far beyond is no exporter.
const MAX_ANSWER: u64 = 64 << 20;

async fn exchange<S>(mut stream: S, source: &Source, url: &Url) -> Result<String, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    use base64::Engine;
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nAccept: text/plain\r\nConnection: close\r\n",
        url.path, url.host, url.port
    );
    if let Some((user, password)) = &source.credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let read = (&mut stream).take(MAX_ANSWER).read_to_end(&mut raw).await;
    // A TLS peer that closes without close_notify still gave its whole answer.
    if let Err(e) = read {
        if raw.is_empty() {
            return Err(e.to_string());
        }
    }
    answer_body(&raw)
}

/// The body of a 200 answer; the status line otherwise.
fn answer_body(raw: &[u8]) -> Result<String, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP answer")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status_line = head.lines().next().unwrap_or("");
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    match code {
        "200" => {}
        "401" => {
            return Err("401 Unauthorized: give --web.username and --web.password-file".into())
        }
        _ => return Err(format!("answered {status_line:?}")),
    }
    let mut body = &raw[split + 4..];
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    if let Some(length) = length {
        body = &body[..length.min(body.len())];
    }
    Ok(String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let url = parse_url("https://[::1]:9488/metrics").unwrap();
        assert_eq!(
            url,
            Url {
                tls: true,
                host: "::1".into(),
                port: 9488,
                path: "/metrics".into()
            }
        );
        assert_eq!(parse_url("http://box").unwrap().port, 80);
        assert!(parse_url("ftp://box").is_err());
        assert!(parse_url("http://box:port/").is_err());
    }

    #[test]
    fn listen_addresses_become_urls() {
        assert_eq!(
            url_for_listen_address(":9488", "/metrics", false),
            "http://127.0.0.1:9488/metrics"
        );
        assert_eq!(
            url_for_listen_address("[::]:1", "/m", true),
            "https://127.0.0.1:1/m"
        );
        assert_eq!(
            url_for_listen_address("10.0.0.2:9488", "/metrics", false),
            "http://10.0.0.2:9488/metrics"
        );
    }

    #[test]
    fn answers_give_their_body_or_their_status() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef";
        assert_eq!(answer_body(ok).unwrap(), "abc");
        let refused = b"HTTP/1.1 401 Unauthorized\r\n\r\n";
        assert!(answer_body(refused).unwrap_err().contains("401"));
    }
}
