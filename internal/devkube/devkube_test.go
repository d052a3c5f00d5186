package devkube

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestStartServesRealAPI starts the control plane and checks the API server
// stores objects and the controller-manager acts on them.
func TestStartServesRealAPI(t *testing.T) {
	c, stop, err := StartForTests()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	cs := kubernetes.NewForConfigOrDie(c.Config)
	ctx := context.Background()
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != KubernetesVersion {
		t.Errorf("server version %s, want %s", v.GitVersion, KubernetesVersion)
	}
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.Ports[0].NodePort == 0 {
		t.Errorf("service not allocated a clusterIP/nodePort: %+v", svc.Spec)
	}
	if r, ok := Running(c.Dir); !ok || r.URL != c.URL {
		t.Errorf("Running(%s) = %v, %v", c.Dir, r, ok)
	}
}
