package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Files of the server's own PKI in the data directory. ca.crt is a
// contract: clients trust it (palisade --ca, PALISADE_CA).
const (
	CACertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	serverCertFile = "server.crt"
	serverKeyFile  = "server.key"
)

// serverCertLife is how long a generated serving certificate is valid; it
// is renewed at start when less than a third of it is left.
const serverCertLife = 365 * 24 * time.Hour

// tlsConfig returns the serving TLS configuration: Config.TLSCert and
// TLSKey when given, else a certificate from the data directory's CA,
// both generated on first start.
func (s *Server) tlsConfig(host string) (*tls.Config, error) {
	var cert tls.Certificate
	// The CA signs agents' client certificates even when the server
	// serves a certificate of its own.
	ca, caKey, err := s.loadOrCreateCA()
	if err != nil {
		return nil, err
	}
	if s.cfg.TLSCert != "" || s.cfg.TLSKey != "" {
		if s.cfg.TLSCert == "" || s.cfg.TLSKey == "" {
			return nil, errors.New("server: --tls-cert and --tls-key go together")
		}
		if cert, err = tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey); err != nil {
			return nil, fmt.Errorf("server: TLS certificate: %w", err)
		}
	} else if cert, err = s.servingCert(ca, caKey, host); err != nil {
		return nil, err
	}
	if err := s.openEnroll(ca, caKey); err != nil {
		return nil, err
	}
	// Agents present a client certificate of this CA (people a token):
	// one is verified when given, and its node checked per request.
	clients := x509.NewCertPool()
	clients.AddCert(ca)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: clients}, nil
}

func (s *Server) path(name string) string { return filepath.Join(s.cfg.DataDir, name) }

// loadOrCreateCA returns the data directory's CA, creating it once.
func (s *Server) loadOrCreateCA() (*x509.Certificate, *ecdsa.PrivateKey, error) {
	if ca, key, err := loadPair(s.path(CACertFile), s.path(caKeyFile)); err == nil {
		return ca, key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("server: CA in %s: %w", s.cfg.DataDir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Palisade CA", Organization: []string{"palisade"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writePair(s.path(CACertFile), s.path(caKeyFile), der, key); err != nil {
		return nil, nil, fmt.Errorf("server: CA: %w", err)
	}
	ca, _ := x509.ParseCertificate(der)
	slog.Info("created the server's CA; clients trust it with --ca or PALISADE_CA", "file", s.path(CACertFile))
	return ca, key, nil
}

// servingCert returns the data directory's serving certificate, made (or
// renewed) by the CA for localhost, the loopback addresses, this
// machine's name, the listen host and Config.AllowedHosts.
func (s *Server) servingCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, host string) (tls.Certificate, error) {
	names, ips := s.certNames(host)
	if c, key, err := loadPair(s.path(serverCertFile), s.path(serverKeyFile)); err == nil &&
		time.Until(c.NotAfter) > serverCertLife/3 && covers(c, names, ips) && c.CheckSignatureFrom(ca) == nil {
		return tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key, Leaf: c}, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "palisade server", Organization: []string{"palisade"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(serverCertLife),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writePair(s.path(serverCertFile), s.path(serverKeyFile), der, key); err != nil {
		return tls.Certificate{}, fmt.Errorf("server: serving certificate: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func (s *Server) certNames(host string) ([]string, []net.IP) {
	names := []string{"localhost"}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if hn, err := os.Hostname(); err == nil && hn != "" {
		names = append(names, hn)
	}
	for _, h := range append([]string{host}, s.cfg.AllowedHosts...) {
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				ips = append(ips, ip)
			}
		} else {
			names = append(names, h)
		}
	}
	return names, ips
}

func covers(c *x509.Certificate, names []string, ips []net.IP) bool {
	for _, n := range names {
		if c.VerifyHostname(n) != nil {
			return false
		}
	}
	for _, ip := range ips {
		if c.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	return true
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := writeSecret(keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))); err != nil {
		return err
	}
	return writeSecret(certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

func loadPair(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", certPath, keyPath)
	}
	c, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return c, key, nil
}

// CAPool is the pool of the data directory's CA (nil when the server
// serves plain HTTP or a certificate of its own).
func (s *Server) CAPool() *x509.CertPool {
	b, err := os.ReadFile(s.path(CACertFile))
	if err != nil || !s.tls {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return pool
}

// httpClientFor is an HTTP client trusting the server's CA.
func (s *Server) httpClientFor() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if pool := s.CAPool(); pool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// checkInsecureListen refuses plain HTTP beyond loopback.
func checkInsecureListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("server: listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("server: plain HTTP only on a loopback address (127.0.0.1, ::1, localhost), not %q; serve TLS instead", addr)
}
