//! PostgreSQL (THRESHOLDS rows A4, A5, P3, P6, D2): backends by state against `max_connections`,
//! the oldest open transaction, commits, rollbacks, deadlocks, buffer cache hits and reads, when
//! the server started, the size of each database, and statement time from `pg_stat_statements`
//! where it is installed. PostgreSQL counts no refused connections (`too many clients` is only
//! in its log), so there is no refusal figure.
//!
//! One connection per target is kept across scrapes (PostgreSQL forks a backend per connection);
//! it is dropped on any error and made again on the next scrape. Queries use the simple protocol
//! and carry a server-side `statement_timeout` equal to the target's timeout. The statements of
//! every scrape are prepared once per connection (SQL `PREPARE`) and run with `EXECUTE`: these
//! queries of views cost PostgreSQL about 0.2 ms of CPU each to parse, rewrite and plan, several
//! times what running them costs (docs/performance.md). `max_connections`, database sizes and
//! whether `pg_stat_statements` is there are fetched every `slow_interval` (60 s unless
//! configured); everything else on every scrape.
//!
//! The session is `application_name=stack_exporter` unless the URL names one. What the role may
//! not read is a `…_readable 0` series and one log line, never a smaller number: a database it may
//! not CONNECT to (no size), other roles' sessions without `pg_read_all_stats` (their state and
//! transaction age hidden), `pg_stat_statements` absent or refused.

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage, SimpleQueryRow};

use super::target::{
    describe_chain, printable, server_number, target_label, Figures, PgTls, Rows, Server,
    SlowCache, Target, Targets, TlsMode,
};

/// The `application_name` of the exporter's sessions, unless the URL gives one.
pub const APPLICATION_NAME: &str = "stack_exporter";

/// Column `i` of a row as a number: a finite number ≥ 0, or `None` (NULL, absent, nonsense).
fn number(row: &[Option<String>], i: usize, field: &str) -> Option<f64> {
    server_number(field, row.get(i)?.as_deref()?)
}

/// Column `i` of a row as text.
fn text(row: &[Option<String>], i: usize) -> Option<String> {
    row.get(i)?.clone()
}

/// The PostgreSQL collector: the shared skeleton over [`Session`].
pub type Postgres = Targets<Session>;

/// A PostgreSQL target's own state: its slow answers and when they were fetched.
pub struct Session {
    slow: SlowCache<SlowAnswers>,
}

/// A client and the task that drives its socket; the task ends with the client.
pub struct PgConn {
    client: Client,
    driver: JoinHandle<()>,
    /// `stack_statements` is prepared in this session (only where pg_stat_statements is
    /// installed, so not at connect time).
    statements_prepared: bool,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// What the server answered to the queries made every `slow_interval`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowAnswers {
    /// One row: max_connections, server_version_num, whether pg_stat_statements is installed,
    /// whether the role reads every session (1 or 0).
    pub settings: Rows,
    /// Each database and its size (NULL where the role may not read it).
    pub sizes: Rows,
}

/// What one round's queries answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Answers {
    pub slow: SlowAnswers,
    /// Client backends by state.
    pub activity: Rows,
    /// The oldest transaction's age; `None` where the role may not see other roles' sessions.
    pub oldest: Option<Rows>,
    /// Commits, rollbacks, deadlocks, blocks hit and read, all databases; the start time.
    pub totals: Rows,
    /// pg_stat_statements' calls and time: `None` where it is not installed, why it could not be
    /// read where it is but is not loaded or is refused.
    pub statements: Option<Result<Rows, String>>,
}

/// The slow answers' first row, read.
struct Settings {
    max_connections: Option<f64>,
    /// The role sees every session's state (superuser or pg_read_all_stats).
    activity_readable: bool,
    /// The query of `pg_stat_statements` that fits the server's version, if the extension is
    /// installed in the database the exporter connects to.
    statements_query: Option<&'static str>,
}

impl Settings {
    fn read(slow: &SlowAnswers) -> Settings {
        let empty = Vec::new();
        let row = slow.settings.first().unwrap_or(&empty);
        let version = number(row, 1, "server_version_num").unwrap_or(0.0);
        let installed = number(row, 2, "pg_extension count").unwrap_or(0.0) > 0.0;
        Settings {
            max_connections: number(row, 0, "max_connections"),
            activity_readable: number(row, 3, "pg_read_all_stats") == Some(1.0),
            statements_query: installed.then_some(if version >= 130000.0 {
                "SELECT sum(calls), sum(total_exec_time) / 1000 FROM pg_stat_statements"
            } else {
                "SELECT sum(calls), sum(total_time) / 1000 FROM pg_stat_statements"
            }),
        }
    }
}

