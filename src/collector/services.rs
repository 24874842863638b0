//! Per-service memory and CPU against the plan's budgets (THRESHOLDS.md rows M, H, C3, C4, A5),
//! the plan's host-level figures, and the "everything else" memory of row M1.
//!
//! One pass over /proc per scrape: every process's `stat` is read, the process matched to a service,
//! and grouped into instances (process trees). RSS and CPU are read on every scrape. A process's
//! match is kept while its PID, start time, name and argument addresses (`arg_start`/`arg_end` of
//! /proc/PID/stat, new after every exec) stay the same, so its `cmdline` is not read on every
//! scrape; each match is also checked again after [`MATCH_MAX_AGE`] (spread over the processes), which
//! catches a command line rewritten in place (setproctitle) or a process moved to another cgroup.
//! PSS costs a walk of the process's page tables in the kernel (about 0.25 ms a process, more for a
//! big database), so each process's PSS is kept for up to `pss_max_age`.

use std::cell::OnceCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::logging::Condition;
use crate::metrics::MetricSet;
use crate::proc::{self, PidStat, ProcFs};

mod plan;
pub use plan::{Budget, Matcher, PlanConfig, Service};

/// How long a process's match is trusted when nothing in its /proc/PID/stat changed: the longest a
/// command line rewritten in place (setproctitle) keeps its old service. Rechecks are spread over
/// [MATCH_MAX_AGE / 2, MATCH_MAX_AGE] so they do not fall due together.
pub const MATCH_MAX_AGE: Duration = Duration::from_secs(120);

#[derive(Debug)]
pub struct Services {
    procfs: ProcFs,
    /// Where the cgroup filesystems are mounted (`--path.sysfs`/fs/cgroup).
    cgroup_root: PathBuf,
    profile: String,
    plan: PlanConfig,
    services: Vec<Service>,
    pss_max_age: Duration,
    pss_cache: Mutex<HashMap<ProcessKey, PssReading>>,
    match_cache: Mutex<HashMap<ProcessKey, CachedMatch>>,
    match_max_age: Duration,
    /// Logged once while some services' PSS is refused and counted at RSS.
    pss_fallback: Condition,
    /// What needs the previous scrape: the CPU of departed roots, the instances started since.
    history: Mutex<History>,
    /// The last scrape's processes, matched and grouped, keyed by that scrape's deadline.
    snapshot: Mutex<Option<(ScrapeKey, Arc<Snapshot>)>>,
    ticks_per_second: f64,
    page_size: u64,
}

/// A PID alone is reused; with its start time it names one process.
type ProcessKey = (u32, u64);

#[derive(Debug, Clone, Copy)]
struct PssReading {
    /// `None` when the kernel refused smaps_rollup (EACCES happens even as root).
    pss: Option<proc::Pss>,
    expires: Instant,
}

/// What identifies one scrape: its deadline, which every collector of that scrape is given.
pub type ScrapeKey = tokio::time::Instant;

/// The processes of one scrape with their owners. The services and sockets collectors of the same
/// scrape share it, so /proc is listed and matched once.
#[derive(Debug)]
struct Snapshot {
    processes: Vec<Process>,
    owners: Vec<Option<Owner>>,
}

/// What the services' counters need of the previous scrape.
///
/// CPU: a counter must not go down, but a service's CPU time summed over its live processes does
/// when one exits. A worker's time moves into its master's reaped-children time (cutime) when the
/// master reaps it, so the sum holds; an instance's root is reaped by someone outside the service
/// (the init system, on a restart), so its last-seen time is kept here instead.
///
/// Starts: an instance root not seen in the previous scrape started since (a restart by systemd
/// between two scrapes included: new PID, new start time). Roots running at the first scrape are
/// not counted: the exporter did not see them start.
#[derive(Debug, Default)]
struct History {
    /// Per live process: its service, whether it is an instance root, its CPU ticks when last seen.
    last_seen: HashMap<ProcessKey, (usize, bool, u64)>,
    /// Per service: the ticks of instance roots that have exited.
    departed: Vec<u64>,
    /// Per service: instance roots seen starting.
    starts: Vec<u64>,
    /// Whether a scrape has been seen (the first one counts no starts).
    primed: bool,
}

