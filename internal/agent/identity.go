package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/report"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

// Files of an agent's identity in its state directory (0700): the client
// certificate the server's CA signed for the node, its key (0600), and
// the hash of the enrollment token it was made with (a different token
// given later means "enroll again").
const (
	IdentityCertFile = "agent.crt"
	IdentityKeyFile  = "agent.key"
	enrolledWithFile = "enroll-token.sha256"
)

// Identity is an agent's client certificate, kept in its state directory,
// obtained with a one-time enrollment token and renewed over mTLS before
// it expires. Its TLS configuration (TLS) always presents the newest one.
type Identity struct {
	dir, node string
	log       *slog.Logger
	cur       atomic.Pointer[tls.Certificate]
}

// OpenIdentity loads the identity kept in dir, if any (Cert is nil until
// one is enrolled).
func OpenIdentity(dir, node string, log *slog.Logger) (*Identity, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: state directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: state directory: %w", err)
	}
	id := &Identity{dir: dir, node: node, log: log}
	cert, err := tls.LoadX509KeyPair(id.path(IdentityCertFile), id.path(IdentityKeyFile))
	switch {
	case err == nil:
		if cert.Leaf == nil || cert.Leaf.Subject.CommonName != node {
			return nil, fmt.Errorf("agent: the certificate in %s is for node %q, not %q: use another --state-dir", id.path(IdentityCertFile), leafCN(cert), node)
		}
		id.cur.Store(&cert)
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("agent: identity in %s: %w (remove %s and %s and enroll again with a new token)", dir, err, IdentityCertFile, IdentityKeyFile)
	}
	return id, nil
}

func leafCN(c tls.Certificate) string {
	if c.Leaf == nil {
		return ""
	}
	return c.Leaf.Subject.CommonName
}

func (id *Identity) path(name string) string { return filepath.Join(id.dir, name) }

// Cert is the current client certificate (nil before enrollment).
func (id *Identity) Cert() *tls.Certificate { return id.cur.Load() }

// TLS is the agent's TLS configuration: the server's CA from caFile and
// this identity's certificate.
func (id *Identity) TLS(caFile string) (*tls.Config, error) { return client.AgentTLS(caFile, id.Cert) }

// NeedsEnrollment reports whether token should be used: there is no
// certificate yet, it expired, or token is not the one it was made with.
func (id *Identity) NeedsEnrollment(token string) bool {
	c := id.Cert()
	if c == nil || !time.Now().Before(c.Leaf.NotAfter) {
		return true
	}
	if token == "" {
		return false
	}
	b, err := os.ReadFile(id.path(enrolledWithFile))
	return err != nil || strings.TrimSpace(string(b)) != tokenHash(token)
}

func tokenHash(t string) string {
	h := sha256.Sum256([]byte(strings.TrimSpace(t)))
	return hex.EncodeToString(h[:])
}

// Enroll gets a certificate for the node with the one-time token.
func (id *Identity) Enroll(ctx context.Context, c *client.Client, token string) error {
	keyPEM, csrPEM, err := newKeyAndCSR(id.node)
	if err != nil {
		return err
	}
	res, err := c.Enroll(ctx, id.node, strings.TrimSpace(token), csrPEM)
	if err != nil {
		return err
	}
	if err := id.store(keyPEM, res); err != nil {
		return err
	}
	if err := writeFile0600(id.path(enrolledWithFile), []byte(tokenHash(token)+"\n")); err != nil {
		return err
	}
	// Connections made so far carry no certificate: new ones will.
	c.HTTPClient().CloseIdleConnections()
	id.log.Info("enrolled: the server signed a client certificate for this node", "serial", res.Serial, "notAfter", res.NotAfter, "dir", id.dir)
	return nil
}

// Renew replaces the certificate with a new one (and a new key), asked
// for over mTLS with the current one.
func (id *Identity) Renew(ctx context.Context, c *client.Client) error {
	keyPEM, csrPEM, err := newKeyAndCSR(id.node)
	if err != nil {
		return err
	}
	res, err := c.RenewCertificate(ctx, id.node, csrPEM)
	if err != nil {
		return err
	}
	if err := id.store(keyPEM, res); err != nil {
		return err
	}
	c.HTTPClient().CloseIdleConnections() // new connections present the new certificate
	id.log.Info("client certificate renewed", "serial", res.Serial, "notAfter", res.NotAfter)
	return nil
}

// RenewAt is when the current certificate should be renewed: once two
// thirds of its lifetime have passed.
func (id *Identity) RenewAt() time.Time {
	c := id.Cert()
	if c == nil {
		return time.Time{}
	}
	nb, na := c.Leaf.NotBefore, c.Leaf.NotAfter
	return na.Add(-na.Sub(nb) / 3)
}

