// SPDX-License-Identifier: (MIT OR GPL-2.0)
// turnfwd: TC ingress fast path for established TURN channels (IPv4, IPv6).
//
// Client -> peer: a ChannelData datagram (RFC 8656 section 12.4) from a
// client to a listener whose (client, listener, channel) is in c2p loses its
// 4-byte header and padding and leaves as UDP from the relay address to the
// peer. Peer -> client: a datagram from a peer to a relay address found in
// p2c gains a ChannelData header and leaves as UDP from the listener to the
// client. Everything else (STUN, unknown channels, fragments, IPv4 options,
// IPv6 extension headers) returns TC_ACT_OK untouched and reaches the
// user-space relay.
//
// Addresses in the maps are 16 bytes, IPv4 as IPv4-mapped IPv6
// (::ffff:a.b.c.d); addresses and ports are in network byte order.
//
// Checksums. The UDP header never moves: the payload is shifted by 4 bytes
// inside the packet instead (bpf_skb_adjust_room would move the headers and
// leave the kernel's csum_start, for a locally sent CHECKSUM_PARTIAL skb on
// loopback or veth, 4 bytes off the UDP header, so that the receiver or
// skb_checksum_help sums the wrong bytes). The UDP checksum is then updated
// incrementally: the payload bytes keep their value and their 16-bit
// alignment, so only the pseudo header, the ports, the length, the
// ChannelData header and the padding change the sum. bpf_l4_csum_replace
// applies BPF_F_PSEUDO_HDR parts to a CHECKSUM_PARTIAL skb's partial sum and
// the rest only to full checksums, which is exactly right for both. The tail
// change (always made) turns CHECKSUM_COMPLETE into CHECKSUM_NONE, and
// BPF_CSUM_LEVEL_RESET turns CHECKSUM_UNNECESSARY into CHECKSUM_NONE, so the
// receiving stack verifies the checksum the program wrote.

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_HLEN_ 14
#define IP_OFF ETH_HLEN_
#define IP4_CSUM_OFF (IP_OFF + 10)
#define IP6_HLEN 40
#define NOT_MINE -1 /* client_to_peer: not a forwardable ChannelData */
#define LOOPBACK_IFINDEX 1
/* Payloads are moved in chunks through a per-CPU scratch buffer; longer
 * datagrams than MAX_DATA (jumbo frames included) stay in user space. */
#define CHUNK 2048
#define MAX_DATA 9216

struct c2p_key {
	__u8 client_ip[16];
	__u8 listen_ip[16];
	__u16 client_port;
	__u16 listen_port;
	__u16 channel; /* host order */
	__u16 pad;
};

struct p2c_key {
	__u8 peer_ip[16];
	__u8 relay_ip[16];
	__u16 peer_port;
	__u16 relay_port;
};

/* The maps are filled by user space only, so their elements are
 * allocated on update (BPF_F_NO_PREALLOC) rather than all at load: a
 * preallocated set would hold about 40 MB whether or not any channel is
 * in the kernel. */

/* fwd_val describes the datagram the program sends: from src to dst. */
struct fwd_val {
	__u8 src_ip[16];
	__u8 dst_ip[16];
	__u16 src_port;
	__u16 dst_port;
	__u16 channel; /* host order; p2c only */
	__u16 pad;
	__u32 mark;
	/* Index in egress of the interface to send on. */
	__u32 slot;
	__u32 bucket;      /* key in buckets of the allocation's cap; 0: none */
	__u32 user_bucket; /* key in buckets of the user's cap; 0: none */
	__u64 packets; /* forwarded datagrams, updated atomically */
	__u64 bytes;   /* forwarded application bytes (no headers) */
	__u64 dropped; /* datagrams dropped over the cap, updated atomically */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct c2p_key);
	__type(value, struct fwd_val);
} c2p SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, struct p2c_key);
	__type(value, struct fwd_val);
} p2c SEC(".maps");

/* egress holds, by slot, the interface user space resolved for one
 * (destination, source, mark) with the routing tables and rules:
 * LOOPBACK_IFINDEX for a local destination, 0 for none (no route, or a
 * blackhole: the datagram goes to user space, which meets the same
 * refusal). An array of its own, so that a route change rewrites one u32
 * in place and never the entries with their counters. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 262144);
	__type(key, __u32);
	__type(value, __u32);
} egress SEC(".maps");

/* egress_of returns v's interface, 0 if there is none. */
static __always_inline __u32 egress_of(struct fwd_val *v)
{
	__u32 *oif = bpf_map_lookup_elem(&egress, &v->slot);

	return oif ? *oif : 0;
}

