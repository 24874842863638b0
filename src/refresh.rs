//! Refreshes no scrape waits for.
//!
//! A few readings are costly and kept between scrapes: a process's PSS (a walk of its page
//! tables, several milliseconds for a big database) and a count of 10 000 connections (the
//! kernel copies one message each). Made again inline, each came due on one scrape a minute and
//! made it several times slower than the others: the exporter's p99. Now the scrape that finds a
//! kept reading due publishes it once more, with its age where it has one, and starts a
//! [`Refresh`]; the next scrape has the new reading.
//!
//! A refresh runs on a thread of its own at the lowest priority (nice 19), so the scrape it
//! leaves behind, and the host's own work, take the CPU first. One refresh of a kind runs at a
//! time: one that never ends (a process stuck in the kernel) stops only its own kind, and is
//! logged once it has run a minute.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One kind of refresh: at most one run at a time.
#[derive(Debug, Default)]
pub struct Refresh {
    /// When the run under way started.
    running: Arc<Mutex<Option<Instant>>>,
}

/// A refresh running this long is taken for stuck, and logged.
const STUCK: Duration = Duration::from_secs(60);

/// Clears its refresh's start time when the run ends, panicked or not.
struct Running(Arc<Mutex<Option<Instant>>>);

impl Drop for Running {
    fn drop(&mut self) {
        *lock(&self.0) = None;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Refresh {
    /// Starts `work` on a low-priority thread of its own, unless the previous run has not ended.
    /// Returns whether it started; `what` names it in the log.
    pub fn start(&self, what: &'static str, work: impl FnOnce() + Send + 'static) -> bool {
        {
            let mut running = lock(&self.running);
            if let Some(started) = *running {
                if started.elapsed() >= STUCK {
                    crate::warn_throttled!(
                        what,
                        "{what} has run for {} s (a process or server stuck?): the kept \
                         figures age until it ends",
                        started.elapsed().as_secs()
                    );
                }
                return false;
            }
            *running = Some(Instant::now());
        }
        let running = Running(self.running.clone());
        let spawned = std::thread::Builder::new()
            .name("stack-refresh".into())
            .spawn(move || {
                let _running = running;
                lowest_priority();
                // The panic hook logs and counts it; the next scrape tries again.
                let _ = catch_unwind(AssertUnwindSafe(work));
            });
        match spawned {
            Ok(_) => true,
            Err(e) => {
                // The closure, and with it the run's guard, is dropped: the next scrape retries.
                crate::warn_throttled!(
                    what,
                    "{what}: cannot start a thread ({e}): the kept figures age until one can"
                );
                false
            }
        }
    }

    /// Whether a run is under way (for tests).
    #[cfg(test)]
    pub fn running(&self) -> bool {
        lock(&self.running).is_some()
    }
}

/// Nice 19 for the calling thread only (Linux: a thread's nice is its own): it yields to every
/// other thread that wants the CPU. Unprivileged it can never be lowered again, which is why
/// refreshes have threads of their own.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority has no memory effects; gettid is the calling thread's id.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn one_run_at_a_time_off_the_caller_thread_at_nice_19() {
        let refresh = Refresh::default();
        let (release, hold) = mpsc::channel::<()>();
        let (report, seen) = mpsc::channel();
        assert!(refresh.start("test refresh", move || {
            let tid = unsafe { libc::gettid() };
            let nice = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
            // The 19th field of stat, counted after the command's closing parenthesis.
            let nice: i64 = nice
                .rsplit_once(')')
                .unwrap()
                .1
                .split_whitespace()
                .nth(16)
                .unwrap()
                .parse()
                .unwrap();
            report.send((std::thread::current().id(), nice)).unwrap();
            let _ = hold.recv();
        }));
        let (thread, nice) = seen.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_ne!(thread, std::thread::current().id());
        assert_eq!(nice, 19);
        assert!(refresh.running());
        assert!(!refresh.start("test refresh", || unreachable!("a second run at once")));
        release.send(()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while refresh.running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!refresh.running(), "the flag is cleared when the run ends");
        // A panicking run clears it too.
        assert!(refresh.start("test refresh", || panic!("a bug (test)")));
        while refresh.running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!refresh.running());
        assert!(refresh.start("test refresh", || {}));
    }
}
