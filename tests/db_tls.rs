//! TLS to the database targets (issue 12, managed databases) against real throwaway servers that
//! demand it: PostgreSQL with `ssl = on` and `hostssl` only, MariaDB with
//! `require_secure_transport`, Redis on `--tls-port` only with client certificates required. A
//! CA made by the test signs a server certificate for `localhost` alone, so that verify-full
//! passes by that name and fails by 127.0.0.1; a target that says no TLS is `up 0` with the
//! server's reason in the log. `managed = true` shows in `stack_database_target_info`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::pki::Pki;
use common::servers::{password_file, MariadbServer, PostgresServer, GOOD_PASSWORD};
use common::{free_port, metric, must, require, temp_dir, wait_for, write, Exporter, Guard};

/// A CA `ca`, a server certificate `server` for `localhost` only, a client certificate
/// `client`, and a CA `other` that signed none of them.
fn pki() -> Pki {
    let pki = Pki::new();
    pki.leaf_for("server", "ca", "serverAuth", "DNS:localhost");
    pki.leaf("client", "ca", "clientAuth");
    pki.ca("other");
    pki
}

/// The exporter on a config of `targets` (`[[kind]]` tables) in `dir`.
fn exporter(dir: &Path, targets: &str) -> Exporter {
    let config = dir.join("stack.toml");
    write(&config, targets);
    Exporter::start(&[&format!("--config.file={}", config.display())])
}

/// `up` of each target of `kind`, and the log line that explains each `up 0`.
fn check_up(exporter: &Exporter, kind: &str, want: &[(&str, f64, &str)]) {
    let text = exporter.scrape();
    let log = exporter.log();
    eprintln!("exporter log:\n{log}");
    for (target, up, why) in want {
        let got = must(&text, &format!("stack_{kind}_up"), &[("target", target)]);
        assert_eq!(got, *up, "{kind} target {target}:\n{log}");
        if *up == 0.0 {
            let line = log
                .lines()
                .find(|l| l.contains("level=warn") && l.contains(&format!("\\\"{target}\\\"")))
                .unwrap_or_else(|| panic!("no warning for {target}:\n{log}"));
            assert!(line.contains(why), "{target}: {line}");
        }
    }
    assert!(
        !log.contains(GOOD_PASSWORD),
        "the log shows a password:\n{log}"
    );
    assert!(!text.contains(GOOD_PASSWORD), "/metrics shows a password");
}

fn target(kind: &str, name: &str, url: &str, secret: &Path) -> String {
    format!("[[{kind}]]\nname = \"{name}\"\nurl = \"{url}\"\npassword_file = {secret:?}\ntimeout = \"2s\"\n\n")
}

#[test]
fn postgres_sslmodes_against_a_server_that_demands_tls() {
    let pki = pki();
    let server = PostgresServer::start_with_tls(&pki.path("server.crt"), &pki.path("server.key"));
    server.create_monitoring_roles();
    let dir = temp_dir();
    let secret = password_file(dir.path(), GOOD_PASSWORD);
    let (ca, other) = (pki.path("ca.crt"), pki.path("other.crt"));
    let url = |host: &str, options: &str| {
        format!(
            "postgres://monitor@{host}:{}/postgres?{options}",
            server.port
        )
    };
    let targets = [
        (
            "full",
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
            ),
        ),
        (
            "wrongname",
            url(
                "127.0.0.1",
                &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
            ),
        ),
        (
            "otherca",
            url(
                "localhost",
                &format!("sslmode=verify-full&sslrootcert={}", other.display()),
            ),
        ),
        (
            "ca",
            url(
                "127.0.0.1",
                &format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
            ),
        ),
        ("require", url("127.0.0.1", "sslmode=require")),
        ("prefer", url("127.0.0.1", "")),
        ("plain", url("127.0.0.1", "sslmode=disable")),
    ];
    let mut config: String = targets
        .iter()
        .map(|(name, url)| target("postgres", name, url, &secret))
        .collect();
    config = config.replacen(
        "timeout = \"2s\"\n",
        "timeout = \"2s\"\nmanaged = true\n",
        1,
    );
    let exporter = exporter(dir.path(), &config);
    check_up(
        &exporter,
        "postgres",
        &[
            ("full", 1.0, ""),
            ("wrongname", 0.0, "not valid for name"),
            ("otherca", 0.0, "UnknownIssuer"),
            ("ca", 1.0, ""),
            ("require", 1.0, ""),
            ("prefer", 1.0, ""),
            ("plain", 0.0, "no encryption"),
        ],
    );
    // Every session of the exporter is encrypted (the server allows no other over TCP).
    let encrypted = server.psql(
        "postgres",
        "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
         WHERE application_name = 'stack_exporter' AND ssl",
    );
    assert_eq!(encrypted, "4", "sessions over TLS");
    let text = exporter.scrape();
    let info = |target: &str, managed: &str, tls: &str| {
        metric(
            &text,
            "stack_database_target_info",
            &[
                ("target", target),
                ("service", "postgresql"),
                ("managed", managed),
                ("tls", tls),
            ],
        )
    };
    assert_eq!(info("full", "true", "verify-full"), Some(1.0), "{text}");
    assert_eq!(info("plain", "false", "disable"), Some(1.0), "{text}");
    assert_eq!(info("prefer", "false", "prefer"), Some(1.0), "{text}");
}

