// Package enroll is how node agents get their identity: one-time
// enrollment tokens an admin creates for a node, client certificates the
// server's CA signs for that node, their renewal, and revocation.
//
// An agent's certificate names its node (subject CN, organisation
// OrgAgent) and is valid for Options.Lifetime. The server keeps, per node,
// the serial numbers it issued that are still live; a certificate is
// accepted only while its serial is in that set, so revoking a node (which
// empties the set and marks the node) refuses every certificate it ever
// had, at once, without a CRL. A new enrollment token for the node lifts
// the revocation when it is used.
//
// Everything is kept in the server's store (buckets enroll.tokens and
// enroll.nodes of <data>/palisade.db) and cached in memory, so checking a
// certificate costs no storage read.
package enroll

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/store"
)

// OrgAgent is the subject organisation of every agent certificate.
const OrgAgent = "palisade-agent"

// TokenPrefix starts every enrollment token ("pae_<id>_<secret>"), so it
// is never mistaken for an API token ("pal_...").
const TokenPrefix = "pae_"

// Defaults.
const (
	DefaultLifetime = 30 * 24 * time.Hour
	DefaultTokenTTL = 24 * time.Hour
)

const (
	bucketTokens = "enroll.tokens"
	bucketNodes  = "enroll.nodes"
)

// Errors callers tell apart (the server maps them to statuses).
var (
	ErrTokenInvalid = errors.New("enrollment token not valid")
	ErrTokenUsed    = errors.New("enrollment token already used")
	ErrTokenExpired = errors.New("enrollment token expired")
	ErrWrongNode    = errors.New("enrollment token is for another node")
	ErrRevoked      = errors.New("agent certificate revoked")
	ErrUnknownCert  = errors.New("agent certificate not issued or no longer valid")
	ErrNoNode       = errors.New("no agent enrolled for this node")
	ErrBadRequest   = errors.New("bad certificate request")
)

// Options configure a Service; zero values take the defaults.
type Options struct {
	// Lifetime of a signed client certificate (DefaultLifetime). Agents
	// renew when two thirds of it have passed.
	Lifetime time.Duration
	// TokenTTL is how long an enrollment token is valid (DefaultTokenTTL).
	TokenTTL time.Duration
	Now      func() time.Time
}

// Token is a stored enrollment token, without its secret.
type Token struct {
	ID        string     `json:"id"`
	Node      string     `json:"node"`
	Created   time.Time  `json:"created"`
	CreatedBy string     `json:"createdBy,omitempty"`
	Expires   time.Time  `json:"expires"`
	Used      *time.Time `json:"used,omitempty"`
	Hash      string     `json:"hash,omitempty"` // hex SHA-256 of the secret; never served
}

// Node is what the server knows of one node's agent identity.
type Node struct {
	Node string `json:"node"`
	// Serials are the live certificates (hex serial → not after).
	Serials   map[string]time.Time `json:"serials,omitempty"`
	Enrolled  time.Time            `json:"enrolled,omitempty"`
	Renewed   time.Time            `json:"renewed,omitempty"`
	Revoked   *time.Time           `json:"revoked,omitempty"`
	RevokedBy string               `json:"revokedBy,omitempty"`
}

// Service issues, renews, checks and revokes agent certificates.
type Service struct {
	kv    store.KV
	ca    *x509.Certificate
	key   crypto.Signer
	opts  Options
	mu    sync.RWMutex
	toks  map[string]*Token // by ID
	nodes map[string]*Node
}

