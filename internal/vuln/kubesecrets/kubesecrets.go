// Package kubesecrets adapts a client-go clientset to vuln.SecretGetter, so
// the scanner can use pods' imagePullSecrets and their service accounts'.
// The scanner's RBAC needs get on secrets and serviceaccounts.
package kubesecrets

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Getter implements vuln.SecretGetter with the Kubernetes API.
type Getter struct {
	Client kubernetes.Interface
}

// SecretData returns the data of Secret namespace/name.
func (g Getter) SecretData(ctx context.Context, namespace, name string) (map[string][]byte, error) {
	s, err := g.Client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	return s.Data, nil
}

// ServiceAccountPullSecrets returns the imagePullSecrets of a service account.
func (g Getter) ServiceAccountPullSecrets(ctx context.Context, namespace, name string) ([]string, error) {
	sa, err := g.Client.CoreV1().ServiceAccounts(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(sa.ImagePullSecrets))
	for _, r := range sa.ImagePullSecrets {
		out = append(out, r.Name)
	}
	return out, nil
}
