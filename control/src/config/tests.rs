#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use super::*;

#[test]
fn unicast_settings_are_read_and_checked() {
    let c = parse(
        "[unicast.u]\nbootstrap=\"l\"\nrouting=\"lfa\"\nls_t_update=5\ndht_k=4\ncongestion=\"none\"\n",
        "u.conf",
    )
    .unwrap();
    let u = c.ipcps[0].uni;
    assert_eq!((u.routing, u.t_update, u.dht_k, u.cong_avoid), (1, 5, 4, 0));
    for (bad, want) in [
        (
            "routing=\"ospf\"",
            "u.conf:3: routing: 'ospf': expected link-state, lfa or ecmp",
        ),
        ("dht_k=21", "u.conf:3: dht_k: 21: must be 1..=20"),
        ("addr_size=2", "u.conf:3: addr_size: 2: must be 4..=4"),
        (
            "dht_t_expire=\"x\"",
            "u.conf:3: dht_t_expire: expected an integer",
        ),
    ] {
        let e = parse(&format!("[unicast.u]\nbootstrap=\"l\"\n{bad}\n"), "u.conf").unwrap_err();
        assert_eq!(e.to_string(), want);
    }
}

#[test]
fn tutorial04_server() {
    let t = "[name.\"oping-server\"]\nprog=[\"/usr/bin/oping\"]\nargs=[\"-l\"]\n\n[eth-dix.wifi1]\nbootstrap=\"wifi-network\"\ndev=\"wlan0\"\nreg=[\"oping-server\"]\n";
    let c = parse(t, "tut04.conf").unwrap();
    assert_eq!(
        c.names[0].progs,
        vec![("/usr/bin/oping".into(), vec!["-l".into()], true)]
    );
    assert_eq!(c.ipcps[0].kind, IpcpKind::EthDix);
    assert_eq!(c.ipcps[0].dev.as_deref(), Some("wlan0"));
    assert_eq!(c.ipcps[0].reg, vec!["oping-server"]);
    assert_eq!(c.ipcps[0].ethertype, 0xA000);
}

#[test]
fn older_udp_table_and_lb() {
    let t = "[name.oping]\nlb=\"round-robin\"\nprog=[\"/usr/bin/oping\"]\n[udp.udp1]\nbootstrap=\"u\"\nip=\"127.0.0.1\"\n";
    let c = parse(t, "t05").unwrap();
    assert_eq!(c.names[0].lb, Lb::RoundRobin);
    assert!(!c.names[0].progs[0].2, "no args: not auto-started");
    assert_eq!(c.ipcps[0].kind, IpcpKind::Udp4);
    assert_eq!(c.ipcps[0].hash, HashAlgo::Md5);
    assert_eq!(c.notes.len(), 1);
}

#[test]
fn ls_withdraw_is_a_local_boolean_on_by_default() {
    let on = parse("[unicast.u]\nbootstrap=\"l\"\n", "w.conf").unwrap();
    assert!(on.ipcps[0].uni.withdraw);
    let off = parse(
        "[unicast.u]\nbootstrap=\"l\"\nls_withdraw=false\n",
        "w.conf",
    )
    .unwrap();
    assert!(!off.ipcps[0].uni.withdraw);
    let e = parse("[unicast.u]\nbootstrap=\"l\"\nls_withdraw=0\n", "w.conf").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (3, "ls_withdraw"));
}

#[test]
fn impairment_keys_are_read_for_ethernet_and_udp_and_refused_elsewhere() {
    let c = parse(
        "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\nloss=\"1%\"\ndup=0.001\nreorder=\"0.5%\"\ndelay=\"5ms\"\ncorrupt=\"0.2%\"\n",
        "i.conf",
    )
    .unwrap();
    assert_eq!(
        c.ipcps[0].impair,
        [
            Some("1%".to_string()),
            Some("0.001".to_string()),
            Some("0.5%".to_string()),
            Some("5ms".to_string()),
            Some("0.2%".to_string())
        ]
    );
    let e = parse(
        "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\ncorrupt=\"lots\"\n",
        "i.conf",
    )
    .unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (4, "corrupt"));
    let e = parse(
        "[eth-llc.x]\nbootstrap=\"l\"\ndev=\"lo\"\nloss=\"120%\"\n",
        "i.conf",
    )
    .unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (4, "loss"));
    let e = parse(
        "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\ndelay=\"3s\"\n",
        "i.conf",
    )
    .unwrap_err();
    assert_eq!(e.key, "delay");
    let u = parse(
        "[udp4.x]\nbootstrap=\"l\"\nip=\"127.0.0.1\"\nloss=\"1%\"\n",
        "i.conf",
    )
    .unwrap();
    assert_eq!(u.ipcps[0].impair[0].as_deref(), Some("1%"));
    assert!(parse("[unicast.x]\nbootstrap=\"l\"\nloss=\"1%\"\n", "i.conf").is_err());
    assert!(parse("[local.x]\nbootstrap=\"l\"\ndelay=\"1ms\"\n", "i.conf").is_err());
}

