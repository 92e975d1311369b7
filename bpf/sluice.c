// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * Sluice kernel tier: redirect and replicate UDP flows at tcx.
 *
 * One program, attached at tcx egress of lo (datagrams local applications
 * send to a flow address) and tcx ingress of the other interfaces
 * (datagrams from the network). For a datagram whose destination address
 * and port is a flow in `flows`, it checks the sender against the flow's
 * allow list, the size and the payload format, resolves the next hop of
 * every subscriber, then rewrites and clones the packet once per subscriber.
 * Subscribers are handled in chunks of SLUICE_CHUNK per program run; a
 * longer list continues in the same program through a tail call (the
 * verifier walks every iteration of a loop, so one run cannot hold more).
 * The policy lives entirely in maps written from TypeScript
 * (src/dataplane/kernel/layout.ts); the layouts below are mirrored there and
 * checked against this object by test/kernel/layout.test.ts.
 *
 * What the program does not carry itself goes to the flow's user-space
 * companion (a batched-tier flow on the same listen socket), so nothing is
 * lost: fragments, IP options, GSO packets and unresolved neighbours pass to
 * the stack untouched ("punts"); subscribers beyond SLUICE_MAX_SUBS, or of
 * the other address family, get a copy sent to the flow's spill socket
 * ("spill"). Everything else that is not ours returns TCX_NEXT untouched.
 *
 * The program runs before the IP stack, so it must never carry a datagram
 * the stack would not have delivered to the listen socket, or would have
 * delivered with other bytes: lengths that disagree with the frame, bad
 * IPv4 header or UDP checksums, frames for another host, martian or
 * spoofed sources (the host's rp_filter). It carries only what it has
 * checked as the stack would; everything else is punted untouched, and the
 * stack drops it (then no tier counts it) or delivers it to the companion
 * (trailing bytes, a multipath route the check cannot see, ...). A punt is
 * never wrong, only slower.
 *
 * Build: npm run build:bpf (clang -O2 -target bpf); the object is committed.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>

#define AF_INET 2
#define AF_INET6 10
#define offsetof(t, m) __builtin_offsetof(t, m)
#define SEC(name) __attribute__((section(name), used))
#define INLINE static inline __attribute__((always_inline))
/* Hides what the compiler knows about a value, so the bounds check the
 * verifier needs is really made on the register it then uses. */
#define barrier_var(v) asm volatile("" : "+r"(v))

/* Helpers by number (include/uapi/linux/bpf.h); no libbpf needed. */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 off, const void *from, __u32 len, __u64 flags) = (void *)9;
static long (*bpf_l3_csum_replace)(struct __sk_buff *skb, __u32 off, __u64 from, __u64 to, __u64 size) = (void *)10;
static long (*bpf_l4_csum_replace)(struct __sk_buff *skb, __u32 off, __u64 from, __u64 to, __u64 flags) = (void *)11;
static long (*bpf_clone_redirect)(struct __sk_buff *skb, __u32 ifindex, __u64 flags) = (void *)13;
static long (*bpf_skb_load_bytes)(const struct __sk_buff *skb, __u32 off, void *to, __u32 len) = (void *)26;
static long (*bpf_csum_diff)(const void *from, __u32 from_size, const void *to, __u32 to_size, __u32 seed) = (void *)28;
static long (*bpf_redirect)(__u32 ifindex, __u64 flags) = (void *)23;
static long (*bpf_fib_lookup)(void *ctx, struct bpf_fib_lookup *params, int plen, __u32 flags) = (void *)69;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static long (*bpf_tail_call)(void *ctx, void *prog_array, __u32 index) = (void *)12;
static long (*bpf_csum_level)(struct __sk_buff *skb, __u64 level) = (void *)135;

#define bswap16(x) __builtin_bswap16(x)
#define htons(x) ((__be16)bswap16(x))

/* tcx verdicts (include/uapi/linux/bpf.h, 6.6+). */
#define TCX_NEXT (-1)
#define TCX_PASS 0
#define TCX_DROP 2
#define TCX_REDIRECT 7

/* ---- layout shared with TypeScript (src/dataplane/kernel/layout.ts) ---- */
#define SLUICE_MAX_SUBS 512 /* a power of two (indices are masked with it) */
#define SLUICE_CHUNK 32      /* subscribers per program run, per pass */
#define SLUICE_RUN 8         /* copies per run when the packet goes on through the input queue */
/* Runs per packet: one per chunk to resolve next hops, one per chunk to
 * send, less one (the last resolve run sends the first chunk): 31 for
 * 512 subscribers, within the kernel's 33 tail calls. The chunk is what
 * fits the verifier's budget of 1M instructions for both families (it
 * walks every iteration): 64 did, until rewrite() learnt to skip fields
 * that are already right. */
#define HOP_TTL_NS (50ull * 1000 * 1000) /* how long a resolved next hop is reused */
#define SLUICE_MAX_FLOWS 1024
#define SLUICE_MAX_DESTS 16384
#define SLUICE_MAX_ALLOW 16384
#define SLUICE_MAX_LOCAL 1024
#define SLUICE_MARK 0x51ce0001
/* A packet sent back through its interface's input queue to finish its
 * list later (see yield_to_backlog): the base, plus the send chunk to go on
 * with in the low byte. */
#define SLUICE_RESUME 0x51ce0100
#define SLUICE_RESUME_MASK 0xffffff00
#define LO_IFINDEX 1
#define TS_PACKET 188
#define TS_SYNC 0x47
#define MAX_TS_PACKETS 349 /* 65507 / 188 rounded up */

/* flow_value.flags */
#define F_ANY_SOURCE 1u /* allow: any */
#define F_MPEGTS 2u     /* payload must be whole TS packets */
#define F_SPILL 4u      /* send a copy to the spill socket (user-space subscribers) */
#define F_SRC_WILD 8u   /* listen address is a wildcard: source from the route */
#define F_RTP 16u       /* payload must start with an RTP version 2 header */
#define RTP_HEADER 12
#define F_GROUP 32u     /* listen address is a multicast group, joined on in_ifindex */

/* Addresses are 16 bytes everywhere; IPv4 as ::ffff:a.b.c.d. Word-aligned
 * so that copies are four loads, not sixteen (the verifier walks each one). */
typedef struct { __u32 w[4]; } addr_t;

struct flow_key {
	addr_t addr;
	__be16 port;
	__u16 pad;
};

struct sub {
	addr_t addr;
	__be16 port;
	__u16 flags;     /* SUB_LOCAL: one of this host's addresses (set by user space) */
	__u32 dest_slot; /* index into dest_stats and hops */
};
/* A subscriber with port 0 is a hole: user space keeps every subscriber at
 * the same index while the list changes (a removal leaves a hole, an
 * addition fills one), so a packet that straddles an update, half in one
 * run and half in the next, never skips or repeats anyone else. */

#define SUB_LOCAL 1

struct flow_value {
	__u32 slot;        /* index into flow_stats and allow-list key */
	__u32 flags;
	__u32 max_payload; /* UDP payload bytes; larger is tooLarge */
	__u16 nsubs;       /* subscriber slots in use (holes included), <= SLUICE_MAX_SUBS */
	__be16 spill_port; /* port of the spill socket (F_SPILL) */
	addr_t src_addr;   /* source address of copies (listen address) */
	__be16 src_port;   /* source port of copies (listen port) */
	__u16 in_ifindex;  /* F_GROUP: the interface the group was joined on (0: unknown, the stack decides) */
	__u32 generation;  /* bumped by every update; lets user space see adoption */
	struct sub subs[SLUICE_MAX_SUBS];
};

struct allow_key {
	__u32 prefixlen; /* 32 (slot) + 128 (address) bits at most */
	__u32 slot;      /* big-endian on the wire of the trie: stored as bytes */
	addr_t addr;
};

