//! `--config.check` on the real binary refuses values that parse but cannot be meant (issue 9,
//! finding 9), each with the file, line and key and a non-zero exit; the sample config and every
//! built-in profile still pass.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use common::{exporter_binary, temp_dir, write};

/// Runs `--config.check --config.file=path`: (exit code, stdout, stderr).
fn check_file(path: &Path) -> (i32, String, String) {
    let out = Command::new(exporter_binary())
        .arg("--config.check")
        .arg(format!("--config.file={}", path.display()))
        .output()
        .expect("running stack_exporter");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Each bad config: its text, the line of the refused value, its key and a word of the reason.
const NONSENSE: &[(&str, usize, &str, &str)] = &[
    (
        "[services.web]\ninstances = 1\nmatch = [{}]\n",
        3,
        "services.web.match",
        "matches every process",
    ),
    (
        "[services.web]\nmatch = [{ exclude_cmdline = 'uvicorn' }]\n",
        2,
        "services.web.match",
        "matches every process",
    ),
    (
        "[services.web]\nmatch = [{ cmdline = '' }]\n",
        2,
        "services.web.match",
        "empty pattern",
    ),
    (
        "[services.web]\nmatch = [\n  { comm = \"gunicorn\" },\n  { comm = '.*' },\n]\n",
        4,
        "services.web.match",
        "matches every process",
    ),
    (
        "[services.redis]\nmatch = []\n",
        2,
        "services.redis.match",
        "no process",
    ),
    (
        "profile = \"vps-2gb\"\n\n[services.redis]\nmemory_budget = \"17179869184GiB\"\n",
        4,
        "services.redis.memory_budget",
        "1 PiB",
    ),
    (
        "[services.redis]\nmemory_budget = 0\n",
        2,
        "services.redis.memory_budget",
        "0 bytes",
    ),
    (
        "[services.wsgi]\nprocess_memory_budget = \"0MiB\"\n",
        2,
        "services.wsgi.process_memory_budget",
        "0 bytes",
    ),
    (
        "[services.wsgi]\ninstance_memory_budget = \"4096TiB\"\n",
        2,
        "services.wsgi.instance_memory_budget",
        "1 PiB",
    ),
    (
        "[services.wsgi]\ncpu_budget = 0\n",
        2,
        "services.wsgi.cpu_budget",
        "0 cores",
    ),
    (
        "[services.wsgi]\nprocesses = 0\n",
        2,
        "services.wsgi.processes",
        "at least one process",
    ),
    (
        "[services.wsgi]\ninstances = 4294967295\n",
        2,
        "services.wsgi.instances",
        "Linux allows",
    ),
    (
        "[plan]\nhost_memory = 0\n",
        2,
        "plan.host_memory",
        "0 bytes",
    ),
    (
        "[plan]\nhost_cpu_cores = 0\n",
        2,
        "plan.host_cpu_cores",
        "0 cores",
    ),
    (
        "[plan]\nhost_cpu_cores = 100000\n",
        2,
        "plan.host_cpu_cores",
        "Linux supports",
    ),
    ("[plan]\nswap = \"2048TiB\"\n", 2, "plan.swap", "1 PiB"),
    (
        "[plan]\nsystem_memory = 9223372036854775807\n",
        2,
        "plan.system_memory",
        "1 PiB",
    ),
    (
        "[plan]\nbuffer_memory = \"5PB\"\n",
        2,
        "plan.buffer_memory",
        "unknown size unit",
    ),
    (
        "[plan]\ndatabase_pool_connections = 0\n",
        2,
        "plan.database_pool_connections",
        "database",
    ),
    (
        "[nginx]\naccess_log = \"\"\n",
        2,
        "nginx.access_log",
        "empty path",
    ),
    (
        "[nginx]\naccess_log = \"/var/log/nginx/access.log\\u0000\"\n",
        2,
        "nginx.access_log",
        "NUL",
    ),
    (
        "[nginx]\nstub_status_url = \"http://127.0.0.1:0/nginx_status\"\n",
        2,
        "nginx.stub_status_url",
        "port 0",
    ),
    (
        "[storage]\ndirectories = { backups = \"/var/backups\", logs = \"\" }\n",
        2,
        "storage.directories.logs",
        "empty path",
    ),
    (
        "[storage.directories]\nbackups = \"/var/backups\"\nmedia = \"\"\n",
        3,
        "storage.directories.media",
        "empty path",
    ),
    (
        "[storage]\nmax_files = 0\n",
        2,
        "storage.max_files",
        "before it starts",
    ),
    (
        "[storage]\nmax_duration = \"0ms\"\n",
        2,
        "storage.max_duration",
        "before it starts",
    ),
    // TLS options of the database targets (issue 12): the option named, the password never.
    (
        "[[postgres]]\nname = \"rds\"\nurl = \"postgres://u:Tls-Secret-7@db/app?sslmode=verify_full\"\n",
        3,
        "postgres.url",
        "option `sslmode`",
    ),
    (
        "[[postgres]]\nname = \"rds\"\nurl = \"postgres://u:Tls-Secret-7@db/app?sslmode=verify-full\"\n",
        3,
        "postgres.url",
        "needs sslrootcert",
    ),
    (
        "[[mysql]]\nname = \"rds\"\n\nurl = \"mysql://u:Tls-Secret-7@db/?ssl-mode=REQUIRED&ssl-ca=/nonexistent/ca.pem\"\n",
        4,
        "mysql.url",
        "option `ssl-ca`",
    ),
    (
        "[[redis]]\nname = \"cache\"\nurl = \"redis://:Tls-Secret-7@cache:6379/0?ssl_ca_certs=/etc/hostname\"\n",
        3,
        "redis.url",
        "use rediss://",
    ),
    (
        "[[redis]]\nname = \"cache\"\nurl = \"rediss://cache:6379/0\"\nmanaged = \"yes\"\n",
        4,
        "redis.managed",
        "boolean",
    ),
];

/// The password of the TLS cases in [`NONSENSE`]: no message may repeat it.
const NONSENSE_PASSWORD: &str = "Tls-Secret-7";

#[test]
fn nonsense_is_refused_with_file_line_and_key() {
    let dir = temp_dir();
    for (i, (text, line, key, reason)) in NONSENSE.iter().enumerate() {
        let path = dir.path().join(format!("stack{i}.toml"));
        write(&path, text);
        let (code, _, stderr) = check_file(&path);
        assert_eq!(code, 1, "{text}\n{stderr}");
        let location = format!("{}:{line}:", path.display());
        assert!(
            stderr.contains(&location),
            "{text}\nwant {location}\n{stderr}"
        );
        assert!(stderr.contains(&format!("key `{key}`")), "{text}\n{stderr}");
        assert!(stderr.contains(reason), "{text}\nwant {reason:?}\n{stderr}");
        assert!(!stderr.contains(NONSENSE_PASSWORD), "{stderr}");
    }
}

#[test]
fn the_sample_config_and_every_profile_file_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("examples/stack.toml")];
    let mut profiles: Vec<_> = std::fs::read_dir(root.join("profiles"))
        .expect("profiles/")
        .map(|entry| entry.expect("profiles/ entry").path())
        .collect();
    profiles.sort();
    assert!(profiles.len() >= 8, "{profiles:?}");
    files.extend(profiles);
    for file in files {
        let (code, stdout, stderr) = check_file(&file);
        assert_eq!(code, 0, "{}: {stderr}", file.display());
        assert!(stdout.contains("profile: "), "{}: {stdout}", file.display());
    }
}

