//! A member of a unicast layer that attacks the layer from inside (issue 26 item 3). Over
//! flows that its own o7sd allocates on an eth or udp layer, it enrols through `TARGET`
//! as an IPCP would (CEP and enrolment by `o7s_proto::enroll`, so the target sees a
//! correct member), connects Management and Data Transfer, then floods the target:
//!
//! - `LSAS` link-state advertisements for random addresses (new pairs, each a record the
//!   target would keep and flood on);
//! - `STORES` DHT STOREs of random keys (DT PDUs to the target's address, eid 1);
//! - `REQS` FLOW_REQs for random name hashes (DT PDUs, eid 0);
//! - then, for `COLLIDE_MS` milliseconds (optional, 0), forged address collisions: every
//!   10 ms an LSA "the target's address has a link to X" (a link the target does not
//!   have), as another IPCP with the target's address would announce, following the
//!   target to each new address it moves to (its Management CEP says it);
//! - then `EXTRA` (optional, 0) of each: one LSA replayed, 10-byte garbage on the
//!   Management flow, DHT FIND_VALUE requests for random keys, DHT responses with more
//!   contacts than any bucket holds; and one more N-1 flow whose CEP is garbage.
//!
//! It writes as fast as its flows take the PDUs (EXTRA paced: 100 every 20 ms), then prints
//! one JSON line of what it sent and how long it took. Usage: `o7s-rogue-member TARGET LSAS
//! STORES REQS [COLLIDE_MS [EXTRA]]`.

