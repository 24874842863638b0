#!/usr/bin/env python3
"""Scrape cost over TLS + basic auth beside plain HTTP, for stack_exporter and node_exporter.

Each exporter runs twice: plain, then with the same --web.config.file (a certificate from a CA made
here with openssl, one bcrypt user at cost 10). Every scrape opens a new connection, as bench.py's
do: the TLS figures include a full handshake, the most a scrape can cost (Prometheus keeps its
connection alive, so it pays the handshake once). Figures are printed, not asserted.

    scripts/bench-tls.sh                  (builds the release binary, then runs this)
    scripts/bench-tls.py --scrapes 300 --binary target/release/stack_exporter
"""
import argparse
import base64
import http.client
import os
import shutil
import ssl
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  free_port, wait_port, cpu_seconds, rss_bytes, print_table

# bcrypt of "example" at cost 10 (the sample in docs/security.md).
HASH = "$2b$10$Nz5fHTXp2Qy9uZN3OsBnx.IC.d/Xoa725sRQkMWalBnYyHWqbO3Da"
AUTH = "Basic " + base64.b64encode(b"prometheus:example").decode()


def openssl(tmp, *args):
    subprocess.run(["openssl", *args], cwd=tmp, check=True, capture_output=True)


def make_pki(tmp):
    openssl(tmp, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "2", "-subj", "/CN=bench-ca", "-keyout", "ca.key", "-out", "ca.crt")
    with open(os.path.join(tmp, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl(tmp, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    openssl(tmp, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.crt")
    config = os.path.join(tmp, "web.yml")
    with open(config, "w") as f:
        f.write("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                f"basic_auth_users:\n  prometheus: '{HASH}'\n")
    return config


def tls_scraper(ca):
    context = ssl.create_default_context(cafile=ca)

    def scrape(port, path="/metrics"):
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=context)
        conn.request("GET", path, headers={"Authorization": AUTH})
        response = conn.getresponse()
        body = response.read()
        conn.close()
        if response.status != 200:
            raise SystemExit(f"scrape over TLS answered {response.status}")
        return body

    return scrape


def run(name, argv, port, scrapes, scraper):
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        bench.wait_port(port)
        bench.scrape = scraper  # measure() scrapes through bench.scrape
        return bench.measure(name, child.pid, port, scrapes)
    finally:
        child.kill()
        child.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", default="target/release/stack_exporter")
    parser.add_argument("--scrapes", type=int, default=300)
    args = parser.parse_args()
    plain = bench.scrape
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        config = make_pki(tmp)
        over_tls = tls_scraper(os.path.join(tmp, "ca.crt"))
        exporters = [("stack_exporter", lambda p: [args.binary, f"--web.listen-address=127.0.0.1:{p}", "--log.level=warn"])]
        node = shutil.which("prometheus-node-exporter")
        if node:
            exporters.append(("node_exporter", lambda p: [node, f"--web.listen-address=127.0.0.1:{p}", "--log.level=warn"]))
        else:
            print("node_exporter not installed (apt-get install prometheus-node-exporter): stack_exporter only\n")
        for name, argv in exporters:
            short = name.split("_")[0]
            port = bench.free_port()
            rows.append(run(f"{short} http", argv(port), port, args.scrapes, plain))
            port = bench.free_port()
            rows.append(run(f"{short} https+auth", argv(port) + [f"--web.config.file={config}"], port,
                            args.scrapes, over_tls))
    print(f"{args.scrapes} scrapes each, a new connection per scrape\n")
    bench.print_table(rows)


if __name__ == "__main__":
    sys.exit(main())