impl History {
    /// Each service's CPU ticks for its counter (its live processes plus its departed roots) and
    /// instance starts so far.
    fn totals(
        &mut self,
        services: usize,
        seen: HashMap<ProcessKey, (usize, bool, u64)>,
    ) -> Vec<(u64, u64)> {
        self.departed.resize(services, 0);
        self.starts.resize(services, 0);
        if self.primed {
            for (key, &(service, is_root, _)) in &seen {
                if is_root && !self.last_seen.contains_key(key) {
                    if let Some(starts) = self.starts.get_mut(service) {
                        *starts += 1;
                    }
                }
            }
        }
        self.primed = true;
        for (key, &(service, is_root, ticks)) in &self.last_seen {
            if let Some(departed) = self.departed.get_mut(service) {
                if is_root && !seen.contains_key(key) {
                    *departed = departed.saturating_add(ticks);
                }
            }
        }
        let mut totals = self.departed.clone();
        for &(service, _, ticks) in seen.values() {
            if let Some(total) = totals.get_mut(service) {
                *total = total.saturating_add(ticks);
            }
        }
        self.last_seen = seen;
        totals
            .into_iter()
            .zip(self.starts.iter().copied())
            .collect()
    }
}

/// The service a process matched, valid while what its stat says about it is unchanged and until
/// `recheck_at`.
#[derive(Debug)]
struct CachedMatch {
    identity: Identity,
    service: Option<usize>,
    recheck_at: Instant,
}

/// What in /proc/PID/stat changes when a process execs: its name, and where its arguments are.
#[derive(Debug, Clone, PartialEq)]
struct Identity {
    comm: String,
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

/// One process as this scrape saw it.
#[derive(Debug)]
struct Process {
    pid: u32,
    stat: PidStat,
}

/// What one service adds up to in this scrape.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ServiceUsage {
    pub processes: u64,
    pub instances: u64,
    pub rss: u64,
    pub pss: u64,
    /// Σ of the anonymous and shared-memory part of PSS: the services' share of "used" memory.
    pub anon_pss: u64,
    pub pss_fallbacks: u64,
    /// Σ SwapPss: the service's pages in swap, which PSS leaves out.
    pub swap: u64,
    pub instance_max: u64,
    pub process_max: u64,
    pub cpu_ticks: u64,
    /// Instance roots seen starting since the exporter started.
    pub starts: u64,
}

impl Services {
    pub fn new(
        procfs: ProcFs,
        cgroup_root: PathBuf,
        profile: String,
        plan: PlanConfig,
        services: Vec<Service>,
        pss_max_age: Duration,
    ) -> Services {
        Services {
            procfs,
            cgroup_root,
            profile,
            plan,
            services,
            pss_max_age,
            pss_cache: Mutex::new(HashMap::new()),
            match_cache: Mutex::new(HashMap::new()),
            match_max_age: MATCH_MAX_AGE,
            pss_fallback: Condition::default(),
            snapshot: Mutex::new(None),
            history: Mutex::new(History::default()),
            ticks_per_second: proc::clock_ticks_per_second(),
            page_size: proc::page_size(),
        }
    }