/* bucket is a token bucket in nanobytes (bytes x 1e9), so that a refill
 * is one multiplication: tokens += elapsed ns x bytes per second. User
 * space creates it full with last 0; the entries of one allocation's
 * direction share it, as the user-space relay's bucket. */
struct bucket {
	struct bpf_spin_lock lock;
	__u32 pad;
	__u64 rate;    /* bytes per second */
	__u64 cap;     /* the burst, in nanobytes */
	__u64 fill_ns; /* time from empty to full: cap / rate */
	__u64 tokens;  /* nanobytes */
	__u64 last;    /* bpf_ktime_get_ns of the last refill */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, struct bucket);
} buckets SEC(".maps");

/* take takes need nanobytes from bucket id: 1 if they fit (or id is 0,
 * no cap), 0 if not. */
static __always_inline int take(__u32 id, __u64 need)
{
	struct bucket *b;
	__u64 now, dt, t;
	int ok;

	if (!id)
		return 1;
	b = bpf_map_lookup_elem(&buckets, &id);
	if (!b)
		return 0; /* user space adds the bucket before the entry */
	now = bpf_ktime_get_ns();
	bpf_spin_lock(&b->lock);
	/* Another CPU may have refilled at a later time than our now:
	 * nothing to add then (now - last would wrap and fill the bucket). */
	if (now > b->last) {
		dt = now - b->last;
		if (dt >= b->fill_ns) {
			b->tokens = b->cap;
		} else {
			t = b->tokens + dt * b->rate;
			b->tokens = t < b->cap ? t : b->cap;
		}
		b->last = now;
	}
	ok = b->tokens >= need;
	if (ok)
		b->tokens -= need;
	bpf_spin_unlock(&b->lock);
	return ok;
}

/* within_cap takes n bytes from v's allocation bucket, then from its
 * user's, as the user-space relay does (what the first took stays taken
 * when the second refuses): 1 if the datagram may pass. */
static __always_inline int within_cap(struct fwd_val *v, __u32 n)
{
	__u64 need = (__u64)n * 1000000000ULL;

	return take(v->bucket, need) && take(v->user_bucket, need);
}

/* scratch is move()'s buffer: the 512-byte BPF stack cannot hold a useful
 * chunk. TC runs in softirq context, so nothing else on this CPU uses the
 * buffer while the program runs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u8[CHUNK]);
} scratch SEC(".maps");

/* faults counts the datagrams dropped because a helper failed half way
 * through a rewrite (no memory to make the skb writable or to resize it):
 * the packet is no longer what arrived, so it cannot go to user space.
 * Per CPU, so a plain increment suffices; user space adds the CPUs up. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} faults SEC(".maps");

static __always_inline int fault(void)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&faults, &zero);

	if (n)
		*n += 1;
	return TC_ACT_SHOT;
}

/* pkt is what the entry point learnt of the IP header. */
struct pkt {
	__u32 saddr[4]; /* IPv4 as ::ffff:a.b.c.d */
	__u32 daddr[4];
	__u32 l4;   /* offset of the UDP header */
	__u32 ulen; /* UDP length */
	__u32 v6;
};

/* hands the rewritten packet on, out of the interface user space resolved,
 * by bpf_redirect_neigh: its own route lookup uses skb->mark, attaches
 * the route and fills in the neighbour. bpf_fib_lookup is not used: it
 * answers BPF_FIB_LKUP_RET_FWD_DISABLED on hosts that do not forward,
 * which a relay need not. A local destination goes out through loopback
 * the same way: the attached local route delivers it (plain bpf_redirect
 * would leave the skb without one, and IPv4 input then drops a packet from
 * a local address as a martian, see fib_validate_source). Only a packet
 * that came in on loopback and stays local simply goes back to the stack,
 * which still holds the local route it came with. */
static __always_inline int hand_on(struct __sk_buff *skb, __u32 oif)
{
	if (oif == LOOPBACK_IFINDEX && skb->ingress_ifindex == LOOPBACK_IFINDEX)
		return TC_ACT_OK;
	return bpf_redirect_neigh(oif, NULL, 0, 0);
}

/* move copies len bytes at from to to (4 bytes apart, either way) through
 * the scratch buffer, from the end when moving up so that no byte is
 * overwritten before it is read. */