// pg_database_size needs CONNECT on the database or pg_read_all_stats (which also shows every
// session's state): ask first rather than have the whole query refused.
const SETTINGS_QUERY: &str =
    "SELECT current_setting('max_connections'), current_setting('server_version_num'), \
     (SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'), \
     CASE WHEN current_setting('is_superuser') = 'on' THEN 1 \
     WHEN to_regrole('pg_read_all_stats') IS NULL THEN 0 \
     WHEN pg_has_role('pg_read_all_stats', 'USAGE') THEN 1 ELSE 0 END";
const ALL_SIZES_QUERY: &str = "SELECT datname, pg_database_size(oid) FROM pg_database \
     WHERE datallowconn AND NOT datistemplate ORDER BY datname";
const CONNECT_SIZES_QUERY: &str =
    "SELECT datname, CASE WHEN has_database_privilege(oid, 'CONNECT') \
     THEN pg_database_size(oid) END FROM pg_database \
     WHERE datallowconn AND NOT datistemplate ORDER BY datname";
/// Client backends by state, and per state the oldest open transaction of any client backend but
/// the exporter's own: one scan of pg_stat_activity for both (each scan copies every backend's
/// status and is planned anew).
const ACTIVITY_QUERY: &str = "SELECT coalesce(state, 'none'), count(*), \
     coalesce(extract(epoch FROM max(clock_timestamp() - xact_start) \
     FILTER (WHERE pid <> pg_backend_pid())), 0) \
     FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1 ORDER BY 1";
/// The counters of [`TOTALS`], then the postmaster's start time (a restart between two scrapes
/// shows as a new one: PostgreSQL has no uptime counter).
const TOTALS_QUERY: &str = "SELECT sum(xact_commit), sum(xact_rollback), sum(deadlocks), \
     sum(blks_hit), sum(blks_read), extract(epoch FROM pg_postmaster_start_time()) \
     FROM pg_stat_database";

const EXECUTE_ACTIVITY: &str = "EXECUTE stack_activity";
const EXECUTE_TOTALS: &str = "EXECUTE stack_totals";
const EXECUTE_STATEMENTS: &str = "EXECUTE stack_statements";

/// Prepares the statements every scrape runs, in a new session: one round trip.
fn prepare_every_scrape() -> String {
    format!("PREPARE stack_activity AS {ACTIVITY_QUERY};\nPREPARE stack_totals AS {TOTALS_QUERY}")
}

/// Prepares pg_stat_statements' query, `sql`, once in the session. Analysed, not run: a module
/// installed but not loaded fails at each EXECUTE, as the query alone would.
async fn prepare_statements(
    conn: &mut PgConn,
    sql: &str,
    password: Option<&str>,
) -> Result<(), String> {
    query(
        &conn.client,
        &format!("PREPARE stack_statements AS {sql}"),
        password,
    )
    .await?;
    conn.statements_prepared = true;
    Ok(())
}

impl Server for Session {
    type Conn = PgConn;
    type Answers = Answers;
    const NAME: &'static str = "postgres";
    const UP: (&'static str, &'static str) = (
        "stack_postgres_up",
        "1 if the last query round on this PostgreSQL target succeeded.",
    );

    fn new(_: &Target) -> Session {
        Session {
            slow: SlowCache::default(),
        }
    }

