//! Unicast layers between o7sd instances (issue 15). So far: a unicast IPCP bootstraps a
//! layer on one host and one on another host enrols through it over eth-dix, with the
//! reference's CEP and OEP messages on the wire (o7s_proto::enroll driven by o7sd, the N-1
//! flow allocated and accepted by o7sd itself).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_integration::unicast::{uni_chain, uni_ring, Chain};
use o7s_integration::{bin, can_run, eventually, Topo};
use serde_json::Value;
use std::time::Duration;

fn uni_row(t: &Topo, s: &str, name: &str) -> Option<Value> {
    t.ctl_json(s, &["ipcp", "list"])
        .into_iter()
        .find(|r| r["name"] == name)
}

#[test]
fn an_ipcp_enrols_over_eth_dix_and_adopts_the_layer() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("un");
    let a = t.daemon(
        "a",
        &format!(
            "[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\nreg=[\"ua\"]\n\n[unicast.ua]\nbootstrap=\"ulayer\"\nautobind=true\nrouting=\"lfa\"\ndht_k=4\n",
            t.dev("a")
        ),
    );
    let ra = uni_row(&t, "a", "ua").unwrap_or_else(|| panic!("{}", a.log()));
    assert_eq!(ra["state"], "bootstrapped", "{ra}");
    assert_eq!(ra["layer"], "ulayer", "{ra}");
    // What goes on A's port, in a capture.
    let pcap = t.dir.join("a.pcap");
    let cap = o7s_integration::spawn_ready_line(
        t.cmd("a", &bin("o7sctl"))
            .args(["capture", "e", "-w"])
            .arg(&pcap),
        "capturing on",
    );
    let b = t.daemon(
        "b",
        &format!(
            "[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\n\n[unicast.ub]\nenrol=\"ua\"\nautobind=true\n",
            t.dev("b")
        ),
    );
    let enrolled = eventually(Duration::from_secs(10), || {
        uni_row(&t, "b", "ub").is_some_and(|r| r["state"] == "enrolled")
    });
    assert!(enrolled, "{}\n{}", b.log(), a.log());
    let rb = uni_row(&t, "b", "ub").unwrap();
    assert_eq!(rb["layer"], "ulayer", "B adopted A's layer: {rb}");
    assert_ne!(rb["address"], "0x00000000", "{rb}");
    assert_ne!(
        rb["address"], ra["address"],
        "an address of its own: {rb} {ra}"
    );
    assert!(a.log().contains("enrolment served"), "{}", a.log());
    // On the wire, the reference's messages (decoded by o7s-dissect from the CEP on).
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cap.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let o = cap.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    let o = std::process::Command::new(bin("o7s-dissect"))
        .arg(&pcap)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    for want in [
        "ocep cep_msg (protobuf) comp_name Enrollment protocol OEP version 1 syntax GPB address 0x00000000 len 23",
        "oep enroll_req (protobuf)",
        "oep enroll_resp (protobuf)",
        "ipcp_config layer ulayer dir_hash_algo 1 ipcp_type 1",
        // The table's settings travel in the configuration: LFA routing, k = 4.
        "link_state pol 1 t_recalc 4 t_update 15 t_timeo 60",
        "dht alpha 3 k 4 t_expire 86400",
        "oep enroll_ack (protobuf)",
    ] {
        assert!(text.contains(want), "no '{want}' in\n{text}");
    }
    let peer = format!("peer {}", ra["address"].as_str().unwrap());
    assert!(
        text.contains(&peer),
        "A hands out itself as the DHT peer ({peer}):\n{text}"
    );
    assert!(!text.contains("MALFORMED"), "{text}");
    // The enrolment flow is let go on both sides afterwards.
    assert!(eventually(Duration::from_secs(5), || {
        t.ctl_json("a", &["flow", "list"]).is_empty()
            && t.ctl_json("b", &["flow", "list"]).is_empty()
    }));
}

#[test]
fn an_enrolment_with_nobody_there_fails_clearly() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("uf");
    let b = t.daemon(
        "b",
        &format!(
            "[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\n\n[unicast.ub]\nenrol=\"nobody\"\n",
            t.dev("b")
        ),
    );
    let failed = eventually(Duration::from_secs(5), || {
        uni_row(&t, "b", "ub").is_some_and(|r| {
            r["state"]
                .as_str()
                .is_some_and(|s| s.starts_with("enrolment failed"))
        })
    });
    assert!(failed, "{}", b.log());
    let r = uni_row(&t, "b", "ub").unwrap();
    assert!(r["state"].as_str().unwrap().contains("nobody"), "{r}");
}

