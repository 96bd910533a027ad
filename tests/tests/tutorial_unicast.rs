//! docs/TUTORIALS.md "A unicast layer" as a newcomer follows it (issue 24): the page shows
//! the configuration files the demo uses, as they are, and those files, started in the
//! order the text says on three hosts on one Ethernet, give 10/10 pings from A to C.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use o7s_integration::{can_run, eventually, Topo};
use std::path::PathBuf;
use std::time::Duration;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn conf(h: &str) -> String {
    std::fs::read_to_string(repo().join(format!("docs/tutorial-unicast/{h}.conf"))).unwrap()
}

#[test]
fn the_tutorial_shows_its_configuration_files_as_they_are() {
    let page = std::fs::read_to_string(repo().join("docs/TUTORIALS.md")).unwrap();
    let blog = ["blog/router", "blog/client1", "blog/client2", "blog/server"];
    for h in ["a", "b", "c"].into_iter().chain(blog) {
        let head = format!("(`docs/tutorial-unicast/{h}.conf`):\n```toml\n");
        let at = page
            .find(&head)
            .unwrap_or_else(|| panic!("TUTORIALS.md does not show {h}.conf"));
        let body = &page[at + head.len()..];
        let shown = &body[..body.find("```").unwrap()];
        assert_eq!(
            shown,
            conf(h),
            "TUTORIALS.md's {h}.conf differs from the file"
        );
    }
    // The demo script uses the same files.
    let demo = std::fs::read_to_string(repo().join("scripts/demo-unicast.sh")).unwrap();
    assert!(demo.contains("docs/tutorial-unicast/$1.conf"));
    assert!(demo.contains("dir=$root/docs/tutorial-unicast/blog"));
    for h in blog {
        let file = h.trim_start_matches("blog/");
        assert!(demo.contains(&format!("\"$dir/{file}.conf\"")), "{h}");
    }
}

fn state(t: &Topo, h: &str, ipcp: &str) -> String {
    t.ctl_json(h, &["ipcp", "list"])
        .into_iter()
        .find(|r| r["name"] == ipcp)
        .map(|r| r["state"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn the_tutorial_runs_as_written_and_a_pings_c_through_b() {
    if !can_run() {
        return;
    }
    let t = Topo::bridged("tu", &["a", "b", "c"]);
    let with_dev = |h: &str| conf(h).replace("dev=\"eth0\"", &format!("dev=\"{}\"", t.dev(h)));
    // "Start A first, then B, then C."
    let a = t.daemon("a", &with_dev("a"));
    assert!(
        eventually(Duration::from_secs(10), || state(&t, "a", "ua")
            == "bootstrapped"),
        "{}",
        a.log()
    );
    let b = t.daemon("b", &with_dev("b"));
    assert!(
        eventually(Duration::from_secs(10), || state(&t, "b", "ub")
            == "enrolled"),
        "{}\n{}",
        a.log(),
        b.log()
    );
    let c = t.daemon("c", &with_dev("c"));
    assert!(
        eventually(Duration::from_secs(10), || state(&t, "c", "uc")
            == "enrolled"),
        "{}\n{}",
        b.log(),
        c.log()
    );
    // "oping -n oping-server -c 10 on A": the name resolves once the directory has it;
    // C's o7sd starts `oping --listen` for the first request.
    let mut got = 0;
    let ok = eventually(Duration::from_secs(20), || {
        let (sum, _) = t.oping("a", &["-n", "oping-server", "-c", "10", "-i", "50ms"]);
        got = sum["received"].as_u64().unwrap_or(0);
        got == 10
    });
    assert!(ok, "{got}/10\n{}\n{}\n{}", a.log(), b.log(), c.log());
    // "route list on A: C's address through B's".
    let addr = |h: &str, n: &str| {
        t.ctl_json(h, &["ipcp", "list"])
            .into_iter()
            .find(|r| r["name"] == n)
            .unwrap()["address"]
            .clone()
    };
    let (ab, ac) = (addr("b", "ub"), addr("c", "uc"));
    assert!(t
        .ctl_json("a", &["route", "list"])
        .iter()
        .any(|r| r["dst"] == ac && r["next_hop"] == ab));
    // The listings say what the tutorial says they show (issue 24): C's IPCP publishes
    // oping-server and can carry SDUs of its eth layer's MTU less the DT PCI; `name list`
    // on C says where the name is registered; A's directory names the hash and says when
    // it expires, in seconds from now.
    let uc = t
        .ctl_json("c", &["ipcp", "list"])
        .into_iter()
        .find(|r| r["name"] == "uc")
        .unwrap();
    assert_eq!(
        uc["registered"],
        serde_json::json!(["oping-server"]),
        "{uc}"
    );
    let eth_mtu = t
        .ctl_json("c", &["ipcp", "list"])
        .into_iter()
        .find(|r| r["name"] == "e")
        .unwrap()["mtu"]
        .as_u64()
        .unwrap();
    assert_eq!(uc["mtu"].as_u64(), Some(eth_mtu - 15), "{uc}");
    let names = t.ctl_json("c", &["name", "list"]);
    let n = names.iter().find(|r| r["name"] == "oping-server").unwrap();
    assert!(
        n["registered_in"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l == "uc"),
        "{n}"
    );
    let dht = t.ctl_json("a", &["dht", "list"]);
    let row = dht
        .iter()
        .find(|r| r["address"] == ac)
        .unwrap_or_else(|| panic!("{dht:?}"));
    assert_eq!(row["name"], "oping-server", "{row}");
    let left = row["expires_in_s"].as_i64().unwrap();
    assert!(left > 0 && left <= 86_400, "{row}");
    assert!(row.get("expires").is_none());
}
