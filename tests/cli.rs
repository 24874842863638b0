//! The binary as a user runs it: bad configs are refused with file, line and key; a busy port is a
//! clear error; every built-in profile checks.

mod common;

use std::process::{Command, Output};

use common::{exporter_binary, temp_dir, write};

fn run(args: &[&str]) -> Output {
    Command::new(exporter_binary())
        .args(args)
        .output()
        .expect("running stack_exporter")
}

/// Runs `--config.check` on `text` and returns (exit code, stderr).
fn check_config(text: &str) -> (i32, String, String) {
    let dir = temp_dir();
    let path = dir.path().join("stack.toml");
    write(&path, text);
    let out = run(&[
        "--config.check",
        &format!("--config.file={}", path.display()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.code().unwrap_or(-1),
        stderr,
        path.display().to_string(),
    )
}

#[test]
fn unknown_key_is_refused_with_file_line_and_key() {
    let (code, stderr, path) =
        check_config("profile = \"vps-2gb\"\n[services.redis]\nmemroy_budget = \"1GiB\"\n");
    assert_ne!(code, 0);
    assert!(stderr.contains(&format!("{path}:3:")), "{stderr}");
    assert!(stderr.contains("services.redis.memroy_budget"), "{stderr}");
    assert!(stderr.contains("unknown field"), "{stderr}");
}

#[test]
fn bad_regex_is_refused_with_file_line_and_key() {
    let (code, stderr, path) = check_config(
        "[services.wsgi]\nmatch = [\n  { comm = \"uwsgi\" },\n  { cmdline = 'gunicorn(' },\n]\n",
    );
    assert_ne!(code, 0);
    assert!(stderr.contains(&format!("{path}:4:")), "{stderr}");
    assert!(stderr.contains("services.wsgi.match"), "{stderr}");
    assert!(stderr.contains("bad regex"), "{stderr}");
}

#[test]
fn negative_budget_is_refused_with_file_line_and_key() {
    let (code, stderr, path) = check_config("[services.mysql]\nmemory_budget = -512\n");
    assert_ne!(code, 0);
    assert!(stderr.contains(&format!("{path}:2:")), "{stderr}");
    assert!(stderr.contains("services.mysql.memory_budget"), "{stderr}");
    assert!(stderr.contains("negative"), "{stderr}");
}

#[test]
fn unknown_profile_is_refused_and_the_known_ones_listed() {
    let (code, stderr, path) = check_config("profile = \"vps-4gb\"\n");
    assert_ne!(code, 0);
    assert!(stderr.contains(&format!("{path}:1:")), "{stderr}");
    assert!(stderr.contains("key `profile`"), "{stderr}");
    assert!(stderr.contains("staging"), "{stderr}");
}

#[test]
fn missing_config_file_is_named() {
    let out = run(&["--config.file=/nonexistent/stack.toml"]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/stack.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn every_built_in_profile_checks() {
    for profile in [
        "vps-2gb",
        "dev",
        "staging",
        "production",
        "production-app",
        "production-db",
        "production-cache",
    ] {
        let (code, stderr, _) = check_config(&format!("profile = \"{profile}\"\n"));
        assert_eq!(code, 0, "{profile}: {stderr}");
    }
    let out = run(&["--config.check"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("profile: vps-2gb"));
}

#[test]
fn a_busy_port_is_a_clear_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = run(&[&format!("--web.listen-address=127.0.0.1:{port}")]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("already in use"), "{stderr}");
    assert!(stderr.contains(&port.to_string()), "{stderr}");
}

#[test]
fn bad_flag_value_is_refused() {
    let out = run(&["--log.format=xml"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("logfmt"));
}

#[test]
fn the_sample_config_checks() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/stack.toml");
    let out = run(&["--config.check", &format!("--config.file={sample}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("flower") && stdout.contains("planned"),
        "{stdout}"
    );
}
