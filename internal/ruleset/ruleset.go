// Package ruleset is the wire form of enforcement: what the policy compiler
// (internal/policy/compile) produces and what the node agent
// (internal/agent/enforce) programs. It is plain data plus the few pure
// functions both ends need (hashing, canonical order, and Decide, which
// says what a chain does with a packet so the compiler can be tested
// against the policy evaluator without a kernel).
//
// One Bundle goes to one node's agent. It holds the node's own rules (the
// reference material's "concrete" rules, programmed in the node's network
// namespace) and one Rules per pod on the node ("container" rules, in the
// pod's namespace). Address groups are IP sets, so the number of rules
// grows with intents, not with pods × pods.
//
// Palisade only subtracts: an allowed packet RETURNs to the base chain, so
// the CNI's and kube-proxy's rules after Palisade's jump still apply; a
// denied one is rejected (or dropped).
package ruleset

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Verdict is what a rule or a chain's default does with a packet.
type Verdict string

const (
	// Allow lets the packet go on to the rules that follow Palisade's jump.
	Allow Verdict = "ALLOW"
	// Reject refuses it with a TCP reset or an ICMP error.
	Reject Verdict = "REJECT"
	// Drop discards it silently.
	Drop Verdict = "DROP"
)

// Valid reports whether v is a known verdict.
func (v Verdict) Valid() bool { return v == Allow || v == Reject || v == Drop }

// SetType is an ipset type.
type SetType string

const (
	HashIP     SetType = "hash:ip"      // members "10.0.0.1"
	HashNet    SetType = "hash:net"     // members "10.0.0.0/24" (or an address)
	HashIPPort SetType = "hash:ip,port" // members "10.0.0.1,tcp:80"
)

// IPSet is an address group.
type IPSet struct {
	// Name is unique within a namespace; it is derived from what the set
	// stands for (not its members), so a membership change keeps the name
	// and is applied incrementally.
	Name    string   `json:"name"`
	Type    SetType  `json:"type"`
	Members []string `json:"members"`
	// Comment says what the set stands for (e.g. the intent's provider).
	Comment string `json:"comment,omitempty"`
	// Digest identifies the members (Digest computes it; a compiler sets
	// it once for a set many namespaces share, so hashing a bundle does
	// not rehash the same members per pod).
	Digest string `json:"digest,omitempty"`
}

// ComputeDigest sorts and deduplicates the members and sets s.Digest.
func (s *IPSet) ComputeDigest() {
	s.canonical()
	h := sha256.New()
	for _, m := range s.Members {
		h.Write([]byte(m))
		h.Write([]byte{0})
	}
	s.Digest = hex.EncodeToString(h.Sum(nil)[:12])
}

// Rule matches packets of a chain by peer address (and, for a HashIPPort
// set, peer address and destination port together), protocol and
// destination port. The peer is the destination in an egress chain and the
// source in an ingress chain.
type Rule struct {
	Verdict Verdict `json:"verdict"`
	// Proto is "tcp", "udp", "sctp", "icmp" or "" (every protocol).
	Proto string `json:"proto,omitempty"`
	// Ports is the destination port or range, "80" or "8000-8100"; ""
	// means every port (only with Proto tcp, udp or sctp).
	Ports string `json:"ports,omitempty"`
	// Set names an IPSet of the same Rules holding the peer; PeerCIDR is
	// a single prefix instead. Neither: any peer.
	Set      string `json:"set,omitempty"`
	PeerCIDR string `json:"peerCIDR,omitempty"`
	// OrigDst and OrigDstPort (forward chains only) match a connection
	// whose original destination, before DNAT, was that address and port:
	// traffic that arrived on a node port.
	OrigDst     string `json:"origDst,omitempty"`
	OrigDstPort uint16 `json:"origDstPort,omitempty"`
	// DNATOnly matches only DNATed connections (forward chains).
	DNATOnly bool `json:"dnatOnly,omitempty"`
	// Dst (forward chains only, whose peer is the source) is the
	// destination address or prefix after DNAT: the backend a DNATed
	// connection goes to.
	Dst string `json:"dst,omitempty"`
	// Comment names the intent the rule comes from ("scope@v3#2") or why
	// it was generated.
	Comment string `json:"comment,omitempty"`
}

// Chain is an ordered rule list with a default for packets no rule
// matched. Connections already established (and related ones) are allowed
// before any rule.
type Chain struct {
	Rules   []Rule  `json:"rules"`
	Default Verdict `json:"default"`
}

