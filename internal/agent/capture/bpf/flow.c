// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Palisade flow capture: a tc (clsact) classifier attached to ingress and
 * egress of every observed interface in a node's network namespace. It
 * never changes a packet's fate (TC_ACT_UNSPEC); it only counts.
 *
 * Per (ifindex, canonical 5-tuple) it keeps packets and IP bytes in each
 * direction, TCP flags per direction, first/last seen. The canonical tuple
 * puts the lower (addr, port) side in "a", so both directions of a flow
 * land in one entry. User space drains the map (lookup-and-delete) once per
 * reporting window, so the map holds only what has not been reported yet and
 * survives an agent restart when pinned.
 *
 * UDP to port 4789 is decoded as VXLAN: the inner 5-tuple and VNI go to a
 * second map keyed by (outer flow, vni, inner tuple).
 */
#include "helpers.h"
#include <linux/pkt_cls.h>

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_ICMPV6 58
#define VXLAN_PORT 4789

/* Flag bits reported per direction. SYN is set only for a pure SYN (no
 * ACK); a SYN+ACK sets F_SYNACK instead, so the SYN sender is the client. */
#define F_FIN 0x01
#define F_SYN 0x02
#define F_RST 0x04
#define F_PSH 0x08
#define F_ACK 0x10
#define F_SYNACK 0x100

struct flow_key {
	__u32 ifindex;
	__u8 a_addr[16]; /* IPv4 as ::ffff:a.b.c.d */
	__u8 b_addr[16];
	__u16 a_port;    /* host byte order */
	__u16 b_port;
	__u8 proto;
	__u8 family;     /* 4 or 6 */
	__u8 pad[2];
};

struct flow_val {
	__u64 first_ns;  /* CLOCK_MONOTONIC */
	__u64 last_ns;
	__u64 pkts_ab;
	__u64 bytes_ab;  /* IP bytes (header included), per wire segment */
	__u64 pkts_ba;
	__u64 bytes_ba;
	__u32 flags_ab;
	__u32 flags_ba;
	__u32 first_dir; /* 0: first packet went a->b, 1: b->a */
	__u32 vni;
	__u32 tunnel;    /* 1: VXLAN outer flow */
	/* TCP connections started: pure SYNs with a new ISN (a retransmitted
	 * SYN carries the same one), and the ISN of the last. */
	__u32 syns;
	__u32 syn_seq;
	__u32 pad;
};

struct tuple {
	__u8 src[16];
	__u8 dst[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

struct inner_key {
	struct flow_key outer;
	struct tuple inner; /* as seen on the wire, not canonical */
	__u32 vni;
};

struct inner_val {
	__u64 last_ns;
	__u32 flags;
	__u32 pad;
};

/* stats indexes */
#define ST_PACKETS 0
#define ST_NEW_FLOWS 1
#define ST_INSERT_FAIL 2
#define ST_PARSE_SKIP 3
#define ST_MAX 4

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144);
	__type(key, struct flow_key);
	__type(value, struct flow_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct inner_key);
	__type(value, struct inner_val);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} tunnel_inner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ST_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} stats SEC(".maps");

struct pkt {
	struct tuple t;
	__u32 l4off;
	__u32 iplen;  /* this IP packet's length from its header */
	__u32 hdrlen; /* IP + L4 header length, for GSO accounting */
	__u32 flags;  /* F_* */
	__u32 seq;    /* TCP sequence number */
};

struct ipv4hdr {
	__u8 ver_ihl;
	__u8 tos;
	__u16 tot_len;
	__u16 id;
	__u16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u32 saddr;
	__u32 daddr;
};

struct ipv6hdr_ {
	__u32 vtc_flow;
	__u16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct tcp_min {
	__u16 source;
	__u16 dest;
	__u32 seq;
	__u32 ack_seq;
	__u8 doff_res;
	__u8 flags;
};

static __always_inline void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline void v4_mapped(__u8 *dst, __u32 addr)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr, 4);
}

