//! `--web.config.file`: the exporter-toolkit web configuration (the YAML file node_exporter,
//! mysqld_exporter, postgres_exporter and redis_exporter read), with the same keys and meaning.
//! Parsing is pure: this module turns the file's text into [`WebConfig`] or an error that names the
//! file, the line and the key. Loading certificates is `tls`'s job, checking passwords `auth`'s.
//!
//! YAML by serde_norway: a maintained fork of serde_yaml (archived) with the same API, whose errors
//! carry the line and column and the dotted key path (`tls_server_config.min_version: …`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file as written. Unknown keys are errors, as exporter-toolkit's `UnmarshalStrict` makes them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    http_server_config: Option<HttpFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// Known to exporter-toolkit; refused here with a clear error rather than silently ignored.
    rate_limit: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: Option<String>,
    key_file: Option<String>,
    /// A name, parsed by [`ClientAuth::named`]: empty means NoClientCert, as in exporter-toolkit.
    client_auth_type: Option<String>,
    client_ca_file: Option<String>,
    // Names, checked after parsing: serde_norway places a custom error at the enclosing mapping.
    #[serde(default)]
    cipher_suites: Vec<String>,
    #[serde(default)]
    curve_preferences: Vec<String>,
    min_version: Option<String>,
    max_version: Option<String>,
    /// Go ignores it since 1.17; so do we.
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
    // Known to exporter-toolkit, refused with a clear error (see `unsupported`).
    cert: Option<serde::de::IgnoredAny>,
    key: Option<serde::de::IgnoredAny>,
    client_ca: Option<serde::de::IgnoredAny>,
    client_allowed_sans: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFile {
    /// exporter-toolkit serves HTTP/2 when true (its default); this exporter serves HTTP/1.1
    /// only, which every Prometheus speaks, so the key is accepted and has no effect.
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// Client certificate policy, with Go's `crypto/tls` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    /// exporter-toolkit's old name of RequireAnyClientCert.
    RequireClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

impl ClientAuth {
    /// By its Go name; empty is NoClientCert, as exporter-toolkit reads it.
    fn named(name: &str) -> Result<ClientAuth, String> {
        Ok(match name {
            "" | "NoClientCert" => ClientAuth::NoClientCert,
            "RequestClientCert" => ClientAuth::RequestClientCert,
            "RequireAnyClientCert" => ClientAuth::RequireAnyClientCert,
            "RequireClientCert" => ClientAuth::RequireClientCert,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
            other => {
                return Err(format!(
                    "{other:?} is not a client_auth_type (NoClientCert, RequestClientCert, \
                     RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert)"
                ))
            }
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TryFrom<String> for TlsVersion {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            "TLS10" | "TLS11" => Err(format!(
                "{name} is not supported (rustls speaks TLS12 and TLS13 only)"
            )),
            _ => Err(format!("unknown TLS version {name:?} (TLS12 or TLS13)")),
        }
    }
}

/// A TLS 1.2 cipher suite by its Go name (TLS 1.3 suites are not configurable, as in Go).
#[derive(Debug, Clone, Copy)]
pub struct CipherSuite(pub rustls::SupportedCipherSuite);

/// The TLS 1.3 suites by their Go (and IANA) names.
const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

impl TryFrom<String> for CipherSuite {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let tls12 = || {
            rustls::crypto::ring::ALL_CIPHER_SUITES
                .iter()
                .filter(|suite| matches!(suite, rustls::SupportedCipherSuite::Tls12(_)))
        };
        if TLS13_SUITES.contains(&name.as_str()) {
            return Err(format!(
                "{name} is a TLS 1.3 suite: TLS 1.3 suites are always on and cannot be chosen \
                 (Go ignores cipher_suites for TLS 1.3); list TLS 1.2 suites only"
            ));
        }
        // Go names the ChaCha20 suites without the `_SHA256` that rustls (and the IANA) add.
        let found = tls12().find(|suite| {
            suite.suite().as_str().is_some_and(|rustls_name| {
                rustls_name == name || rustls_name.strip_suffix("_SHA256") == Some(name.as_str())
            })
        });
        found.map(|suite| CipherSuite(*suite)).ok_or_else(|| {
            let supported: Vec<&str> = tls12().filter_map(|s| s.suite().as_str()).collect();
            format!(
                "cipher suite {name:?} is not supported by rustls (TLS 1.2 suites it has: {})",
                supported.join(", ")
            )
        })
    }
}

/// A key exchange group by its Go name.
#[derive(Debug, Clone, Copy)]
pub struct Curve(pub &'static dyn rustls::crypto::SupportedKxGroup);

impl TryFrom<String> for Curve {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        use rustls::NamedGroup;
        let wanted = match name.as_str() {
            "X25519" => NamedGroup::X25519,
            "CurveP256" => NamedGroup::secp256r1,
            "CurveP384" => NamedGroup::secp384r1,
            "CurveP521" => return Err("CurveP521 is not supported by rustls's ring provider (X25519, CurveP256, CurveP384 are)".into()),
            _ => return Err(format!("unknown curve {name:?} (X25519, CurveP256, CurveP384)")),
        };
        rustls::crypto::ring::ALL_KX_GROUPS
            .iter()
            .find(|group| group.name() == wanted)
            .map(|group| Curve(*group))
            .ok_or_else(|| format!("curve {name} is not available"))
    }
}

/// The checked configuration. Paths are absolute or relative to the web config file's directory,
/// as exporter-toolkit resolves them.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// User name → bcrypt hash. Empty: no authentication.
    pub users: BTreeMap<String, String>,
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientVerification,
    pub cipher_suites: Vec<rustls::SupportedCipherSuite>,
    pub curves: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// Where the keys are written in the web config, for the errors of loading their files.
    pub lines: TlsLines,
}

/// The 1-based lines of `tls_server_config` and of its keys that name files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsLines {
    pub section: usize,
    pub cert_file: usize,
    pub key_file: usize,
    pub client_ca_file: usize,
}

