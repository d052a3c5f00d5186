package vuln

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// SecretGetter reads what the scanner needs from the Kubernetes API to use
// pods' registry credentials. A client-go adapter is a few lines:
//
//	func (a adapter) SecretData(ctx context.Context, ns, name string) (map[string][]byte, error) {
//		s, err := a.cs.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
//		if err != nil { return nil, err }
//		return s.Data, nil
//	}
//	func (a adapter) ServiceAccountPullSecrets(ctx context.Context, ns, name string) ([]string, error) {
//		sa, err := a.cs.CoreV1().ServiceAccounts(ns).Get(ctx, name, metav1.GetOptions{})
//		if err != nil { return nil, err }
//		var out []string
//		for _, r := range sa.ImagePullSecrets { out = append(out, r.Name) }
//		return out, nil
//	}
type SecretGetter interface {
	// SecretData returns the data of Secret namespace/name.
	SecretData(ctx context.Context, namespace, name string) (map[string][]byte, error)
	// ServiceAccountPullSecrets returns the imagePullSecrets names of a
	// service account.
	ServiceAccountPullSecrets(ctx context.Context, namespace, name string) ([]string, error)
}

// DockerConfigAuth finds the credentials for registry in the data of a
// kubernetes.io/dockerconfigjson (".dockerconfigjson") or legacy
// kubernetes.io/dockercfg (".dockercfg") Secret.
func DockerConfigAuth(data map[string][]byte, registry string) (authn.Authenticator, bool, error) {
	var entries map[string]dockerAuth
	if raw, ok := data[".dockerconfigjson"]; ok {
		var cfg struct {
			Auths map[string]dockerAuth `json:"auths"`
		}
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return nil, false, fmt.Errorf(".dockerconfigjson: %w", err)
		}
		entries = cfg.Auths
	} else if raw, ok := data[".dockercfg"]; ok {
		if err := json.Unmarshal(raw, &entries); err != nil {
			return nil, false, fmt.Errorf(".dockercfg: %w", err)
		}
	} else {
		return nil, false, nil
	}
	want := normalizeRegistry(registry)
	for key, a := range entries {
		if normalizeRegistry(key) != want {
			continue
		}
		user, pass := a.Username, a.Password
		if a.Auth != "" {
			dec, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, false, fmt.Errorf("auth for %s: %w", key, err)
			}
			u, p, ok := strings.Cut(string(dec), ":")
			if !ok {
				return nil, false, fmt.Errorf("auth for %s is not user:password", key)
			}
			user, pass = u, p
		}
		if a.IdentityToken != "" {
			return authn.FromConfig(authn.AuthConfig{Username: user, IdentityToken: a.IdentityToken}), true, nil
		}
		return authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}), true, nil
	}
	return nil, false, nil
}

type dockerAuth struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
}

// normalizeRegistry turns docker config keys and image reference hosts into
// one form: no scheme, no path, Docker Hub's aliases folded together.
func normalizeRegistry(s string) string {
	s = strings.TrimSpace(strings.ToLower(s))
	s = strings.TrimPrefix(s, "https://")
	s = strings.TrimPrefix(s, "http://")
	s, _, _ = strings.Cut(s, "/")
	switch s {
	case "docker.io", "registry-1.docker.io", "index.docker.io":
		return "index.docker.io"
	}
	return s
}