/* Per-CPU, per flow. Names match FlowStats plus kernel-only detail. */
struct flow_counters {
	__u64 packets_in;
	__u64 bytes_in;
	__u64 packets_out;
	__u64 bytes_out;
	__u64 drop_source;
	__u64 drop_malformed;
	__u64 drop_too_large;
	__u64 drop_send_error;
	__u64 to_stack_packets; /* punted: the companion flow carries them */
	__u64 to_stack_bytes;
	__u64 punt_fragment;
	__u64 punt_ip_options;
	__u64 punt_gso;
	__u64 punt_no_neighbour;
	__u64 spilled;          /* copies handed to the spill socket */
	__u64 spill_error;
	/* Punted because the stack's own checks decide (it drops or trims them). */
	__u64 punt_length;      /* IP/UDP lengths disagree with each other or the frame */
	__u64 punt_checksum;    /* IPv4 header or UDP checksum wrong (or unprovable) */
	__u64 punt_source;      /* martian or reverse-path-failing source, or checks unknown */
	__u64 punt_other_host;  /* frame for another link-layer address */
	__u64 resumed;          /* times a packet went back through the input queue between chunks of its list */
};

struct dest_counters {
	__u64 packets_out;
	__u64 bytes_out;
	__u64 send_error;
	__u64 last_errno;
};

/* Next hop of one subscriber (per CPU, by dest_slot): found by the first
 * pass, reused for HOP_TTL_NS so that a packet costs a route lookup per
 * subscriber only a few times a second. `addr` and `sflags` say which
 * subscriber it was resolved for (user space also zeroes an entry when it
 * gives its dest_slot to another subscriber). */
struct hop {
	__u64 stamp;   /* bpf_ktime_get_ns() of the lookup; 0 = empty */
	addr_t addr;
	__u16 sflags;
	__u16 pad;
	__u32 ifindex;
	__u32 err;     /* errno to count, 0 = ok */
	__u32 macs[3]; /* dmac, smac */
	addr_t src;
};

/* What the parser learnt about the packet. */
struct pkt {
	__u32 l3; /* offset of the IP header */
	__u32 l4; /* offset of the UDP header */
	__u32 payload_len;
	__u16 ip_len; /* L3 length, for the route MTU check */
	__u8 v6;
	__u8 punt; /* 0, or which punt counter applies */
	addr_t saddr;
	addr_t daddr;
	__be16 sport;
	__be16 dport;
	__be16 check; /* UDP checksum field as received */
	__u8 tos;     /* IPv4 TOS, for the reverse-path lookup */
	__u8 group;   /* the destination is a multicast group */
};

/* The packet's current header fields, as last written. */
struct cur {
	addr_t saddr; /* saddr, daddr adjacent: the IPv6 checksum diff reads both */
	addr_t daddr;
	__u32 ports;   /* sport, dport as on the wire */
	__u32 macs[3]; /* dmac, smac */
};

/* One packet's progress, carried from one run to the next (per CPU: a
 * tail call continues on the same CPU, with nothing in between). */
struct state {
	__u32 active;    /* set just before a tail call, cleared by the run it starts */
	__u32 stage;     /* runs done: resolve chunks first, then send chunks */
	__u32 n;         /* subscriber slots when the packet arrived */
	__u32 orig_mark; /* skb->mark to restore if the packet is not redirected */
	__u32 macs0[3];  /* the frame's dmac, smac as it arrived (put back before a resume) */
	__u32 step;      /* subscribers per send run: SLUICE_RUN when the packet goes on through the input queue */
	struct flow_key key;
	struct pkt p;
	struct cur c;
};

/* Legacy map definitions: the loader (src/dataplane/kernel/elf.ts) reads them. */
struct map_def {
	__u32 type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
};

struct map_def flows SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(struct flow_key),
	.value_size = sizeof(struct flow_value),
	.max_entries = SLUICE_MAX_FLOWS,
	.map_flags = BPF_F_NO_PREALLOC, /* values are ~12 KiB: allocate per flow */
};
struct map_def allow SEC("maps") = {
	.type = BPF_MAP_TYPE_LPM_TRIE,
	.key_size = sizeof(struct allow_key),
	.value_size = sizeof(__u32),
	.max_entries = SLUICE_MAX_ALLOW,
	.map_flags = BPF_F_NO_PREALLOC,
};
struct map_def local_addrs SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = 16,
	.value_size = sizeof(__u32),
	.max_entries = SLUICE_MAX_LOCAL,
};
/* Per hooked interface (by ifindex), from /proc/sys/net/ipv4/conf: what
 * the stack's source checks for datagrams arriving there depend on.
 * Written and refreshed by user space; an interface without an entry has
 * its datagrams punted (the stack decides). */
struct ifcfg {
	__u8 rp_filter; /* max(conf/all, conf/<dev>): 0 off, 1 strict, 2 loose */
	__u8 flags;
	__u16 pad;
};
#define IF_HAS_V4 1 /* the interface has an IPv4 address (loose mode falls back to strict without) */
#define IF_UNSURE 2 /* src_valid_mark, or enslaved (bridge, bond, VRF): the check cannot be mirrored here */
#define SLUICE_MAX_IFACES 4096
struct map_def ifcfg SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct ifcfg),
	.max_entries = SLUICE_MAX_IFACES,
	.map_flags = BPF_F_NO_PREALLOC,
};
/* Per CPU: room to sum a datagram's UDP checksum a piece at a time
 * (bpf_csum_diff takes at most 512 bytes). */
#define CSUM_CHUNK 512
struct scratch {
	__u32 w[CSUM_CHUNK / 4];
};
struct map_def scratch SEC("maps") = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct scratch),
	.max_entries = 1,
};
struct map_def flow_stats SEC("maps") = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct flow_counters),
	.max_entries = SLUICE_MAX_FLOWS,
};
struct map_def dest_stats SEC("maps") = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct dest_counters),
	.max_entries = SLUICE_MAX_DESTS,
};
struct map_def hops SEC("maps") = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct hop),
	.max_entries = SLUICE_MAX_DESTS,
};
struct map_def state SEC("maps") = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct state),
	.max_entries = 1,
};
/* Entry 0: this program, for the tail call that continues a long list. */
struct map_def chain SEC("maps") = {
	.type = BPF_MAP_TYPE_PROG_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = 1,
};

#define PUNT_FRAGMENT 1
#define PUNT_OPTIONS 2
#define PUNT_GSO 3
#define PUNT_LENGTH 4
#define PUNT_CHECKSUM 5
#define PUNT_OTHER_HOST 6

INLINE void map_v4(addr_t *dst, __be32 a)
{
	dst->w[0] = 0;
	dst->w[1] = 0;
	dst->w[2] = __builtin_bswap32(0x0000ffff);
	dst->w[3] = a;
}

/* Destination address of a packet for a wildcard flow: is it this host's?
 * (A wildcard listen must not capture traffic routed through the host.) */
INLINE int is_local(const addr_t *a)
{
	if (a->w[0] == 0 && a->w[1] == 0 && a->w[2] == __builtin_bswap32(0x0000ffff)) {
		if ((a->w[3] & 0xff) == 127)
			return 1;
	} else if (a->w[0] == 0 && a->w[1] == 0 && a->w[2] == 0 && a->w[3] == __builtin_bswap32(1)) {
		return 1; /* ::1 */
	}
	return bpf_map_lookup_elem(&local_addrs, a) != 0;
}

/* Ones-complement sum (as bpf_csum_diff returns it) folded to 16 bits. */
INLINE __u32 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	return (sum & 0xffff) + (sum >> 16);
}

/*
 * Returns 0 when the packet is IPv4/IPv6 + UDP with its headers in the
 * linear area (else it is not ours: TCX_NEXT). Sets p->punt when the stack
 * must decide about it: a fragment, IP options, a GSO packet, lengths that
 * disagree with each other or with the frame (ip_rcv drops a frame shorter
 * than its IP length and trims a longer one; udp_rcv drops a UDP length
 * beyond the IP payload and trims a shorter one: only exact lengths are
 * carried), a wrong IPv4 header checksum (ip_rcv drops it), or a frame for
 * another host (ip_rcv drops PACKET_OTHERHOST).
 */