#[test]
fn mysql_ssl_modes_against_a_server_with_require_secure_transport() {
    let pki = pki();
    let server = MariadbServer::start_with(&[
        &format!("--ssl-cert={}", pki.path("server.crt").display()),
        &format!("--ssl-key={}", pki.path("server.key").display()),
        &format!("--ssl-ca={}", pki.path("ca.crt").display()),
        "--require-secure-transport=ON",
    ]);
    server.create_monitoring_users();
    let dir = temp_dir();
    let secret = password_file(dir.path(), GOOD_PASSWORD);
    let ca = pki.path("ca.crt");
    let url =
        |host: &str, options: &str| format!("mysql://monitor@{host}:{}/?{options}", server.port);
    let targets = [
        (
            "full",
            url(
                "localhost",
                &format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca.display()),
            ),
        ),
        (
            "wrongname",
            url(
                "127.0.0.1",
                &format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca.display()),
            ),
        ),
        ("required", url("127.0.0.1", "ssl-mode=REQUIRED")),
        ("preferred", url("127.0.0.1", "ssl-mode=PREFERRED")),
        ("plain", url("127.0.0.1", "")),
    ];
    let config: String = targets
        .iter()
        .map(|(name, url)| target("mysql", name, url, &secret))
        .collect();
    let exporter = exporter(dir.path(), &config);
    check_up(
        &exporter,
        "mysql",
        &[
            ("full", 1.0, ""),
            ("wrongname", 0.0, "not valid for name"),
            ("required", 1.0, ""),
            ("preferred", 1.0, ""),
            ("plain", 0.0, "require_secure_transport"),
        ],
    );
}

/// PREFERRED where the server offers no TLS (a MariaDB without certificates): plain text, up.
#[test]
fn mysql_preferred_falls_back_to_plain_text_where_the_server_has_none() {
    let server = MariadbServer::start();
    server.create_monitoring_users();
    let dir = temp_dir();
    let secret = password_file(dir.path(), GOOD_PASSWORD);
    let url = format!(
        "mysql://monitor@127.0.0.1:{}/?ssl-mode=PREFERRED",
        server.port
    );
    let required = format!(
        "mysql://monitor@127.0.0.1:{}/?ssl-mode=REQUIRED",
        server.port
    );
    let config = target("mysql", "preferred", &url, &secret)
        + &target("mysql", "required", &required, &secret);
    let exporter = exporter(dir.path(), &config);
    check_up(
        &exporter,
        "mysql",
        &[("preferred", 1.0, ""), ("required", 0.0, "SSL")],
    );
}

/// A redis-server that speaks TLS only (`--port 0`), demands a client certificate, and has
/// CONFIG disabled as ElastiCache has.
fn redis_tls_only(pki: &Pki) -> (Guard, u16) {
    let binary = require("redis-server", "apt-get install redis-server");
    let port = free_port();
    let dir = temp_dir();
    let guard = Guard::spawn(
        Command::new(binary)
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--tls-cert-file")
            .arg(pki.path("server.crt"))
            .arg("--tls-key-file")
            .arg(pki.path("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(pki.path("ca.crt"))
            .args(["--tls-auth-clients", "yes", "--maxmemory", "64mb"])
            .args(["--rename-command", "CONFIG", ""])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for(
        "redis to answer PING over TLS",
        Duration::from_secs(10),
        || {
            Command::new("redis-cli")
                .args(["--tls", "-h", "localhost", "-p", &port.to_string()])
                .arg("--cacert")
                .arg(pki.path("ca.crt"))
                .arg("--cert")
                .arg(pki.path("client.crt"))
                .arg("--key")
                .arg(pki.path("client.key"))
                .arg("PING")
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
        },
    );
    (guard, port)
}

#[test]
fn rediss_with_a_ca_and_a_client_certificate_on_a_server_without_config() {
    let pki = pki();
    let (_redis, port) = redis_tls_only(&pki);
    let dir = temp_dir();
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let client = format!(
        "ssl_ca_certs={}&ssl_certfile={}&ssl_keyfile={}",
        ca.display(),
        cert.display(),
        key.display()
    );
    let targets = [
        (
            "full",
            format!("rediss://localhost:{port}/0?{client}"),
            true,
        ),
        (
            "wrongname",
            format!("rediss://127.0.0.1:{port}/0?{client}"),
            false,
        ),
        (
            "nocert",
            format!("rediss://localhost:{port}/0?ssl_ca_certs={}", ca.display()),
            false,
        ),
        ("plain", format!("redis://localhost:{port}/0"), false),
    ];
    let config: String = targets
        .iter()
        .map(|(name, url, managed)| {
            format!("[[redis]]\nname = \"{name}\"\nurl = \"{url}\"\ntimeout = \"2s\"\nmanaged = {managed}\n\n")
        })
        .collect();
    let exporter = exporter(dir.path(), &config);
    check_up(
        &exporter,
        "redis",
        &[
            ("full", 1.0, ""),
            ("wrongname", 0.0, "not valid for name"),
            ("nocert", 0.0, "client certificate"),
            ("plain", 0.0, "use rediss://"),
        ],
    );
    // CONFIG is refused (ElastiCache): maxmemory and the policy come from INFO.
    let text = exporter.scrape();
    assert_eq!(
        must(&text, "stack_redis_maxmemory_bytes", &[("target", "full")]),
        (64 << 20) as f64
    );
    must(
        &text,
        "stack_redis_maxmemory_policy_info",
        &[("target", "full"), ("policy", "noeviction")],
    );
    assert_eq!(
        metric(
            &text,
            "stack_database_target_info",
            &[
                ("target", "full"),
                ("service", "redis"),
                ("managed", "true"),
                ("tls", "verify-full")
            ]
        ),
        Some(1.0),
        "{text}"
    );
}
