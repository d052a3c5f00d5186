package policy

import "github.com/palisade-dev/palisade/internal/inventory"

// This file exposes the evaluator's precedence chains to the enforcement
// compiler (internal/policy/compile), so compiled rules follow the very
// order and matching the evaluator decides with.

// ChainRule is one intent of a deciding chain.
type ChainRule struct {
	Ref      RuleRef
	Action   Action
	Consumer Endpoint
	Provider Endpoint
	// Ports are as written (named ports unresolved); AnyPort: no ports.
	Ports   []PortRange
	AnyPort bool
	// ViaService: the provider is a service and Ports are service ports.
	ViaService bool

	r *rule
}

// Chain returns the intents that decide side (Egress or Ingress) for a
// peer whose deciding scope is scope, in precedence order, and that
// scope's catch-all. ok is false for an unknown scope.
func (e *Evaluator) Chain(scope string, side Direction) (rules []ChainRule, catchAll SideDecision, ok bool) {
	i, ok := e.byName[scope]
	if !ok || (side != Egress && side != Ingress) {
		return nil, SideDecision{}, false
	}
	for _, r := range e.chains[side][i] {
		cr := ChainRule{Ref: r.ref, Action: r.action, Ports: r.ports, AnyPort: r.anyPort, ViaService: r.viaSvc, r: r}
		cr.Consumer, _ = ParseEndpoint(consumerText(e, r))
		cr.Provider, _ = ParseEndpoint(providerText(e, r))
		rules = append(rules, cr)
	}
	sc := &e.scopes[i]
	return rules, SideDecision{Scope: sc.name, Action: sc.catchAll, Rule: RuleRef{Scope: sc.name, Version: sc.version, Index: -1, Key: "catch-all"}}, true
}

func consumerText(e *Evaluator, r *rule) string { return atomText(e, r.cons) }
func providerText(e *Evaluator, r *rule) string { return atomText(e, r.prov) }

func atomText(e *Evaluator, i int) string {
	a := &e.atoms[i]
	switch a.kind {
	case atomAny:
		return "any"
	case atomCIDR:
		return "cidr:" + a.prefix.String()
	case atomService:
		return "service:" + a.svc
	case atomHostNode:
		return "host-node"
	case atomBit:
		if a.bit < len(e.scopes) {
			return "scope:" + e.scopes[a.bit].name
		}
		return e.filters[a.bit-len(e.scopes)].String()
	}
	return "any"
}

// Classified is a peer classified once by a session, to be tested against
// many endpoints.
type Classified struct{ c *class }

// Valid reports whether the peer was classified.
func (c Classified) Valid() bool { return c.c != nil }

// Classify classifies p (cached in the session).
func (s *Session) Classify(p Peer) Classified { return Classified{s.classify(p)} }

// DecidingScope is the peer's deciding scope ("" when unscoped).
func (s *Session) DecidingScope(c Classified) string {
	if c.c == nil || c.c.scope < 0 {
		return ""
	}
	return s.e.scopes[c.c.scope].name
}

// ConsumerHolds reports whether r's consumer matches the source peer c,
// as the evaluator matches it. A host-node consumer depends on the
// destination too (the node it runs on): it holds for no peer alone.
func (s *Session) ConsumerHolds(r *ChainRule, c Classified) bool {
	if s.e.atoms[r.r.cons].kind == atomHostNode {
		return false
	}
	return s.atomMatch(r.r.cons, c.c, nil, false)
}

// ProviderHolds reports whether r's provider matches the destination
// peer c reached through svc (nil: not through a service), as the
// evaluator matches it.
func (s *Session) ProviderHolds(r *ChainRule, c Classified, svc *inventory.Workload) bool {
	if s.e.atoms[r.r.prov].kind == atomHostNode {
		return false // depends on the source too, as a host-node consumer
	}
	return s.atomMatch(r.r.prov, c.c, s.svcClass(svc), true)
}

// ResolvePorts returns r's ports for one destination: named ports turned
// into numbers (the service's for a service provider, else the
// destination's container ports); nil with AnyPort or when no name
// resolves there.
func ResolvePorts(r *ChainRule, dst *inventory.Workload, svc *inventory.Workload) []PortRange {
	if r.AnyPort {
		return nil
	}
	var sc *svcClass
	if svc != nil {
		sc = &svcClass{w: svc}
	}
	return resolvePorts(r.Ports, r.ViaService, dst, sc)
}