// Open loads the service's state; ca and key sign the certificates.
func Open(kv store.KV, ca *x509.Certificate, key crypto.Signer, o Options) (*Service, error) {
	if o.Lifetime <= 0 {
		o.Lifetime = DefaultLifetime
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = DefaultTokenTTL
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Service{kv: kv, ca: ca, key: key, opts: o, toks: map[string]*Token{}, nodes: map[string]*Node{}}
	err := kv.View(func(tx store.Tx) error {
		if err := tx.ForEach(bucketTokens, "", func(id string, v []byte) error {
			var t Token
			if err := json.Unmarshal(v, &t); err != nil {
				return fmt.Errorf("token %s: %w", id, err)
			}
			s.toks[id] = &t
			return nil
		}); err != nil {
			return err
		}
		return tx.ForEach(bucketNodes, "", func(node string, v []byte) error {
			var n Node
			if err := json.Unmarshal(v, &n); err != nil {
				return fmt.Errorf("node %s: %w", node, err)
			}
			s.nodes[node] = &n
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	return s, nil
}

// Lifetime is the validity of the certificates this service signs.
func (s *Service) Lifetime() time.Duration { return s.opts.Lifetime }

// NodeName is the pattern of a node name an agent may enroll as (a
// Kubernetes node name).
var nodeName = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._-]{0,251}[a-zA-Z0-9])?$`)

// CheckNode refuses a node name no certificate should carry.
func CheckNode(node string) error {
	if !nodeName.MatchString(node) {
		return fmt.Errorf("node %q: want 1-253 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", node)
	}
	return nil
}

// CreateToken makes a one-time enrollment token for node, valid for ttl
// (0: Options.TokenTTL), and returns it with its secret form (shown once).
func (s *Service) CreateToken(node string, ttl time.Duration, by string) (Token, string, error) {
	if err := CheckNode(node); err != nil {
		return Token{}, "", err
	}
	if ttl <= 0 {
		ttl = s.opts.TokenTTL
	}
	id, sec, hash, err := auth.NewSecret()
	if err != nil {
		return Token{}, "", err
	}
	now := s.opts.Now().UTC()
	t := Token{ID: id, Node: node, Created: now, CreatedBy: by, Expires: now.Add(ttl), Hash: hash}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Expired and used tokens older than a week are forgotten here, so
	// the bucket stays bounded.
	var gone []string
	for id, o := range s.toks {
		if now.Sub(o.Expires) > 7*24*time.Hour {
			gone = append(gone, id)
		}
	}
	err = s.kv.Update(func(tx store.Tx) error {
		for _, id := range gone {
			if err := tx.Delete(bucketTokens, id); err != nil {
				return err
			}
		}
		return putJSON(tx, bucketTokens, t.ID, t)
	})
	if err != nil {
		return Token{}, "", fmt.Errorf("enroll: %w", err)
	}
	for _, id := range gone {
		delete(s.toks, id)
	}
	s.toks[t.ID] = &t
	out := t
	out.Hash = ""
	return out, auth.FormatSecret(TokenPrefix, t.ID, sec), nil
}

// Tokens lists the enrollment tokens (without hashes), newest first.
func (s *Service) Tokens() []Token {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Token, 0, len(s.toks))
	for _, t := range s.toks {
		c := *t
		c.Hash = ""
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// lookup finds the token a secret form names and checks it is usable for
// node, without using it. Callers hold s.mu.
func (s *Service) lookup(secret, node string) (*Token, error) {
	id, sec, ok := auth.ParseSecret(secret, TokenPrefix)
	if !ok {
		return nil, fmt.Errorf("%w: want %s<id>_<secret>, as `palisade agent token create` prints it", ErrTokenInvalid, TokenPrefix)
	}
	t := s.toks[id]
	if t == nil || !auth.SecretMatches(t.Hash, sec) {
		return nil, fmt.Errorf("%w: unknown token", ErrTokenInvalid)
	}
	if t.Used != nil {
		return nil, fmt.Errorf("%w (at %s): create a new one with `palisade agent token create --node %s`", ErrTokenUsed, t.Used.Format(time.RFC3339), t.Node)
	}
	if !s.opts.Now().Before(t.Expires) {
		return nil, fmt.Errorf("%w at %s: create a new one with `palisade agent token create --node %s`", ErrTokenExpired, t.Expires.Format(time.RFC3339), t.Node)
	}
	if node != t.Node {
		return nil, fmt.Errorf("%w: token %s enrolls node %q, not %q", ErrWrongNode, t.ID, t.Node, node)
	}
	return t, nil
}

// CheckToken reports whether secret is a usable enrollment token for node
// (not used, not expired), without using it.
func (s *Service) CheckToken(secret, node string) (Token, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, err := s.lookup(secret, node)
	if err != nil {
		return Token{}, err
	}
	c := *t
	c.Hash = ""
	return c, nil
}

// Issued is a signed certificate.
type Issued struct {
	Node     string    `json:"node"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"notAfter"`
	CertPEM  []byte    `json:"-"`
}

// Enroll uses the enrollment token secret (once) and signs csrDER (PEM or
// DER) as node's client certificate. It lifts a revocation of node.
func (s *Service) Enroll(secret, node string, csr []byte) (Issued, error) {
	pub, err := parseCSR(csr)
	if err != nil {
		return Issued{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, err := s.lookup(secret, node)
	if err != nil {
		return Issued{}, err
	}
	now := s.opts.Now().UTC()
	n := s.nodeCopy(node)
	n.Revoked, n.RevokedBy = nil, ""
	n.Enrolled = now
	iss, err := s.sign(node, pub, now)
	if err != nil {
		return Issued{}, err
	}
	n.prune(now)
	n.Serials[iss.Serial] = iss.NotAfter
	used := *t
	used.Used = &now
	err = s.kv.Update(func(tx store.Tx) error {
		if err := putJSON(tx, bucketTokens, used.ID, used); err != nil {
			return err
		}
		return putJSON(tx, bucketNodes, node, n)
	})
	if err != nil {
		return Issued{}, fmt.Errorf("enroll: %w", err)
	}
	s.toks[used.ID] = &used
	s.nodes[node] = n
	return iss, nil
}

// Renew signs a new certificate for node, whose current certificate cert
// the caller presented (and Check accepted). The presented certificate
// stays valid until it expires, so the agent can switch without a gap;
// only the newest two stay live.
func (s *Service) Renew(cert *x509.Certificate, csr []byte) (Issued, error) {
	pub, err := parseCSR(csr)
	if err != nil {
		return Issued{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	node, err := s.checkLocked(cert)
	if err != nil {
		return Issued{}, err
	}
	now := s.opts.Now().UTC()
	n := s.nodeCopy(node)
	iss, err := s.sign(node, pub, now)
	if err != nil {
		return Issued{}, err
	}
	n.prune(now)
	// Keep the presented one and the new one: older ones go.
	keep := map[string]time.Time{iss.Serial: iss.NotAfter}
	if na, ok := n.Serials[serialHex(cert.SerialNumber)]; ok {
		keep[serialHex(cert.SerialNumber)] = na
	}
	n.Serials = keep
	n.Renewed = now
	if err := s.kv.Update(func(tx store.Tx) error { return putJSON(tx, bucketNodes, node, n) }); err != nil {
		return Issued{}, fmt.Errorf("enroll: %w", err)
	}
	s.nodes[node] = n
	return iss, nil
}

// Revoke refuses every certificate of node from now on.
func (s *Service) Revoke(node, by string) (Node, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes[node] == nil {
		return Node{}, fmt.Errorf("%w: %q", ErrNoNode, node)
	}
	n := s.nodeCopy(node)
	now := s.opts.Now().UTC()
	n.Serials = map[string]time.Time{}
	n.Revoked, n.RevokedBy = &now, by
	if err := s.kv.Update(func(tx store.Tx) error { return putJSON(tx, bucketNodes, node, n) }); err != nil {
		return Node{}, fmt.Errorf("enroll: %w", err)
	}
	s.nodes[node] = n
	return *n, nil
}

// Nodes lists what is known of every enrolled node, by name.
func (s *Service) Nodes() []Node {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// Node is one node's record.
func (s *Service) Node(node string) (Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := s.nodes[node]
	if n == nil {
		return Node{}, false
	}
	return *n, true
}

// Check returns the node a verified client certificate stands for, or why
// it is refused (revoked, replaced, never issued here).
func (s *Service) Check(cert *x509.Certificate) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.checkLocked(cert)
}

func (s *Service) checkLocked(cert *x509.Certificate) (string, error) {
	node, err := NodeOf(cert)
	if err != nil {
		return "", err
	}
	n := s.nodes[node]
	if n == nil {
		return node, fmt.Errorf("%w: node %q is not enrolled", ErrUnknownCert, node)
	}
	if n.Revoked != nil {
		return node, fmt.Errorf("%w: node %q revoked at %s by %s (enroll it again with a new token)", ErrRevoked, node, n.Revoked.Format(time.RFC3339), n.RevokedBy)
	}
	if _, ok := n.Serials[serialHex(cert.SerialNumber)]; !ok {
		return node, fmt.Errorf("%w: serial %s of node %q was replaced or never issued", ErrUnknownCert, serialHex(cert.SerialNumber), node)
	}
	return node, nil
}

// NodeOf reads the node name out of an agent certificate.
func NodeOf(cert *x509.Certificate) (string, error) {
	if cert == nil || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != OrgAgent {
		return "", fmt.Errorf("%w: not an agent certificate (organisation %q)", ErrUnknownCert, OrgAgent)
	}
	if err := CheckNode(cert.Subject.CommonName); err != nil {
		return "", fmt.Errorf("%w: %v", ErrUnknownCert, err)
	}
	return cert.Subject.CommonName, nil
}

func (s *Service) nodeCopy(node string) *Node {
	n := &Node{Node: node, Serials: map[string]time.Time{}}
	if o := s.nodes[node]; o != nil {
		*n = *o
		n.Serials = make(map[string]time.Time, len(o.Serials))
		for k, v := range o.Serials {
			n.Serials[k] = v
		}
	}
	return n
}

// prune forgets expired serials.
func (n *Node) prune(now time.Time) {
	for k, na := range n.Serials {
		if !now.Before(na) {
			delete(n.Serials, k)
		}
	}
}

func (s *Service) sign(node string, pub crypto.PublicKey, now time.Time) (Issued, error) {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return Issued{}, err
	}
	notAfter := now.Add(s.opts.Lifetime)
	if notAfter.After(s.ca.NotAfter) {
		notAfter = s.ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: node, Organization: []string{OrgAgent}},
		// A little back-dating absorbs clock differences between the
		// server and the agent.
		NotBefore:   now.Add(-min(5*time.Minute, s.opts.Lifetime/10)),
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, pub, s.key)
	if err != nil {
		return Issued{}, fmt.Errorf("enroll: sign: %w", err)
	}
	return Issued{Node: node, Serial: serialHex(sn), NotAfter: notAfter,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// parseCSR checks a certificate request (PEM or DER) and returns its key;
// its subject is ignored (the server names the node).
func parseCSR(b []byte) (crypto.PublicKey, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("%w: PEM block %q, want CERTIFICATE REQUEST", ErrBadRequest, blk.Type)
		}
		b = blk.Bytes
	}
	csr, err := x509.ParseCertificateRequest(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadRequest, err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("%w: RSA key of %d bits, want 2048 or more", ErrBadRequest, k.N.BitLen())
		}
	default:
		return nil, fmt.Errorf("%w: key type %T", ErrBadRequest, k)
	}
	return csr.PublicKey, nil
}

func serialHex(n *big.Int) string { return hex.EncodeToString(n.Bytes()) }

func putJSON(tx store.Tx, bucket, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(bucket, key, b)
}
