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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

    /// Whether the costly answers the kind caches (fetched every `slow_interval`) are due again:
    /// the skeleton then has [`Server::refresh`] fetch them after the round, off the scrape's
    /// path, while the round used the cached ones once more.
    fn refresh_due(&self, _target: &Target) -> bool {
        false
    }

    /// Fetches the cached costly answers again on the kept connection.
    fn refresh(
        &self,
        _target: &Target,
        _conn: &mut Self::Conn,
        _password: Option<&str>,
    ) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }
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

/// `stack_database_target_info`: what a target is, so that the rules can tell a managed
/// service (no local process to expect) from a local one before it has answered for a day.
/// `tls` is the mode's label, read once when the target is set up.
pub fn target_info(target: &Target, tls: &str) -> MetricSet {
    let mut set = MetricSet::default();
    let mut labels = target_label(&target.name);
    labels.push(("service", target.kind.service().into()));
    labels.push(("managed", target.managed.to_string().into()));
    labels.push(("tls", tls.to_string().into()));
    set.gauge(
        "stack_database_target_info",
        "1 for each database or Redis target: its service (as in stack_service_up), whether it \
         is managed (RDS, ElastiCache: no local process) and its TLS mode as configured.",
        labels,
        1.0,
    );
    set
}

/// The collector of one kind: its targets, each scraped concurrently.
pub struct Targets<S: Server> {
    targets: Vec<Arc<Watched<S>>>,
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
                tls: target
                    .tls()
                    .map_or("invalid", |(_, options)| options.mode.label()),
                target,
                kept: Mutex::new(None),
                refreshing: AtomicBool::new(false),
                health: Health::default(),
                notes: std::sync::Mutex::default(),
            })
            .map(Arc::new)
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
    /// The TLS mode's label, for `stack_database_target_info`.
    tls: &'static str,
    server: S,
    kept: Mutex<Option<Kept<S::Conn>>>,
    /// A refresh of the costly answers is under way or waits for the connection.
    refreshing: AtomicBool,
    health: Health,
    /// The degraded modes of its figures, by what they say, each logged once.
    notes: std::sync::Mutex<HashMap<String, Condition>>,
}

/// A kind's costly answers for one target, fetched every `slow_interval` and kept between rounds.
#[derive(Debug, Default)]
pub struct SlowCache<T>(std::sync::Mutex<Option<(Instant, T)>>);

impl<T: Clone> SlowCache<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, T)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The kept answers, for a round: due ones too (a refresh fetches them again after the
    /// round); none with an interval of 0, which asks for them in every round.
    pub fn get(&self, interval: Duration) -> Option<T> {
        if interval.is_zero() {
            return None;
        }
        self.lock().as_ref().map(|(_, answers)| answers.clone())
    }

    /// Whether the kept answers are `interval` old (never with an interval of 0).
    pub fn due(&self, interval: Duration) -> bool {
        let kept = self.lock();
        kept.as_ref()
            .is_some_and(|(at, _)| !interval.is_zero() && at.elapsed() >= interval)
    }

    pub fn store(&self, answers: T) {
        *self.lock() = Some((Instant::now(), answers));
    }

    pub fn forget(&self) {
        *self.lock() = None;
    }
}

/// Marks its target's refresh as ended when dropped, a panicked one too.
struct Refreshing<S: Server>(Arc<Watched<S>>);

impl<S: Server> Drop for Refreshing<S> {
    fn drop(&mut self) {
        self.0.refreshing.store(false, Ordering::Release);
    }
}

/// A connection and the password it was made with (from the file or the URL), kept to scrub it
/// out of the messages of later rounds.
struct Kept<C> {
    conn: C,
    password: Option<String>,
}

impl<S: Server> Watched<S> {
    async fn scrape(self: &Arc<Self>, deadline: Instant) -> MetricSet {
        let figures = self.answers(deadline).await.ok().map(|answers| {
            let figures = S::figures(&self.target.name, &answers);
            self.log_notes(figures.notes);
            figures.set
        });
        let mut set = series::<S>(&self.target.name, figures);
        set.extend(target_info(&self.target, self.tls));
        set
    }

