//! What the database and Redis collectors share: a target's config (`[[mysql]]`, `[[postgres]]`,
//! `[[redis]]`, or one target named `default` from `STACK_MYSQL_URL`, `STACK_POSTGRES_URL`,
//! `STACK_REDIS_URL`), the password kept out of every message, and the time a target may take.
//!
//! Credentials come from the URL, the environment or a `password_file`. No error, log line, label
//! or metric is ever built from the URL: messages name the target and the error's kind.
//!
//! `target/config.rs` holds the targets' config; `target/rounds.rs` the skeleton the three kinds
//! share (kept connection, deadline, `up`, one log line per failure); this file builds a kind's
//! collector and holds the helpers their queries and figures use (scrubbed error text, numbers
//! from answers, printable labels).

use std::fmt;

mod config;
mod rounds;
pub mod tls;
pub use config::{
    add_env_target, add_env_targets, check_unique, mysql_targets, postgres_targets, redis_targets,
    DbTargetLayer, Kind, MysqlUrl, PostgresUrl, RedisTargetLayer, RedisUrl, SecretUrl, Target,
    TargetLists, TargetName, TargetTimeout, DEADLINE_MARGIN, DEFAULT_SLOW_INTERVAL,
    DEFAULT_TIMEOUT, MAX_TIMEOUT,
};
pub use rounds::{series, Figures, Health, Server, SlowCache, Targets};
pub use tls::{mysql_ssl_opts, redis_certificates, PgTls, Roots, TlsMode, TlsOptions};

/// The collector of one kind's targets (`S` is the kind's session: `mysql::Session`, …), or
/// `None` (and a log line saying so) when there are none. The kind's module names itself in the
/// `COLLECTORS` table, so this module needs none of them.
pub fn collector<S: Server>(kind: Kind, targets: Vec<Target>) -> Option<super::Work> {
    let (section, var) = (kind.section(), kind.env_var());
    if targets.is_empty() {
        log::info!(
            "collector {section} is off: no [[{section}]] target in the config and {var} is not set"
        );
        return None;
    }
    let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
    log::info!("collector {section}: targets {}", names.join(", "));
    Some(super::Work::network(
        Targets::<S>::new(targets),
        |t, d| async move { t.collect(d).await },
    ))
}

/// A driver's error as a log line can carry it: its message with anything that looks like a URL
/// with credentials cut out, on one line.
pub fn describe(error: &dyn fmt::Display, password: Option<&str>) -> String {
    let mut text = error.to_string().replace('\n', " ");
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        text = text.replace(p, "***");
    }
    // user:secret@host in any URL-like text.
    let mut out = String::with_capacity(text.len());
    for word in text.split(' ') {
        if !out.is_empty() {
            out.push(' ');
        }
        match (word.find("://"), word.rfind('@')) {
            (Some(start), Some(at)) if at > start => {
                out.push_str(&word[..start + 3]);
                out.push_str("***");
                out.push_str(&word[at..]);
            }
            _ => out.push_str(word),
        }
    }
    out
}

/// The rows of a SQL answer, each cell as text (`None` for NULL): how the database collectors
/// keep and record what a server said.
pub type Rows = Vec<Vec<Option<String>>>;

/// The `target` label.
pub fn target_label(name: &str) -> crate::metrics::Labels {
    vec![("target", name.to_string().into())]
}

/// Like [`describe`], with the error's causes after it (tokio-postgres says only "db error" at the
/// top; the server's message is its source).
pub fn describe_chain(error: &dyn std::error::Error, password: Option<&str>) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    describe(&text, password)
}

/// A figure from a server's answer (SHOW STATUS, INFO, a query's cell): every figure these
/// collectors serve is a count, a size or a time, so only a finite number ≥ 0 is one. Anything
/// else (a proxy's `-1`, `inf`, `NaN`, `1e999`, text) is left out with a throttled warning
/// rather than served as a sample; parsing as f64 never panics or wraps.
pub fn server_number(field: &str, text: &str) -> Option<f64> {
    let text = text.trim();
    let value = text
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0);
    if value.is_none() {
        crate::warn_throttled!(
            "database-server-number",
            "a server answered {} = {:?}, which is not a count, size or time: left out",
            printable(field),
            printable(&text.chars().take(40).collect::<String>())
        );
    }
    value
}

/// A label value shown as text: control characters (Celery's priority queues are named
/// `celery\x06\x163`) become `\xHH`.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_cuts_credentials() {
        let msg = describe(
            &"failed for redis://bob:pw123@host:6379/0 (pw123)",
            Some("pw123"),
        );
        assert!(!msg.contains("pw123"), "{msg}");
        assert!(msg.contains("@host:6379/0"), "{msg}");
    }

    #[test]
    fn server_numbers_are_finite_and_not_negative() {
        assert_eq!(server_number("x", " 42 "), Some(42.0));
        assert_eq!(
            server_number("x", "18446744073709551615"),
            Some(1.8446744073709552e19)
        );
        for bad in ["-1", "inf", "NaN", "1e999", "", "ON"] {
            assert_eq!(server_number("x", bad), None, "{bad}");
        }
    }

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(printable("celery\x06\x163"), "celery\\x06\\x163");
        assert_eq!(printable("celery"), "celery");
    }
}
