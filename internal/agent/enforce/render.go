package enforce

import (
	"fmt"
	"strings"

	"github.com/palisade-dev/palisade/internal/ruleset"
)

// Palisade's own chains (filter table) and sets. Nothing else in a
// namespace is ever flushed, reordered or rewritten: the only edits outside
// these chains are one jump from each base chain, inserted first and
// removed on disable.
const (
	ChainIn  = "PALISADE-IN"  // from INPUT: packets to the namespace's addresses
	ChainOut = "PALISADE-OUT" // from OUTPUT: packets the namespace sends
	ChainFwd = "PALISADE-FWD" // from FORWARD (nodes): packets routed or bridged through
	// SetPrefix starts the name of every ipset Palisade owns.
	SetPrefix = "PALISADE-"
	// ReadySet (nodes) holds the pod addresses the node's gate lets
	// through: pods whose own rules are programmed, pods no enforced scope
	// decides, and the node's own addresses in its pod ranges.
	ReadySet = "PALISADE-READY"
	// jumpComment marks Palisade's jumps; jumpCommentNewTable marks that
	// the filter table did not exist before Palisade made it, so disable
	// removes the table too and leaves iptables-save exactly as before.
	jumpComment         = "palisade"
	jumpCommentNewTable = "palisade new-table"
)

var baseChain = map[string]string{ChainIn: "INPUT", ChainOut: "OUTPUT", ChainFwd: "FORWARD"}

// spec is what one namespace gets.
type spec struct {
	rules *ruleset.Rules // nil: no policy rules (a node outside every enforced scope: gate only)
	node  bool
	gate  []string // pod CIDRs gated by ReadySet (nodes)
	ready []string // ReadySet's members
}

// rulesKey identifies what the chains hold (not the sets' members): when
// it changes the chains are rewritten.
func (s *spec) rulesKey() string {
	k := fmt.Sprintf("node=%t gate=%s", s.node, strings.Join(s.gate, ","))
	if s.rules != nil {
		k += " rules=" + s.rules.RulesHash()
	}
	return k
}

func (s *spec) chains() []string {
	if s.node {
		return []string{ChainIn, ChainOut, ChainFwd}
	}
	return []string{ChainIn, ChainOut}
}

// sets returns every set the namespace must hold, with members.
func (s *spec) sets() []ruleset.IPSet {
	var out []ruleset.IPSet
	if s.rules != nil {
		out = append(out, s.rules.Sets...)
	}
	if s.node && len(s.gate) > 0 {
		out = append(out, ruleset.IPSet{Name: ReadySet, Type: ruleset.HashIP, Members: s.ready})
	}
	return out
}

