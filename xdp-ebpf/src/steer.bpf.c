// SPDX-License-Identifier: Apache-2.0 OR MIT
//
// ticklane's XDP steering program. For every frame: Ethernet (up to two VLAN
// tags) / IPv4 / UDP, with a bounds check before every read; a subscribed
// (destination group, destination port) that carries the feed's VLAN tags
// and comes from its source (when one is set) goes to the AF_XDP socket of
// the receive queue; everything else (other ports, other protocols,
// fragments, IPv6, ARP, unicast to the host, a feed's group on another VLAN
// or from another source) is passed to the kernel untouched, and counted.
// Any failure means XDP_PASS: this program never drops traffic that is not
// ours.
//
// A steered frame carries its receive time in its metadata area (struct
// tl_rx_meta, just before the packet): the time this program ran, from
// bpf_ktime_get_ns(). The driver's own receive time (the XDP RX metadata
// kfunc bpf_xdp_metadata_rx_timestamp) needs a device-bound program and
// kfunc relocation, which the loader (aya 0.14) does not do.

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
	__type(value, struct tl_sub_val);
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

/*
 * Whether a frame with `tags` VLAN tags of IDs `vid` carries the feed's. A
 * lone priority tag (ID 0, 802.1p) on a feed that expects none counts as
 * untagged, as the kernel treats it.
 */
static __always_inline int vlan_ok(const struct tl_sub_val *sub, __u32 tags,
				   const __u16 vid[2])
{
	if (sub->vlan_tags == 0 && tags == 1 && vid[0] == 0)
		return 1;
	if (tags != sub->vlan_tags)
		return 0;
	return (tags < 1 || vid[0] == sub->vlan[0]) &&
	       (tags < 2 || vid[1] == sub->vlan[1]);
}

/*
 * Writes the receive time in front of the packet. Without room for it (a
 * driver without metadata support) the frame goes without: the reader
 * finds no magic and takes no time.
 */
static __always_inline void stamp(struct xdp_md *ctx, __u64 received)
{
	if (bpf_xdp_adjust_meta(ctx, -(int)sizeof(struct tl_rx_meta)))
		return;
	void *data = (void *)(long)ctx->data;
	struct tl_rx_meta *meta = (void *)(long)ctx->data_meta;
	if ((void *)(meta + 1) > data)
		return;
	meta->rx_ns = received;
	meta->clock = TL_RX_XDP_SOFTWARE;
	meta->magic = TL_RX_MAGIC;
}

SEC("xdp")
int ticklane_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	void *cursor = data;
	__u64 received = bpf_ktime_get_ns();

	count(TL_CNT_SEEN);

	struct ethhdr *eth = cursor;
	if ((void *)(eth + 1) > data_end)
		return pass(TL_CNT_MALFORMED);
	cursor = eth + 1;
	__be16 proto = eth->h_proto;

	/* At most two VLAN tags (802.1Q, 802.1ad QinQ): a bounded loop. */
	__u16 vid[2] = { 0, 0 };
	__u32 tags = 0;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_tag *tag = cursor;
		if ((void *)(tag + 1) > data_end)
			return pass(TL_CNT_MALFORMED);
		vid[i] = bpf_ntohs(tag->tci) & 0x0fff;
		tags++;
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
	struct tl_sub_val *sub = bpf_map_lookup_elem(&subs, &key);
	if (!sub)
		return pass(TL_CNT_PASSED);
	count(TL_CNT_MATCHED);
	if (!vlan_ok(sub, tags, vid))
		return pass(TL_CNT_VLAN);
	if (sub->source && sub->source != ip->saddr)
		return pass(TL_CNT_SOURCE);

	__u32 queue = ctx->rx_queue_index;
	if (!bpf_map_lookup_elem(&xsks, &queue))
		return pass(TL_CNT_NO_SOCKET);
	stamp(ctx, received);
	int verdict = bpf_redirect_map(&xsks, queue, XDP_PASS);
	if (verdict == XDP_REDIRECT)
		count(TL_CNT_REDIRECTED);
	else
		count(TL_CNT_PASSED);
	return verdict;
}
