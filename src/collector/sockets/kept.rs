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
//! and published with its age, as long as the namespace's owned listeners are the same ones.

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

#[derive(Debug, Default)]
pub struct KeptCounts {
    by_namespace: HashMap<PathBuf, Count>,
}

impl KeptCounts {
    /// The namespace's count for these owned `listeners` (inode, owner; sorted): the kept one
    /// while it is costly, younger than `max_age` and made for the same listeners, otherwise
    /// `count()` made now. `host_sockets` is the host's TCP sockets now (None: unknown, taken
    /// as few). Returns the count and its age.
    pub fn get(
        &mut self,
        namespace: &PathBuf,
        listeners: Vec<(u64, Owner)>,
        (now, max_age): (Instant, Duration),
        host_sockets: Option<u64>,
        count: impl FnOnce() -> Vec<(Owner, u64)>,
    ) -> (Vec<(Owner, u64)>, Duration) {
        if let Some(kept) = self.by_namespace.get(namespace) {
            let age = now.saturating_duration_since(kept.at);
            if kept.costly && age < max_age && kept.listeners == listeners {
                return (kept.found.clone(), age);
            }
        }
        let found = count();
        let total: u64 = found.iter().map(|&(_, n)| n).sum();
        let kept = Count {
            at: now,
            costly: total >= COSTLY || host_sockets.unwrap_or(0) >= COSTLY_HOST_SOCKETS,
            listeners,
            found: found.clone(),
        };
        self.by_namespace.insert(namespace.clone(), kept);
        (found, Duration::ZERO)
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

    #[test]
    fn only_costly_counts_are_kept_and_only_while_young_and_for_the_same_listeners() {
        let mut kept = KeptCounts::default();
        let ns = PathBuf::from("net:[1]");
        let listeners = || vec![(500, (0, 0))];
        let start = Instant::now();
        let counted = |n: u64| move || vec![((0, 0), n)];
        let at = |t: Instant| (t, MINUTE);

        // A small count on a quiet host is made again on every scrape.
        let get =
            |kept: &mut KeptCounts, t, n| kept.get(&ns, listeners(), at(t), QUIET, counted(n));
        assert_eq!(get(&mut kept, start, 10).0[0].1, 10);
        let (found, age) = get(&mut kept, start, 20);
        assert_eq!((found[0].1, age), (20, Duration::ZERO));

        // A costly one is kept, with its age, until max_age...
        get(&mut kept, start, COSTLY);
        let later = start + Duration::from_secs(30);
        let (found, age) = get(&mut kept, later, 5);
        assert_eq!((found[0].1, age), (COSTLY, Duration::from_secs(30)));
        let (found, age) = get(&mut kept, start + MINUTE, 5);
        assert_eq!((found[0].1, age), (5, Duration::ZERO));

        // ...or until the owned listeners change, and never with a max_age of 0.
        get(&mut kept, start, COSTLY);
        let moved = vec![(600, (0, 0))];
        assert_eq!(kept.get(&ns, moved, at(later), QUIET, counted(7)).0[0].1, 7);
        let never = (start, Duration::ZERO);
        kept.get(&ns, listeners(), never, QUIET, counted(COSTLY));
        assert_eq!(
            kept.get(&ns, listeners(), never, QUIET, counted(8)).0[0].1,
            8
        );
    }

    #[test]
    fn a_small_count_is_kept_while_the_host_has_many_sockets() {
        let mut kept = KeptCounts::default();
        let ns = PathBuf::from("net:[1]");
        let start = Instant::now();
        let later = (start + Duration::from_secs(30), MINUTE);
        let busy = Some(COSTLY_HOST_SOCKETS);
        kept.get(&ns, vec![], (start, MINUTE), busy, || vec![((0, 0), 3)]);
        let (found, age) = kept.get(&ns, vec![], later, QUIET, || vec![((0, 0), 4)]);
        assert_eq!((found[0].1, age), (3, Duration::from_secs(30)));

        // Made on a quiet host (or one whose sockstat is unreadable), it is made again.
        let mut kept = KeptCounts::default();
        kept.get(&ns, vec![], (start, MINUTE), None, || vec![((0, 0), 3)]);
        let (found, age) = kept.get(&ns, vec![], later, busy, || vec![((0, 0), 4)]);
        assert_eq!((found[0].1, age), (4, Duration::ZERO));
    }
}
