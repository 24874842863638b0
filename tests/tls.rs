//! `--web.config.file`: TLS, basic auth and mTLS checked with real clients (curl, openssl
//! s_client, Prometheus) against the exporter binary, with certificates made by the openssl CLI.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::pki::Pki;
use common::servers::start_prometheus;
use common::{exporter_binary, http_get, require, wait_for, Exporter};

const OPENSSL: &str = "apt-get install openssl";
const CURL: &str = "apt-get install curl";

/// A bcrypt hash as `htpasswd -nBC 6` would write it (cost 6 keeps the debug build quick).
fn hash(password: &str) -> String {
    bcrypt::hash(password, 6).unwrap()
}

fn start(config: &Path) -> Exporter {
    Exporter::start(&[&format!("--web.config.file={}", config.display())])
}

/// curl against the exporter: (HTTP status, body), status 0 when no HTTP answer came.
fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let output = Command::new(require("curl", CURL))
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn https(exporter: &Exporter, path: &str) -> String {
    format!("https://127.0.0.1:{}{path}", exporter.port)
}

/// The subject CN of the certificate the exporter presents to a new connection.
fn served_cn(port: u16, ca: &Path) -> String {
    let output: Output = Command::new(require("openssl", OPENSSL))
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-CAfile",
        ])
        .arg(ca)
        .args(["-verify_return_error", "-brief"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|line| line.strip_prefix("Peer certificate: CN = "))
        .unwrap_or_else(|| panic!("no peer certificate in {text}"))
        .trim()
        .to_string()
}

#[test]
fn https_and_basic_auth_with_curl_and_a_real_prometheus_scrape() {
    require("prometheus", "apt-get install prometheus");
    let pki = Pki::new();
    pki.leaf("server", "ca", "serverAuth");
    let config = pki.web_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
         basic_auth_users:\n  prometheus: '{}'\n  other: '{}'\n",
        hash("right password"),
        hash("another")
    ));
    let exporter = start(&config);
    let ca = pki.path("ca.crt");
    let ca = ca.to_str().unwrap();

    let (status, body) = curl(
        &https(&exporter, "/metrics"),
        &["--cacert", ca, "-u", "prometheus:right password"],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("stack_exporter_build_info"), "{body}");
    for (who, args) in [
        ("no credentials", vec!["--cacert", ca]),
        (
            "a wrong password",
            vec!["--cacert", ca, "-u", "prometheus:wrong"],
        ),
        (
            "an unknown user",
            vec!["--cacert", ca, "-u", "nobody:right password"],
        ),
        (
            "another user's password",
            vec!["--cacert", ca, "-u", "other:right password"],
        ),
    ] {
        let (status, body) = curl(&https(&exporter, "/metrics"), &args);
        assert_eq!(status, 401, "{who}: {body}");
        assert!(!body.contains("stack_exporter_build_info"), "{who}");
    }
    // As exporter-toolkit: every path is behind the same rules, the health check too.
    assert_eq!(
        curl(&https(&exporter, "/-/healthy"), &["--cacert", ca]).0,
        401
    );
    let (status, body) = curl(
        &https(&exporter, "/-/healthy"),
        &["--cacert", ca, "-u", "prometheus:right password"],
    );
    assert_eq!((status, body.as_str()), (200, "OK\n"));
    let head = Command::new(require("curl", CURL))
        .args(["-sS", "-o", "/dev/null", "-D", "-", "--cacert", ca])
        .arg(https(&exporter, "/"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.contains("x-frame-options: deny"), "{head}");
    assert!(head.contains("www-authenticate: basic"), "{head}");

    // Plain HTTP to the TLS port gets no HTTP answer at all.
    let (status, _) = curl(&format!("http://127.0.0.1:{}/metrics", exporter.port), &[]);
    assert_eq!(status, 0, "plain HTTP must not be answered");

    // Both refusals are counted.
    let (_, metrics) = curl(
        &https(&exporter, "/metrics"),
        &["--cacert", ca, "-u", "prometheus:right password"],
    );
    assert!(
        counter(&metrics, "stack_exporter_http_unauthorized_total") >= 6.0,
        "{metrics}"
    );
    assert!(counter(&metrics, "stack_exporter_http_tls_handshake_failures_total") >= 1.0);
    assert_eq!(
        counter(&metrics, "stack_exporter_web_config_last_reload_successful"),
        1.0
    );

    // A changed password applies at once, no restart.
    std::fs::write(
        &config,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: '{}'\n",
            hash("new password")
        ),
    )
    .unwrap();
    assert_eq!(
        curl(
            &https(&exporter, "/-/healthy"),
            &["--cacert", ca, "-u", "prometheus:right password"]
        )
        .0,
        401
    );
    assert_eq!(
        curl(
            &https(&exporter, "/-/healthy"),
            &["--cacert", ca, "-u", "prometheus:new password"]
        )
        .0,
        200
    );
    std::fs::write(
        &config,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
             basic_auth_users:\n  prometheus: '{}'\n",
            hash("right password")
        ),
    )
    .unwrap();

    // A real Prometheus: right credentials store samples; the others leave the target down.
    let dir = pki.dir.path();
    let job = |name: &str, auth: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config: {{ ca_file: ca.crt }}\n{auth}    \
             static_configs: [ {{ targets: ['127.0.0.1:{}'] }} ]\n",
            exporter.port
        )
    };
    let basic = |user: &str, password: &str| {
        format!("    basic_auth: {{ username: {user}, password: '{password}' }}\n")
    };
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{ scrape_interval: 1s, scrape_timeout: 1s }}\nscrape_configs:\n{}{}{}{}",
            job("right", &basic("prometheus", "right password")),
            job("none", ""),
            job("wrong", &basic("prometheus", "wrong")),
            job("unknown", &basic("nobody", "right password")),
        ),
    )
    .unwrap();
    let (_prometheus, prom_port) = start_prometheus(dir);
    let query = |q: &str| {
        let (_, _, body) = http_get(prom_port, &format!("/api/v1/query?query={q}"), &[]);
        body
    };
    wait_for("every job scraped", Duration::from_secs(60), || {
        query("count(up)").contains("\"4\"]")
    });
    wait_for("the right job up", Duration::from_secs(30), || {
        query("up%7Bjob%3D%22right%22%7D").contains("\"1\"]")
    });
    let down = query("up%3D%3D0");
    for job in ["none", "wrong", "unknown"] {
        assert!(
            down.contains(&format!("\"job\":\"{job}\"")),
            "{job} must be down: {down}"
        );
    }
    let stored = query("stack_exporter_build_info");
    assert!(stored.contains("\"job\":\"right\""), "{stored}");
    assert!(!stored.contains("\"job\":\"wrong\""), "{stored}");
}

