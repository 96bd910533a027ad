//! The responder's waiting room: flow requests wait, in the order they arrived, for a
//! process that accepts their name.
//!
//! Each request comes with a [`Plan`]: how long to wait for a process already bound to the
//! name, and whether to start the name's program after that (and wait again). The driver
//! asks [`AcceptQueue::next`] what to do, telling it which names have a process waiting in
//! accept right now; the answer is to serve a request, start a program, or refuse a request
//! whose time is up. A later request never takes the acceptor an earlier request of the
//! same name waits for. The queue is bounded; what does not fit is refused by the caller.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a request waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Wait this long for a process bound to the name (zero: not at all).
    pub wait: Duration,
    /// Then start the name's program and wait this long for it (`None`: refuse).
    pub autostart: Option<Duration>,
}

/// What the driver must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<K> {
    /// Hand request `key` to a process waiting in accept for `name`.
    Serve {
        /// The request.
        key: K,
        /// Its name.
        name: String,
    },
    /// Start the program of `name` for request `key` (which waits on for it). If it cannot
    /// be started, the driver refuses `key` and [`AcceptQueue::remove`]s it.
    Start {
        /// The request.
        key: K,
        /// Its name.
        name: String,
    },
    /// Nobody accepted request `key` in time: refuse it.
    Expire {
        /// The request.
        key: K,
        /// Its name.
        name: String,
    },
}

#[derive(Debug, Clone)]
struct Waiting<K> {
    key: K,
    name: String,
    deadline: Instant,
    autostart: Option<Duration>,
}

/// The queue was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} flow requests wait for an acceptor already")]
pub struct Full(pub usize);

/// Requests waiting for acceptors, in arrival order.
#[derive(Debug)]
pub struct AcceptQueue<K> {
    max: usize,
    waiting: VecDeque<Waiting<K>>,
}

impl<K: Clone + PartialEq> Default for AcceptQueue<K> {
    /// A queue of at most 256 requests.
    fn default() -> Self {
        Self::new(256)
    }
}

impl<K: Clone + PartialEq> AcceptQueue<K> {
    /// A queue of at most `max` requests.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            waiting: VecDeque::new(),
        }
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Queues request `key` for `name` at `now`.
    pub fn push(&mut self, now: Instant, key: K, name: &str, plan: Plan) -> Result<(), Full> {
        if self.waiting.len() >= self.max {
            return Err(Full(self.max));
        }
        self.waiting.push_back(Waiting {
            key,
            name: name.to_string(),
            deadline: now + plan.wait,
            autostart: plan.autostart,
        });
        Ok(())
    }

    /// Drops request `key` (its peer went away, or its program could not start).
    pub fn remove(&mut self, key: &K) {
        self.waiting.retain(|w| &w.key != key);
    }

    /// What to do at `now`, given whether a name has a process in accept. Call until it
    /// returns `None`; after serving, the availability of that name may have changed.
    pub fn next(
        &mut self,
        now: Instant,
        available: &mut dyn FnMut(&str) -> bool,
    ) -> Option<Action<K>> {
        // The first request of each name may take that name's acceptor.
        let mut seen: Vec<&str> = Vec::new();
        let mut serve = None;
        for (i, w) in self.waiting.iter().enumerate() {
            if seen.contains(&w.name.as_str()) {
                continue;
            }
            seen.push(w.name.as_str());
            if available(&w.name) {
                serve = Some(i);
                break;
            }
        }
        if let Some(w) = serve.and_then(|i| self.waiting.remove(i)) {
            return Some(Action::Serve {
                key: w.key,
                name: w.name,
            });
        }
        let due = self.waiting.iter().position(|w| w.deadline <= now)?;
        let w = self.waiting.get_mut(due)?;
        match w.autostart.take() {
            Some(more) => {
                w.deadline = now + more;
                Some(Action::Start {
                    key: w.key.clone(),
                    name: w.name.clone(),
                })
            }
            None => {
                let w = self.waiting.remove(due)?;
                Some(Action::Expire {
                    key: w.key,
                    name: w.name,
                })
            }
        }
    }

    /// When the next deadline falls.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting.iter().map(|w| w.deadline).min()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn plan(wait: u64, auto: Option<u64>) -> Plan {
        Plan {
            wait: Duration::from_millis(wait),
            autostart: auto.map(Duration::from_millis),
        }
    }

    #[test]
    fn requests_of_one_name_are_served_in_order() {
        let t0 = Instant::now();
        let mut q = AcceptQueue::new(8);
        q.push(t0, 1, "a", plan(100, None)).unwrap();
        q.push(t0, 2, "b", plan(100, None)).unwrap();
        q.push(t0, 3, "a", plan(100, None)).unwrap();
        // Nobody accepts yet.
        assert_eq!(q.next(t0, &mut |_| false), None);
        // One acceptor of "a": the first "a" request gets it, not the third.
        let mut a_free = 1;
        let mut avail = |n: &str| n == "a" && a_free > 0;
        assert_eq!(
            q.next(t0, &mut avail),
            Some(Action::Serve {
                key: 1,
                name: "a".into()
            })
        );
        a_free -= 1;
        assert_eq!(q.next(t0, &mut |n| n == "a" && a_free > 0), None);
        // "b" is served when its acceptor comes, ahead of "a"'s second request.
        assert_eq!(
            q.next(t0, &mut |n| n == "b"),
            Some(Action::Serve {
                key: 2,
                name: "b".into()
            })
        );
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_request_starts_its_program_then_expires() {
        let t0 = Instant::now();
        let mut q = AcceptQueue::new(8);
        q.push(t0, 7, "srv", plan(50, Some(200))).unwrap();
        assert_eq!(q.poll_timeout(), Some(t0 + 50 * MS));
        assert_eq!(q.next(t0 + 49 * MS, &mut |_| false), None);
        assert_eq!(
            q.next(t0 + 50 * MS, &mut |_| false),
            Some(Action::Start {
                key: 7,
                name: "srv".into()
            })
        );
        assert_eq!(q.poll_timeout(), Some(t0 + 250 * MS));
        assert_eq!(q.next(t0 + 100 * MS, &mut |_| false), None);
        assert_eq!(
            q.next(t0 + 250 * MS, &mut |_| false),
            Some(Action::Expire {
                key: 7,
                name: "srv".into()
            })
        );
        assert!(q.is_empty());
    }

    #[test]
    fn the_queue_is_bounded_and_removal_works() {
        let t0 = Instant::now();
        let mut q = AcceptQueue::new(2);
        q.push(t0, 1, "a", plan(10, None)).unwrap();
        q.push(t0, 2, "a", plan(10, None)).unwrap();
        assert_eq!(q.push(t0, 3, "a", plan(10, None)), Err(Full(2)));
        q.remove(&1);
        assert_eq!(
            q.next(t0, &mut |_| true),
            Some(Action::Serve {
                key: 2,
                name: "a".into()
            })
        );
    }
}
