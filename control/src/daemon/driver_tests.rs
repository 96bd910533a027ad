//! o7sd's driver on a fake data plane, without namespaces: the test is the data plane (the
//! other end of o7sd's channel to it) and the peer (an `o7s_proto::shim::Shim` of its own,
//! with a MAC and endpoint ids other than o7sd's, answering OAP as a server does). What
//! o7sd sends its data plane is read from the channel; the management frames among it go
//! to the peer's machine, and the peer's answers come back through `Daemon::on_dp_message`, as
//! the events thread hands them over. The loop's steps (`protocol_turn`, `alloc_poll`)
//! are called by the test.
//!
//! - a flow allocated: name query, FLOW_REQ, FLOW_REPLY, the data plane's installation;
//! - a flow accepted: a FLOW_REQ served to a process in accept, FLOW_REPLY after the
//!   installation is acknowledged;
//! - an o7sctl request that waits on the data plane while an allocation goes on: neither
//!   waits for the other.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use crate::config::IpcpKind;
use crate::daemon::alloc::Step;
use crate::daemon::event_loop::{Conn, Doing};
use crate::daemon::Owner;
use crate::eth::EthIpcp;
use o7s::ipc::{Channel, PeerCred};
use o7s::proto::{Ctl, Reply};
use o7s_abi::msg::{DpStats, FromDp, PortKind, ToDp};
use o7s_proto::mgmt::Peer;
use o7s_proto::oap;
use o7s_proto::shim::{Event, Shim, ShimConfig};
use o7s_wire::hash::HashAlgo;
use o7s_wire::oap::{OapHdr, Role};
use o7s_wire::qos::QosSpec;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const PORT: u32 = 7;
const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0a];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x0b];
/// The process in accept: one that lives (o7sd's own pid would mark the flow as o7sd's).
const ACCEPTOR: i32 = 1;
const KIND: PortKind = PortKind::Dix { ethertype: 0xa000 };

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn cred() -> PeerCred {
    PeerCred {
        pid: std::process::id() as i32,
        uid: 0,
        gid: 0,
    }
}

/// o7sd with one eth-dix IPCP `e1` (layer `wire`) up on port 7, and its data plane's end.
fn daemon() -> (Owner, Channel) {
    let (d, dp) = crate::daemon::fake_daemon();
    let mut i = EthIpcp::new(
        "e1",
        "wire",
        IpcpKind::EthDix,
        KIND,
        "veth-test",
        HashAlgo::Sha3_256,
        PORT,
    );
    i.mtu = 1500;
    i.up = true;
    i.set_mac(OUR_MAC);
    d.st().ipcps.push(i);
    (d, dp)
}

/// The peer: a shim machine on the same segment.
fn peer(registered: Option<&str>) -> Shim {
    let mut cfg = ShimConfig::new(crate::eth::shim_kind(KIND), HashAlgo::Sha3_256.len());
    cfg.cache_ttl = Duration::from_secs(60);
    let mut s = Shim::new(cfg, Some(PEER_MAC));
    if let Some(n) = registered {
        s.register(HashAlgo::Sha3_256.hash(n));
    }
    // The two lowest ids are taken (flows of its own): the peer's next flow's id is not
    // the one o7sd gives its first.
    let (lo, _) = crate::eth::shim_kind(KIND).eid_range();
    assert!(s.adopt_eid(lo) && s.adopt_eid(lo + 1));
    s
}

/// The data plane's side of the channel: what o7sd sent, in order.
struct Wire {
    dp: Channel,
}

impl Wire {
    /// The next message o7sd sent its data plane (within 2 s).
    fn next(&self) -> ToDp {
        self.dp
            .recv_timeout::<ToDp>(Some(Duration::from_secs(2)))
            .unwrap_or_else(|e| panic!("o7sd sent its data plane nothing in 2 s: {e}"))
            .0
    }

    /// The next management frame o7sd sent, handed to the peer's machine.
    fn to_peer(&self, p: &mut Shim) -> [u8; 6] {
        match self.next() {
            ToDp::SendMgmt { port, dst, payload } => {
                assert_eq!(port, PORT);
                p.handle(Instant::now(), Peer::Mac(OUR_MAC), Some(dst), &payload);
                dst
            }
            other => panic!("a management frame expected, o7sd sent {other:?}"),
        }
    }
}

/// What the peer's machine sends, given to o7sd as its events thread does (into the
/// loop's queue), then one turn of the loop's protocol work.
fn from_peer(d: &Owner, p: &mut Shim) -> usize {
    let mut n = 0;
    while let Some(t) = p.poll_transmit() {
        let Peer::Mac(dst) = t.dst else {
            panic!("an eth peer sends to MACs");
        };
        let payload = t.msg.build(crate::eth::shim_kind(KIND));
        d.on_dp_message(FromDp::Mgmt {
            port: PORT,
            src: PEER_MAC,
            dst,
            payload,
        });
        n += 1;
    }
    d.protocol_turn(Instant::now());
    n
}

