//! One scrape: every enabled collector runs concurrently under the scrape's deadline; the framework
//! times each and publishes `stack_scrape_collector_duration_seconds` and `_success`, so a failing
//! or slow collector shows in the output and never fails the scrape.
//!
//! A collection runs as a task of its own, to its own deadline, and every scrape that arrives
//! while it runs waits for it and shares its result: two Prometheus servers scraping at once do
//! not double the load on the host or the databases, and a scraper that hangs up (or gives up at
//! its own, shorter timeout) cancels nothing, so the next scrape never finds collectors still busy
//! with a cut-off run.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use futures_util::future::BoxFuture;

use crate::collector::{exporter, Collector, Running, Started};
use crate::lane::{Ended, Lane};
use crate::metrics::MetricSet;
use crate::warn_throttled;

pub struct Scraper {
    shared: Arc<Shared>,
}

struct Shared {
    collectors: Vec<Arc<Collector>>,
    /// Per collector, whether a run of it is still under way.
    running: Vec<Arc<Running>>,
    /// The latest collection: its result once it has ended, `None` while it runs.
    latest: Mutex<Option<Collection>>,
    /// When the latest collection ended.
    ended_at: Mutex<Option<Instant>>,
}

/// A collection stops its collectors at its deadline and then gathers what they gave: the scraper
/// whose timeout set that deadline waits this much longer for it (or half its timeout, when that
/// is shorter: it is still well before the scraper gives up).
const ASSEMBLY_TIME: Duration = Duration::from_millis(100);

type Collection = watch::Receiver<Option<Arc<MetricSet>>>;

impl Scraper {
    pub fn new(collectors: Vec<Collector>) -> Scraper {
        Scraper {
            shared: Arc::new(Shared {
                running: collectors.iter().map(|_| Arc::default()).collect(),
                collectors: collectors.into_iter().map(Arc::new).collect(),
                latest: Mutex::new(None),
                ended_at: Mutex::new(None),
            }),
        }
    }

    pub fn collector_names(&self) -> Vec<&'static str> {
        self.shared.collectors.iter().map(|c| c.name()).collect()
    }

    /// The metrics of a collection that ends after this call began, answered within `timeout`
    /// (time spent waiting for a collection another scraper started counts against it). A new
    /// collection runs for `collect_for`: at least `timeout`, and more when the scraper's timeout
    /// is too short to be shared by the next one.
    pub async fn scrape(&self, timeout: Duration, collect_for: Duration) -> Arc<MetricSet> {
        let answer_by = Instant::now() + timeout + ASSEMBLY_TIME.min(timeout / 2);
        let mut collection = self.join_or_start(collect_for.max(timeout));
        match tokio::time::timeout_at(answer_by, collection.wait_for(Option::is_some)).await {
            Ok(Ok(ended)) => {
                if let Some(set) = ended.as_ref() {
                    return set.clone();
                }
            }
            Ok(Err(_)) => crate::logging::throttled(
                log::Level::Error,
                "collection without a result",
                format_args!("a collection ended without a result (a bug: see the panic above)"),
            ),
            Err(_) => warn_throttled!(
                "scrape answered before its collection ended",
                "a scrape's timeout of {timeout:?} ended before the collection did; \
                 answered without the collectors' figures"
            ),
        }
        Arc::new(self.shared.unanswered())
    }

    /// The result of the latest collection if it ended within `max_age`: a reader that can take
    /// figures a few seconds old (the status page) starts no collection of its own.
    pub fn recent(&self, max_age: Duration) -> Option<Arc<MetricSet>> {
        let ended_at = *self
            .shared
            .ended_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if ended_at?.elapsed() > max_age {
            return None;
        }
        let latest = self.shared.latest.lock().unwrap_or_else(|e| e.into_inner());
        let set = latest.as_ref()?.borrow().clone();
        set
    }

    /// The collection under way, or a new one when none is.
    fn join_or_start(&self, collect_for: Duration) -> Collection {
        let mut latest = self.shared.latest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = latest.as_ref().filter(|c| is_running(c)) {
            return running.clone();
        }
        let (result, collection) = watch::channel(None);
        *latest = Some(collection.clone());
        let shared = self.shared.clone();
        let deadline = Instant::now() + collect_for;
        tokio::spawn(async move {
            let set = shared.collect_all(deadline).await;
            *shared.ended_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            result.send_replace(Some(Arc::new(set)));
        });
        collection
    }
}