impl TlsLines {
    fn of(text: &str) -> TlsLines {
        let line = |key| line_of(text, "tls_server_config", key);
        TlsLines {
            section: line(""),
            cert_file: line("cert_file"),
            key_file: line("key_file"),
            client_ca_file: line("client_ca_file"),
        }
    }
}

/// What rustls can do with client certificates: it verifies every certificate it asks for, so
/// Go's "ask but do not verify" modes have no equivalent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientVerification {
    None,
    /// VerifyClientCertIfGiven: a certificate is optional, but verified against the CA if sent.
    Optional {
        ca_file: PathBuf,
    },
    /// RequireAndVerifyClientCert.
    Required {
        ca_file: PathBuf,
    },
}

/// Headers exporter-toolkit lets a web config set, with the values it allows (empty: any).
const ALLOWED_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// Reads and checks the web config file.
pub fn load(path: &Path) -> anyhow::Result<WebConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--web.config.file {}: {e}", path.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    parse(&text, dir).map_err(|e| anyhow::anyhow!("{}:{e}", path.display()))
}

/// Parses the file's text; an error starts with `LINE: ` and names the key.
pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, String> {
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_norway::from_str(text).map_err(|e| {
            let line = e.location().map_or(1, |l| l.line());
            format!("{line}: {e}")
        })?
    };
    let at = |section: &str, key: &str, message: String| {
        format!(
            "{}: {section}.{key}: {message}",
            line_of(text, section, key)
        )
    };
    if file.rate_limit.is_some() {
        return Err(format!(
            "{}: rate_limit: not supported by stack_exporter (the connection cap \
             --web.max-connections bounds the load instead)",
            line_of(text, "rate_limit", "")
        ));
    }
    let tls = match file.tls_server_config {
        Some(tls) => tls_settings(tls, dir, &at)?.map(|settings| TlsSettings {
            lines: TlsLines::of(text),
            ..settings
        }),
        None => None,
    };
    let users = file.basic_auth_users.unwrap_or_default();
    for (user, hash) in &users {
        if !is_bcrypt_hash(hash) {
            return Err(at(
                "basic_auth_users",
                user,
                "not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)".into(),
            ));
        }
    }
    let headers = file
        .http_server_config
        .map(|http| http.headers)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, value)| header(&name, &value).map_err(|m| at("http_server_config", &name, m)))
        .collect::<Result<_, _>>()?;
    Ok(WebConfig {
        tls,
        users,
        headers,
    })
}

