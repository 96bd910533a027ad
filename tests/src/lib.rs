//! Helpers for tests that cross a network: namespaces and veth pairs with unique names,
//! daemons started inside them, all removed on drop (also when a test fails).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod unicast;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The directory holding the workspace's debug binaries.
pub fn bin_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

/// Path of a workspace binary; panics with the fix if it was not built. `O7S_BIN_DIR`
/// points the tests at another build's binaries (a baseline: the tests then show how it
/// behaved); those it lacks (the test helpers) come from this build.
pub fn bin(name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os("O7S_BIN_DIR")
        .map(|d| PathBuf::from(d).join(name))
        .filter(|p| p.exists())
    {
        return p;
    }
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` before the tests",
        p.display()
    );
    p
}

/// Whether this test can run (root, `ip`); prints why not. With `O7S_REQUIRE_ROOT=1` (CI)
/// a missing capability fails the test instead.
pub fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if root && ip {
        return true;
    }
    let why = if root {
        "the `ip` command (iproute2) is missing"
    } else {
        "not root"
    };
    if std::env::var("O7S_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("O7S_REQUIRE_ROOT=1 but {why}");
    }
    eprintln!("SKIPPED: {why}; network-namespace tests need root");
    false
}

/// Frames of `pcap` as tshark with tools/wireshark/o7s.lua shows them: one line per frame,
/// its number, then `MALFORMED` when the dissector flagged it, then the Info column. `None`
/// (and a SKIPPED line) without tshark; fails when tshark reports an error, and when tshark
/// is missing while O7S_REQUIRE_ROOT=1 (CI installs it with scripts/setup.sh).
pub fn tshark_o7s(pcap: &Path) -> Option<Vec<String>> {
    if !tool("tshark") {
        return None;
    }
    let out = o7s_dissect::tshark::run(
        pcap,
        &[
            "-Y",
            "o7s",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.expert.message",
            "-e",
            "_ws.col.Info",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    Some(
        out.lines()
            .map(|l| {
                let mut f = l.splitn(3, '\t');
                let (n, bad, info) = (
                    f.next().unwrap_or(""),
                    f.next().unwrap_or(""),
                    f.next().unwrap_or(""),
                );
                // The dissector's errors read "Malformed: why".
                let bad = if bad.contains("Malformed") {
                    " MALFORMED"
                } else {
                    ""
                };
                format!("{n}{bad} {info}")
            })
            .collect(),
    )
}

/// Whether the program `name` is installed (in PATH or /usr/sbin); prints why a test skips
/// when not, and fails instead with `O7S_REQUIRE_ROOT=1` (CI, after scripts/setup.sh).
pub fn tool(name: &str) -> bool {
    tool_path(name).is_some()
}

/// Where the program `name` is installed (the first of PATH, then /usr/sbin, /usr/bin,
/// /sbin, /bin, that has it); when nowhere, as [`tool`]: prints why a test skips, and fails
/// instead with `O7S_REQUIRE_ROOT=1`.
pub fn tool_path(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = dirs
        .into_iter()
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    if found.is_some() {
        return found;
    }
    if std::env::var("O7S_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{name} is not installed (scripts/setup.sh installs it)");
    }
    eprintln!("SKIPPED: {name} is not installed (scripts/setup.sh installs it)");
    None
}

/// Whether a port's I/O path (from `o7sctl port list`) is AF_XDP. On a machine where the data
/// plane had to fall back to AF_PACKET this prints why AF_XDP checks are skipped, and fails
/// instead with `O7S_REQUIRE_ROOT=1` (CI, whose machines offer XDP and AF_XDP).
pub fn on_af_xdp(io_path: &str) -> bool {
    if io_path.starts_with("af_xdp") {
        return true;
    }
    if std::env::var("O7S_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("AF_XDP expected, the port says: {io_path}");
    }
    eprintln!("SKIPPED (AF_XDP checks): this machine fell back: {io_path}");
    false
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A unique short name (interface names are limited to 15 characters).
pub fn unique(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::SeqCst);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn")
}

/// Namespaces `NAME-a`, `NAME-b` joined by veth `NAME-va` <-> `NAME-vb` (or one namespace
/// with only `lo`).
#[derive(Debug)]
pub struct Topo {
    /// Base name.
    pub name: String,
    /// Namespaces created.
    pub spaces: Vec<String>,
    /// Scratch directory.
    pub dir: PathBuf,
}

impl Topo {
    /// Two hosts joined by a veth pair.
    pub fn pair(prefix: &str) -> Topo {
        Topo::pair_with_queues(prefix, 1)
    }

    /// Two hosts joined by a veth pair whose ends have `queues` RX and TX queues each.
    pub fn pair_with_queues(prefix: &str, queues: u32) -> Topo {
        let name = unique(prefix);
        let t = Topo::empty(&name, &["a", "b"]);
        let va = format!("{name}-va");
        let vb = format!("{name}-vb");
        let na = t.ns("a");
        let nb = t.ns("b");
        let q = queues.to_string();
        let o = sh(&[
            "ip",
            "link",
            "add",
            &va,
            "netns",
            &na,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &vb,
            "netns",
            &nb,
            "numrxqueues",
            &q,
            "numtxqueues",
            &q,
        ]);
        assert!(
            o.status.success(),
            "veth: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        for (ns, dev) in [(&na, &va), (&nb, &vb)] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        t
    }

    /// Hosts `sides` on one Ethernet segment: each has a veth `NAME-v<side>` whose other end
    /// is a port of a bridge in namespace `NAME-br` (a third host on the segment sees the
    /// others' broadcasts, as on a real LAN).
    pub fn bridged(prefix: &str, sides: &[&str]) -> Topo {
        let name = unique(prefix);
        let mut all: Vec<&str> = sides.to_vec();
        all.push("br");
        let t = Topo::empty(&name, &all);
        let br = t.ns("br");
        let ok = |o: Output, what: &str| {
            assert!(
                o.status.success(),
                "{what}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        };
        ok(
            sh(&["ip", "-n", &br, "link", "add", "br0", "type", "bridge"]),
            "bridge",
        );
        ok(
            sh(&["ip", "-n", &br, "link", "set", "br0", "up"]),
            "bridge up",
        );
        for s in sides {
            let (dev, port, ns) = (t.dev(s), format!("{name}-p{s}"), t.ns(s));
            ok(
                sh(&[
                    "ip", "link", "add", &dev, "netns", &ns, "type", "veth", "peer", "name", &port,
                    "netns", &br,
                ]),
                "veth",
            );
            ok(
                sh(&["ip", "-n", &br, "link", "set", &port, "master", "br0"]),
                "bridge port",
            );
            ok(
                sh(&["ip", "-n", &br, "link", "set", &port, "up"]),
                "port up",
            );
            ok(sh(&["ip", "-n", &ns, "link", "set", &dev, "up"]), "dev up");
        }
        t
    }

    /// The MAC address of side `s`'s device.
    pub fn mac(&self, s: &str) -> String {
        let o = sh(&["ip", "-n", &self.ns(s), "-j", "link", "show", &self.dev(s)]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[0]["address"].as_str().unwrap().to_string()
    }

    /// One host with `lo` only.
    pub fn single(prefix: &str) -> Topo {
        let name = unique(prefix);
        Topo::empty(&name, &["a"])
    }

    fn empty(name: &str, sides: &[&str]) -> Topo {
        let dir = std::env::temp_dir().join(format!("o7s-test-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut t = Topo {
            name: name.to_string(),
            spaces: vec![],
            dir,
        };
        for s in sides {
            let ns = format!("{name}-{s}");
            let o = sh(&["ip", "netns", "add", &ns]);
            assert!(
                o.status.success(),
                "netns add {ns}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            t.spaces.push(ns.clone());
            sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        t
    }

    /// Hosts `sides` joined by one veth pair per link `(x, y)`: `NAME-xy` in x, `NAME-yx` in
    /// y (see [`Topo::link_dev`]), all up.
    pub fn links(prefix: &str, sides: &[&str], links: &[(&str, &str)]) -> Topo {
        let name = unique(prefix);
        let t = Topo::empty(&name, sides);
        for (x, y) in links {
            let (dx, dy) = (t.link_dev(x, y), t.link_dev(y, x));
            let o = sh(&[
                "ip",
                "link",
                "add",
                &dx,
                "netns",
                &t.ns(x),
                "type",
                "veth",
                "peer",
                "name",
                &dy,
                "netns",
                &t.ns(y),
            ]);
            assert!(
                o.status.success(),
                "veth: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            sh(&["ip", "-n", &t.ns(x), "link", "set", &dx, "up"]);
            sh(&["ip", "-n", &t.ns(y), "link", "set", &dy, "up"]);
        }
        t
    }

    /// The device of side `x` on its link to `y` (see [`Topo::links`]).
    pub fn link_dev(&self, x: &str, y: &str) -> String {
        format!("{}-{x}{y}", self.name)
    }

    /// Namespace of side `s`.
    pub fn ns(&self, s: &str) -> String {
        format!("{}-{s}", self.name)
    }

    /// veth device of side `s`.
    pub fn dev(&self, s: &str) -> String {
        format!("{}-v{s}", self.name)
    }

    /// Gives side `s`'s namespace its own /etc/hosts (and a resolv.conf pointing at the
    /// namespace's own loopback, so no lookup leaves it): `ip netns exec` bind-mounts
    /// `/etc/netns/<ns>/*` over `/etc`.
    pub fn hosts(&self, s: &str, hosts: &str) {
        let d = PathBuf::from("/etc/netns").join(self.ns(s));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("hosts"), format!("127.0.0.1 localhost\n{hosts}")).unwrap();
        std::fs::write(
            d.join("resolv.conf"),
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )
        .unwrap();
    }

    /// Runtime directory of the daemon of side `s`.
    pub fn rundir(&self, s: &str) -> PathBuf {
        self.dir.join(format!("run-{s}"))
    }

    /// A command run in side `s`'s namespace, talking to its daemon.
    pub fn cmd(&self, s: &str, prog: &Path) -> Command {
        self.cmd_in(s, s, prog)
    }

    /// A command run in side `ns`'s namespace, talking to the daemon of `rundir` (several
    /// daemons can share a namespace).
    pub fn cmd_in(&self, ns: &str, rundir: &str, prog: &Path) -> Command {
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        self.cmd_path(ns, rundir, prog, &path)
    }

    /// As [`Topo::cmd_in`] with `PATH` set to `path` (without the workspace's binaries, it
    /// is the environment `sudo` gives a daemon started by hand).
    pub fn cmd_path(&self, ns: &str, rundir: &str, prog: &Path, path: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(ns)])
            .arg("env")
            .arg(format!("O7S_RUNDIR={}", self.rundir(rundir).display()))
            .arg(format!("PATH={path}"))
            .arg(prog);
        c
    }

    /// Makes the tutorial's PKI (scripts/pki.sh with openssl; `curve` P-384 as the
    /// tutorial, or P-256) in the test's folder: root and signing CAs, the server's
    /// certificate for sec.oping.tut.o7s, and the bad ones.
    pub fn pki(&self, curve: &str) -> PathBuf {
        self.pki_members(curve, &[])
    }

    /// [`Topo::pki`] with certificates for layer members `members` too (their names as
    /// CNs): `members/<m>` issued by the root, `members-other/<m>` by another CA,
    /// `members-expired/<m>` expired.
    pub fn pki_members(&self, curve: &str, members: &[&str]) -> PathBuf {
        let dir = self.dir.join(format!("pki-{curve}"));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/pki.sh");
        let o = Command::new("bash")
            .arg(script)
            .arg(&dir)
            .env("CURVE", curve)
            .env("MEMBERS", members.join(" "))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "pki.sh: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        dir
    }

    /// Starts `o7sd` in side `s` with `config` (text).
    pub fn daemon(&self, s: &str, config: &str) -> Daemon {
        self.daemon_in(s, s, config)
    }

    /// Starts `o7sd` in side `ns`'s namespace with its runtime directory `rundir`.
    pub fn daemon_in(&self, ns: &str, s: &str, config: &str) -> Daemon {
        self.daemon_with(ns, s, config, &[])
    }

    /// As [`Topo::daemon_in`], with extra `o7sd` arguments.
    pub fn daemon_with(&self, ns: &str, s: &str, config: &str, extra: &[&str]) -> Daemon {
        self.daemon_logged(ns, s, config, extra, &format!("o7sd-{s}.log"))
    }

    /// As [`Topo::daemon_with`], logging to `log` in the test's directory (a second o7sd of
    /// the same side keeps the first one's log).
    pub fn daemon_logged(
        &self,
        ns: &str,
        s: &str,
        config: &str,
        extra: &[&str],
        log: &str,
    ) -> Daemon {
        self.daemon_cmd(s, config, extra, log, self.cmd_in(ns, s, &bin("o7sd")))
    }

    /// As [`Topo::daemon`] with `PATH` set to `path` (see [`Topo::cmd_path`]).
    pub fn daemon_path(&self, s: &str, config: &str, path: &str) -> Daemon {
        let cmd = self.cmd_path(s, s, &bin("o7sd"), path);
        self.daemon_cmd(s, config, &[], &format!("o7sd-{s}.log"), cmd)
    }

    fn daemon_cmd(
        &self,
        s: &str,
        config: &str,
        extra: &[&str],
        log: &str,
        mut cmd: Command,
    ) -> Daemon {
        let conf = self.dir.join(format!("{s}.conf"));
        std::fs::write(&conf, config).unwrap();
        let log = self.dir.join(log);
        let child = cmd
            .arg("--config")
            .arg(&conf)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let sock = self.rundir(s).join("o7sd.sock");
        let start = Instant::now();
        while !sock.exists() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            sock.exists(),
            "o7sd did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // Let the configuration be applied (ports up, names registered).
        let start = Instant::now();
        let has_ipcp = ["[eth-", "[udp"].iter().any(|t| config.contains(t));
        while has_ipcp && start.elapsed() < Duration::from_secs(5) {
            let l = std::fs::read_to_string(&log).unwrap_or_default();
            if l.contains("Bootstrapped") || l.contains("ERROR") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        Daemon {
            child: Some(child),
            log,
        }
    }

    /// Runs `o7sctl ARGS --json` in side `s` and parses the listing.
    pub fn ctl_json(&self, s: &str, args: &[&str]) -> Vec<serde_json::Value> {
        self.ctl_json_in(s, s, args)
    }

    /// As [`Topo::ctl_json`] for the daemon of `rundir` in side `ns`'s namespace.
    pub fn ctl_json_in(&self, ns: &str, rundir: &str, args: &[&str]) -> Vec<serde_json::Value> {
        let o = self
            .cmd_in(ns, rundir, &bin("o7sctl"))
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "o7sctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        match serde_json::from_slice(&o.stdout).unwrap() {
            serde_json::Value::Array(a) => a,
            other => panic!("not a listing: {other}"),
        }
    }

    /// Runs oping in side `s` with `args` plus `--json` and returns its summary and status.
    pub fn oping(&self, s: &str, args: &[&str]) -> (serde_json::Value, Output) {
        self.oping_in(s, s, args)
    }

    /// As [`Topo::oping`] for the daemon of `rundir` in side `ns`'s namespace.
    pub fn oping_in(&self, ns: &str, rundir: &str, args: &[&str]) -> (serde_json::Value, Output) {
        let o = self
            .cmd_in(ns, rundir, &bin("oping"))
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .to_string();
        (
            serde_json::from_str(&line).unwrap_or(serde_json::Value::Null),
            o,
        )
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for ns in &self.spaces {
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for p in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    if let Ok(pid) = p.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(ns));
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("test files kept in {}", self.dir.display());
        }
    }
}

/// A running `o7sd`; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// Its log file.
    pub log: PathBuf,
}

impl Daemon {
    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `ip netns exec`'s pid is the daemon's (exec replaces it).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGKILL (a crash) and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM and wait (up to 10 s); returns whether it exited by itself.
    pub fn stop(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return true;
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns `cmd` with its stderr piped and waits (up to 10 s) for a stderr line that
/// contains `marker` (o7sctl capture says "capturing on ..." once it runs).
pub fn spawn_ready_line(cmd: &mut Command, marker: &str) -> Child {
    use std::io::BufRead;
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let m = marker.to_string();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(err);
        let mut seen = String::new();
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            seen.push_str(&line);
            if line.contains(&m) {
                let _ = tx.send(Ok(()));
                break;
            }
            line.clear();
        }
        let _ = tx.send(Err(seen));
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => child,
        other => panic!("{cmd:?} did not say '{marker}': {other:?}"),
    }
}

/// [`spawn_ready_line`], and what `cmd` writes to stderr after the marker, sent when it
/// closes stderr (ends).
pub fn spawn_ready_line_rest(
    cmd: &mut Command,
    marker: &str,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    use std::io::{BufRead, Read};
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (rest_tx, rest_rx) = std::sync::mpsc::channel();
    let m = marker.to_string();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(err);
        let mut seen = String::new();
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            seen.push_str(&line);
            if line.contains(&m) {
                let _ = tx.send(Ok(()));
                let mut rest = String::new();
                let _ = r.read_to_string(&mut rest);
                let _ = rest_tx.send(rest);
                return;
            }
            line.clear();
        }
        let _ = tx.send(Err(seen));
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => (child, rest_rx),
        other => panic!("{cmd:?} did not say '{marker}': {other:?}"),
    }
}

/// Spawns `cmd` with its stderr piped and waits (up to 10 s) until it says "ready" there
/// (o7s-inject does once its socket is open): no fixed sleep before the traffic.
pub fn spawn_ready(cmd: &mut Command) -> Child {
    use std::io::BufRead;
    let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = std::io::BufReader::new(err);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    });
    let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
    assert_eq!(line.trim(), "ready", "{cmd:?} did not get ready");
    child
}

impl Topo {
    /// Waits (up to 10 s) until a process accepts flows for `name` at the daemon of
    /// `rundir` in side `ns`.
    pub fn wait_accepting(&self, ns: &str, rundir: &str, name: &str) {
        let ok = eventually(Duration::from_secs(10), || {
            self.ctl_json_in(ns, rundir, &["name", "list"])
                .iter()
                .any(|n| n["name"] == name && n["accepting"].as_u64().unwrap_or(0) >= 1)
        });
        assert!(ok, "nobody accepts flows for {name}");
    }
}

/// Writes `text` to `path` with file mode `mode` (0o755 for a script).
pub fn write_file(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The anonymous resident memory of process `pid` in KiB (RssAnon: heap, stacks; not the
/// pages of its executable, which grow as new code paths run).
pub fn anon_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// A system user made for one test (useradd), removed on drop (also when the test fails).
#[derive(Debug)]
pub struct TestUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

impl TestUser {
    /// Creates a user with no home and no login shell.
    pub fn create() -> TestUser {
        let name = unique("o7st");
        let o = sh(&[
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            &name,
        ]);
        assert!(
            o.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let u = nix::unistd::User::from_name(&name).unwrap().unwrap();
        TestUser {
            name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }
    }

    /// `prog` run as this user in side `ns` of `t`, talking to the daemon of `rundir`.
    pub fn cmd(&self, t: &Topo, ns: &str, rundir: &str, prog: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &t.ns(ns)])
            .args([
                "setpriv",
                "--reuid",
                &self.uid.to_string(),
                "--regid",
                &self.gid.to_string(),
                "--clear-groups",
            ])
            .arg("env")
            .arg(format!("O7S_RUNDIR={}", t.rundir(rundir).display()))
            .arg(format!(
                "PATH={}:{}",
                bin_dir().display(),
                std::env::var("PATH").unwrap_or_default()
            ))
            .arg(prog);
        c
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// Waits until `f` holds or `t` passes.
pub fn eventually(t: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < t {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Runs a one-way ocbr flow (2 Mbit/s of 200-byte SDUs for 4 s, peer timeout 1 s) from the
/// daemon `client` (namespace side, runtime directory) to the daemon `server` and checks
/// that it outlives its timeout on keepalives: mid-run both ends are up, the server's end
/// (which only receives) has sent keepalives, the client's end has counted them without
/// handing them to its app and sent none itself; at the end every SDU arrived.
pub fn one_way_flow_on_keepalives(
    t: &Topo,
    server: (&str, &str),
    client: (&str, &str),
    server_log: &dyn Fn() -> String,
) {
    let mut srv = t
        .cmd_in(server.0, server.1, &bin("ocbr"))
        .args(["-l", "--json", "--flows", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting(server.0, server.1, "ocbr");
    let cl = t
        .cmd_in(client.0, client.1, &bin("ocbr"))
        .args(["-n", "ocbr", "--json", "-s", "200", "-r", "2M", "-d", "4"])
        .args(["--peer-timeout", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-run: wait until the quiet server end has sent 8 keepalives (two timeouts' worth)
    // and the client has got them, while the client keeps sending.
    let enough = eventually(Duration::from_secs(3), || {
        let n = |side: (&str, &str), k: &str| {
            t.ctl_json_in(side.0, side.1, &["flow", "list"])
                .first()
                .and_then(|f| f[k].as_u64())
                .unwrap_or(0)
        };
        n(server, "tx_keepalives") >= 8 && n(client, "rx_keepalives") >= 8
    });
    assert!(
        enough,
        "fewer than 8 keepalives within 3 s\n{}",
        server_log()
    );
    let flow = |side: (&str, &str)| {
        t.ctl_json_in(side.0, side.1, &["flow", "list"])
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{side:?}: the flow is gone (timed out?)\n{}", server_log()))
    };
    let (fc, fs) = (flow(client), flow(server));
    assert_eq!(fc["state"], "up", "{fc}");
    assert_eq!(fs["state"], "up", "{fs}");
    assert!(fs["tx_keepalives"].as_u64().unwrap() >= 8, "{fs}");
    assert!(fc["rx_keepalives"].as_u64().unwrap() >= 8, "{fc}");
    assert_eq!(
        fc["rx_sdus"], 0,
        "keepalives are not SDUs for the app: {fc}"
    );
    assert_eq!(
        fc["tx_keepalives"], 0,
        "the client sends data, no keepalives: {fc}"
    );
    // The keepalives are frames on the wire: the server's port counts them as sent.
    let ps = t
        .ctl_json_in(server.0, server.1, &["port", "list"])
        .remove(0);
    assert!(
        ps["tx_frames"].as_u64().unwrap() >= fs["tx_keepalives"].as_u64().unwrap(),
        "{ps} {fs}"
    );
    let out = cl.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ocbr client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: serde_json::Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or(""),
    )
    .unwrap();
    let start = Instant::now();
    while !matches!(srv.try_wait(), Ok(Some(_))) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = srv.kill();
    let sout = srv.wait_with_output().unwrap();
    let s: serde_json::Value = String::from_utf8_lossy(&sout.stdout)
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no server report\n{}", server_log()));
    assert!(c["sent"].as_u64().unwrap() > 4000, "{c}");
    assert_eq!(c["sent"], s["received"], "{c} {s}");
}
