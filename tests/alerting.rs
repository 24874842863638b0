//! Live, end to end: real Prometheus loading rules/ scrapes two real stack_exporters (profiles
//! vps-2gb and production-cache), each watching its own real redis-server, and sends alerts to a
//! real Alertmanager running alertmanager/alertmanager.yml. Stopping one Redis must bring
//! StackServiceDown, with its plan_ref, into Alertmanager for that exporter's instance only;
//! starting it again must resolve it. A Redis whose BGSAVE really fails must bring
//! StackRedisBgsaveFailed; a BGSAVE that succeeds again must resolve it. Redis at its maxclients
//! must bring StackRedisConnectionsRefused, and three quick restarts StackServiceRestartLoop.
//!
//! The rules' `for:` durations are tested by `promtool test rules` (tests/rules/); here they are
//! shortened to 0s in a copy so that the wiring can be seen in seconds.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::servers::{
    fires, prometheus_query, rules_firing_at_once, start_alertmanager, start_prometheus_scraping,
    RedisServer,
};
use common::{http_get, require, temp_dir, wait_for, wait_for_port, write, Exporter};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A config that watches only the redis-server on `port`, under `profile`.
fn exporter_for(dir: &Path, name: &str, profile: &str, port: u16) -> Exporter {
    let config = dir.join(format!("{name}.toml"));
    write(
        &config,
        &format!("profile = \"{profile}\"\n[services.redis]\nmatch = [{{ comm = 'redis-server', cmdline = ':{port}$' }}]\n"),
    );
    Exporter::start(&[&format!("--config.file={}", config.display())])
}

/// The firing alerts Alertmanager holds, as JSON values.
fn alertmanager_alerts(port: u16) -> Vec<serde_json::Value> {
    let (status, _, body) = http_get(
        port,
        "/api/v2/alerts?active=true&silenced=true&inhibited=true",
        &[],
    );
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Vec<serde_json::Value>>(&body).unwrap()
}

fn redis_down_alerts(port: u16) -> Vec<serde_json::Value> {
    alertmanager_alerts(port)
        .into_iter()
        .filter(|a| {
            a["labels"]["alertname"] == "StackServiceDown" && a["labels"]["service"] == "redis"
        })
        .collect()
}

#[test]
fn a_stopped_redis_alerts_in_alertmanager_for_its_own_instance_and_resolves() {
    require("prometheus", "apt-get install prometheus"); // before any server starts
    let amtool = require("amtool", "apt-get install prometheus-alertmanager");
    let am_config = Path::new(ROOT).join("alertmanager/alertmanager.yml");
    let check = Command::new(amtool)
        .arg("check-config")
        .arg(&am_config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let dir = temp_dir();
    let mut redis_a = RedisServer::start();
    let redis_b = RedisServer::start();
    let (port_a, port_b) = (redis_a.port, redis_b.port);
    let vps = exporter_for(dir.path(), "vps", "vps-2gb", port_a);
    let cache = exporter_for(dir.path(), "cache", "production-cache", port_b);

    let (_am, am_port) = start_alertmanager(&am_config, &dir.path().join("am"));
    rules_firing_at_once(&dir.path().join("rules"));
    let (_prom, prom_port) =
        start_prometheus_scraping(dir.path(), &[vps.port, cache.port], Some(am_port));
    wait_for_port(am_port, Duration::from_secs(20));

    // Both Redis servers run: no redis alert anywhere.
    wait_for("both targets scraped", Duration::from_secs(30), || {
        let (_, _, body) = http_get(
            prom_port,
            "/api/v1/query?query=count(stack_service_up%7Bservice%3D%22redis%22%7D%3D%3D1)",
            &[],
        );
        body.contains("\"2\"]")
    });
    assert!(redis_down_alerts(am_port).is_empty());

    // Stop vps's Redis: the alert arrives for vps's instance only, with its plan_ref.
    redis_a.stop();
    let vps_instance = format!("127.0.0.1:{}", vps.port);
    wait_for(
        "StackServiceDown in Alertmanager",
        Duration::from_secs(60),
        || !redis_down_alerts(am_port).is_empty(),
    );
    std::thread::sleep(Duration::from_secs(3)); // a second instance, if wrongly alerted, shows by now
    let alerts = redis_down_alerts(am_port);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["labels"]["instance"], vps_instance.as_str());
    assert_eq!(alert["labels"]["job"], "stack");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["plan_ref"], "A5");
    assert_eq!(alert["annotations"]["plan_ref"], "A5");
    assert!(alert["annotations"]["runbook_url"]
        .as_str()
        .unwrap()
        .ends_with("#stackservicedown"));

    // Start it again on the same port: the alert resolves.
    redis_a.start_again();
    // Prometheus sends the resolution; Alertmanager lists only alerts that have not ended.
    wait_for("the alert resolved", Duration::from_secs(90), || {
        redis_down_alerts(am_port).is_empty()
    });
    drop(cache);
}

