//! Redis (THRESHOLDS rows C1, M3, A5, D4, H): memory against `maxmemory`, the eviction policy,
//! evictions, clients against `maxclients` and those refused, uptime, persistence (the last
//! snapshot, its status and the writes since, the append-only file's status), keyspace, and the
//! length of each Celery queue list.
//!
//! One `INFO` (default sections: server, clients, memory, persistence, stats, keyspace, …) and
//! one `LLEN` per queue on a connection kept across scrapes, named `stack_exporter` (`CLIENT
//! SETNAME`) so that `CLIENT LIST` tells it apart. `INFO memory` carries `maxmemory` and
//! `maxmemory_policy`; where a server omits them, `CONFIG GET maxmemory*` fills in (refused: left
//! out). Every `slow_interval`, `CONFIG GET save` (and `maxclients`, which INFO has only from
//! Redis 7); where CONFIG is refused (ElastiCache) those are left out, never 0. A queue the ACL
//! user may not `LLEN` (or a key that is not a list) is `stack_redis_queue_readable 0`, never a
//! length that just vanishes.

use std::borrow::Cow;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::target::{
    describe, printable, redis_certificates, server_number, target_label, Figures, Server, Target,
    Targets, TlsMode,
};
use crate::logging::Condition;

/// The name the exporter's connections carry in `CLIENT LIST`.
pub const CLIENT_NAME: &str = "stack_exporter";

/// INFO fields served as gauges: (field, metric, help).
const GAUGES: &[(&str, &str, &str)] = &[
    (
        "used_memory",
        "stack_redis_memory_used_bytes",
        "Memory Redis has allocated (used_memory).",
    ),
    (
        "used_memory_rss",
        "stack_redis_memory_rss_bytes",
        "Resident memory of the Redis process (used_memory_rss).",
    ),
    (
        "maxmemory",
        "stack_redis_maxmemory_bytes",
        "The maxmemory setting; 0 means no limit.",
    ),
    (
        "connected_clients",
        "stack_redis_connected_clients",
        "Client connections.",
    ),
    (
        "blocked_clients",
        "stack_redis_blocked_clients",
        "Clients blocked in a blocking call (BLPOP: idle Celery workers).",
    ),
    (
        "maxclients",
        "stack_redis_maxclients",
        "The maxclients setting: connections past it are refused (INFO from Redis 7, before \
         that CONFIG GET; left out where neither answers).",
    ),
    (
        "uptime_in_seconds",
        "stack_redis_uptime_seconds",
        "Seconds since the server started; it drops when the server restarts.",
    ),
    (
        "rdb_last_save_time",
        "stack_redis_rdb_last_save_timestamp_seconds",
        "When the last successful RDB snapshot was saved (or the server started), Unix seconds.",
    ),
    (
        "rdb_changes_since_last_save",
        "stack_redis_rdb_changes_since_last_save",
        "Writes since the last successful RDB snapshot: lost if the server stops now \
         (unless AOF has them).",
    ),
    (
        "aof_enabled",
        "stack_redis_aof_enabled",
        "1 if the append-only file is on (appendonly yes).",
    ),
];

/// INFO fields served as counters.
const COUNTERS: &[(&str, &str, &str)] = &[
    (
        "evicted_keys",
        "stack_redis_evicted_keys_total",
        "Keys evicted because of maxmemory.",
    ),
    (
        "expired_keys",
        "stack_redis_expired_keys_total",
        "Keys removed because their TTL ran out.",
    ),
    (
        "keyspace_hits",
        "stack_redis_keyspace_hits_total",
        "Successful key lookups.",
    ),
    (
        "keyspace_misses",
        "stack_redis_keyspace_misses_total",
        "Failed key lookups.",
    ),
    (
        "rejected_connections",
        "stack_redis_rejected_connections_total",
        "Connections refused because maxclients was reached.",
    ),
];

