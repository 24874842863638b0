//! `stack_service_*` from sysinfo's process list: up, processes, instances (process trees, by the
//! same assignment as on Linux), resident memory and CPU time per service, against the plan's
//! budgets, and the plan's host-level figures.
//!
//! Memory is each process's resident set: the working set on Windows. Windows has no PSS; it is
//! published as `stack_service_proportional_memory_bytes` too, so the budget rules, which read
//! PSS, work. There is no fork on Windows (a server's workers are spawned, not copies sharing its
//! pages), so little is double counted. SwapPss, the PSS fallback count and the cgroups' OOM kills
//! are left out. CPU time is the processes' own (sysinfo gives no reaped children's time); an
//! instance root's time is kept when it exits, as on Linux.
//!
//! Matchers: `comm` is the process name without `.exe` (`python`, `postgres`, `redis-server`,
//! `memurai`), `cmdline` the arguments joined by spaces, `exe` the executable's path. `cgroup` and
//! `maps` do not exist here: a matcher that needs one of them matches nothing, `exclude_maps` is
//! not checked.

use std::collections::HashMap;
use std::sync::Mutex;

use sysinfo::{Pid, Process, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

use crate::collector::services::{
    assign_instances, emit_plan, emit_service, History, Matcher, Memory, PidMap, PlanConfig,
    Service, ServiceUsage,
};
use crate::metrics::MetricSet;

/// sysinfo's CPU time is in milliseconds.
const CPU_TIME_PER_SECOND: f64 = 1000.0;

#[derive(Debug)]
pub struct Services {
    profile: String,
    plan: PlanConfig,
    services: Vec<Service>,
    state: Mutex<Option<State>>,
}

#[derive(Debug)]
struct State {
    system: System,
    /// Each process's own match, by PID and start time: its command line does not change.
    matches: HashMap<(u32, u64), Option<usize>>,
    history: History,
}

/// What one scrape refreshes of each process: no threads, no environment, no disk I/O; the
/// command line and executable once per process.
fn refresh_kind() -> ProcessRefreshKind {
    ProcessRefreshKind::nothing()
        .with_memory()
        .with_cpu()
        .with_cmd(UpdateKind::OnlyIfNotSet)
        .with_exe(UpdateKind::OnlyIfNotSet)
        .without_tasks()
}

impl Services {
    /// Reads nothing yet: the first scrape lists the processes.
    pub fn new(profile: String, plan: PlanConfig, services: Vec<Service>) -> Services {
        Services {
            profile,
            plan,
            services,
            state: Mutex::new(None),
        }
    }

    pub fn collect(&self) -> anyhow::Result<MetricSet> {
        let mut slot = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let state = slot.get_or_insert_with(|| State {
            system: System::new(),
            matches: HashMap::new(),
            history: History::default(),
        });
        state
            .system
            .refresh_processes_specifics(ProcessesToUpdate::All, true, refresh_kind());
        state.system.refresh_memory();
        let usage = self.add_up(state);

        let mut out = MetricSet::default();
        for (service, usage) in self.services.iter().zip(&usage) {
            emit_service(
                &mut out,
                service,
                usage,
                CPU_TIME_PER_SECOND,
                Memory::ResidentOnly,
            );
        }
        let used = state
            .system
            .total_memory()
            .saturating_sub(state.system.available_memory());
        let services_own = usage.iter().map(|u| u.rss).fold(0u64, u64::saturating_add);
        emit_plan(
            &mut out,
            &self.profile,
            &self.plan,
            used.saturating_sub(services_own),
        );
        Ok(out)
    }

    fn add_up(&self, state: &mut State) -> Vec<ServiceUsage> {
        let mut processes: Vec<(&Pid, &Process)> = state.system.processes().iter().collect();
        processes.sort_unstable_by_key(|(pid, _)| **pid);
        let key = |pid: &Pid, process: &Process| (pid.as_u32(), process.start_time());
        let own: Vec<Option<usize>> = processes
            .iter()
            .map(|&(pid, process)| {
                *state
                    .matches
                    .entry(key(pid, process))
                    .or_insert_with(|| self.matching_service(process))
            })
            .collect();
        let alive: std::collections::HashSet<(u32, u64)> =
            processes.iter().map(|&(pid, p)| key(pid, p)).collect();
        state.matches.retain(|k, _| alive.contains(k));
        let parents: Vec<(u32, u32)> = processes
            .iter()
            .map(|&(pid, p)| (pid.as_u32(), p.parent().map_or(0, Pid::as_u32)))
            .collect();
        let owners = assign_instances(&parents, &own);

        let mut usage = vec![ServiceUsage::default(); self.services.len()];
        let mut instances: HashMap<(usize, usize), u64> = HashMap::new();
        let mut cpu_seen = PidMap::default();
        for (index, (&(pid, process), owner)) in processes.iter().zip(&owners).enumerate() {
            let Some((service, root)) = *owner else {
                continue;
            };
            let cpu = process.accumulated_cpu_time();
            cpu_seen.insert(key(pid, process), (service, root == index, cpu));
            let memory = process.memory();
            let u = &mut usage[service];
            u.processes += 1;
            u.rss = u.rss.saturating_add(memory);
            u.process_max = u.process_max.max(memory);
            let instance = instances.entry((service, root)).or_default();
            *instance = instance.saturating_add(memory);
        }
        for (u, (cpu, starts)) in usage
            .iter_mut()
            .zip(state.history.totals(self.services.len(), cpu_seen))
        {
            u.cpu_ticks = cpu;
            u.starts = starts;
        }
        // No PSS here: the resident set stands for it (the module's comment says why).
        for u in &mut usage {
            u.pss = u.rss;
        }
        for ((service, _), memory) in instances {
            usage[service].instances += 1;
            usage[service].instance_max = usage[service].instance_max.max(memory);
        }
        usage
    }

    /// The first service one of whose matchers fits the process itself.
    fn matching_service(&self, process: &Process) -> Option<usize> {
        let cmdline = process
            .cmd()
            .iter()
            .map(|arg| arg.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let name = process.name().to_string_lossy();
        let name = strip_exe(&name);
        let exe = process.exe().map(|p| p.to_string_lossy().into_owned());
        self.service_for(name, &cmdline, exe.as_deref())
    }

    /// The first service with a matcher that fits a process of this name (without `.exe`),
    /// command line and executable.
    fn service_for(&self, name: &str, cmdline: &str, exe: Option<&str>) -> Option<usize> {
        self.services
            .iter()
            .position(|service| service.matchers.iter().any(|m| fits(m, name, cmdline, exe)))
    }
}

/// A Windows program's name without its `.exe`, as the matchers name it on Linux.
fn strip_exe(name: &str) -> &str {
    match name.len().checked_sub(4) {
        Some(cut) if name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".exe") => {
            &name[..cut]
        }
        _ => name,
    }
}

fn fits(matcher: &Matcher, name: &str, cmdline: &str, exe: Option<&str>) -> bool {
    if matcher.cgroup.is_some() || matcher.maps.is_some() {
        return false;
    }
    let searched = |pattern: &Option<crate::values::Pattern>, text: &str| {
        pattern.as_ref().map(|p| p.0.is_match(text))
    };
    matcher.comm.as_ref().is_none_or(|p| p.0.is_match(name))
        && searched(&matcher.cmdline, cmdline) != Some(false)
        && searched(&matcher.exclude_cmdline, cmdline) != Some(true)
        && matcher
            .exe
            .as_ref()
            .is_none_or(|p| exe.is_some_and(|exe| p.0.is_match(exe)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The service the dev profile gives a process seen on Windows, by its name and arguments.
    fn dev_service(name: &str, cmdline: &str) -> Option<String> {
        let config = crate::config::load_str(Some(("dev.toml", "profile = \"dev\"\n"))).unwrap();
        let services = Services::new(config.profile, config.plan, config.services);
        let index = services.service_for(strip_exe(name), cmdline, None)?;
        Some(services.services[index].name.to_string())
    }

    #[test]
    fn the_standard_matchers_find_the_windows_dev_stack() {
        let venv = r"C:\Users\dev\shop\.venv\Scripts";
        let cases = [
            ("python.exe", format!(r"{venv}\python.exe manage.py runserver"), Some("wsgi")),
            ("python.exe", format!(r"{venv}\python.exe manage.py runserver 0.0.0.0:8000"), Some("wsgi")),
            ("uvicorn.exe", format!(r"{venv}\uvicorn.exe shop.asgi:application --reload"), Some("asgi")),
            ("python.exe", format!(r"{venv}\python.exe -m uvicorn shop.asgi:application"), Some("asgi")),
            ("postgres.exe", r#""C:/Program Files/PostgreSQL/16/bin/postgres.exe" -D "C:/Program Files/PostgreSQL/16/data""#.to_string(), Some("postgresql")),
            ("redis-server.exe", r"C:\Redis\redis-server.exe redis.windows.conf".to_string(), Some("redis")),
            ("memurai.exe", r#""C:\Program Files\Memurai\memurai.exe" --service-run"#.to_string(), Some("redis")),
            ("stack_exporter.exe", r"C:\stack\stack_exporter.exe --config.file=stack.toml".to_string(), Some("monitoring")),
            ("python.exe", format!(r"{venv}\python.exe manage.py migrate"), None),
            ("code.exe", r"C:\VS Code\code.exe .".to_string(), None),
        ];
        for (name, cmdline, want) in cases {
            assert_eq!(
                dev_service(name, &cmdline).as_deref(),
                want,
                "{name}: {cmdline}"
            );
        }
    }

    #[test]
    fn windows_names_lose_their_exe() {
        assert_eq!(strip_exe("postgres.exe"), "postgres");
        assert_eq!(strip_exe("Memurai.EXE"), "Memurai");
        assert_eq!(strip_exe("redis-server"), "redis-server");
        assert_eq!(strip_exe("exe"), "exe");
    }
}
