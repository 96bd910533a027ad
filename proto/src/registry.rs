//! Names, the programs and processes bound to them, the processes waiting in accept, and
//! load balancing between them, without I/O: whether a process lives is asked of the
//! caller (`lives`), and what an acceptor is reached by is the caller's type `T`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

/// Load balancing of flows over the processes accepting a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lb {
    /// Feed the most recent acceptor (the reference's TOML default).
    #[default]
    Spill,
    /// Alternate between acceptors.
    RoundRobin,
}

impl Lb {
    /// Parses `spill` / `round-robin`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "spill" => Some(Self::Spill),
            "round-robin" => Some(Self::RoundRobin),
            _ => None,
        }
    }

    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spill => "spill",
            Self::RoundRobin => "round-robin",
        }
    }
}

/// A program bound to a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgBind {
    /// Path as configured.
    pub path: String,
    /// Resolved executable (canonical), when it exists.
    pub exe: Option<PathBuf>,
    /// Arguments for auto-start.
    pub args: Vec<String>,
    /// Start it when a flow arrives and nobody accepts.
    pub auto: bool,
    /// The user and group it runs as when started (`None`: the daemon's, root): the
    /// administrator who bound it, when that was not root. Only processes of that user (or
    /// root) running the program accept flows for the name.
    pub run_as: Option<(u32, u32)>,
}

/// A name.
#[derive(Debug, Clone, Default)]
pub struct NameEntry {
    /// Load balancing.
    pub lb: Lb,
    /// Bound programs.
    pub progs: Vec<ProgBind>,
    /// Bound processes.
    pub pids: BTreeSet<i32>,
    /// Acceptors waiting for flows of this name, the next one first.
    pub active: VecDeque<u64>,
    /// Security file overrides from the configuration (`server_enc_file`, ...).
    pub paths: Vec<(String, PathBuf)>,
    /// The user who created it (0 for the configuration and root).
    pub owner: u32,
}

/// A process waiting in accept.
#[derive(Debug)]
pub struct Acceptor<T> {
    /// Its id in the registry.
    pub id: u64,
    /// Its pid.
    pub pid: i32,
    /// Where to hand the flow (the caller's).
    pub handle: T,
    /// The names it accepts for.
    pub names: Vec<String>,
}

/// Names and acceptors.
#[derive(Debug)]
pub struct Registry<T> {
    /// Names.
    pub names: BTreeMap<String, NameEntry>,
    /// Waiting acceptors by id.
    pub acceptors: BTreeMap<u64, Acceptor<T>>,
    next_acceptor: u64,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self {
            names: BTreeMap::new(),
            acceptors: BTreeMap::new(),
            next_acceptor: 0,
        }
    }
}

impl<T> Registry<T> {
    /// Creates a name if needed; `true` if it is new.
    pub fn create(&mut self, name: &str, lb: Option<Lb>) -> bool {
        let new = !self.names.contains_key(name);
        let e = self.names.entry(name.to_string()).or_default();
        if let Some(lb) = lb {
            e.lb = lb;
        }
        new
    }

