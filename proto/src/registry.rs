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

impl ProgBind {
    /// Whether a process running `exe` runs this program: a file of the same name as the
    /// bound path or its resolved executable, wherever it lies (a tutorial's
    /// `/usr/bin/oping` when the program lives elsewhere, or nowhere on the daemon's
    /// `PATH`). The bound path and the resolved executable themselves are such files; a
    /// path without a file name (`/`, `..`) runs nothing.
    pub fn runs(&self, exe: &Path) -> bool {
        let Some(base) = exe.file_name() else {
            return false;
        };
        Path::new(&self.path).file_name() == Some(base)
            || self.exe.as_deref().and_then(Path::file_name) == Some(base)
    }

    /// Whether `other` binds the same program (the same path, executable or file name):
    /// binding it again replaces this binding.
    pub fn same_program(&self, other: &ProgBind) -> bool {
        self.path == other.path
            || self.runs(Path::new(&other.path))
            || other.exe.as_deref().is_some_and(|e| self.runs(e))
    }

    /// Whether a process of user `uid` running this program serves its name: root's, or
    /// the binding administrator's.
    pub fn serves_user(&self, uid: u32) -> bool {
        uid == 0 || uid == self.run_as.map_or(0, |(u, _)| u)
    }

    /// Whether it can be started (its executable was found).
    pub fn startable(&self) -> bool {
        self.exe.is_some()
    }
}