    pub fn collect(&self, scrape: ScrapeKey) -> anyhow::Result<MetricSet> {
        let snapshot = self.snapshot(scrape)?;
        let usage = self.add_up(&snapshot.processes, &snapshot.owners);
        let meminfo = proc::parse_meminfo(&self.procfs.read("meminfo")?);
        self.log_pss_fallback(&usage);

        let mut out = MetricSet::default();
        for (service, usage) in self.services.iter().zip(&usage) {
            self.emit_service(&mut out, service, usage);
        }
        let oom_kills = self.oom_kills(&snapshot);
        for (service, kills) in self.services.iter().zip(oom_kills) {
            if let Some(kills) = kills {
                out.counter(
                    "stack_service_oom_kills_total",
                    "Processes the OOM killer killed in the service's own memory cgroups (cgroup \
                     v2 memory.events, v1 memory.oom_control); left out where the service has no \
                     cgroup of its own (the root cgroup, or one shared with another service).",
                    vec![("service", service.name.clone())],
                    kills as f64,
                );
            }
        }
        // "Used" (MemTotal - MemAvailable) leaves out reclaimable page cache, so the services'
        // file-backed pages (binaries, libraries) are not in it: subtract only their own memory.
        let services_own = usage
            .iter()
            .map(|u| u.anon_pss)
            .fold(0u64, u64::saturating_add);
        self.emit_plan(&mut out, meminfo.used().saturating_sub(services_own));
        Ok(out)
    }

    /// Each service's name and its processes' PIDs grouped by instance, in the services' order,
    /// by the same matching and instance assignment as [`Services::collect`]; for collectors that
    /// attribute something else to services (the sockets collector).
    pub fn instance_pids(&self, scrape: ScrapeKey) -> anyhow::Result<Vec<(String, Vec<Vec<u32>>)>> {
        let snapshot = self.snapshot(scrape)?;
        let (processes, owners) = (&snapshot.processes, &snapshot.owners);
        let mut grouped: Vec<std::collections::BTreeMap<usize, Vec<u32>>> =
            vec![Default::default(); self.services.len()];
        for (process, owner) in processes.iter().zip(owners) {
            if let Some(Owner { service, root }) = *owner {
                grouped[service].entry(root).or_default().push(process.pid);
            }
        }
        Ok(self
            .services
            .iter()
            .zip(grouped)
            .map(|(s, instances)| (s.name.clone(), instances.into_values().collect()))
            .collect())
    }

    /// This scrape's processes and owners: computed by whichever collector asks first, shared
    /// with the other (which waits for it).
    fn snapshot(&self, scrape: ScrapeKey) -> anyhow::Result<Arc<Snapshot>> {
        let mut slot = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((key, snapshot)) = slot.as_ref() {
            if *key == scrape {
                return Ok(snapshot.clone());
            }
        }
        let processes = self.read_processes()?;
        let owners = assign_services(&processes, &self.own_services(&processes));
        let snapshot = Arc::new(Snapshot { processes, owners });
        *slot = Some((scrape, snapshot.clone()));
        Ok(snapshot)
    }

    fn read_processes(&self) -> anyhow::Result<Vec<Process>> {
        let mut processes = Vec::new();
        for pid in self.procfs.pids()? {
            // A process may exit between listing and reading: skip it.
            let Some(stat) = proc::read_file(&self.procfs.pid_dir(pid).join("stat"))
                .ok()
                .and_then(|t| proc::parse_pid_stat(&t))
            else {
                continue;
            };
            if !stat.is_kernel_thread && !stat.is_zombie {
                processes.push(Process { pid, stat });
            }
        }
        Ok(processes)
    }

    /// Each process's own match, from the cache while the process has not exec'd and its match
    /// is not due for a recheck.
    fn own_services(&self, processes: &[Process]) -> Vec<Option<usize>> {
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
        let alive: HashSet<ProcessKey> = processes
            .iter()
            .map(|p| (p.pid, p.stat.start_ticks))
            .collect();
        cache.retain(|key, _| alive.contains(key));
        own
    }

    /// The first service one of whose matchers fits the process itself.
    fn matching_service(&self, process: &Process) -> Option<usize> {
        let cmdline = OnceCell::new();
        self.services.iter().position(|service| {
            service
                .matchers
                .iter()
                .any(|m| self.matcher_fits(m, process, &cmdline))
        })
    }

