//! Redis (THRESHOLDS rows C1, M3, A5, H): memory against `maxmemory`, the eviction policy,
//! evictions, clients, keyspace, and the length of each Celery queue list.
//!
//! One `INFO` (default sections: memory, clients, stats, keyspace, …) and one `LLEN` per queue on a
//! connection kept across scrapes, named `stack_exporter` (`CLIENT SETNAME`) so that `CLIENT LIST`
//! tells it apart. `INFO memory` carries `maxmemory` and `maxmemory_policy`; where a server omits
//! them, `CONFIG GET maxmemory*` fills in. A queue the ACL user may not `LLEN` (or a key that is
//! not a list) is `stack_redis_queue_readable 0`, never a length that just vanishes.

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, IntoConnectionInfo};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::target::{describe, printable, server_number, target_label, Health, Target};
use crate::logging::Condition;
use crate::metrics::MetricSet;

/// The name the exporter's connections carry in `CLIENT LIST`.
pub const CLIENT_NAME: &str = "stack_exporter";

#[derive(Debug)]
pub struct Redis {
    targets: Vec<RedisTarget>,
}

struct RedisTarget {
    target: Target,
    conn: Mutex<Option<MultiplexedConnection>>,
    health: Health,
    /// Queues that cannot be read (LLEN refused, or not a list).
    unreadable_queues: Condition,
    /// CLIENT SETNAME refused (an ACL without `+client|setname`).
    unnamed: Condition,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("target", &self.target)
            .finish()
    }
}

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
];

/// What `INFO` says, parsed.
#[derive(Debug, Default, PartialEq)]
pub struct Info {
    pub fields: HashMap<String, String>,
    /// `dbN` and its key count.
    pub keyspace: Vec<(String, u64)>,
}

impl Info {
    pub fn number(&self, field: &str) -> Option<f64> {
        server_number(field, self.fields.get(field)?)
    }
}

/// Parses the text of `INFO`: `# Section` headers, `field:value` lines, and keyspace lines like
/// `db0:keys=12,expires=3,avg_ttl=0`.
pub fn parse_info(text: &str) -> Info {
    let mut info = Info::default();
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
                info.keyspace.push((field.to_string(), keys));
            }
            continue;
        }
        info.fields.insert(field.to_string(), value.to_string());
    }
    info
}

impl Redis {
    pub fn new(targets: Vec<Target>) -> Redis {
        Redis {
            targets: targets
                .into_iter()
                .map(|target| RedisTarget {
                    target,
                    conn: Mutex::new(None),
                    health: Health::default(),
                    unreadable_queues: Condition::default(),
                    unnamed: Condition::default(),
                })
                .collect(),
        }
    }

    pub async fn collect(&self, deadline: Instant) -> anyhow::Result<MetricSet> {
        let sets =
            futures_util::future::join_all(self.targets.iter().map(|t| t.scrape(deadline))).await;
        let mut out = MetricSet::default();
        for set in sets {
            out.extend(set);
        }
        Ok(out)
    }
}

impl RedisTarget {
    async fn scrape(&self, deadline: Instant) -> MetricSet {
        let mut guard = self.conn.lock().await;
        let work = async {
            let mut gathered = MetricSet::default();
            self.gather(&mut guard, &mut gathered)
                .await
                .map(|()| gathered)
        };
        let up = (
            "stack_redis_up",
            "1 if the last INFO of this Redis target succeeded.",
        );
        let (is_up, set) =
            super::target::round("redis", &self.target, &self.health, deadline, up, work).await;
        if !is_up {
            // A failed or cut-off connection is not trusted again: reconnect next scrape.
            *guard = None;
        }
        set
    }

    async fn gather(
        &self,
        slot: &mut Option<MultiplexedConnection>,
        set: &mut MetricSet,
    ) -> Result<(), String> {
        let password = self.target.file_password()?;
        if slot.is_none() {
            *slot = Some(self.connect(password.as_deref()).await?);
        }
        let conn = slot.as_mut().expect("connected above");
        let fail = |e: redis::RedisError| reason(&e, password.as_deref());
        let text: String = redis::cmd("INFO").query_async(conn).await.map_err(fail)?;
        let mut info = parse_info(&text);
        if !info.fields.contains_key("maxmemory") || !info.fields.contains_key("maxmemory_policy") {
            let pairs: Vec<String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory*")
                .query_async(conn)
                .await
                .map_err(fail)?;
            for pair in pairs.chunks(2) {
                if let [key, value] = pair {
                    info.fields
                        .entry(key.replace('-', "_"))
                        .or_insert_with(|| value.clone());
                }
            }
        }
        let labels = || target_label(&self.target.name);
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
        if let Some(policy) = info.fields.get("maxmemory_policy") {
            let mut l = labels();
            l.push(("policy", policy.trim().to_string()));
            set.gauge(
                "stack_redis_maxmemory_policy_info",
                "1; the eviction policy (maxmemory-policy).",
                l,
                1.0,
            );
        }
        for (db, keys) in &info.keyspace {
            let mut l = labels();
            l.push(("db", db.trim_start_matches("db").to_string()));
            set.gauge(
                "stack_redis_db_keys",
                "Keys in each database that has any.",
                l,
                *keys as f64,
            );
        }
        self.queue_lengths(conn, set, &fail).await
    }

