//! Blocking jobs run one after another on as few threads as possible, with a way round one that
//! hangs.
//!
//! A scrape's blocking collectors, and the filesystem collector's statvfs calls, each took a
//! thread of their own: a hand-off to a pool thread and back, or a new thread, for work of well
//! under a millisecond, several times a scrape. A [`Lane`] runs its jobs in order on one helper
//! thread. When the job under way has run for the lane's `stall` while others wait behind it, the
//! waiter starts another helper for the rest: a read stuck in the kernel (a hung mount, a process
//! in D state) delays the jobs behind it by `stall`, never more, and holds only its own thread.
//!
//! Helper threads outlive their lane and wait for the next one up to [`KEEP_ALIVE`]: a scrape
//! every 15 s or every minute creates no thread (tokio's blocking pool lets its threads go after
//! 10 s idle, so such scrapes created them every time).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One piece of blocking work and its result.
pub type Job<T> = Box<dyn FnOnce() -> T + Send>;

/// How long an idle helper thread waits for work before it ends.
pub const KEEP_ALIVE: Duration = Duration::from_secs(300);

/// Idle helpers kept at most: more than a scrape's lanes use at once.
const MAX_IDLE: usize = 8;

/// How one job of a lane stood when its waiter stopped waiting.
#[derive(Debug)]
pub enum Ended<T> {
    /// It returned, after running this long.
    Done(T, Duration),
    /// It panicked (the panic hook has logged it).
    Panicked,
    /// It had not returned: still running, or never started (and now never will).
    NotYet,
}

/// Jobs under way; dropping the lane drops the jobs no helper has started.
pub struct Lane<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    /// What the jobs are, for the log line when no helper thread can be started.
    name: &'static str,
    stall: Duration,
    state: Mutex<State<T>>,
    /// Signalled when the last job ends: for a blocking waiter, and for an async one.
    ended: Condvar,
    ended_async: tokio::sync::Notify,
}

struct State<T> {
    queue: VecDeque<(usize, Job<T>)>,
    results: Vec<Ended<T>>,
    unfinished: usize,
    /// When a job last started or ended, or a helper was last added.
    progress_at: Instant,
}

impl<T: Send + 'static> Lane<T> {
    /// Starts running `jobs`, in order, on one helper thread.
    pub fn start(name: &'static str, jobs: Vec<Job<T>>, stall: Duration) -> Lane<T> {
        let state = State {
            results: jobs.iter().map(|_| Ended::NotYet).collect(),
            unfinished: jobs.len(),
            queue: jobs.into_iter().enumerate().collect(),
            progress_at: Instant::now(),
        };
        let lane = Lane {
            shared: Arc::new(Shared {
                name,
                stall,
                state: Mutex::new(state),
                ended: Condvar::new(),
                ended_async: tokio::sync::Notify::new(),
            }),
        };
        if lane.shared.lock().unfinished > 0 {
            lane.add_helper();
        }
        lane
    }

    /// Waits, blocking the calling thread, until every job has ended or `until`.
    pub fn wait_until(self, until: Instant) -> Vec<Ended<T>> {
        let mut state = self.shared.lock();
        while let Some(wake_at) = self.next_wake(&mut state, until) {
            let timeout = wake_at.saturating_duration_since(Instant::now());
            state = (self.shared.ended)
                .wait_timeout(state, timeout)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        std::mem::take(&mut state.results)
    }

    /// Waits, as a task, until every job has ended or `until`.
    pub async fn wait_until_async(self, until: Instant) -> Vec<Ended<T>> {
        loop {
            // Registered before the check: a last job ending in between still wakes it.
            let ended = self.shared.ended_async.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            let wake_at = {
                let mut state = self.shared.lock();
                match self.next_wake(&mut state, until) {
                    Some(at) => at,
                    None => return std::mem::take(&mut state.results),
                }
            };
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(wake_at));
            tokio::select! {
                _ = ended => {}
                _ = sleep => {}
            }
        }
    }

    /// When to look again, or `None` once every job has ended or `until` has passed. Adds a
    /// helper when jobs wait behind one that has run for `stall`.
    fn next_wake(&self, state: &mut State<T>, until: Instant) -> Option<Instant> {
        let now = Instant::now();
        if state.unfinished == 0 || now >= until {
            return None;
        }
        if state.queue.is_empty() {
            return Some(until);
        }
        let stalled_at = state.progress_at + self.shared.stall;
        if now < stalled_at {
            return Some(stalled_at.min(until));
        }
        state.progress_at = now;
        self.add_helper();
        Some((now + self.shared.stall).min(until))
    }

    fn add_helper(&self) {
        let shared = self.shared.clone();
        if let Err(e) = run_on_helper(Box::new(move || shared.work())) {
            crate::warn_throttled!(
                "lane helper",
                "cannot start a thread for the {} ({e}): they run when one can be started",
                self.shared.name
            );
        }
    }
}

