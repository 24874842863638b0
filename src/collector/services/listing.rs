//! Which processes' /proc/PID/stat a scrape reads: every one the last scrape gave to a service,
//! every process started in the last [`YOUNG`], and every PID new to the listing; the others (most
//! of a host: shells, daemons, kernel threads) again only when their match is due for its
//! recheck, until then from the last read. Reading `stat` is most of a scrape's kernel time on a
//! host of a few hundred processes; a watched process's is read through its file kept open.
//!
//! What a kept stat can miss until the recheck, as the match cache already does for a command
//! line rewritten in place: an exec by a process no service watched, older than [`YOUNG`] (a
//! watched one is read every scrape, so its exec is seen at once), and a new parent of an
//! unwatched process (its kept `ppid` names the dead parent, a PID missing from the listing, so
//! it counts as the top of its tree).
//!
//! The listing itself, the kernel's walk over every process, is whole once a minute; in between
//! it starts at the PIDs handed out since the last one ([`Services::list_pids`]), and the known
//! processes stand for the rest.

use foldhash::HashMapExt;
use std::fs::File;
use std::time::{Duration, Instant};

use super::matching::CachedMatch;
use super::{later, spread, Owner, PidMap, Process, ProcessKey, Services};
use crate::proc::pids::PidDir;
use crate::proc::{self, PidStat};

/// How long after its start a process is read every scrape: one caught between its fork and its
/// exec (a service starting, a wrapper script) still has its parent's name and arguments.
const YOUNG: Duration = Duration::from_secs(30);

/// How often all of /proc is listed; in between, only the PIDs handed out since the last listing.
const FULL_LISTING_EVERY: Duration = Duration::from_secs(60);

/// PIDs below the last one handed out that a partial listing looks at again: fork hands out the
/// PID a moment before the process shows in /proc, so the last listing may have missed it.
const PID_MARGIN: u32 = 256;

/// Where the last listing of /proc left off.
#[derive(Debug, Default)]
pub(super) struct Listing {
    dir: Option<PidDir>,
    /// /proc/loadavg's last PID, read before the last listing.
    last_pid: Option<u32>,
    /// When the next full listing is due.
    full_due: Option<Instant>,
    /// Whether /proc lists the exporter's own PID namespace (asked once).
    own_namespace: Option<bool>,
}

/// A partial listing's new PIDs with the known ones it did not list, in PID order (a PID listed
/// again with another inode is the listing's).
fn with_known(listed: Vec<(u32, u64)>, known: &PidMap<u32, Known>) -> Vec<(u32, u64)> {
    let mut entries: Vec<(u32, u64)> = known
        .iter()
        .filter(|(&pid, _)| listed.binary_search_by_key(&pid, |&(p, _)| p).is_err())
        .map(|(&pid, last)| (pid, last.inode))
        .collect();
    entries.extend(listed);
    entries.sort_unstable();
    entries
}

/// Stat files kept open at most: a host's watched processes, and an eighth of the exporter's
/// file descriptor limit (128 under the common 1024), so that connections and reads keep theirs.
fn kept_files() -> usize {
    static KEPT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *KEPT.get_or_init(|| (proc::open_files_limit().unwrap_or(1024) / 8).min(256) as usize)
}

/// The last read of one listed PID.
#[derive(Debug)]
pub(super) struct Known {
    /// The inode of /proc/PID: another process under the same PID has another one.
    inode: u64,
    stat: PidStat,
    /// Whether the last scrape gave the process to a service (its own match or its parent's).
    watched: bool,
    reread_at: Instant,
    /// Its /proc/PID/stat, kept open while the process is watched: a read is then a seek and a
    /// read, not an open (a walk through /proc), reads and a close.
    file: Option<File>,
}

impl Services {
    /// This scrape's processes (kernel threads and zombies left out), each from a new read of its
    /// stat or, for a settled unwatched one, from the last.
    pub(super) fn read_processes(&self) -> anyhow::Result<Vec<Process>> {
        let now = Instant::now();
        let (listed, complete) = self.list_pids(now)?;
        let uptime_ticks = self
            .procfs
            .read("uptime")
            .ok()
            .and_then(|text| proc::parse_uptime(&text))
            .map(|seconds| seconds * self.ticks_per_second);
        let matches = self.match_cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        // Sized as before: the host's few hundred processes, without regrowing the table.
        let capacity = known.len();
        let mut previous = std::mem::replace(&mut *known, PidMap::with_capacity(capacity));
        let entries = if complete {
            listed
        } else {
            with_known(listed, &previous)
        };
        let mut processes = Vec::new();
        for (pid, inode) in entries {
            let last = previous.remove(&pid).filter(|last| last.inode == inode);
            let entry = match last {
                Some(last) if self.settled(pid, &last, now, uptime_ticks, &matches) => Some(last),
                last => self.read_known(pid, inode, now, last),
            };
            let Some(entry) = entry else {
                continue; // exited between the listing and the read
            };
            if !entry.stat.is_kernel_thread && !entry.stat.is_zombie {
                let stat = entry.stat.clone();
                processes.push(Process { pid, stat });
            }
            known.insert(pid, entry);
        }
        Ok(processes)
    }

