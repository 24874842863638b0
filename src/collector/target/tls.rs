//! TLS to a database or Redis target, with rustls (no OpenSSL): the URL's TLS options, taken out
//! of the URL before the driver sees it, checked when the config is loaded, and the client
//! settings each driver gets.
//!
//! The options keep the names of each server's own clients, so that a connection string pasted
//! from RDS, a MySQL client or a Celery broker URL works as it is:
//! - PostgreSQL (libpq): `sslmode=disable|prefer|require|verify-ca|verify-full` (default
//!   `prefer`), `sslrootcert=<file>|system`.
//! - MySQL/MariaDB (mysql client): `ssl-mode=DISABLED|PREFERRED|REQUIRED|VERIFY_IDENTITY`
//!   (VERIFY_CA is refused: the driver cannot skip the host name; default `DISABLED`: a failed TLS attempt counts in the server's
//!   Aborted_connects, which the exporter watches), `ssl-ca=<file>`.
//! - Redis (redis-py, Celery): `rediss://` is TLS with the certificate and host name verified;
//!   `ssl_ca_certs=<file>` (default: the system's CAs), `ssl_certfile` and `ssl_keyfile` (a
//!   client certificate), `ssl_cert_reqs=required` (the only mode; accepted as Celery writes it).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;

use super::config::{percent_decode, Kind};

/// How much TLS a target asks for, in libpq's terms (each kind's names map onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text only.
    Disable,
    /// TLS where the server offers it, unverified; plain text where it does not.
    Prefer,
    /// TLS, the certificate unverified (verified against the CA where one is given, as libpq).
    Require,
    /// TLS, the certificate chained to the CA; any host name.
    VerifyCa,
    /// TLS, the certificate chained to the CA and issued for the host connected to.
    VerifyFull,
}

impl TlsMode {
    /// The value of the `tls` label of `stack_database_target_info`.
    pub fn label(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the trusted CAs come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Roots {
    /// None given: the kind's default (see the module's header).
    Default,
    /// The system's CAs (`sslrootcert=system`).
    System,
    /// A PEM file.
    File(PathBuf),
}

/// A target's TLS options, read from its URL.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsOptions {
    pub mode: TlsMode,
    pub roots: Roots,
    /// A client certificate and its key (Redis).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The URL the driver is given (the TLS options taken out) and the TLS options. Errors name the
/// option and never repeat the URL.
pub fn split_url(text: &str, kind: Kind) -> Result<(String, TlsOptions), String> {
    let (head, fragment) = match text.split_once('#') {
        Some((head, fragment)) => (head, Some(fragment)),
        None => (text, None),
    };
    let (base, query) = head.split_once('?').unwrap_or((head, ""));
    let mut kept = Vec::new();
    let mut ours = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if tls_keys(kind).contains(&key) {
            ours.push((key, percent_decode(value)));
        } else if let Some(hint) = foreign_tls_key(kind, key) {
            return Err(format!("option `{key}`: {hint}"));
        } else {
            kept.push(pair);
        }
    }
    let options = read_options(kind, text, &ours)?;
    let mut url = base.to_string();
    if !kept.is_empty() {
        url.push('?');
        url.push_str(&kept.join("&"));
    }
    if let Some(fragment) = fragment {
        url.push('#');
        url.push_str(fragment);
    }
    Ok((url, options))
}

/// The TLS options of each kind, by their clients' names.
fn tls_keys(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Postgres => &["sslmode", "sslrootcert"],
        Kind::Mysql => &["ssl-mode", "ssl-ca"],
        Kind::Redis => &[
            "ssl_ca_certs",
            "ssl_certfile",
            "ssl_keyfile",
            "ssl_cert_reqs",
        ],
    }
}

/// The drivers' own TLS switches, refused so that one URL cannot say two things.
fn foreign_tls_key(kind: Kind, key: &str) -> Option<&'static str> {
    let mysql_async_own = [
        "require_ssl",
        "verify_ca",
        "verify_identity",
        "built_in_roots",
    ];
    (kind == Kind::Mysql && mysql_async_own.contains(&key))
        .then_some("TLS is set with ssl-mode and ssl-ca")
}

