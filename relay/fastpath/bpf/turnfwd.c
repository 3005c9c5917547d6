// SPDX-License-Identifier: (MIT OR GPL-2.0)
// turnfwd: TC ingress fast path for established TURN channels (IPv4).
//
// Client -> peer: a ChannelData datagram (RFC 8656 section 12.4) from a
// client to a listener whose (client, listener, channel) is in c2p loses its
// 4-byte header and padding and leaves as UDP from the relay address to the
// peer. Peer -> client: a datagram from a peer to a relay address found in
// p2c gains a ChannelData header and leaves as UDP from the listener to the
// client. Everything else (STUN, unknown channels, fragments, IP options)
// returns TC_ACT_OK untouched and reaches the user-space relay.
//
// Addresses and ports in the maps are in network byte order.

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_HLEN_ 14
#define NOT_MINE -1 /* client_to_peer: not a forwardable ChannelData */
#define IP_OFF ETH_HLEN_
#define L4_OFF (ETH_HLEN_ + sizeof(struct iphdr))
#define IP_CSUM_OFF (IP_OFF + offsetof(struct iphdr, check))
#define UDP_CSUM_OFF (L4_OFF + offsetof(struct udphdr, check))

struct c2p_key {
	__u32 client_ip;
	__u32 listen_ip;
	__u16 client_port;
	__u16 listen_port;
	__u16 channel; /* host order */
	__u16 pad;
};

struct p2c_key {
	__u32 peer_ip;
	__u32 relay_ip;
	__u16 peer_port;
	__u16 relay_port;
};

/* fwd_val describes the datagram the program sends: from src to dst. */
struct fwd_val {
	__u32 src_ip;
	__u32 dst_ip;
	__u16 src_port;
	__u16 dst_port;
	__u16 channel; /* host order; p2c only */
	__u16 pad;
	__u32 mark;
	__u32 pad2;
	__u64 packets; /* forwarded datagrams, updated atomically */
	__u64 bytes;   /* forwarded application bytes (no headers) */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct c2p_key);
	__type(value, struct fwd_val);
} c2p SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct p2c_key);
	__type(value, struct fwd_val);
} p2c SEC(".maps");

/* hands the rewritten packet on: local destinations (and loopback) go back
 * to the stack; others straight to the uplink the FIB picks, since a packet
 * with a local source address would be a martian on input. */
static __always_inline int hand_on(struct __sk_buff *skb, __u32 src, __u32 dst)
{
	struct bpf_fib_lookup p = {};
	long rc;

	p.family = 2; /* AF_INET */
	p.ipv4_src = src;
	p.ipv4_dst = dst;
	p.l4_protocol = IPPROTO_UDP;
	p.tot_len = skb->len - ETH_HLEN_;
	p.ifindex = skb->ingress_ifindex;
	rc = bpf_fib_lookup(skb, &p, sizeof(p), BPF_FIB_LOOKUP_OUTPUT | BPF_FIB_LOOKUP_SKIP_NEIGH);
	if ((rc == BPF_FIB_LKUP_RET_SUCCESS || rc == BPF_FIB_LKUP_RET_NO_NEIGH) &&
	    p.ifindex != skb->ingress_ifindex)
		return bpf_redirect_neigh(p.ifindex, NULL, 0, 0);
	return TC_ACT_OK;
}

static __always_inline int rewrite_ip(struct __sk_buff *skb, struct iphdr *ip,
				      struct fwd_val *v, __u16 new_tot)
{
	__u16 old_tot = ip->tot_len;

	if (bpf_l3_csum_replace(skb, IP_CSUM_OFF, ip->saddr, v->src_ip, 4) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, ip->daddr, v->dst_ip, 4) ||
	    bpf_l3_csum_replace(skb, IP_CSUM_OFF, old_tot, new_tot, 2))
		return -1;
	if (bpf_skb_store_bytes(skb, IP_OFF + offsetof(struct iphdr, saddr), &v->src_ip, 4, 0) ||
	    bpf_skb_store_bytes(skb, IP_OFF + offsetof(struct iphdr, daddr), &v->dst_ip, 4, 0) ||
	    bpf_skb_store_bytes(skb, IP_OFF + offsetof(struct iphdr, tot_len), &new_tot, 2, 0))
		return -1;
	return 0;
}