/// The peer answers a FLOW_REQ it got as an OAP server without encryption would; returns
/// the endpoint id it took.
fn peer_serves(p: &mut Shim) -> u32 {
    let mut taken = None;
    while let Some(e) = p.poll_event() {
        if let Event::Incoming { req, oap: raw, .. } = e {
            let h = OapHdr::parse_as(&raw, Role::Request, 0).unwrap();
            let rng = ring::rand::SystemRandom::new();
            let (resp, key) = oap::server_key(None, &h, &raw, now_ns(), &rng).unwrap();
            assert!(key.is_none());
            let eid = p.take_eid(req).unwrap();
            p.reply(Instant::now(), req, resp.to_bytes().unwrap())
                .unwrap();
            taken = Some(eid);
        }
    }
    taken.expect("the peer got no FLOW_REQ")
}

/// Polls an allocation until it is no longer waiting for the peer (at most 50 polls).
fn poll_past_peer(d: &Owner, mut step: Step) -> Step {
    for _ in 0..50 {
        match step {
            Step::Pending(job) if !job.installing() => {
                std::thread::sleep(Duration::from_millis(2));
                step = d.alloc_poll(job, Instant::now());
            }
            other => return other,
        }
    }
    step
}

/// Runs an allocation of `srv` by process 4242 against the peer up to its installation:
/// returns the job waiting for the data plane, the AddFlow's (flow, local, remote) and the
/// peer's endpoint id.
fn allocate_to_install(d: &Owner, w: &Wire, p: &mut Shim) -> (Step, (u64, u32, u32), u32) {
    let step = d.alloc_start(
        "srv",
        QosSpec::RAW,
        Duration::from_secs(5),
        4242,
        Instant::now(),
    );
    assert!(matches!(step, Step::Pending(_)), "{step:?}");
    // The name query, broadcast; the peer answers it.
    assert_eq!(w.to_peer(p), [0xff; 6]);
    assert_eq!(from_peer(d, p), 1);
    // The answer moves the job on: the FLOW_REQ goes to the peer, who serves it.
    let step = poll_past_peer(d, step);
    assert_eq!(w.to_peer(p), PEER_MAC);
    let peer_eid = peer_serves(p);
    assert_eq!(from_peer(d, p), 1);
    let step = poll_past_peer(d, step);
    let Step::Pending(ref job) = step else {
        panic!("the allocation ended before its installation: {step:?}");
    };
    assert!(job.installing());
    let add = match w.next() {
        ToDp::AddFlow {
            flow,
            port,
            local,
            remote,
            peer,
            pid,
            ..
        } => {
            assert_eq!((port, peer, pid), (PORT, PEER_MAC, 4242));
            (flow, local, remote)
        }
        other => panic!("AddFlow expected, o7sd sent {other:?}"),
    };
    (step, add, peer_eid)
}

/// Name `srv`, bound to process [`ACCEPTOR`], registered in `e1` (through o7sctl's requests).
fn register_srv(d: &Owner) {
    let c = cred();
    for ctl in [
        Ctl::NameCreate {
            name: "srv".into(),
            lb: None,
        },
        Ctl::BindProcess {
            pid: ACCEPTOR,
            name: "srv".into(),
        },
        Ctl::NameRegister {
            name: "srv".into(),
            targets: vec!["e1".into()],
        },
    ] {
        assert!(matches!(d.ctl(ctl, &c, None), Reply::Ok));
    }
}