// Rules are one network namespace's rules.
type Rules struct {
	// Scope and Version are what the rules were compiled from.
	Scope   string `json:"scope"`
	Version string `json:"version"`
	// Ingress decides packets to the namespace's own addresses (INPUT),
	// Egress packets it sends (OUTPUT).
	Ingress Chain `json:"ingress"`
	Egress  Chain `json:"egress"`
	// Forward (nodes only) decides connections forwarded through the node
	// that arrived on one of its node ports; nil for pods.
	Forward *Chain  `json:"forward,omitempty"`
	Sets    []IPSet `json:"sets,omitempty"`
}

// Pod is the rule set of one pod.
type Pod struct {
	ID  string   `json:"id"` // NAMESPACE/NAME
	UID string   `json:"uid,omitempty"`
	IPs []string `json:"ips"`
	// Rules is nil for a pod on an enforcing node that no enforced scope
	// decides: it is exempt from the node's gate and gets no chains.
	Rules *Rules `json:"rules,omitempty"`
}

// Bundle is everything one node's agent programs.
type Bundle struct {
	Node string `json:"node"`
	// Hash identifies the content (Seal computes it); the agent reports
	// the hash it programmed and the server long-polls on it.
	Hash string `json:"hash"`
	// Versions are the enforced scopes' versions the bundle comes from,
	// "scope@v3".
	Versions []string `json:"versions"`
	// FailOpen: an agent that cannot reach the server for long removes its
	// rules instead of keeping them (the default is to keep them).
	FailOpen bool `json:"failOpen,omitempty"`
	// PodCIDRs are the node's pod ranges. While the bundle is programmed,
	// the node passes no packet from or to an address in them unless it
	// belongs to a pod whose namespace is programmed or exempt: a new pod
	// has no open window before its own rules are in place.
	PodCIDRs []string `json:"podCIDRs,omitempty"`
	// Self is the node's own rules; nil when no enforced scope decides the
	// node.
	Self *Rules `json:"self,omitempty"`
	Pods []Pod  `json:"pods"`
}

// Empty reports whether the bundle programs nothing (no enforced scope
// touches the node).
func (b *Bundle) Empty() bool { return b.Self == nil && len(b.Pods) == 0 && len(b.PodCIDRs) == 0 }

// AllRules returns the node's and every pod's Rules.
func (b *Bundle) AllRules() []*Rules {
	var out []*Rules
	if b.Self != nil {
		out = append(out, b.Self)
	}
	for i := range b.Pods {
		if b.Pods[i].Rules != nil {
			out = append(out, b.Pods[i].Rules)
		}
	}
	return out
}

// Canonicalize sorts what has no meaningful order (pods, sets, members) so
// equal content hashes equally. Rule order is meaning and is kept.
func (b *Bundle) Canonicalize() {
	sort.Slice(b.Pods, func(i, j int) bool { return b.Pods[i].ID < b.Pods[j].ID })
	sort.Strings(b.Versions)
	if b.Self != nil {
		b.Self.Canonicalize()
	}
	for i := range b.Pods {
		sort.Strings(b.Pods[i].IPs)
		if b.Pods[i].Rules != nil {
			b.Pods[i].Rules.Canonicalize()
		}
	}
}

// Canonicalize sorts the sets and the members of sets without a Digest (a
// set with one is canonical already: ComputeDigest canonicalizes first).
func (r *Rules) Canonicalize() {
	sort.Slice(r.Sets, func(i, j int) bool { return r.Sets[i].Name < r.Sets[j].Name })
	for i := range r.Sets {
		if r.Sets[i].Digest == "" {
			r.Sets[i].canonical()
		}
	}
}

func (s *IPSet) canonical() {
	sort.Strings(s.Members)
	s.Members = dedup(s.Members)
}

