//! Connection counts kept from scrape to scrape where counting them is costly.
//!
//! Counting a namespace's connections costs the kernel about a microsecond per connection of a
//! service (sock_diag fills and copies a message for each; no kernel counter says how many
//! connections a listener accepted): 10 ms per scrape for a busy nginx holding 10 000. Small
//! counts are made on every scrape; a count of [`COSTLY`] connections or more is kept for up to
//! `--collector.sockets.connections-max-age` (like PSS), and published with its age, as long as
//! the namespace's owned listeners are the same ones.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::namespace::Owner;

/// Connections in a namespace from which a count is worth keeping (about 1 ms of kernel time).
pub const COSTLY: u64 = 1000;

/// One namespace's last count: which listeners it was made for, and what it found.
#[derive(Debug)]
struct Count {
    at: Instant,
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
    /// `count()` made now. Returns the count and its age.
    pub fn get(
        &mut self,
        namespace: &PathBuf,
        listeners: Vec<(u64, Owner)>,
        now: Instant,
        max_age: Duration,
        count: impl FnOnce() -> Vec<(Owner, u64)>,
    ) -> (Vec<(Owner, u64)>, Duration) {
        if let Some(kept) = self.by_namespace.get(namespace) {
            let age = now.saturating_duration_since(kept.at);
            let total: u64 = kept.found.iter().map(|&(_, n)| n).sum();
            if total >= COSTLY && age < max_age && kept.listeners == listeners {
                return (kept.found.clone(), age);
            }
        }
        let found = count();
        let kept = Count {
            at: now,
            listeners,
            found: found.clone(),
        };
        self.by_namespace.insert(namespace.clone(), kept);
        (found, Duration::ZERO)
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

    #[test]
    fn only_costly_counts_are_kept_and_only_while_young_and_for_the_same_listeners() {
        let mut kept = KeptCounts::default();
        let ns = PathBuf::from("net:[1]");
        let listeners = || vec![(500, (0, 0))];
        let start = Instant::now();
        let counted = |n: u64| move || vec![((0, 0), n)];

        // A small count is made again on every scrape.
        assert_eq!(
            kept.get(&ns, listeners(), start, MINUTE, counted(10)).0[0].1,
            10
        );
        let (found, age) = kept.get(&ns, listeners(), start, MINUTE, counted(20));
        assert_eq!((found[0].1, age), (20, Duration::ZERO));

        // A costly one is kept, with its age, until max_age...
        kept.get(&ns, listeners(), start, MINUTE, counted(COSTLY));
        let later = start + Duration::from_secs(30);
        let (found, age) = kept.get(&ns, listeners(), later, MINUTE, counted(5));
        assert_eq!((found[0].1, age), (COSTLY, Duration::from_secs(30)));
        let (found, age) = kept.get(&ns, listeners(), start + MINUTE, MINUTE, counted(5));
        assert_eq!((found[0].1, age), (5, Duration::ZERO));

        // ...or until the owned listeners change, and never with a max_age of 0.
        kept.get(&ns, listeners(), start, MINUTE, counted(COSTLY));
        let moved = vec![(600, (0, 0))];
        assert_eq!(kept.get(&ns, moved, later, MINUTE, counted(7)).0[0].1, 7);
        kept.get(&ns, listeners(), start, Duration::ZERO, counted(COSTLY));
        assert_eq!(
            kept.get(&ns, listeners(), start, Duration::ZERO, counted(8))
                .0[0]
                .1,
            8
        );
    }
}
