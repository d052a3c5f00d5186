package ruleset

import (
	"net/netip"
	"strings"
	"testing"
)

func sample() *Rules {
	return &Rules{
		Scope: "sock-shop", Version: "v1",
		Egress: Chain{Default: Reject, Rules: []Rule{
			{Verdict: Allow, Proto: "tcp", Ports: "27017", Set: "PAL-db"},
			{Verdict: Allow, Set: "PAL-svc"},
		}},
		Ingress: Chain{Default: Allow, Rules: []Rule{{Verdict: Reject, Proto: "udp", PeerCIDR: "203.0.113.0/24"}}},
		Sets: []IPSet{
			{Name: "PAL-svc", Type: HashIPPort, Members: []string{"10.96.0.10,tcp:80"}},
			{Name: "PAL-db", Type: HashIP, Members: []string{"10.244.1.5", "10.244.1.4", "10.244.1.5"}},
		},
	}
}

func TestDecide(t *testing.T) {
	r := sample()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		chain *Chain
		p     Packet
		want  Verdict
		rule  int
	}{
		{"db port allowed", &r.Egress, Packet{Peer: netip.MustParseAddr("10.244.1.4"), Proto: "tcp", Port: 27017}, Allow, 0},
		{"db other port", &r.Egress, Packet{Peer: netip.MustParseAddr("10.244.1.4"), Proto: "tcp", Port: 80}, Reject, -1},
		{"service ip,port", &r.Egress, Packet{Peer: netip.MustParseAddr("10.96.0.10"), Proto: "tcp", Port: 80}, Allow, 1},
		{"service other port", &r.Egress, Packet{Peer: netip.MustParseAddr("10.96.0.10"), Proto: "tcp", Port: 81}, Reject, -1},
		{"ingress cidr udp", &r.Ingress, Packet{Peer: netip.MustParseAddr("203.0.113.10"), Proto: "udp", Port: 53}, Reject, 0},
		{"ingress cidr tcp", &r.Ingress, Packet{Peer: netip.MustParseAddr("203.0.113.10"), Proto: "tcp", Port: 53}, Allow, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v, i := r.Decide(c.chain, c.p)
			if v != c.want || i != c.rule {
				t.Fatalf("got %s (rule %d), want %s (rule %d)", v, i, c.want, c.rule)
			}
		})
	}
}

func TestSealIsCanonical(t *testing.T) {
	a := &Bundle{Node: "n1", Pods: []Pod{{ID: "b/x", Rules: sample()}, {ID: "a/y", IPs: []string{"10.0.0.2", "10.0.0.1"}}}}
	b := &Bundle{Node: "n1", Pods: []Pod{{ID: "a/y", IPs: []string{"10.0.0.1", "10.0.0.2"}}, {ID: "b/x", Rules: sample()}}}
	a.Seal()
	b.Seal()
	if a.Hash == "" || a.Hash != b.Hash {
		t.Fatalf("hashes differ: %q %q", a.Hash, b.Hash)
	}
	if got := b.Pods[1].Rules.SetByName("PAL-db").Members; len(got) != 2 {
		t.Fatalf("members not deduplicated: %v", got)
	}
	r := sample()
	r.Canonicalize()
	h, rh := r.Hash(), r.RulesHash()
	r.Sets[0].Members = append(r.Sets[0].Members, "10.244.1.9")
	r.Sets[0].ComputeDigest() // whoever edits members recomputes the digest
	if r.Hash() == h || r.RulesHash() != rh {
		t.Fatal("a member change must change Hash and keep RulesHash")
	}
}

func TestValidateNamesTheFault(t *testing.T) {
	for _, c := range []struct {
		edit func(*Rules)
		want string
	}{
		{func(r *Rules) { r.Egress.Rules[0].Set = "PAL-nope" }, `egress chain rule 1: set "PAL-nope" is not defined`},
		{func(r *Rules) { r.Egress.Rules[0].Ports = "0" }, "egress chain rule 1: ports"},
		{func(r *Rules) { r.Ingress.Default = "MAYBE" }, `ingress chain: default "MAYBE"`},
		{func(r *Rules) { r.Sets[0].Members = []string{"10.0.0.1:80"} }, `set PAL-svc: member "10.0.0.1:80"`},
		{func(r *Rules) { r.Egress.Rules[1].Proto = "gre" }, `egress chain rule 2: protocol "gre"`},
	} {
		r := sample()
		c.edit(r)
		err := r.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %q", err, c.want)
		}
	}
}