/* l4_fix updates the UDP checksum at UDP_CSUM_OFF for the new addresses,
 * ports and length; the payload delta (the ChannelData header) is done by
 * the caller. BPF_F_MARK_MANGLED_0 keeps a zero (absent) checksum zero. */
static __always_inline int l4_fix(struct __sk_buff *skb, struct iphdr *ip, struct udphdr *u,
				  struct fwd_val *v, __u16 new_len)
{
	__u64 ps = BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0;

	if (bpf_l4_csum_replace(skb, UDP_CSUM_OFF, ip->saddr, v->src_ip, ps | 4) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, ip->daddr, v->dst_ip, ps | 4) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, u->len, new_len, ps | 2) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, u->len, new_len, BPF_F_MARK_MANGLED_0 | 2) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, u->source, v->src_port, BPF_F_MARK_MANGLED_0 | 2) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, u->dest, v->dst_port, BPF_F_MARK_MANGLED_0 | 2))
		return -1;
	return 0;
}

static __always_inline int client_to_peer(struct __sk_buff *skb, struct iphdr *ip,
					  struct udphdr *u, __u32 cd_hdr)
{
	__u16 ch = bpf_ntohl(cd_hdr) >> 16;
	__u16 dlen = bpf_ntohl(cd_hdr) & 0xffff;
	__u16 ulen = bpf_ntohs(u->len);
	struct c2p_key k = {};
	struct fwd_val *v;
	struct udphdr nu;
	__u16 extra;

	if (ch < 0x4000 || ch > 0x7fff)
		return NOT_MINE;
	if ((__u32)dlen + 12 > ulen || ulen + sizeof(*ip) != bpf_ntohs(ip->tot_len) ||
	    ulen + L4_OFF > skb->len)
		return NOT_MINE; /* short or inconsistent: user space counts it */
	extra = ulen - 12 - dlen;
	if (extra > 3)
		return NOT_MINE;
	k.client_ip = ip->saddr;
	k.listen_ip = ip->daddr;
	k.client_port = u->source;
	k.listen_port = u->dest;
	k.channel = ch;
	v = bpf_map_lookup_elem(&c2p, &k);
	if (!v)
		return NOT_MINE;
	__u16 new_len = bpf_htons(dlen + 8);
	if (rewrite_ip(skb, ip, v, bpf_htons(dlen + 8 + sizeof(*ip))))
		return TC_ACT_SHOT;
	/* The shrink below leaves csum_start pointing 4 bytes before the new
	 * UDP header, so a locally sent (CHECKSUM_PARTIAL) datagram would fail
	 * validation; an incremental update cannot help there. IPv4 allows no
	 * UDP checksum (RFC 768): send 0 and mark the skb CHECKSUM_NONE. */
	nu.check = 0;
	nu.source = v->src_port;
	nu.dest = v->dst_port;
	nu.len = new_len;
	/* Write the new UDP header over the old one's second half and the
	 * ChannelData header, then remove the 4 bytes after the IP header. */
	if (bpf_skb_store_bytes(skb, L4_OFF + 4, &nu, sizeof(nu), BPF_F_RECOMPUTE_CSUM))
		return TC_ACT_SHOT;
	if (bpf_skb_adjust_room(skb, -4, BPF_ADJ_ROOM_NET, 0))
		return TC_ACT_SHOT;
	/* Drop the padding, and any link-layer trailer (Ethernet pads short
	 * frames to 60 bytes; at TC ingress it is still there). */
	if (skb->len != L4_OFF + 8 + dlen && bpf_skb_change_tail(skb, L4_OFF + 8 + dlen, 0))
		return TC_ACT_SHOT;
	bpf_csum_level(skb, BPF_CSUM_LEVEL_RESET);
	skb->mark = v->mark;
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, dlen);
	return hand_on(skb, v->src_ip, v->dst_ip);
}