    async fn connect(
        &self,
        target: &Target,
        password: &mut Option<String>,
    ) -> Result<PgConn, String> {
        let (url, tls) = target.tls()?;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| format!("bad URL: {}", describe_chain(&e, password.as_deref())))?;
        match password.as_deref() {
            Some(p) => {
                config.password(p);
            }
            // Keep the URL's password at hand, to cut it out of any message.
            None => {
                *password = config
                    .get_password()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
            }
        }
        let timeout_ms = target.timeout.as_millis().max(1);
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        config
            .connect_timeout(target.timeout)
            .options(format!("-c statement_timeout={timeout_ms}"));
        let fail = |e: tokio_postgres::Error| describe_chain(&e, password.as_deref());
        // The driver reads disable, prefer and require; verify-ca and verify-full are require
        // with the certificate checked by the connector.
        let (client, driver) = match tls.mode {
            TlsMode::Disable => {
                let (client, connection) = config
                    .ssl_mode(SslMode::Disable)
                    .connect(NoTls)
                    .await
                    .map_err(fail)?;
                (client, drive(connection))
            }
            mode => {
                config.ssl_mode(match mode {
                    TlsMode::Prefer => SslMode::Prefer,
                    _ => SslMode::Require,
                });
                let (client, connection) = config.connect(PgTls::new(&tls)?).await.map_err(fail)?;
                (client, drive(connection))
            }
        };
        query(&client, &prepare_every_scrape(), password.as_deref()).await?;
        Ok(PgConn {
            client,
            driver,
            statements_prepared: false,
        })
    }

    async fn ask(
        &self,
        target: &Target,
        conn: &mut PgConn,
        password: Option<&str>,
    ) -> Result<Answers, String> {
        let slow = self
            .slow_answers(target, &|sql| query(&conn.client, sql, password))
            .await?;
        let settings = Settings::read(&slow);
        let statements_prepared = match settings.statements_query {
            Some(sql) if !conn.statements_prepared => prepare_statements(conn, sql, password).await,
            _ => Ok(()),
        };
        let query = |sql: &'static str| query(&conn.client, sql, password);
        // One simple query for both: it runs its statements in order.
        let batch = queries(&conn.client, &[EXECUTE_ACTIVITY, EXECUTE_TOTALS], password);
        // pg_stat_statements apart, pipelined beside the batch (the same round trip): installed
        // but not loaded (shared_preload_libraries) or refused, it fails alone and the target
        // stays up; tried again on every scrape.
        let statements = async {
            match (settings.statements_query, statements_prepared) {
                (None, _) => None,
                (Some(_), Ok(())) => Some(query(EXECUTE_STATEMENTS).await),
                (Some(_), Err(e)) => Some(Err(e)),
            }
        };
        let (answered, statements) = futures_util::future::join(batch, statements).await;
        let mut answered = answered?.into_iter();
        let (Some(activity), Some(totals)) = (answered.next(), answered.next()) else {
            return Err("fewer answers than statements".to_string());
        };
        // Where other roles' sessions are hidden, so are their transactions: no age then.
        let oldest = settings
            .activity_readable
            .then(|| oldest_transaction(&activity));
        Ok(Answers {
            slow,
            activity,
            oldest,
            totals,
            statements,
        })
    }

    fn figures(target: &str, answers: &Answers) -> Figures {
        figures(target, answers)
    }

    fn forget(&self) {
        self.slow.forget();
    }

    fn refresh_due(&self, target: &Target) -> bool {
        self.slow.due(target.slow_interval)
    }

    async fn refresh(
        &self,
        _: &Target,
        conn: &mut PgConn,
        password: Option<&str>,
    ) -> Result<(), String> {
        let query = |sql| query(&conn.client, sql, password);
        self.fetch_slow_answers(&query).await.map(|_| ())
    }
}

/// The task that drives a connection's socket until the client is dropped.
fn drive<T>(connection: tokio_postgres::Connection<tokio_postgres::Socket, T>) -> JoinHandle<()>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::debug!("postgres connection ended: {e}");
        }
    })
}

/// The oldest transaction's age among [`ACTIVITY_QUERY`]'s states, as a one-row answer.
fn oldest_transaction(activity: &Rows) -> Rows {
    let age = activity
        .iter()
        .filter_map(|row| number(row, 2, "transaction age"))
        .fold(0.0, f64::max);
    vec![vec![Some(age.to_string())]]
}

/// A simple query's rows (the simple protocol: no prepare round trip).
async fn query(client: &Client, sql: &str, password: Option<&str>) -> Result<Rows, String> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| describe_chain(&e, password))?;
    Ok(rows(messages))
}

/// Several statements in one simple query (one round trip): each one's rows, in order. The
/// first that fails fails them all, as it would alone.
async fn queries(
    client: &Client,
    statements: &[&str],
    password: Option<&str>,
) -> Result<Vec<Rows>, String> {
    let messages = client
        .simple_query(&statements.join(";\n"))
        .await
        .map_err(|e| describe_chain(&e, password))?;
    Ok(rows_by_statement(messages))
}