func dedup(xs []string) []string {
	out := xs[:0]
	for i, x := range xs {
		if i == 0 || x != xs[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// Seal canonicalizes the bundle and sets its Hash: over the node's
// fields, every pod's ID, UID and IPs, and every Rules' Hash.
func (b *Bundle) Seal() {
	b.Canonicalize()
	h := sha256.New()
	head := *b
	head.Hash, head.Self, head.Pods = "", nil, nil
	buf, _ := json.Marshal(head)
	h.Write(buf)
	if b.Self != nil {
		h.Write([]byte("self " + b.Self.Hash() + "\n"))
	}
	for _, p := range b.Pods {
		rh := "-"
		if p.Rules != nil {
			rh = p.Rules.Hash()
		}
		fmt.Fprintf(h, "pod %s %s %s %s\n", p.ID, p.UID, strings.Join(p.IPs, ","), rh)
	}
	b.Hash = hex.EncodeToString(h.Sum(nil)[:12])
}

// Hash identifies one namespace's rules: chains, and sets by name, type
// and member digest.
func (r *Rules) Hash() string {
	h := sha256.New()
	h.Write([]byte(r.RulesHash()))
	for i := range r.Sets {
		s := &r.Sets[i]
		if s.Digest == "" {
			s.ComputeDigest()
		}
		h.Write([]byte(s.Name + " " + s.Digest + "\n"))
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// RulesHash identifies the chains and the sets' names and types, not
// their members: when only members change, the agent updates the sets and
// leaves the rules alone.
func (r *Rules) RulesHash() string {
	var b strings.Builder
	b.WriteString(r.Scope + " " + r.Version + "\n")
	chain := func(name string, c *Chain) {
		b.WriteString(name + " " + string(c.Default) + "\n")
		for i := range c.Rules {
			ru := &c.Rules[i]
			for _, f := range []string{string(ru.Verdict), ru.Proto, ru.Ports, ru.Set, ru.PeerCIDR, ru.OrigDst, strconv.Itoa(int(ru.OrigDstPort)), strconv.FormatBool(ru.DNATOnly), ru.Comment} {
				b.WriteString(f)
				b.WriteByte('|')
			}
			if ru.Dst != "" {
				b.WriteString("dst=" + ru.Dst + "|")
			}
			b.WriteByte('\n')
		}
	}
	chain("ingress", &r.Ingress)
	chain("egress", &r.Egress)
	if r.Forward != nil {
		chain("forward", r.Forward)
	}
	for _, s := range r.Sets {
		b.WriteString("set " + s.Name + " " + string(s.Type) + "\n")
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:12])
}

// SetByName returns the named set.
func (r *Rules) SetByName(name string) *IPSet {
	for i := range r.Sets {
		if r.Sets[i].Name == name {
			return &r.Sets[i]
		}
	}
	return nil
}

// Validate checks what the agent relies on: known verdicts and types,
// sets that exist, parseable addresses and ports. Errors name the chain
// and rule.
func (r *Rules) Validate() error { return r.ValidateSkipping(nil) }

// ValidateSkipping is Validate without parsing the members of the sets
// for which known returns true (sets with the same name, type and digest
// as one checked already: the agent checks a set many pods share once).
func (r *Rules) ValidateSkipping(known func(*IPSet) bool) error {
	sets := map[string]*IPSet{}
	for i := range r.Sets {
		s := &r.Sets[i]
		if s.Name == "" || len(s.Name) > 31 {
			return fmt.Errorf("set %q: name must be 1-31 characters", s.Name)
		}
		switch s.Type {
		case HashIP, HashNet, HashIPPort:
		default:
			return fmt.Errorf("set %s: type %q: want hash:ip, hash:net or hash:ip,port", s.Name, s.Type)
		}
		if known == nil || !known(s) {
			for _, m := range s.Members {
				if _, _, _, err := parseMember(s.Type, m); err != nil {
					return fmt.Errorf("set %s: %w", s.Name, err)
				}
			}
		}
		sets[s.Name] = s
	}
	check := func(name string, c *Chain) error {
		if !c.Default.Valid() {
			return fmt.Errorf("%s chain: default %q: want ALLOW, REJECT or DROP", name, c.Default)
		}
		for i, ru := range c.Rules {
			where := fmt.Sprintf("%s chain rule %d", name, i+1)
			if !ru.Verdict.Valid() {
				return fmt.Errorf("%s: verdict %q", where, ru.Verdict)
			}
			switch ru.Proto {
			case "", "tcp", "udp", "sctp", "icmp":
			default:
				return fmt.Errorf("%s: protocol %q", where, ru.Proto)
			}
			if ru.Ports != "" {
				if ru.Proto != "tcp" && ru.Proto != "udp" && ru.Proto != "sctp" {
					return fmt.Errorf("%s: ports %q need tcp, udp or sctp", where, ru.Ports)
				}
				if _, _, err := ParsePorts(ru.Ports); err != nil {
					return fmt.Errorf("%s: %w", where, err)
				}
			}
			if ru.Set != "" {
				if sets[ru.Set] == nil {
					return fmt.Errorf("%s: set %q is not defined", where, ru.Set)
				}
				if ru.PeerCIDR != "" {
					return fmt.Errorf("%s: both a set and a peer CIDR", where)
				}
			}
			if ru.PeerCIDR != "" {
				if _, err := netip.ParsePrefix(ru.PeerCIDR); err != nil {
					return fmt.Errorf("%s: peer %q: %w", where, ru.PeerCIDR, err)
				}
			}
			if ru.OrigDst != "" {
				if _, err := netip.ParseAddr(ru.OrigDst); err != nil {
					return fmt.Errorf("%s: original destination %q: %w", where, ru.OrigDst, err)
				}
			}
			if ru.Dst != "" {
				if name != "forward" {
					return fmt.Errorf("%s: a destination (%s) is for forward chains only", where, ru.Dst)
				}
				if _, err := parsePrefix(ru.Dst); err != nil {
					return fmt.Errorf("%s: destination %q: %w", where, ru.Dst, err)
				}
			}
		}
		return nil
	}
	if err := check("ingress", &r.Ingress); err != nil {
		return err
	}
	if err := check("egress", &r.Egress); err != nil {
		return err
	}
	if r.Forward != nil {
		return check("forward", r.Forward)
	}
	return nil
}

// ParsePorts reads "80" or "8000-8100".
func ParsePorts(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	x, err := strconv.ParseUint(a, 10, 16)
	if err != nil || x == 0 {
		return 0, 0, fmt.Errorf("ports %q: want N or LO-HI within 1-65535", s)
	}
	y := x
	if isRange {
		if y, err = strconv.ParseUint(b, 10, 16); err != nil || y < x {
			return 0, 0, fmt.Errorf("ports %q: want N or LO-HI within 1-65535", s)
		}
	}
	return uint16(x), uint16(y), nil
}

func parseMember(t SetType, m string) (netip.Prefix, string, uint16, error) {
	switch t {
	case HashIP:
		a, err := netip.ParseAddr(m)
		if err != nil {
			return netip.Prefix{}, "", 0, fmt.Errorf("member %q: want an address", m)
		}
		return netip.PrefixFrom(a, a.BitLen()), "", 0, nil
	case HashNet:
		if p, err := netip.ParsePrefix(m); err == nil {
			return p.Masked(), "", 0, nil
		}
		a, err := netip.ParseAddr(m)
		if err != nil {
			return netip.Prefix{}, "", 0, fmt.Errorf("member %q: want an address or prefix", m)
		}
		return netip.PrefixFrom(a, a.BitLen()), "", 0, nil
	case HashIPPort:
		addr, pp, ok := strings.Cut(m, ",")
		proto, port, ok2 := strings.Cut(pp, ":")
		a, err := netip.ParseAddr(addr)
		n, perr := strconv.ParseUint(port, 10, 16)
		if !ok || !ok2 || err != nil || perr != nil || (proto != "tcp" && proto != "udp" && proto != "sctp") {
			return netip.Prefix{}, "", 0, fmt.Errorf("member %q: want ADDRESS,PROTO:PORT", m)
		}
		return netip.PrefixFrom(a, a.BitLen()), proto, uint16(n), nil
	}
	return netip.Prefix{}, "", 0, fmt.Errorf("set type %q", t)
}

// Packet is what Decide looks at: the peer address (destination for
// egress, source for ingress), protocol and destination port, and for
// forward chains the connection's original destination.
type Packet struct {
	Peer        netip.Addr
	Proto       string
	Port        uint16
	OrigDst     netip.Addr
	OrigDstPort uint16
	DNAT        bool
	// Dst is the destination after DNAT (forward chains).
	Dst netip.Addr
}

// Decide returns what chain c of r does with a new connection's first
// packet: the verdict of the first matching rule, else the default. It is
// the reference semantics of the agent's iptables rules, used to test the
// compiler without a kernel.
func (r *Rules) Decide(c *Chain, p Packet) (Verdict, int) {
	for i := range c.Rules {
		if r.matches(&c.Rules[i], p) {
			return c.Rules[i].Verdict, i
		}
	}
	return c.Default, -1
}

func (r *Rules) matches(ru *Rule, p Packet) bool {
	if ru.Proto != "" && ru.Proto != p.Proto {
		return false
	}
	if ru.Ports != "" {
		lo, hi, _ := ParsePorts(ru.Ports)
		if p.Port < lo || p.Port > hi {
			return false
		}
	}
	if ru.DNATOnly && !p.DNAT {
		return false
	}
	if ru.OrigDst != "" {
		a, _ := netip.ParseAddr(ru.OrigDst)
		if !p.DNAT || a != p.OrigDst || (ru.OrigDstPort != 0 && ru.OrigDstPort != p.OrigDstPort) {
			return false
		}
	}
	if ru.Dst != "" {
		if pf, err := parsePrefix(ru.Dst); err != nil || !pf.Contains(p.Dst) {
			return false
		}
	}
	if ru.PeerCIDR != "" {
		pf, _ := netip.ParsePrefix(ru.PeerCIDR)
		if !pf.Contains(p.Peer) {
			return false
		}
	}
	if ru.Set != "" {
		s := r.SetByName(ru.Set)
		if s == nil {
			return false
		}
		found := false
		for _, m := range s.Members {
			pf, proto, port, err := parseMember(s.Type, m)
			if err != nil || !pf.Contains(p.Peer) {
				continue
			}
			if s.Type == HashIPPort && (proto != p.Proto || port != p.Port) {
				continue
			}
			found = true
			break
		}
		if !found {
			return false
		}
	}
	return true
}

// NamespaceStatus is what an agent programmed in one namespace.
type NamespaceStatus struct {
	// Target is "node" or the pod's NAMESPACE/NAME.
	Target  string `json:"target"`
	NetNS   string `json:"netns,omitempty"`
	Scope   string `json:"scope,omitempty"`
	Version string `json:"version,omitempty"`
	// Hash is the programmed Rules' Hash ("" for the node's gate alone).
	Hash       string    `json:"hash,omitempty"`
	Rules      int       `json:"rules"`
	Sets       int       `json:"sets"`
	Members    int       `json:"members"`
	Programmed time.Time `json:"programmed,omitempty"`
	// Pending: the pod's namespace was not found yet (its traffic waits at
	// the node's gate).
	Pending bool   `json:"pending,omitempty"`
	Error   string `json:"error,omitempty"`
}

// DriftEvent is a change someone else made to Palisade's chains or sets,
// and its repair.
type DriftEvent struct {
	Time   time.Time `json:"time"`
	Target string    `json:"target"`
	// What the agent had to restore, e.g. "chains (12 lines missing, 0
	// unexpected)" or "3 set changes".
	What string `json:"what"`
	// Repaired is how long after the change the repair was done, when the
	// agent learnt of it from a notification.
	Repaired time.Duration `json:"repairedNs,omitempty"`
}

// AgentStatus is one agent's enforcement state, sent to the server and
// shown by `palisade enforce status`.
type AgentStatus struct {
	Node string `json:"node"`
	// Hash is the Bundle hash fully programmed ("" while none is).
	Hash       string            `json:"hash"`
	Versions   []string          `json:"versions,omitempty"`
	Programmed time.Time         `json:"programmed,omitempty"`
	Namespaces []NamespaceStatus `json:"namespaces"`
	Drift      []DriftEvent      `json:"drift,omitempty"`
	Errors     []string          `json:"errors,omitempty"`
	// ServerLost is set while the agent cannot reach the server (the rules
	// stay in force unless the bundle says FailOpen).
	ServerLost bool      `json:"serverLost,omitempty"`
	Reported   time.Time `json:"reported"`
}

// Mode is a scope's enforcement mode.
type Mode string

const (
	// Analyze: nothing is programmed; flows are analyzed only.
	Analyze Mode = "analyze"
	// Enforce: the scope's version is programmed on every node.
	Enforce Mode = "enforce"
)

// ScopeMode is one scope's enforcement setting.
type ScopeMode struct {
	Scope   string `json:"scope"`
	Mode    Mode   `json:"mode"`
	Version string `json:"version,omitempty"`
	// FailOpen: agents that lose the server remove the rules after a grace
	// period instead of keeping them.
	FailOpen  bool      `json:"failOpen,omitempty"`
	Updated   time.Time `json:"updated"`
	UpdatedBy string    `json:"updatedBy,omitempty"`
}

// ModeRequest is the body of POST /api/v1/enforcement/scopes/{scope}.
type ModeRequest struct {
	Mode Mode `json:"mode"`
	// Version to enforce ("": the newest analyzed version).
	Version  string `json:"version,omitempty"`
	FailOpen bool   `json:"failOpen,omitempty"`
}

// AgentView is an agent's status next to what the server wants it to run.
type AgentView struct {
	AgentStatus
	// Wanted is the hash of the bundle the server has for the node;
	// InSync: the agent programmed exactly that.
	Wanted string `json:"wanted"`
	InSync bool   `json:"inSync"`
}

// Enforcement is GET /api/v1/enforcement.
type Enforcement struct {
	Scopes   []ScopeMode `json:"scopes"`
	Agents   []AgentView `json:"agents"`
	Compiled time.Time   `json:"compiled,omitempty"`
	// Error is the last compilation's error ("" when it compiled).
	Error string `json:"error,omitempty"`
	// Rules and set members over every bundle of the last compilation.
	Rules   int `json:"rules"`
	Members int `json:"members"`
}

// parsePrefix reads an address or a prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("want an address or prefix")
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
