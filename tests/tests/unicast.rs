//! Unicast layers between o7sd instances (issue 15). So far: a unicast IPCP bootstraps a
//! layer on one host and one on another host enrols through it over eth-dix, with the
//! reference's CEP and OEP messages on the wire (o7s_proto::enroll driven by o7sd, the N-1
//! flow allocated and accepted by o7sd itself).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

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
            "[eth-dix.e]\nbootstrap=\"eth\"\ndev=\"{}\"\nreg=[\"ua\"]\n\n[unicast.ua]\nbootstrap=\"ulayer\"\nautobind=true\n",
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