/// A live StackRedisBgsaveFailed: a Redis whose BGSAVE really fails (its directory removed while
/// it runs in it) brings the alert, critical with plan_ref A5,D4 and the target's labels, into
/// Alertmanager through real Prometheus running rules/ (`for:` shortened); pointing Redis at a
/// new directory and saving again resolves it.
#[test]
fn a_failed_bgsave_alerts_in_alertmanager_and_resolves() {
    require("prometheus", "apt-get install prometheus"); // before any server starts
    let am_config = Path::new(ROOT).join("alertmanager/alertmanager.yml");
    let dir = temp_dir();
    let rdb_dir = dir.path().join("rdb");
    std::fs::create_dir(&rdb_dir).unwrap();
    // Protected configs on, so that the test may move `dir` to repair it.
    let redis = RedisServer::start_with(&[
        "--dir",
        rdb_dir.to_str().unwrap(),
        "--enable-protected-configs",
        "yes",
    ]);
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "[[redis]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:{}/0\"\n",
            redis.port
        ),
    );
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);

    let (_am, am_port) = start_alertmanager(&am_config, &dir.path().join("am"));
    rules_firing_at_once(&dir.path().join("rules"));
    let (_prom, prom_port) = start_prometheus_scraping(dir.path(), &[exporter.port], Some(am_port));
    wait_for_port(am_port, Duration::from_secs(20));
    let bgsave_alerts = || -> Vec<serde_json::Value> {
        alertmanager_alerts(am_port)
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "StackRedisBgsaveFailed")
            .collect()
    };

    // Healthy: the target's BGSAVE status is scraped, 1, and nothing alerts.
    wait_for("the BGSAVE status scraped", Duration::from_secs(30), || {
        let (_, _, body) = http_get(
            prom_port,
            "/api/v1/query?query=stack_redis_rdb_last_bgsave_success%3D%3D1",
            &[],
        );
        body.contains("\"cache\"")
    });
    std::thread::sleep(Duration::from_secs(3)); // a few evaluations
    assert!(bgsave_alerts().is_empty());

    // The directory goes away: the next BGSAVE fails.
    std::fs::remove_dir_all(&rdb_dir).unwrap();
    redis.cli(&["BGSAVE"]);
    wait_for(
        "StackRedisBgsaveFailed in Alertmanager",
        Duration::from_secs(60),
        || !bgsave_alerts().is_empty(),
    );
    let alerts = bgsave_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(
        alert["labels"]["instance"],
        format!("127.0.0.1:{}", exporter.port).as_str()
    );
    assert_eq!(alert["labels"]["target"], "cache");
    assert_eq!(alert["labels"]["service"], "redis");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["plan_ref"], "A5,D4");
    assert!(alert["annotations"]["runbook_url"]
        .as_str()
        .unwrap()
        .ends_with("#stackredisbgsavefailed"));

    // Repaired: a new directory and a BGSAVE that succeeds resolve it.
    let repaired = dir.path().join("rdb2");
    std::fs::create_dir(&repaired).unwrap();
    redis.cli(&["CONFIG", "SET", "dir", repaired.to_str().unwrap()]);
    redis.cli(&["BGSAVE"]);
    wait_for("the alert resolved", Duration::from_secs(90), || {
        bgsave_alerts().is_empty()
    });
    assert!(repaired.join("dump.rdb").is_file());
}

/// Live: Redis refusing clients at its maxclients brings StackRedisConnectionsRefused, and Redis
/// restarted three times within seconds (up at every scrape) brings StackServiceRestartLoop for
/// the service. (That StackRedisRestarted then stays silent is a promtool case: restarts this
/// quick do not show in Redis's uptime at all, which is why the start counter exists.)
#[test]
fn refusals_and_a_restart_loop_alert_once_each_in_prometheus() {
    require("prometheus", "apt-get install prometheus"); // before any server starts
    let dir = temp_dir();
    let mut redis = RedisServer::start_with(&["--maxclients", "3"]);
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "[services.redis]\nmatch = [{{ comm = 'redis-server', cmdline = ':{port}$' }}]\n\
             [[redis]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:{port}/0\"\n",
            port = redis.port
        ),
    );
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    rules_firing_at_once(&dir.path().join("rules"));
    let (_prom, prom_port) = start_prometheus_scraping(dir.path(), &[exporter.port], None);
    let redis_labels = [("service", "redis")];
    wait_for("Redis scraped", Duration::from_secs(30), || {
        prometheus_query(prom_port, "stack_redis_up == 1").is_some_and(|r| {
            r["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
    });
    assert!(!fires(prom_port, "StackRedisConnectionsRefused", &[]));

    // 5 clients held open against maxclients 3 (the exporter holds one): the rest refused.
    let held: Vec<std::net::TcpStream> = (0..5)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(("127.0.0.1", redis.port)).unwrap();
            std::io::Write::write_all(&mut stream, b"PING\r\n").unwrap();
            stream
        })
        .collect();
    wait_for(
        "StackRedisConnectionsRefused firing",
        Duration::from_secs(30),
        || {
            fires(
                prom_port,
                "StackRedisConnectionsRefused",
                &[("target", "cache")],
            )
        },
    );
    drop(held);

    // Three restarts, each seen by a scrape: a start counted every time.
    let starts = || {
        prometheus_query(
            prom_port,
            "stack_service_instance_starts_total{service=\"redis\"}",
        )
        .and_then(|r| {
            r["data"]["result"][0]["value"][1]
                .as_str()
                .map(String::from)
        })
        .and_then(|v| v.parse::<f64>().ok())
    };
    for n in 1..=3 {
        redis.stop();
        redis.start_again();
        wait_for(
            &format!("start {n} scraped"),
            Duration::from_secs(30),
            || starts() == Some(f64::from(n)),
        );
    }
    wait_for(
        "StackServiceRestartLoop firing",
        Duration::from_secs(30),
        || fires(prom_port, "StackServiceRestartLoop", &redis_labels),
    );
}