INLINE int parse(struct __sk_buff *skb, struct pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	/* A VLAN-tagged frame (the tag is in skb metadata by now) belongs to
	 * the VLAN's device, whose own hook sees it; without one the stack
	 * drops it as PACKET_OTHERHOST. Not ours here either way. */
	if (skb->vlan_present)
		return -1;
	p->l3 = sizeof(*eth);
	/* The real L3 length: what follows the Ethernet header in the frame. */
	__u32 real = skb->len - sizeof(*eth);
	/* At ingress the stack drops frames for other hosts (ip_rcv); at lo
	 * egress (our only egress hook) eth_type_trans will judge the
	 * destination against lo's all-zero address. */
	int other_host = skb->ifindex == LO_IFINDEX ? (eth->h_dest[0] | eth->h_dest[1] | eth->h_dest[2] | eth->h_dest[3] | eth->h_dest[4] | eth->h_dest[5]) != 0
						    : skb->pkt_type != 0 /* PACKET_HOST */;
	if (eth->h_proto == htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
			return -1;
		if (ip->protocol != IPPROTO_UDP)
			return -1;
		__u16 frag = bswap16(ip->frag_off);
		if (frag & 0x1fff)
			return -1; /* a later fragment: no UDP header here, the stack reassembles */
		__u32 ihl = ip->ihl * 4;
		struct udphdr *udp = (void *)ip + ihl;
		if ((void *)(udp + 1) > end)
			return -1;
		__u16 tot = bswap16(ip->tot_len);
		__u16 ulen = bswap16(udp->len);
		p->v6 = 0;
		p->l4 = p->l3 + ihl;
		p->ip_len = tot;
		/* For byte counters only (a punted datagram is counted and uncounted alike). */
		p->payload_len = ulen > sizeof(*udp) ? ulen - sizeof(*udp) : 0;
		p->tos = ip->tos;
		map_v4(&p->saddr, ip->saddr);
		map_v4(&p->daddr, ip->daddr);
		p->group = (p->daddr.w[3] & 0xf0) == 0xe0; /* 224.0.0.0/4 (first byte, little-endian word) */
		p->sport = udp->source;
		p->dport = udp->dest;
		p->check = udp->check;
		if (frag & 0x2000)
			p->punt = PUNT_FRAGMENT; /* first fragment: UDP length covers the whole datagram */
		else if (skb->gso_segs > 1)
			p->punt = PUNT_GSO;
		else if (ihl != sizeof(*ip))
			p->punt = PUNT_OPTIONS;
		else if (tot != real || ulen < sizeof(*udp) || ulen != tot - ihl)
			p->punt = PUNT_LENGTH;
		else if (other_host && !(p->group && skb->pkt_type == 2 /* PACKET_MULTICAST */))
			p->punt = PUNT_OTHER_HOST;
		else if (fold(bpf_csum_diff(0, 0, (void *)ip, sizeof(*ip), 0)) != 0xffff)
			p->punt = PUNT_CHECKSUM;
		return 0;
	}
	if (eth->h_proto == htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return -1;
		/* Extension headers (fragments included) go to the stack untouched. */
		if (ip6->nexthdr != IPPROTO_UDP)
			return -1;
		struct udphdr *udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > end)
			return -1;
		__u16 plen = bswap16(ip6->payload_len);
		__u16 ulen = bswap16(udp->len);
		p->v6 = 1;
		p->l4 = p->l3 + sizeof(*ip6);
		p->ip_len = plen + sizeof(*ip6);
		p->payload_len = ulen > sizeof(*udp) ? ulen - sizeof(*udp) : 0;
		__builtin_memcpy(&p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(&p->daddr, &ip6->daddr, 16);
		p->group = (p->daddr.w[0] & 0xff) == 0xff; /* ff00::/8 */
		p->sport = udp->source;
		p->dport = udp->dest;
		p->check = udp->check;
		if (skb->gso_segs > 1)
			p->punt = PUNT_GSO;
		/* (A UDP length of 0 is a jumbogram to udpv6_rcv: the stack decides.) */
		else if ((__u32)plen + sizeof(*ip6) != real || ulen < sizeof(*udp) || ulen != plen)
			p->punt = PUNT_LENGTH;
		else if (other_host && !(p->group && skb->pkt_type == 2 /* PACKET_MULTICAST */))
			p->punt = PUNT_OTHER_HOST;
		return 0;
	}
	return -1;
}

INLINE int is_loopback6(const addr_t *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == 0 && a->w[3] == __builtin_bswap32(1);
}

/*
 * At ingress: would the stack's input checks accept this source? Mirrors
 * ip_route_input_slow (martian sources and destinations) and
 * fib_validate_source (rp_filter, local sources) for IPv4, and
 * ip6_rcv_core for IPv6 (multicast and loopback sources; IPv6 has no
 * rp_filter: a netfilter rpfilter rule is not seen here, like any
 * netfilter rule). 1: carry; 0: punt, the stack decides (a punt is only
 * slower, so what is rare or unsure is punted).
 */
INLINE int source_ok(void *ctx, __u32 ifindex, const struct pkt *p)
{
	if (p->v6) {
		if ((p->saddr.w[0] & 0xff) == 0xff)
			return 0; /* multicast source (a group destination was checked against the flow's join) */
		if (p->group && ((p->daddr.w[0] >> 8) & 0x0f) <= 1)
			return 0; /* a group of scope 0 (reserved) or 1 (interface-local): ip6_rcv_core drops it from the network */
		if (p->saddr.w[0] == 0 && p->saddr.w[1] == 0 && p->saddr.w[2] == __builtin_bswap32(0x0000ffff))
			return 0; /* IPv4-mapped source: udpv6 takes it today, TCP refuses it; the stack decides */
		if (is_loopback6(&p->saddr) || is_loopback6(&p->daddr))
			return 0; /* ::1 from the network */
		return 1;
	}
	__u8 s0 = p->saddr.w[3] & 0xff; /* first byte of the address */
	__u8 d0 = p->daddr.w[3] & 0xff;
	/* 0/8, 127/8 (route_localnet or not, the reverse lookup would be local),
	 * multicast, class E and broadcast sources; the same destinations, but
	 * for a group the flow joined (checked against its join by the caller). */
	if (s0 == 0 || s0 == 127 || s0 >= 224 || d0 == 0 || d0 == 127 || (d0 >= 224 && !p->group))
		return 0;
	const struct ifcfg *cfg = bpf_map_lookup_elem(&ifcfg, &ifindex);
	if (!cfg || (cfg->flags & IF_UNSURE))
		return 0;
	/* The reverse lookup fib_validate_source makes: to the source, from
	 * the destination, as if arriving on lo (its flowi4_iif). Anything but
	 * a unicast route (a local source, no route, a blackhole) is left to
	 * the stack, which then applies accept_local and rp_filter itself. */
	struct bpf_fib_lookup fib;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.family = AF_INET;
	fib.tos = p->tos;
	fib.ifindex = LO_IFINDEX;
	/* For a group, ip_mc_validate_source looks up from no address. */
	fib.ipv4_src = p->group ? 0 : p->daddr.w[3];
	fib.ipv4_dst = p->saddr.w[3];
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), BPF_FIB_LOOKUP_SKIP_NEIGH) != BPF_FIB_LKUP_RET_SUCCESS)
		return 0;
	if (cfg->rp_filter == 0 || fib.ifindex == ifindex)
		return 1;
	/* Another interface: strict refuses; loose accepts if this one has an IPv4 address. */
	return cfg->rp_filter >= 2 && (cfg->flags & IF_HAS_V4);
}

/*
 * Is the checksum field untouched by a checksum update that is not for the
 * pseudo-header? Only on a CHECKSUM_PARTIAL skb (inet_proto_csum_replace_by_diff
 * leaves the field alone there), which the stack accepts whatever the
 * payload: a local sender's or a virtio guest's datagram whose checksum is
 * still to be filled in. The field is put back either way.
 */
INLINE int csum_partial_skb(struct __sk_buff *skb, __u32 off, __be16 check)
{
	if (bpf_l4_csum_replace(skb, off, 0, 1, 0))
		return 0;
	__be16 now = 0;
	int same = bpf_skb_load_bytes(skb, off, &now, sizeof(now)) == 0 && now == check;
	if (!same)
		bpf_skb_store_bytes(skb, off, &check, sizeof(check), 0);
	return same;
}

