//! Which service each process belongs to: its own matchers (cached while its stat is unchanged),
//! else its nearest matched ancestor's; and which process is the root of its instance.

use std::cell::OnceCell;
use std::time::Instant;

use super::{later, spread, Matcher, PidMap, Process, ProcessKey, Services};
use crate::proc::{self, PidStat};

/// The service a process matched, valid while what its stat says about it is unchanged and until
/// `recheck_at`.
#[derive(Debug)]
pub(super) struct CachedMatch {
    identity: Identity,
    service: Option<usize>,
    recheck_at: Instant,
}

impl CachedMatch {
    pub(super) fn is_due(&self, now: Instant) -> bool {
        self.recheck_at <= now
    }
}

/// What in /proc/PID/stat changes when a process execs: its name, and where its arguments are.
#[derive(Debug, Clone, PartialEq)]
struct Identity {
    comm: std::sync::Arc<str>,
    arg_start: u64,
    arg_end: u64,
}

impl Identity {
    fn of(stat: &PidStat) -> Identity {
        Identity {
            comm: stat.comm.clone(),
            arg_start: stat.arg_start,
            arg_end: stat.arg_end,
        }
    }
}

impl Services {
    /// Each process's own match, from the cache while the process has not exec'd and its match
    /// is not due for a recheck.
    pub(super) fn own_services(&self, processes: &[Process]) -> Vec<Option<usize>> {
        let mut cache = self.match_cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let own = processes
            .iter()
            .map(|process| {
                let key = (process.pid, process.stat.start_ticks);
                let identity = Identity::of(&process.stat);
                match cache.get(&key) {
                    Some(cached) if cached.identity == identity && cached.recheck_at > now => {
                        cached.service
                    }
                    _ => {
                        let service = self.matching_service(process);
                        let recheck_at = later(now, spread(self.match_max_age, process.pid));
                        let entry = CachedMatch {
                            identity,
                            service,
                            recheck_at,
                        };
                        cache.insert(key, entry);
                        service
                    }
                }
            })
            .collect();
        let alive: foldhash::HashSet<ProcessKey> = processes
            .iter()
            .map(|p| (p.pid, p.stat.start_ticks))
            .collect();
        cache.retain(|key, _| alive.contains(key));
        own
    }

    /// The first service one of whose matchers fits the process itself.
    fn matching_service(&self, process: &Process) -> Option<usize> {
        let read = ReadOnce::default();
        self.services.iter().position(|service| {
            service
                .matchers
                .iter()
                .any(|m| self.matcher_fits(m, process, &read))
        })
    }

    /// The memory maps of the process and of its children, one after the other.
    fn family_maps(&self, pid: u32) -> String {
        let dir = self.procfs.pid_dir(pid);
        let mut maps = std::fs::read_to_string(dir.join("maps")).unwrap_or_default();
        let children = dir.join("task").join(pid.to_string()).join("children");
        let children = std::fs::read_to_string(children).unwrap_or_default();
        for child in children.split_whitespace() {
            let child_maps = self.procfs.pid_dir(child.parse().unwrap_or(0)).join("maps");
            maps.push_str(&std::fs::read_to_string(child_maps).unwrap_or_default());
        }
        maps
    }

    fn matcher_fits(&self, matcher: &Matcher, process: &Process, read: &ReadOnce) -> bool {
        let dir = || self.procfs.pid_dir(process.pid);
        let maps = || read.maps.get_or_init(|| self.family_maps(process.pid));
        let cmdline = || {
            read.cmdline.get_or_init(|| {
                std::fs::read(dir().join("cmdline"))
                    .map(|raw| proc::parse_cmdline(&raw))
                    .unwrap_or_default()
            })
        };
        if let Some(comm) = &matcher.comm {
            if !comm.0.is_match(&process.stat.comm) {
                return false;
            }
        }
        if let Some(pattern) = &matcher.cmdline {
            if !pattern.0.is_match(cmdline()) {
                return false;
            }
        }
        if let Some(pattern) = &matcher.exclude_cmdline {
            if pattern.0.is_match(cmdline()) {
                return false;
            }
        }
        if let Some(pattern) = &matcher.exe {
            let exe = std::fs::read_link(dir().join("exe"));
            if !exe.is_ok_and(|p| pattern.0.is_match(&p.to_string_lossy())) {
                return false;
            }
        }
        if let Some(pattern) = &matcher.cgroup {
            let cgroup = std::fs::read_to_string(dir().join("cgroup"));
            if !cgroup.is_ok_and(|c| pattern.0.is_match(&c)) {
                return false;
            }
        }
        if let Some(pattern) = &matcher.maps {
            if !pattern.0.is_match(maps()) {
                return false;
            }
        }
        if let Some(pattern) = &matcher.exclude_maps {
            if pattern.0.is_match(maps()) {
                return false;
            }
        }
        true
    }
}

