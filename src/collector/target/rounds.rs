//! The skeleton every database collector shares, written once: one connection kept per target
//! and dropped on any failure (the next scrape connects again), each round under the target's
//! deadline, passwords scrubbed from every message, one log line per distinct failure and per
//! degraded mode, and the `up` gauge.
//!
//! A kind of server ([`Server`]) adds only its connect, one round of queries returning the
//! server's plain answers, and a pure function from those answers to its figures. The answers of
//! real servers are recorded under `tests/fixtures/db/`, and `tests/golden_db.rs` pins the exact
//! text the figures make of them.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{target_label, Target};
use crate::logging::Condition;
use crate::metrics::MetricSet;

/// What one kind of server (MySQL, PostgreSQL, Redis) adds to the skeleton.
pub trait Server: Send + Sync + 'static {
    /// A connection kept across scrapes.
    type Conn: Send;
    /// What one round's queries answered, as plain data (recorded for the golden test).
    type Answers: Send;
    /// The collector's name, in log lines.
    const NAME: &'static str;
    /// The `up` gauge's name and help.
    const UP: (&'static str, &'static str);

    /// The kind's own state for one target: cached slow answers, connect-time conditions.
    fn new(target: &Target) -> Self;

    /// Opens a connection. `password` holds the one from `password_file`; where it is `None` the
    /// URL's password is put there, so that every later message can be scrubbed of it.
    fn connect(
        &self,
        target: &Target,
        password: &mut Option<String>,
    ) -> impl Future<Output = Result<Self::Conn, String>> + Send;

    /// One round of queries on the kept connection. An error fails the round (`up 0`, the
    /// connection dropped); what the server refuses but the target survives goes in the answers.
    fn ask(
        &self,
        target: &Target,
        conn: &mut Self::Conn,
        password: Option<&str>,
    ) -> impl Future<Output = Result<Self::Answers, String>> + Send;

    /// The figures a round's answers make, for the target named `target`. Pure: no I/O, no log.
    fn figures(target: &str, answers: &Self::Answers) -> Figures;

    /// Forgets what was cached, after a failed round (the server may have been replaced).
    fn forget(&self) {}
}

/// The series of one round, and the degraded modes it shows.
#[derive(Debug, Default)]
pub struct Figures {
    pub set: MetricSet,
    /// (what, why): a degraded mode that holds (`Some(why)`) or no longer does (`None`); each is
    /// logged once when it starts or changes and once when it ends.
    pub notes: Vec<(String, Option<String>)>,
}

impl Figures {
    pub fn note(&mut self, what: String, why: Option<String>) {
        self.notes.push((what, why));
    }
}

/// A target's series: `up`, then the figures of its round where it succeeded.
pub fn series<S: Server>(target: &str, figures: Option<MetricSet>) -> MetricSet {
    let mut set = MetricSet::default();
    let (up_name, up_help) = S::UP;
    set.gauge(
        up_name,
        up_help,
        target_label(target),
        f64::from(figures.is_some()),
    );
    if let Some(figures) = figures {
        set.extend(figures);
    }
    set
}

/// The collector of one kind: its targets, each scraped concurrently.
pub struct Targets<S: Server> {
    targets: Vec<Watched<S>>,
}

impl<S: Server> fmt::Debug for Targets<S> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self
            .targets
            .iter()
            .map(|t| t.target.name.as_str())
            .collect();
        f.debug_struct(S::NAME).field("targets", &names).finish()
    }
}

impl<S: Server> Targets<S> {
    pub fn new(targets: Vec<Target>) -> Targets<S> {
        let targets = targets
            .into_iter()
            .map(|target| Watched {
                server: S::new(&target),
                target,
                kept: Mutex::new(None),
                health: Health::default(),
                notes: std::sync::Mutex::default(),
            })
            .collect();
        Targets { targets }
    }