/* The ones-complement sum of the UDP pseudo-header (RFC 768, RFC 8200 8.1), in sc->w. */
INLINE long pseudo_hdr_sum(struct scratch *sc, const struct pkt *p, __u32 len)
{
	if (p->v6) {
		__builtin_memcpy(&sc->w[0], &p->saddr, 16);
		__builtin_memcpy(&sc->w[4], &p->daddr, 16);
		sc->w[8] = __builtin_bswap32(len);
		sc->w[9] = (__u32)IPPROTO_UDP << 24;
		return bpf_csum_diff(0, 0, sc->w, 40, 0);
	}
	sc->w[0] = p->saddr.w[3];
	sc->w[1] = p->daddr.w[3];
	sc->w[2] = ((__u32)IPPROTO_UDP << 8) | ((__u32)bswap16(len) << 16);
	return bpf_csum_diff(0, 0, sc->w, 12, 0);
}

/*
 * Ends a checksum check: adds the datagram (len bytes from p->l4, read
 * with LOAD from ctx, CSUM_CHUNK at a time through sc->w) to `sum` and
 * returns whether the total folds to 0xffff. A macro, not a function,
 * because tc and XDP read packets with different helpers and context
 * types; the body is the same for both. The last piece is zero-padded
 * to whole words; the masks after the barriers are for the verifier,
 * which needs the bounds on those registers.
 */
#define RETURN_DATAGRAM_CSUM_OK(LOAD, ctx)                                          \
	do {                                                                        \
		_Pragma("clang loop unroll(disable)")                                   \
		for (__u32 i = 0; i < 65536 / CSUM_CHUNK; i++) {                        \
			__u32 at = i * CSUM_CHUNK;                                          \
			if (at >= len)                                                      \
				break;                                                      \
			__u32 n = len - at;                                                 \
			if (n >= CSUM_CHUNK) {                                              \
				if (LOAD(ctx, p->l4 + at, sc->w, CSUM_CHUNK))               \
					return 0;                                           \
				rc = bpf_csum_diff(0, 0, sc->w, CSUM_CHUNK, sum);           \
			} else {                                                            \
				barrier_var(n);                                             \
				n &= CSUM_CHUNK - 1;                                        \
				if (n == 0)                                                 \
					break;                                              \
				__u32 w = (n >> 2) & (CSUM_CHUNK / 4 - 1);                  \
				sc->w[w] = 0;                                               \
				if (LOAD(ctx, p->l4 + at, sc->w, n))                        \
					return 0;                                           \
				__u32 size = (n + 3) & (CSUM_CHUNK - 4);                    \
				barrier_var(size);                                          \
				if (size > CSUM_CHUNK)                                      \
					return 0;                                           \
				rc = bpf_csum_diff(0, 0, sc->w, size, sum);                 \
			}                                                                   \
			if (rc < 0)                                                         \
				return 0;                                                   \
			sum = rc;                                                           \
		}                                                                       \
		return fold(sum) == 0xffff;                                             \
	} while (0)

/*
 * Would the stack accept the UDP checksum? Verified by the device
 * (CHECKSUM_UNNECESSARY); none in IPv4 (0); still to be filled in
 * (CHECKSUM_PARTIAL: the field holds the pseudo-header sum); else summed
 * here over the pseudo-header and the whole datagram. IPv6 requires one
 * (udpv6 sockets refuse 0 unless UDP_NO_CHECK6_RX, which ours never set).
 */
INLINE int udp_csum_ok(struct __sk_buff *skb, const struct pkt *p)
{
	if (bpf_csum_level(skb, BPF_CSUM_LEVEL_QUERY) >= 0)
		return 1;
	if (p->check == 0)
		return !p->v6;
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return 0;
	__u32 len = p->payload_len + sizeof(struct udphdr);
	if (len > 0xffff)
		return 0;
	long rc = pseudo_hdr_sum(sc, p, len);
	if (rc < 0)
		return 0;
	__u32 sum = rc;
	__u32 off = p->l4 + offsetof(struct udphdr, check);
	if (p->check == fold(sum) && csum_partial_skb(skb, off, p->check))
		return 1;
	RETURN_DATAGRAM_CSUM_OK(bpf_skb_load_bytes, skb);
}

/* Whole 188-byte TS packets, each starting with the sync byte. */
INLINE int ts_ok(struct __sk_buff *skb, __u32 off, __u32 len)
{
	if (len == 0 || len % TS_PACKET)
		return 0;
	__u32 n = len / TS_PACKET;
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < MAX_TS_PACKETS; i++) {
		if (i >= n)
			break;
		__u8 b = 0;
		if (bpf_skb_load_bytes(skb, off + i * TS_PACKET, &b, 1) || b != TS_SYNC)
			return 0;
	}
	return 1;
}

/* At least the 12-byte fixed RTP header, version 2 (RFC 3550 5.1). Deeper
 * checks (CSRC, extension and padding lengths) are the monitor's, which
 * counts them without dropping: the same on every tier. */
INLINE int rtp_ok(struct __sk_buff *skb, __u32 off, __u32 len)
{
	__u8 b = 0;
	if (len < RTP_HEADER || bpf_skb_load_bytes(skb, off, &b, 1))
		return 0;
	return (b >> 6) == 2;
}

/* fib lookup result -> errno counted against the destination. */
INLINE __u32 fib_errno(long rc)
{
	if (rc < 0)
		return (__u32)-rc;
	if (rc == BPF_FIB_LKUP_RET_UNREACHABLE)
		return 113; /* EHOSTUNREACH */
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED)
		return 101; /* ENETUNREACH: no route (local subscribers never get here) */
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED)
		return 90;  /* EMSGSIZE */
	if (rc == BPF_FIB_LKUP_RET_PROHIBIT)
		return 13;  /* EACCES */
	if (rc == BPF_FIB_LKUP_RET_FWD_DISABLED)
		return 1;   /* EPERM: forwarding off on lo (see sluice doctor) */
	if (rc == BPF_FIB_LKUP_RET_BLACKHOLE)
		return 22;  /* EINVAL, as sendto on a blackhole route */
	return 95;          /* EOPNOTSUPP: tunnels, lwt and other routes we cannot write */
}

INLINE int same_addr(const addr_t *a, const addr_t *b)
{
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] && a->w[3] == b->w[3];
}

/* Subscriber at index `i` (masked: the verifier needs a bound, not n). */
INLINE const struct sub *sub_at(const struct flow_value *f, __u32 i)
{
	return &f->subs[i & (SLUICE_MAX_SUBS - 1)];
}

/*
 * Pass 1, one chunk: makes sure every subscriber in [from, to) has a
 * current next hop in `hops`. Returns 1 when a neighbour is unresolved: the
 * whole datagram then goes to the companion socket, whose send makes the
 * kernel resolve it (pass 1 finishes before any copy is sent, so that
 * costs no duplicates). `v6` is a constant at each call site, so each
 * family gets its own loop without the other's code.
 */
INLINE int resolve_chunk(struct __sk_buff *skb, const struct flow_value *f, const struct pkt *p, __u32 from, __u32 to, __u64 now, const int v6)
{
	const int wild = (f->flags & F_SRC_WILD) != 0;
	struct bpf_fib_lookup fib;
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < SLUICE_CHUNK; i++) {
		if (from + i >= to)
			break;
		const struct sub *s = sub_at(f, from + i);
		if (s->port == 0)
			continue; /* hole */
		__u32 dslot = s->dest_slot;
		struct hop *h = bpf_map_lookup_elem(&hops, &dslot);
		if (!h)
			continue; /* out of range: pass 2 counts it */
		if (h->stamp && now - h->stamp < HOP_TTL_NS && h->sflags == s->flags && same_addr(&h->addr, &s->addr))
			continue;
		h->err = 0;
		if (s->flags & SUB_LOCAL) {
			/* Up through lo, whose L2 address is all zeros. */
			h->ifindex = LO_IFINDEX;
			h->macs[0] = h->macs[1] = h->macs[2] = 0;
			h->src = wild ? s->addr : f->src_addr;
		} else {
			__builtin_memset(&fib, 0, sizeof(fib));
			fib.l4_protocol = IPPROTO_UDP;
			fib.sport = f->src_port;
			fib.dport = s->port;
			fib.tot_len = p->ip_len;
			/* Looked up as if arriving on lo: only lo needs forwarding enabled. */
			fib.ifindex = LO_IFINDEX;
			if (v6) {
				fib.family = AF_INET6;
				__builtin_memcpy(fib.ipv6_src, &f->src_addr, 16);
				__builtin_memcpy(fib.ipv6_dst, &s->addr, 16);
			} else {
				fib.family = AF_INET;
				fib.ipv4_src = f->src_addr.w[3];
				fib.ipv4_dst = s->addr.w[3];
			}
			long rc = bpf_fib_lookup(skb, &fib, sizeof(fib), wild ? BPF_FIB_LOOKUP_SRC : 0);
			if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
				h->stamp = 0;
				return 1;
			}
			if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
				h->err = fib_errno(rc);
			} else {
				h->ifindex = fib.ifindex;
				/* dmac then smac (struct bpf_fib_lookup has smac first) */
				__builtin_memcpy(h->macs, fib.dmac, 6);
				__builtin_memcpy((__u8 *)h->macs + 6, fib.smac, 6);
				if (!wild)
					h->src = f->src_addr;
				else if (v6)
					__builtin_memcpy(&h->src, fib.ipv6_src, 16);
				else
					map_v4(&h->src, fib.ipv4_src);
			}
		}
		h->addr = s->addr;
		h->sflags = s->flags;
		h->stamp = now;
	}
	return 0;
}