// RunRenewal renews the certificate when due until ctx ends, retrying a
// failed renewal with backoff (a refusal is logged as an error: the node
// was revoked, or the certificate expired while the server was away).
func (id *Identity) RunRenewal(ctx context.Context, c *client.Client) {
	backoff := time.Second
	for {
		wait := time.Until(id.RenewAt())
		select {
		case <-ctx.Done():
			return
		case <-time.After(max(wait, 0)):
		}
		err := id.Renew(ctx, c)
		if err == nil {
			backoff = time.Second
			continue
		}
		if ctx.Err() != nil {
			return
		}
		if st := api.StatusOf(err); st == http.StatusUnauthorized || st == http.StatusForbidden {
			id.log.Error("the server refuses to renew this agent's certificate; enroll again with a new token (palisade agent token create)", "err", err, "notAfter", id.Cert().Leaf.NotAfter)
		} else {
			id.log.Warn("client certificate renewal failed; will retry", "err", err, "in", backoff, "notAfter", id.Cert().Leaf.NotAfter)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
}

// store writes the key, then the certificate (each replaced atomically)
// and makes them current.
func (id *Identity) store(keyPEM []byte, res api.Certificate) error {
	cert, err := tls.X509KeyPair([]byte(res.Certificate), keyPEM)
	if err != nil {
		return fmt.Errorf("agent: the server's certificate: %w", err)
	}
	if cert.Leaf == nil || cert.Leaf.Subject.CommonName != id.node {
		return fmt.Errorf("agent: the server signed a certificate for %q, not %q", leafCN(cert), id.node)
	}
	if err := writeFile0600(id.path(IdentityKeyFile), keyPEM); err != nil {
		return err
	}
	if err := writeFile0600(id.path(IdentityCertFile), []byte(res.Certificate)); err != nil {
		return err
	}
	id.cur.Store(&cert)
	return nil
}

// writeFile0600 replaces a file of the state directory durably (0600).
func writeFile0600(path string, data []byte) error {
	if err := report.WriteDurable(filepath.Dir(path), filepath.Base(path), data); err != nil {
		return fmt.Errorf("agent: %s: %w", path, err)
	}
	return nil
}

// newKeyAndCSR makes a P-256 key and a certificate request naming node.
func newKeyAndCSR(node string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: node}}, key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// openIdentity sets up the mTLS client of an agent of a TLS server: its
// identity from StateDir (or, on first start, the promise of one from
// EnrollToken).
func (c *Config) openIdentity() error {
	id, err := OpenIdentity(c.StateDir, c.Node, c.Log.With("node", c.Node))
	if err != nil {
		return err
	}
	if id.Cert() == nil && c.EnrollToken == "" {
		return fmt.Errorf("agent: no client certificate in %s: enroll once with --enroll-token (an admin creates one with `palisade agent token create --node %s`)", c.StateDir, c.Node)
	}
	tc, err := id.TLS(c.CAFile)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	api, err := client.New(client.Options{Server: c.Server, TLS: tc, Timeout: 10 * time.Second, UserAgent: "palisade-agent"})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	c.API, c.identity = api, id
	return nil
}

// Identity is the agent's client certificate (nil when the agent calls a
// plain-HTTP server with the legacy shared token).
func (a *Agent) Identity() *Identity { return a.cfg.identity }

// ensureIdentity enrolls when needed (retrying while the server cannot be
// reached; a refusal is final) and keeps the certificate renewed until
// ctx ends.
func (a *Agent) ensureIdentity(ctx context.Context) error {
	id := a.cfg.identity
	if id == nil {
		return nil
	}
	if id.NeedsEnrollment(a.cfg.EnrollToken) {
		if a.cfg.EnrollToken == "" {
			return fmt.Errorf("agent: the client certificate in %s expired on %s: enroll again with a new --enroll-token", a.cfg.StateDir, id.Cert().Leaf.NotAfter.Format(time.RFC3339))
		}
		backoff := time.Second
		for {
			err := id.Enroll(ctx, a.cfg.API, a.cfg.EnrollToken)
			if err == nil {
				break
			}
			if st := api.StatusOf(err); st >= 400 && st < 500 {
				return fmt.Errorf("agent: enrollment refused: %w", err)
			}
			a.cfg.Log.Warn("enrollment: server not reachable; will retry", "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
		}
	} else if a.cfg.EnrollToken != "" {
		a.cfg.Log.Info("reusing the client certificate in the state directory (the enrollment token is not needed again)", "dir", a.cfg.StateDir, "notAfter", id.Cert().Leaf.NotAfter)
	}
	go id.RunRenewal(ctx, a.cfg.API)
	return nil
}