static __always_inline int peer_to_client(struct __sk_buff *skb, struct iphdr *ip,
					  struct udphdr *u)
{
	struct p2c_key k = {};
	struct fwd_val *v;
	__u16 ulen = bpf_ntohs(u->len);
	struct udphdr ou = *u;
	__u32 cd_hdr;

	k.peer_ip = ip->saddr;
	k.relay_ip = ip->daddr;
	k.peer_port = u->source;
	k.relay_port = u->dest;
	v = bpf_map_lookup_elem(&p2c, &k);
	if (!v)
		return TC_ACT_OK;
	if (ulen < 8 || ulen + sizeof(*ip) != bpf_ntohs(ip->tot_len) || ulen > 0xffff - 4 - sizeof(*ip) ||
	    L4_OFF + ulen > skb->len)
		return TC_ACT_OK;
	__u16 dlen = ulen - 8;
	cd_hdr = bpf_htonl(((__u32)v->channel << 16) | dlen);
	__u16 new_len = bpf_htons(ulen + 4);

	/* A link-layer trailer (Ethernet pads short frames to 60 bytes; at TC
	 * ingress it is still there) would trail the new datagram: cut it. */
	if (skb->len > L4_OFF + ulen && bpf_skb_change_tail(skb, L4_OFF + ulen, 0))
		return TC_ACT_OK;
	if (bpf_skb_adjust_room(skb, 4, BPF_ADJ_ROOM_NET, 0))
		return TC_ACT_OK;
	/* Now: IP | 4 new bytes | old UDP header | data. Copy the old UDP
	 * header to the front and put the ChannelData header after it. */
	if (bpf_skb_store_bytes(skb, L4_OFF, &ou, sizeof(ou), 0) ||
	    bpf_skb_store_bytes(skb, L4_OFF + 8, &cd_hdr, 4, BPF_F_RECOMPUTE_CSUM))
		return TC_ACT_SHOT;
	if (l4_fix(skb, ip, &ou, v, new_len) ||
	    bpf_l4_csum_replace(skb, UDP_CSUM_OFF, 0, cd_hdr, BPF_F_MARK_MANGLED_0 | 4))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, L4_OFF, &v->src_port, 2, BPF_F_RECOMPUTE_CSUM) ||
	    bpf_skb_store_bytes(skb, L4_OFF + 2, &v->dst_port, 2, BPF_F_RECOMPUTE_CSUM) ||
	    bpf_skb_store_bytes(skb, L4_OFF + 4, &new_len, 2, BPF_F_RECOMPUTE_CSUM))
		return TC_ACT_SHOT;
	if (rewrite_ip(skb, ip, v, bpf_htons(ulen + 4 + sizeof(*ip))))
		return TC_ACT_SHOT;
	skb->mark = v->mark;
	__sync_fetch_and_add(&v->packets, 1);
	__sync_fetch_and_add(&v->bytes, dlen);
	return hand_on(skb, v->src_ip, v->dst_ip);
}

SEC("tc")
int turnfwd_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr ip;
	struct udphdr u;
	__u32 cd_hdr;

	if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	/* Copies, not packet pointers: the helpers below invalidate those. */
	if (bpf_skb_load_bytes(skb, IP_OFF, &ip, sizeof(ip)))
		return TC_ACT_OK;
	if (ip.version != 4 || ip.ihl != 5 || ip.protocol != IPPROTO_UDP || (ip.frag_off & bpf_htons(0x3fff)))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, L4_OFF, &u, sizeof(u)))
		return TC_ACT_OK;
	if (skb->gso_segs > 1)
		return TC_ACT_OK; /* GRO'd UDP train: user space splits it */
	if (bpf_skb_load_bytes(skb, L4_OFF + 8, &cd_hdr, 4) == 0) {
		__u8 first = bpf_ntohl(cd_hdr) >> 24;
		if (first >= 0x40 && first <= 0x7f) {
			int rc = client_to_peer(skb, &ip, &u, cd_hdr);
			if (rc != NOT_MINE)
				return rc;
		}
	}
	return peer_to_client(skb, &ip, &u);
}

char __license[] SEC("license") = "Dual MIT/GPL";