fn read_options(kind: Kind, url: &str, ours: &[(&str, String)]) -> Result<TlsOptions, String> {
    let get = |key: &str| ours.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| v);
    let file = |key: &str| -> Result<Option<PathBuf>, String> {
        get(key).map(|v| readable_file(key, v)).transpose()
    };
    match kind {
        Kind::Postgres => {
            let mode = match get("sslmode").map(String::as_str) {
                None | Some("prefer") => TlsMode::Prefer,
                Some("disable") => TlsMode::Disable,
                Some("require") => TlsMode::Require,
                Some("verify-ca") => TlsMode::VerifyCa,
                Some("verify-full") => TlsMode::VerifyFull,
                // allow: libpq's, which only libpq's own checks need; refused rather than taken
                // for prefer.
                Some(other) => {
                    return Err(bad_value(
                        "sslmode",
                        other,
                        "disable, prefer, require, verify-ca, verify-full",
                    ))
                }
            };
            let roots = match get("sslrootcert").map(String::as_str) {
                None => Roots::Default,
                Some("system") => Roots::System,
                Some(_) => Roots::File(file("sslrootcert")?.unwrap_or_default()),
            };
            if matches!(mode, TlsMode::VerifyCa | TlsMode::VerifyFull) && roots == Roots::Default {
                return Err(format!(
                    "sslmode={} needs sslrootcert (a PEM file of the CA, or `system`)",
                    mode.label()
                ));
            }
            // libpq: sslrootcert=system verifies the host name whatever sslmode says.
            let mode = match (&roots, mode) {
                (Roots::System, TlsMode::Disable) => TlsMode::Disable,
                (Roots::System, _) => TlsMode::VerifyFull,
                _ => mode,
            };
            Ok(TlsOptions {
                mode,
                roots,
                client: None,
            })
        }
        Kind::Mysql => {
            let mode = match get("ssl-mode").map(|v| v.to_ascii_uppercase()).as_deref() {
                None | Some("DISABLED") => TlsMode::Disable,
                Some("PREFERRED") => TlsMode::Prefer,
                Some("REQUIRED") => TlsMode::Require,
                // mysql_async 0.37 checks the host name even when told not to (its test of
                // rustls's error text no longer matches): refused rather than served stricter.
                Some("VERIFY_CA") => {
                    return Err("option `ssl-mode`: VERIFY_CA is not available (the driver \
                        always checks the host name): use VERIFY_IDENTITY with the name the \
                        certificate is issued for"
                        .to_string())
                }
                Some("VERIFY_IDENTITY") => TlsMode::VerifyFull,
                Some(other) => {
                    return Err(bad_value(
                        "ssl-mode",
                        other,
                        "DISABLED, PREFERRED, REQUIRED, VERIFY_CA, VERIFY_IDENTITY",
                    ))
                }
            };
            let roots = file("ssl-ca")?.map_or(Roots::Default, Roots::File);
            Ok(TlsOptions {
                mode,
                roots,
                client: None,
            })
        }
        Kind::Redis => {
            let tls = url
                .get(..9)
                .is_some_and(|s| s.eq_ignore_ascii_case("rediss://"));
            if !tls {
                if let Some((key, _)) = ours.first() {
                    return Err(format!("option `{key}` is for TLS: use rediss://"));
                }
            }
            if let Some(reqs) = get("ssl_cert_reqs") {
                if !matches!(
                    reqs.to_ascii_lowercase().as_str(),
                    "required" | "cert_required"
                ) {
                    return Err(bad_value(
                        "ssl_cert_reqs",
                        reqs,
                        "required (rediss:// always verifies the certificate)",
                    ));
                }
            }
            let client = match (file("ssl_certfile")?, file("ssl_keyfile")?) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                _ => return Err("ssl_certfile and ssl_keyfile go together".to_string()),
            };
            Ok(TlsOptions {
                mode: if tls {
                    TlsMode::VerifyFull
                } else {
                    TlsMode::Disable
                },
                roots: file("ssl_ca_certs")?.map_or(Roots::Default, Roots::File),
                client,
            })
        }
    }
}

fn bad_value(key: &str, value: &str, known: &str) -> String {
    format!(
        "option `{key}`: {:?} is not one of {known}",
        super::printable(value)
    )
}

/// A file option's path, refused unless it can be read now (a typo is found by the config
/// check, not at the first scrape).
fn readable_file(key: &str, value: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(format!("option `{key}`: {} is not a file", path.display())),
        Err(e) => Err(format!("option `{key}`: {}: {}", path.display(), e.kind())),
    }
}

