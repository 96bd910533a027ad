//! o7s-vpn (issue 28): IP over an Ouroboros flow through a TUN device on each side, as the
//! reference's ovpn does it: one IP packet per SDU, nothing added. Two hosts over an
//! eth-dix layer: ping across the tunnel, a 1 GiB TCP transfer whose digest is compared at both
//! ends, the frames on the wire checked byte by byte (the eth-dix payload is the IP packet
//! itself), SDUs that are not IP packets dropped and counted, and the counters at the end.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use o7s_integration::{bin, can_run, spawn_ready_line, tool, unique, Topo};
use std::process::{Child, Stdio};
use std::time::Duration;

const SERVER_IP: &str = "10.77.0.1";
const CLIENT_IP: &str = "10.77.0.2";

fn conf(dev: &str, reg: Option<&str>) -> String {
    let mut c = String::new();
    if let Some(n) = reg {
        c.push_str(&format!("[name.\"{n}\"]\nlb=\"round-robin\"\n\n"));
    }
    c.push_str(&format!(
        "[eth-dix.e1]\nbootstrap=\"vpn-layer\"\ndev=\"{dev}\"\n"
    ));
    if let Some(n) = reg {
        c.push_str(&format!("reg=[\"{n}\"]\n"));
    }
    c
}

fn stop(c: Child) -> serde_json::Value {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(c.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    );
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success(), "o7s-vpn exited {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!("o7s-vpn's counters are not JSON ({e}): {text}");
    })
}

/// The IP packets carried in eth-dix data frames of `pcap` (endpoint id not 0).
fn carried_packets(pcap: &[u8]) -> Vec<Vec<u8>> {
    let (recs, _) = o7s_wire::capfile::parse_partial(pcap).unwrap();
    recs.iter()
        .filter_map(|r| {
            let d = &r.data;
            if d.len() < 18 || d[12..14] != [0xa0, 0x00] || d[14..16] == [0, 0] {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([d[16], d[17]]));
            d.get(18..18 + len).map(<[u8]>::to_vec)
        })
        .collect()
}

/// TCP through the tunnel from `from` to `to`'s `ip`: 1 GiB of seeded bytes (64 KiB windows
/// at varying offsets of a 16 MiB random pool, so no two neighbouring blocks are alike),
/// SHA-256 at both ends, compared.
fn tcp_gib(t: &Topo, from: &str, to: &str, ip: &str) {
    let srv = t
        .cmd(to, std::path::Path::new("python3"))
        .args(["-c", &format!(
            "import socket,hashlib\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{ip}',5201));s.listen(1)\nc,_=s.accept();h=hashlib.sha256();n=0\nwhile True:\n d=c.recv(65536)\n if not d: break\n h.update(d);n+=len(d)\nprint(n,h.hexdigest())"
        )])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let cli = t
        .cmd(from, std::path::Path::new("python3"))
        .args(["-c", &format!(
            "import socket,hashlib,random\nr=random.Random(28);p=r.randbytes((16<<20)+65536);h=hashlib.sha256();s=socket.create_connection(('{ip}',5201),timeout=30)\nfor i in range(16384):\n o=(i*40503)%(16<<20);d=p[o:o+65536];h.update(d);s.sendall(d)\ns.close();print(16384*65536,h.hexdigest())"
        )])
        .output()
        .unwrap();
    let sent = String::from_utf8_lossy(&cli.stdout).trim().to_string();
    let got = srv.wait_with_output().unwrap();
    let got = String::from_utf8_lossy(&got.stdout).trim().to_string();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(got, sent, "1 GiB over TCP: digests differ");
    assert!(sent.starts_with("1073741824 "), "{sent}");
}

