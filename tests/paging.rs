//! Issue 17 finding 1, live: one page per outage. Real Prometheus (the shipped 15 s scrape and
//! evaluation intervals, the shipped rules/) and real Alertmanager (the shipped routes and
//! inhibitions, the receiver pointed at a webhook in this test) watch two real stack_exporters
//! (profile vps-2gb), one beside a real redis-server, one beside a real mariadbd. Stopping Redis,
//! then MariaDB, must bring exactly one firing and one resolved notification each
//! (StackServiceDown), and never StackRedisUnreachable or StackDatabaseUnreachable, which restate
//! the same outage.
//!
//! The rule groups are placed at their worst real offsets: Prometheus starts each group at a
//! fixed offset inside the interval, a hash of the group's name and file path (below:
//! `group_offset`). The test reads when Prometheus scrapes each exporter and picks the rules
//! directory's name so that stack-redis.alerts and stack-databases.alerts evaluate 1-3.5 s after
//! the scrape and stack-services.alerts more than 11 s after them: longer than the critical
//! route's 10 s group_wait, as measured in finding 1 (0.5 s and 13.5 s). The offsets are then
//! read back from Prometheus's rules API, so the test cannot lose its worst case unnoticed.
//!
//! Shortened, in a copy of rules/: every `for: 2m` becomes `for: 30s` (all the A5/K2 outage
//! alerts have 2m, so they stay equal to each other). The bug is the offset between the groups,
//! up to one evaluation interval, not the length of `for`, and every interval, offset and route
//! stays as shipped.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::servers::{
    password_file, prometheus_query, start_alertmanager, start_prometheus, MariadbServer,
    RedisServer, GOOD_PASSWORD,
};
use common::{
    http_get, require, temp_dir, wait_for, wait_for_port, webhook, write, Exporter, Guard, Received,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const INTERVAL_NS: u64 = 15_000_000_000;

// ---- Prometheus's rule-group offset: xxhash64 of the group's labels (name, file) ----------------

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn xxh_round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

/// XXH64 with seed 0, as github.com/cespare/xxhash's Sum64.
fn xxh64(input: &[u8]) -> u64 {
    let mut rest = input;
    let mut h = if input.len() >= 32 {
        let mut v = [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)];
        while rest.len() >= 32 {
            for (i, acc) in v.iter_mut().enumerate() {
                *acc = xxh_round(*acc, le64(&rest[i * 8..]));
            }
            rest = &rest[32..];
        }
        let mut h = v[0]
            .rotate_left(1)
            .wrapping_add(v[1].rotate_left(7))
            .wrapping_add(v[2].rotate_left(12))
            .wrapping_add(v[3].rotate_left(18));
        for x in v {
            h = (h ^ xxh_round(0, x)).wrapping_mul(P1).wrapping_add(P4);
        }
        h
    } else {
        P5
    };
    h = h.wrapping_add(input.len() as u64);
    while rest.len() >= 8 {
        h ^= xxh_round(0, le64(rest));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        h ^= u64::from(u32::from_le_bytes(rest[..4].try_into().unwrap())).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        rest = &rest[4..];
    }
    for &b in rest {
        h ^= u64::from(b).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// Seconds into each 15 s interval at which Prometheus 2.42 evaluates the group `name` of the
/// rule file `file` (rules.Group.EvalTimestamp: labels {file, name}.Hash() % interval).
fn group_offset(name: &str, file: &Path) -> f64 {
    let key = format!("file\u{ff}{}\u{ff}name\u{ff}{name}\u{ff}", file.display());
    // Go's labels.Hash writes the byte 0xff, not the UTF-8 of U+00FF.
    let bytes: Vec<u8> = key
        .chars()
        .flat_map(|c| match c {
            '\u{ff}' => vec![0xff],
            c => c.to_string().into_bytes(),
        })
        .collect();
    (xxh64(&bytes) % INTERVAL_NS) as f64 / 1e9
}

#[test]
fn xxh64_matches_the_reference_vectors() {
    assert_eq!(xxh64(b""), 0xEF46_DB37_51D8_E999);
    assert_eq!(xxh64(b"abc"), 0x44BC_2CF5_AD77_0999);
    assert_eq!(
        xxh64(b"Nobody inspects the spammish repetition"),
        0xFBCE_A83C_8A37_8BF1
    );
}

/// Notifications that carried `alertname` for `instance` and `service` with `status`, and when they came.
fn notices(
    received: &Received,
    alertname: &str,
    (instance, service): (&str, &str),
    status: &str,
) -> Vec<Instant> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, body)| {
            body["alerts"].as_array().into_iter().flatten().any(|a| {
                a["labels"]["alertname"] == alertname
                    && a["labels"]["instance"] == instance
                    && a["labels"]["service"] == service
                    && a["status"] == status
            })
        })
        .map(|(at, _)| *at)
        .collect()
}