/*
 * Rewrites the packet to saddr:sport -> daddr:dport with L2 `macs`,
 * keeping the IP and UDP checksums right incrementally (so a datagram that
 * arrived with a bad checksum still fails at the receiver).
 */
INLINE void rewrite(struct __sk_buff *skb, const struct pkt *p, struct cur *c, const __u32 *macs, const addr_t *saddr, const addr_t *daddr, __u32 ports, const int v6)
{
	/* Fields already right are not written: copies to one host (or behind
	 * one router) differ only in ports (or addresses), and every write is
	 * a helper call. */
	__u32 csum_off = p->l4 + offsetof(struct udphdr, check);
	if (c->macs[0] != macs[0] || c->macs[1] != macs[1] || c->macs[2] != macs[2]) {
		bpf_skb_store_bytes(skb, 0, macs, 12, 0);
		c->macs[0] = macs[0];
		c->macs[1] = macs[1];
		c->macs[2] = macs[2];
	}
	if (!same_addr(&c->saddr, saddr) || !same_addr(&c->daddr, daddr)) {
		if (v6) {
			addr_t na[2] = { *saddr, *daddr };
			long d = bpf_csum_diff((void *)c, 32, (void *)na, 32, 0);
			bpf_l4_csum_replace(skb, csum_off, 0, d, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0);
			bpf_skb_store_bytes(skb, p->l3 + offsetof(struct ipv6hdr, saddr), na, 32, 0);
		} else {
			__be32 oa[2] = { c->saddr.w[3], c->daddr.w[3] };
			__be32 na[2] = { saddr->w[3], daddr->w[3] };
			long d = bpf_csum_diff(oa, 8, na, 8, 0);
			bpf_l3_csum_replace(skb, p->l3 + offsetof(struct iphdr, check), 0, d, 0);
			bpf_l4_csum_replace(skb, csum_off, 0, d, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0);
			bpf_skb_store_bytes(skb, p->l3 + offsetof(struct iphdr, saddr), na, 8, 0);
		}
		c->saddr = *saddr;
		c->daddr = *daddr;
	}
	if (c->ports != ports) {
		bpf_l4_csum_replace(skb, csum_off, c->ports, ports, 4 | BPF_F_MARK_MANGLED_0);
		bpf_skb_store_bytes(skb, p->l4, &ports, 4, 0);
		c->ports = ports;
	}
}

INLINE __u32 ports_of(__be16 sport, __be16 dport)
{
	return (__u32)sport | ((__u32)dport << 16); /* little-endian host: sport first on the wire */
}

INLINE void count_out(struct flow_counters *fc, struct dest_counters *dc, __u32 plen)
{
	dc->packets_out++;
	dc->bytes_out += plen;
	fc->packets_out++;
	fc->bytes_out += plen;
}

INLINE void count_error(struct flow_counters *fc, struct dest_counters *dc, __u32 err)
{
	dc->send_error++;
	dc->last_errno = err;
	fc->drop_send_error++;
}

/*
 * Rewrites the packet for subscriber `s` from its resolved hop. Returns
 * the hop, or 0 when there is nothing to send: a hole, a subscriber that
 * joined after pass 1 ran for this packet (it starts with the next one),
 * or a failed route (counted against the destination).
 */
INLINE const struct hop *prepare(struct __sk_buff *skb, const struct flow_value *f, struct state *st, const struct sub *s, struct dest_counters *dc, struct flow_counters *fc, const int v6)
{
	if (s->port == 0)
		return 0;
	__u32 dslot = s->dest_slot;
	const struct hop *h = bpf_map_lookup_elem(&hops, &dslot);
	if (!h || !h->stamp || !same_addr(&h->addr, &s->addr))
		return 0;
	if (h->err) {
		count_error(fc, dc, h->err);
		return 0;
	}
	rewrite(skb, &st->p, &st->c, h->macs, &h->src, &s->addr, ports_of(f->src_port, s->port), v6);
	return h;
}

/*
 * Pass 2, one chunk: rewrite and clone once per subscriber in [from, to).
 * With `last` (the final chunk), the subscriber at index to - 1 takes the
 * original packet (bpf_redirect: one clone fewer) and the verdict is
 * returned; otherwise returns TCX_NEXT to mean "continue".
 * (Which copy is last is fixed, not "the last good one": a data-dependent
 * choice makes the verifier walk the loop once per possible value.)
 */
INLINE int send_chunk(struct __sk_buff *skb, const struct flow_value *f, struct state *st, struct flow_counters *fc, __u32 from, __u32 to, int last, const int v6)
{
	__u32 plen = st->p.payload_len;
	__u32 clones = last ? to - 1 : to;
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < SLUICE_CHUNK; i++) {
		if (from + i >= clones)
			break;
		const struct sub *s = sub_at(f, from + i);
		__u32 dslot = s->dest_slot;
		struct dest_counters *dc = bpf_map_lookup_elem(&dest_stats, &dslot);
		if (!dc)
			continue;
		const struct hop *h = prepare(skb, f, st, s, dc, fc, v6);
		if (!h)
			continue;
		__u32 ifindex = h->ifindex;
		long rc = bpf_clone_redirect(skb, ifindex, ifindex == LO_IFINDEX ? BPF_F_INGRESS : 0);
		if (rc < 0)
			count_error(fc, dc, (__u32)-rc);
		else
			count_out(fc, dc, plen);
	}
	if (!last)
		return TCX_NEXT;
	const struct sub *s = sub_at(f, to - 1);
	__u32 dslot = s->dest_slot;
	struct dest_counters *dc = bpf_map_lookup_elem(&dest_stats, &dslot);
	if (!dc)
		return TCX_DROP;
	const struct hop *h = prepare(skb, f, st, s, dc, fc, v6);
	if (!h)
		return TCX_DROP;
	/* Counted as sent: errors after the hook are not visible here. */
	count_out(fc, dc, plen);
	__u32 ifindex = h->ifindex;
	return bpf_redirect(ifindex, ifindex == LO_IFINDEX ? BPF_F_INGRESS : 0);
}

INLINE int punt(struct flow_counters *fc, __u64 *reason, __u32 plen)
{
	*reason += 1;
	fc->to_stack_packets++;
	fc->to_stack_bytes += plen;
	return TCX_PASS;
}

/*
 * Why a long list is not sent in one go. At an interface's ingress this
 * program runs inside the CPU's backlog processing, and every copy it
 * makes for a veth or lo is queued to that same backlog (netif_rx). The
 * backlog takes its input queue whole and works through it, so the copies
 * of every datagram taken together land in the input queue before any is
 * delivered: a burst of B datagrams to N subscribers needs room for B × N
 * (net.core.netdev_max_backlog, 1000 by default: a burst of 10 to 100
 * subscribers overflows it). So after each run of SLUICE_RUN copies the
 * packet is put back as it arrived (headers restored) and sent through its
 * interface's input queue again, marked with the run to go on with: the
 * copies already queued are delivered before it comes back, and the
 * backlog holds B × (SLUICE_RUN + 1) at most. Per subscriber the order
 * holds: a flow's packets stay on one CPU and the queue is FIFO.
 *
 * Only at the ingress of an interface other than lo (lo's copies come from
 * its egress hook, whose sender drains the backlog after each send), and
 * only for packets without a mark of their own (the resumed packet's mark
 * carries the chunk).
 */