    /// One round under the target's deadline. A failure is logged once per reason, and the
    /// connection dropped (closing one to a server that hangs could hang too: it is let go).
    async fn answers(self: &Arc<Self>, deadline: Instant) -> Result<S::Answers, String> {
        let until = self.target.work_deadline(deadline);
        // The connection may be busy with a refresh of the slow answers: waited for within
        // the round's own time, so a server that hangs fails this target alone.
        let Ok(mut kept) = tokio::time::timeout_at(until, self.kept.lock()).await else {
            let reason = "no answer within the timeout (to the slow queries, still running)";
            self.health.failed(S::NAME, &self.target.name, reason);
            return Err(reason.to_string());
        };
        let round = self.round(&mut kept);
        let answers = tokio::time::timeout_at(until, round)
            .await
            .unwrap_or_else(|_| Err("no answer within the timeout".to_string()));
        let name = &self.target.name;
        match &answers {
            Ok(_) => {
                self.health.succeeded(S::NAME, name);
                if self.server.refresh_due(&self.target) {
                    self.refresh_later();
                }
            }
            Err(reason) => self.fail(&mut kept, reason),
        }
        answers
    }

    /// A failed round or refresh: logged once per reason, the connection dropped (closing one
    /// to a server that hangs could hang too: it is let go) and the cache forgotten.
    fn fail(&self, kept: &mut Option<Kept<S::Conn>>, reason: &str) {
        self.health.failed(S::NAME, &self.target.name, reason);
        *kept = None;
        self.server.forget();
    }

