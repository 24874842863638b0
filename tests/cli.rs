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
fn a_zero_scrape_timeout_is_refused() {
    let out = run(&["--web.max-scrape-timeout=0s"]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--web.max-scrape-timeout"), "{stderr}");
    assert!(stderr.contains("above 0s"), "{stderr}");
}

/// The systemd unit passes every flag through ARGS: a flag given twice must say so, not pick one.
#[test]
fn a_flag_given_twice_is_a_clear_error() {
    let out = run(&[
        "--web.listen-address=127.0.0.1:0",
        "--web.listen-address=127.0.0.1:0",
    ]);
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--web.listen-address"), "{stderr}");
    assert!(stderr.contains("cannot be used multiple times"), "{stderr}");
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

/// Whether the process has ended (exited, or a zombie waiting for the test to reap it).
fn has_ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn sigterm_ends_the_process_while_a_collector_is_stuck_in_the_kernel() {
    // A procfs whose meminfo is a FIFO nobody writes: the host collector's blocking thread hangs
    // in open(2), which no timeout can interrupt.
    let dir = temp_dir();
    let procfs = dir.path().join("proc");
    std::fs::create_dir(&procfs).unwrap();
    std::os::unix::fs::symlink("/proc/stat", procfs.join("stat")).unwrap();
    let fifo = std::ffi::CString::new(procfs.join("meminfo").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let exporter = common::Exporter::start(&[
        &format!("--path.procfs={}", procfs.display()),
        "--no-collector.services",
        "--no-collector.sockets",
        "--web.max-scrape-timeout=1s",
    ]);
    let body = exporter.scrape();
    assert_eq!(
        common::must(
            &body,
            "stack_scrape_collector_success",
            &[("collector", "host")]
        ),
        0.0,
        "the FIFO no longer blocks the host collector: this test needs another way to get a \
         blocking thread stuck"
    );
    // One more scrape in flight when the signal arrives.
    let port = exporter.port;
    std::thread::spawn(move || common::http_get(port, "/metrics", &[]));
    std::thread::sleep(std::time::Duration::from_millis(200));

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(exporter.pid() as libc::pid_t, libc::SIGTERM) };
    let signalled = std::time::Instant::now();
    common::wait_for(
        "the exporter to exit after SIGTERM",
        std::time::Duration::from_secs(5),
        || has_ended(exporter.pid()),
    );
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    assert!(
        exporter.log().contains("shutting down"),
        "{}",
        exporter.log()
    );
}

#[test]
fn the_port_is_bound_before_any_collector_is_built() {
    // An access log that is a FIFO: a collector that opened it at construction would block
    // start-up before the port was bound (and say nothing).
    let dir = temp_dir();
    let fifo_path = dir.path().join("access.log");
    let fifo = std::ffi::CString::new(fifo_path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let exporter = common::Exporter::start_with_env(
        &[],
        &[("STACK_NGINX_ACCESS_LOG", fifo_path.to_str().unwrap())],
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let log = exporter.log();
    let listening = log.find("listening on").expect("logged by Exporter::start");
    for later in ["nginx collector", "collectors: "] {
        if let Some(at) = log.find(later) {
            assert!(
                listening < at,
                "{later:?} logged before the port was bound:\n{log}"
            );
        }
    }
}

#[test]
fn every_registered_collector_has_its_flags_in_help() {
    let help = String::from_utf8_lossy(&run(&["--help"]).stdout).into_owned();
    for spec in stack_exporter::collector::COLLECTORS {
        assert!(
            help.contains(&format!("--collector.{}\n", spec.name))
                && help.contains(&format!("--no-collector.{} turns it off", spec.name)),
            "{} missing from --help:\n{help}",
            spec.name
        );
    }
    // Both spellings are accepted; the later wins.
    let out = run(&[
        "--no-collector.host",
        "--collector.host",
        "--no-collector.filesystem",
        "--config.check",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The README's collector table is `collector::markdown_table()`, between two markers;
/// `STACK_UPDATE_README=1 cargo test --test cli readme` rewrites it.
#[test]
fn the_readme_lists_every_registered_collector() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- collectors:begin -->\n", "<!-- collectors:end -->");
    let start = readme
        .find(begin)
        .expect("README has the collectors:begin marker")
        + begin.len();
    let stop = readme
        .find(end)
        .expect("README has the collectors:end marker");
    let table = stack_exporter::collector::markdown_table();
    if std::env::var_os("STACK_UPDATE_README").is_some() {
        let updated = format!("{}{table}{}", &readme[..start], &readme[stop..]);
        std::fs::write(path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[start..stop],
        table,
        "README's collector list differs from collector::COLLECTORS; \
         STACK_UPDATE_README=1 cargo test --test cli readme rewrites it"
    );
    for spec in stack_exporter::collector::COLLECTORS {
        assert!(readme[start..stop].contains(&format!("| `{}` |", spec.name)));
    }
}

#[test]
fn the_landing_page_lists_every_registered_collector_on_or_off() {
    let exporter = common::Exporter::start(&["--no-collector.sockets"]);
    let (status, _, page) = exporter.get("/", &[]);
    assert_eq!(status, 200);
    for spec in stack_exporter::collector::COLLECTORS {
        assert!(page.contains(&format!("<b>{}</b>", spec.name)), "{page}");
    }
    assert!(page.contains("<b>host</b> (on)"), "{page}");
    assert!(page.contains("<b>sockets</b> (off)"), "{page}");
}

/// The binary loads no libm.so: its two float functions come from the `libm` crate (main.rs).
/// glibc's libm, mapped for them, was 0.6 MB of the exporter's RSS after a few scrapes.
#[test]
fn the_binary_loads_no_libm() {
    let readelf = common::require("readelf", "apt-get install binutils");
    let output = Command::new(readelf)
        .arg("--dynamic")
        .arg(exporter_binary())
        .output()
        .unwrap();
    let needed = String::from_utf8_lossy(&output.stdout);
    assert!(needed.contains("libc.so"), "{needed}");
    assert!(!needed.contains("libm.so"), "{needed}");
}