INLINE int may_yield(const struct __sk_buff *skb, const struct state *st)
{
	return st->orig_mark == 0 && skb->ifindex != LO_IFINDEX && skb->ingress_ifindex == skb->ifindex;
}

INLINE int yield_to_backlog(struct __sk_buff *skb, struct state *st, struct flow_counters *fc, __u32 next_chunk, const int v6)
{
	const struct pkt *p = &st->p;
	fc->resumed++;
	rewrite(skb, p, &st->c, st->macs0, &p->saddr, &p->daddr, ports_of(p->sport, p->dport), v6);
	skb->mark = SLUICE_RESUME | (next_chunk & 0xff);
	return bpf_redirect(skb->ifindex, BPF_F_INGRESS);
}

/*
 * One run's share of the work for the packet in `st`: resolve one chunk
 * or send one chunk, then continue in a new run of this program (tail
 * call) until the list is done. Lists of up to SLUICE_CHUNK take one run.
 */
INLINE int run_stage(struct __sk_buff *skb, struct state *st, const struct flow_value *f, struct flow_counters *fc)
{
	__u32 n = st->n;
	__u32 chunks = (n + SLUICE_CHUNK - 1) / SLUICE_CHUNK;
	__u32 stage = st->stage;
	const int v6 = st->p.v6;
	if (stage < chunks) {
		__u32 from = stage * SLUICE_CHUNK;
		__u32 to = from + SLUICE_CHUNK < n ? from + SLUICE_CHUNK : n;
		__u64 now = bpf_ktime_get_ns();
		if (v6 ? resolve_chunk(skb, f, &st->p, from, to, now, 1) : resolve_chunk(skb, f, &st->p, from, to, now, 0))
			return punt(fc, &fc->punt_no_neighbour, st->p.payload_len);
		stage++;
		st->stage = stage;
		if (stage < chunks)
			goto next_run;
	}
	if (stage == chunks) {
		/* Every hop is known: the copies start now. */
		st->orig_mark = skb->mark;
		skb->mark = SLUICE_MARK;
		if (f->flags & F_SPILL) {
			/* Up through lo to the spill socket (bound like the listen
			 * socket, on another port; it takes only copies with our mark),
			 * from the local address the datagram was sent to: a strict
			 * rp_filter on lo would refuse the original sender, routed
			 * elsewhere (the checks that need the sender are done). */
			__u32 zmac[3] = {};
			rewrite(skb, &st->p, &st->c, zmac, &st->p.daddr, &st->p.daddr, ports_of(st->p.sport, f->spill_port), v6);
			if (bpf_clone_redirect(skb, LO_IFINDEX, BPF_F_INGRESS) < 0)
				fc->spill_error++;
			else
				fc->spilled++;
		}
		if (chunks == 0) {
			skb->mark = st->orig_mark;
			return TCX_DROP;
		}
	}
	/* Sends that go on through the input queue take smaller runs: a waiting
	 * datagram then holds SLUICE_RUN + 1 places of the backlog. */
	st->step = may_yield(skb, st) ? SLUICE_RUN : SLUICE_CHUNK;
	/* Read back from the map: the verifier then walks one path with an
	 * unknown step instead of one per value (two would not fit its budget). */
	__u32 step = *(volatile __u32 *)&st->step;
	const int yielding = step == SLUICE_RUN;
	__u32 chunk = stage - chunks;
	__u32 from = chunk * step;
	int last = from + step >= n;
	__u32 to = last ? n : from + step;
	int verdict = v6 ? send_chunk(skb, f, st, fc, from, to, last, 1) : send_chunk(skb, f, st, fc, from, to, last, 0);
	if (last) {
		if (verdict != TCX_REDIRECT)
			skb->mark = st->orig_mark;
		return verdict;
	}
	st->stage = stage + 1;
	if (yielding)
		return v6 ? yield_to_backlog(skb, st, fc, chunk + 1, 1) : yield_to_backlog(skb, st, fc, chunk + 1, 0);
next_run:
	st->active = 1;
	bpf_tail_call(skb, &chain, 0);
	/* Only reached when the tail call failed (chain empty, or the limit). */
	st->active = 0;
	if (st->stage < chunks) {
		/* Nothing sent yet: the companion carries the packet. */
		fc->to_stack_packets++;
		fc->to_stack_bytes += st->p.payload_len;
		return TCX_PASS;
	}
	fc->drop_send_error++;
	skb->mark = st->orig_mark;
	return TCX_DROP;
}

SEC("tcx")
int sluice_tcx(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct state *st = bpf_map_lookup_elem(&state, &zero);
	if (!st)
		return TCX_NEXT;
	struct flow_value *f;
	struct flow_counters *fc;
	__u32 slot;

	if (st->active) {
		/* A continuation: this run was tail-called for the packet in st. */
		st->active = 0;
		f = bpf_map_lookup_elem(&flows, &st->key);
		if (!f) {
			/* Flow removed meanwhile: the companion takes the packet if no copy left yet. */
			if (st->stage < (st->n + SLUICE_CHUNK - 1) / SLUICE_CHUNK)
				return TCX_PASS;
			skb->mark = st->orig_mark;
			return TCX_DROP;
		}
		slot = f->slot;
		fc = bpf_map_lookup_elem(&flow_stats, &slot);
		if (!fc)
			return TCX_DROP;
		goto run; /* one call site of run_stage: the verifier walks it once */
	}

	/* Our own clones, should they re-enter a hook that runs this program. */
	if (skb->mark == SLUICE_MARK)
		return TCX_NEXT;
	/* A packet this program sent back through the input queue (yield_to_backlog). */
	__u32 resume = 0;
	if ((skb->mark & SLUICE_RESUME_MASK) == SLUICE_RESUME) {
		resume = skb->mark & 0xff;
		skb->mark = 0;
		if (resume == 0 || skb->ifindex == LO_IFINDEX)
			return TCX_DROP; /* not one of ours: only this program writes the mark, with a chunk >= 1 */
	}

	struct pkt *p = &st->p;
	__builtin_memset(p, 0, sizeof(*p));
	if (parse(skb, p))
		return TCX_NEXT;

	struct flow_key *key = &st->key;
	key->addr = p->daddr;
	key->port = p->dport;
	key->pad = 0;
	f = bpf_map_lookup_elem(&flows, key);
	if (!f) {
		/* A wildcard listen (0.0.0.0 / ::) matches any local address. The
		 * wildcard key is tried first: most UDP traffic on the host is not
		 * ours and should cost one more lookup, not the local-address test too. */
		__builtin_memset(&key->addr, 0, 16);
		if (!p->v6)
			key->addr.w[2] = __builtin_bswap32(0x0000ffff);
		f = bpf_map_lookup_elem(&flows, key);
		if (!f || !is_local(&p->daddr))
			return TCX_NEXT;
	}
	slot = f->slot;
	fc = bpf_map_lookup_elem(&flow_stats, &slot);
	if (!fc)
		return TCX_NEXT;
	if (resume) {
		/* Counted and checked when it first arrived; the list goes on at chunk
		 * `resume` (subscribers keep their index while the list changes). */
		__u32 rn = f->nsubs;
		st->n = rn > SLUICE_MAX_SUBS ? SLUICE_MAX_SUBS : rn;
		__u32 chunks = (st->n + SLUICE_CHUNK - 1) / SLUICE_CHUNK;
		if (p->punt || resume * SLUICE_RUN >= st->n)
			return TCX_DROP; /* the list shrank meanwhile: nobody left for it */
		st->stage = chunks + resume;
		st->orig_mark = 0;
		skb->mark = SLUICE_MARK;
		goto start;
	}
	fc->packets_in++;
	fc->bytes_in += p->payload_len;

	/* What the program cannot carry, the companion socket does; what the
	 * stack would drop, it drops (then no tier has seen it). */
	switch (p->punt) {
	case PUNT_FRAGMENT:
		return punt(fc, &fc->punt_fragment, p->payload_len);
	case PUNT_OPTIONS:
		return punt(fc, &fc->punt_ip_options, p->payload_len);
	case PUNT_GSO:
		return punt(fc, &fc->punt_gso, p->payload_len);
	case PUNT_LENGTH:
		return punt(fc, &fc->punt_length, p->payload_len);
	case PUNT_CHECKSUM:
		return punt(fc, &fc->punt_checksum, p->payload_len);
	case PUNT_OTHER_HOST:
		return punt(fc, &fc->punt_other_host, p->payload_len);
	}
	/* A group is carried here only as it arrives on the interface the flow
	 * joined it on (where the stack's membership check would deliver it),
	 * and only for a flow without a spill socket (whose copy through lo
	 * would be addressed to the group). Otherwise the stack decides. */
	if (p->group && (!(f->flags & F_GROUP) || (f->flags & F_SPILL) || f->in_ifindex == 0 || skb->ifindex != f->in_ifindex))
		return punt(fc, &fc->punt_other_host, p->payload_len);
	/* Source checks of the stack's input routing: datagrams from the
	 * network only (local ones keep their route and skip them). */
	if (skb->ifindex != LO_IFINDEX && !source_ok(skb, skb->ifindex, p))
		return punt(fc, &fc->punt_source, p->payload_len);
	/* Before the policy's checks: a datagram the stack would drop is no tier's to count. */
	if (!udp_csum_ok(skb, p))
		return punt(fc, &fc->punt_checksum, p->payload_len);

	if (!(f->flags & F_ANY_SOURCE)) {
		struct allow_key ak = { .prefixlen = 32 + 128, .slot = __builtin_bswap32(slot), .addr = p->saddr };
		if (!bpf_map_lookup_elem(&allow, &ak)) {
			/* A group's sender the flow does not take: the host's source
			 * filter (SSM) may drop it before any socket, uncounted, or
			 * deliver it to the companion, which counts it: the stack decides. */
			if (p->group)
				return punt(fc, &fc->punt_source, p->payload_len);
			fc->drop_source++;
			return TCX_DROP;
		}
	}
	if (p->payload_len > f->max_payload) {
		fc->drop_too_large++;
		return TCX_DROP;
	}
	if ((f->flags & F_MPEGTS) && !ts_ok(skb, p->l4 + sizeof(struct udphdr), p->payload_len)) {
		fc->drop_malformed++;
		return TCX_DROP;
	}
	if ((f->flags & F_RTP) && !rtp_ok(skb, p->l4 + sizeof(struct udphdr), p->payload_len)) {
		fc->drop_malformed++;
		return TCX_DROP;
	}

	__u32 n = f->nsubs;
	st->n = n > SLUICE_MAX_SUBS ? SLUICE_MAX_SUBS : n;
	st->stage = 0;
start:
	st->c.saddr = p->saddr;
	st->c.daddr = p->daddr;
	st->c.ports = ports_of(p->sport, p->dport);
	if (bpf_skb_load_bytes(skb, 0, st->c.macs, 12))
		return resume ? TCX_DROP : TCX_NEXT;
	st->macs0[0] = st->c.macs[0];
	st->macs0[1] = st->c.macs[1];
	st->macs0[2] = st->c.macs[2];
run:
	return run_stage(skb, st, f, fc);
}

