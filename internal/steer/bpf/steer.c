// SPDX-License-Identifier: (MIT OR GPL-2.0)
// steer: an sk_lookup program that hands UDP datagrams addressed to
// registered (address, port) pairs to one socket of the owner's choice.
//
// The owner (internal/steer) keeps two maps: ports, keyed by family,
// destination port and destination address (or the wildcard, all zero),
// whose value is an index into targets, a SOCKMAP of unconnected UDP
// sockets. A datagram whose destination is in ports (exact address first,
// then the wildcard of its family) is assigned to that target socket;
// everything else, TCP included, returns SK_PASS without a socket and the
// kernel's normal lookup (or the next sk_lookup program) proceeds.
//
// The family is the packet's: an IPv4 datagram to a dual-stack IPv6
// socket bound to "::" arrives here as AF_INET, so the owner registers
// such a socket under both families, each with a target of that family
// (an IPv6 socket bound to a specific address such as ::1 is IPv6-only,
// and bpf_sk_assign refuses it an IPv4 datagram).

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#define AF_INET_ 2
#define AF_INET6_ 10

struct port_key {
	__u32 family; /* AF_INET or AF_INET6 */
	__u32 port;   /* host order */
	__u32 addr[4];/* network order; IPv4 in addr[0]; all zero: any */
};

struct port_val {
	__u32 target; /* index into targets */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	/* every port of a range, on two addresses, dual-stack */
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct port_key);
	__type(value, struct port_val);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2048);
	__type(key, __u32);
	__type(value, __u64);
} targets SEC(".maps");

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
	struct port_key k = {};
	struct port_val *v;
	struct bpf_sock *sk;

	if (ctx->protocol != IPPROTO_UDP)
		return SK_PASS;
	k.family = ctx->family;
	k.port = ctx->local_port;
	if (ctx->family == AF_INET_) {
		k.addr[0] = ctx->local_ip4;
	} else if (ctx->family == AF_INET6_) {
		k.addr[0] = ctx->local_ip6[0];
		k.addr[1] = ctx->local_ip6[1];
		k.addr[2] = ctx->local_ip6[2];
		k.addr[3] = ctx->local_ip6[3];
	} else {
		return SK_PASS;
	}
	v = bpf_map_lookup_elem(&ports, &k);
	if (!v) {
		k.addr[0] = 0;
		k.addr[1] = 0;
		k.addr[2] = 0;
		k.addr[3] = 0;
		v = bpf_map_lookup_elem(&ports, &k);
		if (!v)
			return SK_PASS;
	}
	__u32 idx = v->target;
	sk = bpf_map_lookup_elem(&targets, &idx);
	if (!sk)
		return SK_PASS;
	/* Fails (and the normal lookup proceeds) only when another program
	 * already assigned a socket, or the target is of the wrong family. */
	bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	return SK_PASS;
}

char _license[] SEC("license") = "Dual MIT/GPL";
