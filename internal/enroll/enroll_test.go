package enroll

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/store"
)

func testCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func csr(t *testing.T, cn string) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func leaf(t *testing.T, iss Issued) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(iss.CertPEM)
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestEnrollLifecycle: a token enrolls its node once; the certificate
// names the node, verifies against the CA for client auth and is
// accepted; renewal keeps the presented and the new certificate;
// revocation refuses both, survives a reopen, and a new token lifts it.
func TestEnrollLifecycle(t *testing.T) {
	kv, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	ca, key := testCA(t)
	now := time.Now()
	clock := func() time.Time { return now }
	s, err := Open(kv, ca, key, Options{Lifetime: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateToken("bad node/", 0, "admin"); err == nil {
		t.Fatal("bad node name accepted")
	}
	tok, secret, err := s.CreateToken("n1", 0, "admin")
	if err != nil || tok.Hash != "" || tok.Expires.Sub(tok.Created) != DefaultTokenTTL {
		t.Fatalf("%+v %v", tok, err)
	}
	if _, err := s.Enroll(secret, "n2", csr(t, "n1")); !errors.Is(err, ErrWrongNode) {
		t.Fatalf("another node: %v", err)
	}
	if _, err := s.Enroll(secret+"x", "n1", csr(t, "n1")); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := s.Enroll(secret, "n1", []byte("not a csr")); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("bad csr: %v", err)
	}
	iss, err := s.Enroll(secret, "n1", csr(t, "someone-else"))
	if err != nil {
		t.Fatal(err)
	}
	c1 := leaf(t, iss)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	if _, err := c1.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatal(err)
	}
	if node, err := s.Check(c1); err != nil || node != "n1" || c1.Subject.CommonName != "n1" {
		t.Fatalf("check: %q %v (CN %q)", node, err, c1.Subject.CommonName)
	}
	if _, err := s.Enroll(secret, "n1", csr(t, "n1")); !errors.Is(err, ErrTokenUsed) {
		t.Fatalf("second use: %v", err)
	}
	// Expiry.
	_, late, _ := s.CreateToken("n9", time.Minute, "admin")
	now = now.Add(2 * time.Minute)
	if _, err := s.Enroll(late, "n9", csr(t, "n9")); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	// Renewal: the presented and the new one are live, older ones not.
	iss2, err := s.Renew(c1, csr(t, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	c2 := leaf(t, iss2)
	iss3, err := s.Renew(c2, csr(t, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	c3 := leaf(t, iss3)
	if _, err := s.Check(c1); !errors.Is(err, ErrUnknownCert) {
		t.Fatalf("a replaced certificate: %v", err)
	}
	for _, c := range []*x509.Certificate{c2, c3} {
		if _, err := s.Check(c); err != nil {
			t.Fatal(err)
		}
	}
	// Revocation, kept across a reopen.
	if _, err := s.Revoke("nope", "admin"); !errors.Is(err, ErrNoNode) {
		t.Fatal(err)
	}
	if _, err := s.Revoke("n1", "admin"); err != nil {
		t.Fatal(err)
	}
	s, err = Open(kv, ca, key, Options{Lifetime: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*x509.Certificate{c2, c3} {
		if _, err := s.Check(c); !errors.Is(err, ErrRevoked) {
			t.Fatalf("revoked after reopen: %v", err)
		}
	}
	if _, err := s.Renew(c3, csr(t, "n1")); !errors.Is(err, ErrRevoked) {
		t.Fatalf("a revoked node renews: %v", err)
	}
	_, again, _ := s.CreateToken("n1", 0, "admin")
	iss4, err := s.Enroll(again, "n1", csr(t, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Check(leaf(t, iss4)); err != nil {
		t.Fatalf("re-enrolled: %v", err)
	}
	if _, err := s.Check(c3); !errors.Is(err, ErrUnknownCert) {
		t.Fatalf("a certificate from before the revocation after re-enrollment: %v", err)
	}
}