#[test]
fn ip_crosses_an_eth_dix_layer_one_packet_per_sdu_with_nothing_added() {
    if !can_run() || !tool("ping") || !tool("python3") {
        return;
    }
    let t = Topo::pair("vpn");
    let name = unique("vpn");
    let _b = t.daemon("b", &conf(&t.dev("b"), Some(&name)));
    let _a = t.daemon("a", &conf(&t.dev("a"), None));
    let tun_b = unique("tb");
    let tun_a = unique("ta");
    let server = t
        .cmd("b", &bin("o7s-vpn"))
        .args([
            "--bind", &name, "-i", SERVER_IP, "-m", "24", "--json", "--dev", &tun_b,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("b", "b", &name);
    // A capture on A's port from before the tunnel: the frames that carry it.
    let pcap = t.rundir("a").join("vpn.pcap");
    let mut cap = t
        .cmd("a", &bin("o7sctl"))
        .args(["capture", &t.dev("a"), "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let client = spawn_ready_line(
        t.cmd("a", &bin("o7s-vpn"))
            .args([
                "-n",
                &name,
                "-i",
                CLIENT_IP,
                "-m",
                "255.255.255.0",
                "--json",
                "--dev",
                &tun_a,
            ])
            .stdout(Stdio::piped()),
        "tunnel up",
    );
    // The TUN device's MTU is the flow's largest SDU (an eth-dix flow: 1500 - 4).
    let link = t
        .cmd("a", std::path::Path::new("ip"))
        .args(["-o", "link", "show", &tun_a])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    assert!(link.contains("mtu 1496") && link.contains("UP"), "{link}");

    let ping = t
        .cmd("a", std::path::Path::new("ping"))
        .args(["-c", "5", "-i", "0.2", "-W", "2", SERVER_IP])
        .output()
        .unwrap();
    let ping_out = String::from_utf8_lossy(&ping.stdout).to_string();
    assert!(
        ping.status.success() && ping_out.contains("5 received"),
        "{ping_out}{}",
        String::from_utf8_lossy(&ping.stderr)
    );

    tcp_gib(&t, "a", "b", SERVER_IP);

    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(cap.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = cap.wait();
    let ca = stop(client);
    let cb = stop(server);
    // The counters: both sides carried the pings and the transfer; nothing was refused.
    for c in [&ca, &cb] {
        assert_eq!(c["flows"], 1, "{c}");
        assert!(c["tx_packets"].as_u64().unwrap() >= 5, "{c}");
        assert!(c["rx_packets"].as_u64().unwrap() >= 5, "{c}");
        assert_eq!(c["rx_not_ip"], 0, "{c}");
        assert_eq!(c["tx_too_big"], 0, "{c}");
    }
    assert!(ca["tx_bytes"].as_u64().unwrap() > 1 << 30, "{ca}");
    // Reads from the device are batched: some poll found more than one packet.
    assert!(
        ca["tun_polls"].as_u64().unwrap() < ca["tx_packets"].as_u64().unwrap(),
        "{ca}"
    );

    // On the wire: each data frame's SDU is one whole IP packet, its total length the
    // eth-dix length (ovpn's format: no header, no trailer). The five echo requests are
    // there as the kernel made them.
    let bytes = std::fs::read(&pcap).unwrap();
    let packets = carried_packets(&bytes);
    assert!(
        !packets.is_empty(),
        "no data frames captured ({} bytes)",
        bytes.len()
    );
    let mut echoes = 0;
    for p in &packets {
        // The kernel sends IPv6 (router solicitations) on the device too.
        let total = match p[0] >> 4 {
            4 => usize::from(u16::from_be_bytes([p[2], p[3]])),
            6 => 40 + usize::from(u16::from_be_bytes([p[4], p[5]])),
            _ => panic!("not IP: {:02x?}", &p[..p.len().min(24)]),
        };
        assert_eq!(total, p.len(), "an SDU is not exactly one IP packet");
        if p[9] == 1 && p[12..16] == [10, 77, 0, 2] && p[16..20] == [10, 77, 0, 1] && p[20] == 8 {
            echoes += 1;
        }
    }
    assert_eq!(echoes, 5, "{} packets", packets.len());
}

/// The server side refuses what is not IP: a flow to it whose SDUs are not IP packets
/// (ocbr's) gets them counted and dropped, none reaches the TUN device, and the server
/// stays up (it is stopped by SIGINT and prints its counters).
#[test]
fn sdus_that_are_not_ip_packets_are_counted_and_dropped() {
    if !can_run() || !tool("python3") {
        return;
    }
    let t = Topo::pair("vpnb");
    let name = unique("vpnb");
    let _b = t.daemon("b", &conf(&t.dev("b"), Some(&name)));
    let _a = t.daemon("a", &conf(&t.dev("a"), None));
    let server = t
        .cmd("b", &bin("o7s-vpn"))
        .args([
            "--bind",
            &name,
            "-i",
            SERVER_IP,
            "-m",
            "24",
            "--json",
            "--dev",
            &unique("tb"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("b", "b", &name);
    // ocbr sends 1000-byte SDUs of a counter pattern: not IP packets.
    let o = t
        .cmd("a", &bin("ocbr"))
        .args(["-n", &name, "-s", "1000", "-r", "1M", "-d", "0.5"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::thread::sleep(Duration::from_millis(500));
    let c = stop(server);
    assert!(c["rx_not_ip"].as_u64().unwrap() >= 10, "{c}");
    assert_eq!(c["rx_packets"], 0, "{c}");
    assert_eq!(c["flows"], 1, "{c}");
}

/// The tutorial's unicast layer A - B - C (docs/tutorial-unicast), C serving o7s-vpn: IP
/// from A reaches C through B's IPCP, which forwards the DT PDUs (counted), and the TUN
/// device's MTU is the unicast flow's largest SDU, below the Ethernet one; 1 GiB over TCP
/// crosses with equal digests.
#[test]
fn ip_crosses_a_unicast_layer_through_a_middle_node() {
    if !can_run() || !tool("ping") || !tool("python3") {
        return;
    }
    let t = Topo::bridged("vpu", &["a", "b", "c"]);
    let name = unique("vpnu");
    let conf = |h: &str| {
        let p = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../docs/tutorial-unicast/{h}.conf"));
        let c = std::fs::read_to_string(p)
            .unwrap()
            .replace("dev=\"eth0\"", &format!("dev=\"{}\"", t.dev(h)));
        if h == "c" {
            format!(
                "[name.\"{name}\"]\nlb=\"round-robin\"\n\n{}",
                c.replace(
                    "reg=[\"oping-server\"]",
                    &format!("reg=[\"oping-server\", \"{name}\"]"),
                )
            )
        } else {
            c
        }
    };
    let row = |h: &str, n: &str| {
        t.ctl_json(h, &["ipcp", "list"])
            .into_iter()
            .find(|r| r["name"] == n)
            .unwrap_or(serde_json::Value::Null)
    };
    let up = |h: &str, n: &str, state: &str| {
        o7s_integration::eventually(Duration::from_secs(15), || row(h, n)["state"] == state)
    };
    let _a = t.daemon("a", &conf("a"));
    assert!(up("a", "ua", "bootstrapped"));
    let b = t.daemon("b", &conf("b"));
    assert!(up("b", "ub", "enrolled"), "{}", b.log());
    let c = t.daemon("c", &conf("c"));
    assert!(up("c", "uc", "enrolled"), "{}", c.log());
    let server = t
        .cmd("c", &bin("o7s-vpn"))
        .args([
            "--bind",
            &name,
            "-i",
            SERVER_IP,
            "-m",
            "24",
            "--json",
            "--dev",
            &unique("tc"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("c", "c", &name);
    let tun_a = unique("ta");
    // The name's directory entry may take a moment to reach A: allocate again until it does.
    let client = spawn_ready_line(
        t.cmd("a", &bin("o7s-vpn"))
            .args([
                "-n", &name, "-i", CLIENT_IP, "-m", "24", "--json", "--dev", &tun_a,
            ])
            .stdout(Stdio::piped()),
        "tunnel up",
    );
    let fwd_before = row("b", "ub")["dt_forwarded"].as_u64().unwrap_or(0);
    let link = t
        .cmd("a", std::path::Path::new("ip"))
        .args(["-o", "link", "show", &tun_a])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    let mtu: usize = link
        .split_whitespace()
        .skip_while(|w| *w != "mtu")
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        (1200..1496).contains(&mtu),
        "a unicast flow's SDU is smaller: {link}"
    );
    let ping = t
        .cmd("a", std::path::Path::new("ping"))
        .args([
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "2",
            "-s",
            &(mtu - 28).to_string(),
            SERVER_IP,
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&ping.stdout).to_string();
    assert!(ping.status.success() && out.contains("5 received"), "{out}");
    // B forwarded the requests and the replies (and no more than a few others).
    let fwd = row("b", "ub")["dt_forwarded"].as_u64().unwrap_or(0) - fwd_before;
    assert!(fwd >= 10, "B forwarded {fwd} PDUs");
    tcp_gib(&t, "a", "c", SERVER_IP);
    let ca = stop(client);
    let cc = stop(server);
    assert!(ca["rx_packets"].as_u64().unwrap() >= 5, "{ca}");
    assert!(cc["rx_packets"].as_u64().unwrap() >= 5, "{cc}");
    assert_eq!(cc["rx_not_ip"], 0, "{cc}");
}

/// With tutorial 06's security configuration for the name (enc.conf on both sides, the
/// defaults: P-256, AES-256-GCM), the tunnel's flow is encrypted: the server's flow shows
/// the cipher, the pings cross, and no captured SDU is a plaintext IP packet; each is the
/// packet's length plus IV and tag (28 bytes).
#[test]
fn an_encrypted_name_gives_an_encrypted_tunnel() {
    if !can_run() || !tool("ping") {
        return;
    }
    let t = Topo::pair("vpne");
    let name = unique("vpne");
    for side in ["client", "server"] {
        let d = t.dir.join("security").join(side).join(&name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("enc.conf"), "").unwrap();
    }
    let b = t.daemon("b", &conf(&t.dev("b"), Some(&name)));
    let _a = t.daemon("a", &conf(&t.dev("a"), None));
    let server = t
        .cmd("b", &bin("o7s-vpn"))
        .args([
            "--bind",
            &name,
            "-i",
            SERVER_IP,
            "-m",
            "24",
            "--json",
            "--dev",
            &unique("tb"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("b", "b", &name);
    let pcap = t.rundir("a").join("vpne.pcap");
    let mut cap = t
        .cmd("a", &bin("o7sctl"))
        .args(["capture", &t.dev("a"), "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let client = spawn_ready_line(
        t.cmd("a", &bin("o7s-vpn"))
            .args([
                "-n",
                &name,
                "-i",
                CLIENT_IP,
                "-m",
                "24",
                "--json",
                "--dev",
                &unique("ta"),
            ])
            .stdout(Stdio::piped()),
        "tunnel up",
    );
    let ping = t
        .cmd("a", std::path::Path::new("ping"))
        .args(["-c", "5", "-i", "0.2", "-W", "2", SERVER_IP])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&ping.stdout).to_string();
    assert!(
        ping.status.success() && out.contains("5 received"),
        "{out}\n{}",
        b.log()
    );
    let flows = t.ctl_json("b", &["flow", "list"]);
    assert!(
        flows
            .iter()
            .any(|f| f["side"] == "accept" && f["cipher"] == "aes-256-gcm"),
        "{flows:?}"
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(cap.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = cap.wait();
    stop(client);
    stop(server);
    let packets = carried_packets(&std::fs::read(&pcap).unwrap());
    // ping's 56 data bytes: an 84-byte IP packet, 112 bytes encrypted.
    let sealed = packets.iter().filter(|p| p.len() == 84 + 28).count();
    assert!(
        sealed >= 5,
        "{} data frames, {sealed} of 112 bytes",
        packets.len()
    );
    for p in &packets {
        assert!(
            !(p.len() == 84 && p[0] == 0x45 && p[16..20] == [10, 77, 0, 1]),
            "a plaintext echo request crossed the wire"
        );
    }
}

/// The TAP state `o7s-vpn --status` prints at side `s`.
fn vpn_status(t: &Topo, s: &str) -> serde_json::Value {
    let o = t.cmd(s, &bin("o7s-vpn")).arg("--status").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    serde_json::from_str(text.lines().next().unwrap_or("")).unwrap()
}

/// The MAC address of device `dev` at side `s`.
fn mac_of(t: &Topo, s: &str, dev: &str) -> String {
    let o = t
        .cmd(s, std::path::Path::new("cat"))
        .arg(format!("/sys/class/net/{dev}/address"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `--tap`: three hosts on one eth-dix layer, B and C each with a flow to A, whose switch
/// joins them and its own TAP device into one Ethernet segment: B pings C (ARP and ICMP
/// through A's switch), A's `--status` shows B's and C's MACs behind their flows; C
/// restarts (a new flow, a new MAC) and is learnt again, its old flow's addresses gone.
#[test]
fn tap_devices_joined_by_flows_form_one_segment() {
    if !can_run() || !tool("ping") || !tool("arping") || !tool("python3") {
        return;
    }
    let t = Topo::bridged("vpt", &["a", "b", "c"]);
    let name = unique("vpt");
    let _a = t.daemon("a", &conf(&t.dev("a"), Some(&name)));
    let _b = t.daemon("b", &conf(&t.dev("b"), None));
    let _c = t.daemon("c", &conf(&t.dev("c"), None));
    let (ta, tb, tc) = (unique("xa"), unique("xb"), unique("xc"));
    let server = t
        .cmd("a", &bin("o7s-vpn"))
        .args([
            "--tap",
            "--bind",
            &name,
            "-i",
            "10.88.0.1",
            "-m",
            "24",
            "--json",
            "--dev",
            &ta,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("a", "a", &name);
    let client = |s: &str, ip: &str, dev: &str| {
        spawn_ready_line(
            t.cmd(s, &bin("o7s-vpn"))
                .args([
                    "--tap", "-n", &name, "-i", ip, "-m", "24", "--json", "--dev", dev,
                ])
                .stdout(Stdio::piped()),
            "switch port up",
        )
    };
    let cb = client("b", "10.88.0.2", &tb);
    let cc = client("c", "10.88.0.3", &tc);
    let ping = |from: &str, to: &str| {
        let o = t
            .cmd(from, std::path::Path::new("ping"))
            .args(["-c", "3", "-i", "0.2", "-W", "2", to])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(
            o.status.success() && out.contains("3 received"),
            "{from} -> {to}: {out}"
        );
    };
    ping("b", "10.88.0.3");
    ping("c", "10.88.0.1");
    let port_of = |st: &serde_json::Value, mac: &str| {
        st["macs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mac"] == mac)
            .map(|m| m["port"].as_str().unwrap_or("").to_string())
    };
    let (mb, mc) = (mac_of(&t, "b", &tb), mac_of(&t, "c", &tc));
    // The state is written once a second.
    let mut st = serde_json::Value::Null;
    o7s_integration::eventually(Duration::from_secs(3), || {
        st = vpn_status(&t, "a");
        port_of(&st, &mb).is_some() && port_of(&st, &mc).is_some()
    });
    let pb = port_of(&st, &mb).unwrap_or_else(|| panic!("B's {mb} not learnt: {st}"));
    let pc = port_of(&st, &mc).unwrap_or_else(|| panic!("C's {mc} not learnt: {st}"));
    assert!(
        pb.starts_with("flow ") && pc.starts_with("flow ") && pb != pc,
        "{st}"
    );
    assert_eq!(
        port_of(&st, &mac_of(&t, "a", &ta)).as_deref(),
        Some("tap"),
        "{st}"
    );
    assert_eq!(st["flows"].as_array().unwrap().len(), 2, "{st}");
    assert!(
        st["switch"]["flooded"].as_u64().unwrap() >= 2,
        "ARP broadcasts: {st}"
    );
    // C goes and comes back: its old flow's addresses go, the new ones are learnt.
    let c1 = stop(cc);
    assert!(c1["rx_packets"].as_u64().unwrap() >= 3, "{c1}");
    let tc2 = unique("xd");
    let cc2 = client("c", "10.88.0.3", &tc2);
    // C speaks first: its ARP request (flooded) tells B its new MAC, as on a real segment.
    ping("c", "10.88.0.2");
    ping("b", "10.88.0.3");
    let mc2 = mac_of(&t, "c", &tc2);
    o7s_integration::eventually(Duration::from_secs(3), || {
        st = vpn_status(&t, "a");
        port_of(&st, &mc2).is_some()
    });
    assert_eq!(port_of(&st, &mc), None, "C's old MAC stayed: {st}");
    let pc2 = port_of(&st, &mc2).unwrap_or_else(|| panic!("{st}"));
    assert!(pc2.starts_with("flow ") && pc2 != pc, "{st}");
    // ARP by itself across the switch: C asks who has B's address on its TAP device.
    let o = t
        .cmd("c", &o7s_integration::tool_path("arping").unwrap())
        .args(["-c", "3", "-i", &tc2, "10.88.0.2"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        o.status.success() && out.contains(&mb) && out.contains("3 packets received"),
        "arping C -> B: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A MAC flood from B: 10,000 broadcast frames, each from a new source address, written
    // to B's TAP device. A's switch keeps B's flow to its share of the table (a quarter)
    // and counts what it could not learn,
    // and B and C still reach each other. The flows are unreliable: on a loaded machine some
    // frames may be lost on the way (B's TAP queue, a full ring), so the count is checked
    // against what reached A's switch, not against 10,000.
    let st0 = vpn_status(&t, "a");
    let sw = |st: &serde_json::Value, k: &str| st["switch"][k].as_u64().unwrap_or(0);
    let flood = t
        .cmd("b", std::path::Path::new("python3"))
        .args([
            "-c",
            "import socket,sys,time\ns=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);s.bind((sys.argv[1],0))\nfor i in range(10000):\n s.send(b'\\xff'*6+bytes([2,0xee])+i.to_bytes(4,'big')+b'\\x88\\xb5'+bytes(46))\n if i%200==199: time.sleep(0.01)",
            &tb,
        ])
        .output()
        .unwrap();
    assert!(
        flood.status.success(),
        "{}",
        String::from_utf8_lossy(&flood.stderr)
    );
    // The state is written once a second: wait until A's switch has stopped counting the
    // flood (a snapshot taken during its last second shows only part of it).
    let mut last = u64::MAX;
    // Reads 2.5 s apart: two of them cannot show the same file unless it was not written
    // (or did not change) for a whole second.
    o7s_integration::eventually(Duration::from_secs(20), || {
        std::thread::sleep(Duration::from_millis(2500));
        st = vpn_status(&t, "a");
        let now = sw(&st, "flooded");
        std::mem::replace(&mut last, now) == now
    });
    let share = sw(&st, "max_per_flow");
    assert_eq!(share, sw(&st, "max") / 4, "{}", st["switch"]);
    let arrived = sw(&st, "flooded") - sw(&st0, "flooded");
    let delta = |k: &str| sw(&st, k) - sw(&st0, k);
    let accounted = delta("learnt") + delta("table_full") + delta("port_full");
    assert!(
        arrived >= 5_000,
        "fewer than half of the 10,000 frames reached A's switch: {} (before: {})",
        st["switch"],
        st0["switch"]
    );
    let on_b = st["macs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["port"] == pb.as_str())
        .count() as u64;
    assert_eq!(on_b, share, "B's flow holds its share: {}", st["switch"]);
    assert!(sw(&st, "size") < sw(&st, "max"), "{}", st["switch"]);
    // Every flood frame has a new source address: learnt, or counted as not learnt for a
    // full share. (A few other flooded frames, IPv6 multicasts of the hosts, have known
    // sources and are neither.)
    assert!(
        accounted <= arrived && accounted + 50 >= arrived,
        "{accounted} learnt, table_full or port_full of {arrived} flooded: {} (before: {})",
        st["switch"],
        st0["switch"]
    );
    assert!(
        delta("port_full") >= arrived - 50 - share,
        "{}",
        st["switch"]
    );
    ping("b", "10.88.0.3");
    ping("c", "10.88.0.2");
    stop(cc2);
    stop(cb);
    let ca = stop(server);
    assert_eq!(ca["flows"], 3, "{ca}");
}

/// `--peer NAME=PREFIX`: A has one TUN device and a flow to each of B and C (host routes
/// for their tunnel addresses); pings to both cross, a packet for an address no prefix
/// holds is counted `tx_no_route`. C's server stops: A counts what it sends to C as
/// `tx_peer_down` while B stays reachable; C's server comes back and A's flow to it is
/// allocated again on its own.
#[test]
fn several_peers_each_get_the_packets_of_their_prefix() {
    if !can_run() || !tool("ping") {
        return;
    }
    let t = Topo::bridged("vpp", &["a", "b", "c"]);
    let (nb, nc) = (unique("vpb"), unique("vpc"));
    let _a = t.daemon("a", &conf(&t.dev("a"), None));
    let _b = t.daemon("b", &conf(&t.dev("b"), Some(&nb)));
    let _c = t.daemon("c", &conf(&t.dev("c"), Some(&nc)));
    let server = |s: &str, name: &str, ip: &str| {
        let c = t
            .cmd(s, &bin("o7s-vpn"))
            .args(["--bind", name, "-i", ip, "-m", "24", "--json", "--dev"])
            .arg(unique("ps"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        t.wait_accepting(s, s, name);
        c
    };
    let sb = server("b", &nb, "10.66.0.2");
    let sc = server("c", &nc, "10.66.0.3");
    let a = spawn_ready_line(
        t.cmd("a", &bin("o7s-vpn"))
            .args([
                "-i",
                "10.66.0.1",
                "-m",
                "24",
                "--json",
                "--peer-timeout",
                "2000",
            ])
            .arg("--dev")
            .arg(unique("pa"))
            .args(["--peer", &format!("{nb}=10.66.0.2")])
            .args(["--peer", &format!("{nc}=10.66.0.3/32")])
            .stdout(Stdio::piped()),
        "tunnel up",
    );
    let ping = |to: &str, count: u32| {
        let o = t
            .cmd("a", std::path::Path::new("ping"))
            .args(["-c", &count.to_string(), "-i", "0.2", "-W", "1", to])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).contains(&format!("{count} received"))
    };
    // The second peer's flow may come up a moment after the first.
    for to in ["10.66.0.2", "10.66.0.3"] {
        assert!(
            o7s_integration::eventually(Duration::from_secs(5), || ping(to, 1)),
            "A cannot reach {to}"
        );
        assert!(ping(to, 3), "A -> {to}: not 3 of 3");
    }
    // No prefix holds 10.66.0.9 (on A's subnet: the kernel sends it to the device).
    assert!(!ping("10.66.0.9", 2));
    // C's server goes: A's packets for C are counted, B is still reached.
    let c1 = stop(sc);
    assert!(c1["rx_packets"].as_u64().unwrap() >= 4, "{c1}");
    assert!(
        o7s_integration::eventually(Duration::from_secs(10), || !ping("10.66.0.3", 1)),
        "C still answers with its server stopped"
    );
    assert!(ping("10.66.0.2", 3), "B lost while C was down");
    // A's flow to C times out (2 s of silence), and while C has no server A's packets for
    // C find no flow.
    assert!(
        o7s_integration::eventually(Duration::from_secs(10), || {
            t.ctl_json_in("a", "a", &["flow", "list"]).len() == 1
        }),
        "A's flow to C stayed up: {:?}",
        t.ctl_json_in("a", "a", &["flow", "list"])
    );
    assert!(!ping("10.66.0.3", 2));
    assert!(ping("10.66.0.2", 1), "B lost while C was down");
    // C's server is back: A's flow to C is allocated again.
    let sc2 = server("c", &nc, "10.66.0.3");
    assert!(
        o7s_integration::eventually(Duration::from_secs(15), || ping("10.66.0.3", 1)),
        "A's flow to C did not come back"
    );
    let ca = stop(a);
    assert!(ca["flows"].as_u64().unwrap() >= 3, "{ca}");
    assert!(ca["tx_no_route"].as_u64().unwrap() >= 2, "{ca}");
    assert!(ca["tx_peer_down"].as_u64().unwrap() >= 1, "{ca}");
    assert_eq!(ca["rx_not_ip"], 0, "{ca}");
    let cb = stop(sb);
    assert!(cb["rx_packets"].as_u64().unwrap() >= 7, "{cb}");
    stop(sc2);
}

/// No root needed: an unprivileged user (uid 65534) with CAP_NET_ADMIN alone runs the
/// client, which creates its TUN device and allocates its flow; the same user without the
/// capability is told what it lacks and nothing is left behind.
#[test]
fn a_client_needs_cap_net_admin_not_root() {
    if !can_run() || !tool("ping") || !tool("setpriv") {
        return;
    }
    // A /dev/net/tun only root may open (some containers; scripts/setup.sh makes it 0666,
    // as udev does) lets no unprivileged user in, capability or not.
    let mode = std::fs::metadata("/dev/net/tun")
        .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
        .unwrap_or(0);
    if mode & 0o006 != 0o006 {
        let why = format!("/dev/net/tun is mode {mode:04o}: run scripts/setup.sh (as root)");
        assert!(
            std::env::var("O7S_REQUIRE_ROOT").as_deref() != Ok("1"),
            "O7S_REQUIRE_ROOT=1 but {why}"
        );
        eprintln!("SKIPPED a_client_needs_cap_net_admin_not_root: {why}");
        return;
    }
    let t = Topo::pair("vpc");
    let name = unique("vpcap");
    let _b = t.daemon("b", &conf(&t.dev("b"), Some(&name)));
    let _a = t.daemon("a", &conf(&t.dev("a"), None));
    let server = t
        .cmd("b", &bin("o7s-vpn"))
        .args([
            "--bind", &name, "-i", SERVER_IP, "-m", "24", "--json", "--dev",
        ])
        .arg(unique("cb"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    t.wait_accepting("b", "b", &name);
    let as_nobody = |caps: &[&str]| {
        let mut c = t.cmd("a", &o7s_integration::tool_path("setpriv").unwrap());
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]);
        c.args(caps);
        c.arg(bin("o7s-vpn"));
        c.args(["-n", &name, "-i", CLIENT_IP, "-m", "24", "--json", "--dev"]);
        c
    };
    let dev = unique("cn");
    let denied = as_nobody(&[]).arg(&dev).output().unwrap();
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success(), "{err}");
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
    let link = t
        .cmd("a", std::path::Path::new("ip"))
        .args(["link", "show", &dev])
        .output()
        .unwrap();
    assert!(!link.status.success(), "a device was left: {link:?}");
    let client = spawn_ready_line(
        as_nobody(&["--inh-caps", "+net_admin", "--ambient-caps", "+net_admin"])
            .arg(&dev)
            .stdout(Stdio::piped()),
        "tunnel up",
    );
    let ping = t
        .cmd("a", std::path::Path::new("ping"))
        .args(["-c", "3", "-i", "0.2", "-W", "2", SERVER_IP])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&ping.stdout).to_string();
    assert!(ping.status.success() && out.contains("3 received"), "{out}");
    let ca = stop(client);
    assert!(ca["rx_packets"].as_u64().unwrap() >= 3, "{ca}");
    stop(server);
}
