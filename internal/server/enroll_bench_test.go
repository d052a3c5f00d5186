package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/audit"
	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/store"
)

// cpuTime is the process's user+system CPU time (getrusage): what a
// benchmark costs on a machine shared with other loads.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGuardAgentCert: the guard's cost per request for an enrolled
// agent (a verified client certificate checked against the node's live
// serials) beside an API token and no guard, in process; reports CPU
// time per request too.
func BenchmarkGuardAgentCert(b *testing.B) {
	dir := b.TempDir()
	kv, err := store.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer kv.Close()
	s := &Server{cfg: Config{DataDir: dir}, kv: kv, authz: &auth.Authorizer{}, tls: true}
	s.tokens, _ = auth.OpenTokens(kv)
	s.audit, _ = audit.Open(kv, 0)
	ca, caKey, err := s.loadOrCreateCA()
	if err != nil {
		b.Fatal(err)
	}
	if err := s.openEnroll(ca, caKey); err != nil {
		b.Fatal(err)
	}
	_, secret, _ := s.enroll.CreateToken("n1", 0, "bench")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n1"}}, key)
	iss, err := s.enroll.Enroll(secret, "n1", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}))
	if err != nil {
		b.Fatal(err)
	}
	blk, _ := pem.Decode(iss.CertPEM)
	cert, _ := x509.ParseCertificate(blk.Bytes)
	_, tok, _ := s.tokens.Create("bench", auth.Admin, "bench")
	ok := func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(204) }
	agentRt := Route{Method: "POST", Pattern: "/api/v1/agents/{node}/flows", Perm: auth.AgentReport, Handler: ok}
	for _, c := range []struct {
		name  string
		h     http.Handler
		token string
		cert  bool
	}{
		{"none", http.HandlerFunc(ok), "", false},
		{"api-token", s.guard(agentRt, agentRt.Handler), tok, false},
		{"agent-cert", s.guard(agentRt, agentRt.Handler), "", true},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("POST", "/api/v1/agents/n1/flows", nil)
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			if c.cert {
				req.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert, ca}}}
			}
			req.SetPathValue("node", "n1")
			cpu0 := cpuTime()
			for b.Loop() {
				rec := httptest.NewRecorder()
				c.h.ServeHTTP(rec, req)
				if rec.Code != 204 {
					b.Fatal(rec.Code, rec.Body.String())
				}
			}
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
