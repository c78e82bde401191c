/* SPDX-License-Identifier: Apache-2.0 OR MIT */
/*
 * The contract between ticklane's XDP program and userspace: map key and
 * value, counter layout. Mirrored in Rust by xdp-ebpf/src/lib.rs, whose tests read
 * this file to check that both sides agree.
 */
#ifndef TICKLANE_XDP_H
#define TICKLANE_XDP_H

#include <linux/types.h>

/* A subscription: destination group and UDP port, both in network byte order. */
struct tl_sub_key {
	__u32 group;
	__u16 port;
	__u16 pad; /* always 0 */
};

_Static_assert(sizeof(struct tl_sub_key) == 8, "tl_sub_key is 8 bytes");

/*
 * What a subscribed feed's frames must carry to be steered; a frame that
 * does not is counted and passed to the kernel (which drops it, or gives it
 * to whoever it is for: a VLAN interface, a socket joined to that source).
 */
struct tl_sub_val {
	__u32 source;    /* IPv4 source address, network byte order; 0 = any */
	__u16 vlan[2];   /* VLAN IDs, outermost first, host byte order */
	__u8 vlan_tags;  /* tags the frames carry: 0 (untagged), 1 or 2 (QinQ) */
	__u8 pad[3];     /* always 0 */
};

_Static_assert(sizeof(struct tl_sub_val) == 12, "tl_sub_val is 12 bytes");

/* Per-CPU counters, one __u64 each, indexed by these numbers. */
#define TL_CNT_SEEN 0        /* every frame the program ran on */
#define TL_CNT_MATCHED 1     /* IPv4/UDP frames to a subscribed group:port */
#define TL_CNT_REDIRECTED 2  /* matched frames handed to the AF_XDP socket */
#define TL_CNT_PASSED 3      /* frames given to the kernel stack */
#define TL_CNT_MALFORMED 4   /* frames cut short inside a header */
#define TL_CNT_FRAGMENT 5    /* IPv4 fragments (passed) */
#define TL_CNT_NO_SOCKET 6   /* matched, but no socket on this queue (passed) */
#define TL_CNT_VLAN 7        /* matched, but not the feed's VLAN tags (passed) */
#define TL_CNT_SOURCE 8      /* matched, but not from the feed's source (passed) */
#define TL_NUM_COUNTERS 9

/*
 * The receive time of a steered frame, written by the program in the
 * frame's metadata area (bpf_xdp_adjust_meta), which ends where the packet
 * begins: the AF_XDP reader finds it in the 16 bytes before the frame.
 */
struct tl_rx_meta {
	__u64 rx_ns;  /* receive time in nanoseconds, on the clock `clock` names */
	__u32 clock;  /* TL_RX_* */
	__u32 magic;  /* TL_RX_MAGIC: written by this program (next to the packet) */
};

_Static_assert(sizeof(struct tl_rx_meta) == 16, "tl_rx_meta is 16 bytes");

#define TL_RX_MAGIC 0x544c5258 /* "TLRX" */
/* bpf_ktime_get_ns() when the program ran: CLOCK_MONOTONIC, software. */
#define TL_RX_XDP_SOFTWARE 1

/* Limits of the maps. */
#define TL_MAX_SUBSCRIPTIONS 1024
#define TL_MAX_QUEUES 64

#endif