/* parse_ip parses an IP packet at off; eth_proto is network order. */
static __always_inline int parse_ip(struct __sk_buff *skb, __u32 off, __u16 eth_proto, struct pkt *p)
{
	__u32 l4off;
	__u8 proto;
	int frag = 0;

	if (eth_proto == bpf_htons(ETH_P_IP)) {
		struct ipv4hdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			return -1;
		__u32 ihl = (ip.ver_ihl & 0x0f) * 4;
		if (ihl < 20)
			return -1;
		p->t.family = 4;
		v4_mapped(p->t.src, ip.saddr);
		v4_mapped(p->t.dst, ip.daddr);
		proto = ip.protocol;
		p->iplen = bpf_ntohs(ip.tot_len);
		p->hdrlen = ihl;
		l4off = off + ihl;
		frag = (bpf_ntohs(ip.frag_off) & 0x1fff) != 0;
	} else if (eth_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr_ ip6;
		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0)
			return -1;
		p->t.family = 6;
		__builtin_memcpy(p->t.src, ip6.saddr, 16);
		__builtin_memcpy(p->t.dst, ip6.daddr, 16);
		proto = ip6.nexthdr;
		p->iplen = bpf_ntohs(ip6.payload_len) + 40;
		l4off = off + 40;
		/* Walk up to 4 extension headers (hop-by-hop, routing,
		 * destination options, fragment) to the transport header. */
#pragma unroll
		for (int i = 0; i < 4; i++) {
			__u8 eh[4];
			if (proto != 0 && proto != 43 && proto != 60 && proto != 44)
				break;
			if (bpf_skb_load_bytes(skb, l4off, eh, sizeof(eh)) < 0)
				return -1;
			if (proto == 44) {
				if ((((__u16)eh[2] << 8 | eh[3]) & 0xfff8) != 0)
					frag = 1;
				l4off += 8;
			} else {
				l4off += ((__u32)eh[1] + 1) * 8;
			}
			proto = eh[0];
		}
		p->hdrlen = l4off - off;
	} else {
		return -1;
	}
	p->t.proto = proto;
	p->l4off = l4off;
	if (frag)
		return 0;
	if (proto == PROTO_TCP) {
		struct tcp_min th;
		if (bpf_skb_load_bytes(skb, l4off, &th, sizeof(th)) < 0)
			return 0;
		p->t.sport = bpf_ntohs(th.source);
		p->t.dport = bpf_ntohs(th.dest);
		p->hdrlen += (th.doff_res >> 4) * 4;
		__u32 f = th.flags & (F_FIN | F_RST | F_PSH | F_ACK);
		if (th.flags & F_SYN)
			f |= (th.flags & F_ACK) ? F_SYNACK : F_SYN;
		p->flags = f;
		p->seq = th.seq;
	} else if (proto == PROTO_UDP) {
		__u16 ports[2];
		if (bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports)) < 0)
			return 0;
		p->t.sport = bpf_ntohs(ports[0]);
		p->t.dport = bpf_ntohs(ports[1]);
		p->hdrlen += 8;
	} else if (proto == PROTO_ICMP || proto == PROTO_ICMPV6) {
		/* ICMP has no ports: type << 8 | code takes the server port's
		 * place (NetFlow's convention), so flows are told apart and
		 * named by type. An echo reply counts in its request's flow:
		 * its type goes to the replying (source) side. Mirrors
		 * flow.ICMPPorts. */
		__u8 tc[2];
		if (bpf_skb_load_bytes(skb, l4off, tc, sizeof(tc)) < 0)
			return 0;
		if (proto == PROTO_ICMP && tc[0] == 0)
			p->t.sport = (8 << 8) | tc[1];
		else if (proto == PROTO_ICMPV6 && tc[0] == 129)
			p->t.sport = (128 << 8) | tc[1];
		else
			p->t.dport = ((__u16)tc[0] << 8) | tc[1];
		p->hdrlen += 8;
	}
	return 0;
}

/* a_is_src reports whether (src,sport) orders before or equal to (dst,dport). */
static __always_inline int a_is_src(struct tuple *t)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (t->src[i] < t->dst[i])
			return 1;
		if (t->src[i] > t->dst[i])
			return 0;
	}
	return t->sport <= t->dport;
}

static __always_inline void make_key(struct flow_key *k, __u32 ifindex, struct tuple *t, int *dir)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->ifindex = ifindex;
	k->proto = t->proto;
	k->family = t->family;
	if (a_is_src(t)) {
		*dir = 0;
		__builtin_memcpy(k->a_addr, t->src, 16);
		__builtin_memcpy(k->b_addr, t->dst, 16);
		k->a_port = t->sport;
		k->b_port = t->dport;
	} else {
		*dir = 1;
		__builtin_memcpy(k->a_addr, t->dst, 16);
		__builtin_memcpy(k->b_addr, t->src, 16);
		k->a_port = t->dport;
		k->b_port = t->sport;
	}
}