    /// Every target's series; a target that fails is `up 0` and never fails the collector.
    pub async fn collect(&self, deadline: Instant) -> anyhow::Result<MetricSet> {
        let sets =
            futures_util::future::join_all(self.targets.iter().map(|t| t.scrape(deadline))).await;
        let mut out = MetricSet::default();
        for set in sets {
            out.extend(set);
        }
        Ok(out)
    }

    /// One round's answers of every target, by target name: what the golden test's recorder
    /// writes to `tests/fixtures/db/`.
    pub async fn answers(&self, deadline: Instant) -> Vec<(String, Result<S::Answers, String>)> {
        let rounds = self.targets.iter().map(|t| t.answers(deadline));
        let answers = futures_util::future::join_all(rounds).await;
        let names = self.targets.iter().map(|t| t.target.name.clone());
        names.zip(answers).collect()
    }
}

/// One target, its kept connection and what has been logged about it.
struct Watched<S: Server> {
    target: Target,
    server: S,
    kept: Mutex<Option<Kept<S::Conn>>>,
    health: Health,
    /// The degraded modes of its figures, by what they say, each logged once.
    notes: std::sync::Mutex<HashMap<String, Condition>>,
}

/// A connection and the password it was made with (from the file or the URL), kept to scrub it
/// out of the messages of later rounds.
struct Kept<C> {
    conn: C,
    password: Option<String>,
}

impl<S: Server> Watched<S> {
    async fn scrape(&self, deadline: Instant) -> MetricSet {
        let figures = self.answers(deadline).await.ok().map(|answers| {
            let figures = S::figures(&self.target.name, &answers);
            self.log_notes(figures.notes);
            figures.set
        });
        series::<S>(&self.target.name, figures)
    }

    /// One round under the target's deadline. A failure is logged once per reason, and the
    /// connection dropped (closing one to a server that hangs could hang too: it is let go).
    async fn answers(&self, deadline: Instant) -> Result<S::Answers, String> {
        let mut kept = self.kept.lock().await;
        let round = self.round(&mut kept);
        let answers = tokio::time::timeout_at(self.target.work_deadline(deadline), round)
            .await
            .unwrap_or_else(|_| Err("no answer within the timeout".to_string()));
        let name = &self.target.name;
        match &answers {
            Ok(_) => self.health.succeeded(S::NAME, name),
            Err(reason) => {
                self.health.failed(S::NAME, name, reason);
                *kept = None;
                self.server.forget();
            }
        }
        answers
    }

    async fn round(&self, slot: &mut Option<Kept<S::Conn>>) -> Result<S::Answers, String> {
        // Read on every round: a rotated secret is used at the next connect, and a file gone
        // unreadable fails the target now rather than at its next reconnect.
        let mut password = self.target.file_password()?;
        let kept = match slot {
            Some(kept) => kept,
            None => {
                let conn = self.server.connect(&self.target, &mut password).await?;
                slot.insert(Kept {
                    conn,
                    password: password.clone(),
                })
            }
        };
        let password = password.or_else(|| kept.password.clone());
        self.server
            .ask(&self.target, &mut kept.conn, password.as_deref())
            .await
    }

    fn log_notes(&self, notes: Vec<(String, Option<String>)>) {
        let mut conditions = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        for (what, why) in notes {
            conditions.entry(what.clone()).or_default().set(&what, why);
        }
    }
}

/// Remembers a target's last failure, so that a server that stays down logs one warning (and
/// one when the reason changes, and one info line when it is back), not one per scrape.
#[derive(Debug, Default)]
pub struct Health {
    last_error: std::sync::Mutex<Option<String>>,
}

impl Health {
    pub fn failed(&self, collector: &str, target: &str, reason: &str) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_deref() == Some(reason) {
            log::debug!("{collector} target {target:?} still down: {reason}");
        } else {
            log::warn!("{collector} target {target:?} is down (up 0): {reason}");
            *last = Some(reason.to_string());
        }
    }

    pub fn succeeded(&self, collector: &str, target: &str) {
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        if last.take().is_some() {
            log::info!("{collector} target {target:?} is up again");
        }
    }
}