/// INFO fields that are `ok` or `err`, served as 1 or 0: (field, metric, help).
const STATUSES: &[(&str, &str, &str)] = &[
    (
        "rdb_last_bgsave_status",
        "stack_redis_rdb_last_bgsave_success",
        "1 if the last RDB snapshot (BGSAVE) succeeded, 0 if it failed: with save points set, \
         Redis then refuses writes (stop-writes-on-bgsave-error, on by default).",
    ),
    (
        "aof_last_write_status",
        "stack_redis_aof_last_write_success",
        "1 if the last write to the append-only file succeeded, 0 if it failed (Redis then \
         refuses writes); only while AOF is on.",
    ),
];

/// What `INFO` says, parsed: fields borrowed from its text (some 150 of them every scrape), or
/// owned where CONFIG GET added them.
#[derive(Debug, Default, PartialEq)]
pub struct Info<'a> {
    /// foldhash, not SipHash: the keys are the server's own field names, hashed 150 times a
    /// scrape.
    pub fields: foldhash::HashMap<Cow<'a, str>, Cow<'a, str>>,
    /// `dbN` and its key count.
    pub keyspace: Vec<(&'a str, u64)>,
}

impl Info<'_> {
    pub fn number(&self, field: &str) -> Option<f64> {
        server_number(field, self.fields.get(field)?)
    }
}

/// Parses the text of `INFO`: `# Section` headers, `field:value` lines, and keyspace lines like
/// `db0:keys=12,expires=3,avg_ttl=0`.
pub fn parse_info(text: &str) -> Info<'_> {
    let mut info = Info::default();
    // A field takes 20 to 40 bytes of the text: the table is sized once, not regrown.
    info.fields.reserve(text.len() / 24);
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let is_db = field
            .strip_prefix("db")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if is_db {
            let keys = value
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))
                .and_then(|n| n.parse().ok());
            if let Some(keys) = keys {
                info.keyspace.push((field, keys));
            }
            continue;
        }
        info.fields
            .insert(Cow::Borrowed(field), Cow::Borrowed(value));
    }
    info
}

/// The Redis collector: the shared skeleton over [`Session`].
pub type Redis = Targets<Session>;

/// A Redis target's own state: whether its connection could be named, and its settings with
/// when they were fetched.
pub struct Session {
    /// CLIENT SETNAME refused (an ACL without `+client|setname`).
    unnamed: Condition,
    settings: std::sync::Mutex<Option<(Instant, Settings)>>,
}

/// `CONFIG GET` pairs (name, value, …), or why CONFIG was refused.
type Settings = Result<Vec<String>, String>;

/// What one round's commands answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    /// The text of `INFO`.
    pub info: String,
    /// `CONFIG GET maxmemory*` (name, value, …), asked only where INFO leaves out `maxmemory`
    /// or `maxmemory_policy`.
    pub config: Vec<String>,
    /// Each configured queue and its `LLEN`, or why that was refused (ACL, not a list).
    pub queues: Vec<(String, Result<u64, String>)>,
    /// `CONFIG GET save`, and `maxclients` where INFO has none (before Redis 7), as name, value,
    /// …, fetched every `slow_interval`; the server's refusal where CONFIG is disabled
    /// (ElastiCache) or not granted. `None`: not asked (answers recorded before it was).
    #[serde(default)]
    pub settings: Option<Settings>,
}

impl Server for Session {
    type Conn = MultiplexedConnection;
    type Answers = Answers;
    const NAME: &'static str = "redis";
    const UP: (&'static str, &'static str) = (
        "stack_redis_up",
        "1 if the last INFO of this Redis target succeeded.",
    );

    fn new(_: &Target) -> Session {
        Session {
            unnamed: Condition::default(),
            settings: std::sync::Mutex::new(None),
        }
    }

