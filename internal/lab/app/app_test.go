package app

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		list  string
		names []string
		err   string
	}{
		{"", nil, ""},
		{"sockshop", []string{"sockshop"}, ""},
		{"sockshop,netpol", []string{"sockshop", "netpol"}, ""},
		{" netpol , sock-shop ", []string{"netpol", "sockshop"}, ""},
		{"netpol,netpol", nil, "both use namespace x"},
		{"sockshop,nope", nil, `unknown app "nope"`},
	} {
		t.Run(c.list, func(t *testing.T) {
			apps, err := Parse(c.list)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("Parse(%q) error %v, want %q", c.list, err, c.err)
				}
				return
			}
			if err != nil || len(apps) != len(c.names) {
				t.Fatalf("Parse(%q) = %v, %v", c.list, apps, err)
			}
			for i, a := range apps {
				if a.Name != c.names[i] {
					t.Errorf("app %d: %s, want %s", i, a.Name, c.names[i])
				}
			}
		})
	}
}

// TestNetPolModel: the model's shape is upstream's.
func TestNetPolModel(t *testing.T) {
	a := NetPol()
	if len(a.AllNamespaces()) != 3 || len(a.Components) != 9 || !a.Spread {
		t.Fatalf("model: %d namespaces, %d components", len(a.AllNamespaces()), len(a.Components))
	}
	for _, ns := range a.AllNamespaces() {
		if ns.Labels["ns"] != ns.Name || ns.Labels["kubernetes.io/metadata.name"] != ns.Name {
			t.Errorf("namespace %s labels %v", ns.Name, ns.Labels)
		}
	}
	c := a.Components[4] // y/b
	if a.NamespaceOf(c) != "y" || c.PodLabels()["pod"] != "b" || len(c.Containers) != 4 {
		t.Fatalf("component %+v", c)
	}
	var names []string
	for _, ct := range c.Containers {
		for _, p := range ct.Ports {
			names = append(names, ct.Name+"/"+p.Name+"/"+p.Protocol)
		}
	}
	if got := strings.Join(names, " "); got != "cont-80-tcp/serve-80-tcp/TCP cont-80-udp/serve-80-udp/UDP cont-81-tcp/serve-81-tcp/TCP cont-81-udp/serve-81-udp/UDP" {
		t.Errorf("containers %s", got)
	}
}
