//! Connection counts kept from scrape to scrape where counting them is costly.
//!
//! No kernel counter says how many connections a listener accepted: a count is a sock_diag dump,
//! and its cost grows with two things. The kernel fills and copies a message per connection of a
//! service (10 ms per scrape for a busy nginx holding 10 000), and it walks every TCP socket in
//! its established-connections table to find them, the host's other programs' and other
//! namespaces' included (measured here: 5 connections to count among 20 000 unrelated sockets,
//! 5.7 ms of kernel time a scrape). Counts are made on every scrape while both are small; a
//! count of [`COSTLY`] connections or more, or one made while the host had [`COSTLY_HOST_SOCKETS`]
//! TCP sockets or more, is kept for up to `--collector.sockets.connections-max-age` (like PSS),
//! and published with its age, as long as the namespace's owned listeners are the same ones. The
//! scrape that finds it older publishes it once more and leaves the new count to a refresh
//! (`crate::refresh`), off the scrape's path; other listeners are counted at once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::namespace::Owner;

/// Connections in a namespace from which a count is worth keeping (about 1 ms of kernel time).
pub const COSTLY: u64 = 1000;

/// TCP sockets on the host (/proc/net/sockstat's `alloc` + `tw`) from which any count is worth
/// keeping: walking them costs about 1 ms of kernel time.
pub const COSTLY_HOST_SOCKETS: u64 = 4000;

/// One namespace's last count: which listeners it was made for, and what it found.
#[derive(Debug)]
struct Count {
    at: Instant,
    costly: bool,
    listeners: Vec<(u64, Owner)>,
    found: Vec<(Owner, u64)>,
}

/// A kept count as a scrape publishes it.
#[derive(Debug)]
pub struct Kept {
    pub found: Vec<(Owner, u64)>,
    pub age: Duration,
    /// Older than the max age: to be made again.
    pub due: bool,
}

#[derive(Debug, Default)]
pub struct KeptCounts {
    by_namespace: HashMap<PathBuf, Count>,
}

impl KeptCounts {
    /// The namespace's kept count for these owned `listeners` (inode, owner; sorted), with its
    /// age and whether it is due to be made again (`max_age` passed): `None` where a count must
    /// be made now (none kept, a cheap one, one made for other listeners, or a max age of 0).
    /// A due count is still the best there is until the refresh that makes it again ends.
    pub fn kept(
        &self,
        namespace: &PathBuf,
        listeners: &[(u64, Owner)],
        (now, max_age): (Instant, Duration),
    ) -> Option<Kept> {
        let kept = self.by_namespace.get(namespace)?;
        if !kept.costly || max_age.is_zero() || kept.listeners != listeners {
            return None;
        }
        let age = now.saturating_duration_since(kept.at);
        Some(Kept {
            found: kept.found.clone(),
            age,
            due: age >= max_age,
        })
    }

    /// Keeps the count made at `at` for these `listeners`. `host_sockets` is the host's TCP
    /// sockets then (None: unknown, taken as few): with what was found, whether it was costly.
    pub fn record(
        &mut self,
        namespace: PathBuf,
        listeners: Vec<(u64, Owner)>,
        found: Vec<(Owner, u64)>,
        at: Instant,
        host_sockets: Option<u64>,
    ) {
        let total: u64 = found.iter().map(|&(_, n)| n).sum();
        let count = Count {
            at,
            costly: total >= COSTLY || host_sockets.unwrap_or(0) >= COSTLY_HOST_SOCKETS,
            listeners,
            found,
        };
        self.by_namespace.insert(namespace, count);
    }

    /// Whether some namespace's last count was costly (and so is kept while young).
    pub fn any_costly(&self) -> bool {
        self.by_namespace.values().any(|count| count.costly)
    }

    /// Forgets the namespaces no service process is in any more.
    pub fn retain(&mut self, present: impl Fn(&PathBuf) -> bool) {
        self.by_namespace.retain(|link, _| present(link));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);
    const QUIET: Option<u64> = Some(100);

    /// `kept` then, where it says a count must be made now, `record` of `counted` at `t`: what
    /// the collector does, with the due count made again at once.
    fn get(
        kept: &mut KeptCounts,
        listeners: Vec<(u64, Owner)>,
        (t, max_age): (Instant, Duration),
        host_sockets: Option<u64>,
        counted: u64,
    ) -> (u64, Duration, bool) {
        let ns = PathBuf::from("net:[1]");
        if let Some(Kept { found, age, due }) = kept.kept(&ns, &listeners, (t, max_age)) {
            return (found[0].1, age, due);
        }
        kept.record(ns, listeners, vec![((0, 0), counted)], t, host_sockets);
        (counted, Duration::ZERO, false)
    }

    #[test]
    fn only_costly_counts_are_kept_and_only_while_young_and_for_the_same_listeners() {
        let mut kept = KeptCounts::default();
        let listeners = || vec![(500, (0, 0))];
        let start = Instant::now();
        let at = |t: Instant| (t, MINUTE);

        // A small count on a quiet host is made again on every scrape.
        assert_eq!(get(&mut kept, listeners(), at(start), QUIET, 10).0, 10);
        let (found, age, _) = get(&mut kept, listeners(), at(start), QUIET, 20);
        assert_eq!((found, age), (20, Duration::ZERO));

        // A costly one is kept, with its age, until max_age; then it is due, and published
        // with its age until the count made again is recorded.
        get(&mut kept, listeners(), at(start), QUIET, COSTLY);
        let later = start + Duration::from_secs(30);
        let kept_at = |kept: &mut KeptCounts, t| get(kept, listeners(), at(t), QUIET, 5);
        assert_eq!(
            kept_at(&mut kept, later),
            (COSTLY, Duration::from_secs(30), false)
        );
        let due = start + MINUTE;
        assert_eq!(kept_at(&mut kept, due), (COSTLY, MINUTE, true));
        let ns = PathBuf::from("net:[1]");
        kept.record(ns.clone(), listeners(), vec![((0, 0), 5)], due, QUIET);
        assert_eq!(
            get(&mut kept, listeners(), at(due), QUIET, 6),
            (6, Duration::ZERO, false),
            "a cheap count made again is not kept"
        );

        // Other listeners are counted at once, and nothing is kept with a max_age of 0.
        get(&mut kept, listeners(), at(start), QUIET, COSTLY);
        let moved = vec![(600, (0, 0))];
        assert_eq!(get(&mut kept, moved, at(later), QUIET, 7).0, 7);
        let never = (start, Duration::ZERO);
        get(&mut kept, listeners(), never, QUIET, COSTLY);
        assert_eq!(get(&mut kept, listeners(), never, QUIET, 8).0, 8);
    }

    #[test]
    fn a_small_count_is_kept_while_the_host_has_many_sockets() {
        let mut kept = KeptCounts::default();
        let start = Instant::now();
        let later = (start + Duration::from_secs(30), MINUTE);
        let busy = Some(COSTLY_HOST_SOCKETS);
        get(&mut kept, vec![], (start, MINUTE), busy, 3);
        let (found, age, _) = get(&mut kept, vec![], later, QUIET, 4);
        assert_eq!((found, age), (3, Duration::from_secs(30)));

        // Made on a quiet host (or one whose sockstat is unreadable), it is made again.
        let mut kept = KeptCounts::default();
        get(&mut kept, vec![], (start, MINUTE), None, 3);
        let (found, age, _) = get(&mut kept, vec![], later, busy, 4);
        assert_eq!((found, age), (4, Duration::ZERO));
    }
}