/// The peer sends a FLOW_REQ for `srv` with an OAP request; o7sd takes it (one turn).
/// Returns the OAP request and the peer's endpoint id.
fn peer_requests(d: &Owner, p: &mut Shim) -> (Vec<u8>, u32) {
    let rng = ring::rand::SystemRandom::new();
    let (req, _) = oap::client_request([7; 16], now_ns(), None, &rng).unwrap();
    let req = req.to_bytes().unwrap();
    let hash = HashAlgo::Sha3_256.hash("srv");
    let (_, peer_eid) = p
        .alloc(
            Instant::now(),
            Peer::Mac(OUR_MAC),
            &hash,
            QosSpec::RAW,
            &req,
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(from_peer(d, p), 1);
    (req, peer_eid)
}

#[test]
fn a_flow_is_allocated_through_the_peers_machine_and_the_data_planes_acknowledgement() {
    let (d, dp) = daemon();
    let w = Wire { dp };
    let mut p = peer(Some("srv"));
    let (step, (flow, local, remote), peer_eid) = allocate_to_install(&d, &w, &mut p);
    // The data plane is asked for o7sd's id here and the peer's there (they differ).
    assert_eq!(remote, peer_eid);
    assert_ne!(local, remote);
    // Not done until the data plane says so.
    let Step::Pending(job) = d.alloc_poll(
        match step {
            Step::Pending(j) => j,
            Step::Done(r) => panic!("{r:?}"),
        },
        Instant::now(),
    ) else {
        panic!("done without the data plane's acknowledgement");
    };
    assert_eq!(d.counters.flows.load(Ordering::Relaxed), 0);
    assert!(d.dp.route(FromDp::FlowAdded { flow }).is_none());
    let acc = match d.alloc_poll(job, Instant::now()) {
        Step::Done(Ok(acc)) => acc,
        other => panic!("{other:?}"),
    };
    assert_eq!((acc.flow, acc.info.name.as_str()), (flow, "srv"));
    assert_eq!((acc.info.layer.as_str(), acc.info.mtu), ("wire", 1500));
    assert_eq!(d.counters.flows.load(Ordering::Relaxed), 1);
    let st = d.st();
    let rec = &st.flows[&flow];
    assert_eq!(
        (u64::from(local), rec.remote),
        (rec.local, u64::from(peer_eid))
    );
    assert_eq!(rec.peer, Peer::Mac(PEER_MAC));
}

#[test]
fn a_flow_request_is_served_to_the_process_in_accept_once_the_data_plane_has_the_flow() {
    let (d, dp) = daemon();
    let w = Wire { dp };
    register_srv(&d);
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (_, names) = d.st().reg.accept_as(ACCEPTOR, 0, None, tx);
    assert_eq!(names, vec!["srv".to_string()]);
    // The peer asks for a flow to srv.
    let mut p = peer(None);
    let (req, peer_eid) = peer_requests(&d, &mut p);
    // Served: the data plane is asked to install the flow; no FLOW_REPLY before that.
    let (flow, local) = match w.next() {
        ToDp::AddFlow {
            flow,
            port,
            local,
            remote,
            peer,
            pid,
            ..
        } => {
            assert_eq!(
                (port, remote, peer, pid),
                (PORT, peer_eid, PEER_MAC, ACCEPTOR)
            );
            (flow, local)
        }
        other => panic!("AddFlow expected, o7sd sent {other:?}"),
    };
    assert_ne!(local, peer_eid);
    d.protocol_turn(Instant::now());
    assert!(
        rx.try_recv().is_err(),
        "handed over before the installation"
    );
    assert!(w
        .dp
        .recv_timeout::<ToDp>(Some(Duration::from_millis(50)))
        .is_err());
    // Acknowledged: the process gets the flow, the peer the FLOW_REPLY from o7sd's id.
    assert!(d.dp.route(FromDp::FlowAdded { flow }).is_none());
    d.protocol_turn(Instant::now());
    let acc = rx.try_recv().unwrap();
    assert_eq!((acc.flow, acc.info.name.as_str()), (flow, "srv"));
    assert_eq!(w.to_peer(&mut p), PEER_MAC);
    let mut up = None;
    while let Some(e) = p.poll_event() {
        if let Event::Allocated {
            local: l,
            remote: r,
            oap: resp,
            ..
        } = e
        {
            oap::check_response(&req, &resp).unwrap();
            up = Some((l, r));
        }
    }
    assert_eq!(up, Some((peer_eid, local)));
    assert_eq!(d.counters.flows.load(Ordering::Relaxed), 1);
}

#[test]
fn an_admin_request_waiting_on_the_data_plane_and_an_allocation_do_not_wait_for_each_other() {
    let (d, dp) = daemon();
    let w = Wire { dp };
    // `ipcp list` asks the data plane for its counters, which do not come yet.
    let (tx, rx) = std::sync::mpsc::channel();
    let admin = {
        // The admin thread: it waits for the data plane, then posts its step for the loop.
        let d = d.daemon().clone();
        std::thread::spawn(move || {
            let _ = tx.send(d.serve(Ctl::IpcpList, &cred()));
        })
    };
    assert!(matches!(w.next(), ToDp::Stats));
    // Meanwhile a whole allocation goes through the driver.
    let mut p = peer(Some("srv"));
    let (step, (flow, ..), _) = allocate_to_install(&d, &w, &mut p);
    assert!(d.dp.route(FromDp::FlowAdded { flow }).is_none());
    let Step::Pending(job) = step else {
        panic!("{step:?}")
    };
    assert!(matches!(
        d.alloc_poll(job, Instant::now()),
        Step::Done(Ok(_))
    ));
    // The admin request still waits; answered, it shows the IPCP and its state.
    assert!(rx.try_recv().is_err());
    assert_eq!(d.serve_inbox(), 0);
    assert!(d.dp.route(FromDp::Stats(DpStats::default())).is_none());
    // The loop's turns: the admin thread's step comes once the counters have.
    let t0 = Instant::now();
    let r = loop {
        d.serve_inbox();
        if let Ok(r) = rx.try_recv() {
            break r;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no answer");
        std::thread::sleep(Duration::from_millis(1));
    };
    admin.join().unwrap();
    let Reply::Table { rows } = r else {
        panic!("{r:?}")
    };
    let e1 = rows.iter().find(|r| r["name"] == "e1").unwrap();
    assert_eq!(
        (e1["state"].as_str(), e1["layer"].as_str()),
        (Some("up"), Some("wire"))
    );
}

/// An IPCP's and its layer's names from o7sctl meet the limits a config file's do: a line
/// feed in one would forge lines in the logs, the listings and the metrics.
#[test]
fn ipcp_and_layer_names_with_control_characters_are_refused() {
    let (d, _dp) = daemon();
    let bad = "u\nfake_metric 1";
    for c in [
        Ctl::IpcpCreate {
            name: bad.into(),
            kind: "unicast".into(),
        },
        Ctl::IpcpBootstrap {
            name: "u".into(),
            layer: bad.into(),
            settings: Default::default(),
        },
        Ctl::IpcpEnroll {
            name: "u".into(),
            dst: bad.into(),
            autobind: false,
        },
    ] {
        let r = d.serve(c.clone(), &cred());
        assert!(
            matches!(&r, Reply::Error { code: o7s::proto::ErrorCode::Invalid, message }
                if message.contains("control characters")),
            "{c:?}: {r:?}"
        );
    }
    assert!(
        d.st().ipcps.iter().all(|i| i.name != bad),
        "nothing was created"
    );
}

/// A metrics scrape reads five listings; four of them show the data plane's counters,
/// which it asks for once (every worker walks its flows and ports for it), not four times
/// (each of which could wait 2 s for a data plane that does not answer).
#[test]
fn a_metrics_scrape_asks_the_data_plane_for_its_counters_once() {
    let (d, dp) = daemon();
    let w = Wire { dp };
    let (tx, rx) = std::sync::mpsc::channel();
    let scraper = {
        let d = d.daemon().clone();
        std::thread::spawn(move || {
            let shared = crate::daemon::Shared::default();
            let _ = tx.send(crate::metrics::render(&|c| d.view_sharing(c, &shared)));
        })
    };
    assert!(matches!(w.next(), ToDp::Stats));
    assert!(d.dp.route(FromDp::Stats(DpStats::default())).is_none());
    let t0 = Instant::now();
    let text = loop {
        d.serve_inbox();
        if let Ok(r) = rx.try_recv() {
            break r;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "no scrape");
        std::thread::sleep(Duration::from_millis(1));
    };
    scraper.join().unwrap();
    assert!(text.contains("o7s_ipcp_up{name=\"e1\""), "{text}");
    // Nothing more went to the data plane: no second request for its counters.
    assert!(w
        .dp
        .recv_timeout::<ToDp>(Some(Duration::from_millis(100)))
        .is_err());
}

#[test]
fn management_frames_past_the_loops_queue_are_counted_and_the_rest_taken_a_turns_worth_at_a_time() {
    use super::from_dp::{MAX_MGMT_QUEUE, MGMT_PER_TURN};
    let (d, _dp) = daemon();
    let frame = || FromDp::Mgmt {
        port: PORT,
        src: PEER_MAC,
        dst: OUR_MAC,
        // Not a management message.
        payload: vec![0xee; 3],
    };
    for _ in 0..MAX_MGMT_QUEUE + 3 {
        d.on_dp_message(frame());
    }
    assert_eq!(d.counters.mgmt_queue_full.load(Ordering::Relaxed), 3);
    // Nothing reached the machine yet: the events thread only queues.
    assert_eq!(d.counters.mgmt_malformed.load(Ordering::Relaxed), 0);
    let mut turns = 0;
    while d.take_from_dp(Instant::now()) {
        turns += 1;
        assert_eq!(
            d.counters.mgmt_malformed.load(Ordering::Relaxed),
            (turns * MGMT_PER_TURN) as u64
        );
    }
    assert_eq!(turns, MAX_MGMT_QUEUE / MGMT_PER_TURN);
    assert_eq!(
        d.counters.mgmt_malformed.load(Ordering::Relaxed),
        MAX_MGMT_QUEUE as u64
    );
    // Room again.
    d.on_dp_message(frame());
    assert_eq!(d.counters.mgmt_queue_full.load(Ordering::Relaxed), 3);
}

#[test]
fn a_process_whose_accept_times_out_while_its_flow_is_installed_still_gets_the_flow() {
    use super::event_loop::{Conn, Doing};
    let (d, dp) = daemon();
    let w = Wire { dp };
    register_srv(&d);
    // A process in accept (as `oping -l` or `ocbr -l` waits: a second at a time), its
    // connection parked in the loop.
    let (ours, app) = Channel::pair().unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (id, _) = d.st().reg.accept_as(ACCEPTOR, 0, None, tx);
    let t0 = Instant::now();
    let mut open = std::collections::HashMap::new();
    open.insert(
        9,
        Conn {
            ch: ours,
            slot: None,
            doing: Doing::Parked {
                id,
                rx,
                deadline: Some(t0 + Duration::from_secs(1)),
            },
        },
    );
    // The request comes just before the accept's second is up; its flow is being
    // installed when the second is over.
    let mut p = peer(None);
    peer_requests(&d, &mut p);
    let flow = match w.next() {
        ToDp::AddFlow { flow, .. } => flow,
        other => panic!("AddFlow expected, o7sd sent {other:?}"),
    };
    let late = t0 + Duration::from_millis(1001);
    d.tend(&mut open, late, &mut vec![]);
    assert!(
        matches!(open.get(&9).map(|c| &c.doing), Some(Doing::Parked { .. })),
        "the accept ended while its flow was being installed"
    );
    // Installed: the flow goes to the process, the FLOW_REPLY to the peer.
    assert!(d.dp.route(FromDp::FlowAdded { flow }).is_none());
    d.protocol_turn(Instant::now());
    d.tend(&mut open, late + Duration::from_millis(1), &mut vec![]);
    assert!(
        matches!(open.get(&9).map(|c| &c.doing), Some(Doing::Held { flow: f }) if *f == flow),
        "{:?}",
        open.get(&9).map(|c| &c.doing)
    );
    let (r, fds) = app
        .recv_timeout::<Reply>(Some(Duration::from_secs(1)))
        .unwrap();
    assert!(matches!(r, Reply::Flow(ref i) if i.id == flow), "{r:?}");
    assert_eq!(fds.len(), 3);
    assert_eq!(w.to_peer(&mut p), PEER_MAC);
    assert!(d.st().flows.contains_key(&flow));
}

#[test]
fn an_accept_that_times_out_with_no_flow_coming_ends_with_a_timeout() {
    use super::event_loop::{Conn, Doing};
    let (d, _dp) = daemon();
    register_srv(&d);
    let (ours, app) = Channel::pair().unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (id, _) = d.st().reg.accept_as(ACCEPTOR, 0, None, tx);
    let t0 = Instant::now();
    let mut open = std::collections::HashMap::new();
    open.insert(
        9,
        Conn {
            ch: ours,
            slot: None,
            doing: Doing::Parked {
                id,
                rx,
                deadline: Some(t0 + Duration::from_secs(1)),
            },
        },
    );
    d.tend(&mut open, t0 + Duration::from_millis(999), &mut vec![]);
    assert!(open.contains_key(&9));
    d.tend(&mut open, t0 + Duration::from_millis(1000), &mut vec![]);
    assert!(!open.contains_key(&9));
    let (r, _) = app
        .recv_timeout::<Reply>(Some(Duration::from_secs(1)))
        .unwrap();
    assert!(
        matches!(
            r,
            Reply::Error {
                code: o7s::proto::ErrorCode::Timeout,
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn an_accept_kept_for_an_installation_that_fails_times_out_at_its_next_deadline() {
    use super::event_loop::{Conn, Doing};
    let (d, dp) = daemon();
    let w = Wire { dp };
    register_srv(&d);
    let (ours, app) = Channel::pair().unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (id, _) = d.st().reg.accept_as(ACCEPTOR, 0, None, tx);
    let t0 = Instant::now();
    let mut open = std::collections::HashMap::new();
    open.insert(
        9,
        Conn {
            ch: ours,
            slot: None,
            doing: Doing::Parked {
                id,
                rx,
                deadline: Some(t0 + Duration::from_secs(1)),
            },
        },
    );
    let mut p = peer(None);
    peer_requests(&d, &mut p);
    let flow = match w.next() {
        ToDp::AddFlow { flow, .. } => flow,
        other => panic!("AddFlow expected, o7sd sent {other:?}"),
    };
    // The second is up while the flow is installed: kept, for at most INSTALL_WAIT more.
    let late = t0 + Duration::from_millis(1001);
    d.tend(&mut open, late, &mut vec![]);
    let Some(Doing::Parked {
        deadline: Some(kept),
        ..
    }) = open.get(&9).map(|c| &c.doing)
    else {
        panic!("the accept ended while its flow was being installed");
    };
    assert_eq!(*kept, late + crate::dp::INSTALL_WAIT);
    // The data plane refuses the flow: the process is an acceptor again, the peer refused.
    assert!(d
        .dp
        .route(FromDp::FlowError {
            flow,
            error: "no room".into()
        })
        .is_none());
    d.protocol_turn(late);
    // The data plane is told to forget it, then the peer gets the refusal.
    assert!(matches!(w.next(), ToDp::DelFlow { flow: f } if f == flow));
    assert_eq!(w.to_peer(&mut p), PEER_MAC);
    let mut refused = false;
    while let Some(e) = p.poll_event() {
        refused |= matches!(e, Event::AllocFailed { .. });
    }
    assert!(refused, "the peer was not refused");
    assert_eq!(d.counters.install_failed.load(Ordering::Relaxed), 1);
    // Nothing comes before the kept deadline; at it, the accept times out.
    d.tend(&mut open, late + Duration::from_secs(1), &mut vec![]);
    assert!(open.contains_key(&9));
    d.tend(&mut open, late + crate::dp::INSTALL_WAIT, &mut vec![]);
    assert!(!open.contains_key(&9));
    let (r, _) = app
        .recv_timeout::<Reply>(Some(Duration::from_secs(1)))
        .unwrap();
    assert!(
        matches!(
            r,
            Reply::Error {
                code: o7s::proto::ErrorCode::Timeout,
                ..
            }
        ),
        "{r:?}"
    );
}

#[test]
fn a_turn_that_leaves_management_frames_queued_asks_for_the_next_at_once() {
    use super::from_dp::MGMT_PER_TURN;
    let (d, _dp) = daemon();
    for _ in 0..MGMT_PER_TURN + 1 {
        d.on_dp_message(FromDp::Mgmt {
            port: PORT,
            src: PEER_MAC,
            dst: OUR_MAC,
            payload: vec![0xee; 3],
        });
    }
    let now = Instant::now();
    assert_eq!(d.protocol_turn(now), now);
    // The last one, then nothing left: the next turn is due later.
    let later = now + Duration::from_millis(1);
    assert!(d.protocol_turn(later) > later);
    assert_eq!(
        d.counters.mgmt_malformed.load(Ordering::Relaxed),
        (MGMT_PER_TURN + 1) as u64
    );
}

/// Turns of the loop (its inbox only) until `until` gives a value (5 s at most).
fn turns_until<T>(d: &Owner, mut until: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        d.serve_inbox();
        if let Some(v) = until() {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(5), "nothing came in 5 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_o7sctl_bootstrap_asks_the_port_on_the_loop_waits_for_it_on_the_admin_thread_and_holds_the_name_meanwhile(
) {
    let (d, dp) = crate::daemon::fake_daemon();
    let bootstrap = |name: &str| Ctl::IpcpBootstrap {
        name: name.into(),
        layer: "wire".into(),
        settings: [
            ("type", "eth-dix"),
            ("dev", "veth-x"),
            ("ethertype", "0xa001"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let admin = {
        let (d, tx, c) = (d.daemon().clone(), tx.clone(), bootstrap("e2"));
        std::thread::spawn(move || {
            let _ = tx.send(d.serve(c, &cred()));
        })
    };
    // The loop's step asks the data plane for the port.
    let (port, dev, kind) = turns_until(&d, || {
        match dp.recv_timeout::<ToDp>(Some(Duration::from_millis(1))) {
            Ok((ToDp::AddPort { port, dev, kind }, _)) => Some((port, dev, kind)),
            Ok((other, _)) => panic!("AddPort expected, o7sd sent {other:?}"),
            Err(_) => None,
        }
    });
    assert_eq!(
        (dev.as_str(), kind),
        ("veth-x", PortKind::Dix { ethertype: 0xa001 })
    );
    // While the admin thread waits for the port, the loop is free and the name is taken:
    // a second bootstrap of it is refused at once.
    let second = {
        let (d, c) = (d.daemon().clone(), bootstrap("e2"));
        std::thread::spawn(move || d.serve(c, &cred()))
    };
    turns_until(&d, || second.is_finished().then_some(()));
    match second.join().unwrap() {
        Reply::Error { message, .. } => assert!(message.contains("exists"), "{message}"),
        other => panic!("a second bootstrap of e2 must be refused: {other:?}"),
    }
    assert!(d.st().ipcps.is_empty(), "no IPCP before its port is up");
    // The data plane answers (its events thread routes the answer to the waiter).
    assert!(d
        .dp
        .route(FromDp::PortUp {
            port,
            mac: OUR_MAC,
            mtu: 1500,
            io_path: "test".into(),
        })
        .is_none());
    let r = turns_until(&d, || rx.try_recv().ok());
    admin.join().unwrap();
    assert!(matches!(r, Reply::Ok), "{r:?}");
    let st = d.st();
    let e2 = st.ipcps.iter().find(|i| i.name == "e2").unwrap();
    assert_eq!(
        (e2.port, e2.mtu, e2.up, e2.layer.as_str(), e2.dev.as_str()),
        (port, 1500, true, "wire", "veth-x")
    );
    assert!(st.opening.is_empty(), "the name is the IPCP's now");
}

/// A capture start the data plane does not answer in time is an error for the client and
/// is stopped in the data plane: a worker that takes it later would otherwise run it for
/// good (a cost on every frame of the port, one of its capture slots held).
#[test]
fn a_capture_the_data_plane_answers_too_late_is_stopped() {
    use std::os::fd::AsFd;
    let (d, dp) = daemon();
    let w = Wire { dp };
    let ring = std::fs::File::open("/dev/null").unwrap();
    let start = ToDp::CaptureStart {
        id: 9,
        port: PORT,
        flow: None,
        snaplen: 128,
    };
    let r = d.dp.capture_start(&start, 9, ring.as_fd());
    assert!(matches!(r, Err(crate::dp::DpError::Silent)), "{r:?}");
    assert!(matches!(w.next(), ToDp::CaptureStart { id: 9, .. }));
    assert!(matches!(w.next(), ToDp::CaptureStop { id: 9 }));
}

/// A capture the admin thread hands over just as the loop ends is not left running in the
/// data plane: the loop's end closes it with those it watched, and the capture is stopped.
#[test]
fn a_capture_handed_to_the_loop_as_it_ends_is_stopped_with_the_rest() {
    use super::event_loop::{Conn, Doing};
    let (d, dp) = daemon();
    let w = Wire { dp };
    let (ours, client) = Channel::pair().unwrap();
    let (watched, client2) = Channel::pair().unwrap();
    d.hand_back(Conn {
        ch: ours,
        slot: None,
        doing: Doing::Capturing { id: 7 },
    });
    let mut open = std::collections::HashMap::new();
    open.insert(
        1,
        Conn {
            ch: watched,
            slot: None,
            doing: Doing::Capturing { id: 8 },
        },
    );
    d.close_all(open);
    let mut stopped = [w.next(), w.next()]
        .iter()
        .map(|m| match m {
            ToDp::CaptureStop { id } => *id,
            other => panic!("{other:?}"),
        })
        .collect::<Vec<_>>();
    stopped.sort_unstable();
    assert_eq!(stopped, [7, 8]);
    // Both clients' connections are closed.
    for c in [client, client2] {
        assert!(c
            .recv_timeout::<Reply>(Some(Duration::from_secs(1)))
            .is_err());
    }
}

#[test]
fn an_allocation_whose_app_left_frees_its_endpoint_id_at_once() {
    let (d, dp) = daemon();
    let w = Wire { dp };
    let mut p = peer(Some("srv"));
    // Asked with the longest wait an app may give; the peer answers the query but never
    // the FLOW_REQ.
    let step = d.alloc_start(
        "srv",
        QosSpec::RAW,
        Duration::from_millis(u64::MAX).min(crate::daemon::clients::MAX_ALLOC_WAIT),
        4242,
        Instant::now(),
    );
    assert_eq!(w.to_peer(&mut p), [0xff; 6]);
    assert_eq!(from_peer(&d, &mut p), 1);
    let step = poll_past_peer(&d, step);
    assert_eq!(w.to_peer(&mut p), PEER_MAC);
    let Step::Pending(job) = step else {
        panic!("{step:?}");
    };
    assert!(!job.installing());
    let held = |d: &Owner| {
        let st = d.st();
        (
            st.ipcps[0].shim.eids_in_use(),
            st.ipcps[0].alloc_waiters.len(),
        )
    };
    assert_eq!(
        held(&d),
        (1, 1),
        "the request holds an endpoint id and a waiter"
    );
    // The app hangs up (its connection turns readable): both are free now, not in 60 s.
    let (ch, app) = Channel::pair().unwrap();
    drop(app);
    let epoll = nix::sys::epoll::Epoll::new(nix::sys::epoll::EpollCreateFlags::empty()).unwrap();
    let c = Conn {
        ch,
        slot: None,
        doing: Doing::Allocating(job),
    };
    assert!(d.on_readable(&epoll, c, Instant::now()).is_none());
    assert_eq!(held(&d), (0, 0));

    // Abandoned while the data plane installs it: the flow goes, with its endpoint id
    // (another daemon: this one has the name cached, and would not ask again).
    let (d, dp) = daemon();
    let w = Wire { dp };
    let mut p = peer(Some("srv"));
    let (step, (flow, _, _), _) = allocate_to_install(&d, &w, &mut p);
    let Step::Pending(job) = step else {
        panic!("{step:?}");
    };
    assert!(d.st().flows.contains_key(&flow));
    d.alloc_abandon(job);
    assert!(!d.st().flows.contains_key(&flow));
    assert_eq!(held(&d).0, 0);
    assert!(
        matches!(w.next(), ToDp::DelFlow { flow: f } if f == flow),
        "the data plane is told"
    );
}

#[test]
fn an_adopted_flow_s_endpoint_id_is_reserved_when_its_ipcp_takes_the_port() {
    let (d, _dp) = crate::daemon::fake_daemon();
    let (lo, _) = crate::eth::shim_kind(KIND).eid_range();
    let flow = |local: u32| o7s_abi::msg::AdoptedFlow {
        flow: 9,
        port: 7,
        local,
        remote: 0x99,
        peer: PEER_MAC,
        peer_addr: None,
        pid: 4242,
        timeout_ms: 1000,
        record: String::new(),
        uni: None,
    };
    // The adopted data plane has a flow on port 7 with the lowest id an allocation would
    // take, and one on another port.
    let mut other = flow(lo + 1);
    other.port = 8;
    d.adopt_ports(
        vec![o7s_abi::msg::AdoptedPort {
            port: 7,
            dev: "veth-test".into(),
            kind: KIND,
            mac: OUR_MAC,
            mtu: 1500,
            io_path: String::new(),
        }],
        &[flow(lo), other],
    );
    // The IPCP the configuration makes takes the port: its shim has the id already, so
    // the next allocation gets another.
    let port = d.take_adopted_port("veth-test", KIND).unwrap().port;
    let up = FromDp::PortUp {
        port,
        mac: OUR_MAC,
        mtu: 1500,
        io_path: String::new(),
    };
    d.port_answered(
        "e1",
        IpcpKind::EthDix,
        "wire",
        "veth-test",
        KIND,
        HashAlgo::Sha3_256,
        port,
        up,
    )
    .unwrap();
    let mut st = d.st();
    let i = &mut st.ipcps[0];
    assert_eq!(i.shim.eids_in_use(), 1, "only port 7's flow's id");
    assert!(!i.shim.adopt_eid(lo), "taken");
    assert!(i.shim.adopt_eid(lo + 1), "port 8's id is not this IPCP's");
}

#[test]
fn an_app_that_leaves_after_its_request_timed_out_does_not_cancel_the_next_one() {
    let (d, dp) = daemon();
    let w = Wire { dp };
    let mut p = peer(Some("srv"));
    let t0 = Instant::now();
    let step = d.alloc_start("srv", QosSpec::RAW, Duration::from_secs(1), 4242, t0);
    assert_eq!(w.to_peer(&mut p), [0xff; 6]);
    assert_eq!(from_peer(&d, &mut p), 1);
    let Step::Pending(a) = poll_past_peer(&d, step) else {
        panic!("A's request is not waiting");
    };
    let held = |d: &Owner| {
        let st = d.st();
        (
            st.ipcps[0].shim.eids_in_use(),
            st.ipcps[0].alloc_waiters.len(),
        )
    };
    assert_eq!(held(&d), (1, 1));
    // A's request times out (the loop's turn past its deadline tells its waiter), and B's
    // takes the endpoint id it had (the lowest free).
    d.protocol_turn(t0 + Duration::from_secs(3));
    assert_eq!(held(&d), (0, 0));
    let b = d.alloc_start(
        "srv",
        QosSpec::RAW,
        Duration::from_secs(5),
        4343,
        Instant::now(),
    );
    assert!(matches!(b, Step::Pending(_)), "{b:?}");
    assert_eq!(held(&d), (1, 1), "B's request");
    // A's app hangs up only now: B's request and id stay.
    d.alloc_abandon(a);
    assert_eq!(held(&d), (1, 1));
}

#[test]
fn an_app_s_allocation_waits_at_most_max_alloc_wait_whatever_it_asks() {
    let (d, _dp) = daemon();
    let epoll = nix::sys::epoll::Epoll::new(nix::sys::epoll::EpollCreateFlags::empty()).unwrap();
    for (asked, want) in [
        (u64::MAX, crate::daemon::clients::MAX_ALLOC_WAIT),
        (1500, Duration::from_millis(1500)),
    ] {
        let (app, ch) = Channel::pair().unwrap();
        app.send(
            &o7s::proto::Request::Alloc {
                name: "srv".into(),
                qos: QosSpec::RAW,
                timeout_ms: asked,
            },
            &[],
        )
        .unwrap();
        let c = Conn {
            ch,
            slot: None,
            doing: Doing::Reading {
                since: Instant::now(),
            },
        };
        let Some(Conn {
            doing: Doing::Allocating(job),
            ..
        }) = d.read_request(&epoll, c, Instant::now())
        else {
            panic!("the request did not start an allocation");
        };
        assert_eq!(job.timeout(), want, "asked {asked} ms");
    }
}

#[test]
fn a_flow_that_ends_before_its_adoption_is_not_adopted() {
    let (d, _dp) = daemon();
    let (lo, _) = crate::eth::shim_kind(KIND).eid_range();
    let record =
        serde_json::json!({"name": "srv", "side": "alloc", "qos": QosSpec::RAW}).to_string();
    let flow = |id: u64, local: u32| o7s_abi::msg::AdoptedFlow {
        flow: id,
        port: PORT,
        local,
        remote: 0x99,
        peer: PEER_MAC,
        peer_addr: None,
        // A process that lives (this test): adopted unless it ended.
        pid: std::process::id() as i32,
        timeout_ms: 1000,
        record: record.clone(),
        uni: None,
    };
    d.st().dp_adopted = true;
    // Flow 9's app closes it while o7sd starts: the data plane says so before o7sd adopts.
    d.on_dp_message(FromDp::FlowGone {
        flow: 9,
        why: "its app closed it".into(),
    });
    d.protocol_turn(Instant::now());
    d.adopt_flows(vec![flow(9, lo), flow(10, lo + 1)]);
    let st = d.st();
    assert!(!st.flows.contains_key(&9), "the flow that ended");
    assert!(st.flows.contains_key(&10), "the one that lives");
    assert_eq!(st.ipcps[0].shim.eids_in_use(), 1, "only flow 10's id");
}

/// A name whose configuration says `server_auth = "required"`: a response without the
/// server's certificate (what a man in the middle who stripped it sends) is refused; with
/// the default it is taken, as the reference takes it.
#[test]
fn a_name_requiring_server_authentication_refuses_an_unsigned_response() {
    use crate::daemon::verify_response_requiring;
    let trust = crate::auth::TrustStore::default();
    let req = OapHdr::unsigned([1; 16], 5, vec![]).to_bytes().unwrap();
    let mut resp = OapHdr::unsigned([1; 16], 6, vec![]);
    resp.tail = o7s_proto::oap::req_hash(&req, 0).unwrap();
    let resp = resp.to_bytes().unwrap();
    let e = verify_response_requiring(&trust, "bank", &req, &resp, true).unwrap_err();
    assert!(
        matches!(&e, crate::error::OapCheckError::ServerUnauthenticated(n) if n == "bank"),
        "{e}"
    );
    assert!(e.to_string().contains("server_auth"), "{e}");
    verify_response_requiring(&trust, "bank", &req, &resp, false).unwrap();
    // o7sd takes the setting from the name's configuration.
    let (d, _dp) = daemon();
    let c =
        crate::config::parse("[name.\"bank\"]\nserver_auth = \"required\"\n", "c.conf").unwrap();
    assert!(d.apply_names(&c.names).is_empty());
    assert!(d.st().reg.names["bank"].server_auth_required);
    assert!(d.authenticate_server("bank", &req, &resp).is_err());
    assert!(d.authenticate_server("other", &req, &resp).is_ok());
}

/// A unicast IPCP's flow allocator lets a FLOW_REQ wait as long as o7sd waits for an
/// acceptor: with `--accept-wait 15000` it refused at 10 s a request o7sd still held.
#[test]
fn the_flow_allocator_waits_for_an_acceptor_as_long_as_o7sd_does() {
    let (d, _dp) = daemon();
    let mut s = d.settings.clone();
    s.accept_wait = Duration::from_secs(15);
    s.autostart_wait = Duration::from_secs(5);
    assert_eq!(super::unicast::incoming_wait(&s), Duration::from_secs(21));
    s.accept_wait = Duration::from_secs(1);
    s.autostart_wait = Duration::from_secs(1);
    assert_eq!(
        super::unicast::incoming_wait(&s),
        Duration::from_secs(10),
        "at least the machine's own"
    );
}
