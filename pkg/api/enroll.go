package api

import "time"

// Agent enrollment (docs/SECURITY.md): an admin creates a one-time token
// for a node, the agent sends it with a certificate request and gets a
// client certificate naming its node, renewed over mTLS before it expires.

// AgentTokenRequest is the body of POST /api/v1/agent-tokens.
type AgentTokenRequest struct {
	Node string `json:"node"`
	// TTL is how long the token may be used ("24h"; default: the server's).
	TTL string `json:"ttl,omitempty"`
}

// AgentToken is an enrollment token, without its secret.
type AgentToken struct {
	ID        string     `json:"id"`
	Node      string     `json:"node"`
	Created   time.Time  `json:"created"`
	CreatedBy string     `json:"createdBy,omitempty"`
	Expires   time.Time  `json:"expires"`
	Used      *time.Time `json:"used,omitempty"`
}

// NewAgentToken answers POST /api/v1/agent-tokens: the only time the
// token is shown.
type NewAgentToken struct {
	AgentToken
	Secret string `json:"enrollToken"`
}

// CertificateRequest is the body of POST /api/v1/agents/{node}/enroll
// (with the enrollment token as the bearer token) and of POST
// /api/v1/agents/{node}/certificate (over mTLS, to renew).
type CertificateRequest struct {
	CSR string `json:"csr"` // PEM "CERTIFICATE REQUEST"
}

// Certificate answers both: the signed client certificate and the CA that
// signed it (and the server's certificate, unless it has one of its own).
type Certificate struct {
	Node        string    `json:"node"`
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"notAfter"`
	Certificate string    `json:"certificate"` // PEM
	CA          string    `json:"ca"`          // PEM
	// RenewAfter is when the agent should renew (two thirds of the
	// lifetime).
	RenewAfter time.Time `json:"renewAfter"`
}

// AgentIdentity is what the server knows of a node's certificates
// (GET /api/v1/agent-identities, POST /api/v1/agents/{node}/revoke).
type AgentIdentity struct {
	Node      string     `json:"node"`
	Live      int        `json:"liveCertificates"`
	NotAfter  *time.Time `json:"notAfter,omitempty"` // of the newest live certificate
	Enrolled  time.Time  `json:"enrolled,omitempty"`
	Renewed   time.Time  `json:"renewed,omitempty"`
	Revoked   *time.Time `json:"revoked,omitempty"`
	RevokedBy string     `json:"revokedBy,omitempty"`
}