use o7s::{Flow, QosSpec};
use o7s_proto::enroll::{Connections, EnrollConfig, Event};
use o7s_wire::field::Writer;
use o7s_wire::unicast::pb::{self, Component};
use prost::Message;
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let (Some(target), Some(lsas), Some(stores), Some(reqs)) =
        (args.first(), num(1), num(2), num(3))
    else {
        eprintln!("usage: o7s-rogue-member TARGET LSAS STORES REQS [COLLIDE_MS [EXTRA]]");
        return ExitCode::from(2);
    };
    let collide_ms = num(4).unwrap_or(0);
    let extra = num(5).unwrap_or(0);
    match run(target, lsas, stores, reqs, collide_ms, extra) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("o7s-rogue-member: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The member's N-1 flows by the machine's flow id, and the machine.
struct Member {
    conns: Connections,
    flows: HashMap<u64, Flow>,
    /// How long a turn waits for an SDU on each flow.
    wait_ms: u64,
}

impl Member {
    /// Sends what the machine wants sent, reads what came (briefly), runs its timers;
    /// returns its events.
    fn turn(&mut self) -> Result<Vec<Event>, String> {
        while let Some(t) = self.conns.poll_transmit() {
            if let Some(f) = self.flows.get(&t.flow) {
                f.write(&t.sdu).map_err(|e| format!("write: {e}"))?;
            }
        }
        let mut buf = vec![0u8; 65_536];
        let unix = o7s_proto::machine::UnixTime::from_system(SystemTime::now());
        for (id, f) in &mut self.flows {
            f.set_read_timeout(Some(Duration::from_millis(self.wait_ms)));
            // Everything waiting (LSAs on the Management flow are read and dropped).
            while let Ok(n) = f.read(&mut buf) {
                let sdu = buf.get(..n).unwrap_or(&[]);
                if !self.conns.handle_update(*id, sdu, |_| true) {
                    self.conns.handle(Instant::now(), unix, *id, sdu);
                }
                f.set_read_timeout(Some(Duration::from_millis(1)));
            }
        }
        self.conns.handle_timeout(Instant::now());
        Ok(std::iter::from_fn(|| self.conns.poll_event()).collect())
    }

    /// Allocates N-1 flow `id` to `target` for `comp` and waits for the machine's verdict.
    fn connect(&mut self, target: &str, id: u64, comp: Component) -> Result<Event, String> {
        let f = Flow::alloc(target, QosSpec::RAW, Duration::from_secs(10))
            .map_err(|e| format!("allocating an N-1 flow to {target}: {e}"))?;
        self.flows.insert(id, f);
        self.conns
            .connect(Instant::now(), id, comp, rand_bytes::<8>());
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            for e in self.turn()? {
                match e {
                    Event::Enrolled { .. } | Event::Connected { .. } => return Ok(e),
                    Event::Failed { why, .. } => return Err(format!("{comp:?}: {why}")),
                    _ => {}
                }
            }
        }
        Err(format!("{comp:?}: no answer in 10 s"))
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    for (i, x) in b.iter_mut().enumerate() {
        *x = (rand_u64() >> (8 * (i % 8))) as u8;
    }
    b
}

/// A random u64 from std's per-process random hasher keys and a counter.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

/// A DT PDU to `dst`, eid `eid`, TTL 60 (facts §5.1: address 4, qc, ttl, ecn, eid 8).
fn dt_pdu(dst: u64, eid: u64, sdu: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(15 + sdu.len());
    p.extend_from_slice(&(dst as u32).to_le_bytes());
    p.extend_from_slice(&[0, 60, 0]);
    p.extend_from_slice(&eid.to_le_bytes());
    p.extend_from_slice(sdu);
    p
}

fn run(
    target: &str,
    lsas: u64,
    stores: u64,
    reqs: u64,
    collide_ms: u64,
    extra: u64,
) -> Result<String, String> {
    let mut m = Member {
        conns: Connections::new(EnrollConfig::default(), 0, None),
        flows: HashMap::new(),
        wait_ms: 20,
    };
    let Event::Enrolled { conf, .. } = m.connect(target, 1, Component::Enrollment)? else {
        return Err("enrolment: unexpected event".into());
    };
    m.flows.remove(&1);
    let me = u64::from(rand_u64() as u32 | 1);
    m.conns.set_layer(me, *conf);
    let Event::Connected { peer_addr, .. } = m.connect(target, 2, Component::Management)? else {
        return Err("management: unexpected event".into());
    };
    m.connect(target, 3, Component::DataTransfer)?;
    let (Some(mgmt), Some(dt)) = (m.flows.get(&2), m.flows.get(&3)) else {
        return Err("flows gone".into());
    };
    let start = Instant::now();
    let mut failed = 0u64;
    for i in 0..lsas {
        let mut w = Writer::default();
        o7s_wire::unicast::lsa::Lsa {
            d_addr: u64::from(rand_u64() as u32 | 1),
            s_addr: u64::from(rand_u64() as u32 | 1),
            seqno: i + 1,
        }
        .write(&mut w);
        failed += u64::from(mgmt.write(&w.0).is_err());
    }
    let lsa_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..stores {
        let msg = pb::DhtMsg {
            code: pb::dht_code::STORE,
            src: pb::DhtContactMsg {
                id: rand_bytes::<32>().to_vec(),
                addr: me,
            },
            store: Some(pb::DhtStoreMsg {
                key: rand_bytes::<32>().to_vec(),
                val: me.to_be_bytes().to_vec(),
                exp: u32::MAX,
            }),
            find: None,
            node: None,
            val: None,
        };
        failed += u64::from(
            dt.write(&dt_pdu(peer_addr, 1, &msg.encode_to_vec()))
                .is_err(),
        );
    }
    let store_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for i in 0..reqs {
        let mut w = Writer::default();
        o7s_wire::unicast::fa::FaMsg {
            s_addr: me,
            r_eid: 0,
            s_eid: 64 + i,
            response: 0,
            qos: QosSpec::RAW,
            ece: 0,
            code: o7s_wire::code::FaCode::FlowReq,
        }
        .write(&mut w);
        w.0.extend_from_slice(&rand_bytes::<32>());
        failed += u64::from(dt.write(&dt_pdu(peer_addr, 0, &w.0)).is_err());
    }
    let req_s = start.elapsed().as_secs_f64();
    // Forged collisions: "the target's address -> X", X a link it does not have.
    let (mut collisions, mut moves, mut target_now) = (0u64, 0u64, peer_addr);
    let fake = u64::from(rand_u64() as u32 | 1);
    let until = Instant::now() + Duration::from_millis(collide_ms);
    m.wait_ms = 1;
    while Instant::now() < until {
        let mut w = Writer::default();
        o7s_wire::unicast::lsa::Lsa {
            d_addr: fake,
            s_addr: target_now,
            seqno: 1_000_000 + collisions,
        }
        .write(&mut w);
        if let Some(mgmt) = m.flows.get(&2) {
            failed += u64::from(mgmt.write(&w.0).is_err());
        }
        collisions += 1;
        for e in m.turn()? {
            if let Event::Readdressed { new, .. } = e {
                target_now = new;
                moves += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Replays, garbage, FIND floods, oversized contact lists, a garbage CEP.
    let pace = |i: u64| {
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let fixed = u64::from(rand_u64() as u32 | 1);
    if let (Some(mgmt), Some(dt)) = (m.flows.get(&2), m.flows.get(&3)) {
        for i in 0..extra {
            let mut w = Writer::default();
            o7s_wire::unicast::lsa::Lsa {
                d_addr: fixed,
                s_addr: me,
                seqno: 5,
            }
            .write(&mut w);
            failed += u64::from(mgmt.write(&w.0).is_err());
            pace(i);
        }
        for i in 0..extra {
            failed += u64::from(mgmt.write(&[0u8; 10]).is_err());
            pace(i);
        }
        let contact = |addr: u64| pb::DhtContactMsg {
            id: rand_bytes::<32>().to_vec(),
            addr,
        };
        for i in 0..extra {
            let msg = pb::DhtMsg {
                code: pb::dht_code::FIND_VALUE_REQ,
                src: contact(me),
                store: None,
                find: Some(pb::DhtFindReqMsg {
                    cookie: i + 1,
                    key: rand_bytes::<32>().to_vec(),
                }),
                node: None,
                val: None,
            };
            failed += u64::from(
                dt.write(&dt_pdu(target_now, 1, &msg.encode_to_vec()))
                    .is_err(),
            );
            pace(i);
        }
        for i in 0..extra {
            let msg = pb::DhtMsg {
                code: pb::dht_code::FIND_NODE_RSP,
                src: contact(me),
                store: None,
                find: None,
                node: Some(pb::DhtFindNodeRspMsg {
                    cookie: i + 1,
                    key: rand_bytes::<32>().to_vec(),
                    contacts: (0..=pb::MAX_CONTACTS as u64)
                        .map(|a| contact(a + 1))
                        .collect(),
                }),
                val: None,
            };
            failed += u64::from(
                dt.write(&dt_pdu(target_now, 1, &msg.encode_to_vec()))
                    .is_err(),
            );
            pace(i);
        }
    }
    if extra > 0 {
        let f = Flow::alloc(target, QosSpec::RAW, Duration::from_secs(10))
            .map_err(|e| format!("allocating an N-1 flow to {target}: {e}"))?;
        failed += u64::from(f.write(&rand_bytes::<64>()).is_err());
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(format!(
        "{{\"target_address\":\"{peer_addr:#010x}\",\"extra\":{extra},\"own_address\":\"{me:#010x}\",\"lsas\":{lsas},\"lsa_seconds\":{lsa_s:.3},\"stores\":{stores},\"store_seconds\":{store_s:.3},\"flow_reqs\":{reqs},\"flow_req_seconds\":{req_s:.3},\"collisions\":{collisions},\"target_moves\":{moves},\"target_last\":\"{target_now:#010x}\",\"write_errors\":{failed}}}"
    ))
}