/* ======================================================================
 * XDP: redirect (one subscriber) in the driver's receive path.
 *
 * Attached (kernelHook 'xdp'/'auto') at XDP of the interfaces whose tcx
 * ingress runs sluice_tcx, in front of it. It carries only the plainest
 * case completely: a frame addressed to this interface's MAC, IPv4 without
 * options or fragmentation (or IPv6 with UDP right after the header),
 * exact lengths, a right IPv4 header checksum and a UDP checksum it has
 * summed itself (or none, IPv4), for a flow with exactly one subscriber
 * that is not local, no spill, no group, no payload format check, an
 * allowed sender within the size limit, a source the stack's checks
 * accept (source_ok, as at tcx) and a next hop with a resolved neighbour
 * out of an interface in `xdp_tx` (even back out of the one it came in on).
 * That frame is rewritten in place
 * (addresses, ports, MACs, checksums incrementally: a wrong checksum stays
 * wrong) and sent with XDP_TX or bpf_redirect_map, counted in the same
 * flow_stats/dest_stats as at tcx, and in xdp_stats.
 *
 * Everything else returns XDP_PASS untouched before any byte is written:
 * the skb is built and sluice_tcx (tcx ingress) judges it exactly as
 * without XDP (replicate, punts, drops and their counters stay there).
 * So XDP never drops: at worst a frame costs the tcx path it costs today.
 * ====================================================================== */

/* Per flow slot, per CPU: what the XDP program carried itself. */
struct xdp_counters {
	__u64 packets; /* redirected at XDP */
	__u64 bytes;   /* their UDP payload */
	__u64 passed;  /* a flow's datagram left to tcx (not a redirect XDP can carry) */
};
struct map_def xdp_stats SEC("maps") = {
	.type = BPF_MAP_TYPE_PERCPU_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = sizeof(struct xdp_counters),
	.max_entries = SLUICE_MAX_FLOWS,
};
/* Egress interfaces a redirect may use (ifindex -> ifindex), written by user space. */
struct map_def xdp_tx SEC("maps") = {
	.type = BPF_MAP_TYPE_DEVMAP_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u32),
	.max_entries = SLUICE_MAX_IFACES,
};
/* MAC address of each XDP-hooked interface (ifindex -> 6 bytes + 2 zero):
 * before the stack there is no pkt_type, so "for this host" is checked here. */
struct map_def ifmac SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = 8,
	.max_entries = SLUICE_MAX_IFACES,
	.map_flags = BPF_F_NO_PREALLOC,
};

#define XDP_ABORTED_ 0
#define XDP_DROP_ 1
#define XDP_PASS_ 2
#define XDP_TX_ 3
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;
static long (*bpf_xdp_load_bytes)(struct xdp_md *xdp, __u32 off, void *buf, __u32 len) = (void *)189;

/* Ones-complement sum of the datagram (pseudo-header included) == 0xffff? */
INLINE int xdp_udp_csum_ok(struct xdp_md *ctx, const struct pkt *p)
{
	__u32 zero = 0;
	struct scratch *sc = bpf_map_lookup_elem(&scratch, &zero);
	if (!sc)
		return 0;
	__u32 len = p->payload_len + sizeof(struct udphdr);
	if (len > 0xffff)
		return 0;
	long rc = pseudo_hdr_sum(sc, p, len);
	if (rc < 0)
		return 0;
	__u32 sum = rc;
	RETURN_DATAGRAM_CSUM_OK(bpf_xdp_load_bytes, ctx);
}

/* A checksum field after adding `diff` (a bpf_csum_diff of old -> new words). */
INLINE __u16 csum_update(__u16 check, long diff)
{
	__u32 s = fold((__u32)diff);
	__u32 t = (__u16)~check + s;
	return ~fold(t) & 0xffff;
}

/*
 * Parses a frame at XDP. Returns 0 only for the plain case described
 * above (the caller still checks the flow, source, checksum and route).
 */
