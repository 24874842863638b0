//! Encoding cost of one scrape's metrics, in both formats: a metric set shaped like a real
//! scrape (gauges and counters with service/mountpoint-style labels, a few histograms, about 700
//! samples), encoded many times. Prints microseconds per encode and the size of the text.
//!
//!   cargo run --release --example bench_encode [ROUNDS]

use std::sync::Arc;
use std::time::Instant;

use stack_exporter::metrics::{encode, Format, Histogram, MetricSet};

fn scrape_like_set() -> MetricSet {
    let mut set = MetricSet::default();
    let services = [
        "nginx",
        "wsgi",
        "asgi",
        "celery_worker",
        "celery_beat",
        "mysql",
        "postgresql",
        "redis",
    ];
    for family in 0..40 {
        let name = format!("stack_service_figure_{family}_bytes");
        for service in services {
            set.gauge(
                Box::leak(name.clone().into_boxed_str()),
                "A per-service figure.",
                vec![("service", service.to_string().into())],
                1_234_567.0 * f64::from(family),
            );
        }
    }
    for mode in [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ] {
        set.counter(
            "stack_host_cpu_seconds_total",
            "CPU time by mode.",
            vec![("mode", mode.to_string().into())],
            98_765.25,
        );
    }
    for route in ["static", "wsgi", "asgi", "websocket"] {
        for class in ["2xx", "3xx", "4xx", "5xx"] {
            set.counter(
                "stack_nginx_http_requests_total",
                "Requests by route and status class.",
                vec![
                    ("route", route.to_string().into()),
                    ("status", class.to_string().into()),
                ],
                4242.0,
            );
        }
        set.histogram(
            "stack_nginx_http_request_duration_seconds",
            "Request time by route.",
            vec![("route", route.to_string().into())],
            Histogram {
                sum: 123.4,
                count: 1000,
                buckets: vec![
                    (0.1, 600),
                    (0.2, 200),
                    (0.5, 100),
                    (1.0, 50),
                    (2.0, 30),
                    (f64::INFINITY, 20),
                ],
            },
        );
    }
    set
}

fn main() {
    let rounds: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let set = Arc::new(scrape_like_set());
    for (name, format) in [
        ("text 0.0.4", Format::PrometheusText),
        ("OpenMetrics", Format::OpenMetrics),
    ] {
        let bytes = encode(set.clone(), format).len();
        let started = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(encode(set.clone(), format));
        }
        let each = started.elapsed().as_secs_f64() / f64::from(rounds) * 1e6;
        println!("{name:<12} {each:>8.1} µs per encode, {bytes} bytes");
    }
}
