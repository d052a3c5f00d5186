package kubesecrets

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/palisade-dev/palisade/internal/vuln"
)

var _ vuln.SecretGetter = Getter{}

func TestGetter(t *testing.T) {
	cs := fake.NewClientset(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "lab", Name: "regcred"}, Type: corev1.SecretTypeDockerConfigJson,
			Data: map[string][]byte{".dockerconfigjson": []byte(`{"auths":{"reg.example:5000":{"auth":"dTpw"}}}`)}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "lab", Name: "builder"},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "regcred"}}},
	)
	g := Getter{Client: cs}
	names, err := g.ServiceAccountPullSecrets(t.Context(), "lab", "builder")
	if err != nil || len(names) != 1 || names[0] != "regcred" {
		t.Fatalf("pull secrets = %v, %v", names, err)
	}
	data, err := g.SecretData(t.Context(), "lab", names[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := vuln.DockerConfigAuth(data, "reg.example:5000"); !ok || err != nil {
		t.Errorf("DockerConfigAuth: %v, %v", ok, err)
	}
}
