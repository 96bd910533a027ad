// SPDX-License-Identifier: MIT OR GPL-2.0
//
// o7s XDP steering program. Frames of the port's eth-dix Ethertype with a data eid (!= 0),
// and eth-llc frames for a data SAP, go to the AF_XDP socket of their RX queue (XSKMAP);
// management frames (eid 0, management SAP 0x80 on the wire) and all other traffic pass to
// the kernel, so IP on the same device keeps working. Without a socket on the queue a
// data frame passes too (the AF_PACKET fallback then sees it). Per-CPU counters.
//
// Build: scripts/build-bpf.sh (clang-19); the object is committed next to this file.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Per-port settings, written by the loader: the eth-dix Ethertype (0: none) and whether
// eth-llc frames are steered.
struct port_cfg {
	__u16 ethertype;
	__u8 llc;
	__u8 pad;
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
	C_OURS = 0,      // frames of an Ouroboros layer
	C_REDIRECT = 1,  // data frames sent to the AF_XDP socket
	C_MGMT = 2,      // management frames passed to the kernel
	C_NO_SOCKET = 3, // data frames passed because no socket is bound on the queue
	C_OTHER = 4,     // everything else (IP, ARP, ...) passed
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
		count(C_OURS);
		if ((void *)(p + 4) > end) {
			count(C_SHORT);
			return XDP_PASS;
		}
		if (p[0] == 0 && p[1] == 0) {
			count(C_MGMT);
			return XDP_PASS;
		}
		return steer(ctx);
	}
	if (c->llc && type <= 0x05ff) {
		if ((void *)(p + 3) > end)
			return XDP_PASS;
		// Our LLC frames are unnumbered information (0x03) with an even DSAP on the
		// wire (the logical SAP bit-reversed); 0x80 is management.
		if (p[2] != 0x03 || (p[0] & 0x01)) {
			count(C_OTHER);
			return XDP_PASS;
		}
		count(C_OURS);
		if (p[0] == 0x80) {
			count(C_MGMT);
			return XDP_PASS;
		}
		return steer(ctx);
	}
	count(C_OTHER);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
