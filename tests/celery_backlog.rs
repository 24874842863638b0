//! Issue 17 finding 2, live: a hung solo Celery worker with tasks still arriving. A real
//! redis-server as the broker, a real Celery worker (`--pool=solo`) on it, a stack_exporter
//! watching the worker and the `celery` queue, and a real Prometheus with the shipped
//! rules/redis.yml. StackCeleryWorkerNotConsuming and StackCeleryBacklogHigh stay quiet while the
//! worker consumes; once it is SIGSTOPped and the backlog passes 150 both fire; once it continues
//! and drains the queue both resolve.
//!
//! Time is scaled, not the rules' logic: the shipped windows (a 10m delta, a 5m CPU rate, `for:`
//! 5m and 10m) would make this a 20-minute test. Every duration of a copy of rules/redis.yml (each
//! `for:`, range, subquery step and offset) is divided by [`TIME_SCALE`]; every expression,
//! threshold and label stays as shipped. Prometheus scrapes and evaluates every 1 s instead of
//! 15 s, so the shortest window (the 5m rate, now 10 s) still holds 10 samples of the worker's
//! CPU counter, as the shipped 5m holds 20 at 15 s, and the delta's 10m (now 20 s) holds 20.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use regex::Regex;

use common::servers::{
    prometheus_query, start_celery, start_prometheus, write_celery_app, RedisServer,
};
use common::{http_get, must, temp_dir, unique_marker, wait_for, write, Exporter, Guard};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every duration of the rules is divided by this: 10m becomes 20 s, 5m 10 s, 2m 4 s. 30 keeps
/// the whole test near a minute while the shortest window (5m, 10 s) still holds 10 samples at
/// the 1 s scrape; the scrape interval itself shrinks only 15-fold, never below 1 s.
const TIME_SCALE: u64 = 30;

const NOT_CONSUMING: &str = "StackCeleryWorkerNotConsuming";
const BACKLOG_HIGH: &str = "StackCeleryBacklogHigh";

/// StackCeleryBacklogHigh's threshold in rules/redis.yml (checked against the file).
const BACKLOG_THRESHOLD: u32 = 150;
/// Tasks enqueued at once while the worker is stopped: over the threshold.
const BURST: u32 = 200;
/// Tasks per second arriving all along, as on a site in use.
const ARRIVALS_PER_SECOND: &str = "2";

// ---- the rules, time-scaled ---------------------------------------------------------------------

const DURATION: &str = r"(?:\d+(?:ms|[smhdwy]))+";

/// Milliseconds of a Prometheus duration (`10m`, `1h30m`, `500ms`).
fn duration_ms(text: &str) -> u64 {
    let part = Regex::new(r"(\d+)(ms|[smhdwy])").unwrap();
    part.captures_iter(text)
        .map(|c| {
            let unit: u64 = match &c[2] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 604_800_000,
                _ => 31_536_000_000,
            };
            c[1].parse::<u64>().unwrap() * unit
        })
        .sum()
}