INLINE int xdp_parse(struct xdp_md *ctx, struct pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	__u32 ifindex = ctx->ingress_ifindex;
	const __u16 *mac = bpf_map_lookup_elem(&ifmac, &ifindex);
	const __u16 *dst = (const __u16 *)eth->h_dest;
	/* Another host's, multicast or broadcast frame: the stack decides. */
	if (!mac || dst[0] != mac[0] || dst[1] != mac[1] || dst[2] != mac[2])
		return -1;
	__u32 real = end - data - sizeof(*eth);
	p->l3 = sizeof(*eth);
	if (eth->h_proto == htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
			return -1;
		if (bswap16(ip->frag_off) & 0x3fff)
			return -1; /* MF or an offset: a fragment */
		struct udphdr *udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			return -1;
		__u16 tot = bswap16(ip->tot_len);
		__u16 ulen = bswap16(udp->len);
		if (tot != real || ulen < sizeof(*udp) || ulen != tot - sizeof(*ip))
			return -1;
		if (fold(bpf_csum_diff(0, 0, (void *)ip, sizeof(*ip), 0)) != 0xffff)
			return -1;
		p->v6 = 0;
		p->l4 = p->l3 + sizeof(*ip);
		p->ip_len = tot;
		p->payload_len = ulen - sizeof(*udp);
		p->tos = ip->tos;
		map_v4(&p->saddr, ip->saddr);
		map_v4(&p->daddr, ip->daddr);
		p->group = (p->daddr.w[3] & 0xf0) == 0xe0;
		p->sport = udp->source;
		p->dport = udp->dest;
		p->check = udp->check;
		return p->group ? -1 : 0;
	}
	if (eth->h_proto == htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->version != 6 || ip6->nexthdr != IPPROTO_UDP)
			return -1;
		struct udphdr *udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > end)
			return -1;
		__u16 plen = bswap16(ip6->payload_len);
		__u16 ulen = bswap16(udp->len);
		if ((__u32)plen + sizeof(*ip6) != real || ulen < sizeof(*udp) || ulen != plen)
			return -1;
		p->v6 = 1;
		p->l4 = p->l3 + sizeof(*ip6);
		p->ip_len = plen + sizeof(*ip6);
		p->payload_len = ulen - sizeof(*udp);
		__builtin_memcpy(&p->saddr, &ip6->saddr, 16);
		__builtin_memcpy(&p->daddr, &ip6->daddr, 16);
		p->group = (p->daddr.w[0] & 0xff) == 0xff;
		p->sport = udp->source;
		p->dport = udp->dest;
		p->check = udp->check;
		return p->group || p->check == 0 ? -1 : 0;
	}
	return -1;
}

/* The flow for the parsed datagram, as sluice_tcx finds it. */
INLINE struct flow_value *xdp_flow(const struct pkt *p)
{
	struct flow_key key = { .addr = p->daddr, .port = p->dport };
	struct flow_value *f = bpf_map_lookup_elem(&flows, &key);
	if (f)
		return f;
	__builtin_memset(&key.addr, 0, 16);
	if (!p->v6)
		key.addr.w[2] = __builtin_bswap32(0x0000ffff);
	f = bpf_map_lookup_elem(&flows, &key);
	if (!f || !is_local(&p->daddr))
		return 0;
	return f;
}

/* Every check sluice_tcx makes before a copy, passed: may XDP carry it? */
INLINE int xdp_carries(struct xdp_md *ctx, const struct flow_value *f, const struct pkt *p)
{
	if (f->nsubs != 1 || (f->flags & (F_SPILL | F_GROUP | F_MPEGTS | F_RTP)))
		return 0;
	const struct sub *s = &f->subs[0];
	if (s->port == 0 || (s->flags & SUB_LOCAL))
		return 0;
	if (p->payload_len > f->max_payload)
		return 0;
	if (!(f->flags & F_ANY_SOURCE)) {
		struct allow_key ak = { .prefixlen = 32 + 128, .slot = __builtin_bswap32(f->slot), .addr = p->saddr };
		if (!bpf_map_lookup_elem(&allow, &ak))
			return 0;
	}
	if (!source_ok(ctx, ctx->ingress_ifindex, p))
		return 0;
	if (p->check == 0)
		return !p->v6;
	return xdp_udp_csum_ok(ctx, p);
}

/* Rewrites the frame in place to src:sport -> the subscriber, with the next hop's MACs. */
INLINE int xdp_rewrite(struct xdp_md *ctx, const struct pkt *p, const struct bpf_fib_lookup *fib, const addr_t *src, const struct sub *s, __be16 sport)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	__builtin_memcpy(eth->h_dest, fib->dmac, 6);
	__builtin_memcpy(eth->h_source, fib->smac, 6);
	if (p->v6) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		struct udphdr *udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > end)
			return -1;
		__u32 old[9], new[9];
		__builtin_memcpy(old, &ip6->saddr, 32);
		old[8] = *(__u32 *)udp;
		__builtin_memcpy(new, src, 16);
		__builtin_memcpy(&new[4], &s->addr, 16);
		new[8] = ports_of(sport, s->port);
		__u16 c = csum_update(udp->check, bpf_csum_diff(old, 36, new, 36, 0));
		udp->check = c ? c : 0xffff;
		__builtin_memcpy(&ip6->saddr, new, 32);
		*(__u32 *)udp = new[8];
		return 0;
	}
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return -1;
	__u32 old[3] = { ip->saddr, ip->daddr, *(__u32 *)udp };
	__u32 new[3] = { src->w[3], s->addr.w[3], ports_of(sport, s->port) };
	ip->check = csum_update(ip->check, bpf_csum_diff(old, 8, new, 8, 0));
	if (udp->check) {
		__u16 c = csum_update(udp->check, bpf_csum_diff(old, 12, new, 12, 0));
		udp->check = c ? c : 0xffff;
	}
	ip->saddr = new[0];
	ip->daddr = new[1];
	*(__u32 *)udp = new[2];
	return 0;
}

SEC("xdp")
int sluice_xdp(struct xdp_md *ctx)
{
	struct pkt p;
	__builtin_memset(&p, 0, sizeof(p));
	if (xdp_parse(ctx, &p))
		return XDP_PASS_;
	struct flow_value *f = xdp_flow(&p);
	if (!f)
		return XDP_PASS_;
	__u32 slot = f->slot;
	struct xdp_counters *xc = bpf_map_lookup_elem(&xdp_stats, &slot);
	struct flow_counters *fc = bpf_map_lookup_elem(&flow_stats, &slot);
	if (!xc || !fc)
		return XDP_PASS_;
	if (!xdp_carries(ctx, f, &p)) {
		xc->passed++;
		return XDP_PASS_;
	}
	const struct sub *s = &f->subs[0];
	__u32 dslot = s->dest_slot;
	struct dest_counters *dc = bpf_map_lookup_elem(&dest_stats, &dslot);
	if (!dc) {
		xc->passed++;
		return XDP_PASS_;
	}
	const int wild = (f->flags & F_SRC_WILD) != 0;
	struct bpf_fib_lookup fib;
	__builtin_memset(&fib, 0, sizeof(fib));
	fib.l4_protocol = IPPROTO_UDP;
	fib.sport = f->src_port;
	fib.dport = s->port;
	fib.tot_len = p.ip_len;
	fib.ifindex = LO_IFINDEX; /* as at tcx: looked up as a local send */
	if (p.v6) {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, &f->src_addr, 16);
		__builtin_memcpy(fib.ipv6_dst, &s->addr, 16);
	} else {
		fib.family = AF_INET;
		fib.ipv4_src = f->src_addr.w[3];
		fib.ipv4_dst = s->addr.w[3];
	}
	/* Any failure (no route, no neighbour yet, MTU) is tcx's to count or punt. */
	if (bpf_fib_lookup(ctx, &fib, sizeof(fib), wild ? BPF_FIB_LOOKUP_SRC : 0) != BPF_FIB_LKUP_RET_SUCCESS || fib.ifindex == LO_IFINDEX) {
		xc->passed++;
		return XDP_PASS_;
	}
	__u32 out = fib.ifindex;
	__u32 in = ctx->ingress_ifindex;
	/* Also for XDP_TX: an interface not in xdp_tx is one user space does not trust to send XDP frames (a veth under 'auto'). */
	if (!bpf_map_lookup_elem(&xdp_tx, &out)) {
		xc->passed++;
		return XDP_PASS_;
	}
	addr_t src;
	if (!wild)
		src = f->src_addr;
	else if (p.v6)
		__builtin_memcpy(&src, fib.ipv6_src, 16);
	else
		map_v4(&src, fib.ipv4_src);
	/* Nothing written before this point: every XDP_PASS above left the frame as received. */
	if (xdp_rewrite(ctx, &p, &fib, &src, s, f->src_port))
		return XDP_DROP_; /* unreachable: the bounds were checked by xdp_parse */
	fc->packets_in++;
	fc->bytes_in += p.payload_len;
	count_out(fc, dc, p.payload_len);
	xc->packets++;
	xc->bytes += p.payload_len;
	if (out == in)
		return XDP_TX_;
	return bpf_redirect_map(&xdp_tx, out, 0);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
