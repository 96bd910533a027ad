#!/usr/bin/env bash
# Installs the system packages the demo, the tests and CI use, when they are missing
# (Debian; needs root). Without root it only lists what is missing.
#   iproute2 (ip netns, veth), iputils-ping (benchmark baseline, XDP test), xxd (fuzz
#   corpora), bind9 + bind9-dnsutils (a real DNS server for the udp layers' DNS tests),
#   openssl (the tests' PKI), clang-19 + libbpf-dev (rebuild/check bpf/xdp_o7s.o), bpftool
#   (the XDP test reads the program's maps), valgrind (CI's performance gate,
#   scripts/perf-gate.sh, counts instructions with callgrind), curl (the metrics test
#   scrapes o7sd's Prometheus endpoint), tshark (the Wireshark dissector's tests run
#   tools/wireshark/o7s.lua in it), fonts-dejavu-core (the congestion experiment's plots,
#   o7s-congestion-report, draw their text with DejaVu Sans), python3 (the congestion
#   experiment's glue; the o7s-vpn tests' TCP transfer and MAC flood), arping (ARP across
#   the o7s-vpn --tap switch), nftables + ethtool (scripts/bench-frcp.sh: TCP's random
#   loss, and segments of wire size for it).
set -euo pipefail
need=""
command -v ip >/dev/null 2>&1 || need="$need iproute2"
command -v ping >/dev/null 2>&1 || need="$need iputils-ping"
command -v arping >/dev/null 2>&1 || [ -x /usr/sbin/arping ] || need="$need arping"
command -v python3 >/dev/null 2>&1 || need="$need python3"
command -v xxd >/dev/null 2>&1 || need="$need xxd"
[ -x /usr/sbin/named ] || need="$need bind9"
command -v dig >/dev/null 2>&1 || need="$need bind9-dnsutils"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v clang-19 >/dev/null 2>&1 || need="$need clang-19"
[ -f /usr/include/bpf/bpf_helpers.h ] || need="$need libbpf-dev"
command -v bpftool >/dev/null 2>&1 || [ -x /usr/sbin/bpftool ] || need="$need bpftool"
command -v valgrind >/dev/null 2>&1 || need="$need valgrind"
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v tshark >/dev/null 2>&1 || need="$need tshark"
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need="$need fonts-dejavu-core"
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need="$need nftables"
command -v ethtool >/dev/null 2>&1 || [ -x /usr/sbin/ethtool ] || need="$need ethtool"
# The TUN/TAP clone device: udev makes it 0666 on most distributions (opening it is
# harmless; creating a device needs CAP_NET_ADMIN). Some containers leave it 0600, root only,
# and then o7s-vpn run by a user with CAP_NET_ADMIN (docs/TUTORIALS.md) cannot open it.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
    if [ "$(id -u)" = 0 ]; then
        echo "setup.sh: /dev/net/tun was mode $(stat -c %a /dev/net/tun): made 0666, as udev does"
        chmod 0666 /dev/net/tun
    else
        echo "setup.sh: /dev/net/tun is mode $(stat -c %a /dev/net/tun): o7s-vpn needs root (or run this as root to make it 0666)" >&2
    fi
fi
if [ -z "$need" ]; then
    echo "setup.sh: all system packages present"
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "setup.sh: missing:$need (run as root to install them)" >&2
    exit 0
fi
echo "setup.sh: installing$need"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
