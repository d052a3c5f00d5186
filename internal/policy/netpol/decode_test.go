package netpol

import (
	"strings"
	"testing"
)

const header = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: p
  namespace: x
`

// Every refused file names file:line:column and the field at fault.
func TestDecodeAndValidateErrors(t *testing.T) {
	for _, c := range []struct {
		name, src, want string
	}{
		{"invalid YAML", header + "spec:\n  podSelector: {\n", "np.yaml:7:1: invalid YAML"},
		{"unknown field", header + "spec:\n  podSelector: {}\n  ingres: []\n", "np.yaml:8:3: spec.ingres: unknown field"},
		{"unknown nested field", header + "spec:\n  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {}\n      namespace: y\n", "np.yaml:11:7: spec.ingress[0].from[0].namespace: unknown field"},
		{"duplicate key", header + "spec:\n  podSelector: {}\n  podSelector: {}\n", "np.yaml:8:3: spec.podSelector: duplicate key"},
		{"wrong type", header + "spec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - endPort: eighty\n      port: 80\n", "np.yaml:10:16: spec.ingress[0].ports[0].endPort: expected an integer"},
		{"label value not a string", header + "spec:\n  podSelector:\n    matchLabels:\n      version: 2\n", "np.yaml:9:16: spec.podSelector.matchLabels.version: expected a string, got the number 2 (quote it)"},
		{"endPort without port", header + "spec:\n  podSelector: {}\n  egress:\n  - ports:\n    - protocol: TCP\n      endPort: 90\n", "np.yaml:11:16: spec.egress[0].ports[0].endPort: may not be set without port"},
		{"endPort below port", header + "spec:\n  podSelector: {}\n  egress:\n  - ports:\n    - port: 90\n      endPort: 80\n", "np.yaml:11:16: spec.egress[0].ports[0].endPort: 80 is below port 90"},
		{"endPort with a named port", header + "spec:\n  podSelector: {}\n  egress:\n  - ports:\n    - port: http\n      endPort: 80\n", "spec.egress[0].ports[0].endPort: may not be set with a named port"},
		{"bad port name", header + "spec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: Serve_80\n", "np.yaml:10:13: spec.ingress[0].ports[0].port: \"Serve_80\""},
		{"bad protocol", header + "spec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - protocol: ICMP\n", "np.yaml:10:17: spec.ingress[0].ports[0].protocol: \"ICMP\": must be TCP, UDP or SCTP"},
		{"except outside cidr", header + "spec:\n  podSelector: {}\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/8\n        except: [192.168.0.0/16]\n", "np.yaml:12:18: spec.egress[0].to[0].ipBlock.except[0]: 192.168.0.0/16 must be strictly within 10.0.0.0/8"},
		{"bad cidr", header + "spec:\n  podSelector: {}\n  egress:\n  - to:\n    - ipBlock:\n        cidr: 10.0.0.0/33\n", "np.yaml:11:15: spec.egress[0].to[0].ipBlock.cidr: \"10.0.0.0/33\" is not a CIDR"},
		{"ipBlock with a selector", header + "spec:\n  podSelector: {}\n  egress:\n  - to:\n    - ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}\n", "np.yaml:10:16: spec.egress[0].to[0].ipBlock: may not be combined"},
		{"empty peer", header + "spec:\n  podSelector: {}\n  egress:\n  - to:\n    - {}\n", "np.yaml:10:7: spec.egress[0].to[0]: must specify podSelector, namespaceSelector or ipBlock"},
		{"bad operator", header + "spec:\n  podSelector:\n    matchExpressions:\n    - {key: app, operator: Equals, values: [a]}\n", "np.yaml:9:28: spec.podSelector.matchExpressions[0].operator: \"Equals\""},
		{"In without values", header + "spec:\n  podSelector:\n    matchExpressions:\n    - key: app\n      operator: In\n", "np.yaml:9:7: spec.podSelector.matchExpressions[0].values: operator In needs values"},
		{"bad policy type", header + "spec:\n  podSelector: {}\n  policyTypes: [Ingress, Outgress]\n", "np.yaml:8:26: spec.policyTypes[1]: \"Outgress\": must be Ingress or Egress"},
		{"wrong apiVersion", "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\n", "np.yaml:1:13: apiVersion: NetworkPolicy must be networking.k8s.io/v1"},
		{"no kind", "apiVersion: v1\nmetadata: {name: a}\n", "np.yaml:1:1: kind: missing"},
		{"no name", "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nspec: {podSelector: {}}\n", "np.yaml:1:1: metadata.name: missing"},
		{"second document", header + "spec: {podSelector: {}}\n---\n" + header + "spec:\n  podSelector: {}\n  bogus: 1\n", "np.yaml:15:3: spec.bogus: unknown field"},
		{"list item", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: networking.k8s.io/v1\n  kind: NetworkPolicy\n  metadata: {name: a}\n  spec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}\n", "np.yaml:7:53: spec.ingress[0].ports[0].port: 0: must be between 1 and 65535"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srcs, _, err := Decode("np.yaml", []byte(c.src), "")
			if err == nil {
				for _, s := range srcs {
					if err = Validate(s); err != nil {
						break
					}
				}
			}
			if err == nil {
				t.Fatalf("accepted; want an error containing %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, c.want)
			}
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is a %T, want *netpol.Error", err)
			}
		})
	}
}

func TestDecodeSkipsOtherKindsAndDefaultsNamespace(t *testing.T) {
	src := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec: {}
---
# a comment-only document follows
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
`
	srcs, skipped, err := Decode("mixed.yaml", []byte(src), "shop")
	if err != nil {
		t.Fatal(err)
	}
	if len(skipped) != 1 || skipped[0].Kind != "Deployment" || skipped[0].Name != "web" || skipped[0].Pos.Line != 1 {
		t.Fatalf("skipped = %+v", skipped)
	}
	if len(srcs) != 1 || srcs[0].Policy.Namespace != "shop" || srcs[0].Pos.Line != 8 {
		t.Fatalf("policies = %+v", srcs)
	}
	if err := Validate(srcs[0]); err != nil {
		t.Fatal(err)
	}
}
