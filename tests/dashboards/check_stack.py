#!/usr/bin/env python3
"""Checks the deployment files against each other, without Docker or systemd running:

- docker-compose.yml (as `docker-compose --profile demo config` resolves it): every bind-mounted
  path exists; every image is pinned to a version; every service has a healthcheck; the exporter
  runs with pid: host and the host's /proc and / read-only at the paths its flags name; the demo
  databases the exporter's STACK_*_URL point at are services of the file; Grafana gets the
  variables its provisioning files use and has the dashboards mounted where the provider reads;
  Prometheus's scrape and Alertmanager targets are services of the file;
- prometheus/prometheus-native.yml is prometheus/prometheus.yml with the services on localhost;
- Dockerfile: multi-stage from rust:1[.N]-bookworm, a slim or distroless final image, a non-root
  USER, EXPOSE 9488;
- deploy/stack_exporter.service: a dynamic or dedicated user, CAP_SYS_PTRACE and
  CAP_DAC_READ_SEARCH ambient, ProtectSystem=strict, LimitNOFILE set, process_vm_readv and
  process_vm_writev denied by SystemCallFilter, Documentation= only local (the project has no
  published address to point at); `systemd-analyze verify` reports nothing (when installed).

One line per check, then `stack: N passed, M failed`; exits 1 on any failure.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dashlib  # noqa: E402
from dashlib import REPO  # noqa: E402

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def compose_config():
    compose = shutil.which("docker-compose")
    if compose:
        cmd = [compose]
    elif shutil.which("docker"):
        cmd = ["docker", "compose"]
    else:
        raise RuntimeError("neither docker-compose nor docker is installed")
    out = subprocess.run(cmd + ["-f", os.path.join(REPO, "docker-compose.yml"), "--profile", "demo",
                                "config"], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    return yaml.safe_load(out.stdout)


def volumes(service):
    """(source, target, mode) of each volume, short or long syntax."""
    for v in service.get("volumes") or []:
        if isinstance(v, str):
            parts = v.split(":")
            yield parts[0], parts[1] if len(parts) > 1 else parts[0], \
                parts[2] if len(parts) > 2 else "rw"
        else:
            yield v.get("source"), v.get("target"), "ro" if v.get("read_only") else "rw"


@check
def compose_mounts_exist(c):
    missing = [src for s in c["services"].values() for src, _, _ in volumes(s)
               if src and src.startswith("/") and not os.path.exists(src)]
    return ["mounted path does not exist: %s" % m for m in missing]


@check
def compose_images_pinned(c):
    errors = []
    for name, s in c["services"].items():
        image = s.get("image", "")
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        if "build" in s:
            continue
        if not tag or tag == "latest" or not re.search(r"\d", tag):
            errors.append("%s: image %r is not pinned to a version" % (name, image))
    return errors


@check
def compose_healthchecks(c):
    return ["%s has no healthcheck" % n for n, s in c["services"].items()
            if not (s.get("healthcheck") or {}).get("test")]


@check
def compose_exporter_sees_the_host(c):
    s = c["services"]["exporter"]
    errors = []
    if s.get("pid") != "host":
        errors.append("exporter needs pid: host")
    flags = dict(a.split("=", 1) for a in s.get("command") or [] if "=" in a)
    mounts = {t: (src, mode) for src, t, mode in volumes(s)}
    for flag, host in (("--path.procfs", "/proc"), ("--path.rootfs", "/")):
        path = flags.get(flag)
        if not path:
            errors.append("exporter command lacks %s" % flag)
        elif mounts.get(path, (None,))[0] != host or "ro" not in mounts[path][1]:
            errors.append("%s=%s is not the host's %s mounted read-only" % (flag, path, host))
    services = set(c["services"])
    for var in ("STACK_MYSQL_URL", "STACK_POSTGRES_URL", "STACK_REDIS_URL"):
        url = (s.get("environment") or {}).get(var, "")
        host = re.sub(r"^\w+://(?:[^@/]*@)?([^:/]+).*$", r"\1", url)
        if host not in services:
            errors.append("exporter %s=%s: host %r is not a service" % (var, url, host))
    return errors


@check
def compose_grafana_provisioning(c):
    s = c["services"]["grafana"]
    env = s.get("environment") or {}
    mounts = {t: src for src, t, _ in volumes(s)}
    errors = []
    prov = os.path.join(REPO, "grafana", "provisioning")
    if os.path.realpath(mounts.get("/etc/grafana/provisioning", "")) != os.path.realpath(prov):
        errors.append("grafana/provisioning is not mounted at /etc/grafana/provisioning")
    for root, _, files in os.walk(prov):
        for f in files:
            with open(os.path.join(root, f)) as fh:
                for var in re.findall(r"\$\{(\w+)\}", fh.read()):
                    if var not in env:
                        errors.append("%s uses ${%s}, which grafana's environment lacks" % (f, var))
    dash_dir = env.get("STACK_DASHBOARDS_DIR")
    if os.path.realpath(mounts.get(dash_dir, "")) != os.path.join(REPO, "grafana", "dashboards"):
        errors.append("grafana/dashboards is not mounted at STACK_DASHBOARDS_DIR=%s" % dash_dir)
    return errors


@check
def compose_prometheus_targets(c):
    with open(os.path.join(REPO, "prometheus", "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    hosts = set()
    for job in prom.get("scrape_configs") or []:
        for sc in job.get("static_configs") or []:
            hosts |= {t.rsplit(":", 1)[0] for t in sc.get("targets") or []}
    for am in (prom.get("alerting") or {}).get("alertmanagers") or []:
        for sc in am.get("static_configs") or []:
            hosts |= {t.rsplit(":", 1)[0] for t in sc.get("targets") or []}
    unknown = hosts - set(c["services"]) - {"localhost"}
    errors = ["prometheus.yml targets %s, not a compose service" % h for h in sorted(unknown)]
    mounts = {t: src for src, t, _ in volumes(c["services"]["prometheus"])}
    config = next((a.split("=", 1)[1] for a in c["services"]["prometheus"].get("command") or []
                   if a.startswith("--config.file=")), "")
    if os.path.realpath(mounts.get(os.path.dirname(config), "")) != \
            os.path.join(REPO, "prometheus"):
        errors.append("--config.file=%s is not in the mounted prometheus/" % config)
    rules_target = os.path.normpath(os.path.join(os.path.dirname(config), "..", "rules"))
    if os.path.realpath(mounts.get(rules_target, "")) != os.path.join(REPO, "rules"):
        errors.append("rules/ is not mounted at %s, where ../rules/*.yml points" % rules_target)
    return errors


@check
def native_config_matches(c):
    def body(name, subst=()):
        with open(os.path.join(REPO, "prometheus", name)) as f:
            text = "".join(line for line in f if not line.lstrip().startswith("#"))
        for old, new in subst:
            text = text.replace(old, new)
        return text
    compose = body("prometheus.yml", [('"%s:' % s, '"localhost:') for s in c["services"]])
    if compose != body("prometheus-native.yml"):
        return ["prometheus-native.yml is not prometheus.yml with the services on localhost"]
    return []


@check
def dockerfile(c):
    with open(os.path.join(REPO, "Dockerfile")) as f:
        text = f.read()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    errors = []
    if len(froms) < 2 or not re.match(r"rust:1(\.\d+)*-bookworm\b", froms[0]):
        errors.append("not a multi-stage build from rust:1[.N]-bookworm: %s" % froms)
    elif not re.match(r"(debian:bookworm-slim|gcr\.io/distroless/)", froms[-1]):
        errors.append("final image %s is neither debian:bookworm-slim nor distroless" % froms[-1])
    if not users or users[-1].split(":")[0] in ("0", "root"):
        errors.append("the final image must run as a non-root USER")
    if not re.search(r"^EXPOSE\s+9488\b", text, re.M):
        errors.append("no EXPOSE 9488")
    return errors


@check
def systemd_unit(c):
    path = os.path.join(REPO, "deploy", "stack_exporter.service")
    with open(path) as f:
        text = f.read()
    keys = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    errors = []
    if keys.get("DynamicUser") != ["yes"] and not keys.get("User"):
        errors.append("needs DynamicUser=yes or a dedicated User=")
    ambient = " ".join(keys.get("AmbientCapabilities", [])).split()
    for cap in ("CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"):
        if cap not in ambient:
            errors.append("AmbientCapabilities lacks %s" % cap)
    if keys.get("ProtectSystem") != ["strict"]:
        errors.append("needs ProtectSystem=strict")
    if not keys.get("LimitNOFILE"):
        errors.append("needs LimitNOFILE= (the descriptor budget --web.max-connections stays under)")
    # SystemCallFilter=~a b c denies a, b and c; the lines add up.
    denied = {name for v in keys.get("SystemCallFilter", []) if v.startswith("~")
              for name in v[1:].split()}
    for call in ("process_vm_readv", "process_vm_writev"):
        if call not in denied:
            errors.append("SystemCallFilter does not deny %s (CAP_SYS_PTRACE would allow it)" % call)
    for doc in " ".join(keys.get("Documentation", [])).split():
        if not doc.startswith(("file:", "man:", "info:")):
            errors.append("Documentation=%s: not a local document (no such address is published)"
                          % doc)
    if shutil.which("systemd-analyze"):
        with tempfile.TemporaryDirectory() as tmp:
            unit = os.path.join(tmp, "stack_exporter.service")
            # verify insists that ExecStart exists: point it at a binary that does.
            with open(unit, "w") as f:
                f.write(text.replace("/usr/local/bin/stack_exporter", shutil.which("true")))
            out = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True,
                                 text=True)
            said = (out.stdout + out.stderr).strip()
            if out.returncode or said:
                errors.append("systemd-analyze verify: " + said.replace("\n", " | "))
    return errors


def main():
    try:
        config = compose_config()
    except (RuntimeError, yaml.YAMLError) as e:
        print("FAIL compose config: %s" % e)
        print("stack: 0 passed, 1 failed")
        return 1
    return dashlib.report("stack", ((fn.__name__, fn(config)) for fn in CHECKS))


if __name__ == "__main__":
    sys.exit(main())
