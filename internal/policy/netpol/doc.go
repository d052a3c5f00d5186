// Package netpol imports Kubernetes NetworkPolicies (networking.k8s.io/v1)
// as a version of a Palisade scope, so that analysis of that version
// answers "what would my NetworkPolicies have allowed and blocked" over
// stored or live flows.
//
// Policies come from files (Decode: YAML or JSON, several documents, Lists
// as `kubectl get -o yaml` prints them; strict, with file:line:column and
// the field path in every error; Validate applies the API server's rules)
// or from a cluster (FromCluster). Translate makes the version.
//
// # Semantics kept
//
// Upstream (the networking/v1 API reference; kube-network-policies'
// evaluator) decides a connection from a source to a destination as
//
//	allowed = egress-allowed(source) and ingress-allowed(destination)
//
// A pod is isolated for a direction when a policy of its namespace selects
// it (spec.podSelector; {} selects all) and lists that direction in
// policyTypes. policyTypes defaults, as the API server defaults it, to
// Ingress, plus Egress when spec.egress has rules. A non-isolated side
// allows everything; an isolated side allows what at least one rule of at
// least one selecting policy allows (the union of allows; order and number
// of policies do not matter). A rule matches when one of its peers and one
// of its ports match; no peers means every peer, no ports every port.
// A peer is
//
//	podSelector alone              pods of the policy's namespace
//	namespaceSelector alone        every pod of the namespaces it selects
//	both, in ONE peer              pods matching podSelector in those namespaces (AND)
//	ipBlock {cidr, except}         addresses in cidr and in no except, whoever holds them
//
// Selectors never match an address no pod holds. A port is protocol (TCP if
// omitted), a number, a number..endPort range, or a named port, which
// resolves per destination pod: the destination's container port of that
// name and protocol (for egress too; an external destination has no named
// ports). No port number means every port of the protocol.
//
// # Translation
//
// For each policy P in namespace N selecting S = `kind = pod and namespace
// = "N" and <podSelector>`:
//
//	ingress rule i, peer j → ALLOW  consumer PEER       provider S          ports  direction ingress  priority 100
//	Ingress in policyTypes → ALLOW  consumer host-node  provider S                 direction ingress  priority 100
//	                         DENY   consumer any        provider S                 direction ingress  priority 1000
//	egress rule i, peer j  → ALLOW  consumer S          provider PEER       ports  direction egress   priority 100
//	Egress in policyTypes  → ALLOW  consumer S          provider services          direction egress   priority 100
//	                         ALLOW  consumer S          provider host-node         direction egress   priority 100
//	                         DENY   consumer S          provider any               direction egress   priority 1000
//
// (the ALLOW to services: upstream decides a connection to a service after
// DNAT, on the backend pod, so the flow to the service's own address is left
// to its DNAT-related flow, which the other intents decide), and the
// version's catch-all is ALLOW (a pod no policy selects is not
// isolated). Every allow precedes every isolation deny, so the first
// matching intent of a side is an allow exactly when the union of allows
// holds. Intent directions make each side a separate decision, as
// internal/policy decides the egress side in the consumer's scope and the
// ingress side in the provider's. Selectors become filters: matchLabels
// k: v → `label.k = "v"`; In → `label.k in (...)`; NotIn → `not label.k in
// (...)` and DoesNotExist → `not label.k exists` (both true when the key is
// missing, as upstream); a namespaceSelector uses the pod's
// `namespace_label.k` fields (the labels its namespace had at the flow's
// time, kept on every pod version by the connector). An ipBlock becomes
// one `cidr:` consumer or provider per prefix of cidr minus its exceptions
// (Subtract). Ports become "tcp/80", "tcp/81-90", "tcp/serve-80-tcp" or
// "udp" (every UDP port). Intents are named
// netpol.NAMESPACE.NAME.ingress0.from1 (…, isolate-ingress), so analysis
// names the policy and rule that decided each flow.
//
// Policies imported from a cluster are confined to it: every filter gets
// `cluster = "NAME"`, so they select only that cluster's pods. The scope
// the version belongs to must hold the pods the policies select (e.g. a
// cluster scope, `cluster = "lab"`): a pod outside it is decided by its own
// scope.
//
// Traffic to and from the node a pod runs on is always allowed upstream
// ("regardless of the IP address of the Pod or the node": kubelet
// probes): the host-node endpoint (internal/policy) is exactly that node,
// decided per flow from the pod's node at the flow's time, so a probe
// from another node's address stays denied.
//
// Not modelled: host-network pods (their address is the node's, so their
// traffic is the node's); and the implementation-defined treatment of ipBlocks that cover pod
// addresses behind NAT (here, as in kube-network-policies, an ipBlock
// matches whatever address the flow carries).
package netpol