    /// The PIDs of /proc with the inodes of their directories, and whether that is all of them:
    /// every [`FULL_LISTING_EVERY`] the whole listing, in between only the PIDs handed out since
    /// the last listing (from /proc/loadavg's last PID, less [`PID_MARGIN`]). PIDs grow until
    /// they wrap around, so a new process is always among those; a wrap, an unreadable loadavg,
    /// or a /proc of another PID namespace than the exporter's (whose loadavg says nothing of
    /// it) gets a full listing. An unwatched process that exited stays in the snapshot until the
    /// next full listing, unmatched and uncounted; a watched or young one is read every scrape,
    /// and leaves it at once.
    fn list_pids(&self, now: Instant) -> anyhow::Result<(Vec<(u32, u64)>, bool)> {
        let mut listing = self.listing.lock().unwrap_or_else(|e| e.into_inner());
        let listing = &mut *listing;
        let last_pid = self
            .procfs
            .read("loadavg")
            .ok()
            .and_then(|text| proc::parse_last_pid(&text));
        let own = *listing
            .own_namespace
            .get_or_insert_with(|| self.procfs.is_own_pid_namespace());
        let since = listing.last_pid.take();
        let dir = match &mut listing.dir {
            Some(dir) => dir,
            None => match PidDir::open(&self.procfs.path("")) {
                Ok(dir) => listing.dir.insert(dir),
                // Not a directory this kernel lists with getdents (or not Linux): as before.
                Err(_) => return Ok((self.procfs.pid_entries()?, true)),
            },
        };
        let partial_from = match (since, last_pid, listing.full_due) {
            (Some(before), Some(latest), Some(due)) if own && latest >= before && now < due => {
                Some(before.saturating_sub(PID_MARGIN))
            }
            _ => None,
        };
        if let Some(first) = partial_from {
            if let Some(pids) = dir.list_from(first)? {
                listing.last_pid = last_pid;
                return Ok((pids, false));
            }
        }
        let pids = dir.list_all()?;
        listing.last_pid = last_pid;
        listing.full_due = Some(later(now, FULL_LISTING_EVERY));
        Ok((pids, true))
    }

    /// A new read of `pid`'s stat, through the `last` read's file when it was kept open.
    fn read_known(&self, pid: u32, inode: u64, now: Instant, last: Option<Known>) -> Option<Known> {
        let (file, last_comm) = match last {
            Some(last) => (last.file, Some(last.stat.comm)),
            None => (None, None),
        };
        let file = match file {
            Some(file) => file,
            None => File::open(self.procfs.pid_dir(pid).join("stat")).ok()?,
        };
        let text = proc::read_again(&file).ok()?;
        Some(Known {
            inode,
            stat: proc::parse_pid_stat_reusing(&text, last_comm.as_ref())?,
            watched: false,
            reread_at: later(now, spread(self.match_max_age, pid)),
            file: Some(file),
        })
    }

    /// Whether the last read of an unwatched process still stands: it is not young, and neither
    /// it nor its match is due. Without /proc/uptime every process counts as young.
    fn settled(
        &self,
        pid: u32,
        last: &Known,
        now: Instant,
        uptime_ticks: Option<f64>,
        matches: &PidMap<ProcessKey, CachedMatch>,
    ) -> bool {
        let young = YOUNG.as_secs_f64() * self.ticks_per_second;
        let old = uptime_ticks.is_some_and(|up| up - last.stat.start_ticks as f64 >= young);
        let unmatched = last.stat.is_kernel_thread || last.stat.is_zombie;
        let match_due = !unmatched
            && matches
                .get(&(pid, last.stat.start_ticks))
                .is_none_or(|cached| cached.is_due(now));
        !last.watched && old && now < last.reread_at && !match_due
    }