fn addr_of(t: &Topo, s: &str, name: &str) -> String {
    uni_row(t, s, name).unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string()
}

fn next_hop(t: &Topo, s: &str, dst: &str) -> Option<String> {
    t.ctl_json(s, &["route", "list"])
        .into_iter()
        .find(|r| r["dst"] == dst)
        .and_then(|r| r["next_hop"].as_str().map(str::to_string))
}

/// A - B - C as the reference's chain (facts §8.3): B enrols through A and connects to it, C
/// enrols through B and connects to it (three hosts on one segment; the layer's topology
/// is what `conn` makes). Link state floods over the Management flows: A routes to C through
/// B and C to A through B, every LSDB holds the four half-links.
#[test]
fn a_chain_of_three_connects_and_routes_through_the_middle() {
    if !can_run() {
        return;
    }
    let t = Topo::bridged("uc", &["a", "b", "c"]);
    let eth = |s: &str, reg: &str| {
        format!(
            "[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\nreg=[{reg}]\n\n",
            t.dev(s)
        )
    };
    let chain = Chain {
        layer: "chain",
        eth: [eth("a", "\"ua\""), eth("b", "\"ub\""), eth("c", "")],
        name: "oping-server",
        b_args: &[],
    };
    let (a, b, c) = uni_chain(&t, &chain);
    let (aa, ab) = (addr_of(&t, "a", "ua"), addr_of(&t, "b", "ub"));
    let routed = eventually(Duration::from_secs(15), || {
        uni_row(&t, "c", "uc").is_some_and(|r| r["state"] == "enrolled") && {
            let ac = addr_of(&t, "c", "uc");
            next_hop(&t, "a", &ac).as_deref() == Some(ab.as_str())
                && next_hop(&t, "c", &aa).as_deref() == Some(ab.as_str())
        }
    });
    assert!(
        routed,
        "A and C route through B\n{}\n{}\n{}",
        a.log(),
        b.log(),
        c.log()
    );
    let ac = addr_of(&t, "c", "uc");
    assert_eq!(next_hop(&t, "b", &aa).as_deref(), Some(aa.as_str()));
    assert_eq!(next_hop(&t, "b", &ac).as_deref(), Some(ac.as_str()));
    for s in ["a", "b", "c"] {
        let lsdb = t.ctl_json(s, &["lsdb", "list"]);
        let pairs: std::collections::BTreeSet<(String, String)> = lsdb
            .iter()
            .map(|r| {
                (
                    r["src"].as_str().unwrap().into(),
                    r["dst"].as_str().unwrap().into(),
                )
            })
            .collect();
        let want: std::collections::BTreeSet<(String, String)> = [
            (aa.clone(), ab.clone()),
            (ab.clone(), aa.clone()),
            (ab.clone(), ac.clone()),
            (ac.clone(), ab.clone()),
        ]
        .into_iter()
        .collect();
        assert_eq!(pairs, want, "{s}'s LSDB: {lsdb:?}");
    }
    // The Management and DT flows stay (two on A and C, four on B).
    assert_eq!(t.ctl_json("b", &["flow", "list"]).len(), 4);
    // The directory: C joins through B (its enroller) and publishes oping-server; the STOREs
    // reach B and, forwarded by B, A: every member finds the name at C's address.
    let key = o7s_wire::hash::HashAlgo::Sha3_256.hash("oping-server");
    let key = key.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let stored = |s: &str| {
        t.ctl_json(s, &["dht", "list"])
            .iter()
            .any(|r| r["key"] == key.as_str() && r["address"] == ac.as_str())
    };
    assert!(
        eventually(Duration::from_secs(10), || stored("a")
            && stored("b")
            && stored("c")),
        "A: {:?}\nB: {:?}\nC: {:?}\n{}",
        t.ctl_json("a", &["dht", "list"]),
        t.ctl_json("b", &["dht", "list"]),
        t.ctl_json("c", &["dht", "list"]),
        c.log()
    );
    let rb = uni_row(&t, "b", "ub").unwrap();
    assert!(
        rb["dt_forwarded"].as_u64().unwrap() > 0,
        "B's data plane forwarded DT PDUs between A and C: {rb}"
    );
    // A flow across the layer: oping from A to the server at C, through B.
    let mut srv = t
        .cmd("c", &bin("oping"))
        .arg("--listen")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("c", "c", "oping-server");
    let before = uni_row(&t, "b", "ub").unwrap();
    let (sum, o) = t.oping("a", &["-n", "oping-server", "-c", "100", "-i", "5ms"]);
    // Every cube crosses the layer: FRCP runs in the app library (retransmission for
    // data, in-order delivery for voice), the layer carries it as any SDU.
    for q in ["data", "voice"] {
        let (s, o) = t.oping(
            "a",
            &["-n", "oping-server", "-c", "20", "-i", "5ms", "-q", q],
        );
        assert_eq!(
            s["received"],
            20,
            "-q {q}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let _ = srv.kill();
    let _ = srv.wait();
    assert_eq!(
        sum["received"],
        100,
        "{}\n{}\n{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        a.log(),
        b.log(),
        c.log()
    );
    // B's worker forwarded the pings (and what the allocation sent); nothing of it
    // reached B's o7sd: it forwarded nothing and dropped nothing.
    let after = uni_row(&t, "b", "ub").unwrap();
    let n = |r: &Value, k: &str| r[k].as_u64().unwrap_or(0);
    assert!(
        n(&after, "dt_forwarded") >= n(&before, "dt_forwarded") + 200,
        "B's data plane forwarded the 200 PDUs of the pings: {before} -> {after}"
    );
    for k in ["dt_forwarded_in_o7sd", "dt_dropped_in_o7sd"] {
        assert_eq!(n(&after, k), n(&before, k), "{k}: {before} -> {after}");
    }
    // Per neighbour: B's DT N-1 flows with A and with C each carried the 100 pings or the
    // 100 replies in and the other out.
    let nbs = t.ctl_json("b", &["neighbour", "list"]);
    let dts: Vec<&Value> = nbs
        .iter()
        .filter(|r| r["component"] == "Data Transfer")
        .collect();
    assert_eq!(dts.len(), 2, "{nbs:?}");
    for r in dts {
        assert!(n(r, "rx_pdus") >= 100 && n(r, "tx_pdus") >= 100, "{r}");
    }
    // A and C delivered and sent in their data planes too.
    for s in ["a", "c"] {
        let r = uni_row(&t, s, &format!("u{s}")).unwrap();
        assert!(
            n(&r, "dt_sent") >= 100 && n(&r, "dt_delivered") >= 100,
            "{s}: {r}"
        );
    }
    eprintln!(
        "oping A -> C through B: {sum}; B's data plane forwarded {} DT PDUs, its o7sd {}",
        n(&after, "dt_forwarded") - n(&before, "dt_forwarded"),
        n(&after, "dt_forwarded_in_o7sd") - n(&before, "dt_forwarded_in_o7sd")
    );
    // 50 flows through B at once: 50 allocation requests on 50 connections from one
    // process, all answered with a flow by the server at C (kept accepting).
    let mut srv = t
        .cmd("c", &bin("o7s-hostile"))
        .args(["accept", "50", "5"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = srv.id().to_string();
    let o = t
        .cmd("c", &bin("o7sctl"))
        .args(["bind", "process", &pid, "name", "oping-server"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    t.wait_accepting("c", "c", "oping-server");
    let o = t
        .cmd("a", &bin("o7s-hostile"))
        .args(["pending", "50", "oping-server", "5000"])
        .output()
        .unwrap();
    let _ = srv.kill();
    let _ = srv.wait();
    let out = String::from_utf8_lossy(&o.stdout);
    let r: Value = serde_json::from_str(out.lines().last().unwrap_or("")).unwrap_or(Value::Null);
    assert_eq!(
        r["by"]["Flow"],
        50,
        "50 flows at once: {r}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    eprintln!("50 flows through B at once: {r}");

    // Bad input on B's N-1 flows with A, sent from A's device as A (the data plane takes a
    // flow's frames only from its peer): each dropped and counted, B's o7sd stays, and a
    // flow across the layer still works.
    let nb: Vec<Value> = t
        .ctl_json("b", &["flow", "list"])
        .into_iter()
        .filter(|f| f["name"] == "ua")
        .collect();
    assert_eq!(nb.len(), 2, "Management and DT with A: {nb:?}");
    let eid = |f: &Value| {
        u16::from_str_radix(f["local"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    };
    let (mgmt, dt) = (eid(&nb[0]), eid(&nb[1]));
    let mac = |s: &str| t.mac(s).replace(':', "");
    let frame = |eid: u16, sdu: &[u8]| {
        format!(
            "{}{}a000{eid:04x}{:04x}{}",
            mac("b"),
            mac("a"),
            sdu.len(),
            sdu.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    };
    let pci = |dst: &str, ttl: u8, eid: u64| {
        let d = u32::from_str_radix(dst.trim_start_matches("0x"), 16).unwrap();
        let mut v = d.to_le_bytes().to_vec();
        v.extend_from_slice(&[0, ttl, 0]);
        v.extend_from_slice(&eid.to_le_bytes());
        v
    };
    // A DHT FIND_NODE_RSP with 25 contacts (more than any k; what fits a frame).
    let huge = {
        use o7s_wire::unicast::pb::*;
        use prost::Message;
        let c = DhtContactMsg {
            id: vec![7; 32],
            addr: 9,
        };
        DhtMsg {
            code: dht_code::FIND_NODE_RSP,
            src: c.clone(),
            store: None,
            find: None,
            node: Some(DhtFindNodeRspMsg {
                cookie: 1,
                key: vec![1; 32],
                contacts: vec![c; 25],
            }),
            val: None,
        }
        .encode_to_vec()
    };
    let before = uni_row(&t, "b", "ub").unwrap();
    let bad: Vec<String> = vec![
        frame(mgmt, &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3]), // not an LSA
        frame(
            mgmt,
            &[[0u8; 8], 0x1234u64.to_be_bytes(), 1u64.to_be_bytes()].concat(),
        ), // to address 0
        frame(
            mgmt,
            &[
                0x1234u64.to_be_bytes(),
                0x1234u64.to_be_bytes(),
                1u64.to_be_bytes(),
            ]
            .concat(),
        ), // a link to itself
        frame(
            mgmt,
            &[
                0x0bad_0002u64.to_be_bytes(),
                0x0bad_0001u64.to_be_bytes(),
                1u64.to_be_bytes(),
            ]
            .concat(),
        ), // a link between two unknown addresses
        frame(dt, &[1, 2, 3]),                           // shorter than a PCI
        frame(dt, &pci(&ac, 1, 0x42)),                   // TTL runs out at B
        frame(dt, &pci(&ab, 60, 7)),                     // a reserved eid
        frame(dt, &pci(&ab, 60, 0x1234_0000_0099)),      // an unknown eid
        frame(dt, &[pci(&ab, 60, 1), vec![0xff; 20]].concat()), // garbage protobuf
        frame(dt, &[pci(&ab, 60, 1), huge].concat()),    // huge contact list
        frame(dt, &[pci(&ab, 60, 0), vec![0; 10]].concat()), // short FA message
        frame(dt, &pci("0x0badbad0", 60, 0x42)),         // no route
    ];
    let o = t
        .cmd("a", &bin("o7s-inject"))
        .arg(t.dev("a"))
        .args(&bad)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The DT PDUs are judged by B's data plane (one drop counter each); what is for B's
    // flow allocator and directory reaches o7sd, which drops it.
    let counted = eventually(Duration::from_secs(3), || {
        let r = uni_row(&t, "b", "ub").unwrap();
        let more = |k: &str| n(&r, k) > n(&before, k);
        n(&r, "lsa_dropped") >= n(&before, "lsa_dropped") + 3
            && [
                "dt_drop_short",
                "dt_drop_ttl",
                "dt_drop_reserved_eid",
                "dt_drop_unknown_eid",
                "dt_drop_no_route",
            ]
            .iter()
            .all(|k| n(&r, k) == n(&before, k) + 1)
            && n(&r, "dht_dropped") >= n(&before, "dht_dropped") + 2
            && more("fa_dropped")
    });
    let after = uni_row(&t, "b", "ub").unwrap();
    assert!(
        counted,
        "every bad SDU counted: before {before}\nafter {after}\n{}",
        b.log()
    );
    eprintln!("bad input at B: before {before}\nafter {after}");
    // The link between two unknown addresses is a record as any (the reference's LSDB
    // learns members that way; it ages out), but only one end announced it: no route
    // leads there, at B or at C (it was flooded on).
    // C learns it from B's flood: waited for, not read once.
    let bogus = |s: &str| {
        t.ctl_json(s, &["lsdb", "list"])
            .iter()
            .any(|r| r["src"] == "0x0bad0001" && r["dst"] == "0x0bad0002")
    };
    eventually(Duration::from_secs(3), || bogus("b") && bogus("c"));
    for s in ["b", "c"] {
        assert!(bogus(s), "{s}: {:?}", t.ctl_json(s, &["lsdb", "list"]));
        assert_eq!(next_hop(&t, s, "0x0bad0002"), None, "{s}");
        assert_eq!(next_hop(&t, s, "0x0bad0001"), None, "{s}");
    }
    let mut srv = t
        .cmd("c", &bin("oping"))
        .arg("--listen")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("c", "c", "oping-server");
    let (sum, o) = t.oping("a", &["-n", "oping-server", "-c", "5", "-i", "10ms"]);
    assert_eq!(sum["received"], 5, "{}", String::from_utf8_lossy(&o.stderr));

    // An address collision: an LSA "B -> 0x1234" with a high seqno, as an older IPCP with
    // B's address would send it. B moves to a new address, tells A and C on its
    // Management flows; they follow, routes go through the new address, pings cross.
    let b_old = addr_of(&t, "b", "ub");
    let before = uni_row(&t, "b", "ub").unwrap();
    let b_num = u64::from_str_radix(b_old.trim_start_matches("0x"), 16).unwrap();
    let lsa = [
        0x1234u64.to_be_bytes(),
        b_num.to_be_bytes(),
        1000u64.to_be_bytes(),
    ]
    .concat();
    let o = t
        .cmd("a", &bin("o7s-inject"))
        .arg(t.dev("a"))
        .arg(frame(mgmt, &lsa))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let moved = eventually(Duration::from_secs(10), || {
        let b_new = addr_of(&t, "b", "ub");
        b_new != b_old
            && next_hop(&t, "a", &ac).as_deref() == Some(b_new.as_str())
            && next_hop(&t, "c", &aa).as_deref() == Some(b_new.as_str())
    });
    let after = uni_row(&t, "b", "ub").unwrap();
    assert!(
        moved,
        "B moved and A and C route through its new address: {before}\n{after}\n{}\n{}\n{}",
        a.log(),
        b.log(),
        c.log()
    );
    let b_new = addr_of(&t, "b", "ub");
    eprintln!("address collision: B moved from {b_old} to {b_new}: {after}");
    assert_eq!(n(&after, "readdressed"), n(&before, "readdressed") + 1);
    assert_eq!(
        n(&after, "address_collisions"),
        n(&before, "address_collisions") + 1
    );
    assert!(b.log().contains("has our address") && b.log().contains("we move to"));
    for s in ["a", "c"] {
        let r = uni_row(&t, s, &format!("u{s}")).unwrap();
        assert_eq!(n(&r, "neighbours_moved"), 1, "{s}: {r}");
        let nbs = t.ctl_json(s, &["neighbour", "list"]);
        assert!(
            nbs.iter().all(|r| r["neighbour"] == b_new.as_str()),
            "{s}'s connections are to B's new address: {nbs:?}"
        );
    }
    assert!(a.log().contains(&format!("moved to address {b_new}")));
    let (sum, o) = t.oping("a", &["-n", "oping-server", "-c", "5", "-i", "10ms"]);
    let _ = srv.kill();
    let _ = srv.wait();
    assert_eq!(sum["received"], 5, "{}", String::from_utf8_lossy(&o.stderr));
}

/// The chain over mixed N-1 layers: A and B share a udp4 layer, B and C an eth-dix one
/// (recursion over both): B enrols through A over udp4, C through B over eth-dix, and A
/// pings C through B.
#[test]
fn a_chain_over_udp4_and_eth_dix_carries_a_ping() {
    if !can_run() {
        return;
    }
    use o7s_wire::hash::HashAlgo;
    let t = Topo::bridged("um", &["a", "b", "c"]);
    for (s, ip) in [("a", "10.77.0.1/24"), ("b", "10.77.0.2/24")] {
        let o = std::process::Command::new("ip")
            .args(["-n", &t.ns(s), "addr", "add", ip, "dev", &t.dev(s)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // udp names resolve through /etc/hosts (hex MD5).
    t.hosts("b", &format!("10.77.0.1 {}\n", HashAlgo::Md5.hex("ua")));
    let a = t.daemon(
        "a",
        "[udp4.u]\nbootstrap=\"udp\"\nip=\"10.77.0.1\"\nreg=[\"ua\"]\n\n[unicast.ua]\nbootstrap=\"mixed\"\nautobind=true\n",
    );
    let b = t.daemon(
        "b",
        &format!(
            "[udp4.u]\nbootstrap=\"udp\"\nip=\"10.77.0.2\"\n\n[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\nreg=[\"ub\"]\n\n\
             [unicast.ub]\nenrol=\"ua\"\nautobind=true\nconn=[\"ua\"]\n",
            t.dev("b")
        ),
    );
    assert!(
        eventually(Duration::from_secs(10), || uni_row(&t, "b", "ub")
            .is_some_and(|r| r["state"] == "enrolled")),
        "{}\n{}",
        b.log(),
        a.log()
    );
    let c = t.daemon(
        "c",
        &format!(
            "[name.\"oping-server\"]\nprog=[\"{}\"]\nargs=[\"--listen\"]\n\n[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\n\n\
             [unicast.uc]\nenrol=\"ub\"\nautobind=true\nconn=[\"ub\"]\nreg=[\"oping-server\"]\n",
            bin("oping").display(),
            t.dev("c")
        ),
    );
    let ab = addr_of(&t, "b", "ub");
    let ready = eventually(Duration::from_secs(15), || {
        uni_row(&t, "c", "uc").is_some_and(|r| r["state"] == "enrolled")
            && next_hop(&t, "a", &addr_of(&t, "c", "uc")).as_deref() == Some(ab.as_str())
            && t.ctl_json("a", &["dht", "list"])
                .iter()
                .any(|r| r["local"] == false)
    });
    assert!(ready, "{}\n{}\n{}", a.log(), b.log(), c.log());
    // B's N-1 flows: udp4 towards A, eth-dix towards C.
    let kinds: Vec<String> = t
        .ctl_json("b", &["flow", "list"])
        .iter()
        .map(|f| f["ipcp"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        kinds.contains(&"u".to_string()) && kinds.contains(&"e".to_string()),
        "{kinds:?}"
    );
    // No server runs at C: the flow request over the layer starts the name's program
    // (auto-start, `args` given), which then accepts it.
    let before = uni_row(&t, "b", "ub").unwrap();
    let (sum, o) = t.oping("a", &["-n", "oping-server", "-c", "10", "-i", "10ms"]);
    assert_eq!(
        sum["received"],
        10,
        "{}\n{}\n{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        a.log(),
        b.log(),
        c.log()
    );
    assert!(
        c.log().contains("for oping-server.") && c.log().contains("Starting "),
        "C started oping for the request: {}",
        c.log()
    );
    // B's worker moved the PDUs between its udp4 and eth-dix N-1 flows, not its o7sd.
    let after = uni_row(&t, "b", "ub").unwrap();
    let n = |r: &Value, k: &str| r[k].as_u64().unwrap_or(0);
    assert!(
        n(&after, "dt_forwarded") >= n(&before, "dt_forwarded") + 20
            && n(&after, "dt_forwarded_in_o7sd") == n(&before, "dt_forwarded_in_o7sd"),
        "{before} -> {after}"
    );
    eprintln!("oping A -(udp4)- B -(eth-dix)- C: {sum}");
}

/// The same with o7sctl instead of configuration tables, as irm does it: `ipcp bootstrap
/// ... type unicast`, `ipcp enroll ... autobind`, `ipcp connect`; `neighbour list` shows
/// the connections.
#[test]
fn o7sctl_bootstraps_enrols_and_connects_a_unicast_ipcp() {
    if !can_run() {
        return;
    }
    let t = Topo::pair("uo");
    let eth = |s: &str, reg: &str| {
        format!(
            "[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\nreg=[{reg}]\n",
            t.dev(s)
        )
    };
    let a = t.daemon("a", &eth("a", "\"ua\""));
    let b = t.daemon("b", &eth("b", ""));
    let ctl = |s: &str, args: &[&str]| {
        let o = t.cmd(s, &bin("o7sctl")).args(args).output().unwrap();
        assert!(
            o.status.success(),
            "o7sctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ctl(
        "a",
        &[
            "ipcp",
            "bootstrap",
            "name",
            "ua",
            "layer",
            "cli",
            "type",
            "unicast",
        ],
    );
    ctl(
        "b",
        &["ipcp", "enroll", "name", "ub", "dst", "ua", "autobind"],
    );
    assert!(
        eventually(Duration::from_secs(10), || uni_row(&t, "b", "ub")
            .is_some_and(|r| r["state"] == "enrolled" && r["layer"] == "cli")),
        "{}\n{}",
        b.log(),
        a.log()
    );
    // An unknown component is refused clearly.
    let o = t
        .cmd("b", &bin("o7sctl"))
        .args([
            "ipcp",
            "connect",
            "name",
            "ub",
            "dst",
            "ua",
            "component",
            "routing",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("unknown component"),
        "{o:?}"
    );
    ctl("b", &["ipcp", "connect", "name", "ub", "dst", "ua"]);
    let aa = addr_of(&t, "a", "ua");
    let connected = eventually(Duration::from_secs(10), || {
        let n = t.ctl_json("b", &["neighbour", "list"]);
        n.len() == 2
            && n.iter()
                .all(|r| r["neighbour"] == aa.as_str() && r["state"] == "up")
    });
    assert!(
        connected,
        "{:?}\n{}",
        t.ctl_json("b", &["neighbour", "list"]),
        b.log()
    );
    let ab = addr_of(&t, "b", "ub");
    assert!(eventually(Duration::from_secs(10), || next_hop(
        &t, "a", &ab
    )
    .as_deref()
        == Some(ab.as_str())));
    // `ipcp disconnect`: DT first, by A's address; then Management, by A's name. Each
    // N-1 flow is deallocated on B and leaves B's link state.
    let n1_flows = |s: &str| {
        t.ctl_json(s, &["flow", "list"])
            .iter()
            .filter(|f| f["name"] == "ua")
            .count()
    };
    assert_eq!(n1_flows("b"), 2);
    ctl(
        "b",
        &[
            "ipcp",
            "disconnect",
            "name",
            "ub",
            "dst",
            &aa,
            "component",
            "dt",
        ],
    );
    let dt_gone = eventually(Duration::from_secs(5), || {
        let n = t.ctl_json("b", &["neighbour", "list"]);
        n.len() == 1 && n[0]["component"] == "Management" && n1_flows("b") == 1
    });
    assert!(
        dt_gone,
        "{:?}\n{}",
        t.ctl_json("b", &["neighbour", "list"]),
        b.log()
    );
    assert!(
        eventually(Duration::from_secs(5), || next_hop(&t, "b", &aa).is_none()),
        "B has no DT neighbour, so no route to A: {:?}",
        t.ctl_json("b", &["route", "list"])
    );
    ctl("b", &["ipcp", "disconnect", "name", "ub", "dst", "ua"]);
    assert!(
        eventually(Duration::from_secs(5), || t
            .ctl_json("b", &["neighbour", "list"])
            .is_empty()
            && n1_flows("b") == 0),
        "{:?}",
        t.ctl_json("b", &["neighbour", "list"])
    );
    // Nothing left to disconnect: a clear error; connecting again works.
    let o = t
        .cmd("b", &bin("o7sctl"))
        .args(["ipcp", "disconnect", "name", "ub", "dst", "ua"])
        .output()
        .unwrap();
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("has no"),
        "{o:?}"
    );
    ctl("b", &["ipcp", "connect", "name", "ub", "dst", "ua"]);
    assert!(
        eventually(Duration::from_secs(10), || t
            .ctl_json("b", &["neighbour", "list"])
            .len()
            == 2
            && next_hop(&t, "b", &aa).as_deref() == Some(aa.as_str())),
        "{:?}\n{}",
        t.ctl_json("b", &["neighbour", "list"]),
        b.log()
    );
}

/// Four IPCPs in a ring A - B - C - D - A (a veth pair per link) with LFA and fast link-state
/// timers: A pings C while the link on A's primary path to C is cut (its veth deleted).
/// The flow survives: A switches to the loop-free alternate at once (its port's device is
/// gone, so its N-1 flows are down at once); the reverse path settles when the stale
/// records age out (t_timeo 2 s). The gap is reported.
#[test]
fn a_ring_with_lfa_survives_a_cut_link() {
    if !can_run() {
        return;
    }
    let sides = ["a", "b", "c", "d"];
    let t = Topo::links(
        "ur",
        &sides,
        &[("a", "b"), ("b", "c"), ("c", "d"), ("d", "a")],
    );
    let _ds = uni_ring(
        &t,
        "routing=\"lfa\"\nls_t_recalc=1\nls_t_update=1\nls_t_timeo=2",
        &[],
        "oping-server",
        "oping",
    );
    let ac = addr_of(&t, "c", "uc");
    let (ab, ad) = (addr_of(&t, "b", "ub"), addr_of(&t, "d", "ud"));
    // A's route to C: a primary and the other neighbour as its loop-free alternate.
    let routed = eventually(Duration::from_secs(15), || {
        t.ctl_json("a", &["route", "list"]).iter().any(|r| {
            r["dst"] == ac.as_str() && r["alternates"].as_array().is_some_and(|v| !v.is_empty())
        }) && t
            .ctl_json("a", &["dht", "list"])
            .iter()
            .any(|r| r["local"] == false)
    });
    assert!(routed, "{:?}", t.ctl_json("a", &["route", "list"]));
    let mut srv = t
        .cmd("c", &bin("oping"))
        .arg("--listen")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("c", "c", "oping-server");
    let ping = t
        .cmd("a", &bin("oping"))
        .args(["-n", "oping-server", "-c", "800", "-i", "10ms", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let primary = next_hop(&t, "a", &ac).unwrap();
    let via = if primary == ab { "b" } else { "d" };
    assert!(primary == ab || primary == ad, "{primary}");
    let o = std::process::Command::new("ip")
        .args(["-n", &t.ns("a"), "link", "del", &t.link_dev("a", via)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = ping.wait_with_output().unwrap();
    let _ = srv.kill();
    let _ = srv.wait();
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let sum: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
    let received = sum["received"].as_u64().unwrap_or(0);
    let gap_ms = (800 - received) * 10;
    eprintln!(
        "ring with LFA, link A-{via} cut during 800 pings at 10 ms: {received} received, a gap of about {gap_ms} ms; A now routes C via {:?}",
        next_hop(&t, "a", &ac)
    );
    assert!(
        received >= 800 - 500,
        "the flow survives with a gap under 5 s: {sum}"
    );
    assert_ne!(
        next_hop(&t, "a", &ac),
        Some(primary),
        "A moved to the alternate"
    );
    // C's N+1 flow is on the worker of its next hop's port towards A; A's PDUs came on
    // the other port before the cut (A's primary is not C's) or after it (A's alternate
    // is C's old next hop): they were handed over, none dropped.
    // B and D forward between their two AF_XDP ports (one worker, one UMEM): in place,
    // and most of it decided in one pass (the next hops' headers are made; the full path
    // takes a PDU while tables change).
    let (in_place, one_pass): (u64, u64) = ["b", "d"]
        .iter()
        .map(|s| {
            let r = uni_row(&t, s, &format!("u{s}")).unwrap();
            eprintln!("{s}: {r}");
            let n = |k: &str| r[k].as_u64().unwrap_or(0);
            (n("dt_forwarded_in_place"), n("dt_forwarded_one_pass"))
        })
        .fold((0, 0), |(a, b), (x, y)| (a + x, b + y));
    assert!(in_place >= 100, "forwarded in place at B and D: {in_place}");
    assert!(
        one_pass <= in_place && one_pass * 2 >= in_place,
        "decided in one pass at B and D: {one_pass} of {in_place}"
    );
    let r = uni_row(&t, "c", "uc").unwrap();
    let n = |k: &str| r[k].as_u64().unwrap_or(0);
    eprintln!("C on two workers: {r}");
    assert!(n("dt_handed_off") > 0 && n("dt_handed_in") > 0, "{r}");
    assert_eq!((n("dt_drop_handoff"), n("dt_via_o7sd")), (0, 0), "{r}");
}

/// The chain A - B - C with a veth per link and B's data plane on two workers
/// (`--core 0,1`): its two ports, and so its DT N-1 flows with A and C, are on different
/// workers. A PDU whose next hop is on the other worker is handed to that worker's inbox
/// (`dt_handed_off`, `dt_handed_in`), never to o7sd (`dt_via_o7sd` and
/// `dt_forwarded_in_o7sd` stay); the pings get through.
#[test]
fn a_middle_ipcp_on_two_workers_hands_pdus_between_them() {
    if !can_run() {
        return;
    }
    let t = Topo::links("uw", &["a", "b", "c"], &[("a", "b"), ("b", "c")]);
    let eth = |s: &str, o: &str| {
        format!(
            "[eth-dix.e{o}]\nbootstrap=\"eth-{s}{o}\"\ndev=\"{}\"\nreg=[\"u{s}\"]\n\n",
            t.link_dev(s, o)
        )
    };
    let chain = Chain {
        layer: "two",
        eth: [eth("a", "b"), eth("b", "a") + &eth("b", "c"), eth("c", "b")],
        name: "oping-server",
        b_args: &["--core", "0,1"],
    };
    let (a, b, c) = uni_chain(&t, &chain);
    // B's two ports are on two workers.
    let workers: Vec<u64> = t
        .ctl_json("b", &["worker", "list"])
        .iter()
        .filter_map(|w| w["ports"].as_u64())
        .collect();
    assert_eq!(workers, vec![1, 1], "one port on each worker");
    let mut srv = t
        .cmd("c", &bin("oping"))
        .arg("--listen")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("c", "c", "oping-server");
    let found = eventually(Duration::from_secs(15), || {
        t.oping("a", &["-n", "oping-server", "-c", "1"])
            .1
            .status
            .success()
    });
    assert!(found, "{}\n{}\n{}", a.log(), b.log(), c.log());
    let before = uni_row(&t, "b", "ub").unwrap();
    let (sum, o) = t.oping("a", &["-n", "oping-server", "-c", "10", "-i", "10ms"]);
    let _ = srv.kill();
    let _ = srv.wait();
    assert_eq!(
        sum["received"],
        10,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let after = uni_row(&t, "b", "ub").unwrap();
    let n = |r: &Value, k: &str| r[k].as_u64().unwrap_or(0);
    for k in ["dt_handed_off", "dt_handed_in", "dt_forwarded"] {
        assert!(
            n(&after, k) >= n(&before, k) + 20,
            "{k}: {before} -> {after}"
        );
    }
    for k in [
        "dt_via_o7sd",
        "dt_forwarded_in_o7sd",
        "dt_drop_handoff",
        "dt_drop_n1",
    ] {
        assert_eq!(n(&after, k), n(&before, k), "{k}: {before} -> {after}");
    }
    eprintln!("two workers at B: {sum}; {after}");
}
