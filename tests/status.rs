//! The plan at a glance against real services: a throwaway Redis and a Gunicorn with 2 workers,
//! watched by the exporter binary. The page `/` in Debian's headless Chromium (its DOM and
//! screenshots, also at a phone's 390-px width) and `stack_exporter status` (text on a pipe and
//! on a terminal, JSON, the exit code) must show what `/metrics` says.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::pki::Pki;
use common::servers::{start_gunicorn, RedisServer};
use common::{exporter_binary, must, require, temp_dir, wait_for, write, Exporter, Guard};

const CHROMIUM: &str = "apt-get install chromium";

/// Services of the vps-2gb profile this test does not run: watched (a matcher nothing fits) but
/// not planned, so their absence is no alert and only the test's own Gunicorn and Redis count.
const NOT_RUN: &[&str] = &["nginx", "celery_worker", "celery_beat", "mysql"];

/// The test's planned services in a temp dir: a Gunicorn with 2 workers, its command line
/// carrying a unique marker, and a Redis configured as the plan says (C1: `maxmemory 512mb` with
/// `allkeys-lru` eviction). Both are stopped when it is dropped, then the dir removed.
struct Planned {
    _gunicorn: Guard,
    redis: RedisServer,
    gunicorn: String,
    dir: tempfile::TempDir,
}

impl Planned {
    fn start(marker: &str) -> Planned {
        let dir = temp_dir();
        let redis =
            RedisServer::start_with(&["--maxmemory", "512mb", "--maxmemory-policy", "allkeys-lru"]);
        let gunicorn = common::unique_marker(marker);
        let (guard, _) = start_gunicorn(dir.path(), 2, &gunicorn);
        Planned {
            _gunicorn: guard,
            redis,
            gunicorn,
            dir,
        }
    }

    /// A config planning only these (see [`config`]), `extra` in the wsgi service's section.
    fn config(&self, extra: &str) -> PathBuf {
        config(self.dir.path(), &self.gunicorn, self.redis.port, extra)
    }

    /// The exporter watching them, once it sees all of them.
    fn watched(&self) -> Exporter {
        let exporter = start_exporter(&self.config(""), &[]);
        wait_for_services(&exporter);
        exporter
    }
}

/// A config planning only the test's Gunicorn (by its unique name) and Redis (by its port), with
/// the OS allowance out of reach of a shared machine's other processes, and `extra` appended.
fn config(dir: &Path, gunicorn: &str, redis_port: u16, extra: &str) -> PathBuf {
    let mut text = format!(
        "profile = \"vps-2gb\"\n[plan]\nsystem_memory = \"1TiB\"\n\
         [[redis]]\nname = \"default\"\nurl = \"redis://127.0.0.1:{redis_port}/0\"\n\
         [services.wsgi]\nmatch = [{{ cmdline = '{gunicorn}' }}]\n{extra}\
         [services.redis]\nmatch = [{{ comm = 'redis-server', cmdline = ':{redis_port}$' }}]\n"
    );
    for name in NOT_RUN {
        text.push_str(&format!(
            "[services.{name}]\ninstances = 0\nmatch = [{{ comm = 'no-such-process' }}]\n"
        ));
    }
    for name in ["asgi", "postgresql", "monitoring"] {
        text.push_str(&format!(
            "[services.{name}]\nmatch = [{{ comm = 'no-such-process' }}]\n"
        ));
    }
    let path = dir.join(format!("stack-{}.toml", extra.len()));
    write(&path, &text);
    path
}

/// The exporter watching them, PSS kept for an hour so every collection of the test reads the
/// same memory figures.
fn start_exporter(config: &Path, more: &[&str]) -> Exporter {
    let config = format!("--config.file={}", config.display());
    let mut args = vec![config.as_str(), "--collector.services.pss-max-age=1h"];
    args.extend_from_slice(more);
    Exporter::start(&args)
}

/// Waits until the exporter sees Gunicorn's master and 2 workers, and Redis answers.
fn wait_for_services(exporter: &Exporter) -> String {
    let mut text = String::new();
    wait_for(
        "gunicorn's 3 processes and redis",
        Duration::from_secs(30),
        || {
            text = exporter.scrape();
            common::metric(&text, "stack_service_processes", &[("service", "wsgi")]) == Some(3.0)
                && common::metric(&text, "stack_redis_up", &[("target", "default")]) == Some(1.0)
        },
    );
    text
}

