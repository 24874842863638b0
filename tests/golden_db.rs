//! The golden exposition of the database collectors: answers recorded once from real throwaway
//! servers (`tests/fixtures/db/<kind>.json`) go through each collector's pure figures and the
//! shared `up`, and the text they make is compared byte for byte with
//! `tests/fixtures/db/<kind>.prom`. A renamed metric or label, a changed help text or value fails
//! here.
//!
//! On purpose, after a change to the figures (check the diff before committing):
//!     STACK_UPDATE_GOLDEN=1 cargo test --test golden_db
//! To record the answers again from real servers (then update the golden text as above):
//!     cargo test --test golden_db -- --ignored record_answers

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use stack_exporter::collector::target::{self, Kind, SecretUrl, Server, Target, Targets};
use stack_exporter::collector::{mysql, postgres, redis};
use stack_exporter::metrics::{encode, Format, MetricSet};

/// One target's recorded round: its answers, or why the round failed (`up 0`).
#[derive(Serialize, Deserialize)]
struct Recorded<A> {
    target: String,
    answers: Result<A, String>,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/db")
        .join(name)
}

/// The text the collector of kind `S` serves for the answers recorded in `<kind>.json`.
fn exposition<S: Server>(kind: &str) -> String
where
    S::Answers: DeserializeOwned,
{
    let path = fixture(&format!("{kind}.json"));
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (record it: see this file's header)",
            path.display()
        )
    });
    let recorded: Vec<Recorded<S::Answers>> =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut set = MetricSet::default();
    for round in recorded {
        let figures = round
            .answers
            .ok()
            .map(|a| S::figures(&round.target, &a).set);
        set.extend(target::series::<S>(&round.target, figures));
    }
    encode(Arc::new(set), Format::PrometheusText)
}

/// Compares `text` with `<kind>.prom`, or rewrites that file under STACK_UPDATE_GOLDEN=1.
fn check_golden(kind: &str, text: &str) {
    common::check_golden(&fixture(&format!("{kind}.prom")), text, "golden_db");
}

/// Checks the golden text of kind `S`, whose fixture holds a target `up_target` that is up and
/// one named `down` that is not.
fn golden<S: Server>(kind: &str, up_target: &str)
where
    S::Answers: DeserializeOwned,
{
    let text = exposition::<S>(kind);
    let up = |target| common::metric(&text, &format!("stack_{kind}_up"), &[("target", target)]);
    assert_eq!(up(up_target), Some(1.0), "{text}");
    assert_eq!(up("down"), Some(0.0), "{text}");
    check_golden(kind, &text);
}

#[test]
fn mysql_exposition_is_golden() {
    golden::<mysql::Session>("mysql", "main");
}

#[test]
fn postgres_exposition_is_golden() {
    golden::<postgres::Session>("postgres", "main");
}

#[test]
fn redis_exposition_is_golden() {
    golden::<redis::Session>("redis", "cache");
}

// ------------------------------------------------------------------------------- the recorder

fn db_target(name: &str, url: &str, kind: Kind, queues: &[&str]) -> Target {
    Target {
        name: name.to_string(),
        kind,
        managed: false,
        url: SecretUrl::parse(url, kind).unwrap(),
        password_file: None,
        timeout: Duration::from_secs(2),
        slow_interval: Duration::from_secs(60),
        queues: queues.iter().map(|q| q.to_string()).collect(),
    }
}

/// One round of every target of kind `S`, written to `<kind>.json`. A recorded answer never
/// holds a password: failures are recorded as the scrubbed reason the log would show.
fn record<S: Server>(kind: &str, targets: Vec<Target>)
where
    S::Answers: Serialize,
{
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let answers = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        Targets::<S>::new(targets).answers(deadline).await
    });
    let recorded: Vec<Recorded<S::Answers>> = answers
        .into_iter()
        .map(|(target, answers)| Recorded { target, answers })
        .collect();
    let json = serde_json::to_string_pretty(&recorded).unwrap() + "\n";
    for secret in [
        common::servers::GOOD_PASSWORD,
        common::servers::NARROW_PASSWORD,
    ] {
        assert!(!json.contains(secret), "a recorded answer holds a password");
    }
    std::fs::write(fixture(&format!("{kind}.json")), json).unwrap();
}