    /// Fetches the costly answers again in a task of its own, once this round has let the
    /// connection go: a round that comes before it ends waits for it. A failure is handled as a
    /// round's, so the next round connects again and fetches them itself (`up 0` if it fails).
    fn refresh_later(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let refreshing = Refreshing(self.clone());
        tokio::spawn(async move {
            let watched = &refreshing.0;
            let mut kept = watched.kept.lock().await;
            if let Some(Kept { conn, password }) = kept.as_mut() {
                let refresh = watched
                    .server
                    .refresh(&watched.target, conn, password.as_deref());
                let result = tokio::time::timeout(watched.target.timeout, refresh)
                    .await
                    .unwrap_or_else(|_| Err("no answer within the timeout".to_string()));
                if let Err(reason) = result {
                    watched.fail(&mut kept, &reason);
                }
            }
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::target::{Kind, SecretUrl};
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// What the scripted server does in its next round.
    enum Step {
        Answer(f64),
        Fail,
        Hang,
    }

    /// A server that follows a script: the skeleton's part (keeping, dropping, deadlines, `up`)
    /// is then the only thing tested.
    #[derive(Default)]
    struct Scripted {
        connects: AtomicUsize,
        forgotten: AtomicUsize,
        script: std::sync::Mutex<VecDeque<Step>>,
        /// What each refresh of the slow answers does; one is due while any is left.
        refreshes: std::sync::Mutex<VecDeque<Step>>,
        passwords: std::sync::Mutex<Vec<Option<String>>>,
    }

    impl Server for Scripted {
        type Conn = usize;
        type Answers = (usize, f64);
        const NAME: &'static str = "scripted";
        const UP: (&'static str, &'static str) = ("stack_scripted_up", "1 if up.");

        fn new(_: &Target) -> Scripted {
            Scripted::default()
        }

        async fn connect(
            &self,
            _: &Target,
            password: &mut Option<String>,
        ) -> Result<usize, String> {
            *password = Some("from-the-url".to_string());
            Ok(self.connects.fetch_add(1, Ordering::SeqCst) + 1)
        }

        async fn ask(
            &self,
            _: &Target,
            conn: &mut usize,
            password: Option<&str>,
        ) -> Result<(usize, f64), String> {
            let step = self.script.lock().unwrap().pop_front();
            self.passwords
                .lock()
                .unwrap()
                .push(password.map(String::from));
            match step {
                Some(Step::Answer(v)) => Ok((*conn, v)),
                Some(Step::Fail) | None => Err("refused".to_string()),
                Some(Step::Hang) => std::future::pending().await,
            }
        }

        fn figures(target: &str, answers: &(usize, f64)) -> Figures {
            let mut figures = Figures::default();
            let labels = target_label(target);
            figures
                .set
                .gauge("stack_scripted_value", "v", labels.clone(), answers.1);
            figures
                .set
                .gauge("stack_scripted_conn", "c", labels, answers.0 as f64);
            figures
        }

        fn forget(&self) {
            self.forgotten.fetch_add(1, Ordering::SeqCst);
        }

        fn refresh_due(&self, _: &Target) -> bool {
            !self.refreshes.lock().unwrap().is_empty()
        }

        async fn refresh(&self, _: &Target, _: &mut usize, _: Option<&str>) -> Result<(), String> {
            let step = self.refreshes.lock().unwrap().pop_front();
            match step {
                Some(Step::Answer(_)) | None => Ok(()),
                Some(Step::Fail) => Err("refused".to_string()),
                Some(Step::Hang) => std::future::pending().await,
            }
        }
    }

    fn scripted(steps: Vec<Step>) -> Targets<Scripted> {
        let target = Target {
            name: "t".into(),
            kind: Kind::Redis,
            managed: false,
            url: SecretUrl::parse("redis://h/", Kind::Redis).unwrap(),
            password_file: None,
            timeout: Duration::from_secs(3),
            slow_interval: Duration::from_secs(60),
            queues: vec![],
        };
        let targets = Targets::<Scripted>::new(vec![target]);
        targets.targets[0]
            .server
            .script
            .lock()
            .unwrap()
            .extend(steps);
        targets
    }

    async fn scrape(targets: &Targets<Scripted>, within: Duration) -> MetricSet {
        targets.collect(Instant::now() + within).await.unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_kept_dropped_on_failure_and_made_again() {
        let steps = vec![
            Step::Answer(5.0),
            Step::Answer(6.0),
            Step::Fail,
            Step::Answer(7.0),
        ];
        let targets = scripted(steps);
        let t = [("target", "t")];
        let long = Duration::from_secs(10);
        for (value, conn) in [(5.0, 1.0), (6.0, 1.0)] {
            let set = scrape(&targets, long).await;
            assert_eq!(set.value("stack_scripted_up", &t), Some(1.0));
            assert_eq!(set.value("stack_scripted_value", &t), Some(value));
            assert_eq!(set.value("stack_scripted_conn", &t), Some(conn), "kept");
        }
        let set = scrape(&targets, long).await;
        assert_eq!(set.value("stack_scripted_up", &t), Some(0.0));
        assert_eq!(set.value("stack_scripted_value", &t), None);
        let server = &targets.targets[0].server;
        assert_eq!(server.forgotten.load(Ordering::SeqCst), 1);
        let set = scrape(&targets, long).await;
        assert_eq!(
            set.value("stack_scripted_conn", &t),
            Some(2.0),
            "made again"
        );
        // The URL's password, learned at connect, is passed on in every later round to scrub.
        let passwords = server.passwords.lock().unwrap().clone();
        assert!(
            passwords
                .iter()
                .all(|p| p.as_deref() == Some("from-the-url")),
            "{passwords:?}"
        );
    }

    #[tokio::test]
    async fn a_hanging_round_ends_at_the_scrape_deadline_as_up_0() {
        let targets = scripted(vec![Step::Hang, Step::Answer(1.0)]);
        let started = Instant::now();
        let set = scrape(&targets, Duration::from_millis(400)).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            set.value("stack_scripted_up", &[("target", "t")]),
            Some(0.0)
        );
        let set = scrape(&targets, Duration::from_secs(10)).await;
        assert_eq!(
            set.value("stack_scripted_conn", &[("target", "t")]),
            Some(2.0)
        );
    }

    /// The slow answers' refresh runs after the round that found them due, on the kept
    /// connection. One that hangs holds the connection: the next round waits for it only within
    /// its own time and fails alone (`up 0`), and the refresh ends at the target's timeout, the
    /// connection dropped, so the round after connects again.
    #[tokio::test]
    async fn a_refresh_follows_the_round_and_one_that_hangs_fails_its_target_alone() {
        let targets = scripted(vec![Step::Answer(1.0), Step::Answer(2.0)]);
        let server = &targets.targets[0].server;
        server.refreshes.lock().unwrap().push_back(Step::Hang);
        let t = [("target", "t")];
        let set = scrape(&targets, Duration::from_secs(10)).await;
        assert_eq!(
            set.value("stack_scripted_value", &t),
            Some(1.0),
            "not held up"
        );
        tokio::task::yield_now().await; // the refresh starts, and hangs

        let started = Instant::now();
        let set = scrape(&targets, Duration::from_millis(400)).await;
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(set.value("stack_scripted_up", &t), Some(0.0));
        assert_eq!(server.script.lock().unwrap().len(), 1, "no round was asked");

        tokio::time::sleep(Duration::from_secs(4)).await; // past the target's 3 s timeout
        assert_eq!(
            server.forgotten.load(Ordering::SeqCst),
            1,
            "the hung refresh failed"
        );
        let set = scrape(&targets, Duration::from_secs(10)).await;
        assert_eq!(set.value("stack_scripted_value", &t), Some(2.0));
        assert_eq!(
            set.value("stack_scripted_conn", &t),
            Some(2.0),
            "connected again"
        );
        assert!(!targets.targets[0].refreshing.load(Ordering::SeqCst));
    }
}