    fn matcher_fits(
        &self,
        matcher: &Matcher,
        process: &Process,
        cmdline: &OnceCell<String>,
    ) -> bool {
        let dir = || self.procfs.pid_dir(process.pid);
        let cmdline = || {
            cmdline.get_or_init(|| {
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
        true
    }

    fn add_up(&self, processes: &[Process], owners: &[Option<Owner>]) -> Vec<ServiceUsage> {
        let mut usage = vec![ServiceUsage::default(); self.services.len()];
        let mut instance_pss: HashMap<(usize, usize), u64> = HashMap::new();
        let mut cache = self.pss_cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut alive = HashSet::new();
        let mut cpu_seen = HashMap::new();
        for (index, (process, owner)) in processes.iter().zip(owners).enumerate() {
            let Some(Owner { service, root }) = *owner else {
                continue;
            };
            let key = (process.pid, process.stat.start_ticks);
            alive.insert(key);
            cpu_seen.insert(key, (service, root == index, process.stat.cpu_ticks));
            let rss = process.stat.rss_pages.saturating_mul(self.page_size);
            let pss = self.pss(&mut cache, key, now);
            let Some(u) = usage.get_mut(service) else {
                continue;
            };
            u.processes += 1;
            u.rss = u.rss.saturating_add(rss);
            let (counted, anon) = match pss {
                Some(pss) => {
                    u.swap = u.swap.saturating_add(pss.swap);
                    (pss.total, pss.anon_and_shmem)
                }
                None => {
                    u.pss_fallbacks += 1;
                    (rss, rss)
                }
            };
            u.pss = u.pss.saturating_add(counted);
            u.anon_pss = u.anon_pss.saturating_add(anon);
            u.process_max = u.process_max.max(counted);
            let instance = instance_pss.entry((service, root)).or_default();
            *instance = instance.saturating_add(counted);
        }
        cache.retain(|key, _| alive.contains(key));
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        for (u, (ticks, starts)) in usage
            .iter_mut()
            .zip(history.totals(self.services.len(), cpu_seen))
        {
            u.cpu_ticks = ticks;
            u.starts = starts;
        }
        for ((service, _), pss) in instance_pss {
            if let Some(u) = usage.get_mut(service) {
                u.instances += 1;
                u.instance_max = u.instance_max.max(pss);
            }
        }
        usage
    }

    /// Each service's OOM kills: the sum of the `oom_kill` counters of the memory cgroups its
    /// instance roots run in. A cgroup counts only when it is the service's own: not the root
    /// cgroup, not one holding another service's roots too (a user session, a shared container).
    /// Under systemd a unit's cgroup outlives its process, so a kill followed by `Restart=` still
    /// shows.
    fn oom_kills(&self, snapshot: &Snapshot) -> Vec<Option<u64>> {
        let mut cgroups_of: Vec<BTreeSet<MemoryCgroup>> =
            vec![BTreeSet::new(); self.services.len()];
        for (index, (process, owner)) in snapshot.processes.iter().zip(&snapshot.owners).enumerate()
        {
            let Some(Owner { service, root }) = *owner else {
                continue;
            };
            if root != index {
                continue;
            }
            let path = self.procfs.pid_dir(process.pid).join("cgroup");
            if let Some(cgroup) = proc::read_file(&path).ok().and_then(|t| memory_cgroup(&t)) {
                cgroups_of[service].insert(cgroup);
            }
        }
        let mut owners: HashMap<&MemoryCgroup, usize> = HashMap::new();
        for cgroups in &cgroups_of {
            for cgroup in cgroups {
                *owners.entry(cgroup).or_default() += 1;
            }
        }
        cgroups_of
            .iter()
            .map(|cgroups| {
                let own: Vec<u64> = cgroups
                    .iter()
                    .filter(|c| c.path != "/" && owners.get(c) == Some(&1))
                    .filter_map(|c| c.oom_kills(&self.cgroup_root))
                    .collect();
                (!own.is_empty()).then(|| own.iter().fold(0u64, |a, b| a.saturating_add(*b)))
            })
            .collect()
    }

    /// One line when some services' PSS starts being refused (and counted at RSS), one when it
    /// ends; the counts are in stack_service_pss_fallback_processes.
    fn log_pss_fallback(&self, usage: &[ServiceUsage]) {
        let refused: Vec<&str> = self
            .services
            .iter()
            .zip(usage)
            .filter(|(_, u)| u.pss_fallbacks > 0)
            .map(|(s, _)| s.name.as_str())
            .collect();
        let why = (!refused.is_empty()).then(|| {
            format!(
                "smaps_rollup refused for processes of {}: their PSS is counted at RSS, which \
                 overstates them and understates system memory (rows M); give the exporter \
                 CAP_SYS_PTRACE or run it as root (see stack_service_pss_fallback_processes)",
                refused.join(", ")
            )
        });
        self.pss_fallback.set("services collector: PSS", why);
    }

    fn pss(
        &self,
        cache: &mut HashMap<ProcessKey, PssReading>,
        key: ProcessKey,
        now: Instant,
    ) -> Option<proc::Pss> {
        if let Some(reading) = cache.get(&key).filter(|r| r.expires > now) {
            return reading.pss;
        }
        let path = self.procfs.pid_dir(key.0).join("smaps_rollup");
        let pss = proc::read_file(&path)
            .ok()
            .and_then(|text| proc::parse_smaps_rollup(&text));
        let expires = later(now, spread(self.pss_max_age, key.0));
        cache.insert(key, PssReading { pss, expires });
        pss
    }

    fn emit_service(&self, out: &mut MetricSet, service: &Service, usage: &ServiceUsage) {
        let labels = || vec![("service", service.name.clone())];
        let measured: [(&str, &'static str, f64); 9] = [
            ("stack_service_up", "1 if at least one process of the service runs.", f64::from(usage.processes > 0)),
            ("stack_service_processes", "Processes of the service.", usage.processes as f64),
            ("stack_service_instances", "Instances of the service: process trees rooted at a matched process (one master and its workers).", usage.instances as f64),
            ("stack_service_resident_memory_bytes", "Sum of the RSS of the service's processes (shared pages counted in every process).", usage.rss as f64),
            ("stack_service_proportional_memory_bytes", "Sum of the PSS of the service's processes: shared pages split between their sharers, so forked workers are not double counted. RSS where PSS is refused.", usage.pss as f64),
            ("stack_service_pss_fallback_processes", "Processes whose PSS could not be read and which are counted at their RSS.", usage.pss_fallbacks as f64),
            ("stack_service_swap_bytes", "Sum of the SwapPss of the service's processes: its pages in swap, which PSS leaves out (read with PSS, so as fresh as it).", usage.swap as f64),
            ("stack_service_instance_max_memory_bytes", "PSS of the service's largest instance.", usage.instance_max as f64),
            ("stack_service_process_max_memory_bytes", "PSS of the service's largest process.", usage.process_max as f64),
        ];
        for (name, help, value) in measured {
            out.gauge(name, help, labels(), value);
        }
        out.counter(
            "stack_service_cpu_seconds_total",
            "CPU time of the service's processes and of the children they reaped.",
            labels(),
            usage.cpu_ticks as f64 / self.ticks_per_second,
        );
        out.counter(
            "stack_service_instance_starts_total",
            "Instances (process trees) of the service seen starting since the exporter started: a \
             restart by systemd between two scrapes counts, a recycled worker does not.",
            labels(),
            usage.starts as f64,
        );
        let budget = &service.budget;
        if !budget.is_planned() {
            return;
        }
        let planned: [(&str, &'static str, Option<f64>); 6] = [
            ("stack_service_memory_budget_bytes", "The plan's memory for the service, all instances together.", budget.memory.map(|v| v as f64)),
            ("stack_service_instance_memory_budget_bytes", "The plan's memory for one instance of the service.", budget.instance_memory.map(|v| v as f64)),
            ("stack_service_process_memory_budget_bytes", "The plan's memory for one process of the service (one worker).", budget.process_memory.map(|v| v as f64)),
            ("stack_service_cpu_budget_cores", "The plan's CPU cores for the service, all instances together.", budget.cpu_cores),
            ("stack_service_expected_instances", "Instances of the service the plan runs; present only for planned services.", budget.instances.map(f64::from)),
            ("stack_service_expected_processes", "Processes per instance the plan implies (Gunicorn master + 2 workers = 3; Celery solo = 1).", budget.processes.map(f64::from)),
        ];
        for (name, help, value) in planned {
            if let Some(value) = value {
                out.gauge(name, help, labels(), value);
            }
        }
    }

    fn emit_plan(&self, out: &mut MetricSet, system_memory: u64) {
        out.gauge(
            "stack_plan_info",
            "The active plan profile.",
            vec![("profile", self.profile.clone())],
            1.0,
        );
        let plan = &self.plan;
        let figures: [(&str, &'static str, Option<f64>); 6] = [
            (
                "stack_plan_host_memory_bytes",
                "RAM the plan assumes the host has.",
                plan.host_memory.map(|b| b.0 as f64),
            ),
            (
                "stack_plan_host_cpu_cores",
                "CPU cores the plan assumes the host has.",
                plan.host_cpu_cores.map(|c| c.0),
            ),
            (
                "stack_plan_swap_bytes",
                "Swap the plan prescribes.",
                plan.swap.map(|b| b.0 as f64),
            ),
            (
                "stack_plan_buffer_memory_bytes",
                "Memory the plan keeps free for spikes (not a service budget).",
                plan.buffer_memory.map(|b| b.0 as f64),
            ),
            (
                "stack_plan_database_pool_connections",
                "The plan's ceiling of concurrent database connections.",
                plan.database_pool_connections.map(f64::from),
            ),
            (
                "stack_system_memory_budget_bytes",
                "The plan's memory for the OS and everything that is not a service.",
                plan.system_memory.map(|b| b.0 as f64),
            ),
        ];
        for (name, help, value) in figures {
            if let Some(value) = value {
                out.gauge(name, help, vec![], value);
            }
        }
        out.gauge(
            "stack_system_memory_bytes",
            "Host used memory (MemTotal - MemAvailable) minus the anonymous and shared-memory PSS of every watched service: the OS and everything else.",
            vec![],
            system_memory as f64,
        );
    }
}

/// The memory cgroup a process runs in, from /proc/PID/cgroup.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct MemoryCgroup {
    /// cgroup v2 (the unified `0::` line) or the v1 `memory` hierarchy.
    unified: bool,
    path: String,
}

impl MemoryCgroup {
    /// The kernel's count of OOM kills in this cgroup, None where it cannot be read.
    fn oom_kills(&self, cgroup_root: &Path) -> Option<u64> {
        let relative = self.path.trim_start_matches('/');
        let file = match self.unified {
            true => cgroup_root.join(relative).join("memory.events"),
            false => cgroup_root
                .join("memory")
                .join(relative)
                .join("memory.oom_control"),
        };
        let text = proc::read_file(&file).ok()?;
        text.lines().find_map(|line| {
            let value = line.strip_prefix("oom_kill ")?;
            value.trim().parse().ok()
        })
    }
}

/// The memory cgroup in /proc/PID/cgroup's text: the v1 `memory` controller's line where there
/// is one, else the unified hierarchy's `0::` line.
fn memory_cgroup(text: &str) -> Option<MemoryCgroup> {
    let mut unified = None;
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some(MemoryCgroup {
                unified: false,
                path: path.to_string(),
            });
        }
        if id == "0" && controllers.is_empty() {
            unified = Some(MemoryCgroup {
                unified: true,
                path: path.to_string(),
            });
        }
    }
    unified
}

/// A share of `max_age` between half and all of it, by PID, so that the processes' cached
/// readings do not all fall due on the same scrape.
fn spread(max_age: Duration, pid: u32) -> Duration {
    let share = 0.5 + f64::from(pid % 64) / 128.0;
    Duration::try_from_secs_f64(max_age.as_secs_f64() * share).unwrap_or(max_age)
}

/// `now + age`, or a year from now when that is past what an Instant holds (a huge flag).
fn later(now: Instant, age: Duration) -> Instant {
    now.checked_add(age)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_PTRACE: u32 = 19;

/// The start-up warning when the exporter lacks the capabilities to read other users' processes
/// and directories, naming the collectors (of those `running`) and figures that suffer; `None`
/// when it has them.
pub fn missing_capabilities_warning(effective: u64, running: &[&str]) -> Option<String> {
    let missing: Vec<&str> = [
        (CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
        (CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"),
    ]
    .into_iter()
    .filter(|(bit, _)| effective & (1u64 << bit) == 0)
    .map(|(_, name)| name)
    .collect();
    let hurt: Vec<&str> = [
        (
            "sockets",
            "the sockets collector cannot read other users' processes' /proc/PID/fd: their \
             stack_service_connections are undercounted and their listen queues (rows W3, X1) \
             absent (see stack_sockets_unreadable_processes)",
        ),
        (
            "services",
            "the services collector cannot read their smaps_rollup: their PSS is counted at RSS \
             (rows M, M1; see stack_service_pss_fallback_processes)",
        ),
        (
            "storage",
            "the storage collector cannot walk directories other users keep private: their \
             sizes and file counts are lower bounds (see stack_directory_walk_errors)",
        ),
    ]
    .into_iter()
    .filter(|(collector, _)| running.contains(collector))
    .map(|(_, what)| what)
    .collect();
    if missing.is_empty() || hurt.is_empty() {
        return None;
    }
    Some(format!(
        "missing {}: {}; run as root or grant CAP_SYS_PTRACE (other users' fd, ns and \
         smaps_rollup) and CAP_DAC_READ_SEARCH (their /proc directories and private \
         directories), as deploy/stack_exporter.service does",
        missing.join(" and "),
        hurt.join("; ")
    ))
}

/// Logs [`missing_capabilities_warning`] once, at start-up, from the exporter's own status.
pub fn log_missing_capabilities(procfs: &ProcFs, running: &[&str]) {
    let effective = procfs
        .read("self/status")
        .ok()
        .and_then(|status| proc::parse_effective_capabilities(&status));
    match effective {
        Some(effective) => {
            if let Some(warning) = missing_capabilities_warning(effective, running) {
                log::warn!("{warning}");
            }
        }
        None => log::warn!("cannot read the exporter's capabilities from self/status"),
    }
}

/// The service a process counts toward, and the index of its instance's root process.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Owner {
    service: usize,
    root: usize,
}

/// Gives each process its service: its own match, or else its nearest matched ancestor's, so the
/// workers a server spawns count toward it whatever they are called. An instance's root is a
/// process whose parent belongs to another service (or none).
fn assign_services(processes: &[Process], own: &[Option<usize>]) -> Vec<Option<Owner>> {
    let index_of: HashMap<u32, usize> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.pid, i))
        .collect();
    let mut owners: Vec<Option<Option<Owner>>> = vec![None; processes.len()];
    for start in 0..processes.len() {
        // Walk up to the first ancestor already resolved (or the top), then resolve downwards.
        let mut chain = Vec::new();
        let mut current = Some(start);
        let mut guard = HashSet::new();
        while let Some(i) = current {
            if owners[i].is_some() || !guard.insert(i) {
                break;
            }
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

    fn process(pid: u32, ppid: u32, comm: &str) -> Process {
        Process {
            pid,
            stat: PidStat {
                comm: comm.to_string(),
                ppid,
                ..PidStat::default()
            },
        }
    }

    fn assign(processes: &[Process]) -> Vec<Option<Owner>> {
        let own: Vec<Option<usize>> = processes
            .iter()
            .map(|p| match p.stat.comm.as_str() {
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

    #[test]
    fn cpu_counter_keeps_the_time_of_exited_roots_not_of_reaped_workers() {
        let mut history = History::default();
        // Master (root) 100 ticks with a worker at 50; a second instance's root at 30.
        let seen = HashMap::from([
            ((10, 1), (0, true, 100)),
            ((11, 2), (0, false, 50)),
            ((20, 3), (0, true, 30)),
        ]);
        assert_eq!(history.totals(1, seen), vec![(180, 0)]);
        // The worker exits and its master reaps it: the master's cutime takes its 50 (+5 new).
        let seen = HashMap::from([((10, 1), (0, true, 155)), ((20, 3), (0, true, 30))]);
        assert_eq!(history.totals(1, seen), vec![(185, 0)]);
        // The second instance restarts under a new PID: its old root's 30 is kept, and the new
        // root counts as a start.
        let seen = HashMap::from([((10, 1), (0, true, 155)), ((21, 9), (0, true, 2))]);
        assert_eq!(history.totals(1, seen), vec![(187, 1)]);
    }

    #[test]
    fn the_memory_cgroup_is_v1_memory_where_there_is_one_else_unified() {
        let v1 = "12:pids:/system.slice/redis.service\n4:memory:/system.slice/redis.service\n0::/system.slice/redis.service\n";
        assert_eq!(
            memory_cgroup(v1),
            Some(MemoryCgroup {
                unified: false,
                path: "/system.slice/redis.service".into()
            })
        );
        let v2 = "0::/system.slice/mariadb.service\n";
        assert_eq!(memory_cgroup(v2).map(|c| c.unified), Some(true));
        // A v1 system without the memory controller mounted, and garbage: none.
        assert_eq!(memory_cgroup("3:cpu,cpuacct:/\n"), None);
        assert_eq!(memory_cgroup("no colons here"), None);
    }

    #[test]
    fn a_new_root_is_a_start_a_new_worker_is_not() {
        let mut history = History::default();
        // Two services; at the first scrape nothing counts as started.
        let seen = HashMap::from([((10, 1), (0, true, 0)), ((30, 1), (1, true, 0))]);
        assert_eq!(history.totals(2, seen), vec![(0, 0), (0, 0)]);
        // A recycled worker (new non-root) of service 0; service 1 restarted twice, seen once.
        let seen = HashMap::from([
            ((10, 1), (0, true, 0)),
            ((12, 5), (0, false, 0)),
            ((31, 7), (1, true, 0)),
        ]);
        assert_eq!(history.totals(2, seen), vec![(0, 0), (0, 1)]);
        // PID reuse with a new start time is a new process.
        let seen = HashMap::from([((10, 1), (0, true, 0)), ((31, 8), (1, true, 0))]);
        assert_eq!(history.totals(2, seen), vec![(0, 0), (0, 2)]);
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
        own[0].map(|i| services.services[i].name.clone())
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
            let name = own.map(|i| services.services[i].name.as_str());
            assert_eq!(name, Some(service), "{title}");
        }
    }

    #[test]
    fn huge_ages_do_not_overflow() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
        assert!(spread(Duration::MAX, 7) <= Duration::MAX);
    }

    #[test]
    fn the_capability_warning_names_what_is_missing_and_what_it_costs() {
        let all = u64::MAX;
        let every = ["services", "sockets", "storage"];
        assert_eq!(missing_capabilities_warning(all, &every), None);
        let no_ptrace = all & !(1 << CAP_SYS_PTRACE);
        let warning = missing_capabilities_warning(no_ptrace, &every).unwrap();
        assert!(warning.starts_with("missing CAP_SYS_PTRACE:"), "{warning}");
        assert!(warning.contains("sockets collector") && warning.contains("W3, X1"));
        assert!(warning.contains("services collector") && warning.contains("rows M"));
        assert!(warning.contains("storage collector") && warning.contains("walk_errors"));
        let sockets_only = missing_capabilities_warning(0, &["sockets", "host"]).unwrap();
        assert!(sockets_only.contains("CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH"));
        assert!(!sockets_only.contains("services collector"));
        assert!(!sockets_only.contains("storage collector"));
        assert_eq!(missing_capabilities_warning(0, &["host"]), None);
    }

    #[test]
    fn a_parent_loop_does_not_hang() {
        let processes = vec![process(5, 6, "a"), process(6, 5, "b")];
        assert_eq!(assign(&processes), vec![None, None]);
    }
}