/// Records the answers of real throwaway servers: a fully granted target, a narrow one that may
/// not read some figures, and one that never answers (`up 0`).
#[test]
#[ignore = "rewrites tests/fixtures/db/*.json from real servers, on purpose only"]
fn record_answers() {
    use common::servers::{
        MariadbServer, PostgresServer, RedisServer, SilentListener, GOOD_PASSWORD, NARROW_PASSWORD,
    };
    let silent = SilentListener::start();
    let down = |url: String, kind| {
        let mut t = db_target("down", &url, kind, &["celery"]);
        t.timeout = Duration::from_millis(300);
        t
    };

    let db = MariadbServer::start();
    db.create_monitoring_users();
    // narrow has no grant on shop: its size is unknown to it.
    db.sql(
        "CREATE TABLE shop.items (id INT PRIMARY KEY, body TEXT) ENGINE=InnoDB; \
         INSERT INTO shop.items VALUES (1, REPEAT('x', 5000)), (2, 'y');",
    );
    let url =
        |user: &str, password: &str| format!("mysql://{user}:{password}@127.0.0.1:{}/", db.port);
    record::<mysql::Session>(
        "mysql",
        vec![
            db_target("main", &url("monitor", GOOD_PASSWORD), Kind::Mysql, &[]),
            db_target("narrow", &url("narrow", NARROW_PASSWORD), Kind::Mysql, &[]),
            down(format!("mysql://u@127.0.0.1:{}/", silent.port), Kind::Mysql),
        ],
    );
    drop(db);

    let pg = PostgresServer::start();
    pg.create_monitoring_roles();
    // narrow may not CONNECT to private: its size is unknown to it.
    pg.psql("postgres", "CREATE DATABASE private");
    pg.psql("postgres", "REVOKE CONNECT ON DATABASE private FROM PUBLIC");
    let url = |user: &str, password: &str| {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/postgres",
            pg.port
        )
    };
    record::<postgres::Session>(
        "postgres",
        vec![
            db_target("main", &url("monitor", GOOD_PASSWORD), Kind::Postgres, &[]),
            db_target(
                "narrow",
                &url("narrow", NARROW_PASSWORD),
                Kind::Postgres,
                &[],
            ),
            down(
                format!("postgres://u@127.0.0.1:{}/postgres", silent.port),
                Kind::Postgres,
            ),
        ],
    );
    drop(pg);

    let redis = RedisServer::start();
    redis.create_monitoring_users();
    redis.cli(&["RPUSH", "celery", "a", "b", "c"]);
    redis.cli(&["RPUSH", "celery\x06\x163", "x"]);
    redis.cli(&["RPUSH", "reports", "x"]);
    redis.cli(&["SET", "celery_flag", "not a list"]);
    redis.cli(&["-n", "2", "SET", "k", "v"]);
    redis.cli(&["CONFIG", "SET", "maxmemory", "64mb"]);
    redis.cli(&["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]);
    // narrow may not CONFIG GET (as on ElastiCache): no save points.
    let narrow_pass = format!(">{NARROW_PASSWORD}");
    redis.cli(&[
        "ACL",
        "SETUSER",
        "narrow",
        "reset",
        "on",
        &narrow_pass,
        "+info",
        "+llen",
        "+ping",
        "+client|setname",
        "%R~celery*",
    ]);
    let queues = ["celery", "celery\x06\x163", "reports", "celery_flag"];
    record::<redis::Session>(
        "redis",
        vec![
            db_target(
                "cache",
                &format!("redis://monitor:{GOOD_PASSWORD}@127.0.0.1:{}/0", redis.port),
                Kind::Redis,
                &queues,
            ),
            db_target(
                "narrow",
                &format!(
                    "redis://narrow:{NARROW_PASSWORD}@127.0.0.1:{}/0",
                    redis.port
                ),
                Kind::Redis,
                &["celery"],
            ),
            down(format!("redis://127.0.0.1:{}/0", silent.port), Kind::Redis),
        ],
    );
}
