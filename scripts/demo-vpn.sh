#!/usr/bin/env bash
# Ethernet over Ouroboros flows in one command (docs/TUTORIALS.md "IP over Ouroboros"): hosts
# A, B and C on one Ethernet (network namespaces on a bridge), an eth-dix layer, o7s-vpn
# --tap on each: A serves the name "vswitch", B and C allocate flows to it, so A's switch
# joins the three TAP devices into one segment (10.88.0.0/24). B pings C with an empty ARP
# cache while tcpdump (or tshark) watches B's TAP device: the ARP request goes out as a
# broadcast, A's switch floods it to C, C's reply comes back unicast, then ICMP; then the
# same over IPv6 to C's link-local address (neighbour solicitation, multicast, flooded).
# Prints A's MAC table (o7s-vpn --status). Fails unless every ping comes back.
# Needs root. Everything it made goes on exit.
#   scripts/demo-vpn.sh [-c COUNT]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=3
while [ $# -gt 0 ]; do
    case "$1" in
    -c) count=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo-vpn.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[[ "$count" =~ ^[1-9][0-9]*$ ]] || { echo "demo-vpn.sh: -c takes a count of 1 or more" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "demo-vpn.sh: needs root (it creates network namespaces and TAP devices)" >&2; exit 1; }
for t in ip ping python3 cargo; do
    command -v "$t" >/dev/null || { echo "demo-vpn.sh: $t is missing (scripts/setup.sh installs what the project uses)" >&2; exit 1; }
done
# ARP, ICMP, and IPv6 echo and neighbour discovery (not MLD or router solicitations).
filter="arp or icmp or icmp6[0] == 128 or icmp6[0] == 129 or icmp6[0] == 135 or icmp6[0] == 136"
if command -v tcpdump >/dev/null; then
    sniff=(tcpdump -l -n -e -i); sniff_tail=("$filter")
elif command -v tshark >/dev/null; then
    sniff=(tshark -l -n -i); sniff_tail=(-f "$filter")
else
    echo "demo-vpn.sh: neither tcpdump nor tshark is installed (apt-get install tcpdump; scripts/setup.sh installs tshark)" >&2
    exit 1
fi
echo "== building (release)"
(cd "$root" && cargo build --release --locked -q -p o7s-control -p o7s-dataplane -p o7s-vpn -p o7sctl)
bin=$root/target/release
name=$("$(dirname "$0")/netns.sh" unique o7v 12)
tmp=$(mktemp -d /tmp/o7s-demo-vpn.XXXXXX)
cleanup() {
    for p in "$tmp"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    sleep 0.5
    "$root/scripts/netns.sh" down "$name"
    rm -rf "$tmp"
}
trap cleanup EXIT
"$root/scripts/netns.sh" bridge "$name" a b c
on() { # host command...
    local h=$1; shift
    ip netns exec "$name-$h" env PATH="$bin:$PATH" O7S_RUNDIR="$tmp/run-$h" "$@"
}
for h in a b c; do
    {
        [ "$h" = a ] && printf '[name."vswitch"]\nlb="round-robin"\n\n'
        printf '[eth-dix.e]\nbootstrap="eth"\ndev="%s"\n' "$name-v$h"
        [ "$h" = a ] && printf 'reg=["vswitch"]\n'
    } >"$tmp/$h.conf"
    on "$h" o7sd --config "$tmp/$h.conf" >"$tmp/o7sd-$h.log" 2>&1 &
    echo $! >"$tmp/o7sd-$h.pid"
    for _ in $(seq 100); do [ -S "$tmp/run-$h/o7sd.sock" ] && break; sleep 0.05; done
    [ -S "$tmp/run-$h/o7sd.sock" ] || { echo "demo-vpn.sh: o7sd on $h did not start:" >&2; cat "$tmp/o7sd-$h.log" >&2; exit 1; }
done
vpn() { # host ip args...
    local h=$1 ip=$2; shift 2
    on "$h" o7s-vpn --tap -i "$ip" -m 24 --dev tap0 --json "$@" >"$tmp/vpn-$h.json" 2>"$tmp/vpn-$h.log" &
    echo $! >"$tmp/vpn-$h.pid"
}
echo "== A: o7s-vpn --tap --bind vswitch -i 10.88.0.1 -m 24 --dev tap0"
vpn a 10.88.0.1 --bind vswitch
for _ in $(seq 100); do
    on a o7sctl name list --json 2>/dev/null | python3 -c "import json,sys; sys.exit(0 if any(x['name']=='vswitch' and x.get('accepting',0) for x in json.load(sys.stdin)) else 1)" && break
    sleep 0.1
done
for h in b c; do
    ip=10.88.0.$([ "$h" = b ] && echo 2 || echo 3)
    echo "== ${h^^}: o7s-vpn --tap -n vswitch -i $ip -m 24 --dev tap0"
    vpn "$h" "$ip" -n vswitch
    for _ in $(seq 100); do grep -q "switch port up" "$tmp/vpn-$h.log" && break; sleep 0.1; done
    grep -q "switch port up" "$tmp/vpn-$h.log" || { echo "demo-vpn.sh: $h's port did not come up:" >&2; cat "$tmp/vpn-$h.log" >&2; exit 1; }
    sed 's/^/   /' "$tmp/vpn-$h.log"
done
for h in a b c; do echo "   ${h^^}'s tap0: $(on "$h" cat /sys/class/net/tap0/address)"; done
echo "== B: ${sniff[0]} on tap0 while B pings C ($count), its ARP cache empty"
# IPv6 duplicate address detection first (its solicitations are not the point here).
for _ in $(seq 50); do
    [ -z "$(for h in a b c; do on "$h" ip -6 addr show dev tap0 tentative; done)" ] && break
    sleep 0.1
done
on b ip neigh flush dev tap0
on b "${sniff[@]}" tap0 "${sniff_tail[@]}" >"$tmp/sniff.txt" 2>"$tmp/sniff.err" &
echo $! >"$tmp/sniff.pid"
sleep 1.5
ok=1
on b ping -c "$count" -i 0.2 -W 2 10.88.0.3 >"$tmp/ping.txt" || ok=""
# (ping exits 0 when some replies came: every one must.)
grep -q " $count received" "$tmp/ping.txt" || ok=""
c6=$(on c ip -6 -o addr show dev tap0 scope link | sed -n 's/.* inet6 \([^/]*\)\/.*/\1/p' | head -1)
on b ping -6 -c 1 -W 2 "$c6%tap0" >"$tmp/ping6.txt" || ok=""
grep -q " 1 received" "$tmp/ping6.txt" || ok=""
sleep 0.5
kill "$(cat "$tmp/sniff.pid")" 2>/dev/null || true
sleep 0.3
sed 's/^/   /' "$tmp/sniff.txt"
grep -h "packets transmitted" "$tmp/ping.txt" "$tmp/ping6.txt" | sed 's/^/   /'
echo "== A: o7s-vpn --status"
on a o7s-vpn --status | python3 -c "
import json, sys
s = json.loads(sys.stdin.readline())
print('   flows', s['flows'], ' switch', json.dumps(s['switch']))
for m in s['macs']:
    print(f\"   {m['mac']}  {m['port']:8s}  seen {m['seen_s_ago']} s ago\")"
[ -n "$ok" ] || { echo "demo-vpn.sh: not every ping came back" >&2; exit 1; }
echo "== every ping came back"
