//! The metric model every collector fills in, and its encoding.
//!
//! Collectors gather plain values into a [`MetricSet`] (async I/O first, no locks held); the set is
//! then encoded by `prometheus-client`, whose `Collector::encode` is synchronous, in one of its two
//! text formats: the classic 0.0.4 that scrapers and `promtool check metrics` expect unless they ask
//! for OpenMetrics, or OpenMetrics 1.0.0.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, LabelValueEncoder, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// A sample's labels.
pub type Labels = Vec<(&'static str, LabelValue)>;

/// A label's value, copied into no new text when it can be helped: one known when the exporter
/// is built (a CPU mode, a collector's name) is borrowed, and a name the exporter holds for its
/// life (a service's, a target's) is shared; only one made for the sample (a core's number, a
/// port) is owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelValue {
    Static(&'static str),
    Shared(Arc<str>),
    Owned(String),
}

impl std::ops::Deref for LabelValue {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            LabelValue::Static(s) => s,
            LabelValue::Shared(s) => s,
            LabelValue::Owned(s) => s,
        }
    }
}

impl From<&'static str> for LabelValue {
    fn from(s: &'static str) -> LabelValue {
        LabelValue::Static(s)
    }
}

impl From<String> for LabelValue {
    fn from(s: String) -> LabelValue {
        LabelValue::Owned(s)
    }
}

impl From<Arc<str>> for LabelValue {
    fn from(s: Arc<str>) -> LabelValue {
        LabelValue::Shared(s)
    }
}

impl From<&Arc<str>> for LabelValue {
    fn from(s: &Arc<str>) -> LabelValue {
        LabelValue::Shared(s.clone())
    }
}

impl PartialEq<&str> for LabelValue {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

impl EncodeLabelValue for LabelValue {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Gauge,
    Counter,
    Histogram,
}

/// A histogram as counted by a collector: `buckets` are (upper bound, observations in that bucket
/// alone), not cumulative; the last bound should be `f64::INFINITY`.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    pub sum: f64,
    pub count: u64,
    pub buckets: Vec<(f64, u64)>,
}

#[derive(Debug, Clone)]
enum Value {
    Number(f64),
    Histogram(Histogram),
}

#[derive(Debug, Clone)]
struct Sample {
    labels: Labels,
    value: Value,
}

#[derive(Debug, Clone)]
struct Family {
    /// The name as exposed, including `_total` for counters.
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<Sample>,
}

/// An ordered set of metric families. Adding a sample to a name that exists appends to that family.
#[derive(Debug, Default, Clone)]
pub struct MetricSet {
    families: Vec<Family>,
    /// Where each family is, once the set has [`INDEXED_FROM`] families (a scrape's whole set):
    /// each new family was a search of every name before it.
    index: Option<foldhash::HashMap<&'static str, usize>>,
}

/// Families a set holds before it keeps an index of their names: a collector's own set adds to
/// its last family nearly every time, which a search from the end finds at once.
const INDEXED_FROM: usize = 32;

impl MetricSet {
    pub fn gauge(&mut self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        self.push(name, help, Kind::Gauge, labels, Value::Number(value));
    }

    /// `name` ends in `_total`, as it is exposed.
    pub fn counter(&mut self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        debug_assert!(
            name.ends_with("_total"),
            "counter {name} must end in _total"
        );
        self.push(name, help, Kind::Counter, labels, Value::Number(value));
    }

    pub fn histogram(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        h: Histogram,
    ) {
        self.push(name, help, Kind::Histogram, labels, Value::Histogram(h));
    }

    /// Declares a family with no samples yet, so that its HELP and TYPE appear even when empty.
    pub fn declare_gauge(&mut self, name: &'static str, help: &'static str) {
        self.family(name, help, Kind::Gauge);
    }

    pub fn extend(&mut self, other: MetricSet) {
        for family in other.families {
            match self.position(family.name) {
                Some(index) => self.families[index].samples.extend(family.samples),
                // Moved whole, its samples not copied.
                None => {
                    self.add(family);
                }
            }
        }
    }

