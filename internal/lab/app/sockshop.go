// Package app describes the applications the lab can run (today: the
// sock-shop microservices of the product's reference material) as plain data
// — deployments, services and the call graph the traffic generator drives —
// and serves their TCP/HTTP endpoints from inside pod namespaces.
package app

import "fmt"

// Component is one microservice: a Deployment and, optionally, its Service.
type Component struct {
	Name  string // deployment name and `app` label
	Image string
	Port  int32 // container port the pod serves
	// Service: "" (none), "ClusterIP", "NodePort" or "Headless".
	Service     string
	ServicePort int32 // port on the ClusterIP; targetPort is Port
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
	Name       string
	Namespace  string
	Components []Component
	Edges      []Edge
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
	}
	return App{}, fmt.Errorf("unknown app %q (known: sockshop)", name)
}
