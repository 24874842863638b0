//! One scrape: every enabled collector runs concurrently under the scrape's deadline; the framework
//! times each and publishes `stack_scrape_collector_duration_seconds` and `_success`, so a failing
//! or slow collector shows in the output and never fails the scrape.
//!
//! Scrapes that arrive while one is running wait for it and share its result, so two Prometheus
//! servers scraping at once do not double the load on the host or the databases.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::collector::{exporter, Collector, RunGuard, Running};
use crate::metrics::MetricSet;

pub struct Scraper {
    collectors: Vec<Arc<Collector>>,
    /// Per collector, whether a run of it is still under way.
    running: Vec<Arc<Running>>,
    last: Mutex<Option<Finished>>,
}

struct Finished {
    at: Instant,
    set: Arc<MetricSet>,
}

impl Scraper {
    pub fn new(collectors: Vec<Collector>) -> Scraper {
        Scraper {
            running: collectors.iter().map(|_| Arc::default()).collect(),
            collectors: collectors.into_iter().map(Arc::new).collect(),
            last: Mutex::new(None),
        }
    }

    pub fn collector_names(&self) -> Vec<&'static str> {
        self.collectors.iter().map(|c| c.name()).collect()
    }

    /// The metrics of a scrape that finishes after this call began, all within `timeout`: time
    /// spent waiting for another scraper's collection counts against it.
    pub async fn scrape(&self, timeout: Duration) -> Arc<MetricSet> {
        let arrived = Instant::now();
        let deadline = arrived + timeout;
        let Ok(mut last) = tokio::time::timeout_at(deadline, self.last.lock()).await else {
            log::warn!(
                "a scrape waited its whole {timeout:?} for another scraper's collection; \
                 answered without the collectors' figures"
            );
            return Arc::new(self.unanswered());
        };
        if let Some(finished) = last.as_ref().filter(|f| f.at >= arrived) {
            return finished.set.clone();
        }
        let set = Arc::new(self.collect_all(deadline).await);
        *last = Some(Finished {
            at: Instant::now(),
            set: set.clone(),
        });
        set
    }

    /// One deadline for every collector: it also names this scrape, so collectors that share work
    /// (services and sockets share a /proc snapshot) know they are in the same one.
    async fn collect_all(&self, deadline: Instant) -> MetricSet {
        let handles: Vec<_> = self
            .collectors
            .iter()
            .zip(&self.running)
            .map(|(collector, running)| {
                tokio::spawn(run_one(collector.clone(), running.start(), deadline))
            })
            .collect();
        let mut out = MetricSet::default();
        let mut outcomes = MetricSet::default();
        for (collector, handle) in self.collectors.iter().zip(handles) {
            let name = collector.name();
            let (elapsed, result) = match handle.await {
                Ok(outcome) => outcome,
                Err(e) => (
                    Duration::ZERO,
                    Err(anyhow::anyhow!("collector panicked: {e}")),
                ),
            };
            let success = match result {
                Ok(set) => {
                    out.extend(set);
                    true
                }
                Err(e) => {
                    log::warn!("collector {name} failed: {e:#}");
                    false
                }
            };
            let labels = || vec![("collector", name.to_string())];
            outcomes.gauge(
                "stack_scrape_collector_duration_seconds",
                "How long the collector took in this scrape.",
                labels(),
                elapsed.as_secs_f64(),
            );
            outcomes.gauge(
                "stack_scrape_collector_success",
                SUCCESS_HELP,
                labels(),
                f64::from(success),
            );
        }
        out.extend(outcomes);
        exporter::build_info(&mut out);
        exporter::process_metrics(&mut out);
        out
    }
}

impl Scraper {
    /// What a scrape that could not collect in time says: every collector failed, and the
    /// exporter's own figures.
    fn unanswered(&self) -> MetricSet {
        let mut out = MetricSet::default();
        for collector in &self.collectors {
            out.gauge(
                "stack_scrape_collector_success",
                SUCCESS_HELP,
                vec![("collector", collector.name().to_string())],
                0.0,
            );
        }
        exporter::build_info(&mut out);
        exporter::process_metrics(&mut out);
        out
    }
}

const SUCCESS_HELP: &str =
    "1 if the collector ran to the end in this scrape, 0 if it failed or ran out of time.";

async fn run_one(
    collector: Arc<Collector>,
    run: Option<RunGuard>,
    deadline: Instant,
) -> (Duration, anyhow::Result<MetricSet>) {
    let started = Instant::now();
    let Some(run) = run else {
        let stuck =
            anyhow::anyhow!("its previous run has not ended yet (a hung filesystem or server?)");
        return (Duration::ZERO, Err(stuck));
    };
    let result = match tokio::time::timeout_at(deadline, collector.collect(deadline, run)).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!(
            "did not finish within the scrape timeout of {:?}",
            deadline - started
        )),
    };
    (started.elapsed(), result)
}
