//! The services collector against real processes: Gunicorn with 2 workers, Redis and nginx started
//! here, compared with what the kernel says in /proc.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::servers::{start_celery, start_gunicorn, write_celery_app, RedisServer, WSGI_APP};
use common::{must, require, temp_dir, wait_for, wait_for_port, write, Exporter, Guard};

fn start_nginx(dir: &Path) -> (Guard, u16) {
    let nginx = require("nginx", "apt-get install nginx");
    let port = common::free_port();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    write(
        &dir.join("nginx.conf"),
        &format!(
            "worker_processes 2;\nerror_log {d}/logs/error.log;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; \
             fastcgi_temp_path {d}/tmp; uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;\n\
             server {{ listen 127.0.0.1:{port}; location / {{ return 200 'ok'; }} }} }}\n",
            d = dir.display()
        ),
    );
    let guard = Guard::spawn(
        Command::new(nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(10));
    (guard, port)
}

/// The PIDs of `root` and all its descendants, from /proc.
fn process_tree(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat[stat.rfind(')')? + 2..]
                .split(' ')
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree
}

fn kernel_rss(pid: u32) -> f64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap();
    let pages: f64 = statm.split(' ').nth(1).unwrap().parse().unwrap();
    pages * 4096.0
}

fn kernel_pss(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    let line = text.lines().find(|l| l.starts_with("Pss:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<f64>()
        .unwrap()
        * 1024.0
}

fn assert_close(what: &str, reported: f64, kernel: f64, tolerance: f64) {
    let diff = (reported - kernel).abs() / kernel;
    assert!(
        diff <= tolerance,
        "{what}: exporter says {reported}, /proc says {kernel} ({:.1} % apart)",
        diff * 100.0
    );
}

/// A config whose matchers catch only the processes this test started, so servers already running
/// on the machine (or started by other tests) do not change the counts: Gunicorn by the name it
/// was given, nginx by its prefix directory.
fn isolating_config(dir: &Path, gunicorn: &str, redis_port: u16) -> std::path::PathBuf {
    let path = dir.join("stack.toml");
    write(
        &path,
        &format!(
            "profile = \"vps-2gb\"\n\
             [services.wsgi]\nmatch = [{{ cmdline = '{gunicorn}' }}]\n\
             [services.redis]\nmatch = [{{ comm = 'redis-server', cmdline = ':{redis_port}$' }}]\n\
             [services.nginx]\nmatch = [{{ comm = 'nginx', cmdline = '-p {m}' }}]\n",
            m = dir.display()
        ),
    );
    path
}

#[test]
fn gunicorn_redis_and_nginx_agree_with_proc() {
    let dir = temp_dir();
    let name = common::unique_marker("wsgi-test");
    let (mut gunicorn, _) = start_gunicorn(dir.path(), 2, &name);
    let redis_server = RedisServer::start();
    let redis_port = redis_server.port;
    let (_nginx, _) = start_nginx(dir.path());
    let config = isolating_config(dir.path(), &name, redis_port);
    let exporter = Exporter::start(&[
        &format!("--config.file={}", config.display()),
        "--collector.services.pss-max-age=0s",
    ]);

    // Gunicorn's workers fork after start-up: wait until the kernel shows both.
    wait_for("2 gunicorn workers", Duration::from_secs(20), || {
        process_tree(gunicorn.pid()).len() == 3
    });
    let wsgi = [("service", "wsgi")];
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_service_up", &wsgi), 1.0);
    assert_eq!(must(&text, "stack_service_processes", &wsgi), 3.0);
    assert_eq!(must(&text, "stack_service_instances", &wsgi), 1.0);
    assert_eq!(must(&text, "stack_service_expected_processes", &wsgi), 3.0);

    let tree = process_tree(gunicorn.pid());
    let rss: f64 = tree.iter().map(|&p| kernel_rss(p)).sum();
    let pss: f64 = tree.iter().map(|&p| kernel_pss(p)).sum();
    let reported_rss = must(&text, "stack_service_resident_memory_bytes", &wsgi);
    let reported_pss = must(&text, "stack_service_proportional_memory_bytes", &wsgi);
    assert_close("gunicorn RSS", reported_rss, rss, 0.05);
    assert_close("gunicorn PSS", reported_pss, pss, 0.10);
    assert!(
        reported_pss < reported_rss * 0.9,
        "forked workers share pages: PSS {reported_pss} should be well below RSS {reported_rss}"
    );
    let largest_worker = must(&text, "stack_service_process_max_memory_bytes", &wsgi);
    assert!(largest_worker > 0.0 && largest_worker < reported_pss);

    let redis = [("service", "redis")];
    assert_eq!(must(&text, "stack_service_processes", &redis), 1.0);
    assert_eq!(
        must(&text, "stack_service_memory_budget_bytes", &redis),
        128.0 * 1048576.0
    );

    // nginx: a master and 2 workers whose command line does not name the prefix; they count
    // toward nginx because their parent does.
    let nginx = [("service", "nginx")];
    assert_eq!(must(&text, "stack_service_processes", &nginx), 3.0);
    assert_eq!(must(&text, "stack_service_instances", &nginx), 1.0);

    // Unplanned services carry no budget: postgresql is watched, not planned, on vps-2gb.
    assert!(common::metric(
        &text,
        "stack_service_memory_budget_bytes",
        &[("service", "postgresql")]
    )
    .is_none());
    assert!(must(&text, "stack_system_memory_bytes", &[]) > 0.0);
    assert_eq!(
        must(&text, "stack_plan_info", &[("profile", "vps-2gb")]),
        1.0
    );

    // Killed, the service is down on the next scrape, and nothing else is lost.
    let tree = process_tree(gunicorn.pid());
    for &pid in &tree {
        kill9(pid);
    }
    gunicorn.kill();
    // Gone from the kernel's point of view: no /proc entry, or a zombie waiting to be reaped.
    wait_for(
        "every gunicorn process gone",
        Duration::from_secs(10),
        || {
            tree.iter().all(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map_or(true, |stat| stat.contains(") Z ") || stat.contains(") X "))
            })
        },
    );
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_service_up", &wsgi), 0.0);
    assert_eq!(must(&text, "stack_service_processes", &wsgi), 0.0);
    assert_eq!(must(&text, "stack_service_up", &redis), 1.0);
}

fn kill9(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

#[test]
fn two_gunicorn_masters_are_two_instances_and_cpu_counts_up() {
    let dir = temp_dir();
    let first = dir.path().join("a");
    let second = dir.path().join("b");
    std::fs::create_dir_all(&first).unwrap();
    std::fs::create_dir_all(&second).unwrap();
    let name = common::unique_marker("wsgi-test");
    let (_a, port_a) = start_gunicorn(&first, 1, &format!("{name}-a"));
    let (_b, _) = start_gunicorn(&second, 1, &format!("{name}-b"));
    // Both names share the prefix, which the matcher keys on.
    let config = isolating_config(dir.path(), &name, 1);
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    let wsgi = [("service", "wsgi")];
    wait_for("4 gunicorn processes", Duration::from_secs(20), || {
        common::metric(&exporter.scrape(), "stack_service_processes", &wsgi) == Some(4.0)
    });
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_service_instances", &wsgi), 2.0);
    let cpu_before = must(&text, "stack_service_cpu_seconds_total", &wsgi);
    // Requests cost the workers CPU time, which the counter must show.
    for _ in 0..300 {
        common::http_get(port_a, "/", &[]);
    }
    let cpu_after = must(&exporter.scrape(), "stack_service_cpu_seconds_total", &wsgi);
    assert!(cpu_after > cpu_before, "cpu {cpu_before} -> {cpu_after}");
}

#[test]
fn standard_definitions_recognise_the_stack() {
    // No config: the built-in matchers must classify real Gunicorn, Uvicorn and Celery processes.
    require("python3", "apt-get install python3");
    let dir = temp_dir();
    let redis_server = RedisServer::start();
    let redis_port = redis_server.port;
    let (_gunicorn, _) = start_gunicorn(dir.path(), 2, &common::unique_marker("wsgi-test"));
    write(
        &dir.path().join("asgi.py"),
        "async def app(scope, receive, send):\n    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n    await send({'type': 'http.response.body', 'body': b'ok'})\n",
    );
    write_celery_app(dir.path(), redis_port);
    let asgi_port = common::free_port();
    let _uvicorn = Guard::spawn(
        Command::new("python3")
            .args(["-m", "uvicorn", "--app-dir"])
            .arg(dir.path())
            .args(["--port", &asgi_port.to_string(), "asgi:app"])
            .stderr(Stdio::null()),
    );
    let _worker = start_celery(dir.path(), &["worker", "--pool=solo", "--loglevel=warning"]);
    let schedule = dir.path().join("beat-schedule");
    let _beat = start_celery(
        dir.path(),
        &[
            "beat",
            "--loglevel=warning",
            "-s",
            schedule.to_str().unwrap(),
        ],
    );
    wait_for_port(asgi_port, Duration::from_secs(20));

    let exporter = Exporter::start(&[]);
    let up = |text: &str, service: &str| {
        common::metric(text, "stack_service_up", &[("service", service)])
    };
    wait_for("every service up", Duration::from_secs(30), || {
        let text = exporter.scrape();
        ["wsgi", "asgi", "celery_worker", "celery_beat", "redis"]
            .iter()
            .all(|s| up(&text, s) == Some(1.0))
    });
    let text = exporter.scrape();
    assert!(must(&text, "stack_service_processes", &[("service", "wsgi")]) >= 3.0);
    assert!(
        must(
            &text,
            "stack_service_processes",
            &[("service", "celery_beat")]
        ) >= 1.0
    );
    // vps-2gb plans a single solo worker: expected 1 process per instance.
    assert_eq!(
        must(
            &text,
            "stack_service_expected_processes",
            &[("service", "celery_worker")]
        ),
        1.0
    );
}

#[test]
fn a_process_that_execs_under_the_same_name_moves_to_its_new_service() {
    // Two services told apart only by a marker in the command line; the process is `python3`
    // before and after its exec, so its kernel name says nothing.
    require("python3", "apt-get install python3");
    let dir = temp_dir();
    let before = common::unique_marker("before-exec");
    let after = common::unique_marker("after-exec");
    let go = dir.path().join("go");
    let script = format!(
        "import os, sys, time\n\
         while not os.path.exists({go:?}):\n    time.sleep(0.02)\n\
         os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(120)', {after:?}])\n",
        go = go.display().to_string(),
    );
    // The interpreter itself, not a wrapper (pyenv's `python3` is a shell script that execs it).
    let python = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let python = String::from_utf8(python.stdout).unwrap();
    let mut process = Guard::spawn(Command::new(python.trim()).args(["-c", &script, &before]));
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "[services.before]\nmatch = [{{ cmdline = '{before}' }}]\n\
             [services.after]\nmatch = [{{ cmdline = '{after}' }}]\n"
        ),
    );
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    let processes =
        |text: &str, service: &str| must(text, "stack_service_processes", &[("service", service)]);
    let text = exporter.scrape();
    assert_eq!(
        (processes(&text, "before"), processes(&text, "after")),
        (1.0, 0.0)
    );

    write(&go, "");
    let cmdline = || std::fs::read(format!("/proc/{}/cmdline", process.pid())).unwrap();
    wait_for("the exec", Duration::from_secs(10), || {
        !String::from_utf8_lossy(&cmdline()).contains(&before)
    });
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", process.pid())).unwrap();
    assert_eq!(
        comm.trim(),
        "python3",
        "the test needs the same kernel name"
    );
    // Seen on the very next scrape: the exec moved the arguments (arg_start/arg_end), so the
    // match is not waited on for its periodic recheck.
    let text = exporter.scrape();
    assert_eq!(
        (processes(&text, "before"), processes(&text, "after")),
        (0.0, 1.0),
        "the exec'd process should count toward `after`"
    );
    process.kill();
}

