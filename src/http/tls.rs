//! The rustls server configuration made from a web config's `tls_server_config`: certificate and
//! key from PEM files, optional client certificate verification, versions, suites and curves.
//! Built again whenever one of its files changes (see `web`), so a renewed certificate is served
//! on the next connection.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::webconfig::{ClientVerification, TlsSettings, TlsVersion};

/// The rustls configuration. Every error starts with the web config's line it is about (the key
/// that names the file that failed, or the section), then names the key and the file.
pub fn server_config(settings: &TlsSettings) -> anyhow::Result<Arc<ServerConfig>> {
    let lines = settings.lines;
    let provider = Arc::new(provider(settings));
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(version, _)| (settings.min_version..=settings.max_version).contains(version))
    .map(|(_, version)| version)
    .collect();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| anyhow::anyhow!("{}: tls_server_config: {e}", lines.section))?;
    let builder = match &settings.client_auth {
        ClientVerification::None => builder.with_no_client_auth(),
        ClientVerification::Optional { ca_file } => {
            let roots = client_roots(ca_file, lines.client_ca_file)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| anyhow::anyhow!("{}: tls_server_config: {e}", lines.section))?;
            builder.with_client_cert_verifier(verifier)
        }
        ClientVerification::Required { ca_file } => {
            let roots = client_roots(ca_file, lines.client_ca_file)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| anyhow::anyhow!("{}: tls_server_config: {e}", lines.section))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let certs = certificates(&settings.cert_file, "cert_file", lines.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key_file).map_err(|e| {
        anyhow::anyhow!(
            "{}: tls_server_config.key_file {}: no private key read: {e}",
            lines.key_file,
            settings.key_file.display()
        )
    })?;
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        anyhow::anyhow!(
            "{}: tls_server_config: cert_file {} and key_file {} do not make a pair: {e}",
            lines.key_file,
            settings.cert_file.display(),
            settings.key_file.display()
        )
    })?;
    // HTTP/1.1 only: a client that offers h2 falls back to it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// ring's provider narrowed to the configured suites and curves. As in Go, `cipher_suites` names
/// TLS 1.2 suites only; the TLS 1.3 suites are always offered.
fn provider(settings: &TlsSettings) -> CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    if !settings.cipher_suites.is_empty() {
        provider.cipher_suites.retain(|suite| {
            matches!(suite, rustls::SupportedCipherSuite::Tls13(_))
                || settings
                    .cipher_suites
                    .iter()
                    .any(|wanted| wanted.suite() == suite.suite())
        });
    }
    if !settings.curves.is_empty() {
        provider.kx_groups = settings.curves.clone();
    }
    provider
}

fn certificates(
    path: &Path,
    key: &str,
    line: usize,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let read = || -> Result<Vec<_>, rustls_pki_types::pem::Error> {
        CertificateDer::pem_file_iter(path)?.collect()
    };
    let certs = read()
        .map_err(|e| anyhow::anyhow!("{line}: tls_server_config.{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{line}: tls_server_config.{key} {}: no PEM certificate in it",
            path.display()
        );
    }
    Ok(certs)
}

fn client_roots(ca_file: &Path, line: usize) -> anyhow::Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file, "client_ca_file", line)? {
        roots.add(cert).map_err(|e| {
            anyhow::anyhow!(
                "{line}: tls_server_config.client_ca_file {}: {e}",
                ca_file.display()
            )
        })?;
    }
    Ok(Arc::new(roots))
}
