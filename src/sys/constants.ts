/**
 * Linux constants for x86_64 and aarch64 (generic socket ABI), checked
 * against the kernel uapi headers. Names follow the C macros so they can be
 * grepped in man pages.
 */
export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const IPPROTO_UDP = 17;

export const SOL_SOCKET = 1;
/** getsockopt: the pending socket error, cleared by reading it. */
export const SO_ERROR = 4;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
/** Lets sends on the socket pass MSG_ZEROCOPY (UDP: Linux 5.0); without it the flag is ignored. */
export const SO_ZEROCOPY = 60;
export const SOL_IP = 0;
export const SOL_IPV6 = 41;
/** cmsg type of an error-queue message on an IPv4 socket (level SOL_IP). */
export const IP_RECVERR = 11;
/** The same on an IPv6 socket (level SOL_IPV6). */
export const IPV6_RECVERR = 25;
export const IPV6_V6ONLY = 26;
export const SOL_UDP = 17;
/** Per-socket or per-message (cmsg, u16) GSO segment size; Linux 4.18. */
export const UDP_SEGMENT = 103;
/** Receive-side coalescing; cmsg carries the segment size (int); Linux 5.0. */
export const UDP_GRO = 104;

export const MSG_TRUNC = 0x20;
/** recvmsg: the control data did not fit msg_controllen (a cmsg was cut). */
export const MSG_CTRUNC = 0x8;
export const MSG_DONTWAIT = 0x40;
export const MSG_WAITFORONE = 0x10000;
/** recvmsg: read the socket's error queue (where zerocopy completions arrive). */
export const MSG_ERRQUEUE = 0x2000;
/** send*: pin the caller's pages instead of copying them; a completion follows on the error queue. */
export const MSG_ZEROCOPY = 0x4000000;

/** sock_extended_err.ee_origin: an error of this host's own stack (e.g. EMSGSIZE), already returned by the send. */
export const SO_EE_ORIGIN_LOCAL = 1;
/** sock_extended_err.ee_origin: an ICMP error from the network (or this host) about a datagram we sent. */
export const SO_EE_ORIGIN_ICMP = 2;
/** The same for ICMPv6. */
export const SO_EE_ORIGIN_ICMP6 = 3;
/** sock_extended_err.ee_origin of a zerocopy completion. */
export const SO_EE_ORIGIN_ZEROCOPY = 5;
/** sock_extended_err.ee_code bit: the kernel copied the data after all (e.g. looped to a local socket). */
export const SO_EE_CODE_ZEROCOPY_COPIED = 1;

export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
/** revents only: the peer hung up (both directions). */
export const POLLHUP = 0x010;
/** revents only: the descriptor is not open. */
export const POLLNVAL = 0x020;
/** The peer shut down its writing half (a stream socket's FIN): asked for in events. */
export const POLLRDHUP = 0x2000;

export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;

/** Layout sizes and offsets (LP64). */
export const SIZEOF_SOCKADDR_IN = 16;
export const SIZEOF_SOCKADDR_IN6 = 28;
/** Room for either family. */
export const SOCKADDR_SPACE = 32;
export const SIZEOF_IOVEC = 16;
export const SIZEOF_MMSGHDR = 64;
export const MMSG = {
  name: 0,
  namelen: 8,
  iov: 16,
  iovlen: 24,
  control: 32,
  controllen: 40,
  flags: 48,
  len: 56,
} as const;
export const SIZEOF_CMSGHDR = 16;
/** struct msghdr: the first 56 bytes of an mmsghdr, same offsets (MMSG). */
export const SIZEOF_MSGHDR = 56;
/** struct sock_extended_err: u32 errno, u8 origin, type, code, pad, u32 info, u32 data. */
export const SIZEOF_SOCK_EXTENDED_ERR = 16;
/** CMSG_LEN(2) for a u16 payload (UDP_SEGMENT). */
export const CMSG_LEN_U16 = 18;
/** CMSG_SPACE(int): room for one int-sized cmsg (UDP_GRO, UDP_SEGMENT). */
export const CMSG_SPACE_INT = 24;
export const SIZEOF_POLLFD = 8;

/** UIO_MAXIOV: the most messages sendmmsg/recvmmsg take per call, and iovecs per message. */
export const UIO_MAXIOV = 1024;
/** UDP_MAX_SEGMENTS before Linux 6.9 (later kernels allow 128). Probed, never assumed larger. */
export const UDP_MAX_SEGMENTS_BASE = 64;

