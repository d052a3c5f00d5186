package app

import (
	"fmt"
	"strings"
)

// NetPol namespaces, pods, ports and protocols: the model of Kubernetes'
// NetworkPolicy conformance tests (test/e2e/network/netpol) and of the
// cyclonus generator.
var (
	NetPolNamespaces = []string{"x", "y", "z"}
	NetPolPods       = []string{"a", "b", "c"}
	NetPolPorts      = []int32{80, 81}
	NetPolProtocols  = []string{"TCP", "UDP"}
)

// NetPol is the upstream NetworkPolicy test model: namespaces x, y and z
// (labelled ns=NAME and kubernetes.io/metadata.name=NAME), each with
// Deployments a, b and c whose pods are labelled pod=NAME and serve TCP and
// UDP on 80 and 81 from one container per port and protocol (cont-80-tcp
// serving the port named serve-80-tcp, ...). TCP answers HTTP, UDP answers
// each datagram with a datagram. No Services and no call graph: the lab's
// reachability matrix (lab.Reach) probes it. Pods are spread over the lab's
// nodes round robin (x/a on node1, x/b on node2, ...).
func NetPol() App {
	a := App{Name: "netpol", Namespace: NetPolNamespaces[0], Spread: true}
	for _, ns := range NetPolNamespaces {
		a.Namespaces = append(a.Namespaces, Namespace{Name: ns, Labels: map[string]string{
			"ns": ns, "kubernetes.io/metadata.name": ns,
		}})
		for _, pod := range NetPolPods {
			c := Component{Name: pod, Namespace: ns, Image: "registry.k8s.io/e2e-test-images/agnhost:2.53",
				Labels: map[string]string{"pod": pod}}
			for _, port := range NetPolPorts {
				for _, proto := range NetPolProtocols {
					name := fmt.Sprintf("%d-%s", port, strings.ToLower(proto))
					c.Containers = append(c.Containers, Container{Name: "cont-" + name,
						Ports: []ContainerPort{{Name: "serve-" + name, Port: port, Protocol: proto}}})
				}
			}
			a.Components = append(a.Components, c)
		}
	}
	return a
}