/// What matching one process reads from /proc, read at most once across its matchers.
#[derive(Default)]
struct ReadOnce {
    cmdline: OnceCell<String>,
    maps: OnceCell<String>,
}

/// The service a process counts toward, and the index of its instance's root process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Owner {
    pub(super) service: usize,
    pub(super) root: usize,
}

/// Gives each process its service: its own match, or else its nearest matched ancestor's, so the
/// workers a server spawns count toward it whatever they are called. An instance's root is a
/// process whose parent belongs to another service (or none).
pub(super) fn assign_services(processes: &[Process], own: &[Option<usize>]) -> Vec<Option<Owner>> {
    let index_of: PidMap<u32, usize> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.pid, i))
        .collect();
    let mut owners: Vec<Option<Option<Owner>>> = vec![None; processes.len()];
    // The walk that last passed each process (a cycle of parents ends a walk where it began),
    // and one chain for every walk: no allocation per process.
    let mut walked_by: Vec<usize> = vec![usize::MAX; processes.len()];
    let mut chain = Vec::new();
    for start in 0..processes.len() {
        // Walk up to the first ancestor already resolved (or the top), then resolve downwards.
        chain.clear();
        let mut current = Some(start);
        while let Some(i) = current {
            if owners[i].is_some() || walked_by[i] == start {
                break;
            }
            walked_by[i] = start;
            chain.push(i);
            current = index_of.get(&processes[i].stat.ppid).copied();
        }
        let mut above: Option<Owner> = current.and_then(|i| owners[i].flatten());
        for &i in chain.iter().rev() {
            let owner = match (own[i], above) {
                (Some(service), Some(parent)) if parent.service == service => Some(parent),
                (Some(service), _) => Some(Owner { service, root: i }),
                (None, parent) => parent,
            };
            owners[i] = Some(owner);
            above = owner;
        }
    }
    owners.into_iter().map(Option::flatten).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::services::MATCH_MAX_AGE;
    use crate::proc::ProcFs;
    use std::collections::HashSet;
    use std::path::PathBuf;
    use std::time::Duration;

    fn process(pid: u32, ppid: u32, comm: &str) -> Process {
        Process {
            pid,
            stat: PidStat {
                comm: comm.into(),
                ppid,
                ..PidStat::default()
            },
        }
    }

    fn assign(processes: &[Process]) -> Vec<Option<Owner>> {
        let own: Vec<Option<usize>> = processes
            .iter()
            .map(|p| match &*p.stat.comm {
                "gunicorn" => Some(0),
                "redis-server" => Some(1),
                _ => None,
            })
            .collect();
        assign_services(processes, &own)
    }

    #[test]
    fn workers_join_their_master_instance() {
        let processes = vec![
            process(1, 0, "init"),
            process(10, 1, "gunicorn"),
            process(11, 10, "gunicorn"),
            process(12, 10, "gunicorn"),
            process(20, 1, "redis-server"),
        ];
        let owners = assign(&processes);
        assert_eq!(owners[0], None);
        let master = Some(Owner {
            service: 0,
            root: 1,
        });
        assert_eq!(owners[1..4], [master, master, master]);
        assert_eq!(
            owners[4],
            Some(Owner {
                service: 1,
                root: 4
            })
        );
    }

    #[test]
    fn unmatched_children_inherit_and_nested_services_split() {
        // A worker spawned as "python3" still counts for gunicorn; a redis started by the
        // gunicorn master is its own service and instance.
        let processes = vec![
            process(12, 11, "python3"),
            process(11, 10, "gunicorn"),
            process(10, 1, "bash"),
            process(13, 11, "redis-server"),
        ];
        let owners = assign(&processes);
        assert_eq!(
            owners[0],
            Some(Owner {
                service: 0,
                root: 1
            })
        );
        assert_eq!(owners[2], None);
        assert_eq!(
            owners[3],
            Some(Owner {
                service: 1,
                root: 3
            })
        );
    }

    #[test]
    fn two_masters_are_two_instances() {
        let processes = vec![
            process(10, 1, "gunicorn"),
            process(11, 10, "gunicorn"),
            process(20, 1, "gunicorn"),
            process(21, 20, "gunicorn"),
        ];
        let owners = assign(&processes);
        let roots: HashSet<usize> = owners.iter().map(|o| o.unwrap().root).collect();
        assert_eq!(roots.len(), 2);
    }

    /// A fake /proc with one `python3` process (PID 40) whose command line is `cmdline`.
    fn fake_process(root: &std::path::Path, cmdline: &str) {
        let dir = root.join("40");
        std::fs::create_dir_all(&dir).unwrap();
        let stat = "40 (python3) S 1 40 40 0 -1 4194560 0 0 0 0 1 1 0 0 20 0 1 0 777 0 10";
        std::fs::write(dir.join("stat"), stat).unwrap();
        std::fs::write(dir.join("cmdline"), cmdline.replace(' ', "\0")).unwrap();
    }

    fn matcher_services(procfs: &std::path::Path, max_age: Duration) -> Services {
        let config = crate::config::load_str(Some((
            "test.toml",
            "[services.one]\nmatch = [{ cmdline = 'marker-one' }]\n\
             [services.two]\nmatch = [{ cmdline = 'marker-two' }]\n",
        )))
        .unwrap();
        let mut services = Services::new(
            ProcFs::new(procfs),
            PathBuf::from("/sys/fs/cgroup"),
            config.profile,
            config.plan,
            config.services,
            Duration::ZERO,
        );
        services.match_max_age = max_age;
        services
    }

    fn service_of_40(services: &Services) -> Option<String> {
        let processes = services.read_processes().unwrap();
        let own = services.own_services(&processes);
        own[0].map(|i| services.services[i].name.to_string())
    }

    #[test]
    fn a_command_line_rewritten_in_place_is_matched_again_when_due() {
        // setproctitle changes neither the name nor the argument addresses: only the periodic
        // recheck sees it.
        let dir = tempfile::tempdir().unwrap();
        fake_process(dir.path(), "python3 app.py marker-one");
        let cached = matcher_services(dir.path(), MATCH_MAX_AGE);
        let due = matcher_services(dir.path(), Duration::ZERO);
        assert_eq!(service_of_40(&cached).as_deref(), Some("one"));
        assert_eq!(service_of_40(&due).as_deref(), Some("one"));
        fake_process(dir.path(), "title marker-two");
        assert_eq!(
            service_of_40(&cached).as_deref(),
            Some("one"),
            "not yet due"
        );
        assert_eq!(service_of_40(&due).as_deref(), Some("two"));
    }

    #[test]
    fn setproctitle_gunicorn_titles_are_told_apart_by_their_name() {
        // The built-in definitions on the titles Gunicorn gives itself under setproctitle.
        let config = crate::config::load_str(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let services = Services::new(
            ProcFs::new(dir.path()),
            PathBuf::from("/sys/fs/cgroup"),
            config.profile,
            config.plan,
            config.services,
            Duration::ZERO,
        );
        for (title, service) in [
            ("gunicorn: master [shop.asgi:application]", "asgi"),
            ("gunicorn: worker [shop-asgi]", "asgi"),
            ("gunicorn: worker [Shop-Uvicorn]", "asgi"),
            ("gunicorn: master [main:app]", "wsgi"),
            ("gunicorn: worker [shop.wsgi:application]", "wsgi"),
            (
                "/usr/bin/python3 /usr/bin/gunicorn -k uvicorn.workers.UvicornWorker main:app",
                "asgi",
            ),
            ("/usr/bin/python3 /usr/bin/gunicorn main:app", "wsgi"),
        ] {
            fake_process(dir.path(), title);
            let processes = services.read_processes().unwrap();
            let own = services.matching_service(&processes[0]);
            let name = own.map(|i| &*services.services[i].name);
            assert_eq!(name, Some(service), "{title}");
        }
    }

    #[test]
    fn a_gunicorn_whose_workers_load_uvloop_is_asgi_whatever_its_title() {
        // Under setproctitle a title without a hint; the master (PID 40) has not loaded the
        // worker class's libraries, its worker (PID 41) has.
        let config = crate::config::load_str(None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let services = Services::new(
            ProcFs::new(dir.path()),
            PathBuf::from("/sys/fs/cgroup"),
            config.profile,
            config.plan,
            config.services,
            Duration::ZERO,
        );
        fake_process(dir.path(), "gunicorn: master [main:app]");
        let master = dir.path().join("40");
        std::fs::write(
            master.join("maps"),
            "7f00-7f01 r-xp 0 08:01 5 /usr/lib/libc.so.6\n",
        )
        .unwrap();
        std::fs::create_dir_all(master.join("task/40")).unwrap();
        std::fs::write(master.join("task/40/children"), "41 ").unwrap();
        let worker = dir.path().join("41");
        std::fs::create_dir_all(&worker).unwrap();
        let service = |services: &Services| {
            let processes = services.read_processes().unwrap();
            let own = services.matching_service(&processes[0]);
            own.map(|i| services.services[i].name.to_string())
        };
        assert_eq!(
            service(&services).as_deref(),
            Some("wsgi"),
            "no worker maps"
        );
        let uvloop = "7f02-7f03 r-xp 0 08:01 6 /srv/venv/lib/python3.11/site-packages/\
                      uvloop/loop.cpython-311-x86_64-linux-gnu.so\n";
        std::fs::write(worker.join("maps"), uvloop).unwrap();
        assert_eq!(service(&services).as_deref(), Some("asgi"));
    }

    #[test]
    fn a_parent_loop_does_not_hang() {
        let processes = vec![process(5, 6, "a"), process(6, 5, "b")];
        assert_eq!(assign(&processes), vec![None, None]);
    }
}