#[test]
fn member_keys_go_together_on_unicast_and_broadcast_tables_only() {
    let c = parse(
        "[unicast.u]\nbootstrap=\"l\"\nmember_ca=\"/ca.pem\"\nmember_crt=\"/u.pem\"\nmember_key=\"/u.key\"\n",
        "m.conf",
    )
    .unwrap();
    assert_eq!(
        c.ipcps[0].member,
        Some(MemberFiles {
            ca: "/ca.pem".into(),
            crt: "/u.pem".into(),
            key: "/u.key".into()
        })
    );
    let c = parse("[broadcast.b]\nbootstrap=\"l\"\n", "m.conf").unwrap();
    assert_eq!(c.ipcps[0].member, None);
    let e = parse(
        "[broadcast.b]\nbootstrap=\"l\"\nmember_ca=\"/ca.pem\"\nmember_key=\"/u.key\"\n",
        "m.conf",
    )
    .unwrap_err();
    assert_eq!(e.key, "member_ca");
    assert!(e.to_string().contains("go together"), "{e}");
    let e = parse(
        "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"lo\"\nmember_ca=\"/ca.pem\"\n",
        "m.conf",
    )
    .unwrap_err();
    assert_eq!(e.key, "member_ca");
    let e = parse("[unicast.u]\nbootstrap=\"l\"\nmember_crt=\"\"\n", "m.conf").unwrap_err();
    assert_eq!(e.key, "member_crt");
}

#[test]
fn an_ipcp_name_is_given_once_across_kinds() {
    let e = parse(
        "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\n\n[unicast.x]\nbootstrap=\"u\"\n",
        "t.conf",
    )
    .unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (5, "x"));
    assert!(e.to_string().contains("[eth-dix.x], line 1"), "{e}");
    assert!(parse(
        "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\n\n[unicast.y]\nbootstrap=\"u\"\n",
        "t.conf"
    )
    .is_ok());
}

#[test]
fn errors_name_file_line_and_key() {
    let e = parse(
        "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\nethertype=0x05\n",
        "a.conf",
    )
    .unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.line, e.key.as_str()),
        ("a.conf", 4, "ethertype")
    );
    let e = parse("[name.n]\n\nlb=\"fast\"\n", "b.conf").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (3, "lb"));
    assert!(e.to_string().starts_with("b.conf:3: lb: 'fast'"), "{e}");
    let e = parse("[eth-dix.x]\nbootstrap=\"l\"\n", "c.conf").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (1, "dev"));
    let e = parse("[frobnicate.x]\nbootstrap=\"l\"\n", "d.conf").unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (1, "frobnicate"));
    let e = parse(
        "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\ncolour=1\n",
        "e.conf",
    )
    .unwrap_err();
    assert_eq!((e.line, e.key.as_str()), (4, "colour"));
    let e = parse("[eth-dix.x\n", "f.conf").unwrap_err();
    assert_eq!(e.line, 1);
    let e = parse(
        "[eth-llc.x]\nbootstrap=\"l\"\ndev=\"lo\"\nethertype=0xA000\n",
        "g.conf",
    )
    .unwrap_err();
    assert_eq!(
        (e.line, e.key.as_str()),
        (4, "ethertype"),
        "eth-llc has no Ethertype"
    );
}

#[test]
fn a_name_may_require_the_servers_certificate() {
    let c = parse("[name.\"bank\"]\nserver_auth = \"required\"\n", "c.conf").unwrap();
    assert!(c.names[0].server_auth_required);
    let c = parse("[name.\"bank\"]\nserver_auth = \"optional\"\n", "c.conf").unwrap();
    assert!(!c.names[0].server_auth_required);
    let c = parse("[name.\"bank\"]\nlb = \"spill\"\n", "c.conf").unwrap();
    assert!(
        !c.names[0].server_auth_required,
        "optional by default, as the reference"
    );
    let e = parse("[name.\"bank\"]\nserver_auth = true\n", "c.conf")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("c.conf:2: server_auth: ") && e.contains("\"required\""),
        "{e}"
    );
}

