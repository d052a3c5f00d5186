package policy

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// valueNode builds string nodes directly; the encoder must write them as
// Node.Encode's round trip did: quoted where a plain scalar would read as
// another type or is not allowed, literal blocks for several lines.
func TestValueNodeWritesAsEncode(t *testing.T) {
	for _, s := range []string{"", "80", "0x1F", "1e3", "true", "no", "Yes", "off", "y", "N", "null", "~", "any", "tcp/80", "a: b", "- x", "#c", " lead", "trail ",
		`cluster = "lab" and namespace = "shop"`, "it's", "multi\nline", "multi\nline\n", "service:shop/carts", "cidr:10.0.0.0/8", "ALLOW", "é", "@x", "`x", "*x", "&x", "!x", "%x", "{x}", "[x]", "x,y"} {
		var old yaml.Node
		if err := old.Encode(s); err != nil {
			t.Fatal(err)
		}
		n, err := valueNode(s)
		if err != nil {
			t.Fatal(err)
		}
		a, err := yaml.Marshal(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "k"}, &old}})
		if err != nil {
			t.Fatal(err)
		}
		b, err := yaml.Marshal(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: "k"}, n}})
		if err != nil {
			t.Fatal(err)
		}
		if string(a) != string(b) {
			t.Errorf("%q: direct node writes %q, Encode's %q", s, b, a)
		}
		var back map[string]string
		if err := yaml.Unmarshal(b, &back); err != nil || back["k"] != s {
			t.Errorf("%q: written %q reads back as %q (%v)", s, b, back["k"], err)
		}
	}
	// A document's own node (the ports' inline list) is used as is.
	d := PolicyDoc(Policy{Scope: "s", Consumer: "any", Provider: "any", Action: Allow, Ports: []string{"tcp/80", "udp/53"}}, "")
	b, err := yaml.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	want := "kind: Policy\nscope: s\nconsumer: any\nprovider: any\naction: ALLOW\nports: [\"tcp/80\", \"udp/53\"]\nclass: default\n"
	if string(b) != want {
		t.Errorf("policy document:\n%s\nwant:\n%s", b, want)
	}
}