impl<T> Drop for Lane<T> {
    fn drop(&mut self) {
        let unstarted = std::mem::take(&mut self.shared.lock().queue);
        drop(unstarted); // outside the lock: a job's captures may do anything when dropped
    }
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A helper's part: the next job in the queue until there is none.
    fn work(&self) {
        loop {
            let Some((index, job)) = ({
                let mut state = self.lock();
                let next = state.queue.pop_front();
                state.progress_at = Instant::now();
                next
            }) else {
                return;
            };
            let started = Instant::now();
            // The panic hook logs and counts it; the lane goes on with the next job.
            let ended = match catch_unwind(AssertUnwindSafe(job)) {
                Ok(value) => Ended::Done(value, started.elapsed()),
                Err(_) => Ended::Panicked,
            };
            let mut state = self.lock();
            // A job that ends after its waiter took the results and left (a statvfs that
            // returns after its mount was reported stuck) has no slot left to fill.
            if let Some(slot) = state.results.get_mut(index) {
                *slot = ended;
            }
            state.unfinished = state.unfinished.saturating_sub(1);
            state.progress_at = Instant::now();
            if state.unfinished == 0 {
                self.ended.notify_all();
                self.ended_async.notify_waiters();
            }
        }
    }
}

type Task = Box<dyn FnOnce() + Send>;

/// Idle helpers, each waiting on its channel for a task; the id tells a helper its own entry.
static IDLE: Mutex<Vec<(u64, mpsc::Sender<Task>)>> = Mutex::new(Vec::new());
static NEXT_HELPER: AtomicU64 = AtomicU64::new(0);

fn idle() -> MutexGuard<'static, Vec<(u64, mpsc::Sender<Task>)>> {
    IDLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `task` on an idle helper, or on a new one when none is idle.
fn run_on_helper(mut task: Task) -> std::io::Result<()> {
    while let Some((_, helper)) = idle().pop() {
        match helper.send(task) {
            Ok(()) => return Ok(()),
            Err(mpsc::SendError(back)) => task = back, // it has ended: try the next
        }
    }
    let id = NEXT_HELPER.fetch_add(1, Ordering::Relaxed);
    std::thread::Builder::new()
        .name("stack-helper".into())
        .spawn(move || helper(id, task))?;
    Ok(())
}