/// Not ended yet, and not abandoned (its task gone without a result).
fn is_running(collection: &Collection) -> bool {
    collection.borrow().is_none() && collection.has_changed().is_ok()
}

impl Shared {
    /// One deadline for every collector: it also names this collection, so collectors that share
    /// work (services and sockets share a /proc snapshot) know they are in the same one. Network
    /// collectors run as tasks; the blocking ones one after another on one lane of helper threads
    /// (one hand-off a scrape, not one each).
    async fn collect_all(&self, deadline: Instant) -> MetricSet {
        let started = Instant::now();
        let mut outcomes: Vec<Option<Outcome>> = self.collectors.iter().map(|_| None).collect();
        let (mut jobs, mut job_of, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
        for (index, (collector, running)) in self.collectors.iter().zip(&self.running).enumerate() {
            let Some(run) = running.start() else {
                let stuck = "its previous run has not ended yet (a hung filesystem or server?)";
                outcomes[index] = Some((Duration::ZERO, Err(anyhow::anyhow!(stuck))));
                continue;
            };
            match collector.start(deadline, run) {
                Started::Job(job) => {
                    jobs.push(job);
                    job_of.push(index);
                }
                Started::Future(work) => tasks.push((index, tokio::spawn(timed(work, deadline)))),
            }
        }
        let lane = Lane::start("blocking collectors", jobs, BLOCKING_STALL);
        let ended = lane.wait_until_async(deadline.into_std()).await;
        for (index, ended) in job_of.into_iter().zip(ended) {
            outcomes[index] = Some(match ended {
                Ended::Done(result, elapsed) => (elapsed, result),
                Ended::Panicked => (
                    started.elapsed(),
                    Err(anyhow::anyhow!("collector panicked")),
                ),
                Ended::NotYet => (started.elapsed(), Err(too_late(deadline - started))),
            });
        }
        for (index, task) in tasks {
            outcomes[index] = Some(task.await.unwrap_or_else(|e| {
                (
                    Duration::ZERO,
                    Err(anyhow::anyhow!("collector panicked: {e}")),
                )
            }));
        }
        let mut out = MetricSet::default();
        let mut figures = MetricSet::default();
        for (collector, outcome) in self.collectors.iter().zip(outcomes) {
            let (elapsed, result) = outcome.expect("every collector has an outcome");
            out.extend(self.outcome(collector.name(), elapsed, result, &mut figures));
        }
        out.extend(figures);
        exporter::own_metrics(&mut out);
        out
    }

    /// A collector's metrics, or nothing when it failed (logged); its duration and success go to
    /// `figures`.
    fn outcome(
        &self,
        name: &'static str,
        elapsed: Duration,
        result: anyhow::Result<MetricSet>,
        figures: &mut MetricSet,
    ) -> MetricSet {
        let labels = || vec![("collector", name.into())];
        figures.gauge(
            "stack_scrape_collector_duration_seconds",
            "How long the collector took in this scrape.",
            labels(),
            elapsed.as_secs_f64(),
        );
        figures.gauge(
            "stack_scrape_collector_success",
            SUCCESS_HELP,
            labels(),
            f64::from(result.is_ok()),
        );
        result.unwrap_or_else(|e| {
            // Keyed by the collector: a source that fails every scrape (or a client scraping in a
            // loop) logs once a minute per collector, not per scrape.
            warn_throttled!(name, "collector {name} failed: {e:#}");
            MetricSet::default()
        })
    }
}

impl Shared {
    /// What a scrape that could not collect in time says: every collector failed, and the
    /// exporter's own figures.
    fn unanswered(&self) -> MetricSet {
        let mut out = MetricSet::default();
        for collector in &self.collectors {
            out.gauge(
                "stack_scrape_collector_success",
                SUCCESS_HELP,
                vec![("collector", collector.name().into())],
                0.0,
            );
        }
        exporter::own_metrics(&mut out);
        out
    }
}

const SUCCESS_HELP: &str =
    "1 if the collector ran to the end in this scrape, 0 if it failed or ran out of time.";

/// How long a collector took, and what it gave.
type Outcome = (Duration, anyhow::Result<MetricSet>);

/// How long a blocking collector runs with others waiting behind it before they are given a
/// helper thread of their own. Each takes a few milliseconds on a busy host; a first scrape's
/// fd tables or a large directory take longer, and then the rest go on beside it.
const BLOCKING_STALL: Duration = Duration::from_millis(50);

async fn timed(work: BoxFuture<'static, anyhow::Result<MetricSet>>, deadline: Instant) -> Outcome {
    let started = Instant::now();
    let result = tokio::time::timeout_at(deadline, work)
        .await
        .unwrap_or_else(|_| Err(too_late(deadline.saturating_duration_since(started))));
    (started.elapsed(), result)
}

fn too_late(timeout: Duration) -> anyhow::Error {
    anyhow::anyhow!("did not finish within the scrape timeout of {timeout:?}")
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::collector::Work;

    /// Panics the first time it runs (`panicked` says whether it has), then collects nothing.
    fn panics_once(panicked: &AtomicBool) -> anyhow::Result<MetricSet> {
        if !panicked.swap(true, Ordering::SeqCst) {
            panic!("a bug in a collector (test)");
        }
        Ok(MetricSet::default())
    }

    async fn network_panics_once(
        panicked: Arc<AtomicBool>,
        _: Instant,
    ) -> anyhow::Result<MetricSet> {
        tokio::task::yield_now().await;
        panics_once(&panicked)
    }

    fn scraper() -> Scraper {
        let fine = |_: &(), _| {
            let mut set = MetricSet::default();
            set.gauge("test_fine", "A figure.", vec![], 1.0);
            Ok(set)
        };
        Scraper::new(vec![
            Collector::new(
                "blocking_bug",
                Work::blocking(AtomicBool::new(false), |p, _| panics_once(p)),
            ),
            Collector::new(
                "network_bug",
                Work::network(AtomicBool::new(false), network_panics_once),
            ),
            Collector::new("fine", Work::blocking((), fine)),
        ])
    }

    fn success(set: &MetricSet, collector: &str) -> Option<f64> {
        set.value(
            "stack_scrape_collector_success",
            &[("collector", collector)],
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recent_collection_is_reused_and_an_old_one_is_not() {
        let scraper = Scraper::new(vec![Collector::new(
            "fine",
            Work::blocking((), |_: &(), _| Ok(MetricSet::default())),
        )]);
        assert!(
            scraper.recent(Duration::from_secs(60)).is_none(),
            "none yet"
        );
        let timeout = Duration::from_secs(5);
        let set = scraper.scrape(timeout, timeout).await;
        let reused = scraper
            .recent(Duration::from_secs(60))
            .expect("a recent one");
        assert!(
            Arc::ptr_eq(&set, &reused),
            "the same collection, not a new one"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            scraper.recent(Duration::from_millis(10)).is_none(),
            "too old"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_collector_fails_alone_and_runs_again_next_time() {
        exporter::install_panic_hook_for_tests();
        let scraper = scraper();
        let before = exporter::panics() as f64;
        let timeout = Duration::from_secs(5);
        let first = scraper.scrape(timeout, timeout).await;
        assert_eq!(success(&first, "blocking_bug"), Some(0.0));
        assert_eq!(success(&first, "network_bug"), Some(0.0));
        assert_eq!(success(&first, "fine"), Some(1.0));
        assert_eq!(first.value("test_fine", &[]), Some(1.0));
        let panics = first.value("stack_exporter_panics_total", &[]).unwrap();
        assert!(
            panics >= before + 2.0,
            "two panics: {before} before, {panics} after"
        );

        // Nothing is left marked as running: the next collection runs every collector again.
        let next = scraper.scrape(timeout, timeout).await;
        for name in ["blocking_bug", "network_bug", "fine"] {
            assert_eq!(
                success(&next, name),
                Some(1.0),
                "{name} in the next collection"
            );
        }
    }
}