static __noinline int move(struct __sk_buff *skb, __u64 from, __u64 to, __u64 len)
{
	__u32 zero = 0;
	__u8 *buf = bpf_map_lookup_elem(&scratch, &zero);
	__u64 i;

	if (!buf)
		return -1;
	for (i = 0; i < MAX_DATA / CHUNK; i++) {
		__u64 done = i * CHUNK;
		__u64 m, n, o;

		if (done >= len)
			break;
		/* n = min(len - done, CHUNK), written so that the verifier
		 * sees 1 <= n <= CHUNK. */
		m = len - done - 1;
		asm volatile("" : "+r"(m));
		if (m > CHUNK - 1)
			m = CHUNK - 1;
		n = m + 1;
		o = to > from ? len - done - n : done;
		if (bpf_skb_load_bytes(skb, from + o, buf, n) ||
		    bpf_skb_store_bytes(skb, to + o, buf, n, 0))
			return -1;
	}
	return 0;
}

/* fix_l4 applies the pseudo header change (addresses and UDP length) and
 * the change of the UDP header and payload (nd_from -> nd_to, 16 bytes) to
 * the UDP checksum. With BPF_F_MARK_MANGLED_0 an absent IPv4 checksum (0)
 * stays absent and a computed 0 is sent as 0xffff. */
static __always_inline int fix_l4(struct __sk_buff *skb, struct pkt *p, struct fwd_val *v,
				  __u32 new_ulen, __u32 *nd_from, __u32 *nd_to)
{
	__u32 from[9], to[9];
	__u32 n = 12;
	__s64 d;

	if (p->v6) {
		__builtin_memcpy(from, p->saddr, 16);
		__builtin_memcpy(from + 4, p->daddr, 16);
		__builtin_memcpy(to, v->src_ip, 16);
		__builtin_memcpy(to + 4, v->dst_ip, 16);
		from[8] = bpf_htonl(p->ulen);
		to[8] = bpf_htonl(new_ulen);
		n = 36;
	} else {
		from[0] = p->saddr[3];
		from[1] = p->daddr[3];
		__builtin_memcpy(&to[0], v->src_ip + 12, 4);
		__builtin_memcpy(&to[1], v->dst_ip + 12, 4);
		from[2] = bpf_htonl(p->ulen);
		to[2] = bpf_htonl(new_ulen);
	}
	d = bpf_csum_diff(from, n, to, n, 0);
	if (d < 0 || bpf_l4_csum_replace(skb, p->l4 + 6, 0, d, BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0))
		return -1;
	d = bpf_csum_diff(nd_from, 16, nd_to, 16, 0);
	if (d < 0 || bpf_l4_csum_replace(skb, p->l4 + 6, 0, d, BPF_F_MARK_MANGLED_0))
		return -1;
	return 0;
}

/* set_ip writes the new addresses and length into the IP header and, for
 * IPv4, updates the header checksum. */
static __always_inline int set_ip(struct __sk_buff *skb, struct pkt *p, struct fwd_val *v,
				  __u32 new_ulen)
{
	if (p->v6) {
		__u16 plen = bpf_htons(new_ulen);

		if (bpf_skb_store_bytes(skb, IP_OFF + 8, v->src_ip, 32, 0) ||
		    bpf_skb_store_bytes(skb, IP_OFF + 4, &plen, 2, 0))
			return -1;
		return 0;
	}
	__u32 from[3], to[3];
	__u16 tot = bpf_htons(new_ulen + sizeof(struct iphdr));
	__s64 d;

	from[0] = p->saddr[3];
	from[1] = p->daddr[3];
	from[2] = bpf_htonl(p->ulen + sizeof(struct iphdr));
	__builtin_memcpy(&to[0], v->src_ip + 12, 4);
	__builtin_memcpy(&to[1], v->dst_ip + 12, 4);
	to[2] = bpf_htonl(new_ulen + sizeof(struct iphdr));
	d = bpf_csum_diff(from, 12, to, 12, 0);
	if (d < 0 || bpf_l3_csum_replace(skb, IP4_CSUM_OFF, 0, d, 0) ||
	    bpf_skb_store_bytes(skb, IP_OFF + 12, to, 8, 0) ||
	    bpf_skb_store_bytes(skb, IP_OFF + 2, &tot, 2, 0))
		return -1;
	return 0;
}

/* ports_len is the first UDP header word pair as the checksum sees it:
 * source and destination port, then length (and a zero for the checksum
 * field, which the sum does not cover). */
struct ports_len {
	__u16 src, dst, len, zero;
};

static __always_inline int client_to_peer(struct __sk_buff *skb, struct pkt *p,
					  struct udphdr *u, __u32 cd_hdr)
{
	__u16 ch = bpf_ntohl(cd_hdr) >> 16;
	__u32 dlen = bpf_ntohl(cd_hdr) & 0xffff;
	struct c2p_key k = {};
	struct fwd_val *v;
	__u32 extra, rem, pad_old = 0, pad_new, oif;
	struct ports_len nd_from[2] = {}, nd_to[2] = {};

