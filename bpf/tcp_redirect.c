// SPDX-License-Identifier: (MIT OR GPL-2.0)
/*
 * Sluice tcp-redirect in the kernel: a joined pair's bytes go from one
 * socket's receive path straight into the other's send queue (sockmap
 * with an sk_skb verdict program), never reaching user space.
 *
 * Two programs:
 *  - tcp_sockops (cgroup sock_ops): when a connection of ours reaches
 *    ESTABLISHED, before any payload can be queued on it, puts the socket
 *    into tcp_socks (by its cookie) and gives it a tcp_dirs entry. Ours:
 *    accepted on a relay's listening port, or connected from the local
 *    port of one of Sluice's upstream sockets (bound before connecting and
 *    listed until joined); both kinds are in tcp_ports, a listen port with
 *    its address unless it is a wildcard. Ports rather than a mark: the
 *    programs are per process, so another Sluice process's sockets are
 *    never taken here.
 *    Inserting this early is what keeps the byte order simple: every byte
 *    the socket ever receives passes the verdict, and is counted.
 *  - tcp_verdict (sk_skb verdict): for each received skb, either redirects
 *    it to the peer's send queue or passes it to the socket (user space
 *    reads it: the slow path, src/dataplane/tcp/sockmap-joiner.ts).
 *
 * A direction (one receiving socket) is passing until user space arms it:
 * it has read every passed byte and written it to the peer, and says so by
 * writing the count (forwarded) with a new arm generation into tcp_ctl.
 * The verdict redirects only once forwarded equals what it passed, so no
 * redirected byte can overtake one user space still holds.
 *
 * The kernel applies no back-pressure to a redirect: an skb handed to the
 * peer's psock no longer counts against the receiving socket's buffer, so
 * a fast sender and a slow receiver would queue without bound in kernel
 * memory. The verdict therefore computes the peer's backlog (bytes of this
 * direction not yet in the peer's send queue: forwarded + redirected -
 * written, where written comes from the peer's tcp_sock) and, past
 * tcp_ctl.limit, stops redirecting: the direction is throttled, and from
 * then on passes. Passed bytes are charged to the receiving socket, so its
 * window closes as it would for a slow user-space proxy; user space waits
 * for the backlog to drain, writes what was passed, and arms again.
 *
 * The tcp_sock offsets differ between kernel builds: the loads below use
 * placeholder offsets that the loader replaces with the running kernel's,
 * from its BTF (src/wire/btf.ts; what libbpf's CO-RE would do).
 *
 * Build: npm run build:bpf (clang -O2 -target bpf); the object is committed.
 */
#include <linux/bpf.h>

#define SEC(name) __attribute__((section(name), used))

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static __u64 (*bpf_get_socket_cookie)(void *ctx) = (void *)46;
static long (*bpf_sock_hash_update)(struct bpf_sock_ops *skops, void *map, void *key, __u64 flags) = (void *)70;
static long (*bpf_sk_redirect_hash)(struct __sk_buff *skb, void *map, void *key, __u64 flags) = (void *)72;
static long (*bpf_sk_release)(void *sk) = (void *)86;
static void *(*bpf_skc_to_tcp_sock)(void *sk) = (void *)137;

/* Placeholder offsets into struct tcp_sock, replaced at load (see above). */
#define OFF_WRITE_SEQ 0x7e01
#define OFF_SND_UNA 0x7e02
#define OFF_BYTES_ACKED 0x7e03
#define LOAD_U32(p, off) (*(volatile __u32 *)((char *)(p) + (off)))
#define LOAD_U64(p, off) (*(volatile __u64 *)((char *)(p) + (off)))

struct map_def {
	__u32 type;
	__u32 key_size;
	__u32 value_size;
	__u32 max_entries;
	__u32 map_flags;
};

/* ---- layout shared with TypeScript (src/dataplane/tcp/sockmap-layout.ts) ---- */
#define TCP_MAX_SOCKS 65536

/* Written by these programs only; user space reads it and deletes it when the pair ends. */
struct tcp_dir {
	__u64 passed;      /* bytes passed to the socket (user space reads them) */
	__u64 redirected;  /* bytes redirected to the peer */
	__u32 armed_gen;   /* the arm generation the verdict last took */
	__u32 throttled_gen; /* == armed_gen: throttled since (passing again) */
	__u32 throttles;   /* times the backlog limit was hit */
	__u32 pad;
};

/* Written by user space only (whole value, in one update); the programs read it. */
struct tcp_ctl {
	__u64 peer;        /* the peer socket's cookie (its key in tcp_socks) */
	__u64 forwarded;   /* bytes user space read from this socket and wrote to the peer */
	__u32 arm_gen;     /* bumped to ask for redirection once forwarded == passed */
	__u32 limit;       /* most bytes of backlog at the peer before throttling */
};

