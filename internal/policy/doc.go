// Package policy is Palisade's zero-trust policy model: scopes, intent
// policies and their versions, and the evaluator that decides a flow
// against them. The evaluator is pure (no I/O, no clock, no store): analysis
// (internal/policy/analyze), compliance monitoring and the enforcement
// compiler (internal/policy/compile) all ask it, so they agree by
// construction.
//
// # Scopes
//
// Scopes form a tree under an implicit root that holds every workload and
// no policies. Each scope has an inventory filter (internal/filter over
// internal/inventory records); a child's members are always within its
// parent's: its effective filter is its own `and` every ancestor's. A
// workload's deciding scope is the deepest scope it belongs to (between
// overlapping siblings, the first by name). A workload that belongs to no
// declared scope is unscoped.
//
// Both designs of the reference material fit:
//
//	single scope:  cluster-lab  (cluster = "lab")             ← every policy here
//	split scope:   cluster-lab  (cluster = "lab")             ← node probes, NodePort, shared rules
//	               ├─ sock-shop (namespace = "sock-shop")     ← the application's own intents
//	               └─ monitoring (namespace = "monitoring")
//
// # Intents
//
// An intent (Policy) belongs to a scope: consumer → provider, ports, action
// ALLOW or DENY, class absolute or default, priority. Consumer and provider
// are each one of
//
//	label.app = "user"            an inventory filter over the workload at the flow's time
//	scope:NAME                    the members of a scope (effective filter)
//	service:NAMESPACE/NAME        a Kubernetes service; as a provider its ports are the
//	                              service's ports, matched on the flow to the cluster IP or
//	                              node port and on the DNAT-related flow to the backend
//	cidr:203.0.113.0/24           addresses, whoever holds them
//	any                           everything, including addresses no workload holds
//
// Ports are "tcp/80", "tcp/8000-8100", "tcp/http" (a named port: the
// service port of that name for a service provider, else the destination
// pod's container port of that name), "udp" (every UDP port) or "any"; no
// ports means every protocol and port.
//
// # Decisions
//
// A flow is decided twice: on egress by the consumer's deciding scope and on
// ingress by the provider's deciding scope. Both decisions are kept; the
// flow is allowed when every side that has a decision allows it. A side
// whose endpoint is unscoped (an external address, a workload outside every
// scope) has no decision. A flow with no decision on either side is
// unscoped, never silently dropped from counts.
//
// On one side, with deciding scope D and its chain of ancestors
// top … parent(D), D, the first matching rule in this order decides:
//
//  1. absolute intents: the top scope's first, then each child down to D;
//  2. default intents: D's first, then its parent's, up to the top scope;
//  3. D's catch-all (ALLOW or DENY).
//
// Within one scope and class, intents are ordered by priority (smaller
// first; 100 when omitted), then as written. An intent with direction
// egress (or ingress) takes part only in that side's decisions; the default
// is both. This is what Kubernetes NetworkPolicy semantics need: a flow is
// allowed iff egress-allowed(src) and ingress-allowed(dst), each side being
// the union of its allows, which one first-match list cannot express.
//
// # Verdicts
//
// Analysis compares the decision with the network outcome (the flow's
// replied field): Permitted (allowed, replied), Escaped (denied, replied),
// Rejected (denied, not replied), Misdropped (allowed, not replied).
//
// # Speed
//
// Compile turns a Set into an Evaluator once. Each endpoint is classified
// once per workload version and address (every scope membership and every
// filter the intents use, as a bit set), and each (consumer class,
// provider class, service) triple once per side into the short list of
// intents whose endpoints match; a flow then costs two map look-ups and a
// port comparison or two, independent of the number of intents.
package policy
