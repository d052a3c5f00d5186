package client

import (
	"context"
	"crypto/tls"
	"net/http"

	"github.com/palisade-dev/palisade/pkg/api"
)

// Agent enrollment: an admin creates a one-time token for a node
// (CreateAgentToken); the agent enrolls with it (Enroll), then calls with
// the client certificate it got (Options.TLS, e.g. from AgentTLS) and
// renews it (RenewCertificate).

// CreateAgentToken is POST /api/v1/agent-tokens (admin): a one-time
// enrollment token for node, valid for ttl ("" for the server's default).
func (c *Client) CreateAgentToken(ctx context.Context, node, ttl string) (api.NewAgentToken, error) {
	var res api.NewAgentToken
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/api/v1/agent-tokens", JSON: api.AgentTokenRequest{Node: node, TTL: ttl}}, &res)
	return res, err
}

// AgentTokens is GET /api/v1/agent-tokens (admin).
func (c *Client) AgentTokens(ctx context.Context) ([]api.AgentToken, error) {
	var res []api.AgentToken
	err := c.get(ctx, "/api/v1/agent-tokens", nil, &res)
	return res, err
}

// AgentIdentities is GET /api/v1/agent-identities (admin): every enrolled
// node's certificates and revocation.
func (c *Client) AgentIdentities(ctx context.Context) ([]api.AgentIdentity, error) {
	var res []api.AgentIdentity
	err := c.get(ctx, "/api/v1/agent-identities", nil, &res)
	return res, err
}

// RevokeAgent is POST /api/v1/agents/{node}/revoke (admin): every
// certificate of node is refused from now on.
func (c *Client) RevokeAgent(ctx context.Context, node string) (api.AgentIdentity, error) {
	var res api.AgentIdentity
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: agentPath(node, "/revoke"), JSON: struct{}{}}, &res)
	return res, err
}

// Enroll is POST /api/v1/agents/{node}/enroll with the enrollment token
// as the bearer token and a PEM certificate request.
func (c *Client) Enroll(ctx context.Context, node, enrollToken string, csrPEM []byte) (api.Certificate, error) {
	var res api.Certificate
	h := http.Header{}
	h.Set("Authorization", "Bearer "+enrollToken)
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: agentPath(node, "/enroll"), JSON: api.CertificateRequest{CSR: string(csrPEM)}, Header: h}, &res)
	return res, err
}

// RenewCertificate is POST /api/v1/agents/{node}/certificate, made with
// the agent's current client certificate.
func (c *Client) RenewCertificate(ctx context.Context, node string, csrPEM []byte) (api.Certificate, error) {
	var res api.Certificate
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: agentPath(node, "/certificate"), JSON: api.CertificateRequest{CSR: string(csrPEM)}}, &res)
	return res, err
}

// AgentTLS is the TLS configuration of an agent: the server's CA from
// caFile ("" for the system roots) and the client certificate cert
// returns at each handshake (so a renewed one is used from the next
// connection on).
func AgentTLS(caFile string, cert func() *tls.Certificate) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := caPool(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := cert(); c != nil {
			return c, nil
		}
		return &tls.Certificate{}, nil // none yet: enrolling
	}
	return cfg, nil
}
