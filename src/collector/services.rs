//! Per-service memory and CPU against the plan's budgets (THRESHOLDS.md rows M, H, C3, C4, A5),
//! the plan's host-level figures, and the "everything else" memory of row M1.
//!
//! One pass over /proc per scrape: each process's `stat` is read (or, for a settled process no
//! service watches, kept from an earlier read until its match is due: `services/listing.rs`), the
//! process matched to a service, and grouped into instances (process trees). The RSS and CPU of
//! the services' processes are read on every scrape. A process's
//! match is kept while its PID, start time, name and argument addresses (`arg_start`/`arg_end` of
//! /proc/PID/stat, new after every exec) stay the same, so its `cmdline` is not read on every
//! scrape; each match is also checked again after [`MATCH_MAX_AGE`] (spread over the processes), which
//! catches a command line rewritten in place (setproctitle) or a process moved to another cgroup.
//! PSS costs a walk of the process's page tables in the kernel (about 0.25 ms a process, more for a
//! big database), so each process's PSS is kept for up to `pss_max_age`; the scrape that finds it
//! older publishes it once more and leaves reading it again to a refresh (`crate::refresh`), off
//! the scrape's path. A process seen for the first time is read at once.
//!
//! This file runs the pass and publishes the figures; `services/matching.rs` gives each process its
//! service and instance, `services/memory.rs` reads PSS and the cgroups' OOM kills,
//! `services/capabilities.rs` warns at start-up when other users' processes cannot be read, and
//! `services/plan.rs` holds the `[plan]` and `[services]` config types.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::logging::Condition;
use crate::metrics::MetricSet;
use crate::proc::{self, PidStat, ProcFs};
use crate::refresh::Refresh;

mod capabilities;
mod listing;
mod matching;
mod memory;
mod plan;
pub use capabilities::{log_missing_capabilities, missing_capabilities_warning};
use listing::Known;
use matching::{assign_services, CachedMatch, Owner};
use memory::{CgroupReading, PssReading};
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
    pss_cache: Arc<Mutex<PidMap<ProcessKey, PssReading>>>,
    /// Reads the PSS that came due again, after the scrape that found it due.
    pss_refresh: Refresh,
    /// The instance roots' memory cgroups (OOM kills), kept from scrape to scrape.
    cgroups: Mutex<PidMap<ProcessKey, CgroupReading>>,
    match_cache: Mutex<PidMap<ProcessKey, CachedMatch>>,
    match_max_age: Duration,
    /// What the last scrapes read of each listed PID, so settled processes are not read again.
    known: Mutex<PidMap<u32, Known>>,
    /// Where the last listing of /proc left off.
    listing: Mutex<listing::Listing>,
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
pub type ProcessKey = (u32, u64);

/// A service's name and its processes grouped by instance.
pub type ServiceInstances = (Arc<str>, Vec<Vec<ProcessKey>>);