/* tcp_ports values: what a local port is to us, and on which address. */
#define TCP_PORT_LISTEN 1   /* a relay listens on it: take what it accepts */
#define TCP_PORT_UPSTREAM 2 /* an upstream socket of ours is bound to it: take it when connected */
struct tcp_port {
	__u32 kind;    /* TCP_PORT_* */
	__u32 family;  /* AF_INET or AF_INET6: only sockets on addr; 0: any address */
	__u32 addr[4]; /* network order, as sock_ops reads local_ip4 / local_ip6 */
};

struct map_def tcp_socks SEC("maps") = {
	.type = BPF_MAP_TYPE_SOCKHASH,
	.key_size = sizeof(__u64),
	.value_size = sizeof(__u64),
	.max_entries = TCP_MAX_SOCKS,
};
struct map_def tcp_dirs SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u64),
	.value_size = sizeof(struct tcp_dir),
	.max_entries = TCP_MAX_SOCKS,
	.map_flags = BPF_F_NO_PREALLOC,
};
struct map_def tcp_ctl SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u64),
	.value_size = sizeof(struct tcp_ctl),
	.max_entries = TCP_MAX_SOCKS,
	/* Replaced whole by user space while the verdict reads it: without
	 * preallocation an old element is freed after RCU, never reused under
	 * a reader, so a reader sees the old value or the new, never a mix. */
	.map_flags = BPF_F_NO_PREALLOC,
};
struct map_def tcp_ports SEC("maps") = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32), /* local port, host order */
	.value_size = sizeof(struct tcp_port),
	.max_entries = TCP_MAX_SOCKS,
};

SEC("sockops")
int tcp_sockops(struct bpf_sock_ops *skops)
{
	__u32 op = skops->op;
	if (op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB && op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	if (skops->family != 2 && skops->family != 10)
		return 1;
	__u32 port = skops->local_port;
	struct tcp_port *p = bpf_map_lookup_elem(&tcp_ports, &port);
	__u32 want = op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB ? TCP_PORT_LISTEN : TCP_PORT_UPSTREAM;
	if (!p || p->kind != want)
		return 1;
	if (p->family) {
		/* A listen on one address: the same port number on another address is someone else's. */
		if (skops->family != p->family)
			return 1;
		if (p->family == 2 && skops->local_ip4 != p->addr[0])
			return 1;
		if (p->family == 10 && (skops->local_ip6[0] != p->addr[0] || skops->local_ip6[1] != p->addr[1] ||
					skops->local_ip6[2] != p->addr[2] || skops->local_ip6[3] != p->addr[3]))
			return 1;
	}
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct tcp_dir d = {};
	/* The entry first: once in tcp_socks the verdict runs, and counts only with an entry. */
	if (bpf_map_update_elem(&tcp_dirs, &cookie, &d, BPF_NOEXIST))
		return 1;
	bpf_sock_hash_update(skops, &tcp_socks, &cookie, BPF_NOEXIST);
	return 1;
}

SEC("sk_skb/verdict")
int tcp_verdict(struct __sk_buff *skb)
{
	__u64 cookie = bpf_get_socket_cookie(skb);
	struct tcp_dir *d = bpf_map_lookup_elem(&tcp_dirs, &cookie);
	if (!d)
		return SK_PASS; /* not a socket of ours (cannot be in the map without one) */
	__u32 len = skb->len;
	/* A bare FIN: the kernel's redirect treats sending nothing as a broken
	 * pipe (EPIPE on the peer), so it goes to the socket, where it is the
	 * end of file user space waits for. */
	if (len == 0)
		goto pass;
	struct tcp_ctl *c = bpf_map_lookup_elem(&tcp_ctl, &cookie);
	if (!c)
		goto pass; /* not joined yet */
	if (c->arm_gen != d->armed_gen && c->forwarded == d->passed) {
		d->armed_gen = c->arm_gen;
	}
	if (d->armed_gen != c->arm_gen || d->throttled_gen == c->arm_gen)
		goto pass;

	__u64 peer = c->peer;
	struct bpf_sock *o = bpf_map_lookup_elem(&tcp_socks, &peer);
	if (!o)
		goto pass; /* the peer is closing: user space sees it and ends the pair */
	void *t = bpf_skc_to_tcp_sock(o);
	__u64 written = 0;
	int ok = 0;
	if (t) {
		__u32 write_seq = LOAD_U32(t, OFF_WRITE_SEQ);
		__u32 snd_una = LOAD_U32(t, OFF_SND_UNA);
		__u64 acked = LOAD_U64(t, OFF_BYTES_ACKED);
		/* Data bytes written into the peer's send queue: unacknowledged plus acknowledged. */
		written = (__u64)(__u32)(write_seq - snd_una) + acked;
		ok = 1;
	}
	bpf_sk_release(o);
	if (!ok)
		goto pass;
	__s64 backlog = (__s64)(c->forwarded + d->redirected - written);
	if (backlog > (__s64)c->limit) {
		d->throttled_gen = d->armed_gen;
		d->throttles++;
		goto pass;
	}
	d->redirected += len;
	return bpf_sk_redirect_hash(skb, &tcp_socks, &peer, 0);
pass:
	d->passed += len;
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