    /// Marks the processes this scrape gave to a service: they are read every scrape, through
    /// their stat file kept open (up to [`kept_files`]); the others' files are closed.
    pub(super) fn remember_watched(&self, processes: &[Process], owners: &[Option<Owner>]) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for (process, _) in processes.iter().zip(owners).filter(|(_, o)| o.is_some()) {
            if let Some(entry) = known.get_mut(&process.pid) {
                entry.watched = true;
            }
        }
        let mut open = 0;
        for entry in known.values_mut() {
            if entry.watched && entry.file.is_some() && open < kept_files() {
                open += 1;
            } else {
                entry.file = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc::ProcFs;
    use std::path::{Path, PathBuf};

    /// A fake /proc/PID started 777 ticks after boot with `rss_pages` resident.
    fn write_process(root: &Path, pid: u32, cmdline: &str, rss_pages: u64) {
        let dir = root.join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let stat = format!("{pid} (python3) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 1 1 0 0 20 0 1 0 777 0 {rss_pages}");
        std::fs::write(dir.join("stat"), stat).unwrap();
        std::fs::write(dir.join("cmdline"), cmdline.replace(' ', "\0")).unwrap();
    }

    fn services(root: &Path, match_max_age: Duration) -> Services {
        let config = crate::config::load_str(Some((
            "test.toml",
            "[services.one]\nmatch = [{ cmdline = 'marker-one' }]\n",
        )))
        .unwrap();
        let mut services = Services::new(
            ProcFs::new(root),
            PathBuf::from("/sys/fs/cgroup"),
            config.profile,
            config.plan,
            config.services,
            Duration::ZERO,
        );
        services.match_max_age = match_max_age;
        services
    }

    /// Each process's resident pages as this scrape saw them.
    fn rss_by_pid(services: &Services) -> Vec<(u32, u64)> {
        let snapshot = services.snapshot(tokio::time::Instant::now()).unwrap();
        let processes = &snapshot.processes;
        processes
            .iter()
            .map(|p| (p.pid, p.stat.rss_pages))
            .collect()
    }

    /// Process 40 watched by `one`, 50 by no service; /proc/uptime says `uptime` seconds.
    fn host(uptime: &str) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        write_process(root.path(), 40, "python3 app.py marker-one", 10);
        write_process(root.path(), 50, "python3 idle.py", 10);
        std::fs::write(root.path().join("uptime"), uptime).unwrap();
        root
    }

    #[test]
    fn an_unwatched_process_is_read_again_only_when_due_a_watched_one_every_scrape() {
        let root = host("100000.00 1.00\n");
        let kept = services(root.path(), crate::collector::services::MATCH_MAX_AGE);
        let due = services(root.path(), Duration::ZERO);
        assert_eq!(rss_by_pid(&kept), [(40, 10), (50, 10)]);
        assert_eq!(rss_by_pid(&due), [(40, 10), (50, 10)]);
        write_process(root.path(), 40, "python3 app.py marker-one", 20);
        write_process(root.path(), 50, "python3 idle.py", 20);
        assert_eq!(rss_by_pid(&kept), [(40, 20), (50, 10)], "50 not yet due");
        assert_eq!(rss_by_pid(&due), [(40, 20), (50, 20)]);
    }

    #[test]
    fn a_pid_taken_by_another_process_is_read_at_once() {
        let root = host("100000.00 1.00\n");
        let services = services(root.path(), crate::collector::services::MATCH_MAX_AGE);
        assert_eq!(rss_by_pid(&services), [(40, 10), (50, 10)]);
        // A new directory while the old one still exists: it cannot get the old inode.
        write_process(root.path(), 51, "python3 other.py", 30);
        std::fs::remove_dir_all(root.path().join("50")).unwrap();
        std::fs::rename(root.path().join("51"), root.path().join("50")).unwrap();
        assert_eq!(rss_by_pid(&services), [(40, 10), (50, 30)]);
    }

    /// On the real kernel: between two full listings only new PIDs are listed, and a new
    /// process is among them; once it has exited and been reaped it leaves the snapshot.
    #[test]
    fn between_full_listings_a_new_process_is_listed_and_an_exited_one_leaves() {
        let services = services(
            Path::new("/proc"),
            crate::collector::services::MATCH_MAX_AGE,
        );
        let pids = |services: &Services| -> Vec<u32> {
            let snapshot = services.snapshot(tokio::time::Instant::now()).unwrap();
            snapshot.processes.iter().map(|p| p.pid).collect()
        };
        assert!(
            pids(&services).contains(&std::process::id()),
            "the first, full listing"
        );
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep(1) from coreutils");
        let (listed, complete) = services.list_pids(Instant::now()).unwrap();
        assert!(
            !complete,
            "a partial listing within the minute (is /proc this test's own PID namespace?)"
        );
        assert!(
            listed.iter().any(|&(pid, _)| pid == child.id()),
            "{listed:?}"
        );
        if child.id() > 2 * PID_MARGIN {
            assert!(
                !listed.iter().any(|&(pid, _)| pid == 1),
                "PID 1 listed again"
            );
        }
        let seen = pids(&services);
        assert!(seen.contains(&child.id()) && seen.contains(&1), "{seen:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        let seen = pids(&services);
        assert!(
            !seen.contains(&child.id()),
            "a young process that exited stays: {seen:?}"
        );
        assert!(seen.contains(&1), "known processes stay: {seen:?}");
    }

    #[test]
    fn young_processes_are_read_every_scrape() {
        // Started 777 ticks after boot: 30 s have not passed yet at 10 s of uptime, and without
        // /proc/uptime the age is unknown.
        for uptime in [Some("10.00 1.00\n"), None] {
            let root = host(uptime.unwrap_or_default());
            if uptime.is_none() {
                std::fs::remove_file(root.path().join("uptime")).unwrap();
            }
            let services = services(root.path(), crate::collector::services::MATCH_MAX_AGE);
            assert_eq!(rss_by_pid(&services), [(40, 10), (50, 10)]);
            write_process(root.path(), 50, "python3 idle.py", 20);
            assert_eq!(rss_by_pid(&services), [(40, 10), (50, 20)], "{uptime:?}");
        }
    }
}