    async fn connect(
        &self,
        target: &Target,
        password: &mut Option<String>,
    ) -> Result<MultiplexedConnection, String> {
        let (url, tls) = target.tls()?;
        let mut info = url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("bad URL: {}", reason(&e, password.as_deref())))?;
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        match password.as_deref() {
            Some(p) => settings = settings.set_password(p),
            // Keep the URL's password at hand, to cut it out of any message.
            None => *password = settings.password().map(str::to_string),
        }
        info = info.set_redis_settings(settings);
        let fail = |e: redis::RedisError| reason(&e, password.as_deref());
        let client = match tls.mode {
            TlsMode::Disable => redis::Client::open(info),
            _ => redis::Client::build_with_tls(info, redis_certificates(&tls)?),
        }
        .map_err(fail)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(target.timeout))
            .set_response_timeout(Some(target.timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(fail)?;
        self.set_name(target, &mut conn, password.as_deref(), tls.mode)
            .await?;
        Ok(conn)
    }

    async fn ask(
        &self,
        target: &Target,
        conn: &mut MultiplexedConnection,
        password: Option<&str>,
    ) -> Result<Answers, String> {
        let fail = |e: redis::RedisError| reason(&e, password);
        let (info, queues) = info_and_queues(target, conn, password).await?;
        let parsed = parse_info(&info);
        let config = if parsed.fields.contains_key("maxmemory")
            && parsed.fields.contains_key("maxmemory_policy")
        {
            Vec::new()
        } else {
            match redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory*")
                .query_async(conn)
                .await
            {
                Ok(pairs) => pairs,
                Err(e) if broken(&e) => return Err(fail(e)),
                // CONFIG disabled (ElastiCache) or not granted: the figures INFO lacks are left
                // out, and the refusal is logged with the settings' (below).
                Err(_) => Vec::new(),
            }
        };
        let settings = Some(self.settings(target, conn, &parsed, password).await?);
        Ok(Answers {
            info,
            config,
            queues,
            settings,
        })
    }

    fn figures(target: &str, answers: &Answers) -> Figures {
        figures(target, answers)
    }

    fn forget(&self) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// INFO and each queue's LLEN, in one pipeline: one round trip a scrape. A refused INFO
/// fails the round; a refused LLEN (NOPERM: the ACL's key pattern leaves the queue out;
/// WRONGTYPE: not a list) is that queue's answer, and the target stays up.
async fn info_and_queues(
    target: &Target,
    conn: &mut MultiplexedConnection,
    password: Option<&str>,
) -> Result<(String, Vec<(String, Result<u64, String>)>), String> {
    let fail = |e: redis::RedisError| reason(&e, password);
    let mut pipe = redis::pipe();
    pipe.ignore_errors().cmd("INFO");
    for queue in &target.queues {
        pipe.cmd("LLEN").arg(queue);
    }
    // A broken connection fails the whole query, and so the round.
    let answers: Vec<redis::RedisResult<redis::Value>> =
        pipe.query_async(conn).await.map_err(fail)?;
    if answers.len() != target.queues.len() + 1 {
        return Err(format!(
            "{} answers to a pipeline of {} commands",
            answers.len(),
            target.queues.len() + 1
        ));
    }
    let mut answers = answers.into_iter();
    let info = answers
        .next()
        .ok_or("no answer to INFO")?
        .and_then(|v| redis::from_redis_value::<String>(v).map_err(Into::into))
        .map_err(fail)?;
    let queues = target.queues.iter().cloned().zip(answers.map(|length| {
        length
            .and_then(|v| redis::from_redis_value::<u64>(v).map_err(Into::into))
            .map_err(fail)
    }));
    Ok((info, queues.collect()))
}

/// Whether a failed command leaves the connection broken (the round fails) rather than refused
/// by the server (the target stays up).
fn broken(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout()
}

/// The figures of one round's answers.
pub fn figures(target: &str, answers: &Answers) -> Figures {
    let mut out = Figures::default();
    let mut info = parse_info(&answers.info);
    let settings = match &answers.settings {
        Some(Ok(pairs)) => pairs.as_slice(),
        _ => &[],
    };
    for pair in answers.config.chunks(2).chain(settings.chunks(2)) {
        if let [key, value] = pair {
            info.fields
                .entry(Cow::Owned(key.replace('-', "_")))
                .or_insert(Cow::Borrowed(value));
        }
    }
    let labels = || target_label(target);
    let set = &mut out.set;
    for (field, metric, help) in GAUGES {
        if let Some(v) = info.number(field) {
            set.gauge(metric, help, labels(), v);
        }
    }
    for (field, metric, help) in COUNTERS {
        if let Some(v) = info.number(field) {
            set.counter(metric, help, labels(), v);
        }
    }
    let aof_on = info.number("aof_enabled") == Some(1.0);
    for (field, metric, help) in STATUSES {
        if *field == "aof_last_write_status" && !aof_on {
            continue; // "ok" while AOF is off says nothing
        }
        let ok = match info.fields.get(*field).map(|v| v.trim()) {
            Some("ok") => 1.0,
            Some("err") => 0.0,
            _ => continue,
        };
        set.gauge(metric, help, labels(), ok);
    }
    if let Some(policy) = info.fields.get("maxmemory_policy") {
        let mut l = labels();
        l.push(("policy", policy.trim().to_string().into()));
        set.gauge(
            "stack_redis_maxmemory_policy_info",
            "1; the eviction policy (maxmemory-policy).",
            l,
            1.0,
        );
    }
    for (db, keys) in &info.keyspace {
        let mut l = labels();
        l.push(("db", db.trim_start_matches("db").to_string().into()));
        set.gauge(
            "stack_redis_db_keys",
            "Keys in each database that has any.",
            l,
            *keys as f64,
        );
    }
    queue_figures(target, &answers.queues, &mut out);
    save_figures(target, &info, answers.settings.as_ref(), &mut out);
    out
}

/// `stack_redis_rdb_save_points` from `CONFIG GET save`, or why it is left out.
fn save_figures(target: &str, info: &Info<'_>, settings: Option<&Settings>, out: &mut Figures) {
    let refused = match settings {
        Some(Err(why)) => Some(why.clone()),
        _ => None,
    };
    // "3600 1 300 100 60 10000": pairs of seconds and changes; "" turns snapshots off.
    if let Some(save) = info.fields.get("save").filter(|_| refused.is_none()) {
        let points = save.split_whitespace().count() / 2;
        out.set.gauge(
            "stack_redis_rdb_save_points",
            "Save points set (CONFIG GET save): 0 means no automatic RDB snapshots. Left out \
             where CONFIG is refused (ElastiCache).",
            target_label(target),
            points as f64,
        );
    }
    out.note(
        format!(
            "redis target {target:?}: CONFIG GET refused; stack_redis_rdb_save_points left out \
             (StackRedisNotPersisting cannot fire), and stack_redis_maxclients before Redis 7"
        ),
        refused,
    );
}

/// `stack_redis_queue_readable` for every configured queue, and its length where it was read.
fn queue_figures(target: &str, queues: &[(String, Result<u64, String>)], out: &mut Figures) {
    let mut unreadable = Vec::new();
    for (queue, length) in queues {
        let mut labels = target_label(target);
        labels.push(("queue", printable(queue).into()));
        match length {
            Ok(n) => out.set.gauge(
                "stack_redis_queue_length",
                "Length of each configured Celery queue list (LLEN; 0 when absent); \
                 left out when stack_redis_queue_readable is 0.",
                labels.clone(),
                *n as f64,
            ),
            Err(why) => unreadable.push(format!("{} ({why})", printable(queue))),
        }
        out.set.gauge(
            "stack_redis_queue_readable",
            "1 if LLEN of this configured queue succeeded; 0 if it was refused (ACL) or the \
             key is not a list, so its length is unknown.",
            labels,
            f64::from(length.is_ok()),
        );
    }
    out.note(
        format!("redis target {target:?}: queue lengths unknown (stack_redis_queue_readable 0)"),
        (!unreadable.is_empty()).then(|| unreadable.join(", ")),
    );
}

impl Session {
    /// `CONFIG GET save` (and `maxclients` where `info` lacks it), fetched again when older than
    /// `slow_interval`. A refusal (ElastiCache disables CONFIG) is an answer, not a failure.
    async fn settings(
        &self,
        target: &Target,
        conn: &mut MultiplexedConnection,
        info: &Info<'_>,
        password: Option<&str>,
    ) -> Result<Settings, String> {
        let cached = self
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some((_, settings)) = cached.filter(|(at, _)| at.elapsed() < target.slow_interval) {
            return Ok(settings);
        }
        let mut names = vec!["save"];
        if !info.fields.contains_key("maxclients") {
            names.push("maxclients");
        }
        let mut settings = Ok(Vec::new());
        // One name per CONFIG GET: Redis before 7 takes only one.
        for name in names {
            let answer: Result<Vec<String>, _> = redis::cmd("CONFIG")
                .arg("GET")
                .arg(name)
                .query_async(conn)
                .await;
            match (answer, &mut settings) {
                (Ok(pairs), Ok(all)) => all.extend(pairs),
                (Err(e), _) if broken(&e) => return Err(reason(&e, password)),
                (Err(e), _) => settings = Err(reason(&e, password)),
                (Ok(_), Err(_)) => {}
            }
        }
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), settings.clone()));
        Ok(settings)
    }

    /// Names the connection `stack_exporter` in `CLIENT LIST`; a refusal is logged once and
    /// the connection is used anyway.
    async fn set_name(
        &self,
        target: &Target,
        conn: &mut MultiplexedConnection,
        password: Option<&str>,
        tls: TlsMode,
    ) -> Result<(), String> {
        let named: Result<(), _> = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(CLIENT_NAME)
            .query_async(conn)
            .await;
        if let Err(e) = named.as_ref() {
            if broken(e) {
                return Err(format!("{}; {}", reason(e, password), dropped_hint(tls)));
            }
        }
        self.unnamed.set(
            &format!(
                "redis target {:?}: the connection is not named {CLIENT_NAME} in CLIENT LIST",
                target.name
            ),
            named.err().map(|e| reason(&e, password)),
        );
        Ok(())
    }
}

