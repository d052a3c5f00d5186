package discovery

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/palisade-dev/palisade/internal/policy"
)

// Version is the discovered rules as a version of the scope (its name and
// number left for the repository to give).
func (r *Result) Version() *policy.Version {
	v := &policy.Version{Scope: r.Scope, Source: "discovery " + r.From.UTC().Format(time.RFC3339) + " – " + r.To.UTC().Format(time.RFC3339)}
	for _, rule := range r.Rules {
		v.Policies = append(v.Policies, rule.Policy)
	}
	return v
}

// DiffAgainst fills r.Diff with the edges new since v and those v allows
// that the window did not show.
func (r *Result) DiffAgainst(v *policy.Version) {
	d := &Diff{Version: v.Name, New: []string{}, NotSeen: []string{}}
	seen := map[string]bool{}
	for i := range r.Rules {
		seen[r.Rules[i].Key()] = true
	}
	have := map[string]bool{}
	for i := range v.Policies {
		p := &v.Policies[i]
		have[p.Key()] = true
		if p.Action == policy.Allow && !seen[p.Key()] {
			d.NotSeen = append(d.NotSeen, p.Key())
		}
	}
	for i := range r.Rules {
		if k := r.Rules[i].Key(); !have[k] {
			d.New = append(d.New, k)
		}
	}
	sort.Strings(d.New)
	sort.Strings(d.NotSeen)
	r.Diff = d
}

// WriteYAML writes the result in the policy-as-code format, applicable
// with `palisade apply`: one InventoryFilter per cluster (applying them
// pins the clusters for later runs) and one Policy per rule, each with its
// evidence as a comment.
func (r *Result) WriteYAML(w io.Writer) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Discovered policy of scope %s from %d flows between %s and %s.\n",
		r.Scope, r.Stats.Used, r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339))
	fmt.Fprintf(&buf, "# Flows read %d; left out: %d not answered, %d NAT/tunnel copies, %d excluded, %d outside the scope, %d ephemeral ports, %d allowed by a parent's absolute policy.\n",
		r.Stats.Read, r.Stats.NotReplied, r.Stats.Translated, r.Stats.Excluded, r.Stats.OutOfScope, r.Stats.Ephemeral, r.Stats.Covered)
	if r.Diff != nil {
		fmt.Fprintf(&buf, "# Against %s: %d new edge(s), %d allowed edge(s) not seen.\n", r.Diff.Version, len(r.Diff.New), len(r.Diff.NotSeen))
		for _, e := range r.Diff.New {
			fmt.Fprintf(&buf, "#   new:      %s\n", e)
		}
		for _, e := range r.Diff.NotSeen {
			fmt.Fprintf(&buf, "#   not seen: %s\n", e)
		}
	}
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, c := range r.Clusters {
		if c.By == "pinned" {
			continue // already saved
		}
		desc := "discovered cluster (" + c.By + ")"
		if c.Why != "" {
			desc += ": " + c.Why
		}
		n, err := docNode(policy.FilterDoc(policy.NamedFilter{Name: c.Name, Filter: c.Filter, Description: desc}))
		if err != nil {
			return err
		}
		n.HeadComment = fmt.Sprintf("cluster %s: %d workload(s) seen", c.Name, len(c.Members))
		if err := enc.Encode(n); err != nil {
			return err
		}
	}
	for _, rule := range r.Rules {
		n, err := docNode(policy.PolicyDoc(rule.Policy, ""))
		if err != nil {
			return err
		}
		n.HeadComment = rule.explain()
		if err := enc.Encode(n); err != nil {
			return err
		}
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// docNode is a policy document as a YAML node, to carry a comment: the
// node the document marshals to when it makes one (the policy package's
// documents do), else the document encoded and parsed back (slower: a
// YAML round trip per document).
func docNode(doc any) (*yaml.Node, error) {
	if m, ok := doc.(yaml.Marshaler); ok {
		v, err := m.MarshalYAML()
		if err != nil {
			return nil, err
		}
		if n, ok := v.(*yaml.Node); ok {
			return n, nil
		}
		doc = v
	}
	var n yaml.Node
	if err := n.Encode(doc); err != nil {
		return nil, err
	}
	return &n, nil
}

func (r *Rule) explain() string {
	from, to := r.ConsumerCluster, r.ProviderCluster
	if from == "" {
		from = r.Consumer
	}
	if to == "" {
		to = r.Provider
	}
	return fmt.Sprintf("%s → %s (%s): %d flows, %d connections, %d bytes, first %s, last %s\nsamples: %v",
		from, to, r.Kind, r.Flows, r.Conns, r.Bytes,
		r.FirstSeen.UTC().Format(time.RFC3339), r.LastSeen.UTC().Format(time.RFC3339), r.Samples)
}