    /// The plain-number samples of the family `name` (none for a histogram), for readers of a
    /// collection such as the status page.
    pub fn numbers<'a>(&'a self, name: &str) -> impl Iterator<Item = (&'a Labels, f64)> + 'a {
        self.named(name)
            .into_iter()
            .flat_map(|f| f.samples.iter())
            .filter_map(|s| match &s.value {
                Value::Number(n) => Some((&s.labels, *n)),
                Value::Histogram(_) => None,
            })
    }

    /// The names of the families, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.families.iter().map(|f| f.name)
    }

    /// The value of the first sample of `name` whose labels include all of `want`.
    #[cfg(test)]
    pub fn value(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let family = self.named(name)?;
        family.samples.iter().find_map(|s| {
            let matches = want
                .iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v));
            match (&s.value, matches) {
                (Value::Number(n), true) => Some(*n),
                _ => None,
            }
        })
    }

    fn push(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: Labels,
        value: Value,
    ) {
        self.family(name, help, kind)
            .samples
            .push(Sample { labels, value });
    }

    /// Where the family `name` is. Collectors add a family's samples together, so the last
    /// family is the usual hit: the search runs from the end.
    fn position(&self, name: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(name).copied(),
            None => self.families.iter().rposition(|f| f.name == name),
        }
    }

    fn named(&self, name: &str) -> Option<&Family> {
        self.position(name).map(|at| &self.families[at])
    }

    /// Adds a family of a name the set does not have; where it is.
    fn add(&mut self, family: Family) -> usize {
        let at = self.families.len();
        match &mut self.index {
            Some(index) => {
                index.insert(family.name, at);
            }
            None if at + 1 >= INDEXED_FROM => {
                let names = self.families.iter().chain([&family]).map(|f| f.name);
                self.index = Some(names.zip(0..).collect());
            }
            None => {}
        }
        self.families.push(family);
        at
    }

    fn family(&mut self, name: &'static str, help: &'static str, kind: Kind) -> &mut Family {
        let index = match self.position(name) {
            Some(i) => i,
            None => self.add(Family {
                name,
                help,
                kind,
                samples: Vec::new(),
            }),
        };
        &mut self.families[index]
    }
}

impl Collector for MetricSet {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            let (name, metric_type) = match family.kind {
                Kind::Gauge => (family.name, MetricType::Gauge),
                // prometheus-client appends `_total` to counter samples itself.
                Kind::Counter => (family.name.trim_end_matches("_total"), MetricType::Counter),
                Kind::Histogram => (family.name, MetricType::Histogram),
            };
            let mut metric = encoder.encode_descriptor(name, family.help, None, metric_type)?;
            for sample in &family.samples {
                let labels = sample.labels.as_slice();
                if labels.is_empty() {
                    encode_value(&mut metric, &sample.value, family.kind)?;
                } else {
                    encode_value(
                        &mut metric.encode_family(&labels)?,
                        &sample.value,
                        family.kind,
                    )?;
                }
            }
        }
        Ok(())
    }
}

fn encode_value(
    encoder: &mut MetricEncoder,
    value: &Value,
    kind: Kind,
) -> Result<(), std::fmt::Error> {
    match (value, kind) {
        (Value::Number(v), Kind::Counter) => encoder.encode_counter::<NoLabelSet, _, f64>(v, None),
        (Value::Number(v), _) => encoder.encode_gauge(v),
        (Value::Histogram(h), _) => {
            encoder.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
        }
    }
}

/// The two exposition formats, as a scraper's `Accept` header chooses them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Format {
    /// Prometheus text format 0.0.4, the default.
    PrometheusText,
    /// OpenMetrics 1.0.0, ending with `# EOF`.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The length of the last encoding: the next one's buffer is sized from it, not grown by
/// doubling (a copy of the text at each step).
static LAST_LENGTH: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(32 * 1024);