	if (ch < 0x4000 || ch > 0x7fff)
		return NOT_MINE;
	/* IPv6 requires the UDP checksum (RFC 8200 8.1): a zero one is the
	 * stack's to drop. */
	if (p->v6 && u->check == 0)
		return NOT_MINE;
	if (dlen + 12 > p->ulen || dlen > MAX_DATA)
		return NOT_MINE; /* short, or long: user space counts it */
	extra = p->ulen - 12 - dlen;
	rem = dlen & 3;
	/* No padding, or padding to the next multiple of 4 (RFC 8656 12.5):
	 * then the padding lies in the data's last 32-bit word. */
	if (extra != 0 && (rem == 0 || extra != 4 - rem))
		return NOT_MINE;
	__builtin_memcpy(k.client_ip, p->saddr, 16);
	__builtin_memcpy(k.listen_ip, p->daddr, 16);
	k.client_port = u->source;
	k.listen_port = u->dest;
	k.channel = ch;
	v = bpf_map_lookup_elem(&c2p, &k);
	if (!v)
		return NOT_MINE;
	oif = egress_of(v);
	if (!oif)
		return TC_ACT_OK; /* no route now: user space relays or refuses */
	/* Over the allocation's cap: dropped and counted, as user space
	 * does. */
	if (!within_cap(v, dlen)) {
		__sync_fetch_and_add(&v->dropped, 1);
		return TC_ACT_SHOT;
	}
	__u32 new_ulen = dlen + 8;

	if (extra) {
		__u8 w[4];

		if (bpf_skb_load_bytes(skb, p->l4 + 12 + dlen - rem, w, 4))
			return TC_ACT_OK; /* untouched yet: user space */
		__builtin_memcpy(&pad_old, w, 4);
		/* w[0, rem) is data, w[rem, 4) padding; rem is 1 to 3. */
		w[3] = 0;
		if (rem <= 2)
			w[2] = 0;
		if (rem <= 1)
			w[1] = 0;
		__builtin_memcpy(&pad_new, w, 4);
	} else {
		pad_new = 0;
	}
	/* The sum loses the ChannelData header and the padding bytes. */
	nd_from[0].src = u->source;
	nd_from[0].dst = u->dest;
	nd_from[0].len = u->len;
	__builtin_memcpy(&nd_from[1], &cd_hdr, 4);
	__builtin_memcpy(&nd_from[1].len, &pad_old, 4);
	nd_to[0].src = v->src_port;
	nd_to[0].dst = v->dst_port;
	nd_to[0].len = bpf_htons(new_ulen);
	__builtin_memcpy(&nd_to[1].len, &pad_new, 4);
	if (fix_l4(skb, p, v, new_ulen, (__u32 *)nd_from, (__u32 *)nd_to))
		return fault();
	if (bpf_skb_store_bytes(skb, p->l4, &nd_to[0], 6, 0))
		return fault();
	if (move(skb, p->l4 + 12, p->l4 + 8, dlen))
		return fault();
	/* Drop the old last 4 bytes, the padding and any link-layer trailer
	 * (Ethernet pads short frames to 60 bytes; at TC ingress it is still
	 * there). The length always shrinks, so a CHECKSUM_COMPLETE skb
	 * becomes CHECKSUM_NONE here (__skb_trim_rcsum). */
	if (bpf_skb_change_tail(skb, p->l4 + new_ulen, 0))
		return fault();
	if (set_ip(skb, p, v, new_ulen))
		return fault();
	bpf_csum_level(skb, BPF_CSUM_LEVEL_RESET);
	skb->mark = v->mark;
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, dlen);
	return hand_on(skb, oif);
}

static __always_inline int peer_to_client(struct __sk_buff *skb, struct pkt *p,
					  struct udphdr *u)
{
	struct p2c_key k = {};
	struct fwd_val *v;
	struct ports_len nd_from[2] = {}, nd_to[2] = {};
	__u32 cd_hdr, dlen = p->ulen - 8, oif;

	__builtin_memcpy(k.peer_ip, p->saddr, 16);
	__builtin_memcpy(k.relay_ip, p->daddr, 16);
	k.peer_port = u->source;
	k.relay_port = u->dest;
	v = bpf_map_lookup_elem(&p2c, &k);
	if (!v)
		return TC_ACT_OK;
	if (dlen > MAX_DATA)
		return TC_ACT_OK;
	/* IPv6 requires the UDP checksum (RFC 8200 8.1): a zero one is the
	 * stack's to drop. */
	if (p->v6 && u->check == 0)
		return TC_ACT_OK;
	oif = egress_of(v);
	if (!oif)
		return TC_ACT_OK;
	if (!within_cap(v, dlen)) {
		__sync_fetch_and_add(&v->dropped, 1);
		return TC_ACT_SHOT;
	}
	__u32 new_ulen = p->ulen + 4;
	cd_hdr = bpf_htonl(((__u32)v->channel << 16) | dlen);