impl Session {
    /// The slow answers: the kept ones (fetched again after the round once `slow_interval`
    /// old), or fetched now where there are none.
    async fn slow_answers<F, Fut>(&self, target: &Target, query: &F) -> Result<SlowAnswers, String>
    where
        F: Fn(&'static str) -> Fut,
        Fut: std::future::Future<Output = Result<Rows, String>>,
    {
        match self.slow.get(target.slow_interval) {
            Some(slow) => Ok(slow),
            None => self.fetch_slow_answers(query).await,
        }
    }

    /// Asks the server the slow queries, and keeps the answers.
    async fn fetch_slow_answers<F, Fut>(&self, query: &F) -> Result<SlowAnswers, String>
    where
        F: Fn(&'static str) -> Fut,
        Fut: std::future::Future<Output = Result<Rows, String>>,
    {
        let settings = query(SETTINGS_QUERY).await?;
        if settings.is_empty() {
            return Err("no answer to SHOW max_connections".to_string());
        }
        let mut slow = SlowAnswers {
            settings,
            sizes: Vec::new(),
        };
        slow.sizes = query(match Settings::read(&slow).activity_readable {
            true => ALL_SIZES_QUERY,
            false => CONNECT_SIZES_QUERY,
        })
        .await?;
        self.slow.store(slow.clone());
        Ok(slow)
    }
}

/// The figures of one round's answers.
pub fn figures(target: &str, answers: &Answers) -> Figures {
    let mut out = Figures::default();
    let settings = Settings::read(&answers.slow);
    let labels = || target_label(target);
    let set = &mut out.set;
    for row in &answers.activity {
        if let (Some(state), Some(n)) = (text(row, 0), number(row, 1, "backends")) {
            let mut l = labels();
            l.push(("state", state.into()));
            set.gauge(
                "stack_postgres_connections",
                "Client backends by state (the exporter's own is one of the active; other \
                 roles' are under none when stack_postgres_activity_readable is 0).",
                l,
                n,
            );
        }
    }
    if let Some(max) = settings.max_connections {
        set.gauge(
            "stack_postgres_max_connections",
            "The max_connections setting.",
            labels(),
            max,
        );
    }
    set.gauge(
        "stack_postgres_activity_readable",
        "1 if the exporter's role sees every session's state (superuser or \
         pg_read_all_stats); 0 if other roles' states and transactions are hidden.",
        labels(),
        f64::from(settings.activity_readable),
    );
    let oldest = answers.oldest.as_ref().and_then(|rows| rows.first());
    if let Some(age) = oldest.and_then(|r| number(r, 0, "transaction age")) {
        set.gauge(
            "stack_postgres_oldest_transaction_seconds",
            "Age of the oldest open transaction of any client backend but the exporter's \
             (0 if none); left out when stack_postgres_activity_readable is 0.",
            labels(),
            age,
        );
    }
    if let Some(row) = answers.totals.first() {
        for (i, (name, help)) in TOTALS.iter().enumerate() {
            if let Some(v) = number(row, i, name) {
                set.counter(name, help, labels(), v);
            }
        }
        if let Some(started) = number(row, TOTALS.len(), "pg_postmaster_start_time") {
            set.gauge(
                "stack_postgres_start_time_seconds",
                "When the server (postmaster) started, Unix seconds; it changes when the server \
                 restarts.",
                labels(),
                started,
            );
        }
    }
    out.note(
        format!(
            "postgres target {target:?}: other roles' sessions hidden (stack_postgres_activity_readable 0)"
        ),
        (!settings.activity_readable).then(|| {
            "the role is neither superuser nor a member of pg_read_all_stats (GRANT pg_monitor): \
             their state counts as none and the oldest transaction is left out"
                .to_string()
        }),
    );
    size_figures(target, &answers.slow.sizes, &mut out);
    statement_figures(target, answers.statements.as_ref(), &mut out);
    out
}

/// The columns of [`TOTALS_QUERY`], served as counters: (metric, help).
const TOTALS: [(&str, &str); 5] = [
    (
        "stack_postgres_commits_total",
        "Transactions committed, all databases.",
    ),
    (
        "stack_postgres_rollbacks_total",
        "Transactions rolled back, all databases.",
    ),
    (
        "stack_postgres_deadlocks_total",
        "Deadlocks detected, all databases.",
    ),
    (
        "stack_postgres_blocks_hit_total",
        "Block reads served from the buffer cache, all databases.",
    ),
    (
        "stack_postgres_blocks_read_total",
        "Blocks read from disk (or the OS cache), all databases.",
    ),
];

/// `stack_postgres_database_size_bytes` of each database the role may read, and
/// `stack_postgres_database_size_readable` of every one.
fn size_figures(target: &str, sizes: &Rows, out: &mut Figures) {
    let mut unreadable = Vec::new();
    for row in sizes {
        let Some(database) = text(row, 0) else {
            continue;
        };
        let bytes = number(row, 1, "pg_database_size");
        let mut l = target_label(target);
        l.push(("database", database.clone().into()));
        match bytes {
            Some(bytes) => out.set.gauge(
                "stack_postgres_database_size_bytes",
                "Size of each database (pg_database_size), refreshed every slow_interval; \
                 left out when stack_postgres_database_size_readable is 0.",
                l.clone(),
                bytes,
            ),
            None => unreadable.push(printable(&database)),
        }
        out.set.gauge(
            "stack_postgres_database_size_readable",
            "1 if the exporter's role may read this database's size; 0 if it has neither \
             CONNECT on it nor pg_read_all_stats, so the size is unknown.",
            l,
            f64::from(bytes.is_some()),
        );
    }
    out.note(
        format!(
            "postgres target {target:?}: database sizes unknown (stack_postgres_database_size_readable 0)"
        ),
        (!unreadable.is_empty()).then(|| {
            format!(
                "no CONNECT on {} and no pg_read_all_stats (GRANT pg_monitor to the exporter's role)",
                unreadable.join(", ")
            )
        }),
    );
}

/// Statement calls and time from pg_stat_statements, and whether they could be read.
fn statement_figures(target: &str, statements: Option<&Result<Rows, String>>, out: &mut Figures) {
    let labels = || target_label(target);
    let refused = match statements {
        None => Some(
            "pg_stat_statements is not installed in the database the exporter connects to \
             (CREATE EXTENSION pg_stat_statements)"
                .to_string(),
        ),
        Some(Err(reason)) => Some(format!("pg_stat_statements not readable: {reason}")),
        Some(Ok(rows)) => {
            let row = rows.first();
            if let Some(calls) = row.and_then(|r| number(r, 0, "calls")) {
                out.set.counter(
                    "stack_postgres_statements_total",
                    "Statement calls counted by pg_stat_statements.",
                    labels(),
                    calls,
                );
            }
            if let Some(seconds) = row.and_then(|r| number(r, 1, "total_exec_time")) {
                out.set.counter(
                    "stack_postgres_statement_latency_seconds_total",
                    "Total execution time of the statements counted by pg_stat_statements.",
                    labels(),
                    seconds,
                );
            }
            None
        }
    };
    out.set.gauge(
        "stack_postgres_statements_readable",
        "1 if pg_stat_statements' totals were read; 0 if the extension is absent, not \
         loaded or refused (the statement series are then left out).",
        labels(),
        f64::from(refused.is_none()),
    );
    out.note(
        format!(
            "postgres target {target:?}: statement figures left out (stack_postgres_statements_readable 0)"
        ),
        refused,
    );
}

/// The rows of each statement of a simple query: each ends with its CommandComplete.
fn rows_by_statement(messages: Vec<SimpleQueryMessage>) -> Vec<Rows> {
    let mut statements = Vec::new();
    let mut current = Vec::new();
    for message in messages {
        match message {
            SimpleQueryMessage::Row(row) => current.push(cells(&row)),
            SimpleQueryMessage::CommandComplete(_) => statements.push(std::mem::take(&mut current)),
            _ => {}
        }
    }
    statements
}

/// A row's cells as text (NULL as `None`).
fn cells(row: &SimpleQueryRow) -> Vec<Option<String>> {
    (0..row.len())
        .map(|i| row.get(i).map(str::to_string))
        .collect()
}

fn rows(messages: Vec<SimpleQueryMessage>) -> Rows {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(cells(row)),
            _ => None,
        })
        .collect()
}