/// The service's memory against its budget in whole percent, from `/metrics` as the budget
/// rule counts it: (PSS + swap) / budget.
fn budget_percent(metrics: &str, service: &str) -> f64 {
    let want = [("service", service)];
    let pss = must(metrics, "stack_service_proportional_memory_bytes", &want);
    let swap = common::metric(metrics, "stack_service_swap_bytes", &want).unwrap_or(0.0);
    let budget = must(metrics, "stack_service_memory_budget_bytes", &want);
    (pss + swap) / budget * 100.0
}

/// `12 %` at the start of `text` (after spaces), as a number.
fn leading_percent(text: &str) -> Option<f64> {
    let text = text.trim_start();
    let (number, rest) = text.split_once(' ')?;
    rest.starts_with('%').then(|| number.parse().ok())?
}

fn assert_percent(what: &str, shown: f64, metrics: f64) {
    assert!(
        (shown - metrics).abs() <= 1.0,
        "{what}: shows {shown} %, /metrics gives {metrics:.2} %"
    );
}

/// Runs headless Chromium with `args` on `url` (a profile of its own in `dir`, at most 90 s).
fn chromium(dir: &Path, args: &[&str], url: &str) -> Output {
    let chromium = require("chromium", CHROMIUM);
    let mut command = Command::new(require("timeout", "apt-get install coreutils"));
    command
        .arg("90")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .args([
            "--no-first-run",
            "--disable-extensions",
            "--disable-dev-shm-usage",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.join("chromium").display()
        ))
        .args(args)
        .arg(url)
        .stdin(Stdio::null());
    let output = command.output().expect("running chromium");
    assert!(
        output.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The cells of the table row `<tr id="ID" …>…</tr>` of `dom`, by class: `[(class, text)]`.
fn row_cells(dom: &str, id: &str) -> Vec<(String, String)> {
    let start = dom
        .find(&format!("<tr id=\"{id}\""))
        .unwrap_or_else(|| panic!("no row {id} in the page:\n{dom}"));
    let row = &dom[start..start + dom[start..].find("</tr>").unwrap()];
    row.split("<td")
        .skip(1)
        .map(|cell| {
            let class = cell
                .split_once("class=\"")
                .map_or("", |(_, rest)| rest.split('"').next().unwrap());
            let content = &cell[cell.find('>').unwrap() + 1..];
            let text = strip_tags(content.split("</td>").next().unwrap());
            (class.to_string(), text)
        })
        .collect()
}

fn strip_tags(html: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text
}

fn cell<'a>(cells: &'a [(String, String)], class: &str) -> &'a str {
    cells
        .iter()
        .find(|(c, _)| c == class)
        .map(|(_, text)| text.as_str())
        .unwrap_or_else(|| panic!("no cell {class} in {cells:?}"))
}

