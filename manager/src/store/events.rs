//! Store events: one per applied change, stamped with its log index, kept in a bounded
//! ring for watchers that resume from an index, and broadcast to live watchers.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::broadcast;

pub use shoal_api::stored::{Action, Event};

/// Why a watch cannot resume where asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The ring no longer holds events that old.
    #[error(
        "events after index {from} are no longer kept (the oldest is {oldest}): list the objects again and watch from the current index"
    )]
    Compacted {
        /// The index asked for.
        from: u64,
        /// The oldest index still kept.
        oldest: u64,
    },
}

/// The event ring and broadcast of one manager.
#[derive(Debug)]
pub struct EventLog {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Event>,
}

#[derive(Debug)]
struct Ring {
    events: VecDeque<Event>,
    capacity: usize,
    /// Events at or below this index may have been dropped.
    dropped_through: u64,
}

impl EventLog {
    /// A log keeping the last `capacity` events.
    pub fn new(capacity: usize) -> EventLog {
        let (live, _) = broadcast::channel(capacity.max(16));
        EventLog { ring: Mutex::new(Ring { events: VecDeque::new(), capacity, dropped_through: 0 }), live }
    }

    /// Records and broadcasts events (in index order).
    pub fn publish(&self, events: Vec<Event>) {
        let mut ring = self.ring.lock().expect("event ring lock");
        for e in events {
            if ring.events.len() == ring.capacity
                && let Some(old) = ring.events.pop_front()
            {
                ring.dropped_through = old.index;
            }
            ring.events.push_back(e.clone());
            // No receiver is not an error: nobody watches right now.
            let _ = self.live.send(e);
        }
    }

    /// Forgets everything before `index` (after a snapshot was installed): watchers
    /// from older indexes must re-list.
    pub fn reset(&self, index: u64) {
        let mut ring = self.ring.lock().expect("event ring lock");
        ring.events.clear();
        ring.dropped_through = index;
    }

    /// Events with an index above `from`, and a receiver for the ones after them.
    /// Subscribing under the ring's lock means no event falls between the two.
    pub fn watch(&self, from: u64) -> Result<(Vec<Event>, broadcast::Receiver<Event>), WatchError> {
        let ring = self.ring.lock().expect("event ring lock");
        if from < ring.dropped_through {
            let oldest = ring.events.front().map_or(ring.dropped_through + 1, |e| e.index);
            return Err(WatchError::Compacted { from, oldest });
        }
        let backlog = ring.events.iter().filter(|e| e.index > from).cloned().collect();
        Ok((backlog, self.live.subscribe()))
    }
}
