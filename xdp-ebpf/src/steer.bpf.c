// SPDX-License-Identifier: Apache-2.0 OR MIT
//
// ticklane's XDP steering program. For every frame: Ethernet (up to two VLAN
// tags) / IPv4 / UDP, with a bounds check before every read; a subscribed
// (destination group, destination port) goes to the AF_XDP socket of the
// receive queue; everything else (other ports, other protocols, fragments,
// IPv6, ARP, unicast to the host) is passed to the kernel untouched. Any
// failure means XDP_PASS: this program never drops traffic that is not ours.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ticklane_xdp.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, TL_MAX_SUBSCRIPTIONS);
	__type(key, struct tl_sub_key);
	__type(value, __u8);
} subs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, TL_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TL_NUM_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct vlan_tag {
	__be16 tci;
	__be16 proto;
};

static __always_inline void count(__u32 index)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &index);
	if (c)
		*c += 1;
}

static __always_inline int pass(__u32 reason)
{
	if (reason != TL_CNT_PASSED)
		count(reason);
	count(TL_CNT_PASSED);
	return XDP_PASS;
}

SEC("xdp")
int ticklane_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *cursor = data;

	count(TL_CNT_SEEN);

	struct ethhdr *eth = cursor;
	if ((void *)(eth + 1) > data_end)
		return pass(TL_CNT_MALFORMED);
	cursor = eth + 1;
	__be16 proto = eth->h_proto;

	/* At most two VLAN tags (802.1Q, 802.1ad QinQ): a bounded loop. */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_tag *tag = cursor;
		if ((void *)(tag + 1) > data_end)
			return pass(TL_CNT_MALFORMED);
		proto = tag->proto;
		cursor = tag + 1;
	}
	if (proto != bpf_htons(ETH_P_IP))
		return pass(TL_CNT_PASSED);

	struct iphdr *ip = cursor;
	if ((void *)(ip + 1) > data_end)
		return pass(TL_CNT_MALFORMED);
	if (ip->version != 4 || ip->ihl < 5)
		return pass(TL_CNT_MALFORMED);
	if (ip->protocol != IPPROTO_UDP)
		return pass(TL_CNT_PASSED);
	if (ip->frag_off & bpf_htons(0x3fff))
		return pass(TL_CNT_FRAGMENT);
	cursor = (void *)ip + ip->ihl * 4;

	struct udphdr *udp = cursor;
	if ((void *)(udp + 1) > data_end)
		return pass(TL_CNT_MALFORMED);

	struct tl_sub_key key = { .group = ip->daddr, .port = udp->dest, .pad = 0 };
	if (!bpf_map_lookup_elem(&subs, &key))
		return pass(TL_CNT_PASSED);
	count(TL_CNT_MATCHED);

	__u32 queue = ctx->rx_queue_index;
	if (!bpf_map_lookup_elem(&xsks, &queue))
		return pass(TL_CNT_NO_SOCKET);
	int verdict = bpf_redirect_map(&xsks, queue, XDP_PASS);
	if (verdict == XDP_REDIRECT)
		count(TL_CNT_REDIRECTED);
	else
		count(TL_CNT_PASSED);
	return verdict;
}