#[test]
fn without_privileges_the_exporter_says_what_it_cannot_see() {
    // Redis runs as root; the exporter as `nobody` with no capabilities, as an install without
    // the unit's capabilities would. Its fd, ns and smaps_rollup are refused, and the storage
    // collector (on, for a directory) walks without CAP_DAC_READ_SEARCH.
    let redis_server = RedisServer::start();
    let port = redis_server.port;
    let dir = temp_dir();
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!(
            "{}[services.redis]\nmatch = [{{ comm = 'redis-server', cmdline = ':{port}$' }}]\n\
             [storage]\ndirectories = {{ backups = '{}' }}\n",
            common::no_other_services("redis"),
            dir.path().display()
        ),
    );
    common::make_world_readable(dir.path());
    common::make_world_readable(&config);
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let args = [
        &format!("--config.file={}", config.display()) as &str,
        "--collector.services.pss-max-age=0s",
    ];
    let redis = [("service", "redis")];

    // As root, the baseline: the connection is seen, nothing is unreadable.
    let root = Exporter::start(&args);
    let text = root.scrape();
    assert_eq!(must(&text, "stack_service_connections", &redis), 1.0);
    assert_eq!(
        must(&text, "stack_sockets_unreadable_processes", &redis),
        0.0
    );
    assert_eq!(
        must(&text, "stack_service_pss_fallback_processes", &redis),
        0.0
    );
    assert!(
        !root.log().contains("missing CAP_SYS_PTRACE"),
        "{}",
        root.log()
    );

    let nobody = Exporter::start_unprivileged(&args);
    let text = nobody.scrape();
    let _ = nobody.scrape();
    // The smaller figures are flagged as such, not passed off as the truth.
    assert_eq!(must(&text, "stack_service_processes", &redis), 1.0);
    assert_eq!(
        must(&text, "stack_sockets_unreadable_processes", &redis),
        1.0
    );
    assert_eq!(must(&text, "stack_service_connections", &redis), 0.0);
    assert_eq!(
        must(&text, "stack_service_pss_fallback_processes", &redis),
        1.0
    );
    assert!(
        common::metric(&text, "stack_service_listen_queue_length", &redis).is_none(),
        "no listen queue can be attributed without the fds"
    );
    let log = nobody.log();
    let startup: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("missing CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"))
        .collect();
    assert_eq!(startup.len(), 1, "one start-up line:\n{log}");
    for named in [
        "sockets collector",
        "W3, X1",
        "services collector",
        "rows M",
        "storage collector",
    ] {
        assert!(startup[0].contains(named), "{named} in {}", startup[0]);
    }
    let once = |needle: &str| {
        assert_eq!(
            log.matches(needle).count(),
            1,
            "`{needle}` logged once over two scrapes:\n{log}"
        )
    };
    once("sockets collector: /proc/PID/fd refused for processes of redis");
    once("services collector: PSS: smaps_rollup refused for processes of redis");
}