/// A duration divided by TIME_SCALE, exactly: one that does not divide fails the test rather
/// than being rounded into another window.
fn scaled(duration: &str) -> String {
    let ms = duration_ms(duration);
    assert!(
        ms > 0 && ms % TIME_SCALE == 0,
        "{duration} does not divide by {TIME_SCALE}"
    );
    match ms / TIME_SCALE {
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

/// `expr` with every range (`[10m]`), subquery (`[1h:5m]`) and offset scaled; nothing else.
fn scaled_expr(expr: &str) -> String {
    let range = Regex::new(&format!(r"\[({DURATION})(:({DURATION})?)?\]")).unwrap();
    let offset = Regex::new(&format!(r"\boffset(\s+)({DURATION})")).unwrap();
    let expr = range.replace_all(expr, |c: &regex::Captures| {
        let step = match (c.get(2), c.get(3)) {
            (Some(_), Some(step)) => format!(":{}", scaled(step.as_str())),
            (Some(_), None) => ":".to_string(),
            _ => String::new(),
        };
        format!("[{}{step}]", scaled(&c[1]))
    });
    offset
        .replace_all(&expr, |c: &regex::Captures| {
            format!("offset{}{}", &c[1], scaled(&c[2]))
        })
        .into_owned()
}

/// A rule file with every group interval, `for`, `keep_firing_for` and expression duration
/// scaled.
fn scaled_rules(text: &str) -> String {
    use serde_norway::Value;
    let mut file: Value = serde_norway::from_str(text).unwrap();
    let groups = file
        .get_mut("groups")
        .and_then(Value::as_sequence_mut)
        .unwrap();
    for group in groups {
        if let Some(Value::String(interval)) = group.get_mut("interval") {
            *interval = scaled(interval);
        }
        let rules = group
            .get_mut("rules")
            .and_then(Value::as_sequence_mut)
            .unwrap();
        for rule in rules {
            for key in ["for", "keep_firing_for"] {
                if let Some(Value::String(duration)) = rule.get_mut(key) {
                    *duration = scaled(duration);
                }
            }
            if let Some(Value::String(expr)) = rule.get_mut("expr") {
                *expr = scaled_expr(expr);
            }
        }
    }
    serde_norway::to_string(&file).unwrap()
}

/// The expression of alert `name` in a rule file.
fn alert_expr(text: &str, name: &str) -> String {
    let file: serde_norway::Value = serde_norway::from_str(text).unwrap();
    file["groups"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_sequence().into_iter().flatten())
        .find(|r| r["alert"].as_str() == Some(name))
        .and_then(|r| r["expr"].as_str())
        .unwrap_or_else(|| panic!("no alert {name}"))
        .to_string()
}

/// Recorded series (`level:metric:operation`) an expression reads, ranges left out.
fn recorded_series(expr: &str) -> Vec<String> {
    let ranges = Regex::new(r"\[[^\]]*\]").unwrap();
    let recorded = Regex::new(r"\b[a-zA-Z_]\w*:[\w:]+").unwrap();
    let expr = ranges.replace_all(expr, "");
    recorded
        .find_iter(&expr)
        .map(|m| m.as_str().to_string())
        .collect()
}

#[test]
fn durations_scale_and_nothing_else_changes() {
    assert_eq!(scaled("10m"), "20s");
    assert_eq!(scaled("1h30m"), "180s");
    assert_eq!(scaled("3s"), "100ms");
    assert_eq!(
        scaled_expr(
            "sum by (instance) (delta(q[10m])) > 0 and rate(c{a=\"5m\"}[5m]) < 0.01 \
             and max_over_time(x[1h:5m] offset 1d) > 150"
        ),
        "sum by (instance) (delta(q[20s])) > 0 and rate(c{a=\"5m\"}[10s]) < 0.01 \
         and max_over_time(x[120s:10s] offset 2880s) > 150"
    );
    assert_eq!(
        recorded_series("a:b:c > 0 and d[1h:5m] and service:x:max1d"),
        ["a:b:c", "service:x:max1d"]
    );
}

/// Writes rules/redis.yml scaled into `dir`, and checks that the two alerts under test read
/// only what the exporter publishes (no other rule file is loaded) and keep their threshold.
fn write_scaled_rules(dir: &Path) {
    let shipped = std::fs::read_to_string(Path::new(ROOT).join("rules/redis.yml")).unwrap();
    let scaled = scaled_rules(&shipped);
    for alert in [NOT_CONSUMING, BACKLOG_HIGH] {
        let expr = alert_expr(&shipped, alert);
        let recorded = recorded_series(&expr);
        assert!(
            recorded.is_empty(),
            "{alert} reads {recorded:?}: load the rule file that records it"
        );
        eprintln!(
            "{alert}, durations / {TIME_SCALE}:\n{}",
            alert_expr(&scaled, alert)
        );
    }
    assert!(
        alert_expr(&shipped, BACKLOG_HIGH).contains(&format!("> {BACKLOG_THRESHOLD}")),
        "StackCeleryBacklogHigh's threshold is no longer {BACKLOG_THRESHOLD}: update this test"
    );
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    write(&dir.join("rules/redis.yml"), &scaled);
}

// ---- the stack ------------------------------------------------------------------------------------

/// Sends `count` tasks (0: without end), `per_second` of them a second (0: at once).
const ENQUEUE: &str = "import sys, time\nfrom tasks import count\n\
    total, per_second = int(sys.argv[1]), float(sys.argv[2])\nsent = 0\n\
    while total == 0 or sent < total:\n    count.delay()\n    sent += 1\n    \
    if per_second:\n        time.sleep(1 / per_second)\n";

fn enqueue(dir: &Path, count: u32) {
    let status = Command::new("python3")
        .arg("enqueue.py")
        .args([&count.to_string(), "0"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "enqueue.py {count} failed");
}

fn arrivals(dir: &Path) -> Guard {
    Guard::spawn(
        Command::new("python3")
            .args(["enqueue.py", "0", ARRIVALS_PER_SECOND])
            .current_dir(dir),
    )
}

fn signal_group(guard: &Guard, signal: i32) {
    // SAFETY: kill(2) on the process group of our own child.
    assert_eq!(unsafe { libc::kill(-(guard.pid() as i32), signal) }, 0);
}

/// The process state letter of `pid` (`T` when stopped).
fn state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    after_name.chars().next().unwrap()
}

/// Each active Celery alert of the rules and its state (`pending`, `firing`), from Prometheus's
/// /api/v1/alerts; the whole answer too, for the failure messages.
fn celery_alerts(prom_port: u16) -> (BTreeMap<String, String>, String) {
    let (status, _, body) = http_get(prom_port, "/api/v1/alerts", &[]);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let states = json["data"]["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let name = a["labels"]["alertname"].as_str()?;
            let state = a["state"].as_str()?;
            [NOT_CONSUMING, BACKLOG_HIGH]
                .contains(&name)
                .then(|| (name.to_string(), state.to_string()))
        })
        .collect();
    (states, body)
}

/// A number Prometheus answers for `promql`, once it has one.
fn prometheus_value(prom_port: u16, promql: &str) -> Option<f64> {
    let answer = prometheus_query(prom_port, promql)?;
    answer["data"]["result"][0]["value"][1]
        .as_str()?
        .parse()
        .ok()
}

fn redis_number(redis: &RedisServer, args: &[&str]) -> u64 {
    redis.cli(args).trim().parse().unwrap_or(0)
}

/// Both rules loaded and evaluated without error.
fn rules_healthy(prom_port: u16) -> bool {
    let (_, _, body) = http_get(prom_port, "/api/v1/rules", &[]);
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
        return false;
    };
    let rules: Vec<&serde_json::Value> = json["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    [NOT_CONSUMING, BACKLOG_HIGH].iter().all(|name| {
        rules.iter().any(|r| {
            r["name"] == *name
                && r["health"] == "ok"
                && !r["lastEvaluation"]
                    .as_str()
                    .unwrap_or("0001")
                    .starts_with("0001")
        })
    })
}

