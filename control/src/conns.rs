//! Bounds on connections to the control socket: each is watched by the event loop (an
//! o7sctl request is answered by the admin thread) and every flow holds one, so one local
//! user must not be able to take them all.

use o7s::ipc::Channel;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Connections at once from all users together.
pub const MAX_TOTAL: usize = 8192;

/// Open connections by user.
#[derive(Debug)]
pub struct Conns {
    per_user: usize,
    open: Mutex<HashMap<u32, usize>>,
    last_log: Mutex<Option<Instant>>,
}

/// A connection's place; freed when dropped.
#[derive(Debug)]
pub struct Slot {
    conns: Arc<Conns>,
    uid: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.conns.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.uid) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.uid);
            }
        }
    }
}

impl Conns {
    /// At most `per_user` connections for each non-root user.
    pub fn new(per_user: usize) -> Self {
        Self {
            per_user,
            open: Mutex::new(HashMap::new()),
            last_log: Mutex::new(None),
        }
    }

    /// A slot for the connection `ch`, or `None` (the connection is then closed, and a
    /// line logged at most once a second).
    pub fn admit(self: &Arc<Self>, ch: &Channel) -> Option<Slot> {
        let uid = ch.peer_cred().ok()?.uid;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = open.values().sum();
        let mine = open.get(&uid).copied().unwrap_or(0);
        if total >= MAX_TOTAL || (uid != 0 && mine >= self.per_user) {
            drop(open);
            let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| t.elapsed().as_secs() >= 1) {
                *last = Some(Instant::now());
                tracing::warn!(
                    "refused a connection of uid {uid}: it has {mine} open (limit {}, o7sd --max-conns-per-user), {total} in all",
                    self.per_user
                );
            }
            return None;
        }
        *open.entry(uid).or_default() += 1;
        Some(Slot {
            conns: self.clone(),
            uid,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn root_is_not_limited_and_slots_are_given_back() {
        let c = Arc::new(Conns::new(2));
        let (a, _b) = Channel::pair().unwrap();
        // This test runs as some user; root is never limited per user.
        let me = a.peer_cred().unwrap().uid;
        let s1 = c.admit(&a).unwrap();
        let s2 = c.admit(&a).unwrap();
        let third = c.admit(&a);
        assert_eq!(third.is_some(), me == 0);
        drop((s1, s2, third));
        assert!(c.open.lock().unwrap().is_empty());
        assert!(c.admit(&a).is_some());
    }
}