/// A map looked up once or more per host process per scrape: hashed with foldhash, several
/// times cheaper than SipHash, whose resistance to chosen keys PIDs do not need.
pub(super) type PidMap<K, V> = foldhash::HashMap<K, V>;

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
pub struct History {
    /// Per live process: its service, whether it is an instance root, its CPU ticks when last seen.
    last_seen: PidMap<ProcessKey, (usize, bool, u64)>,
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
    pub fn totals(
        &mut self,
        services: usize,
        seen: PidMap<ProcessKey, (usize, bool, u64)>,
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
    /// Age of the oldest PSS reading the sums hold: past the max age only while it is read again,
    /// so one that keeps growing is a read stuck in the kernel.
    pub pss_age: Duration,
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
            pss_cache: Arc::default(),
            pss_refresh: Refresh::default(),
            cgroups: Mutex::new(PidMap::default()),
            match_cache: Mutex::default(),
            match_max_age: MATCH_MAX_AGE,
            known: Mutex::default(),
            listing: Mutex::default(),
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
            emit_service(&mut out, service, usage, self.ticks_per_second, Memory::Pss);
        }
        let oom_kills = self.oom_kills(&snapshot);
        for (service, kills) in self.services.iter().zip(oom_kills) {
            if let Some(kills) = kills {
                out.counter(
                    "stack_service_oom_kills_total",
                    "Processes the OOM killer killed in the service's own memory cgroups (cgroup \
                     v2 memory.events, v1 memory.oom_control); left out where the service has no \
                     cgroup of its own (the root cgroup, or one shared with another service).",
                    vec![("service", service.name.clone().into())],
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
        emit_plan(
            &mut out,
            &self.profile,
            &self.plan,
            meminfo.used().saturating_sub(services_own),
        );
        Ok(out)
    }

    /// Each service's name and its processes (PID and start time) grouped by instance, in the
    /// services' order, by the same matching and instance assignment as [`Services::collect`];
    /// for collectors that attribute something else to services (the sockets collector).
    pub fn instance_pids(&self, scrape: ScrapeKey) -> anyhow::Result<Vec<ServiceInstances>> {
        let snapshot = self.snapshot(scrape)?;
        let (processes, owners) = (&snapshot.processes, &snapshot.owners);
        let mut grouped: Vec<std::collections::BTreeMap<usize, Vec<ProcessKey>>> =
            vec![Default::default(); self.services.len()];
        for (process, owner) in processes.iter().zip(owners) {
            if let Some(Owner { service, root }) = *owner {
                let key = (process.pid, process.stat.start_ticks);
                grouped[service].entry(root).or_default().push(key);
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
        self.remember_watched(&processes, &owners);
        let snapshot = Arc::new(Snapshot { processes, owners });
        *slot = Some((scrape, snapshot.clone()));
        Ok(snapshot)
    }

    fn add_up(&self, processes: &[Process], owners: &[Option<Owner>]) -> Vec<ServiceUsage> {
        let mut usage = vec![ServiceUsage::default(); self.services.len()];
        let mut instance_pss: PidMap<(usize, usize), u64> = PidMap::default();
        let mut cache = self.pss_cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let mut alive = foldhash::HashSet::default();
        let mut cpu_seen = PidMap::default();
        let mut due = Vec::new();
        for (index, (process, owner)) in processes.iter().zip(owners).enumerate() {
            let Some(Owner { service, root }) = *owner else {
                continue;
            };
            let key = (process.pid, process.stat.start_ticks);
            alive.insert(key);
            cpu_seen.insert(key, (service, root == index, process.stat.cpu_ticks));
            let rss = process.stat.rss_pages.saturating_mul(self.page_size);
            let (pss, pss_age) = self.pss(&mut cache, key, now, &mut due);
            let Some(u) = usage.get_mut(service) else {
                continue;
            };
            u.pss_age = u.pss_age.max(pss_age);
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
        drop(cache);
        self.refresh_pss(due);
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
}

/// How a backend measures a service's memory: PSS (and SwapPss, and the processes it had to count
/// at RSS), or only each process's resident set (the sysinfo backend: Windows has no PSS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Memory {
    Pss,
    ResidentOnly,
}

/// One service's `stack_service_*` figures and budgets; `ticks_per_second` turns `cpu_ticks` into
/// seconds. Shared with the sysinfo backend (collector/portable/services.rs), so both publish the
/// same names.
pub fn emit_service(
    out: &mut MetricSet,
    service: &Service,
    usage: &ServiceUsage,
    ticks_per_second: f64,
    memory: Memory,
) {
    let labels = || vec![("service", service.name.clone().into())];
    let measured: [(&str, &'static str, f64); 10] = [
        ("stack_service_up", "1 if at least one process of the service runs.", f64::from(usage.processes > 0)),
        ("stack_service_processes", "Processes of the service.", usage.processes as f64),
        ("stack_service_instances", "Instances of the service: process trees rooted at a matched process (one master and its workers).", usage.instances as f64),
        ("stack_service_resident_memory_bytes", "Sum of the RSS of the service's processes (shared pages counted in every process).", usage.rss as f64),
        ("stack_service_proportional_memory_bytes", "Sum of the PSS of the service's processes: shared pages split between their sharers, so forked workers are not double counted. RSS where PSS is refused.", usage.pss as f64),
        ("stack_service_pss_fallback_processes", "Processes whose PSS could not be read and which are counted at their RSS.", usage.pss_fallbacks as f64),
        ("stack_service_pss_age_seconds", "How long ago the oldest of the PSS readings in the service's sums was made: up to --collector.services.pss-max-age, and about a scrape interval more while a reading that old is made again after the scrape that found it due; one that keeps growing is a reading stuck in the kernel.", usage.pss_age.as_secs_f64()),
        ("stack_service_swap_bytes", "Sum of the SwapPss of the service's processes: its pages in swap, which PSS leaves out (read with PSS, so as fresh as it).", usage.swap as f64),
        ("stack_service_instance_max_memory_bytes", "PSS of the service's largest instance.", usage.instance_max as f64),
        ("stack_service_process_max_memory_bytes", "PSS of the service's largest process.", usage.process_max as f64),
    ];
    for (name, help, value) in measured {
        let pss_only = matches!(
            name,
            "stack_service_pss_fallback_processes"
                | "stack_service_pss_age_seconds"
                | "stack_service_swap_bytes"
        );
        if memory == Memory::Pss || !pss_only {
            out.gauge(name, help, labels(), value);
        }
    }
    out.counter(
        "stack_service_cpu_seconds_total",
        "CPU time of the service's processes and of the children they reaped.",
        labels(),
        usage.cpu_ticks as f64 / ticks_per_second,
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
        // `instances = 0` is a service watched but not run: no count, so no A5 for it.
        ("stack_service_expected_instances", "Instances of the service the plan runs; present only for planned services.", budget.instances.filter(|&n| n > 0).map(f64::from)),
        ("stack_service_expected_processes", "Processes per instance the plan implies (Gunicorn master + 2 workers = 3; Celery solo = 1).", budget.processes.map(f64::from)),
    ];
    for (name, help, value) in planned {
        if let Some(value) = value {
            out.gauge(name, help, labels(), value);
        }
    }
}

/// The plan's host-level figures and `stack_system_memory_bytes`.
pub fn emit_plan(out: &mut MetricSet, profile: &str, plan: &PlanConfig, system_memory: u64) {
    out.gauge(
        "stack_plan_info",
        "The active plan profile.",
        vec![("profile", profile.to_string().into())],
        1.0,
    );
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

/// Each process's service and the index of its instance's root, given each process's PID and
/// parent PID and its own match: the assignment [`Services`] makes, for the sysinfo backend.
pub fn assign_instances(
    parents: &[(u32, u32)],
    own: &[Option<usize>],
) -> Vec<Option<(usize, usize)>> {
    let processes: Vec<Process> = parents
        .iter()
        .map(|&(pid, ppid)| Process {
            pid,
            stat: PidStat {
                ppid,
                ..PidStat::default()
            },
        })
        .collect();
    assign_services(&processes, own)
        .into_iter()
        .map(|owner| owner.map(|Owner { service, root }| (service, root)))
        .collect()
}

/// A share of `max_age` between half and all of it, by PID, so that the processes' cached
/// readings do not all fall due on the same scrape.
pub(crate) fn spread(max_age: Duration, pid: u32) -> Duration {
    let share = 0.5 + f64::from(pid % 64) / 128.0;
    Duration::try_from_secs_f64(max_age.as_secs_f64() * share).unwrap_or(max_age)
}

/// `now + age`, or a year from now when that is past what an Instant holds (a huge flag).
pub(crate) fn later(now: Instant, age: Duration) -> Instant {
    now.checked_add(age)
        .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_counter_keeps_the_time_of_exited_roots_not_of_reaped_workers() {
        let mut history = History::default();
        // Master (root) 100 ticks with a worker at 50; a second instance's root at 30.
        let seen = PidMap::from_iter([
            ((10, 1), (0, true, 100)),
            ((11, 2), (0, false, 50)),
            ((20, 3), (0, true, 30)),
        ]);
        assert_eq!(history.totals(1, seen), vec![(180, 0)]);
        // The worker exits and its master reaps it: the master's cutime takes its 50 (+5 new).
        let seen = PidMap::from_iter([((10, 1), (0, true, 155)), ((20, 3), (0, true, 30))]);
        assert_eq!(history.totals(1, seen), vec![(185, 0)]);
        // The second instance restarts under a new PID: its old root's 30 is kept, and the new
        // root counts as a start.
        let seen = PidMap::from_iter([((10, 1), (0, true, 155)), ((21, 9), (0, true, 2))]);
        assert_eq!(history.totals(1, seen), vec![(187, 1)]);
    }
    #[test]
    fn a_new_root_is_a_start_a_new_worker_is_not() {
        let mut history = History::default();
        // Two services; at the first scrape nothing counts as started.
        let seen = PidMap::from_iter([((10, 1), (0, true, 0)), ((30, 1), (1, true, 0))]);
        assert_eq!(history.totals(2, seen), vec![(0, 0), (0, 0)]);
        // A recycled worker (new non-root) of service 0; service 1 restarted twice, seen once.
        let seen = PidMap::from_iter([
            ((10, 1), (0, true, 0)),
            ((12, 5), (0, false, 0)),
            ((31, 7), (1, true, 0)),
        ]);
        assert_eq!(history.totals(2, seen), vec![(0, 0), (0, 1)]);
        // PID reuse with a new start time is a new process.
        let seen = PidMap::from_iter([((10, 1), (0, true, 0)), ((31, 8), (1, true, 0))]);
        assert_eq!(history.totals(2, seen), vec![(0, 0), (0, 2)]);
    }

    #[test]
    fn huge_ages_do_not_overflow() {
        let now = Instant::now();
        assert!(later(now, Duration::MAX) > now);
        assert!(spread(Duration::MAX, 7) <= Duration::MAX);
    }
}