fn helper(id: u64, first: Task) {
    let (sender, tasks) = mpsc::channel::<Task>();
    let mut task = first;
    loop {
        task();
        {
            let mut idle = idle();
            if idle.len() >= MAX_IDLE {
                return;
            }
            idle.push((id, sender.clone()));
        }
        task = loop {
            match tasks.recv_timeout(KEEP_ALIVE) {
                Ok(next) => break next,
                Err(_) => {
                    let mut idle = idle();
                    if let Some(at) = idle.iter().position(|(i, _)| *i == id) {
                        idle.swap_remove(at);
                        return;
                    }
                    // A caller took this helper just now: its task is on the way.
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    const LONG: Duration = Duration::from_secs(10);

    fn job<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Job<T> {
        Box::new(f)
    }

    fn values(ended: Vec<Ended<u32>>) -> Vec<Option<u32>> {
        ended
            .into_iter()
            .map(|e| match e {
                Ended::Done(v, _) => Some(v),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn jobs_run_in_order_on_one_thread() {
        let threads = Arc::new(Mutex::new(Vec::new()));
        let jobs = (0..5)
            .map(|i| {
                let threads = threads.clone();
                job(move || {
                    threads.lock().unwrap().push(std::thread::current().id());
                    i
                })
            })
            .collect();
        let ended = Lane::start("test jobs", jobs, LONG).wait_until(Instant::now() + LONG);
        assert_eq!(values(ended), [Some(0), Some(1), Some(2), Some(3), Some(4)]);
        let threads = threads.lock().unwrap();
        assert!(threads.iter().all(|t| *t == threads[0]), "{threads:?}");
        assert_ne!(threads[0], std::thread::current().id());
    }

    #[test]
    fn a_hung_job_delays_the_others_by_the_stall_only() {
        let (release, hung) = mpsc::channel::<()>();
        let jobs = vec![
            job(|| 1),
            job(move || {
                let _ = hung.recv();
                2
            }),
            job(|| 3),
            job(|| 4),
        ];
        // Far less than the waiter's patience: 3 and 4 ran once the stall had passed.
        let ended = Lane::start("test jobs", jobs, Duration::from_millis(50))
            .wait_until(Instant::now() + Duration::from_millis(1500));
        assert_eq!(values(ended), [Some(1), None, Some(3), Some(4)]);
        release.send(()).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_async_waiter_gets_every_result_as_soon_as_the_last_ends() {
        let jobs = vec![job(|| 7), job(|| panic!("a bug (test)")), job(|| 9)];
        let started = Instant::now();
        let ended = Lane::start("test jobs", jobs, LONG)
            .wait_until_async(Instant::now() + LONG)
            .await;
        assert!(started.elapsed() < LONG / 2);
        assert!(matches!(ended[0], Ended::Done(7, _)));
        assert!(matches!(ended[1], Ended::Panicked));
        assert!(matches!(ended[2], Ended::Done(9, _)));
    }

    #[test]
    fn jobs_not_started_when_the_waiter_gives_up_never_run() {
        let (release, hung) = mpsc::channel::<()>();
        let ran = Arc::new(AtomicUsize::new(0));
        let counted = ran.clone();
        let jobs = vec![
            job(move || {
                let _ = hung.recv();
            }),
            job(move || {
                counted.fetch_add(1, Ordering::SeqCst);
            }),
        ];
        let ended = Lane::start("test jobs", jobs, LONG)
            .wait_until(Instant::now() + Duration::from_millis(50));
        assert!(ended.iter().all(|e| matches!(e, Ended::NotYet)));
        release.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_job_that_ends_after_its_waiter_left_is_let_go() {
        let (release, hung) = mpsc::channel::<()>();
        let lane = Lane::start(
            "test jobs",
            vec![job(move || {
                let _ = hung.recv();
                1
            })],
            LONG,
        );
        let shared = lane.shared.clone();
        let ended = lane.wait_until(Instant::now() + Duration::from_millis(20));
        assert!(matches!(ended[..], [Ended::NotYet]));
        release.send(()).unwrap();
        // The helper records the late end in the lane its waiter left, without panicking (a
        // panic there would leave the job unfinished, and the lock poisoned).
        let until = Instant::now() + LONG;
        while shared.lock().unfinished > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(shared.lock().unfinished, 0);
        assert!(!shared.state.is_poisoned());
    }

    #[test]
    fn helpers_are_reused_from_one_lane_to_the_next() {
        let thread = || {
            let ended = Lane::start("test jobs", vec![job(|| std::thread::current().id())], LONG)
                .wait_until(Instant::now() + LONG);
            match ended.into_iter().next() {
                Some(Ended::Done(id, _)) => id,
                other => panic!("{other:?}"),
            }
        };
        // Other tests' lanes share the idle helpers: some helper seen before comes back.
        let seen: Vec<_> = (0..20)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(5)); // the last helper back in the idle list
                thread()
            })
            .collect();
        let distinct: std::collections::HashSet<_> = seen.iter().collect();
        assert!(distinct.len() < seen.len(), "{seen:?}");
    }
}
