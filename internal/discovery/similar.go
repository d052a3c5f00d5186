package discovery

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// similar groups bare pods (clusters By "pod": no owner, no app label, no
// pin) by communication similarity, and returns for each bare pod's
// cluster filter in a group of two or more the group's cluster.
//
// Pods are similar when, in the same Kubernetes cluster and namespace,
// they have the same peers on the same ports, in both directions (what
// they call, and what calls them). Peers that are bare pods themselves
// count by their group, so the grouping is a partition refinement: all
// bare pods of a namespace start in one group, and a group splits while
// its pods differ in (direction, peer or peer's group, ports); it ends when
// no group splits (the coarsest stable grouping). Two client replicas each
// talking to its own server replica thus give one client group → one
// server group. Only the set of edges counts (not their order, counts or
// times), so the grouping is the same whatever order flows came in, and
// the same edges give the same groups in every run.
func similar(clusters map[string]*Cluster, aggs map[aggKey]*agg) map[string]*Cluster {
	var bare []string
	for f, c := range clusters {
		if c.By == "pod" {
			bare = append(bare, f)
		}
	}
	if len(bare) < 2 {
		return nil
	}
	sort.Strings(bare)
	isBare := map[string]bool{}
	for _, f := range bare {
		isBare[f] = true
	}
	// Each bare pod's edges: direction, peer, ports.
	type link struct{ dir, peer, ports string }
	links := map[string][]link{}
	for _, a := range sortedAggs(aggs) {
		ports := strings.Join(uniq(a.ports), ",")
		if isBare[a.cons] {
			links[a.cons] = append(links[a.cons], link{"→", a.prov, ports})
		}
		if isBare[a.prov] {
			links[a.prov] = append(links[a.prov], link{"←", a.cons, ports})
		}
	}
	// group: the smallest member filter of each pod's group.
	group := map[string]string{}
	first := map[string]string{}
	for _, f := range bare {
		c := clusters[f]
		k := c.cluster + "\x00" + c.Namespace
		if first[k] == "" {
			first[k] = f
		}
		group[f] = first[k]
	}
	signature := func(f string) string {
		seen := map[string]bool{}
		for _, l := range links[f] {
			peer := l.peer
			if isBare[peer] {
				peer = "group " + group[peer]
			}
			seen[l.dir+" "+peer+" "+l.ports] = true
		}
		return group[f] + "\x00" + strings.Join(sortedSet(seen), "\x00")
	}
	groups := countGroups(group)
	for {
		next := map[string]string{}
		first := map[string]string{}
		for _, f := range bare { // sorted: the first is the smallest
			s := signature(f)
			if first[s] == "" {
				first[s] = f
			}
			next[f] = first[s]
		}
		group = next
		n := countGroups(group)
		if n == groups {
			break
		}
		groups = n
	}
	members := map[string][]string{}
	for _, f := range bare {
		members[group[f]] = append(members[group[f]], f)
	}
	out := map[string]*Cluster{}
	for rep, fs := range members {
		if len(fs) < 2 {
			continue
		}
		c0 := clusters[rep]
		var names []string
		for _, f := range fs {
			names = append(names, clusters[f].podName)
		}
		sort.Strings(names)
		quoted := make([]string, len(names))
		for i, n := range names {
			quoted[i] = strconv.Quote(n)
		}
		g := &Cluster{Name: c0.Namespace + "." + groupName(names), By: "similarity",
			Filter: podBase(c0.cluster, c0.Namespace) + " and name in (" + strings.Join(quoted, ", ") + ")"}
		for _, f := range fs {
			g.absorb(clusters[f])
			out[f] = g
		}
	}
	// Why, in the groups' own terms: the representative's edges with
	// grouped peers named by their group.
	for rep, fs := range members {
		if len(fs) < 2 {
			continue
		}
		g := out[rep]
		seen := map[string]bool{}
		for _, l := range links[rep] {
			peer := l.peer
			if c := clusters[peer]; c != nil {
				peer = c.Name
			}
			if o := out[l.peer]; o != nil {
				peer = o.Name
			}
			seen[l.dir+" "+peer+" "+l.ports] = true
		}
		why := sortedSet(seen)
		more := ""
		if len(why) > 6 {
			more = fmt.Sprintf("; and %d more", len(why)-6)
			why = why[:6]
		}
		g.Why = fmt.Sprintf("%d pods without an owner or app label with the same peers and ports: %s%s", len(fs), strings.Join(why, "; "), more)
	}
	return out
}

func countGroups(group map[string]string) int {
	n := 0
	for f, g := range group {
		if f == g {
			n++
		}
	}
	return n
}

// groupName is the pods' common name prefix up to a separator ("worker-1",
// "worker-2" → "worker"), or the first name and the count.
func groupName(names []string) string {
	p := names[0]
	for _, n := range names[1:] {
		for !strings.HasPrefix(n, p) {
			p = p[:len(p)-1]
		}
	}
	if p != names[0] || len(names) > 1 {
		if i := strings.LastIndexAny(p, "-_."); i >= 0 && i < len(p)-1 {
			p = p[:i]
		}
		p = strings.TrimRight(p, "-_.")
	}
	if len(p) < 2 {
		return fmt.Sprintf("%s-and-%d-similar", names[0], len(names)-1)
	}
	return p
}