/// Why a server may drop a new connection at its first command: the usual causes, named.
fn dropped_hint(tls: TlsMode) -> &'static str {
    match tls {
        TlsMode::Disable => {
            "the server dropped the connection: one that takes TLS only (ElastiCache with \
             in-transit encryption, --port 0 --tls-port) does so to plain text; use rediss://"
        }
        _ => {
            "the server dropped the TLS connection: one that demands a client certificate \
             (tls-auth-clients) does so without one; give ssl_certfile and ssl_keyfile"
        }
    }
}

/// A Redis error as a log line: the crate's own timeouts read like ours.
fn reason(error: &redis::RedisError, password: Option<&str>) -> String {
    if error.is_timeout() {
        "no answer within the timeout".to_string()
    } else {
        describe(error, password)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = include_str!("../../tests/fixtures/redis/info.txt");

    #[test]
    fn info_fields_and_keyspace_parse() {
        let info = parse_info(INFO);
        assert_eq!(info.number("used_memory"), Some(1_048_576.0));
        assert_eq!(info.number("maxmemory"), Some(268_435_456.0));
        assert_eq!(
            info.fields.get("maxmemory_policy").map(|v| v.as_ref()),
            Some("allkeys-lru")
        );
        assert_eq!(info.number("evicted_keys"), Some(7.0));
        assert_eq!(info.keyspace, vec![("db0", 12), ("db3", 1)]);
    }

    fn answers(info: &str, settings: Option<Result<Vec<String>, String>>) -> Answers {
        Answers {
            info: info.to_string(),
            settings,
            ..Answers::default()
        }
    }

    fn pairs(list: &[&str]) -> Option<Result<Vec<String>, String>> {
        Some(Ok(list.iter().map(|s| s.to_string()).collect()))
    }

    const T: [(&str, &str); 1] = [("target", "t")];

    #[test]
    fn persistence_statuses_are_one_or_zero() {
        let info =
            "# Persistence\r\nrdb_changes_since_last_save:7\r\nrdb_last_save_time:1700000000\r\n\
                    rdb_last_bgsave_status:err\r\naof_enabled:0\r\naof_last_write_status:ok\r\n";
        let out = figures(
            "t",
            &answers(info, pairs(&["save", "3600 1 300 100 60 10000"])),
        );
        let value = |name| out.set.value(name, &T);
        assert_eq!(value("stack_redis_rdb_last_bgsave_success"), Some(0.0));
        assert_eq!(value("stack_redis_rdb_changes_since_last_save"), Some(7.0));
        assert_eq!(
            value("stack_redis_rdb_last_save_timestamp_seconds"),
            Some(1.7e9)
        );
        assert_eq!(value("stack_redis_aof_enabled"), Some(0.0));
        // AOF off: its "ok" says nothing, so it is left out.
        assert_eq!(value("stack_redis_aof_last_write_success"), None);
        assert_eq!(value("stack_redis_rdb_save_points"), Some(3.0));

        let info = "aof_enabled:1\r\naof_last_write_status:err\r\nrdb_last_bgsave_status:ok\r\n";
        let out = figures("t", &answers(info, pairs(&["save", ""])));
        let value = |name| out.set.value(name, &T);
        assert_eq!(value("stack_redis_aof_last_write_success"), Some(0.0));
        assert_eq!(value("stack_redis_rdb_last_bgsave_success"), Some(1.0));
        assert_eq!(value("stack_redis_rdb_save_points"), Some(0.0));
    }

    #[test]
    fn maxclients_comes_from_info_or_config_and_is_never_made_up() {
        // Redis 7: INFO has it (CONFIG's answer would not be asked, and never wins).
        let out = figures(
            "t",
            &answers(
                "maxclients:10000\r\n",
                pairs(&["save", "", "maxclients", "5"]),
            ),
        );
        assert_eq!(out.set.value("stack_redis_maxclients", &T), Some(10000.0));
        // Before 7: from CONFIG GET.
        let out = figures(
            "t",
            &answers(
                "connected_clients:3\r\n",
                pairs(&["save", "", "maxclients", "4064"]),
            ),
        );
        assert_eq!(out.set.value("stack_redis_maxclients", &T), Some(4064.0));
        // ElastiCache: CONFIG refused; neither maxclients nor save points, and a note.
        let refused = Some(Err("ERR unknown command 'CONFIG'".to_string()));
        let out = figures(
            "t",
            &answers("connected_clients:3\r\nrejected_connections:2\r\n", refused),
        );
        assert_eq!(out.set.value("stack_redis_maxclients", &T), None);
        assert_eq!(out.set.value("stack_redis_rdb_save_points", &T), None);
        assert_eq!(
            out.set.value("stack_redis_rejected_connections_total", &T),
            Some(2.0)
        );
        assert!(out
            .notes
            .iter()
            .any(|(what, why)| what.contains("CONFIG GET refused") && why.is_some()));
    }

    #[test]
    fn crlf_and_odd_lines_are_tolerated() {
        let info = parse_info("# Memory\r\nused_memory:10\r\nnonsense\r\ndbx:keys=3\r\n");
        assert_eq!(info.number("used_memory"), Some(10.0));
        assert!(info.keyspace.is_empty());
        assert_eq!(info.fields.get("dbx").map(|v| v.as_ref()), Some("keys=3"));
    }
}
