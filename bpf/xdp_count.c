// SPDX-License-Identifier: MIT OR GPL-2.0
//
// The sink of scripts/bench-forward.sh: counts every frame that reaches the device (packets
// and bytes, per CPU) and drops it, so that nothing above XDP limits what is counted.
//
// Build: scripts/build-bpf.sh (clang-19); the object is committed next to this file.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// Index 0: frames, index 1: bytes (the loader, o7s-bench xdp-count, reads the same).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&counts, &k);
	if (v)
		*v += 1;
	k = 1;
	v = bpf_map_lookup_elem(&counts, &k);
	if (v)
		*v += ctx->data_end - ctx->data;
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