/// Copies what the services collector reads of a live process (stat, cmdline, smaps_rollup)
/// into a fake /proc, so the built-in matchers can be tried on real processes alone.
fn copy_process(pid: u32, root: &Path) {
    let dir = root.join(pid.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let children = format!("task/{pid}/children");
    std::fs::create_dir_all(dir.join(format!("task/{pid}"))).unwrap();
    for file in ["stat", "cmdline", "smaps_rollup", "maps", &children] {
        let bytes = std::fs::read(format!("/proc/{pid}/{file}")).unwrap();
        std::fs::write(dir.join(file), bytes).unwrap();
    }
}

/// Fails, naming what to install, unless python3 can import `modules` (comma-separated).
fn require_python_modules(modules: &str, pip_packages: &str) {
    let importable = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        importable,
        "python3 cannot import {modules}; install with: pip install {pip_packages}"
    );
}

#[test]
fn gunicorn_with_uvicorn_workers_counts_as_asgi_under_setproctitle() {
    require("python3", "apt-get install python3");
    require_python_modules("setproctitle", "setproctitle");
    require_python_modules("uvloop, httptools", "uvloop httptools");
    let dir = temp_dir();
    std::fs::create_dir_all(dir.path().join("shop")).unwrap();
    write(&dir.path().join("shop/__init__.py"), "");
    write(
        &dir.path().join("shop/asgi.py"),
        "async def application(scope, receive, send):\n    pass\n",
    );
    write(
        &dir.path().join("main.py"),
        // `app` for the Uvicorn worker, `application` (WSGI) for the sync one.
        &format!("{WSGI_APP}application = app\n\nasync def app(scope, receive, send):\n    pass\n"),
    );
    let gunicorn = |extra: &[&str], app: &str| {
        let port = common::free_port();
        let guard = Guard::spawn(
            Command::new("python3")
                .args(["-m", "gunicorn", "--workers", "1", "--chdir"])
                .arg(dir.path())
                .args(["--bind", &format!("127.0.0.1:{port}")])
                .args(extra)
                .arg(app)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        wait_for_port(port, Duration::from_secs(20));
        guard
    };
    let uvicorn = ["-k", "uvicorn.workers.UvicornWorker"];
    // Django's layout names the ASGI module `asgi`; a FastAPI `main:app` needs a name that says so.
    let django = gunicorn(&uvicorn, "shop.asgi:application");
    let named = gunicorn(
        &[&uvicorn[..], &["--name", "shop-asgi"]].concat(),
        "main:app",
    );
    // No hint at all: its workers map uvloop and httptools (uvicorn[standard]), a sync one never.
    let bare = gunicorn(&uvicorn, "main:app");
    let sync = gunicorn(&[], "main:application");
    let masters = [django.pid(), named.pid(), bare.pid(), sync.pid()];
    wait_for(
        "a worker under each master",
        Duration::from_secs(20),
        || masters.iter().all(|&m| process_tree(m).len() == 2),
    );
    // setproctitle has rewritten every command line: the worker class is no longer in it.
    for &master in &masters {
        for pid in process_tree(master) {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
            let cmdline = String::from_utf8_lossy(&cmdline);
            assert!(
                cmdline.starts_with("gunicorn: ") && !cmdline.contains("uvicorn"),
                "setproctitle did not rewrite {pid}: {cmdline:?}"
            );
        }
    }

    // These eight processes alone, in a /proc of their own, under the built-in definitions.
    let procfs = temp_dir();
    for name in ["stat", "meminfo", "mounts"] {
        std::fs::copy(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/proc")
                .join(name),
            procfs.path().join(name),
        )
        .unwrap();
    }
    write(&procfs.path().join("loadavg"), "0.00 0.00 0.00 1/100 1\n");
    for &master in &masters {
        for pid in process_tree(master) {
            copy_process(pid, procfs.path());
        }
    }
    let exporter = Exporter::start(&[
        &format!("--path.procfs={}", procfs.path().display()),
        "--no-collector.sockets",
    ]);
    let text = exporter.scrape();
    let processes = |service: &str| must(&text, "stack_service_processes", &[("service", service)]);
    assert_eq!(
        processes("asgi"),
        6.0,
        "the three Uvicorn-worker Gunicorns:\n{text}"
    );
    assert_eq!(processes("wsgi"), 2.0, "the sync Gunicorn:\n{text}");
    assert_eq!(
        must(&text, "stack_service_instances", &[("service", "asgi")]),
        3.0
    );
}

/// A restart between two scrapes (systemd's `Restart=` after a crash or an OOM kill) is up at
/// both scrapes; the start counter is what shows it. A worker Gunicorn respawns is not a restart.
#[test]
fn a_restart_between_scrapes_counts_a_start_a_respawned_worker_does_not() {
    let dir = temp_dir();
    let name = common::unique_marker("wsgi-test");
    let (gunicorn, _) = start_gunicorn(dir.path(), 2, &name);
    let mut redis_server = RedisServer::start();
    let config = isolating_config(dir.path(), &name, redis_server.port);
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    wait_for("2 gunicorn workers", Duration::from_secs(20), || {
        process_tree(gunicorn.pid()).len() == 3
    });
    let (redis, wsgi) = ([("service", "redis")], [("service", "wsgi")]);
    let starts = |text: &str, service| must(text, "stack_service_instance_starts_total", service);
    let text = exporter.scrape();
    // Running before the exporter's first look: not seen starting.
    assert_eq!(starts(&text, &redis), 0.0);
    assert_eq!(starts(&text, &wsgi), 0.0);

    redis_server.stop();
    redis_server.start_again();
    let worker = process_tree(gunicorn.pid())
        .into_iter()
        .find(|&pid| pid != gunicorn.pid())
        .unwrap();
    kill9(worker);
    wait_for(
        "gunicorn to respawn its worker",
        Duration::from_secs(20),
        || {
            let tree = process_tree(gunicorn.pid());
            tree.len() == 3 && !tree.contains(&worker)
        },
    );
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_service_up", &redis), 1.0);
    assert_eq!(starts(&text, &redis), 1.0, "{text}");
    assert_eq!(starts(&text, &wsgi), 0.0);
    // Counted once, not again at the next scrape.
    assert_eq!(starts(&exporter.scrape(), &redis), 1.0);
}

/// The OOM killer in a service's own memory cgroup (as systemd gives each unit one): the
/// service's counter moves, the service itself lives on (a worker was killed, not the master).
#[test]
fn an_oom_kill_in_a_services_cgroup_is_counted_for_that_service() {
    let python = require("python3", "apt-get install python3");
    let dir = temp_dir();
    let marker = common::unique_marker("oom-service");
    let trigger = dir.path().join("go");
    let done = dir.path().join("done");
    let cgroup = common::MemoryCgroup::create(64 << 20);
    // The master waits for `go`, then runs a worker that writes 200 MiB, and lives on.
    let master = format!(
        "import os, subprocess, sys, time\n\
         while not os.path.exists({trigger:?}): time.sleep(0.05)\n\
         subprocess.run([sys.executable, '-c', 'data = b\"x\" * (200 << 20)'])\n\
         open({done:?}, 'w').close()\n\
         time.sleep(120)\n",
        trigger = trigger.display().to_string(),
        done = done.display().to_string(),
    );
    let script = dir.path().join(format!("{marker}.py"));
    write(&script, &master);
    let shell = format!(
        "echo $$ > '{}' && exec '{}' '{}'",
        cgroup.procs.display(),
        python.display(),
        script.display()
    );
    let _master = Guard::spawn(Command::new("sh").args(["-c", &shell]));
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!("[services.worker]\nmatch = [{{ cmdline = '{marker}' }}]\n"),
    );
    let exporter = Exporter::start(&[&format!("--config.file={}", config.display())]);
    let worker = [("service", "worker")];
    let mut text = String::new();
    wait_for("the service in its cgroup", Duration::from_secs(20), || {
        text = exporter.scrape();
        common::metric(&text, "stack_service_oom_kills_total", &worker).is_some()
    });
    assert_eq!(must(&text, "stack_service_oom_kills_total", &worker), 0.0);

    write(&trigger, "");
    wait_for("the worker OOM-killed", Duration::from_secs(30), || {
        done.exists()
    });
    let text = exporter.scrape();
    assert_eq!(must(&text, "stack_service_oom_kills_total", &worker), 1.0);
    assert_eq!(must(&text, "stack_service_up", &worker), 1.0);
}

