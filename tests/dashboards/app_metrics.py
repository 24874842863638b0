#!/usr/bin/env python3
"""Serves the application's own metrics on /metrics, as a Celery exporter and an ASGI app would:
the histograms of docs/metrics.md's "App-side metrics the rules expect", spelled as the rules
read them (celery_task_runtime{name}, stack_app_websocket_latency_seconds), in the Prometheus
text format. Each scrape adds observations, so rates and p95s have data.

    app_metrics.py PORT        listens on 127.0.0.1:PORT until killed

scripts/test-dashboards.sh scrapes it as a job of its own (deploy/native-stack.sh APP_TARGETS),
so the dashboards' app-side panels are queried through $app_job against a real Prometheus.
"""
import http.server
import sys
import threading

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10)
# name, labels, the value observed on each scrape.
HISTOGRAMS = [
    ("celery_task_runtime", 'name="app.tasks.infer",hostname="celery@app"', 0.8),
    ("stack_app_websocket_latency_seconds", "", 0.2),
]


class Histograms:
    def __init__(self):
        self.lock = threading.Lock()
        self.observations = 0

    def scrape(self):
        """The exposition after one more observation of each histogram."""
        with self.lock:
            self.observations += 1
            n = self.observations
        lines = []
        for name, labels, value in HISTOGRAMS:
            sep = labels + "," if labels else ""
            lines.append("# TYPE %s histogram" % name)
            for le in BUCKETS:
                lines.append('%s_bucket{%sle="%g"} %d' % (name, sep, le, n if value <= le else 0))
            lines.append('%s_bucket{%sle="+Inf"} %d' % (name, sep, n))
            lines.append("%s_sum%s %g" % (name, "{%s}" % labels if labels else "", n * value))
            lines.append("%s_count%s %d" % (name, "{%s}" % labels if labels else "", n))
        return ("\n".join(lines) + "\n").encode()


def handler(histograms):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/metrics":
                self.send_error(404)
                return
            body = histograms.scrape()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    return Handler


def main(argv):
    if len(argv) != 1 or not argv[0].isdigit():
        print(__doc__, file=sys.stderr)
        return 2
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(argv[0])), handler(Histograms()))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