    /// Names process `pid` of user `uid` (running `exe`) is bound to: by its pid, or
    /// because it runs a program bound to the name as that user (or is root's).
    pub fn names_of(&self, pid: i32, uid: u32, exe: Option<&Path>) -> Vec<String> {
        self.names
            .iter()
            .filter(|(_, e)| {
                e.pids.contains(&pid)
                    || e.progs.iter().any(|p| {
                        let user = p.run_as.map_or(0, |(u, _)| u);
                        exe.is_some() && p.exe.as_deref() == exe && (uid == 0 || uid == user)
                    })
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Binds process `pid` to `name`; if it is waiting in accept, it now accepts for `name`
    /// too.
    pub fn bind_pid(&mut self, pid: i32, name: &str) {
        let waiting: Vec<u64> = self
            .acceptors
            .iter()
            .filter(|(_, a)| a.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        if let Some(e) = self.names.get_mut(name) {
            e.pids.insert(pid);
            for id in &waiting {
                if !e.active.contains(id) {
                    match e.lb {
                        Lb::RoundRobin => e.active.push_back(*id),
                        Lb::Spill => e.active.push_front(*id),
                    }
                }
            }
            for id in waiting {
                if let Some(a) = self.acceptors.get_mut(&id) {
                    if !a.names.iter().any(|n| n == name) {
                        a.names.push(name.to_string());
                    }
                }
            }
        }
    }

    /// Adds an acceptor for `names`; returns its id.
    pub fn add_acceptor(&mut self, pid: i32, names: &[String], handle: T) -> u64 {
        self.next_acceptor += 1;
        let id = self.next_acceptor;
        self.acceptors.insert(
            id,
            Acceptor {
                id,
                pid,
                handle,
                names: names.to_vec(),
            },
        );
        for n in names {
            if let Some(e) = self.names.get_mut(n) {
                match e.lb {
                    Lb::RoundRobin => e.active.push_back(id),
                    Lb::Spill => e.active.push_front(id),
                }
            }
        }
        id
    }

    /// Removes an acceptor everywhere.
    pub fn remove_acceptor(&mut self, id: u64) -> Option<Acceptor<T>> {
        for e in self.names.values_mut() {
            e.active.retain(|a| *a != id);
        }
        self.acceptors.remove(&id)
    }

    /// Puts back an acceptor taken for a flow that could not be set up: it is first in line
    /// again for each of its names (the process never learns it was picked).
    pub fn restore(&mut self, a: Acceptor<T>) {
        for n in &a.names {
            if let Some(e) = self.names.get_mut(n) {
                if !e.active.contains(&a.id) {
                    e.active.push_front(a.id);
                }
            }
        }
        self.acceptors.insert(a.id, a);
    }

    /// Takes the next acceptor of `name` (removing it from every name's list).
    ///
    /// Processes bound to the name by pid (`o7sctl bind process`) are pinned: while one of
    /// them lives, only they get the name's flows (a process that runs a bound program does
    /// not), so `None` when none of them accepts now.
    pub fn take_acceptor(
        &mut self,
        name: &str,
        lives: &dyn Fn(i32) -> bool,
    ) -> Option<Acceptor<T>> {
        let e = self.names.get(name)?;
        let pinned = |id: &u64| {
            self.acceptors
                .get(id)
                .is_some_and(|a| e.pids.contains(&a.pid))
        };
        let id = match e.active.iter().find(|id| pinned(id)) {
            Some(id) => *id,
            None if e.pids.iter().any(|p| lives(*p)) => return None,
            None => *e.active.front()?,
        };
        self.remove_acceptor(id)
    }

    /// Whether [`Registry::take_acceptor`] would give an acceptor of `name` now.
    pub fn has_acceptor(&self, name: &str, lives: &dyn Fn(i32) -> bool) -> bool {
        let Some(e) = self.names.get(name) else {
            return false;
        };
        let pinned = |id: &u64| {
            self.acceptors
                .get(id)
                .is_some_and(|a| e.pids.contains(&a.pid))
        };
        if e.active.iter().any(pinned) {
            return true;
        }
        !e.pids.iter().any(|p| lives(*p)) && !e.active.is_empty()
    }

    /// The program to auto-start for `name`.
    pub fn auto_prog(&self, name: &str) -> Option<ProgBind> {
        self.names.get(name)?.progs.iter().find(|p| p.auto).cloned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Processes that live in these tests: pids below 1000.
    fn lives(pid: i32) -> bool {
        pid > 0 && pid < 1000
    }

    fn acceptors(lb: Lb) -> Vec<i32> {
        let mut r: Registry<()> = Registry::default();
        r.create("n", Some(lb));
        let names = vec!["n".to_string()];
        let tx = ();
        r.add_acceptor(1, &names, tx);
        r.add_acceptor(2, &names, tx);
        let mut order = vec![];
        for _ in 0..4 {
            let a = r.take_acceptor("n", &lives).unwrap();
            order.push(a.pid);
            // The served process accepts again.
            r.add_acceptor(a.pid, &names, tx);
        }
        order
    }

    #[test]
    fn round_robin_alternates_spill_sticks() {
        assert_eq!(acceptors(Lb::RoundRobin), vec![1, 2, 1, 2]);
        assert_eq!(acceptors(Lb::Spill), vec![2, 2, 2, 2]);
    }

    #[test]
    fn a_process_bound_by_pid_is_pinned() {
        let mut r: Registry<()> = Registry::default();
        r.create("n", Some(Lb::RoundRobin));
        let names = vec!["n".to_string()];
        let tx = ();
        let me = 500;
        // A program's process accepts first, then the pinned process.
        r.add_acceptor(1, &names, tx);
        r.bind_pid(me, "n");
        assert!(
            r.take_acceptor("n", &lives).is_none(),
            "the pinned process lives: wait for it"
        );
        r.add_acceptor(me, &names, tx);
        assert_eq!(r.take_acceptor("n", &lives).map(|a| a.pid), Some(me));
        // A pinned process that is gone pins nothing.
        r.names.get_mut("n").unwrap().pids = [i32::MAX - 1].into();
        assert_eq!(r.take_acceptor("n", &lives).map(|a| a.pid), Some(1));
    }

    #[test]
    fn an_acceptor_taken_for_a_failed_flow_is_first_again() {
        let mut r: Registry<()> = Registry::default();
        r.create("n", Some(Lb::RoundRobin));
        let names = vec!["n".to_string()];
        let tx = ();
        r.add_acceptor(1, &names, tx);
        r.add_acceptor(2, &names, tx);
        let a = r.take_acceptor("n", &lives).unwrap();
        assert_eq!(a.pid, 1);
        r.restore(a);
        assert_eq!(r.take_acceptor("n", &lives).map(|a| a.pid), Some(1));
        assert_eq!(r.take_acceptor("n", &lives).map(|a| a.pid), Some(2));
        assert!(r.take_acceptor("n", &lives).is_none());
    }

    #[test]
    fn a_waiting_process_bound_later_gets_flows() {
        let mut r: Registry<()> = Registry::default();
        r.create("late", None);
        let tx = ();
        // Accepting before any binding: waits for no name.
        r.add_acceptor(9, &[], tx);
        assert!(r.take_acceptor("late", &lives).is_none());
        r.bind_pid(9, "late");
        assert_eq!(r.take_acceptor("late", &lives).map(|a| a.pid), Some(9));
    }

    #[test]
    fn binding_by_pid_and_program() {
        let mut r: Registry<()> = Registry::default();
        r.create("a", None);
        r.create("b", None);
        r.names.get_mut("a").unwrap().pids.insert(42);
        r.names.get_mut("b").unwrap().progs.push(ProgBind {
            path: "/bin/x".into(),
            exe: Some("/bin/x".into()),
            args: vec![],
            auto: false,
            run_as: None,
        });
        r.names.get_mut("a").unwrap().progs.push(ProgBind {
            path: "/bin/y".into(),
            exe: Some("/bin/y".into()),
            args: vec![],
            auto: false,
            run_as: Some((1000, 1000)),
        });
        assert_eq!(r.names_of(42, 1000, None), vec!["a"]);
        assert_eq!(r.names_of(7, 0, Some(Path::new("/bin/x"))), vec!["b"]);
        assert!(r.names_of(7, 0, None).is_empty());
        // Root's program run by another user serves none of root's names.
        assert!(r.names_of(7, 1000, Some(Path::new("/bin/x"))).is_empty());
        // A program bound by user 1000 serves its name when 1000 or root runs it.
        assert_eq!(r.names_of(7, 1000, Some(Path::new("/bin/y"))), vec!["a"]);
        assert!(r.names_of(7, 1001, Some(Path::new("/bin/y"))).is_empty());
    }
}