/// A process's PSS is kept for `--collector.services.pss-max-age` (6 s here, spread by PID over
/// 3-6 s). The scrape that finds it older still publishes the kept figure and leaves reading it
/// again to a refresh off the scrape's path; a later scrape has the new one. The process grows by
/// 64 MB right after its first reading, so a stale figure and a fresh one are far apart.
#[test]
fn a_kept_pss_is_read_again_after_the_scrape_that_finds_it_due() {
    const MAX_AGE: f64 = 6.0;
    const GROWTH: f64 = (64 << 20) as f64;
    let python = require("python3", "apt-get install python3");
    let dir = temp_dir();
    let marker = common::unique_marker("pss-grower");
    let script = dir.path().join(format!("{marker}.py"));
    let ready = dir.path().join("ready");
    write(
        &script,
        "import signal, sys, time\nheld = []\n\
         signal.signal(signal.SIGUSR1, lambda *_: held.append(b'x' * (64 << 20)))\n\
         open(sys.argv[1], 'w').close()\n\
         while True:\n    time.sleep(1)\n",
    );
    let grower = Guard::spawn(Command::new(python).arg(&script).arg(&ready));
    wait_for("the grower ready", Duration::from_secs(10), || {
        ready.exists()
    });
    let config = dir.path().join("stack.toml");
    write(
        &config,
        &format!("[services.grower]\nmatch = [{{ cmdline = '{marker}' }}]\n"),
    );
    let exporter = Exporter::start(&[
        &format!("--config.file={}", config.display()),
        &format!("--collector.services.pss-max-age={MAX_AGE}s"),
    ]);
    let grower_label = [("service", "grower")];
    let pss = |text: &str| {
        must(
            text,
            "stack_service_proportional_memory_bytes",
            &grower_label,
        )
    };
    let mut text = String::new();
    wait_for("the grower seen", Duration::from_secs(20), || {
        text = exporter.scrape();
        common::metric(&text, "stack_service_processes", &grower_label) == Some(1.0)
    });
    let first_read = std::time::Instant::now(); // the reading was made before this
    let before = pss(&text);

    let pid = grower.pid();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
    wait_for("the grower grown", Duration::from_secs(10), || {
        kernel_rss(pid) > before + GROWTH * 0.9
    });
    assert!(
        first_read.elapsed().as_secs_f64() < MAX_AGE / 2.0,
        "too slow a machine"
    );
    assert_eq!(
        pss(&exporter.scrape()),
        before,
        "kept while younger than its max age"
    );

    // The same spread as the exporter's (services.rs `spread`): when this process's reading
    // falls due.
    let due_after = MAX_AGE * (0.5 + f64::from(pid % 64) / 128.0);
    // Surely due, and no scrape in between: this one finds it due, publishes it once more and
    // has it read after it.
    let due = Duration::from_secs_f64(due_after + 0.2);
    std::thread::sleep(due.saturating_sub(first_read.elapsed()));
    let due_scrape = exporter.scrape();
    assert_eq!(
        pss(&due_scrape),
        before,
        "the scrape that finds it due publishes the kept figure"
    );
    let due_age = must(&due_scrape, "stack_service_pss_age_seconds", &grower_label);
    assert!(
        due_age >= due_after + 0.2,
        "the kept figure is published with its age: {due_age} s"
    );
    wait_for("the PSS read again", Duration::from_secs(30), || {
        text = exporter.scrape();
        pss(&text) != before
    });
    let now = pss(&text);
    assert!(now > before + GROWTH * 0.9, "{before} -> {now}");
    let fresh_age = must(&text, "stack_service_pss_age_seconds", &grower_label);
    assert!(
        fresh_age < due_after,
        "the new reading's age starts again: {fresh_age} s"
    );
}
