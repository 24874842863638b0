//! Memory the services' figures need beyond RSS: each process's PSS (kept for `pss_max_age`, since
//! reading it walks page tables), and the OOM kills of the memory cgroups the services run in.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{later, spread, Owner, PidMap, ProcessKey, ServiceUsage, Services, Snapshot};
use crate::proc::{self, ProcFs};

/// An instance root's memory cgroup, read again (a process can be moved, rarely) with its match.
#[derive(Debug)]
pub(super) struct CgroupReading {
    cgroup: Option<MemoryCgroup>,
    reread_at: Instant,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PssReading {
    /// `None` when the kernel refused smaps_rollup (EACCES happens even as root).
    pss: Option<proc::Pss>,
    read_at: Instant,
    expires: Instant,
}

impl Services {
    /// Each service's OOM kills: the sum of the `oom_kill` counters of the memory cgroups its
    /// instance roots run in. A cgroup counts only when it is the service's own: not the root
    /// cgroup, not one holding another service's roots too (a user session, a shared container).
    /// Under systemd a unit's cgroup outlives its process, so a kill followed by `Restart=` still
    /// shows.
    pub(super) fn oom_kills(&self, snapshot: &Snapshot) -> Vec<Option<u64>> {
        let mut cgroups_of: Vec<BTreeSet<MemoryCgroup>> =
            vec![BTreeSet::new(); self.services.len()];
        let now = Instant::now();
        let mut kept = self.cgroups.lock().unwrap_or_else(|e| e.into_inner());
        let mut previous = std::mem::take(&mut *kept);
        for (index, (process, owner)) in snapshot.processes.iter().zip(&snapshot.owners).enumerate()
        {
            let Some(Owner { service, root }) = *owner else {
                continue;
            };
            if root != index {
                continue;
            }
            let key = (process.pid, process.stat.start_ticks);
            let reading = match previous.remove(&key).filter(|r| now < r.reread_at) {
                Some(reading) => reading,
                None => CgroupReading {
                    cgroup: self.memory_cgroup_of(process.pid),
                    reread_at: later(now, spread(self.match_max_age, process.pid)),
                },
            };
            if let Some(cgroup) = &reading.cgroup {
                cgroups_of[service].insert(cgroup.clone());
            }
            kept.insert(key, reading);
        }
        drop(kept);
        let mut owners: PidMap<&MemoryCgroup, usize> = PidMap::default();
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

    /// The memory cgroup `pid` runs in, from /proc/PID/cgroup.
    fn memory_cgroup_of(&self, pid: u32) -> Option<MemoryCgroup> {
        let path = self.procfs.pid_dir(pid).join("cgroup");
        proc::read_file(&path).ok().and_then(|t| memory_cgroup(&t))
    }

    /// One line when some services' PSS starts being refused (and counted at RSS), one when it
    /// ends; the counts are in stack_service_pss_fallback_processes.
    pub(super) fn log_pss_fallback(&self, usage: &[ServiceUsage]) {
        let refused: Vec<&str> = self
            .services
            .iter()
            .zip(usage)
            .filter(|(_, u)| u.pss_fallbacks > 0)
            .map(|(s, _)| &*s.name)
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

    /// A process's PSS: the kept reading while it is younger than `pss_max_age`. An older one
    /// is returned once more and its key put in `due`, for [`Services::refresh_pss`] (never with
    /// a max age of 0, which asks for a reading on every scrape); a process without one is read
    /// now. With the reading's age.
    pub(super) fn pss(
        &self,
        cache: &mut PidMap<ProcessKey, PssReading>,
        key: ProcessKey,
        now: Instant,
        due: &mut Vec<ProcessKey>,
    ) -> (Option<proc::Pss>, Duration) {
        match cache.get(&key) {
            Some(reading) if reading.expires > now => return reading.at(now),
            Some(reading) if !self.pss_max_age.is_zero() => {
                due.push(key);
                return reading.at(now);
            }
            _ => {}
        }
        let reading = PssReading::read(&self.procfs, key.0, now, self.pss_max_age);
        cache.insert(key, reading);
        reading.at(now)
    }

    /// Reads the PSS of the `due` processes again, off the scrape's path; the next scrape
    /// publishes it. A process gone meanwhile is left out (the scrape after forgets it).
    pub(super) fn refresh_pss(&self, due: Vec<ProcessKey>) {
        if due.is_empty() {
            return;
        }
        let (cache, procfs, max_age) = (
            self.pss_cache.clone(),
            self.procfs.clone(),
            self.pss_max_age,
        );
        self.pss_refresh
            .start("services collector: PSS refresh", move || {
                for key in due {
                    let fresh = PssReading::read(&procfs, key.0, Instant::now(), max_age);
                    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(reading) = cache.get_mut(&key) {
                        *reading = fresh;
                    }
                }
            });
    }
}

impl PssReading {
    /// A process's PSS from its smaps_rollup, kept until a time spread over `max_age`; `None`
    /// where the kernel refuses it (or the process is gone).
    fn read(procfs: &ProcFs, pid: u32, now: Instant, max_age: Duration) -> PssReading {
        let path = procfs.pid_dir(pid).join("smaps_rollup");
        let pss = proc::read_file(&path)
            .ok()
            .and_then(|text| proc::parse_smaps_rollup(&text));
        PssReading {
            pss,
            read_at: now,
            expires: later(now, spread(max_age, pid)),
        }
    }

    /// The reading, and its age at `now`.
    fn at(&self, now: Instant) -> (Option<proc::Pss>, Duration) {
        (self.pss, now.saturating_duration_since(self.read_at))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
