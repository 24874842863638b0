//! The services collector against real processes: Gunicorn with 2 workers, Redis and nginx started
//! here, compared with what the kernel says in /proc.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::servers::RedisServer;
use common::{must, require, temp_dir, wait_for, wait_for_port, write, Exporter, Guard};

const WSGI_APP: &str = "def app(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'ok']\n";

fn start_gunicorn(dir: &Path, workers: u32) -> (Guard, u16) {
    require("python3", "apt-get install python3");
    let port = common::free_port();
    write(&dir.join("app.py"), WSGI_APP);
    let guard = Guard::spawn(
        Command::new("python3")
            .args(["-m", "gunicorn", "--chdir"])
            .arg(dir)
            .args(["--workers", &workers.to_string(), "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("app:app")
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    wait_for_port(port, Duration::from_secs(20));
    (guard, port)
}

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
/// on the machine (or started by other tests) do not change the counts.
fn isolating_config(dir: &Path, marker: &Path, redis_port: u16) -> std::path::PathBuf {
    let path = dir.join("stack.toml");
    write(
        &path,
        &format!(
            "profile = \"vps-2gb\"\n\
             [services.wsgi]\nmatch = [{{ cmdline = 'gunicorn --chdir {m}' }}]\n\
             [services.redis]\nmatch = [{{ comm = 'redis-server', cmdline = ':{redis_port}' }}]\n\
             [services.nginx]\nmatch = [{{ comm = 'nginx', cmdline = '-p {m}' }}]\n",
            m = marker.display()
        ),
    );
    path
}

#[test]
fn gunicorn_redis_and_nginx_agree_with_proc() {
    let dir = temp_dir();
    let (mut gunicorn, _) = start_gunicorn(dir.path(), 2);
    let redis_server = RedisServer::start();
    let redis_port = redis_server.port;
    let (_nginx, _) = start_nginx(dir.path());
    let config = isolating_config(dir.path(), dir.path(), redis_port);
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
    let (_a, port_a) = start_gunicorn(&first, 1);
    let (_b, _) = start_gunicorn(&second, 1);
    // Both directories share the temp dir prefix, which the matcher keys on.
    let config = isolating_config(dir.path(), dir.path(), 1);
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
    let (_gunicorn, _) = start_gunicorn(dir.path(), 2);
    write(
        &dir.path().join("asgi.py"),
        "async def app(scope, receive, send):\n    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n    await send({'type': 'http.response.body', 'body': b'ok'})\n",
    );
    write(
        &dir.path().join("tasks.py"),
        &format!("from celery import Celery\napp = Celery('tasks', broker='redis://127.0.0.1:{redis_port}/0')\n"),
    );
    let asgi_port = common::free_port();
    let _uvicorn = Guard::spawn(
        Command::new("python3")
            .args(["-m", "uvicorn", "--app-dir"])
            .arg(dir.path())
            .args(["--port", &asgi_port.to_string(), "asgi:app"])
            .stderr(Stdio::null()),
    );
    let celery = |args: &[&str]| {
        Guard::spawn(
            Command::new("python3")
                .args(["-m", "celery", "-A", "tasks"])
                .args(args)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
    };
    let _worker = celery(&["worker", "--pool=solo", "--loglevel=warning"]);
    let schedule = dir.path().join("beat-schedule");
    let _beat = celery(&[
        "beat",
        "--loglevel=warning",
        "-s",
        schedule.to_str().unwrap(),
    ]);
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