// ---- the stack -------------------------------------------------------------------------------

/// Copies rules/ (or the directory in $PAGING_RULES, e.g. an older rules/ to see finding 1
/// again) into `into`, every `for: 2m` as `for: 30s`.
fn rules_copy(into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let source = std::env::var_os("PAGING_RULES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("rules"));
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let short = text.replace("for: 2m\n", "for: 30s\n");
            write(&into.join(path.file_name().unwrap()), &short);
        }
    }
}

/// The shipped scrape and evaluation intervals: both 15s.
fn shipped_intervals() -> (String, String) {
    let text =
        std::fs::read_to_string(Path::new(ROOT).join("prometheus/prometheus-native.yml")).unwrap();
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()))
            .unwrap()
    };
    (get("scrape_interval:"), get("evaluation_interval:"))
}

/// Seconds into the 15 s interval at which Prometheus scrapes `instance`.
fn scrape_offset(prom_port: u16, instance: &str) -> Option<f64> {
    let answer = prometheus_query(
        prom_port,
        &format!("timestamp(up{{instance=\"{instance}\"}})"),
    )?;
    let value = answer["data"]["result"][0]["value"][1].as_str()?;
    Some(value.parse::<f64>().ok()?.rem_euclid(15.0))
}

/// Seconds into the 15 s interval of an RFC 3339 time (86400 is a multiple of 15).
fn offset_of_rfc3339(time: &str) -> f64 {
    let clock = &time[time.find('T').unwrap() + 1..time.len() - 1];
    let mut parts = clock.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    (h * 3600.0 + m * 60.0 + s).rem_euclid(15.0)
}

/// Seconds from `scrape` to the first evaluation at `group` that can see it.
fn after_scrape(scrape: f64, group: f64) -> f64 {
    (group - scrape).rem_euclid(15.0)
}

/// Is `rules_dir` the worst case for `dependent` (a group of `file`): it evaluates 1-3.5 s after
/// the scrape, stack-services.alerts more than 11 s after it?
fn worst_case(rules_dir: &Path, scrape: f64, dependent: (&str, &str)) -> bool {
    let services = group_offset("stack-services.alerts", &rules_dir.join("services.yml"));
    let dependent = group_offset(dependent.0, &rules_dir.join(dependent.1));
    let (dep, svc) = (
        after_scrape(scrape, dependent),
        after_scrape(scrape, services),
    );
    (1.0..3.5).contains(&dep) && svc - dep > 11.0 && svc < 14.5
}

fn prometheus_config(dir: &Path, rules: &Path, am_port: u16, target: u16) {
    let (scrape, evaluation) = shipped_intervals();
    write(
        &dir.join("prometheus.yml"),
        &format!(
            "global: {{ scrape_interval: {scrape}, evaluation_interval: {evaluation} }}\n\
             rule_files: ['{}/*.yml']\n\
             alerting: {{ alertmanagers: [ {{ static_configs: [ {{ targets: ['127.0.0.1:{am_port}'] }} ] }} ] }}\n\
             scrape_configs:\n  - job_name: stack\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n",
            rules.display(),
        ),
    );
}

/// Each group's evaluation offset as Prometheus reports it (lastEvaluation), once all have run.
fn observed_group_offsets(prom_port: u16) -> Option<Vec<(String, f64)>> {
    let (_, _, body) = http_get(prom_port, "/api/v1/rules", &[]);
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["data"]["groups"]
        .as_array()?
        .iter()
        .map(|g| {
            let last = g["lastEvaluation"].as_str()?;
            (!last.starts_with("0001")).then(|| {
                (
                    g["name"].as_str().unwrap().to_string(),
                    offset_of_rfc3339(last),
                )
            })
        })
        .collect()
}