/** rtnetlink (src/sys/netlink/rtnetlink.ts): a raw AF_NETLINK socket of protocol NETLINK_ROUTE. */
export const AF_NETLINK = 16;
export const SOCK_RAW = 3;
export const NETLINK_ROUTE = 0;
/** Receive timeout, struct timeval {i64 tv_sec, i64 tv_usec} on LP64 (the 64-bit-time "OLD" value). */
export const SO_RCVTIMEO = 20;
/** struct sock_txtime {clockid_t clockid; u32 flags}: per-packet send times (SCM_TXTIME); Linux 4.19. */
export const SO_TXTIME = 61;
export const SIZEOF_SOCK_TXTIME = 8;
export const CLOCK_MONOTONIC = 1;

/** nf_tables speaks NETLINK_NETFILTER (src/sys/netlink/nftables.ts). */
export const NETLINK_NETFILTER = 12;
export const SO_REUSEADDR = 2;
/** Marks every packet a socket sends (skb->mark); needs CAP_NET_ADMIN. Sluice's own sockets carry it so its rules skip them. */
export const SO_MARK = 36;
/** getsockopt: the socket cookie (u64), the id eBPF programs see. */
export const SO_COOKIE = 57;
/** u64 that names a network namespace for the boot's lifetime (never reused, unlike its inode); Linux 5.14+. */
export const SO_NETNS_COOKIE = 71;
/** Classic BPF socket filter (struct sock_fprog). */
export const SO_ATTACH_FILTER = 26;
/** Several sockets (same user) may bind one address; the kernel spreads datagrams over the group. */
export const SO_REUSEPORT = 15;
/** A classic BPF program that picks the socket of a reuseport group by index (struct sock_fprog). */
export const SO_ATTACH_REUSEPORT_CBPF = 51;
/** Removes a reuseport group's program; ENOENT when none is attached (Linux 5.3+). */
export const SO_DETACH_REUSEPORT_BPF = 68;
/** Lets a socket bind a non-local address and be chosen by TPROXY (IPv4); needs CAP_NET_ADMIN. */
export const IP_TRANSPARENT = 19;
/** recvmsg then carries an IP_ORIGDSTADDR cmsg (sockaddr_in): the datagram's destination before TPROXY. */
export const IP_RECVORIGDSTADDR = 20;
export const IP_ORIGDSTADDR = 20;
export const IPV6_RECVORIGDSTADDR = 74;
export const IPV6_ORIGDSTADDR = 74;
export const IPV6_TRANSPARENT = 75;
/** getsockopt(SOL_IP) on an accepted TCP socket: the destination before REDIRECT/DNAT (sockaddr_in). */
export const SO_ORIGINAL_DST = 80;
/** The same for IPv6 (level SOL_IPV6, sockaddr_in6); same number by design of the uapi headers. */
export const IP6T_SO_ORIGINAL_DST = 80;
/** AF_PACKET raw sockets (harness/wan/packet-socket.ts): whole Ethernet frames of one interface. */
export const AF_PACKET = 17;
/** Every protocol (host order; sockaddr_ll and socket() take it in network order). */
export const ETH_P_ALL = 0x0003;
export const SOL_PACKET = 263;
export const PACKET_ADD_MEMBERSHIP = 1;
/** struct tpacket_stats {u32 tp_packets; u32 tp_drops}; reading resets it. */
export const PACKET_STATISTICS = 6;
/** Prefix every frame with a struct virtio_net_hdr (checksum and GSO state), on receive and send. */
export const PACKET_VNET_HDR = 15;
/** Do not deliver frames this host sends on the interface (Linux 4.20). */
export const PACKET_IGNORE_OUTGOING = 23;
export const PACKET_MR_PROMISC = 1;
/** struct sockaddr_ll. */
export const SIZEOF_SOCKADDR_LL = 20;
/** struct packet_mreq. */
export const SIZEOF_PACKET_MREQ = 16;
/** struct virtio_net_hdr (without num_buffers): u8 flags, u8 gso_type, u16 hdr_len, gso_size, csum_start, csum_offset. */
export const SIZEOF_VIRTIO_NET_HDR = 10;
export const VIRTIO_NET_HDR_GSO_NONE = 0;

/** prctl(2): the calling thread's timer slack in ns. */
export const PR_SET_TIMERSLACK = 29;
/** setpriority(2) `which`: a process or (with a tid) one thread. */
export const PRIO_PROCESS = 0;