/// A name.
#[derive(Debug, Clone, Default)]
pub struct NameEntry {
    /// Load balancing.
    pub lb: Lb,
    /// Bound programs.
    pub progs: Vec<ProgBind>,
    /// Processes bound by pid (`o7sctl bind process`): pinned, see
    /// [`Registry::take_acceptor`].
    pub pids: BTreeSet<i32>,
    /// Processes bound through a program they run (found when they accept): their user
    /// and executable. They leave when they exit ([`Registry::unbind_gone`]).
    pub procs: BTreeMap<i32, (u32, PathBuf)>,
    /// Acceptors waiting for flows of this name, the next one first.
    pub active: VecDeque<u64>,
    /// Security file overrides from the configuration (`server_enc_file`, ...).
    pub paths: Vec<(String, PathBuf)>,
    /// `server_auth = "required"` in its configuration: a flow to it needs the server's
    /// certificate and signature (the reference, and the default, take an unsigned
    /// response, which a man in the middle can send).
    pub server_auth_required: bool,
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
    /// Its user and executable, when known: a program bound later makes it accept for
    /// that name too.
    pub runs: Option<(u32, PathBuf)>,
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
    /// because it runs a program bound to the name ([`ProgBind::runs`]: by path or file
    /// name) as that user (or is root's).
    pub fn names_of(&self, pid: i32, uid: u32, exe: Option<&Path>) -> Vec<String> {
        self.names
            .iter()
            .filter(|(_, e)| e.pids.contains(&pid) || Self::runs_prog(e, uid, exe))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn runs_prog(e: &NameEntry, uid: u32, exe: Option<&Path>) -> bool {
        exe.is_some_and(|x| e.progs.iter().any(|p| p.runs(x) && p.serves_user(uid)))
    }

    /// Process `pid` of user `uid` running `exe` enters accept: an acceptor for the names
    /// it is bound to ([`Registry::names_of`]); those it serves through their program list
    /// it among their processes. Returns the acceptor's id and its names (none: it waits
    /// until a program it runs or its pid is bound).
    pub fn accept_as(
        &mut self,
        pid: i32,
        uid: u32,
        exe: Option<&Path>,
        handle: T,
    ) -> (u64, Vec<String>) {
        let names = self.names_of(pid, uid, exe);
        if let Some(x) = exe {
            for n in &names {
                if let Some(e) = self.names.get_mut(n) {
                    if !e.pids.contains(&pid) {
                        e.procs.insert(pid, (uid, x.to_path_buf()));
                    }
                }
            }
        }
        let id = self.add_acceptor(pid, &names, handle);
        if let (Some(a), Some(x)) = (self.acceptors.get_mut(&id), exe) {
            a.runs = Some((uid, x.to_path_buf()));
        }
        (id, names)
    }

    /// Binds program `prog` to `name` (created if needed). A binding of the same program
    /// ([`ProgBind::same_program`]) is replaced, not doubled; the replaced ones are
    /// returned. Processes waiting in accept that run it accept for `name` from now on.
    pub fn bind_prog(&mut self, name: &str, prog: ProgBind) -> Vec<ProgBind> {
        self.create(name, None);
        let Some(e) = self.names.get_mut(name) else {
            return vec![];
        };
        let (replaced, kept): (Vec<ProgBind>, Vec<ProgBind>) =
            e.progs.drain(..).partition(|p| p.same_program(&prog));
        e.progs = kept;
        e.progs.push(prog.clone());
        let joining: Vec<(u64, i32, u32, PathBuf)> = self
            .acceptors
            .values()
            .filter_map(|a| {
                let (uid, exe) = a.runs.clone()?;
                let fits = prog.runs(&exe) && prog.serves_user(uid);
                (fits && !a.names.iter().any(|n| n == name)).then_some((a.id, a.pid, uid, exe))
            })
            .collect();
        for (id, pid, uid, exe) in joining {
            if let Some(e) = self.names.get_mut(name) {
                match e.lb {
                    Lb::RoundRobin => e.active.push_back(id),
                    Lb::Spill => e.active.push_front(id),
                }
                if !e.pids.contains(&pid) {
                    e.procs.insert(pid, (uid, exe));
                }
            }
            if let Some(a) = self.acceptors.get_mut(&id) {
                a.names.push(name.to_string());
            }
        }
        replaced
    }

    /// Unbinds program `path` from `name`; `false` if it was not bound. Processes that
    /// served the name only through it no longer do (nor accept for it).
    pub fn unbind_prog(&mut self, name: &str, path: &str) -> bool {
        let Some(e) = self.names.get_mut(name) else {
            return false;
        };
        let before = e.progs.len();
        e.progs.retain(|p| p.path != path);
        if e.progs.len() == before {
            return false;
        }
        let progs = e.progs.clone();
        e.procs
            .retain(|_, (uid, exe)| progs.iter().any(|p| p.runs(exe) && p.serves_user(*uid)));
        let pids = e.pids.clone();
        let leaving: Vec<u64> = self
            .acceptors
            .values()
            .filter(|a| a.names.iter().any(|n| n == name) && !pids.contains(&a.pid))
            .filter(|a| {
                !a.runs.as_ref().is_some_and(|(uid, exe)| {
                    progs.iter().any(|p| p.runs(exe) && p.serves_user(*uid))
                })
            })
            .map(|a| a.id)
            .collect();
        for id in leaving {
            if let Some(e) = self.names.get_mut(name) {
                e.active.retain(|x| *x != id);
            }
            if let Some(a) = self.acceptors.get_mut(&id) {
                a.names.retain(|n| n != name);
            }
        }
        true
    }

    /// Unbinds processes that no longer live from every name (by pid or through their
    /// program); returns them with the name.
    pub fn unbind_gone(&mut self, lives: &dyn Fn(i32) -> bool) -> Vec<(i32, String)> {
        let mut gone = vec![];
        for (n, e) in &mut self.names {
            e.pids.retain(|p| {
                let keep = lives(*p);
                if !keep {
                    gone.push((*p, n.clone()));
                }
                keep
            });
            e.procs.retain(|p, _| {
                let keep = lives(*p);
                if !keep {
                    gone.push((*p, n.clone()));
                }
                keep
            });
        }
        gone
    }

    /// The processes bound to `name`: by pid and through its programs.
    pub fn processes(&self, name: &str) -> Vec<i32> {
        let Some(e) = self.names.get(name) else {
            return vec![];
        };
        let mut v: Vec<i32> = e.pids.iter().chain(e.procs.keys()).copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Processes waiting in accept for no name, with their executables.
    pub fn unbound_acceptors(&self) -> Vec<(i32, Option<PathBuf>)> {
        self.acceptors
            .values()
            .filter(|a| a.names.is_empty())
            .map(|a| (a.pid, a.runs.as_ref().map(|(_, x)| x.clone())))
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
                runs: None,
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

    /// The program to auto-start for `name`: the first auto-started one that can be
    /// started, else the first auto-started one (the caller says why it cannot start).
    pub fn auto_prog(&self, name: &str) -> Option<ProgBind> {
        let e = self.names.get(name)?;
        let mut auto = e.progs.iter().filter(|p| p.auto);
        auto.clone()
            .find(|p| p.startable())
            .or_else(|| auto.next())
            .cloned()
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

    fn prog(path: &str, exe: Option<&str>, auto: bool) -> ProgBind {
        ProgBind {
            path: path.into(),
            exe: exe.map(PathBuf::from),
            args: vec![],
            auto,
            run_as: None,
        }
    }

    #[test]
    fn a_hand_started_server_is_found_by_its_file_name() {
        let mut r: Registry<()> = Registry::default();
        // The tutorial's configuration: a path that does not exist here.
        r.bind_prog("oping-server", prog("/usr/bin/oping", None, false));
        let real = Path::new("/work/target/release/oping");
        assert_eq!(r.names_of(7, 0, Some(real)), vec!["oping-server"]);
        assert!(r
            .names_of(7, 0, Some(Path::new("/usr/bin/ocbr")))
            .is_empty());
        // The user rule still holds: root's program, another user's process.
        assert!(r.names_of(7, 1000, Some(real)).is_empty());
        // It accepts, is listed among the name's processes, and gets its flows.
        let (_, names) = r.accept_as(7, 0, Some(real), ());
        assert_eq!(names, vec!["oping-server"]);
        assert_eq!(r.processes("oping-server"), vec![7]);
        assert_eq!(
            r.take_acceptor("oping-server", &lives).map(|a| a.pid),
            Some(7)
        );
        // A bound path that exists matches its resolved executable too.
        r.bind_prog("x", prog("x", Some("/opt/x/bin/x-server"), false));
        assert_eq!(
            r.names_of(8, 0, Some(Path::new("/opt/x/bin/x-server"))),
            vec!["x"]
        );
    }

    #[test]
    fn rebinding_the_same_program_replaces_it() {
        let mut r: Registry<()> = Registry::default();
        assert!(r
            .bind_prog("s", prog("/usr/bin/oping", None, true))
            .is_empty());
        // `config load` again, then `bind program` with the real path: one binding.
        let again = r.bind_prog("s", prog("/usr/bin/oping", None, true));
        assert_eq!(again.len(), 1);
        let real = prog(
            "/w/target/release/oping",
            Some("/w/target/release/oping"),
            true,
        );
        let replaced = r.bind_prog("s", real.clone());
        assert_eq!(
            replaced.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(),
            vec!["/usr/bin/oping"]
        );
        assert_eq!(r.names["s"].progs, vec![real.clone()]);
        // Another program is a second binding; the one that can start is auto-started.
        r.bind_prog("t", prog("/usr/bin/oping", None, true));
        assert!(r.bind_prog("t", real.clone()).len() == 1);
        r.bind_prog("t", prog("/nowhere/ocbr", None, true));
        assert_eq!(r.names["t"].progs.len(), 2);
        assert_eq!(r.auto_prog("t").map(|p| p.path), Some(real.path.clone()));
        // Only unstartable ones: the first is given (the caller says why it cannot start).
        r.bind_prog("u", prog("/nowhere/a", None, true));
        r.bind_prog("u", prog("/nowhere/b", None, true));
        assert_eq!(r.auto_prog("u").map(|p| p.path), Some("/nowhere/a".into()));
    }

    #[test]
    fn a_waiting_process_joins_a_program_bound_later_and_leaves_when_unbound() {
        let mut r: Registry<()> = Registry::default();
        let exe = Path::new("/w/oping");
        let (_, names) = r.accept_as(9, 0, Some(exe), ());
        assert!(names.is_empty());
        assert_eq!(r.unbound_acceptors(), vec![(9, Some(exe.to_path_buf()))]);
        r.bind_prog("late", prog("/usr/bin/oping", None, false));
        assert!(r.has_acceptor("late", &lives));
        assert_eq!(r.processes("late"), vec![9]);
        assert!(r.unbound_acceptors().is_empty());
        assert!(r.unbind_prog("late", "/usr/bin/oping"));
        assert!(!r.has_acceptor("late", &lives));
        assert!(r.processes("late").is_empty());
        assert!(!r.unbind_prog("late", "/usr/bin/oping"));
    }

    #[test]
    fn processes_that_exit_are_unbound() {
        let mut r: Registry<()> = Registry::default();
        r.bind_prog("n", prog("/usr/bin/oping", None, false));
        r.accept_as(5, 0, Some(Path::new("/bin/oping")), ());
        r.bind_pid(6, "n");
        assert_eq!(r.processes("n"), vec![5, 6]);
        // Both gone (pids of 1000 and more do not live in these tests).
        let dead = |p: i32| lives(p) && p != 5 && p != 6;
        let mut gone = r.unbind_gone(&dead);
        gone.sort_unstable();
        assert_eq!(gone, vec![(5, "n".to_string()), (6, "n".to_string())]);
        assert!(r.processes("n").is_empty());
        assert!(r.unbind_gone(&dead).is_empty());
    }

    #[test]
    fn load_balancing_words() {
        for lb in [Lb::Spill, Lb::RoundRobin] {
            assert_eq!(Lb::parse(lb.as_str()), Some(lb));
        }
        assert_eq!(Lb::Spill.as_str(), "spill");
        assert_eq!(Lb::RoundRobin.as_str(), "round-robin");
        assert_eq!(Lb::parse("round-robin"), Some(Lb::RoundRobin));
        assert_eq!(Lb::parse("spill"), Some(Lb::Spill));
        assert_eq!(Lb::parse("roundrobin"), None);
        assert_eq!(Lb::parse(""), None);
    }

    #[test]
    fn create_says_whether_the_name_is_new() {
        let mut r: Registry<()> = Registry::default();
        assert!(r.create("n", None));
        assert_eq!(r.names["n"].lb, Lb::Spill);
        assert!(!r.create("n", Some(Lb::RoundRobin)));
        assert_eq!(
            r.names["n"].lb,
            Lb::RoundRobin,
            "an existing name takes the new lb"
        );
        assert!(!r.create("n", None));
        assert_eq!(r.names["n"].lb, Lb::RoundRobin, "no lb given: kept");
    }

    #[test]
    fn a_program_runs_by_file_name_and_starts_when_found() {
        let bound = prog("x", Some("/opt/x/bin/x-server"), false);
        assert!(bound.runs(Path::new("/opt/x/bin/x-server")));
        assert!(bound.runs(Path::new("/elsewhere/x-server")));
        assert!(bound.runs(Path::new("/usr/bin/x")));
        assert!(!bound.runs(Path::new("/usr/bin/y")));
        assert!(!bound.runs(Path::new("/")), "no file name: nothing runs");
        assert!(bound.startable());
        assert!(!prog("/nowhere/x", None, true).startable());
        // The startable one is auto-started even when an unstartable one was bound first.
        let mut r: Registry<()> = Registry::default();
        r.bind_prog("v", prog("/nowhere/ocbr", None, true));
        r.bind_prog("v", prog("/w/oping", Some("/w/oping"), true));
        r.bind_prog("v", prog("/w/idle", Some("/w/idle"), false));
        assert_eq!(r.auto_prog("v").map(|p| p.path), Some("/w/oping".into()));
    }

    #[test]
    fn the_same_program_by_another_path_replaces_the_binding() {
        let mut r: Registry<()> = Registry::default();
        r.bind_prog("s", prog("/usr/bin/oping", None, false));
        // Neither resolves: the file name alone says it is the same program.
        let replaced = r.bind_prog("s", prog("/opt/oping", None, false));
        assert_eq!(replaced.len(), 1);
        assert_eq!(r.names["s"].progs.len(), 1);
        assert_eq!(r.names["s"].progs[0].path, "/opt/oping");
    }

    fn oping_acceptor_for_other_and_late() -> (Registry<()>, u64) {
        let mut r: Registry<()> = Registry::default();
        r.create("other", None);
        r.bind_pid(7, "other");
        let exe = Path::new("/w/oping");
        let (id, names) = r.accept_as(7, 0, Some(exe), ());
        assert_eq!(names, vec!["other"]);
        // Waiting: another user's oping, root's ocbr: neither runs root's oping binding.
        r.accept_as(8, 1000, Some(exe), ());
        r.accept_as(9, 0, Some(Path::new("/w/ocbr")), ());
        r.bind_prog("late", prog("/usr/bin/oping", None, false));
        (r, id)
    }

    #[test]
    fn only_processes_that_run_the_program_as_its_user_join_it() {
        let (r, id) = oping_acceptor_for_other_and_late();
        assert_eq!(r.acceptors[&id].names, vec!["other", "late"]);
        assert_eq!(r.names["late"].active, VecDeque::from([id]));
        assert_eq!(r.names["other"].active, VecDeque::from([id]));
        assert_eq!(r.processes("late"), vec![7]);
        let waiting: Vec<i32> = r.unbound_acceptors().iter().map(|(p, _)| *p).collect();
        assert_eq!(waiting, vec![8, 9]);
    }

    #[test]
    fn binding_a_program_again_does_not_queue_an_acceptor_twice() {
        let (mut r, id) = oping_acceptor_for_other_and_late();
        r.bind_prog("late", prog("/w/oping", Some("/w/oping"), false));
        assert_eq!(r.acceptors[&id].names, vec!["other", "late"]);
        assert_eq!(r.names["late"].active, VecDeque::from([id]));
    }

    #[test]
    fn unbinding_a_program_removes_only_its_processes() {
        let (mut r, id) = oping_acceptor_for_other_and_late();
        // A second program of the name (root's: it serves root) that 7 does not run,
        // and a process pinned to the name that also runs oping.
        r.bind_prog("late", prog("/w/ocbr2", Some("/w/ocbr2"), false));
        r.bind_pid(6, "late");
        let (pinned, _) = r.accept_as(6, 0, Some(Path::new("/w/oping")), ());
        assert!(r.unbind_prog("late", "/usr/bin/oping"));
        // 7 served "late" only through oping: it leaves the name, keeps "other".
        assert_eq!(r.acceptors[&id].names, vec!["other"]);
        assert_eq!(r.names["other"].active, VecDeque::from([id]));
        assert_eq!(r.processes("late"), vec![6]);
        // 6 is pinned by pid: it still accepts for "late".
        assert_eq!(r.names["late"].active, VecDeque::from([pinned]));
        assert_eq!(r.acceptors[&pinned].names, vec!["late"]);
        assert_eq!(r.take_acceptor("late", &lives).map(|a| a.pid), Some(6));
    }

    #[test]
    fn binding_a_waiting_process_by_pid_names_it_once() {
        let mut r: Registry<()> = Registry::default();
        r.create("other", None);
        r.create("late", None);
        r.bind_pid(7, "other");
        let (id, _) = r.accept_as(7, 0, None, ());
        r.bind_pid(7, "late");
        assert_eq!(r.acceptors[&id].names, vec!["other", "late"]);
        r.bind_pid(7, "late");
        r.bind_pid(7, "other");
        assert_eq!(r.acceptors[&id].names, vec!["other", "late"]);
        assert_eq!(r.names["late"].active, VecDeque::from([id]));
        assert_eq!(r.names["other"].active, VecDeque::from([id]));
    }
}
