package proxy

import (
	"strings"
	"testing"
)

func TestRules(t *testing.T) {
	ports := []ServicePort{
		{Namespace: "ns", Name: "web", PortName: "http", ClusterIP: "10.96.0.10", Port: 80, NodePort: 30080, Protocol: "TCP",
			Endpoints: []Endpoint{{IP: "10.244.1.3", Port: 8080}, {IP: "10.244.2.2", Port: 8080}}},
		{Namespace: "ns", Name: "none", PortName: "", ClusterIP: "10.96.0.11", Port: 81, Protocol: "TCP"},
		{Namespace: "ns", Name: "headless", ClusterIP: "None", Port: 82},
	}
	in, chains := Rules(Node{ClusterCIDR: "10.244.0.0/16"}, ports, map[string]bool{"PAL-SVC-GONE": true})
	for _, want := range []string{
		"-A PAL-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80",
		"-m statistic --mode random --probability 0.50000000000",
		"-j DNAT --to-destination 10.244.1.3:8080",
		"-j DNAT --to-destination 10.244.2.2:8080",
		"-A PAL-NODEPORTS -p tcp -m tcp --dport 30080",
		"-A PAL-FILTER -d 10.96.0.11/32 -p tcp -m tcp --dport 81",
		":PAL-SVC-GONE - [0:0]\n",
		"-X PAL-SVC-GONE\n",
	} {
		if !strings.Contains(in, want) {
			t.Errorf("rules lack %q:\n%s", want, in)
		}
	}
	if strings.Contains(in, "10.96.0.12") || strings.Contains(in, "dport 82") {
		t.Errorf("headless service programmed:\n%s", in)
	}
	if len(chains) != 3 { // one SVC, two SEP
		t.Errorf("chains: %v", chains)
	}
	if ports[0].Name != "web" {
		t.Error("Rules reordered the caller's slice")
	}
}