/// Where the screenshots are kept for a person to look at: the test's output directory.
fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_page_in_a_real_browser_shows_each_planned_service_against_metrics() {
    let planned = Planned::start("status-wsgi");
    let dir = &planned.dir;
    let exporter = planned.watched();
    let url = format!("http://127.0.0.1:{}/", exporter.port);

    let dom = chromium(dir.path(), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    let metrics = exporter.scrape();
    assert!(dom.contains("href=\"/metrics\""), "the Metrics link stays");
    assert!(dom.contains("<b>services</b> (on)"), "the collectors stay");
    assert!(!dom.contains("<script"), "no JavaScript");
    assert!(dom.contains("name=\"viewport\""), "readable on a phone");
    assert!(dom.contains("http-equiv=\"refresh\""), "refreshes itself");
    for service in ["wsgi", "redis"] {
        let cells = row_cells(&dom, &format!("service-{service}"));
        assert_eq!(cell(&cells, "up"), "yes", "{service}: {cells:?}");
        assert_eq!(cell(&cells, "instances"), "1/1", "{service}");
        let shown = leading_percent(cell(&cells, "budget"))
            .unwrap_or_else(|| panic!("{service}: no budget percentage in {cells:?}"));
        assert_percent(service, shown, budget_percent(&metrics, service));
    }
    let wsgi = row_cells(&dom, "service-wsgi");
    assert_eq!(cell(&wsgi, "processes"), "3/3", "master and 2 workers");
    assert!(cell(&wsgi, "wide").contains("of 600 MiB"), "{wsgi:?}");
    for name in NOT_RUN {
        assert!(
            !dom.contains(&format!("<tr id=\"service-{name}\" class=\"alert\"")),
            "{name} is not planned here: no alert"
        );
    }
    assert!(
        dom.contains("Redis default eviction"),
        "Redis against the plan"
    );

    for (width, height) in [(1280, 1000), (390, 844)] {
        let path = screenshot_dir().join(format!("status-{width}px.png"));
        let _ = std::fs::remove_file(&path);
        chromium(
            dir.path(),
            &[
                &format!("--window-size={width},{height}"),
                &format!("--screenshot={}", path.display()),
            ],
            &url,
        );
        let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(png.starts_with(b"\x89PNG"), "{} is a PNG", path.display());
        // A blank page of that size compresses to a few kB; the status draws text and bars.
        assert!(
            png.len() > 10_000,
            "{}: {} bytes",
            path.display(),
            png.len()
        );
    }
}

/// `stack_exporter status ARGS`, its stdout piped (ENV added).
fn status(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(exporter_binary());
    command.arg("status").args(args).env_remove("NO_COLOR");
    for var in ["STACK_MYSQL_URL", "STACK_POSTGRES_URL", "STACK_REDIS_URL"] {
        command.env_remove(var);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("running stack_exporter status")
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "--output json does not parse ({e}):\n{}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

fn service<'a>(json: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    json["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no service {name} in {json}"))
}

/// The line of service `name` in the text's SERVICES section.
fn service_line<'a>(text: &'a str, name: &str) -> &'a str {
    let services = &text[text.find("SERVICES").expect("a SERVICES section")..];
    services
        .lines()
        .find(|line| line.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
}

/// What crossed a threshold at the host's level (memory, CPU, swap, a disk): the shared test
/// machine's own state, which this test cannot set.
fn host_findings_only(json: &serde_json::Value) -> bool {
    json["findings"].as_array().unwrap().iter().all(|f| {
        let subject = f["subject"].as_str().unwrap();
        subject == "host" || subject.starts_with('/')
    })
}

#[test]
fn the_cli_matches_metrics_in_text_and_json_and_its_exit_code_follows_the_budget() {
    let planned = Planned::start("status-cli");
    let exporter = planned.watched();
    let address = format!("--web.listen-address=127.0.0.1:{}", exporter.port);

    // Piped, and with NO_COLOR: plain text, no escape code.
    let piped = status(&[&address], &[]);
    let metrics = exporter.scrape();
    let text = String::from_utf8_lossy(&piped.stdout).into_owned();
    for (what, output) in [
        ("piped", &piped),
        ("NO_COLOR", &status(&[&address], &[("NO_COLOR", "1")])),
    ] {
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(!text.contains('\x1b'), "{what}: escape codes in\n{text}");
        assert!(text.contains("profile vps-2gb"), "{what}:\n{text}");
    }
    for service in ["wsgi", "redis"] {
        let line = service_line(&text, service);
        let after_bar = &line[line.rfind(']').unwrap() + 1..];
        let shown = leading_percent(after_bar).unwrap_or_else(|| panic!("no percent in {line}"));
        assert_percent(service, shown, budget_percent(&metrics, service));
        assert!(line.contains(" yes "), "{line}");
    }
    assert!(service_line(&text, "wsgi").contains("3/3"), "{text}");
    assert!(text.contains("Redis default eviction"), "{text}");

    // On a terminal (script(1) gives it one): colour, unless NO_COLOR.
    let script = require("script", "apt-get install util-linux");
    let on_terminal = |no_color: bool| {
        let command = format!("{} status {address}", exporter_binary().display());
        let mut script = Command::new(&script);
        script.args(["-q", "-e", "-c", &command, "/dev/null"]);
        script.env_remove("NO_COLOR");
        if no_color {
            script.env("NO_COLOR", "1");
        }
        String::from_utf8_lossy(&script.output().unwrap().stdout).into_owned()
    };
    assert!(on_terminal(false).contains("\x1b["), "colour on a terminal");
    assert!(
        !on_terminal(true).contains("\x1b["),
        "NO_COLOR on a terminal"
    );

    // JSON: the same figures, and the exit code says whether anything is over an alert's
    // threshold.
    let output = status(&[&address, "--output=json"], &[]);
    let baseline = json(&output);
    let wsgi = service(&baseline, "wsgi");
    assert_eq!(wsgi["processes"], 3.0);
    assert_eq!(wsgi["expected_processes"], 3.0);
    assert_eq!(wsgi["level"], "ok", "{wsgi}");
    let ratio = wsgi["budget_ratio"].as_f64().unwrap() * 100.0;
    assert_percent(
        "json wsgi",
        ratio,
        budget_percent(&exporter.scrape(), "wsgi"),
    );
    let code = output.status.code();
    assert_eq!(code == Some(2), baseline["level"] == "alert", "{baseline}");
    if code != Some(0) {
        assert!(
            host_findings_only(&baseline),
            "only the shared machine's own state may alert here: {}",
            baseline["findings"]
        );
        eprintln!(
            "note: this machine's host figures are over a threshold ({}); the exit code is 2 \
             before the budget override too",
            baseline["findings"]
        );
    }

    // A budget override puts WSGI over its budget: the exit code says so.
    let tight = planned.config("memory_budget = \"1MiB\"\n");
    let over = start_exporter(&tight, &[]);
    wait_for_services(&over);
    let over_address = format!("--web.listen-address=127.0.0.1:{}", over.port);
    let output = status(&[&over_address, "--output=json"], &[]);
    let report = json(&output);
    assert_eq!(output.status.code(), Some(2), "{report}");
    assert_eq!(service(&report, "wsgi")["level"], "alert");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| { f["subject"] == "wsgi" && f["alert"] == "StackServiceMemoryOverBudget" }),
        "{report}"
    );
    let text = String::from_utf8_lossy(&status(&[&over_address], &[]).stdout).into_owned();
    assert!(
        text.contains("wsgi: A service uses more memory than the plan budgets for it."),
        "the alert's own words: {text}"
    );
}

