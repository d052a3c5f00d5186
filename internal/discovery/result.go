package discovery

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/policy"
)

// Merge makes d's result include o's flows: o must have been made from the
// same input and options (New), fed other flows, and no longer be used.
// The merge is exact: discovering flows in parts and merging gives the
// result of one Discoverer fed them all.
func (d *Discoverer) Merge(o *Discoverer) {
	if o != nil && o != d {
		d.merged = append(d.merged, o)
	}
}

// agg is an edge of the result, keyed by its endpoint texts: the edges of
// several Discoverers, and of bare pods grouped by similarity, fold into
// one.
type agg struct {
	cons, prov   string
	kind         string
	nodePort     bool
	ports        []string            // sorted and made unique in rule
	backend      []string            // target ports behind a service
	svc          *inventory.Workload // the latest service version seen
	nodeIPs      []string
	flows, conns uint64
	bytes        uint64
	first, last  time.Time
	samples      []sample
}

type aggKey struct{ cons, prov string }

func (a *agg) absorb(b *agg, samples int) {
	a.nodePort = a.nodePort || b.nodePort
	if a.kind == "" {
		a.kind = b.kind
	}
	a.ports = append(a.ports, b.ports...)
	a.backend = append(a.backend, b.backend...)
	a.laterService(b.svc)
	a.nodeIPs = append(a.nodeIPs, b.nodeIPs...)
	if a.flows == 0 || b.first.Before(a.first) {
		a.first = b.first
	}
	if a.flows == 0 || b.last.After(a.last) {
		a.last = b.last
	}
	a.flows += b.flows
	a.conns += b.conns
	a.bytes += b.bytes
	e := edge{samples: a.samples}
	for _, s := range b.samples {
		e.sample(s, samples)
	}
	a.samples = e.samples
}

// laterService keeps the service version updated last (its selector is
// the backends' in the NetworkPolicy), whichever order they came in.
func (a *agg) laterService(s *inventory.Workload) {
	switch {
	case s == nil:
	case a.svc == nil || s.Updated.After(a.svc.Updated):
		a.svc = s
	case s.Updated.Equal(a.svc.Updated) && selectorString(s.Selector) < selectorString(a.svc.Selector):
		a.svc = s
	}
}

func newAgg(cons, prov string) *agg {
	return &agg{cons: cons, prov: prov}
}

// fold adds d's edges to aggs.
func (d *Discoverer) fold(aggs map[aggKey]*agg) {
	for _, e := range d.edges {
		b := newAgg(d.eps[e.cons], d.eps[e.prov])
		b.kind, b.nodePort = e.kind, e.nodePort
		for _, pk := range e.ports {
			b.ports = append(b.ports, portString(d.protos[pk>>16], uint16(pk)))
		}
		for _, sp := range e.svcPorts {
			proto, port := d.protos[sp.port>>16], uint16(sp.port)
			for _, p := range sp.svc.Ports {
				if uint16(p.Port) == port && strings.EqualFold(p.Protocol, proto) {
					b.backend = append(b.backend, proto+"/"+p.TargetPort)
				}
			}
			b.laterService(sp.svc)
		}
		for _, n := range e.nodes {
			b.nodeIPs = append(b.nodeIPs, n.IPs...)
		}
		b.flows, b.conns, b.bytes, b.first, b.last, b.samples = e.flows, e.conns, e.bytes, e.first, e.last, e.samples
		k := aggKey{b.cons, b.prov}
		if a := aggs[k]; a != nil {
			a.absorb(b, d.opts.Samples)
		} else {
			aggs[k] = b
		}
	}
}

// member adds a workload version to the cluster.
func (c *Cluster) member(w *inventory.Workload) {
	if slices.Contains(c.Members, w.ID) {
		return
	}
	c.Members = append(c.Members, w.ID)
	if w.Kind != inventory.KindPod {
		for _, ip := range w.IPs {
			if !slices.Contains(c.IPs, ip) {
				c.IPs = append(c.IPs, ip)
			}
		}
		return
	}
	labels := map[string]string{}
	for k, v := range w.Labels {
		if k != "pod-template-hash" && k != "controller-revision-hash" && k != "pod-template-generation" {
			labels[k] = v
		}
	}
	c.addPods(w.Namespace, false, labels)
}

// addPods narrows the cluster's namespace and common labels by pods of ns
// (mixed: of several namespaces) carrying labels.
func (c *Cluster) addPods(ns string, mixed bool, labels map[string]string) {
	if !c.hasPods {
		c.hasPods, c.Namespace, c.nsMixed = true, ns, mixed
		c.Labels = map[string]string{}
		for k, v := range labels {
			c.Labels[k] = v
		}
		if mixed {
			c.Namespace = ""
		}
		return
	}
	if mixed || c.Namespace != ns {
		c.nsMixed, c.Namespace = true, ""
	}
	for k, v := range c.Labels {
		if labels[k] != v {
			delete(c.Labels, k)
		}
	}
}

// absorb merges the same cluster as seen by another Discoverer (or a bare
// pod's cluster into its similarity group).
func (c *Cluster) absorb(o *Cluster) {
	for _, m := range o.Members {
		if !slices.Contains(c.Members, m) {
			c.Members = append(c.Members, m)
		}
	}
	for _, ip := range o.IPs {
		if !slices.Contains(c.IPs, ip) {
			c.IPs = append(c.IPs, ip)
		}
	}
	if o.hasPods {
		c.addPods(o.Namespace, o.nsMixed, o.Labels)
	}
}

