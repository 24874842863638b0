//! The samples a status is built from, whichever way they came: the exposition text of a running
//! exporter (`stack_exporter status`), or a collection of this process (the page, and the CLI
//! when no exporter runs). Only plain numbers; histograms are Grafana's business.

use std::collections::HashMap;
use std::time::Instant;

use crate::metrics::MetricSet;

/// One sample: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    fn has(&self, want: &[(&str, &str)]) -> bool {
        want.iter().all(|(k, v)| self.label(k) == *v)
    }
}

/// Samples by metric name.
#[derive(Debug, Default)]
pub struct Figures {
    families: HashMap<String, Vec<Sample>>,
}

/// The families a status reads: a collection's other families (histograms, MySQL's process
/// list, per-core CPU) are never copied.
fn wanted(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "stack_plan_",
        "stack_service_",
        "stack_system_memory_",
        "stack_host_memory_",
        "stack_host_swap_",
        "stack_host_cpu_seconds_total",
        "stack_host_cpu_cores",
        "stack_host_filesystem_",
        "stack_mysql_up",
        "stack_mysql_connections",
        "stack_mysql_max_connections",
        "stack_postgres_up",
        "stack_postgres_connections",
        "stack_postgres_max_connections",
        "stack_redis_",
        "stack_directory_",
        "stack_scrape_collector_success",
        "stack_exporter_build_info",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

impl Figures {
    /// From Prometheus text format 0.0.4 (or OpenMetrics): every line `name{labels} value`.
    /// Lines that do not parse are skipped: the status shows what it can read.
    pub fn from_exposition(text: &str) -> Figures {
        let mut figures = Figures::default();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            if let Some((name, sample)) = parse_line(line) {
                if wanted(name) {
                    figures.push(name, sample);
                }
            }
        }
        figures
    }

    /// From a collection of this process, without encoding it.
    pub fn from_set(set: &MetricSet) -> Figures {
        let mut figures = Figures::default();
        let names: Vec<&str> = set.names().filter(|n| wanted(n)).collect();
        for name in names {
            for (labels, value) in set.numbers(name) {
                let labels = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                figures.push(name, Sample { labels, value });
            }
        }
        figures
    }

    fn push(&mut self, name: &str, sample: Sample) {
        self.families
            .entry(name.to_string())
            .or_default()
            .push(sample);
    }

    pub fn all(&self, name: &str) -> &[Sample] {
        self.families.get(name).map_or(&[], Vec::as_slice)
    }

    /// The value of the first sample of `name` whose labels include every pair of `want`.
    pub fn one(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        self.all(name).iter().find(|s| s.has(want)).map(|s| s.value)
    }

    /// The sum of the samples of `name` whose labels include every pair of `want`; `None` when
    /// there is none.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> Option<f64> {
        let mut matching = self.all(name).iter().filter(|s| s.has(want)).peekable();
        matching.peek()?;
        Some(matching.map(|s| s.value).sum())
    }

    /// The values of label `label` on the samples of `name`, in order, each once.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        for sample in self.all(name) {
            let value = sample.label(label);
            if !values.iter().any(|v| v == value) {
                values.push(value.to_string());
            }
        }
        values
    }
}

/// `name{a="x",b="y"} 1.5` (an optional timestamp after the value is ignored).
fn parse_line(line: &str) -> Option<(&str, Sample)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let (labels, rest) = if line[name_end..].starts_with('{') {
        parse_labels(&line[name_end + 1..])?
    } else {
        (Vec::new(), &line[name_end..])
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some((name, Sample { labels, value }))
}

/// The labels after `{`, and the text after the closing `}`.
fn parse_labels(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([',', ' ']);
        if let Some(rest) = text.strip_prefix('}') {
            return Some((labels, rest));
        }
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                other => value.push(other),
            }
        };
        labels.push((key.trim().to_string(), value));
        text = &rest[end + 1..];
    }
}

/// The CPU counters of one collection and when it was read: two of them give the CPU use
/// between them, which one collection (counters since boot) cannot.
#[derive(Debug, Clone)]
pub struct Counters {
    pub at: Instant,
    /// Host CPU seconds, all modes, and in idle or iowait (A2's "not busy").
    pub host_total: f64,
    pub host_idle: f64,
    /// CPU seconds by service.
    pub services: Vec<(String, f64)>,
}

impl Counters {
    pub fn from_figures(figures: &Figures, at: Instant) -> Counters {
        let cpu = figures.all("stack_host_cpu_seconds_total");
        let idle = |s: &&Sample| matches!(s.label("mode"), "idle" | "iowait");
        Counters {
            at,
            host_total: cpu.iter().map(|s| s.value).sum(),
            host_idle: cpu.iter().filter(idle).map(|s| s.value).sum(),
            services: figures
                .all("stack_service_cpu_seconds_total")
                .iter()
                .map(|s| (s.label("service").to_string(), s.value))
                .collect(),
        }
    }

    /// Cheap enough for every scrape: two families of the collection, nothing else copied.
    pub fn from_set(set: &MetricSet, at: Instant) -> Counters {
        fn label<'a>(labels: &'a crate::metrics::Labels, name: &str) -> &'a str {
            labels
                .iter()
                .find(|(k, _)| *k == name)
                .map_or("", |(_, v)| v)
        }
        let (mut host_total, mut host_idle) = (0.0, 0.0);
        for (labels, value) in set.numbers("stack_host_cpu_seconds_total") {
            host_total += value;
            if matches!(label(labels, "mode"), "idle" | "iowait") {
                host_idle += value;
            }
        }
        Counters {
            at,
            host_total,
            host_idle,
            services: set
                .numbers("stack_service_cpu_seconds_total")
                .map(|(labels, value)| (label(labels, "service").to_string(), value))
                .collect(),
        }
    }

    pub fn service(&self, name: &str) -> Option<f64> {
        self.services
            .iter()
            .find(|(s, _)| s == name)
            .map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_lines_parse_with_escaped_labels() {
        let text = "# HELP x y\nstack_service_up{service=\"a\\\"b\",x=\"1\"} 1\n\
                    stack_host_cpu_cores 2 1700000000\nstack_redis_up{target=\"d\"} +Inf\n\
                    not_wanted 3\nbroken{a=\"x\n";
        let figures = Figures::from_exposition(text);
        assert_eq!(
            figures.one("stack_service_up", &[("service", "a\"b")]),
            Some(1.0)
        );
        assert_eq!(figures.one("stack_host_cpu_cores", &[]), Some(2.0));
        assert_eq!(figures.one("stack_redis_up", &[]), Some(f64::INFINITY));
        assert!(figures.all("not_wanted").is_empty());
        assert_eq!(figures.sum("stack_service_up", &[("x", "2")]), None);
    }

    #[test]
    fn a_set_and_its_encoding_give_the_same_figures() {
        let mut set = MetricSet::default();
        let help = "h";
        set.gauge(
            "stack_service_up",
            help,
            vec![("service", "w\n".into())],
            1.0,
        );
        set.counter(
            "stack_host_cpu_seconds_total",
            help,
            vec![("mode", "idle".into())],
            7.5,
        );
        let set = std::sync::Arc::new(set);
        let text = crate::metrics::encode(set.clone(), crate::metrics::Format::PrometheusText);
        let (a, b) = (Figures::from_set(&set), Figures::from_exposition(&text));
        for name in ["stack_service_up", "stack_host_cpu_seconds_total"] {
            assert_eq!(a.all(name), b.all(name), "{name}");
        }
        let counters = Counters::from_set(&set, Instant::now());
        assert_eq!(counters.host_idle, 7.5);
    }
}