fn tls_settings(
    tls: TlsFile,
    dir: &Path,
    at: &dyn Fn(&str, &str, String) -> String,
) -> Result<Option<TlsSettings>, String> {
    let section = "tls_server_config";
    for (key, given) in [
        ("cert", tls.cert.is_some()),
        ("key", tls.key.is_some()),
        ("client_ca", tls.client_ca.is_some()),
        ("client_allowed_sans", tls.client_allowed_sans.is_some()),
    ] {
        if given {
            let hint = match key {
                "client_allowed_sans" => "issue client certificates from a CA of their own instead",
                _ => "put it in a file and use the _file key",
            };
            return Err(at(
                section,
                key,
                format!("not supported by stack_exporter; {hint}"),
            ));
        }
    }
    let given = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.is_empty());
    let enabled = given(&tls.cert_file)
        || given(&tls.key_file)
        || given(&tls.client_ca_file)
        || given(&tls.client_auth_type);
    if !enabled {
        // As in exporter-toolkit: a tls_server_config without any of these, or with each of them
        // empty, means plain HTTP.
        return Ok(None);
    }
    let path = |key: &str, value: Option<String>| match value.filter(|v| !v.is_empty()) {
        Some(value) => Ok(dir.join(value)),
        None => Err(at(
            section,
            key,
            "missing: TLS needs cert_file and key_file".into(),
        )),
    };
    let cert_file = path("cert_file", tls.cert_file)?;
    let key_file = path("key_file", tls.key_file)?;
    let ca_file = tls
        .client_ca_file
        .filter(|v| !v.is_empty())
        .map(|f| dir.join(f));
    let client_auth_type = ClientAuth::named(tls.client_auth_type.as_deref().unwrap_or(""))
        .map_err(|m| at(section, "client_auth_type", m))?;
    let client_auth = match (client_auth_type, ca_file) {
        (ClientAuth::NoClientCert, None) => ClientVerification::None,
        (ClientAuth::NoClientCert, Some(_)) => {
            return Err(at(
                section,
                "client_ca_file",
                "set without a client_auth_type that verifies (RequireAndVerifyClientCert or VerifyClientCertIfGiven)".into(),
            ))
        }
        (ClientAuth::VerifyClientCertIfGiven, Some(ca_file)) => ClientVerification::Optional { ca_file },
        (ClientAuth::RequireAndVerifyClientCert, Some(ca_file)) => ClientVerification::Required { ca_file },
        (ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert, None) => {
            return Err(at(section, "client_auth_type", "needs client_ca_file, the CA that signs client certificates".into()))
        }
        (other, _) => {
            return Err(at(
                section,
                "client_auth_type",
                format!("{other:?} is not supported: rustls verifies every client certificate it asks for; use RequireAndVerifyClientCert with client_ca_file"),
            ))
        }
    };
    let version = |key: &str, name: Option<String>, default| match name {
        Some(name) => TlsVersion::try_from(name).map_err(|m| at(section, key, m)),
        None => Ok(default),
    };
    let min_version = version("min_version", tls.min_version, TlsVersion::Tls12)?;
    let max_version = version("max_version", tls.max_version, TlsVersion::Tls13)?;
    let cipher_suites = names(tls.cipher_suites, |n| CipherSuite::try_from(n).map(|c| c.0))
        .map_err(|m| at(section, "cipher_suites", m))?;
    let curves = names(tls.curve_preferences, |n| Curve::try_from(n).map(|c| c.0))
        .map_err(|m| at(section, "curve_preferences", m))?;
    if min_version > max_version {
        return Err(at(section, "min_version", "is above max_version".into()));
    }
    Ok(Some(TlsSettings {
        cert_file,
        key_file,
        client_auth,
        cipher_suites,
        curves,
        min_version,
        max_version,
        lines: TlsLines::default(),
    }))
}

fn names<T>(
    names: Vec<String>,
    parse: impl Fn(String) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    names.into_iter().map(parse).collect()
}

