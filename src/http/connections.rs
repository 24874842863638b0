//! The cap on open connections. At the cap, a new connection closes the one that has waited
//! longest without sending a complete request: a flood of idle or slowloris sockets then only
//! pushes out its own oldest members, and a real scraper (which sends its request at once) always
//! gets in. Only when every connection is busy answering a request is the new one refused.
//!
//! After a storm the freed buffers go back to the system, so the exporter's memory returns to
//! what it was.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use crate::collector::exporter::HTTP_STATS as STATS;
use crate::warn_throttled;

/// A storm worth giving memory back after: this many connections open at once since the last
/// time. Below it, what a few connections leave behind is reused by the next ones.
const TRIM_AFTER_PEAK: usize = 16;

#[derive(Debug)]
pub struct Connections {
    max: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    open: HashMap<u64, Entry>,
    /// Most connections open at once since memory was last given back.
    peak: usize,
}

#[derive(Debug)]
struct Entry {
    /// Since when it has waited for a request; `None` while one is being answered.
    waiting_since: Option<Instant>,
    evict: Arc<Notify>,
}

/// One admitted connection; it leaves the table when the last clone is dropped.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    id: u64,
    /// Notified when the connection is evicted to make room for a new one.
    pub evicted: Arc<Notify>,
}

/// Marks its connection busy (not to be evicted) while a request is answered.
#[derive(Debug)]
pub struct Busy(Arc<Slot>);

impl Connections {
    pub fn new(max: usize) -> Arc<Connections> {
        let max = max.max(1);
        STATS.max.store(max, Ordering::Relaxed);
        Arc::new(Connections {
            max,
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Room for one more connection, evicting the longest-waiting one at the cap; `None` when
    /// every connection is busy with a request (the new one is then closed).
    pub fn admit(self: &Arc<Self>) -> Option<Arc<Slot>> {
        let mut table = self.table();
        if table.open.len() >= self.max && !table.evict_longest_waiting() {
            STATS.refused.fetch_add(1, Ordering::Relaxed);
            warn_throttled!(
                "http connection refused",
                "refused a connection: all {} connections (--web.max-connections) are answering requests",
                self.max
            );
            return None;
        }
        let id = table.next_id;
        table.next_id = table.next_id.wrapping_add(1);
        let evicted = Arc::new(Notify::new());
        table.open.insert(
            id,
            Entry {
                waiting_since: Some(Instant::now()),
                evict: evicted.clone(),
            },
        );
        table.peak = table.peak.max(table.open.len());
        STATS.open.store(table.open.len(), Ordering::Relaxed);
        Some(Arc::new(Slot {
            connections: self.clone(),
            id,
            evicted,
        }))
    }

    /// Closes the connection that has waited longest for a request, if any waits (an accept
    /// that failed for want of file descriptors frees one this way).
    pub fn evict_one(&self) -> bool {
        self.table().evict_longest_waiting()
    }

    fn set_waiting(&self, id: u64, waiting: bool) {
        if let Some(entry) = self.table().open.get_mut(&id) {
            entry.waiting_since = waiting.then(Instant::now);
        }
    }

    fn close(&self, id: u64) {
        let storm_over = {
            let mut table = self.table();
            table.open.remove(&id);
            STATS.open.store(table.open.len(), Ordering::Relaxed);
            let over = table.open.len() <= 1 && table.peak >= TRIM_AFTER_PEAK;
            if over {
                table.peak = table.open.len();
            }
            over
        };
        if storm_over {
            give_back_memory();
        }
    }
}

impl Table {
    fn evict_longest_waiting(&mut self) -> bool {
        let longest = self
            .open
            .iter()
            .filter_map(|(id, entry)| Some((entry.waiting_since?, *id)))
            .min();
        let Some(entry) = longest.and_then(|(_, id)| self.open.remove(&id)) else {
            return false;
        };
        entry.evict.notify_one();
        STATS.open.store(self.open.len(), Ordering::Relaxed);
        STATS.evicted.fetch_add(1, Ordering::Relaxed);
        warn_throttled!(
            "http connection evicted",
            "at the connection cap (--web.max-connections): closed the connection that waited \
             longest without sending a request"
        );
        true
    }
}

impl Slot {
    /// Call when a complete request arrived; the connection waits again when the guard drops.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.connections.set_waiting(self.id, false);
        Busy(self.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.connections.set_waiting(self.0.id, true);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.close(self.id);
    }
}

/// Returns the heap's free pages to the system: glibc keeps freed memory for reuse, so the
/// buffers of thousands of connections would stay resident long after they closed.
fn give_back_memory() {
    // SAFETY: malloc_trim only releases free memory of the allocator; it is thread-safe.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_longest_waiting_connection_makes_room() {
        let connections = Connections::new(2);
        let first = connections.admit().unwrap();
        let second = connections.admit().unwrap();
        let _answering = first.busy();
        let third = connections.admit().expect("the idle second one makes room");
        assert_eq!(connections.table().open.len(), 2);
        assert!(!connections.table().open.contains_key(&second.id));
        assert!(connections.table().open.contains_key(&first.id));
        let _also_answering = third.busy();
        assert!(connections.admit().is_none(), "every connection is busy");
        drop(second);
        assert_eq!(
            connections.table().open.len(),
            2,
            "an evicted slot leaves once"
        );
    }

    #[test]
    fn an_evicted_connection_is_told_even_before_it_listens() {
        let connections = Connections::new(1);
        let first = connections.admit().unwrap();
        let _second = connections.admit().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let told = runtime.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(1), first.evicted.notified()).await
        });
        assert!(told.is_ok());
    }

    #[test]
    fn a_connection_that_answered_waits_again() {
        let connections = Connections::new(1);
        let first = connections.admit().unwrap();
        drop(first.busy());
        assert!(connections.admit().is_some(), "the first one waits again");
    }
}