	/* Grow by 4 bytes, cutting any link-layer trailer; a
	 * CHECKSUM_COMPLETE skb becomes CHECKSUM_NONE (__skb_grow_rcsum). */
	if (bpf_skb_change_tail(skb, p->l4 + new_ulen, 0))
		return TC_ACT_OK;
	/* The sum gains the ChannelData header. */
	nd_from[0].src = u->source;
	nd_from[0].dst = u->dest;
	nd_from[0].len = u->len;
	nd_to[0].src = v->src_port;
	nd_to[0].dst = v->dst_port;
	nd_to[0].len = bpf_htons(new_ulen);
	__builtin_memcpy(&nd_to[1], &cd_hdr, 4);
	if (fix_l4(skb, p, v, new_ulen, (__u32 *)nd_from, (__u32 *)nd_to))
		return fault();
	if (move(skb, p->l4 + 8, p->l4 + 12, dlen))
		return fault();
	if (bpf_skb_store_bytes(skb, p->l4, &nd_to[0], 6, 0) ||
	    bpf_skb_store_bytes(skb, p->l4 + 8, &cd_hdr, 4, 0))
		return fault();
	if (set_ip(skb, p, v, new_ulen))
		return fault();
	bpf_csum_level(skb, BPF_CSUM_LEVEL_RESET);
	skb->mark = v->mark;
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, dlen);
	return hand_on(skb, oif);
}

/* parse fills p from the IP header, or returns -1 for anything but a
 * plain, unfragmented UDP datagram whose lengths agree. */
static __always_inline int parse(struct __sk_buff *skb, __u16 proto, struct pkt *p)
{
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, IP_OFF, &ip, sizeof(ip)))
			return -1;
		if (ip.version != 4 || ip.ihl != 5 || ip.protocol != IPPROTO_UDP ||
		    (ip.frag_off & bpf_htons(0x3fff)))
			return -1;
		p->saddr[2] = p->daddr[2] = bpf_htonl(0xffff);
		p->saddr[3] = ip.saddr;
		p->daddr[3] = ip.daddr;
		p->l4 = IP_OFF + sizeof(ip);
		if (bpf_ntohs(ip.tot_len) < sizeof(ip))
			return -1;
		p->ulen = bpf_ntohs(ip.tot_len) - sizeof(ip);
		return 0;
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		__u8 h[IP6_HLEN];

		if (bpf_skb_load_bytes(skb, IP_OFF, h, sizeof(h)))
			return -1;
		/* Next header UDP (17) right after the fixed header: extension
		 * headers (fragments included) stay in user space. */
		if ((h[0] >> 4) != 6 || h[6] != IPPROTO_UDP)
			return -1;
		__builtin_memcpy(p->saddr, h + 8, 16);
		__builtin_memcpy(p->daddr, h + 24, 16);
		p->l4 = IP_OFF + IP6_HLEN;
		p->ulen = ((__u32)h[4] << 8) | h[5];
		p->v6 = 1;
		return 0;
	}
	return -1;
}

SEC("tc")
int turnfwd_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct pkt p = {};
	struct udphdr u;
	__u32 cd_hdr;

	if ((void *)(eth + 1) > end)
		return TC_ACT_OK;
	/* Copies, not packet pointers: the helpers below invalidate those. */
	if (parse(skb, eth->h_proto, &p))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, p.l4, &u, sizeof(u)))
		return TC_ACT_OK;
	/* The UDP length must match the IP header's and fit in the skb. */
	if (p.ulen < 8 || bpf_ntohs(u.len) != p.ulen || p.l4 + p.ulen > skb->len)
		return TC_ACT_OK;
	if (skb->gso_segs > 1)
		return TC_ACT_OK; /* GRO'd UDP train: user space splits it */
	if (bpf_skb_load_bytes(skb, p.l4 + 8, &cd_hdr, 4) == 0) {
		__u8 first = bpf_ntohl(cd_hdr) >> 24;
		if (first >= 0x40 && first <= 0x7f) {
			int rc = client_to_peer(skb, &p, &u, cd_hdr);
			if (rc != NOT_MINE)
				return rc;
		}
	}
	return peer_to_client(skb, &p, &u);
}

char __license[] SEC("license") = "Dual MIT/GPL";