/// Polls the Celery alerts every 500 ms until `done` holds of them, up to `timeout` after
/// `since`; returns whether it did and, per alert and state, how long after `since` it was
/// first seen.
fn watch_alerts(
    prom_port: u16,
    since: Instant,
    timeout: Duration,
    mut done: impl FnMut(&BTreeMap<String, String>) -> bool,
) -> (BTreeMap<(String, String), Duration>, bool) {
    let mut first_seen = BTreeMap::new();
    while since.elapsed() < timeout {
        let (states, _) = celery_alerts(prom_port);
        for (name, state) in &states {
            first_seen
                .entry((name.clone(), state.clone()))
                .or_insert(since.elapsed());
        }
        if done(&states) {
            return (first_seen, true);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    (first_seen, false)
}

#[test]
fn a_stopped_solo_worker_with_a_backlog_raises_both_celery_alerts_and_they_resolve() {
    let started = Instant::now();
    let dir = temp_dir();
    let redis = RedisServer::start();
    write_celery_app(dir.path(), redis.port);
    write(&dir.path().join("enqueue.py"), ENQUEUE);
    let marker = unique_marker("celery-backlog");
    let worker = start_celery(
        dir.path(),
        &[
            "worker",
            "--pool=solo",
            "--loglevel=warning",
            "-n",
            &format!("{marker}@%h"),
        ],
    );

    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "[services.celery_worker]\nmatch = [{{ cmdline = '{marker}' }}]\n\
             [[redis]]\nname = \"broker\"\nurl = \"redis://127.0.0.1:{}/0\"\n",
            redis.port
        ),
    );
    let exporter = Exporter::start(&[
        &format!("--config.file={}", config.display()),
        "--no-collector.host",
        "--no-collector.sockets",
        "--no-collector.filesystem",
    ]);
    // Ready once it has done a task (before that, its command line may still be a launcher's).
    enqueue(dir.path(), 1);
    wait_for("the worker's first task", Duration::from_secs(30), || {
        redis_number(&redis, &["GET", "tasks_done"]) == 1
    });
    let worker_up = [("service", "celery_worker")];
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_service_up", &worker_up), 1.0);
    assert_eq!(
        must(&text, "stack_service_processes", &worker_up),
        1.0,
        "a solo worker is one process"
    );

    let prom_dir = dir.path().join("prometheus");
    write_scaled_rules(&prom_dir);
    write(
        &prom_dir.join("prometheus.yml"),
        &format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: ['rules/redis.yml']\n\
             scrape_configs:\n  - job_name: stack\n    static_configs:\n      \
             - targets: ['127.0.0.1:{}']\n",
            exporter.port
        ),
    );
    let (_prometheus, prom_port) = start_prometheus(&prom_dir);
    wait_for("both rules evaluated", Duration::from_secs(30), || {
        rules_healthy(prom_port)
    });
    wait_for(
        "the queue and the worker scraped",
        Duration::from_secs(30),
        || {
            prometheus_value(prom_port, "sum(stack_redis_queue_length)").is_some()
                && prometheus_value(prom_port, "stack_service_up{service=\"celery_worker\"}")
                    == Some(1.0)
        },
    );

    // (1) The worker consumes the tasks that arrive: neither alert fires over the longest
    // scaled window and `for` together (20 s + 10 s).
    let _arrivals = arrivals(dir.path());
    let (seen, _) = watch_alerts(
        prom_port,
        Instant::now(),
        Duration::from_secs(30),
        |states| states.values().any(|s| s == "firing"),
    );
    let (states, body) = celery_alerts(prom_port);
    assert!(
        !states.values().any(|s| s == "firing"),
        "a Celery alert fires while the worker consumes:\n{body}"
    );
    let done = redis_number(&redis, &["GET", "tasks_done"]);
    let waiting = redis_number(&redis, &["LLEN", "celery"]);
    // For the report: how far a consuming worker's CPU is from the rule's 1 % of a core.
    let cpu = prometheus_value(
        prom_port,
        "rate(stack_service_cpu_seconds_total{service=\"celery_worker\"}[10s])",
    );
    eprintln!(
        "(1) worker running: {done} tasks done, {waiting} waiting, CPU {cpu:?} cores, \
         alerts seen {seen:?}"
    );
    assert!(done >= 30, "the worker consumed only {done} tasks");
    assert!(waiting <= 5, "{waiting} tasks wait with the worker running");

    // (2) The worker hangs and a burst arrives on top of the steady arrivals.
    let stopped = Instant::now();
    signal_group(&worker, libc::SIGSTOP);
    wait_for("the worker stopped", Duration::from_secs(5), || {
        state(worker.pid()) == 'T'
    });
    enqueue(dir.path(), BURST);
    let waiting = redis_number(&redis, &["LLEN", "celery"]);
    assert!(
        waiting > u64::from(BACKLOG_THRESHOLD),
        "only {waiting} tasks wait after the burst"
    );
    // The rules need at most 20 s (BacklogHigh's `for: 10m`) or 10 s of CPU window and 10 s of
    // `for` (NotConsuming) after the burst; the rest of the minute is slack for a busy machine.
    let (seen, fired) = watch_alerts(prom_port, stopped, Duration::from_secs(60), |states| {
        [NOT_CONSUMING, BACKLOG_HIGH]
            .iter()
            .all(|name| states.get(*name).is_some_and(|s| s == "firing"))
    });
    let (_, body) = celery_alerts(prom_port);
    eprintln!("(2) after SIGSTOP, first seen: {seen:?}");
    assert!(
        fired,
        "not both firing 60 s after the worker stopped ({} tasks waiting):\n{body}",
        redis_number(&redis, &["LLEN", "celery"])
    );
    let instance = format!("127.0.0.1:{}", exporter.port);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    for alert in json["data"]["alerts"].as_array().unwrap() {
        if [NOT_CONSUMING, BACKLOG_HIGH].contains(&alert["labels"]["alertname"].as_str().unwrap()) {
            assert_eq!(alert["labels"]["instance"], instance.as_str(), "{alert}");
            assert_eq!(alert["labels"]["severity"], "warning", "{alert}");
        }
    }

    // (3) The worker continues: it drains the queue and both alerts resolve.
    let resumed = Instant::now();
    signal_group(&worker, libc::SIGCONT);
    wait_for("the queue drained", Duration::from_secs(30), || {
        redis_number(&redis, &["LLEN", "celery"]) <= 5
    });
    let drained = resumed.elapsed();
    let (seen, resolved) = watch_alerts(prom_port, resumed, Duration::from_secs(30), |states| {
        states.is_empty()
    });
    let (_, body) = celery_alerts(prom_port);
    eprintln!(
        "(3) worker continued: queue drained in {drained:.0?}, alerts gone {:.0?} after SIGCONT \
         (seen meanwhile {seen:?}); {} tasks done; whole test {:.0?}",
        resumed.elapsed(),
        redis_number(&redis, &["GET", "tasks_done"]),
        started.elapsed()
    );
    assert!(resolved, "the Celery alerts did not resolve:\n{body}");
    assert!(redis_number(&redis, &["GET", "tasks_done"]) >= u64::from(BURST) + 30);
}