// Result is what the flows added so far (to d and the Discoverers merged
// into it) give, for the window [from, to].
func (d *Discoverer) Result(from, to time.Time) *Result {
	res := &Result{Scope: d.opts.Scope, From: from, To: to, CatchAll: d.catchAll}
	all := d.all(nil)
	clusters := map[string]*Cluster{} // by filter
	aggs := map[aggKey]*agg{}
	namespaces := map[string]bool{}
	for _, x := range all {
		st := &res.Stats
		st.Read += x.stats.Read
		st.Used += x.stats.Used
		st.OutOfScope += x.stats.OutOfScope
		st.NotReplied += x.stats.NotReplied
		st.Translated += x.stats.Translated
		st.Excluded += x.stats.Excluded
		st.Ephemeral += x.stats.Ephemeral
		st.Covered += x.stats.Covered
		for f, c := range x.clusters {
			if have := clusters[f]; have != nil {
				have.absorb(c)
			} else {
				n := &Cluster{Name: c.Name, Filter: c.Filter, By: c.By, cluster: c.cluster, podName: c.podName}
				n.absorb(c)
				clusters[f] = n
			}
		}
		x.fold(aggs)
		for ns := range x.namespaces {
			namespaces[ns] = true
		}
	}
	// Bare pods with the same peers and ports become one cluster.
	if regroup := similar(clusters, aggs); len(regroup) > 0 {
		for old, g := range regroup {
			delete(clusters, old)
			clusters[g.Filter] = g
		}
		re := func(s string) string {
			if g := regroup[s]; g != nil {
				return g.Filter
			}
			return s
		}
		folded := make(map[aggKey]*agg, len(aggs))
		for _, a := range sortedAggs(aggs) {
			a.cons, a.prov = re(a.cons), re(a.prov)
			k := aggKey{a.cons, a.prov}
			if have := folded[k]; have != nil {
				have.absorb(a, d.opts.Samples)
			} else {
				folded[k] = a
			}
		}
		aggs = folded
	}
	uniqueNames(clusters)
	for _, a := range aggs {
		res.Rules = append(res.Rules, a.rule(d.opts.Scope, clusters))
	}
	sort.Slice(res.Rules, func(i, j int) bool {
		a, b := &res.Rules[i], &res.Rules[j]
		if a.Consumer != b.Consumer {
			return a.Consumer < b.Consumer
		}
		return a.Provider < b.Provider
	})
	for _, c := range clusters {
		x := *c
		x.Members = append([]string(nil), c.Members...)
		sort.Strings(x.Members)
		x.IPs = append([]string(nil), c.IPs...)
		sort.Strings(x.IPs)
		res.Clusters = append(res.Clusters, x)
	}
	sort.Slice(res.Clusters, func(i, j int) bool { return res.Clusters[i].Name < res.Clusters[j].Name })
	for ns := range namespaces {
		res.Namespaces = append(res.Namespaces, ns)
	}
	sort.Strings(res.Namespaces)
	return res
}

func (d *Discoverer) all(out []*Discoverer) []*Discoverer {
	out = append(out, d)
	for _, m := range d.merged {
		out = m.all(out)
	}
	return out
}

// sortedAggs is aggs in key order (folding in a fixed order keeps the
// result independent of map iteration, e.g. the kind of the first).
func sortedAggs(aggs map[aggKey]*agg) []*agg {
	out := make([]*agg, 0, len(aggs))
	for _, a := range aggs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].cons != out[j].cons {
			return out[i].cons < out[j].cons
		}
		return out[i].prov < out[j].prov
	})
	return out
}

func (a *agg) rule(scope string, clusters map[string]*Cluster) Rule {
	r := Rule{Kind: a.kind, Flows: a.flows, Conns: a.conns, Bytes: a.bytes, FirstSeen: a.first, LastSeen: a.last}
	if r.Kind == "service" && a.nodePort {
		r.Kind = "nodeport"
	}
	r.Consumer, r.Provider = a.cons, a.prov
	if c := clusters[a.cons]; c != nil {
		r.ConsumerCluster = c.Name
	}
	if c := clusters[a.prov]; c != nil {
		r.ProviderCluster = c.Name
	}
	r.Scope, r.Action, r.Class = scope, policy.Allow, policy.Default
	r.Ports = uniq(a.ports)
	r.NodeIPs = uniq(a.nodeIPs)
	if a.svc != nil {
		r.Backend = &Backend{Namespace: a.svc.Namespace, Selector: a.svc.Selector, Ports: uniq(a.backend)}
	}
	for _, s := range a.samples {
		r.Samples = append(r.Samples, s.id)
	}
	return r
}

// uniq sorts xs and drops repeats (nil when empty).
func uniq(xs []string) []string {
	if len(xs) == 0 {
		return nil
	}
	out := append([]string(nil), xs...)
	slices.Sort(out)
	return slices.Compact(out)
}

func sortedSet(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// uniqueNames keeps each cluster name for one cluster: a name two kinds of
// cluster share (a Deployment and a bare pod both "web") stays with the
// stronger (pinned, owner, label, similarity, pod, ...) and the others get
// their kind appended.
func uniqueNames(clusters map[string]*Cluster) {
	rank := map[string]int{"pinned": 0, "owner": 1, "label": 2, "similarity": 3, "pod": 4, "workload": 5, "nodes": 6, "external": 7}
	cs := make([]*Cluster, 0, len(clusters))
	for _, c := range clusters {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if rank[a.By] != rank[b.By] {
			return rank[a.By] < rank[b.By]
		}
		return a.Filter < b.Filter
	})
	taken := map[string]bool{}
	for _, c := range cs {
		if !taken[c.Name] {
			taken[c.Name] = true
			continue
		}
		base := c.Name + "-" + c.By
		name := base
		for n := 2; taken[name]; n++ {
			name = fmt.Sprintf("%s-%d", base, n)
		}
		c.Name = name
		taken[name] = true
	}
}
