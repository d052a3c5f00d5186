// Package app describes the applications the lab can run (the sock-shop
// microservices of the product's reference material, and the pods of
// Kubernetes' NetworkPolicy conformance tests) as plain data — namespaces,
// deployments, services and the call graph the traffic generator drives —
// and serves their TCP (HTTP) and UDP endpoints from inside pod namespaces.
package app

import (
	"fmt"
	"strings"
)

// Component is one microservice: a Deployment and, optionally, its Service.
type Component struct {
	Name      string // deployment name (and `app` label unless Labels is set)
	Namespace string // "" is the app's Namespace
	Image     string
	// Port is the one TCP container port the pod serves, with a TCP
	// readiness probe on it. Ignored when Containers is set.
	Port int32
	// Containers, when set, are the pod's containers, each with its own
	// named ports (the upstream NetworkPolicy test pods: cont-80-tcp
	// serving serve-80-tcp, ...). No readiness probes.
	Containers []Container
	// Labels are the pod labels (and the Deployment's selector); default
	// app=NAME, name=NAME.
	Labels map[string]string
	// Service: "" (none), "ClusterIP", "NodePort" or "Headless".
	Service     string
	ServicePort int32 // port on the ClusterIP; targetPort is Port
}

// Container is one container of a Component with named ports.
type Container struct {
	Name  string
	Ports []ContainerPort
}

// ContainerPort is a named port a container serves.
type ContainerPort struct {
	Name     string // e.g. serve-80-tcp: named-port policies refer to it
	Port     int32
	Protocol string // TCP or UDP
}

// Namespace is a namespace an app creates, with its labels.
type Namespace struct {
	Name   string
	Labels map[string]string
}

// Via says how an edge of the call graph reaches its target.
type Via string

// Ways a call reaches its target.
const (
	ViaNodePort  Via = "nodePort"  // external host → a node IP : the service's nodePort
	ViaClusterIP Via = "clusterIP" // pod → service ClusterIP : service port
	ViaPodIP     Via = "podIP"     // pod → a target pod's IP : container port, no service
	ViaExternal  Via = "external"  // pod → external host IP : Port
)

// Edge is one arrow of the call graph. From/To name components; "external"
// names the external host.
type Edge struct {
	From, To string
	Via      Via
	Port     int32 // only for ViaExternal; otherwise taken from the component
}

// String names the edge the way traffic reports and flow tests do.
func (e Edge) String() string { return fmt.Sprintf("%s->%s", e.From, e.To) }

// External is the name of the external host in edges.
const External = "external"

// ExternalPorts are the TCP ports the external host serves.
var ExternalPorts = []int32{80, 666}

// App is a named set of components and the traffic between them.
type App struct {
	Name string
	// Namespace holds the components that name none.
	Namespace string
	// Namespaces the app creates, with their labels; default Namespace
	// alone, unlabelled.
	Namespaces []Namespace
	Components []Component
	Edges      []Edge
	// Spread pins component i to lab node (i mod N)+1 with a nodeSelector
	// on kubernetes.io/hostname, so that with N ≤ len(Components) every
	// node holds a pod and every pair of nodes is crossed.
	Spread bool
}

// AllNamespaces returns the namespaces the app creates.
func (a App) AllNamespaces() []Namespace {
	if len(a.Namespaces) > 0 {
		return a.Namespaces
	}
	return []Namespace{{Name: a.Namespace}}
}

// NamespaceOf returns the namespace component c runs in.
func (a App) NamespaceOf(c Component) string {
	if c.Namespace != "" {
		return c.Namespace
	}
	return a.Namespace
}

// PodLabels returns the labels of c's pods.
func (c Component) PodLabels() map[string]string {
	if len(c.Labels) > 0 {
		return c.Labels
	}
	return map[string]string{"app": c.Name, "name": c.Name}
}

// Component returns the component with the given name.
func (a App) Component(name string) (Component, bool) {
	for _, c := range a.Components {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

// SockShop is the sock-shop application: front-end behind a NodePort on pod
// port 8079, the other services on ClusterIP :80, user-db on 27017 reached by
// pod IP, and payment calling an external host on TCP 666.
func SockShop() App {
	c := func(name, image string, port int32, svc string, svcPort int32) Component {
		return Component{Name: name, Image: "docker.io/weaveworksdemos/" + image, Port: port, Service: svc, ServicePort: svcPort}
	}
	return App{
		Name:      "sockshop",
		Namespace: "sock-shop",
		Components: []Component{
			c("front-end", "front-end:0.3.12", 8079, "NodePort", 80),
			c("carts", "carts:0.4.8", 80, "ClusterIP", 80),
			c("catalogue", "catalogue:0.3.5", 80, "ClusterIP", 80),
			c("orders", "orders:0.4.7", 80, "ClusterIP", 80),
			c("payment", "payment:0.4.3", 80, "ClusterIP", 80),
			c("shipping", "shipping:0.4.8", 80, "ClusterIP", 80),
			c("user", "user:0.4.7", 80, "ClusterIP", 80),
			c("user-db", "user-db:0.3.0", 27017, "Headless", 27017),
		},
		Edges: []Edge{
			{From: External, To: "front-end", Via: ViaNodePort},
			{From: "front-end", To: "carts", Via: ViaClusterIP},
			{From: "front-end", To: "catalogue", Via: ViaClusterIP},
			{From: "front-end", To: "orders", Via: ViaClusterIP},
			{From: "front-end", To: "user", Via: ViaClusterIP},
			{From: "orders", To: "payment", Via: ViaClusterIP},
			{From: "orders", To: "shipping", Via: ViaClusterIP},
			{From: "user", To: "user-db", Via: ViaPodIP},
			{From: "payment", To: External, Via: ViaExternal, Port: 666},
		},
	}
}

// ByName returns the named application.
func ByName(name string) (App, error) {
	switch name {
	case "sockshop", "sock-shop":
		return SockShop(), nil
	case "netpol":
		return NetPol(), nil
	}
	return App{}, fmt.Errorf("unknown app %q (known: sockshop, netpol)", name)
}

// Parse turns a comma-separated list of app names ("sockshop,netpol") into
// apps; "" is none. An app named twice, or two apps sharing a namespace, is
// an error.
func Parse(list string) ([]App, error) {
	var apps []App
	seen := map[string]string{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		a, err := ByName(name)
		if err != nil {
			return nil, err
		}
		for _, ns := range a.AllNamespaces() {
			if other, dup := seen[ns.Name]; dup {
				return nil, fmt.Errorf("apps %s and %s both use namespace %s", other, a.Name, ns.Name)
			}
			seen[ns.Name] = a.Name
		}
		apps = append(apps, a)
	}
	return apps, nil
}