/// The CAs of a PEM file.
pub fn roots_from_file(path: &Path) -> Result<RootCertStore, String> {
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("CA file {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "CA file {}: no PEM certificate in it",
            path.display()
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The system's CAs (`sslrootcert=system`).
fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err("no CA certificate found in the system's store".to_string());
    }
    Ok(roots)
}

/// The rustls client settings of a PostgreSQL target whose mode is not `Disable`.
pub fn client_config(options: &TlsOptions) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &options.roots {
        Roots::Default => None,
        Roots::System => Some(system_roots()?),
        Roots::File(path) => Some(roots_from_file(path)?),
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (options.mode, roots) {
        (TlsMode::VerifyFull, Some(roots)) => webpki(roots, &provider)?,
        // libpq: require with a CA file verifies the chain, as verify-ca.
        (TlsMode::VerifyCa | TlsMode::Require, Some(roots)) => Arc::new(Lenient {
            chain: Some(webpki(roots, &provider)?),
            provider: provider.clone(),
        }),
        _ => Arc::new(Lenient {
            chain: None,
            provider: provider.clone(),
        }),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // PostgreSQL 17's `sslnegotiation=direct` requires it; earlier servers ignore it.
    let mut config = config;
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

fn webpki(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())
}

/// The certificate checks libpq leaves out: verify-ca (`chain` given) checks the chain and not
/// the host name (rustls checks the name last, so a name error means the chain passed); prefer
/// and require without a CA (`chain` None) check no certificate at all. The handshake's
/// signatures are always checked.
#[derive(Debug)]
struct Lenient {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// tokio-postgres's TLS over rustls: the connector [`tokio_postgres::Config::connect`] takes.
#[derive(Clone)]
pub struct PgTls(Arc<rustls::ClientConfig>);

impl PgTls {
    pub fn new(options: &TlsOptions) -> Result<PgTls, String> {
        client_config(options).map(|c| PgTls(Arc::new(c)))
    }
}

/// One connection's TLS handshake, to the host it was made for.
pub struct PgTlsConnect {
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

/// The TLS stream tokio-postgres reads and writes.
pub struct PgTlsStream(tokio_rustls::client::TlsStream<tokio_postgres::Socket>);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> for PgTls {
    type Stream = PgTlsStream;
    type TlsConnect = PgTlsConnect;
    type Error = BoxError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<PgTlsConnect, BoxError> {
        let name = ServerName::try_from(domain.to_string())?;
        Ok(PgTlsConnect {
            config: self.0.clone(),
            name,
        })
    }
}

impl tokio_postgres::tls::TlsConnect<tokio_postgres::Socket> for PgTlsConnect {
    type Stream = PgTlsStream;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<PgTlsStream, BoxError>> + Send>>;

    fn connect(self, stream: tokio_postgres::Socket) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let tls = connector.connect(self.name, stream).await?;
            Ok(PgTlsStream(tls))
        })
    }
}

impl tokio_postgres::tls::TlsStream for PgTlsStream {
    // No channel binding: SCRAM without -PLUS, as libpq with channel_binding=prefer does when
    // the binding is not offered.
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        tokio_postgres::tls::ChannelBinding::none()
    }
}

impl tokio::io::AsyncRead for PgTlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for PgTlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// mysql_async's TLS settings for `options`; `None` for plain text.
pub fn mysql_ssl_opts(options: &TlsOptions) -> Option<mysql_async::SslOpts> {
    let opts = mysql_async::SslOpts::default();
    let opts = match &options.roots {
        Roots::File(path) => opts
            .with_root_certs(vec![path.clone().into()])
            .with_disable_built_in_roots(true),
        _ => opts,
    };
    match options.mode {
        TlsMode::Disable => None,
        // The mysql client's meaning: encrypted, the certificate not checked.
        TlsMode::Prefer | TlsMode::Require => Some(
            opts.with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        TlsMode::VerifyCa => Some(opts.with_danger_skip_domain_validation(true)),
        TlsMode::VerifyFull => Some(opts),
    }
}

/// The redis crate's TLS material for `options` (PEM bytes, read at each connect so that a
/// renewed certificate is picked up).
pub fn redis_certificates(options: &TlsOptions) -> Result<redis::TlsCertificates, String> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| format!("cannot read {}: {}", path.display(), e.kind()))
    };
    let root_cert = match &options.roots {
        Roots::File(path) => Some(read(path)?),
        _ => None,
    };
    let client_tls = match &options.client {
        Some((cert, key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        None => None,
    };
    Ok(redis::TlsCertificates {
        client_tls,
        root_cert,
    })
}