#[test]
fn mtls_refuses_a_client_without_a_certificate_from_its_ca() {
    let pki = Pki::new();
    pki.leaf("server", "ca", "serverAuth");
    pki.leaf("client", "ca", "clientAuth");
    pki.ca("rogue");
    pki.leaf("intruder", "rogue", "clientAuth");
    let config = pki.web_config(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS12\n",
    );
    let exporter = start(&config);
    let ca = pki.path("ca.crt");
    let file = |name: &str| pki.path(name).to_str().unwrap().to_string();
    let url = https(&exporter, "/metrics");
    let ca = ca.to_str().unwrap();

    assert_eq!(curl(&url, &["--cacert", ca]).0, 0, "no client certificate");
    let intruder = curl(
        &url,
        &[
            "--cacert",
            ca,
            "--cert",
            &file("intruder.crt"),
            "--key",
            &file("intruder.key"),
        ],
    );
    assert_eq!(intruder.0, 0, "a certificate from another CA");
    let (status, body) = curl(
        &url,
        &[
            "--cacert",
            ca,
            "--cert",
            &file("client.crt"),
            "--key",
            &file("client.key"),
        ],
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("stack_exporter_build_info"));
    assert!(
        exporter.log().contains("TLS handshake failed"),
        "{}",
        exporter.log()
    );
}

#[test]
fn a_certificate_replaced_on_disk_is_served_on_the_next_connection() {
    let pki = Pki::new();
    pki.leaf("one", "ca", "serverAuth");
    pki.leaf("two", "ca", "serverAuth");
    std::fs::copy(pki.path("one.crt"), pki.path("server.crt")).unwrap();
    std::fs::copy(pki.path("one.key"), pki.path("server.key")).unwrap();
    let config =
        pki.web_config("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n");
    let exporter = start(&config);
    let ca = pki.path("ca.crt");
    assert_eq!(served_cn(exporter.port, &ca), "one");

    // As a renewal tool does: new files renamed into place, no restart, no signal.
    for ext in ["key", "crt"] {
        let staged = pki.path(&format!("staged.{ext}"));
        std::fs::copy(pki.path(&format!("two.{ext}")), &staged).unwrap();
        std::fs::rename(&staged, pki.path(&format!("server.{ext}"))).unwrap();
    }
    assert_eq!(served_cn(exporter.port, &ca), "two");
    let (status, _) = curl(
        &https(&exporter, "/metrics"),
        &["--cacert", ca.to_str().unwrap()],
    );
    assert_eq!(status, 200);

    // A broken replacement keeps the last good certificate in force, and says so.
    std::fs::write(pki.path("server.crt"), "not a certificate").unwrap();
    assert_eq!(served_cn(exporter.port, &ca), "two");
    assert!(
        exporter.log().contains("web config reload"),
        "{}",
        exporter.log()
    );
    let (_, metrics) = curl(
        &https(&exporter, "/metrics"),
        &["--cacert", ca.to_str().unwrap()],
    );
    assert_eq!(
        counter(&metrics, "stack_exporter_web_config_last_reload_successful"),
        0.0
    );

    // Repaired: in force again on the next connection.
    std::fs::copy(pki.path("one.crt"), pki.path("server.crt")).unwrap();
    std::fs::copy(pki.path("one.key"), pki.path("server.key")).unwrap();
    assert_eq!(served_cn(exporter.port, &ca), "one");
    let (_, metrics) = curl(
        &https(&exporter, "/metrics"),
        &["--cacert", ca.to_str().unwrap()],
    );
    assert_eq!(
        counter(&metrics, "stack_exporter_web_config_last_reload_successful"),
        1.0
    );
}

/// The value of an unlabelled series in the text format.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

/// Each malformed web config refuses to start, naming the file, the line and the key.
#[test]
fn a_malformed_web_config_refuses_to_start_with_file_line_and_key() {
    let pki = Pki::new();
    let cases: &[(&str, &str, &str)] = &[
        ("tls_server_config:\n  cert_file: server.crt\n  key_fiel: server.key\n", ":3:", "key_fiel"),
        ("basic_auth_users:\n  prometheus: plaintext\n", ":2:", "basic_auth_users.prometheus"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS11\n", ":4:", "min_version"),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n", "missing.crt", "cert_file"),
    ];
    for (text, line, key) in cases {
        let config = pki.web_config(text);
        let output = Command::new(exporter_binary())
            .arg("--web.listen-address=127.0.0.1:0")
            .arg(format!("--web.config.file={}", config.display()))
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text:?} started");
        assert!(
            log.contains(&format!("{}{line}", config.display()))
                || (line.ends_with(".crt") && log.contains(line)),
            "{text:?}: {log}"
        );
        assert!(log.contains(key), "{text:?}: {log}");
    }
}
