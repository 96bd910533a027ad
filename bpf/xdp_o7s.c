// SPDX-License-Identifier: MIT OR GPL-2.0
//
// o7s XDP steering program. Frames to the port's MAC of its eth-dix Ethertype with a data
// eid (!= 0), and eth-llc UI frames to its MAC for a data SAP (logical 2..65), go to the
// AF_XDP socket of their RX queue (XSKMAP); management frames (eid 0, management SAP 0x80
// on the wire), frames to other stations (a bridge port, macvlan children, promiscuous
// mode) and all other traffic (IP, ARP, STP, SNAP, ...) pass to the kernel, so the host's
// own protocols on the same device keep working. Without a socket on the queue a data
// frame passes too (the AF_PACKET fallback then sees it). Per-CPU counters.
//
// Build: scripts/build-bpf.sh (clang-19); the object is committed next to this file.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Per-port settings, written by the loader: the eth-dix Ethertype (0: none), whether
// eth-llc frames are steered, and the port's MAC (data frames to another are not ours).
struct port_cfg {
	__u16 ethertype;
	__u8 llc;
	__u8 pad;
	__u8 mac[6];
	__u8 pad2[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct port_cfg);
} cfg SEC(".maps");

// Counter indices (the loader reads them with the same numbers).
enum {
	C_OURS = 0,      // frames of this port's Ouroboros layer (management, or data to its MAC)
	C_REDIRECT = 1,  // data frames sent to the AF_XDP socket
	C_MGMT = 2,      // management frames passed to the kernel
	C_NO_SOCKET = 3, // data frames passed because no socket is bound on the queue
	C_OTHER = 4,     // everything else (IP, ARP, other stations' frames, ...) passed
	C_SHORT = 5,     // Ouroboros frames too short for their header, passed
	C_MAX = 6,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &i);
	if (v)
		*v += 1;
}

// The logical SAP of a DSAP as it is on the wire (802.2 sends SAPs bit-reversed).
static __always_inline __u8 rev8(__u8 b)
{
	b = (__u8)((b & 0xF0) >> 4 | (b & 0x0F) << 4);
	b = (__u8)((b & 0xCC) >> 2 | (b & 0x33) << 2);
	b = (__u8)((b & 0xAA) >> 1 | (b & 0x55) << 1);
	return b;
}

// Whether the frame is addressed to the port's MAC.
static __always_inline int to_us(const struct ethhdr *eth, const struct port_cfg *c)
{
	return eth->h_dest[0] == c->mac[0] && eth->h_dest[1] == c->mac[1] &&
	       eth->h_dest[2] == c->mac[2] && eth->h_dest[3] == c->mac[3] &&
	       eth->h_dest[4] == c->mac[4] && eth->h_dest[5] == c->mac[5];
}

static __always_inline int steer(struct xdp_md *ctx)
{
	__u32 q = ctx->rx_queue_index;
	if (bpf_map_lookup_elem(&xsks, &q)) {
		count(C_REDIRECT);
		return bpf_redirect_map(&xsks, q, XDP_PASS);
	}
	count(C_NO_SOCKET);
	return XDP_PASS;
}

SEC("xdp")
int o7s_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 key = 0;
	struct port_cfg *c;
	__u8 *p;
	__u16 type;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	c = bpf_map_lookup_elem(&cfg, &key);
	if (!c)
		return XDP_PASS;
	type = bpf_ntohs(eth->h_proto);
	p = (__u8 *)(eth + 1);

	if (c->ethertype && type == c->ethertype) {
		if ((void *)(p + 4) > end) {
			count(C_OURS);
			count(C_SHORT);
			return XDP_PASS;
		}
		if (p[0] == 0 && p[1] == 0) {
			count(C_OURS);
			count(C_MGMT);
			return XDP_PASS;
		}
		// Another station's data (a bridge port, a macvlan child, promiscuous mode).
		if (!to_us(eth, c)) {
			count(C_OTHER);
			return XDP_PASS;
		}
		count(C_OURS);
		return steer(ctx);
	}
	if (c->llc && type <= 0x05ff) {
		if ((void *)(p + 3) > end)
			return XDP_PASS;
		// Our LLC frames are unnumbered information (0x03) for the management SAP
		// (logical 1, 0x80 on the wire) or a data SAP (logical 2..65); the rest (STP's
		// 0x42, SNAP's 0xAA, IS-IS's 0xFE, the null SAP, group SAPs) is the host's.
		__u8 sap = rev8(p[0]);
		if (p[2] != 0x03 || sap < 1 || sap > 65) {
			count(C_OTHER);
			return XDP_PASS;
		}
		if (sap == 1) {
			count(C_OURS);
			count(C_MGMT);
			return XDP_PASS;
		}
		if (!to_us(eth, c)) {
			count(C_OTHER);
			return XDP_PASS;
		}
		count(C_OURS);
		return steer(ctx);
	}
	count(C_OTHER);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