#[test]
fn security_files_a_name_gives_must_exist() {
    let dir = std::env::temp_dir().join(format!("o7s-cfg-sec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let there = dir.join("enc.conf");
    std::fs::write(&there, "").unwrap();
    let missing = dir.join("opng-enc.conf");
    for key in [
        "server_enc_file",
        "server_crt_file",
        "server_key_file",
        "client_enc_file",
        "client_crt_file",
        "client_key_file",
    ] {
        let ok = format!("[name.\"oping\"]\n{key}=\"{}\"\n", there.display());
        let c = parse(&ok, "s.conf").unwrap();
        assert_eq!(c.names[0].paths, vec![(key.to_string(), there.clone())]);
        // A mistyped path: refused with the file, line, key and path, not taken as "no
        // encryption" or "no authentication".
        let bad = format!("[name.\"oping\"]\n{key}=\"{}\"\n", missing.display());
        let e = parse(&bad, "s.conf").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("s.conf:2: {key}: '{}': ", missing.display())),
            "{e}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_eth_dix_layer_may_not_take_an_ethertype_of_the_host_s_stack() {
    let with = |e: &str| {
        parse(
            &format!("[eth-dix.e]\nbootstrap=\"l\"\ndev=\"veth0\"\nethertype={e}\n"),
            "e.conf",
        )
    };
    assert_eq!(with("0xA001").unwrap().ipcps[0].ethertype, 0xA001);
    assert_eq!(with("0x0600").unwrap().ipcps[0].ethertype, 0x0600);
    for (e, want) in [
        (
            "0x0800",
            "e.conf:4: ethertype: 0x0800 is IPv4, which the host itself speaks",
        ),
        ("0x86DD", "e.conf:4: ethertype: 0x86dd is IPv6"),
        ("0x0806", "e.conf:4: ethertype: 0x0806 is ARP"),
        (
            "0x05FF",
            "e.conf:4: ethertype: 0x05ff: must be at least 0x0600 and not 0xFFFF",
        ),
        (
            "0xFFFF",
            "e.conf:4: ethertype: 0xffff: must be at least 0x0600",
        ),
        ("0x10000", "e.conf:4: ethertype: 65536: must fit 16 bits"),
        ("-1", "e.conf:4: ethertype: -1: must fit 16 bits"),
    ] {
        let got = with(e).unwrap_err().to_string();
        assert!(got.starts_with(want), "{e}: {got}");
    }
}

#[test]
fn ethertype_refused_names_each_host_protocol_and_passes_the_rest() {
    for &(t, what) in HOST_ETHERTYPES {
        assert!(
            ethertype_refused(t).is_some_and(|w| w.contains(what)),
            "{t:#x}"
        );
    }
    // Around them, and the default: taken.
    for t in [0x0600, 0x07ff, 0x0801, 0x86dc, 0x86de, 0xa000, 0xfffe] {
        assert_eq!(ethertype_refused(t), None, "{t:#x}");
    }
}

#[test]
fn shim_ipcps_bootstrap_only_and_their_dev_is_an_interface_name() {
    for (conf, want) in [
        (
            "[eth-dix.e]\nenrol=\"x\"\n",
            "c.conf:2: enrol: a eth-dix IPCP bootstraps a layer of its own",
        ),
        (
            "[udp4.u]\nenrol=\"x\"\nip=\"127.0.0.1\"\n",
            "c.conf:2: enrol: a udp4 IPCP bootstraps",
        ),
        (
            "[eth-llc.e]\nbootstrap=\"l\"\n",
            "c.conf:1: dev: [eth-llc.e] needs dev=",
        ),
        (
            "[udp6.u]\nbootstrap=\"l\"\n",
            "c.conf:1: ip: [udp6.u] needs ip=",
        ),
        (
            "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"../../tmp/x\"\n",
            "c.conf:3: dev: '../../tmp/x': an interface name is not '.' or '..' and holds no '/'",
        ),
        (
            "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"\"\n",
            "c.conf:3: dev: '': an interface name has 1 to 15 bytes",
        ),
        (
            "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"a-very-long-name0\"\n",
            "c.conf:3: dev: 'a-very-long-name0': an interface name has 1 to 15 bytes",
        ),
        (
            "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"a b\"\n",
            "c.conf:3: dev: 'a b': an interface name holds no white space",
        ),
    ] {
        let e = parse(conf, "c.conf").unwrap_err().to_string();
        assert!(e.starts_with(want), "{conf:?}: {e}");
    }
    // Unicast and broadcast IPCPs enrol; a 15-byte interface name is one.
    let c = parse(
        "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"abcdefghijklmno\"\n[unicast.u]\nenrol=\"x\"\n[broadcast.b]\nenrol=\"y\"\n",
        "c.conf",
    )
    .unwrap();
    assert_eq!(c.ipcps[0].dev.as_deref(), Some("abcdefghijklmno"));
    assert_eq!(c.ipcps[1].enrol.as_deref(), Some("x"));
    assert_eq!(c.ipcps[2].enrol.as_deref(), Some("y"));
}

#[test]
fn names_in_a_config_are_names_as_o7sctl_and_apps_give_them() {
    let long = "n".repeat(256);
    for (conf, want) in [
        (
            format!("[name.\"{long}\"]\nlb=\"spill\"\n"),
            "c.conf:1: ".to_string() + &long + ": a name is at most 255 bytes",
        ),
        (
            "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"lo\"\nreg=[\"\"]\n".into(),
            "c.conf:4: reg: a name cannot be empty".into(),
        ),
        (
            "[unicast.u]\nbootstrap=\"a\\nb\"\n".into(),
            "c.conf:2: bootstrap: a name cannot hold control characters".into(),
        ),
        (
            "[unicast.u]\nenrol=\"x\"\nconn=[\"\"]\n".into(),
            "c.conf:3: conn: a name cannot be empty".into(),
        ),
        (
            "[unicast.\"a\\tb\"]\nbootstrap=\"l\"\n".into(),
            // (Its header is not found by its text: no line number.)
            "c.conf: a\\tb: a name cannot hold control characters".into(),
        ),
    ] {
        let e = parse(&conf, "c.conf").unwrap_err().to_string();
        assert!(e.starts_with(&want), "{conf:?}: {e}");
    }
    let n255 = "n".repeat(255);
    let c = parse(&format!("[name.\"{n255}\"]\nlb=\"spill\"\n"), "c.conf").unwrap();
    assert_eq!(c.names[0].name, n255);
}

#[test]
fn a_udp_layer_s_dns_server_is_an_address() {
    let with = |d: &str| {
        parse(
            &format!("[udp4.u]\nbootstrap=\"l\"\nip=\"127.0.0.1\"\ndns=\"{d}\"\n"),
            "u.conf",
        )
    };
    assert_eq!(
        with("127.0.0.1").unwrap().ipcps[0].dns.as_deref(),
        Some("127.0.0.1")
    );
    assert!(with("[::1]:5353").is_ok());
    let e = with("nameserver").unwrap_err().to_string();
    assert!(
        e.starts_with("u.conf:4: dns: 'nameserver': expected an IP address"),
        "{e}"
    );
}

#[test]
fn keys_o7s_cannot_honour_are_refused_or_noted() {
    // A unicast layer hashing otherwise than o7s's directory does: refused.
    let e = parse(
        "[unicast.u]\nbootstrap=\"l\"\nhash=\"SHA3_512\"\n",
        "c.conf",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with(
            "c.conf:3: hash: 'SHA3_512': o7s's unicast layers hash names with SHA3_256 only"
        ),
        "{e}"
    );
    assert!(parse(
        "[unicast.u]\nbootstrap=\"l\"\nhash=\"SHA3_256\"\n",
        "c.conf"
    )
    .is_ok());
    // An eth layer may hash otherwise.
    assert!(parse(
        "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"lo\"\nhash=\"SHA3_512\"\n",
        "c.conf"
    )
    .is_ok());
    // Keys that are read but do nothing here: said, not refused (the reference takes them).
    let c = parse(
        "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"lo\"\nconn=[\"x\"]\n[broadcast.b]\nbootstrap=\"m\"\nreg=[\"n\"]\n",
        "c.conf",
    )
    .unwrap();
    assert_eq!(c.notes.len(), 2, "{:?}", c.notes);
    assert!(
        c.notes[0]
            .starts_with("c.conf:1: [eth-dix.e] conn: only unicast and broadcast IPCPs connect"),
        "{:?}",
        c.notes
    );
    assert!(
        c.notes[1].starts_with("c.conf:5: [broadcast.b] reg: o7s registers no names"),
        "{:?}",
        c.notes
    );
    // A table without a name.
    let e = parse("[unicast]\nbootstrap=\"l\"\n", "c.conf")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "c.conf:1: unicast: [unicast] needs a name: [unicast.NAME]"
    );
}