    /// `stack_redis_queue_readable` for every configured queue, and its length where it can be
    /// read. A refused LLEN (ACL) or a key that is not a list leaves the target up; a broken
    /// connection fails the round.
    async fn queue_lengths(
        &self,
        conn: &mut MultiplexedConnection,
        set: &mut MetricSet,
        fail: &impl Fn(redis::RedisError) -> String,
    ) -> Result<(), String> {
        let mut unreadable = Vec::new();
        for queue in &self.target.queues {
            let mut labels = target_label(&self.target.name);
            labels.push(("queue", printable(queue)));
            let length: Result<u64, _> = redis::cmd("LLEN").arg(queue).query_async(conn).await;
            let readable = match length {
                Ok(n) => {
                    set.gauge(
                        "stack_redis_queue_length",
                        "Length of each configured Celery queue list (LLEN; 0 when absent); \
                         left out when stack_redis_queue_readable is 0.",
                        labels.clone(),
                        n as f64,
                    );
                    true
                }
                Err(e) if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() => {
                    return Err(fail(e));
                }
                // NOPERM (the ACL's key pattern leaves it out) or WRONGTYPE (not a list).
                Err(e) => {
                    unreadable.push(format!("{} ({})", printable(queue), fail(e)));
                    false
                }
            };
            set.gauge(
                "stack_redis_queue_readable",
                "1 if LLEN of this configured queue succeeded; 0 if it was refused (ACL) or the \
                 key is not a list, so its length is unknown.",
                labels,
                f64::from(readable),
            );
        }
        self.unreadable_queues.set(
            &format!(
                "redis target {:?}: queue lengths unknown (stack_redis_queue_readable 0)",
                self.target.name
            ),
            (!unreadable.is_empty()).then(|| unreadable.join(", ")),
        );
        Ok(())
    }

    /// Names the connection `stack_exporter` in `CLIENT LIST`; a refusal is logged once and
    /// the connection is used anyway.
    async fn set_name(&self, conn: &mut MultiplexedConnection, password: Option<&str>) {
        let named: Result<(), _> = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(CLIENT_NAME)
            .query_async(conn)
            .await;
        self.unnamed.set(
            &format!(
                "redis target {:?}: the connection is not named {CLIENT_NAME} in CLIENT LIST",
                self.target.name
            ),
            named.err().map(|e| reason(&e, password)),
        );
    }

    async fn connect(&self, password: Option<&str>) -> Result<MultiplexedConnection, String> {
        let fail = |e: redis::RedisError| reason(&e, password);
        let mut info = self
            .target
            .url
            .expose()
            .into_connection_info()
            .map_err(|e| format!("bad URL: {}", fail(e)))?;
        let mut settings = info.redis_settings().clone().set_skip_set_lib_name();
        if let Some(p) = password {
            settings = settings.set_password(p);
        }
        info = info.set_redis_settings(settings);
        let client = redis::Client::open(info).map_err(fail)?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.target.timeout))
            .set_response_timeout(Some(self.target.timeout));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(fail)?;
        self.set_name(&mut conn, password).await;
        Ok(conn)
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
            info.fields.get("maxmemory_policy").map(String::as_str),
            Some("allkeys-lru")
        );
        assert_eq!(info.number("evicted_keys"), Some(7.0));
        assert_eq!(
            info.keyspace,
            vec![("db0".to_string(), 12), ("db3".to_string(), 1)]
        );
    }

    #[test]
    fn crlf_and_odd_lines_are_tolerated() {
        let info = parse_info("# Memory\r\nused_memory:10\r\nnonsense\r\ndbx:keys=3\r\n");
        assert_eq!(info.number("used_memory"), Some(10.0));
        assert!(info.keyspace.is_empty());
        assert_eq!(info.fields.get("dbx").map(String::as_str), Some("keys=3"));
    }
}