/// Encodes `set` in `format`.
pub fn encode(set: std::sync::Arc<MetricSet>, format: Format) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(set));
    let last = LAST_LENGTH.load(Relaxed);
    let mut out = String::with_capacity(last + last / 8);
    let written = match format {
        Format::PrometheusText => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    // Writing to a String cannot fail, and our own Collector impl only passes its errors on.
    debug_assert!(written.is_ok(), "encoding into a String failed");
    LAST_LENGTH.store(out.len(), Relaxed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_set() -> MetricSet {
        let mut set = MetricSet::default();
        set.gauge(
            "stack_service_up",
            "Whether the service runs.",
            vec![("service", "redis".into())],
            1.0,
        );
        set.gauge(
            "stack_service_up",
            "Whether the service runs.",
            vec![("service", "say \"hi\"\n".into())],
            0.0,
        );
        set.counter(
            "stack_host_cpu_seconds_total",
            "CPU time.",
            vec![("mode", "idle".into())],
            12.5,
        );
        set.histogram(
            "stack_x_seconds",
            "Latency.",
            vec![],
            Histogram {
                sum: 1.5,
                count: 3,
                buckets: vec![(0.1, 1), (1.0, 2), (f64::INFINITY, 0)],
            },
        );
        set
    }

    #[test]
    fn openmetrics_names_counters_and_ends_with_eof() {
        let text = encode(sample_set().into(), Format::OpenMetrics);
        assert!(
            text.contains("# TYPE stack_host_cpu_seconds counter\n"),
            "{text}"
        );
        assert!(text.contains("stack_host_cpu_seconds_total{mode=\"idle\"} 12.5\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn prometheus_text_names_counter_family_with_total_and_has_no_eof() {
        let text = encode(sample_set().into(), Format::PrometheusText);
        assert!(
            text.contains("# HELP stack_host_cpu_seconds_total CPU time.\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE stack_host_cpu_seconds_total counter\n"));
        assert!(text.contains("# TYPE stack_service_up gauge\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = encode(sample_set().into(), Format::OpenMetrics);
        assert!(text.contains(r#"service="say \"hi\"\n""#), "{text}");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let text = encode(sample_set().into(), Format::OpenMetrics);
        assert!(
            text.contains("stack_x_seconds_bucket{le=\"1.0\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("stack_x_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("stack_x_seconds_count 3\n"), "{text}");
    }

    /// A set of more families than [`INDEXED_FROM`] finds them by its index: samples and merged
    /// sets join the family of their name, early or late, and the order stays as first added.
    #[test]
    fn a_large_set_adds_to_the_family_of_the_name() {
        let names: Vec<&'static str> = (0..3 * INDEXED_FROM)
            .map(|i| &*Box::leak(format!("stack_f{i}").into_boxed_str()))
            .collect();
        let mut set = MetricSet::default();
        let mut other = MetricSet::default();
        for (i, name) in names.iter().enumerate() {
            set.gauge(name, "h", vec![], i as f64);
            other.gauge(name, "h", vec![("from", "other".into())], 1.0);
        }
        assert!(set.index.is_some());
        set.gauge(names[0], "h", vec![("again", "yes".into())], 7.0);
        set.extend(other);
        let mut late = MetricSet::default();
        late.gauge("stack_late", "h", vec![], 2.0);
        set.extend(late);
        assert_eq!(set.names().count(), names.len() + 1);
        assert!(set.names().zip(&names).all(|(a, b)| a == *b));
        assert_eq!(set.names().last(), Some("stack_late"));
        assert_eq!(set.value(names[0], &[("again", "yes")]), Some(7.0));
        assert_eq!(set.value(names[5], &[("from", "other")]), Some(1.0));
        assert_eq!(set.numbers(names[5]).count(), 2);
        assert_eq!(set.value("stack_late", &[]), Some(2.0));
    }

    #[test]
    fn value_finds_sample_by_labels() {
        let set = sample_set();
        assert_eq!(
            set.value("stack_service_up", &[("service", "redis")]),
            Some(1.0)
        );
        assert_eq!(set.value("stack_service_up", &[("service", "nginx")]), None);
    }
}