static __always_inline __u32 decode_vxlan(struct __sk_buff *skb, struct pkt *outer, struct flow_key *ok, __u64 now)
{
	__u8 vx[8];
	__u32 off = outer->l4off + 8;
	if (bpf_skb_load_bytes(skb, off, vx, sizeof(vx)) < 0)
		return 0;
	if (!(vx[0] & 0x08)) /* I flag: VNI valid */
		return 0;
	__u32 vni = ((__u32)vx[4] << 16) | ((__u32)vx[5] << 8) | vx[6];
	off += 8;
	__u16 eth_proto;
	if (bpf_skb_load_bytes(skb, off + 12, &eth_proto, 2) < 0)
		return vni; /* not IP inside (e.g. ARP): still a VXLAN flow */
	struct pkt in = {};
	if (parse_ip(skb, off + ETH_HLEN, eth_proto, &in) < 0)
		return vni; /* not IP inside (e.g. ARP): still a VXLAN flow */
	struct inner_key ik = {};
	__builtin_memcpy(&ik.outer, ok, sizeof(*ok));
	__builtin_memcpy(&ik.inner, &in.t, sizeof(in.t));
	ik.vni = vni;
	struct inner_val *iv = bpf_map_lookup_elem(&tunnel_inner, &ik);
	if (iv) {
		iv->last_ns = now;
		if (in.flags & ~iv->flags)
			__sync_fetch_and_or(&iv->flags, in.flags);
		return vni;
	}
	struct inner_val nv = {.last_ns = now, .flags = in.flags};
	bpf_map_update_elem(&tunnel_inner, &ik, &nv, BPF_ANY);
	return vni;
}

static __always_inline int observe(struct __sk_buff *skb)
{
	__u32 off = ETH_HLEN;
	__u16 eth_proto;

	stat_inc(ST_PACKETS);
	if (bpf_skb_load_bytes(skb, 12, &eth_proto, 2) < 0)
		return TC_ACT_UNSPEC;
	if (eth_proto == bpf_htons(ETH_P_8021Q) || eth_proto == bpf_htons(ETH_P_8021AD)) {
		if (bpf_skb_load_bytes(skb, 16, &eth_proto, 2) < 0)
			return TC_ACT_UNSPEC;
		off += 4;
	}

	struct pkt p = {};
	if (parse_ip(skb, off, eth_proto, &p) < 0) {
		stat_inc(ST_PARSE_SKIP);
		return TC_ACT_UNSPEC;
	}

	/* Packets and IP bytes as they are (or will be) on the wire: a GSO
	 * super-packet counts as its segments, each with its own headers. */
	__u64 segs = skb->gso_segs > 1 ? skb->gso_segs : 1;
	__u64 bytes = p.iplen;
	if (segs > 1 || bytes == 0)
		bytes = (skb->len - off) + (segs - 1) * p.hdrlen;

	int dir;
	struct flow_key k;
	make_key(&k, skb->ifindex, &p.t, &dir);
	__u64 now = bpf_ktime_get_ns();

	struct flow_val *v = bpf_map_lookup_elem(&flows, &k);
	if (!v) {
		struct flow_val nv = {};
		nv.first_ns = now;
		nv.first_dir = dir;
		bpf_map_update_elem(&flows, &k, &nv, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&flows, &k);
		if (!v) {
			stat_inc(ST_INSERT_FAIL);
			return TC_ACT_UNSPEC;
		}
		stat_inc(ST_NEW_FLOWS);
	}
	v->last_ns = now;
	if (dir == 0) {
		__sync_fetch_and_add(&v->pkts_ab, segs);
		__sync_fetch_and_add(&v->bytes_ab, bytes);
		if (p.flags & ~v->flags_ab)
			__sync_fetch_and_or(&v->flags_ab, p.flags);
	} else {
		__sync_fetch_and_add(&v->pkts_ba, segs);
		__sync_fetch_and_add(&v->bytes_ba, bytes);
		if (p.flags & ~v->flags_ba)
			__sync_fetch_and_or(&v->flags_ba, p.flags);
	}

	if (p.flags & F_SYN) {
		if (v->syns == 0 || v->syn_seq != p.seq) {
			v->syn_seq = p.seq;
			__sync_fetch_and_add(&v->syns, 1);
		}
	}

	if (p.t.proto == PROTO_UDP && p.t.dport == VXLAN_PORT) {
		__u32 vni = decode_vxlan(skb, &p, &k, now);
		if (vni && !v->tunnel) {
			v->tunnel = 1;
			v->vni = vni;
		}
	}
	return TC_ACT_UNSPEC;
}

SEC("tc")
int palisade_flow(struct __sk_buff *skb)
{
	return observe(skb);
}

char __license[] SEC("license") = "Dual BSD/GPL";