/// A Prometheus of its own for the exporter on `target`, sending to Alertmanager on `am_port`,
/// with the shipped rules in the directory that puts `dependent` (group, file) at its worst
/// offset from stack-services.alerts for this target's scrapes. Returns it and its port.
fn prometheus_at_worst_offsets(
    dir: &Path,
    target: u16,
    am_port: u16,
    dependent: (&str, &str),
) -> (Guard, u16) {
    let instance = format!("127.0.0.1:{target}");
    // First without rules, to learn when the exporter is scraped (a hash of the target, pinned
    // to absolute time: a reload with the same scrape config keeps it).
    let empty = dir.join("no-rules");
    std::fs::create_dir_all(&empty).unwrap(); // and `dir`
    prometheus_config(dir, &empty, am_port, target);
    let (prom, port) = start_prometheus(dir);
    let mut scrape = 0.0;
    wait_for("the exporter scraped", Duration::from_secs(40), || {
        scrape_offset(port, &instance).map(|s| scrape = s).is_some()
    });

    let rules = (0..100_000)
        .map(|i| dir.join(format!("rules-{i}")))
        .find(|d| worst_case(d, scrape, dependent))
        .expect("no rules directory name gives the worst offsets");
    rules_copy(&rules);
    prometheus_config(dir, &rules, am_port, target);
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    assert_eq!(unsafe { libc::kill(prom.pid() as i32, libc::SIGHUP) }, 0);

    // Every group has run: the offsets are those computed, and still the worst.
    let mut observed = Vec::new();
    wait_for(
        "every rule group evaluated",
        Duration::from_secs(40),
        || match observed_group_offsets(port) {
            Some(groups) if groups.len() > 10 => {
                observed = groups;
                true
            }
            _ => false,
        },
    );
    let at = |name: &str| observed.iter().find(|(n, _)| n == name).unwrap().1;
    let scrape = scrape_offset(port, &instance).unwrap();
    let (services, dependent_seen) = (at("stack-services.alerts"), at(dependent.0));
    for (name, file, seen) in [
        ("stack-services.alerts", "services.yml", services),
        (dependent.0, dependent.1, dependent_seen),
    ] {
        let computed = group_offset(name, &rules.join(file));
        let gap = (seen - computed).rem_euclid(15.0);
        assert!(
            gap.min(15.0 - gap) < 0.5,
            "{name}: evaluated at {seen:.2}, computed {computed:.2}"
        );
    }
    let gap = after_scrape(scrape, services) - after_scrape(scrape, dependent_seen);
    eprintln!(
        "{instance}: scraped at {scrape:.2}s into the interval, {} at {dependent_seen:.2}s, \
         stack-services.alerts at {services:.2}s: {gap:.1}s later",
        dependent.0
    );
    assert!(
        gap > 10.5,
        "{instance}: stack-services.alerts only {gap:.1}s after {}",
        dependent.0
    );
    (prom, port)
}

/// Config lines that leave only `service` of vps-2gb planned (its other services do not run
/// here, and their StackServiceDown would share the notifications' group).
fn only_planned(service: &str) -> String {
    [
        "nginx",
        "wsgi",
        "celery_worker",
        "celery_beat",
        "mysql",
        "redis",
    ]
    .iter()
    .filter(|s| **s != service)
    .map(|s| format!("[services.{s}]\ninstances = 0\n"))
    .collect()
}