#[test]
fn with_no_exporter_it_collects_itself() {
    let planned = Planned::start("status-local");
    let config = planned.config("");
    // Nothing listens on a port just freed.
    let port = common::free_port();
    let mut processes = None;
    wait_for(
        "its own collection to see gunicorn",
        Duration::from_secs(30),
        || {
            let output = status(
                &[
                    &format!("--web.listen-address=127.0.0.1:{port}"),
                    &format!("--config.file={}", config.display()),
                    "--output=json",
                    "--log.level=error",
                ],
                &[],
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("collecting here"), "{stderr}");
            let report = json(&output);
            processes = service(&report, "wsgi")["processes"].as_f64();
            processes == Some(3.0) && service(&report, "redis")["up"] == true
        },
    );
}

#[test]
fn over_tls_with_basic_auth() {
    let pki = Pki::new();
    pki.leaf("server", "ca", "serverAuth");
    let hash = bcrypt::hash("right password", 6).unwrap();
    let web = pki.web_config(&format!(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
         basic_auth_users:\n  prometheus: '{hash}'\n"
    ));
    let exporter = Exporter::start(&[&format!("--web.config.file={}", web.display())]);
    let dir = temp_dir();
    let password = dir.path().join("password");
    write(&password, "right password\n");
    let wrong = dir.path().join("wrong");
    write(&wrong, "wrong password\n");
    let ca = format!("--tls.ca-file={}", pki.path("ca.crt").display());
    let url = format!("--url=https://localhost:{}/metrics", exporter.port);
    // The user and TLS from the web config, the password from a file.
    let from_web_config = status(
        &[
            &format!("--web.listen-address=localhost:{}", exporter.port),
            &format!("--web.config.file={}", web.display()),
            &format!("--web.password-file={}", password.display()),
            &ca,
            "--output=json",
        ],
        &[],
    );
    let report = json(&from_web_config);
    assert!(report["host"].as_array().unwrap().len() >= 2, "{report}");
    let refused = status(
        &[
            &url,
            "--web.username=prometheus",
            &format!("--web.password-file={}", wrong.display()),
            &ca,
        ],
        &[],
    );
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(
        !stderr.contains("wrong password"),
        "no secret in errors: {stderr}"
    );
    let untrusted = status(&[&url], &[]);
    assert_eq!(untrusted.status.code(), Some(1), "an unknown CA is refused");
}