#[test]
fn every_built_in_profile_passes_by_name() {
    let dir = temp_dir();
    for (name, _) in stack_exporter::config::PROFILES {
        let path = dir.path().join(format!("{name}.toml"));
        write(&path, &format!("profile = {name:?}\n"));
        let (code, stdout, stderr) = check_file(&path);
        assert_eq!(code, 0, "{name}: {stderr}");
        assert!(stdout.contains(&format!("profile: {name}")), "{stdout}");
    }
}

/// The profiles the README's profile table has a row for: the first cell of each row under
/// `### Profiles`, up to the next heading.
fn readme_profiles(readme: &str) -> BTreeSet<String> {
    readme
        .lines()
        .skip_while(|line| line.trim() != "### Profiles")
        .skip(1)
        .take_while(|line| !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// The profile recipe (docs/architecture.md): a file in profiles/ is a profile once it is built in
/// (`config::PROFILES`) and has its row in the README; the standard service definitions
/// (services.toml) are no profile.
#[test]
fn every_profile_file_is_built_in_and_in_the_readme() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files: BTreeSet<String> = std::fs::read_dir(root.join("profiles"))
        .expect("profiles/")
        .map(|entry| entry.expect("profiles/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| path.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "services")
        .collect();
    assert!(files.len() >= 7, "{files:?}");
    let built_in: BTreeSet<String> = stack_exporter::config::PROFILES
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(
        files, built_in,
        "profiles/*.toml and config::PROFILES differ: add the file to PROFILES"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    assert_eq!(
        files,
        readme_profiles(&readme),
        "profiles/*.toml and the README's profile table differ: add its row"
    );
}

#[test]
fn the_readme_check_reads_the_profile_table_only() {
    let readme = "| `not-a-profile` | x |\n### Profiles\n\nBudgets.\n\n\
                  | profile | host |\n|---|---|\n| `dev` | 2 |\n| `staging` | 4 |\n\n\
                  ## Metrics\n| `stack_host_cpu` | x |\n";
    assert_eq!(
        readme_profiles(readme),
        BTreeSet::from(["dev".to_string(), "staging".to_string()])
    );
}