#[test]
fn each_datastore_outage_pages_once_and_resolves_once_at_the_worst_group_offsets() {
    require("prometheus", "apt-get install prometheus");
    let dir = temp_dir();

    let mut redis = RedisServer::start();
    let mut mariadb = MariadbServer::start();
    mariadb.create_monitoring_users();
    let secret = password_file(dir.path(), GOOD_PASSWORD);
    let redis_config = dir.path().join("redis.toml");
    write(
        &redis_config,
        &format!(
            "profile = \"vps-2gb\"\n{}\
             [services.redis]\nmatch = [{{ comm = 'redis-server', cmdline = ':{}$' }}]\n\
             [[redis]]\nname = \"main\"\nurl = \"redis://127.0.0.1:{}/0\"\n",
            only_planned("redis"),
            redis.port,
            redis.port
        ),
    );
    let mysql_config = dir.path().join("mysql.toml");
    write(
        &mysql_config,
        &format!(
            "profile = \"vps-2gb\"\n{}\
             [services.mysql]\nmatch = [{{ comm = 'mariadbd', cmdline = '--port={} ' }}]\n\
             [[mysql]]\nname = \"main\"\nurl = \"mysql://monitor@127.0.0.1:{}/\"\npassword_file = {secret:?}\n",
            only_planned("mysql"),
            mariadb.port,
            mariadb.port
        ),
    );
    // The host's own alerts are not this test's: another test's real OOM kill or read-only mount
    // on the same machine would page here (StackHostOomKill fires at once).
    let start = |config: &Path| {
        Exporter::start(&[
            &format!("--config.file={}", config.display()),
            "--no-collector.host",
            "--no-collector.filesystem",
        ])
    };
    let redis_exporter = start(&redis_config);
    let mysql_exporter = start(&mysql_config);
    let redis_instance = format!("127.0.0.1:{}", redis_exporter.port);
    let mysql_instance = format!("127.0.0.1:{}", mysql_exporter.port);
    for (exporter, service) in [(&redis_exporter, "redis"), (&mysql_exporter, "mysql")] {
        let text = exporter.scrape();
        assert_eq!(
            common::must(&text, "stack_service_up", &[("service", service)]),
            1.0,
            "the exporter does not see {service} running"
        );
        let up = format!("stack_{service}_up");
        assert_eq!(common::must(&text, &up, &[("target", "main")]), 1.0);
    }

    let (hook_port, received) = webhook();
    let shipped =
        std::fs::read_to_string(Path::new(ROOT).join("alertmanager/alertmanager.yml")).unwrap();
    assert!(shipped.contains("url: http://127.0.0.1:5001/alerts"));
    let am_config = dir.path().join("alertmanager.yml");
    write(
        &am_config,
        &shipped.replace(
            "url: http://127.0.0.1:5001/alerts",
            &format!("url: http://127.0.0.1:{hook_port}/alerts"),
        ),
    );
    let (_am, am_port) = start_alertmanager(&am_config, &dir.path().join("am"));

    let (redis_dir, mysql_dir) = (dir.path().join("prom-redis"), dir.path().join("prom-mysql"));
    let _prom_redis = prometheus_at_worst_offsets(
        &redis_dir,
        redis_exporter.port,
        am_port,
        ("stack-redis.alerts", "redis.yml"),
    );
    let _prom_mysql = prometheus_at_worst_offsets(
        &mysql_dir,
        mysql_exporter.port,
        am_port,
        ("stack-databases.alerts", "databases.yml"),
    );
    wait_for_port(am_port, Duration::from_secs(20));

    // Stop Redis, then MariaDB.
    let redis_down = Instant::now();
    redis.stop();
    std::thread::sleep(Duration::from_secs(5));
    let mysql_down = Instant::now();
    mariadb.stop();
    let redis_outage = (redis_instance.as_str(), "redis");
    let mysql_outage = (mysql_instance.as_str(), "mysql");
    let early = received.lock().unwrap().clone();
    assert!(early.is_empty(), "notified before any fault: {early:?}");
    for (outage, since) in [(redis_outage, redis_down), (mysql_outage, mysql_down)] {
        wait_for(
            "StackServiceDown notified",
            Duration::from_secs(120),
            || !notices(&received, "StackServiceDown", outage, "firing").is_empty(),
        );
        let first = notices(&received, "StackServiceDown", outage, "firing")[0];
        eprintln!(
            "{outage:?}: fault to StackServiceDown notification {:.0?}",
            first - since
        );
    }
    // A dependent alert late by one interval would have been sent by now.
    std::thread::sleep(Duration::from_secs(45));

    let redis_up = Instant::now();
    redis.start_again();
    std::thread::sleep(Duration::from_secs(5));
    let mysql_up = Instant::now();
    mariadb.start_again();
    for (outage, since) in [(redis_outage, redis_up), (mysql_outage, mysql_up)] {
        wait_for(
            "StackServiceDown resolved",
            Duration::from_secs(150),
            || !notices(&received, "StackServiceDown", outage, "resolved").is_empty(),
        );
        let first = notices(&received, "StackServiceDown", outage, "resolved")[0];
        eprintln!(
            "{outage:?}: recovery to resolved notification {:.0?}",
            first - since
        );
    }
    // A dependent resolve would follow within one group_interval (1m).
    std::thread::sleep(Duration::from_secs(70));

    let all = received.lock().unwrap().clone();
    let report =
        serde_json::to_string_pretty(&all.iter().map(|(_, b)| b).collect::<Vec<_>>()).unwrap();
    for outage in [redis_outage, mysql_outage] {
        assert_eq!(
            notices(&received, "StackServiceDown", outage, "firing").len(),
            1,
            "{outage:?}: StackServiceDown not notified exactly once:\n{report}"
        );
        assert_eq!(
            notices(&received, "StackServiceDown", outage, "resolved").len(),
            1,
            "{outage:?}: StackServiceDown not resolved exactly once:\n{report}"
        );
        for dependent in ["StackRedisUnreachable", "StackDatabaseUnreachable"] {
            for status in ["firing", "resolved"] {
                assert!(
                    notices(&received, dependent, outage, status).is_empty(),
                    "{outage:?}: {dependent} {status} notified during the outage StackServiceDown \
                     covers:\n{report}"
                );
            }
        }
    }
}