fn header(
    name: &str,
    value: &str,
) -> Result<(hyper::header::HeaderName, hyper::header::HeaderValue), String> {
    let Some((_, allowed)) = ALLOWED_HEADERS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "this header cannot be set (only {})",
            names.join(", ")
        ));
    };
    if !allowed.is_empty() && !allowed.contains(&value) {
        return Err(format!("{value:?} is not allowed (one of {allowed:?})"));
    }
    let name = hyper::header::HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
    let value = hyper::header::HeaderValue::from_str(value).map_err(|e| e.to_string())?;
    Ok((name, value))
}

/// `$2a$`, `$2b$` or `$2y$` (as htpasswd writes), a two-digit cost, 53 characters of salt and hash.
fn is_bcrypt_hash(hash: &str) -> bool {
    let mut parts = hash.split('$');
    let (Some(""), Some(variant), Some(cost), Some(rest), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    ["2a", "2b", "2x", "2y"].contains(&variant)
        && cost.len() == 2
        && cost.parse::<u32>().is_ok_and(|c| (4..=31).contains(&c))
        && rest.len() == 53
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

/// The 1-based line of `key` inside the top-level `section` (the section's own line when the key
/// is not written there): for errors found after parsing, which serde no longer places.
fn line_of(text: &str, section: &str, key: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let is_key = |line: &str, key: &str| {
        let line = line.trim_start().trim_start_matches(['"', '\'']);
        line.strip_prefix(key)
            .map(|rest| rest.trim_start_matches(['"', '\'']).trim_start())
            .is_some_and(|rest| rest.starts_with(':'))
    };
    let Some(start) = lines
        .iter()
        .position(|line| !line.starts_with([' ', '\t']) && is_key(line, section))
    else {
        return 1;
    };
    let inside = lines
        .iter()
        .enumerate()
        .skip(start.saturating_add(1))
        .take_while(|(_, line)| line.trim().is_empty() || line.starts_with([' ', '\t', '#']));
    let found = inside
        .filter(|_| !key.is_empty())
        .find(|(_, line)| is_key(line, key))
        .map_or(start, |(index, _)| index);
    found.saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

    fn parse(text: &str) -> Result<WebConfig, String> {
        super::parse(text, Path::new("/etc/web"))
    }

    fn error(text: &str) -> String {
        parse(text).expect_err("should be refused")
    }

    #[test]
    fn an_empty_file_serves_plain_http_without_auth() {
        let config = parse("").unwrap();
        assert!(config.tls.is_none() && config.users.is_empty() && config.headers.is_empty());
    }

    #[test]
    fn an_empty_client_auth_type_means_no_client_cert() {
        let config = parse(
            "tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n  client_auth_type: \"\"\n",
        )
        .unwrap();
        assert_eq!(config.tls.unwrap().client_auth, ClientVerification::None);
    }

    #[test]
    fn empty_cert_and_key_files_mean_plain_http() {
        let config = parse(
            "tls_server_config:\n  cert_file: \"\"\n  key_file: \"\"\n  client_auth_type: \"\"\n",
        )
        .unwrap();
        assert!(config.tls.is_none(), "as exporter-toolkit: no TLS");
        let half = error("tls_server_config:\n  cert_file: a.crt\n  key_file: \"\"\n");
        assert!(
            half.starts_with("3: tls_server_config.key_file: missing"),
            "{half}"
        );
    }

    #[test]
    fn a_tls13_suite_in_cipher_suites_gets_its_own_message() {
        let message = error(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
        );
        assert!(
            message.starts_with("4: tls_server_config.cipher_suites"),
            "{message}"
        );
        assert!(message.contains("TLS 1.3 suite"), "{message}");
        assert!(
            message.contains("Go ignores cipher_suites for TLS 1.3"),
            "{message}"
        );
    }

    #[test]
    fn certificate_and_key_errors_name_their_line_in_the_web_config() {
        let text = "# web config\ntls_server_config:\n  min_version: TLS12\n  cert_file: /nonexistent/a.crt\n  key_file: /nonexistent/a.key\n";
        let settings = parse(text).unwrap().tls.unwrap();
        assert_eq!(
            (
                settings.lines.section,
                settings.lines.cert_file,
                settings.lines.key_file
            ),
            (2, 4, 5)
        );
        let cert = format!(
            "{:#}",
            super::super::tls::server_config(&settings).unwrap_err()
        );
        assert!(
            cert.starts_with("4: tls_server_config.cert_file /nonexistent/a.crt"),
            "{cert}"
        );
        // A real certificate, so that the key is the next file read.
        let dir = tempfile::tempdir().unwrap();
        let crt = dir.path().join("a.crt");
        let made = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-subj", "/CN=localhost", "-days", "1", "-keyout"])
            .arg(dir.path().join("unused.key"))
            .arg("-out")
            .arg(&crt)
            .output()
            .expect("openssl is needed (apt-get install openssl)");
        assert!(made.status.success(), "{made:?}");
        let settings = TlsSettings {
            cert_file: crt,
            ..settings
        };
        let key = format!(
            "{:#}",
            super::super::tls::server_config(&settings).unwrap_err()
        );
        assert!(
            key.starts_with("5: tls_server_config.key_file /nonexistent/a.key"),
            "{key}"
        );
    }

    #[test]
    fn a_full_file_parses_with_paths_beside_it() {
        let config = parse(&format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305]\n  \
             curve_preferences: [X25519, CurveP256]\n  prefer_server_cipher_suites: true\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prometheus: '{HASH}'\n"
        ))
        .unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert_file, Path::new("/etc/web/server.crt"));
        assert_eq!(tls.key_file, Path::new("/abs/server.key"));
        assert_eq!(
            tls.client_auth,
            ClientVerification::Required {
                ca_file: "/etc/web/ca.crt".into()
            }
        );
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert_eq!(tls.cipher_suites.len(), 1);
        assert_eq!(tls.curves.len(), 2);
        assert_eq!(config.users["prometheus"], HASH);
        assert_eq!(config.headers.len(), 1);
    }

    /// Each malformed file is refused with the line of the offending key.
    #[test]
    fn malformed_files_name_the_line_and_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("tls_server_config:\n  cert_filse: a.crt\n", "2:", "cert_filse"),
            ("tls_server_config:\n  cert_file: a.crt\n", "1:", "key_file"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n", "4:", "TLS10"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  max_version: TLS99\n", "4:", "TLS99"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  max_version: TLS12\n", "4:", "min_version"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites:\n    - TLS_RSA_WITH_RC4_128_SHA\n", "4:", "not supported by rustls"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [CurveP521]\n", "4:", "CurveP521"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n  client_ca_file: c\n", "4:", "client_auth_type"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Sometimes\n", "4:", "Sometimes"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n", "4:", "client_ca_file"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n", "4:", "client_ca_file"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n", "4:", "client_allowed_sans"),
            ("basic_auth_users:\n  john: doe\n", "2:", "basic_auth_users.john"),
            ("basic_auth_users:\n  - john\n", "2:", "basic_auth_users"),
            ("http_server_config:\n  headers:\n    Server: x\n", "3:", "Server"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "3:", "X-Frame-Options"),
            ("rate_limit:\n  burst: 1\n", "1:", "rate_limit"),
            ("basic_auth_users: [\n", "1:", "basic_auth_users"),
            ("tls_server_config:\n  cert_file: a\n key_file: b\n", "3:", "mapping"),
            ("junk\n", "1:", ""),
        ];
        for (text, line, key) in cases {
            let message = error(text);
            assert!(
                message.starts_with(line) && message.contains(key),
                "{text:?} gave {message:?}, wanted line {line} and {key:?}"
            );
        }
    }

    /// The sample in docs/security.md is a valid file.
    #[test]
    fn the_documented_sample_parses() {
        let doc = include_str!("../../docs/security.md");
        let sample = doc
            .split("```yaml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap();
        let config = parse(sample).unwrap();
        assert!(config.tls.is_some());
        assert_eq!(config.headers.len(), 3);
        let hash = &config.users["prometheus"];
        assert!(bcrypt::verify("example", hash).unwrap());
    }

    #[test]
    fn bcrypt_hashes_are_recognised() {
        assert!(is_bcrypt_hash(HASH));
        assert!(!is_bcrypt_hash("doe"));
        assert!(!is_bcrypt_hash(
            "$2y$99$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi"
        ));
        assert!(!is_bcrypt_hash(&HASH[..HASH.len() - 1]));
    }
}
