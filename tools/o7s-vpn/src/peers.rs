//! `--peer NAME=PREFIX`, several times: one TUN device, one flow per peer, and a routing
//! table (src/routes.rs) that sends each packet read from the device on the flow of the
//! peer whose prefix holds its destination (longest prefix first). Each peer's flow (one
//! per name, whatever the number of its prefixes) is allocated on its own thread, read on
//! it, and allocated again when it ends; packets for no prefix, or for a peer whose flow
//! is not up, are dropped and counted. The device's MTU is the smallest largest-SDU of the
//! flows so far.

use crate::pump::{self, Sent};
use crate::routes::{destination, first_of_name, PeerArg, Routes};
use crate::tun::Tun;
use crate::{Cli, Stats, MIN_MTU, TICK};
use o7s::flow::Flow;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// A peer and its flow while it is up.
struct Peer<'a> {
    arg: &'a PeerArg,
    flow: RwLock<Option<Arc<Flow>>>,
}

/// What the peers' threads share.
struct Shared<'a> {
    cli: &'a Cli,
    tun: &'a Tun,
    stats: &'a Stats,
    stop: &'a AtomicBool,
    /// The device's MTU once set.
    mtu: Mutex<Option<usize>>,
    failed: AtomicBool,
}

impl Shared<'_> {
    /// Sleeps up to `t`, waking early when stopped.
    fn pause(&self, t: Duration) {
        let until = Instant::now() + t;
        while !self.stop.load(Ordering::Relaxed) && Instant::now() < until {
            std::thread::sleep(TICK.min(until.saturating_duration_since(Instant::now())));
        }
    }

    fn fail(&self, why: &str) {
        eprintln!("o7s-vpn: {why}");
        self.failed.store(true, Ordering::Relaxed);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Lowers the device's MTU to `mtu` (sets it the first time); false if it failed.
    fn fit_mtu(&self, mtu: usize) -> bool {
        let Ok(mut cur) = self.mtu.lock() else {
            return false;
        };
        if cur.is_some_and(|c| c <= mtu) {
            return true;
        }
        let m = u32::try_from(mtu).unwrap_or(u32::MAX);
        if let Err(e) = self.tun.configure(self.cli.ip(), self.cli.mask(), m) {
            drop(cur);
            self.fail(&format!("configuring {}: {e}", self.tun.name()));
            return false;
        }
        *cur = Some(mtu);
        true
    }

    /// Allocates, serves and allocates again the flow of `peer` until stopped.
    fn serve(&self, peer: &Peer<'_>) {
        let (name, prefix) = (&peer.arg.name, peer.arg.prefix);
        let timeout = Duration::from_secs(self.cli.alloc_timeout_s);
        let mut last_error = String::new();
        while !self.stop.load(Ordering::Relaxed) {
            let mut flow = match Flow::alloc(name, self.cli.qos(), timeout) {
                Ok(f) => f,
                Err(e) => {
                    let e = e.to_string();
                    if e != last_error {
                        eprintln!(
                            "o7s-vpn: peer {name} ({prefix}): allocating a flow: {e}; trying again each second"
                        );
                        last_error = e;
                    }
                    self.pause(Duration::from_secs(1));
                    continue;
                }
            };
            last_error.clear();
            let mtu = flow.info().mtu.min(pump::MAX_PACKET);
            if mtu < MIN_MTU {
                return self.fail(&format!(
                    "peer {name}: the flow's largest SDU is {mtu} bytes, below IPv4's smallest MTU ({MIN_MTU})"
                ));
            }
            if !self.fit_mtu(mtu) {
                return;
            }
            flow.set_read_timeout(Some(TICK));
            let flow = Arc::new(flow);
            let info = flow.info();
            self.stats.flows.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "o7s-vpn: tunnel up: {} {}/{} peer {name} ({prefix}) over flow {} (layer {}, MTU {mtu})",
                self.tun.name(),
                self.cli.ip(),
                u32::from(self.cli.mask()).count_ones(),
                info.id,
                info.layer,
            );
            if let Ok(mut f) = peer.flow.write() {
                *f = Some(flow.clone());
            }
            let why = pump::from_flow(self.tun, &flow, self.stats, &|| {
                self.stop.load(Ordering::Relaxed)
            });
            if let Ok(mut f) = peer.flow.write() {
                *f = None;
            }
            eprintln!("o7s-vpn: peer {name}: flow {} ended: {why}", flow.info().id);
            if self.cli.once {
                self.stop.store(true, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Where a packet read from the device goes.
    fn route(&self, routes: &Routes, peers: &[Peer<'_>], p: &[u8]) -> Sent {
        let Some(i) = destination(p).and_then(|d| routes.lookup(d)) else {
            self.stats.tx_no_route.fetch_add(1, Ordering::Relaxed);
            return Sent::Dropped;
        };
        let flow = peers
            .get(i)
            .and_then(|peer| peer.flow.read().ok().and_then(|f| f.clone()));
        let Some(flow) = flow else {
            self.stats.tx_peer_down.fetch_add(1, Ordering::Relaxed);
            return Sent::Dropped;
        };
        // A flow that just ended: its reader finds out and allocates again.
        pump::to_flow(&flow, p).unwrap_or_else(|_| {
            self.stats.tx_peer_down.fetch_add(1, Ordering::Relaxed);
            Sent::Dropped
        })
    }
}

/// Runs the peers' flows and the device until stopped (or a failure).
pub fn run(cli: &Cli, routes: &Routes, tun: &Tun, stats: &Stats, stop: &AtomicBool) -> ExitCode {
    let sh = Shared {
        cli,
        tun,
        stats,
        stop,
        mtu: Mutex::new(None),
        failed: AtomicBool::new(false),
    };
    let peers: Vec<Peer<'_>> = cli
        .peer
        .iter()
        .map(|arg| Peer {
            arg,
            flow: RwLock::new(None),
        })
        .collect();
    std::thread::scope(|s| {
        // One flow per name: an entry repeating a name only adds a prefix to it.
        for (k, p) in peers.iter().enumerate() {
            if first_of_name(&cli.peer, k) == k {
                let sh = &sh;
                s.spawn(move || sh.serve(p));
            }
        }
        let why = pump::from_tun(tun, stats, &|| stop.load(Ordering::Relaxed), &mut |p| {
            Ok(sh.route(routes, &peers, p))
        });
        if !stop.swap(true, Ordering::Relaxed) {
            sh.fail(&why);
        }
    });
    if sh.failed.load(Ordering::Relaxed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