// render is the iptables-restore --noflush input that makes the chains
// exactly what spec says. Declaring a chain in --noflush mode flushes it
// (only it); jumps are added for the base chains that lack one.
func render(s *spec, haveJump map[string]bool, newTable bool) string {
	var b strings.Builder
	b.WriteString("*filter\n")
	for _, c := range s.chains() {
		fmt.Fprintf(&b, ":%s - [0:0]\n", c)
	}
	est := "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
	// Ingress.
	fmt.Fprintf(&b, "-A %s %s\n", ChainIn, est)
	fmt.Fprintf(&b, "-A %s -i lo -j RETURN\n", ChainIn)
	for _, g := range s.gateList() {
		reject(&b, ChainIn, fmt.Sprintf("-s %s -m set ! --match-set %s src", g, ReadySet), "", "pod not yet programmed")
	}
	if s.rules != nil {
		chain(&b, ChainIn, &s.rules.Ingress, s.rules, "src")
	} else {
		fmt.Fprintf(&b, "-A %s -j RETURN\n", ChainIn)
	}
	// Egress.
	fmt.Fprintf(&b, "-A %s %s\n", ChainOut, est)
	fmt.Fprintf(&b, "-A %s -o lo -j RETURN\n", ChainOut)
	for _, g := range s.gateList() {
		reject(&b, ChainOut, fmt.Sprintf("-d %s -m set ! --match-set %s dst", g, ReadySet), "", "pod not yet programmed")
	}
	if s.rules != nil {
		chain(&b, ChainOut, &s.rules.Egress, s.rules, "dst")
	} else {
		fmt.Fprintf(&b, "-A %s -j RETURN\n", ChainOut)
	}
	if s.node {
		fmt.Fprintf(&b, "-A %s %s\n", ChainFwd, est)
		for _, g := range s.gateList() {
			reject(&b, ChainFwd, fmt.Sprintf("-s %s -m set ! --match-set %s src", g, ReadySet), "", "pod not yet programmed")
			reject(&b, ChainFwd, fmt.Sprintf("-d %s -m set ! --match-set %s dst", g, ReadySet), "", "pod not yet programmed")
		}
		if s.rules != nil && s.rules.Forward != nil {
			chain(&b, ChainFwd, s.rules.Forward, s.rules, "src")
		} else {
			fmt.Fprintf(&b, "-A %s -j RETURN\n", ChainFwd)
		}
	}
	comment := jumpComment
	if newTable {
		comment = jumpCommentNewTable
	}
	for _, c := range s.chains() {
		if !haveJump[c] {
			fmt.Fprintf(&b, "-I %s 1 -m comment --comment %q -j %s\n", baseChain[c], comment, c)
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// chainText is the iptables text of the chains alone (no jumps): what a
// template is learned for (nft.go).
func chainText(s *spec) string {
	all := map[string]bool{ChainIn: true, ChainOut: true, ChainFwd: true}
	return render(s, all, false)
}

func (s *spec) gateList() []string {
	if !s.node {
		return nil
	}
	return s.gate
}

// chain writes a chain's rules and default. dir is "src" for ingress (the
// peer is the source) and "dst" for egress.
func chain(b *strings.Builder, name string, c *ruleset.Chain, r *ruleset.Rules, dir string) {
	for i := range c.Rules {
		ru := &c.Rules[i]
		var m []string
		if ru.Proto != "" {
			m = append(m, "-p", ru.Proto)
			if ru.Ports != "" {
				m = append(m, "--dport", strings.Replace(ru.Ports, "-", ":", 1))
			}
		}
		if ru.PeerCIDR != "" {
			if dir == "src" {
				m = append(m, "-s", ru.PeerCIDR)
			} else {
				m = append(m, "-d", ru.PeerCIDR)
			}
		}
		if ru.Dst != "" {
			m = append(m, "-d", ru.Dst)
		}
		if ru.Set != "" {
			flags := dir
			if s := r.SetByName(ru.Set); s != nil && s.Type == ruleset.HashIPPort {
				flags = dir + ",dst"
			}
			m = append(m, "-m", "set", "--match-set", ru.Set, flags)
		}
		if ru.DNATOnly || ru.OrigDst != "" {
			m = append(m, "-m", "conntrack", "--ctstate", "DNAT")
			if ru.OrigDst != "" {
				m = append(m, "--ctorigdst", ru.OrigDst)
			}
			if ru.OrigDstPort != 0 {
				if ru.Proto != "" {
					m = append(m, "--ctproto", ru.Proto)
				}
				m = append(m, "--ctorigdstport", fmt.Sprint(ru.OrigDstPort))
			}
		}
		verdict(b, name, strings.Join(m, " "), ru.Proto, ru.Verdict, ru.Comment)
	}
	verdict(b, name, "", "", c.Default, "default")
}

func verdict(b *strings.Builder, chain, match, proto string, v ruleset.Verdict, comment string) {
	switch v {
	case ruleset.Allow:
		line(b, chain, match, comment, "RETURN")
	case ruleset.Drop:
		line(b, chain, match, comment, "DROP")
	default:
		reject(b, chain, match, proto, comment)
	}
}

// reject refuses TCP with a reset (a client fails at once) and everything
// else with an ICMP port unreachable.
func reject(b *strings.Builder, chain, match, proto, comment string) {
	if proto == "" || proto == "tcp" {
		m := match
		if proto == "" {
			m = strings.TrimSpace("-p tcp " + match)
		}
		line(b, chain, m, comment, "REJECT --reject-with tcp-reset")
	}
	if proto != "tcp" {
		line(b, chain, match, comment, "REJECT")
	}
}

func line(b *strings.Builder, chain, match, comment, target string) {
	b.WriteString("-A ")
	b.WriteString(chain)
	if match != "" {
		b.WriteString(" ")
		b.WriteString(match)
	}
	if comment = sanitizeComment(comment); comment != "" {
		fmt.Fprintf(b, " -m comment --comment %q", comment)
	}
	b.WriteString(" -j ")
	b.WriteString(target)
	b.WriteString("\n")
}

// sanitizeComment keeps a comment within iptables' 256 bytes and free of
// quotes and newlines.
func sanitizeComment(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r == '\n' || r == '\r' || r < 0x20 || r > 0x7e {
			return '_'
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
