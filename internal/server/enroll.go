package server

import (
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/audit"
	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/enroll"
	"github.com/palisade-dev/palisade/internal/flow/flowapi"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/pkg/api"
)

// Agent enrollment (internal/enroll): an admin creates a one-time token
// for a node; the agent POSTs it (as its bearer token) with a certificate
// request to /api/v1/agents/{node}/enroll and gets a client certificate
// for that node, signed by the data directory's CA; from then on every
// call it makes is mTLS and the certificate is its identity, renewed over
// mTLS at /api/v1/agents/{node}/certificate. A TLS server accepts agents
// only this way; the shared agent token (Config.AgentToken) is left for
// plain-HTTP servers on loopback (tests, --insecure-listen).

// openEnroll starts the enrollment service with the CA that verifies
// agents' certificates (called by tlsConfig).
func (s *Server) openEnroll(ca *x509.Certificate, key crypto.Signer) error {
	e, err := enroll.Open(s.kv, ca, key, enroll.Options{Lifetime: s.cfg.AgentCertLifetime, TokenTTL: s.cfg.EnrollTokenTTL})
	if err != nil {
		return err
	}
	s.enroll = e
	return nil
}

// Enrollment is the server's agent enrollment service (nil when the
// server serves plain HTTP).
func (s *Server) Enrollment() *enroll.Service { return s.enroll }

// errPlainHTTP answers enrollment calls on a plain-HTTP server.
var errPlainHTTP = api.Errorf(http.StatusConflict, "this server serves plain HTTP (--insecure-listen): agents enroll only with a TLS server, whose CA signs their client certificates")

// agentCaller authenticates an agent by its client certificate or, on the
// enroll route only, by an enrollment token. ok is false when r carries
// neither (the caller is then a person or a legacy agent token).
func (s *Server) agentCaller(r *http.Request) (p auth.Principal, ok bool, err error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && s.enroll != nil {
		node, err := s.enroll.Check(r.TLS.PeerCertificates[0])
		if err != nil {
			return auth.Principal{}, true, err
		}
		return auth.AgentPrincipal(node), true, nil
	}
	tok, isBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	tok = strings.TrimSpace(tok)
	if !isBearer || !strings.HasPrefix(tok, enroll.TokenPrefix) {
		return auth.Principal{}, false, nil
	}
	if s.enroll == nil {
		return auth.Principal{}, true, errors.New(errPlainHTTP.Message)
	}
	node := r.PathValue("node")
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/agents/"+node+"/enroll" || node == "" {
		return auth.Principal{}, true, errors.New("an enrollment token only enrolls (POST /api/v1/agents/NODE/enroll); then the agent calls with its client certificate")
	}
	t, err := s.enroll.CheckToken(tok, node)
	if err != nil {
		return auth.Principal{}, true, err
	}
	return auth.EnrollingPrincipal(node, t.ID), true, nil
}

func init() { addRoutes((*Server).enrollRoutes) }

func (s *Server) enrollRoutes() []Route {
	return []Route{
		{Method: "POST", Pattern: "/api/v1/agent-tokens", Perm: auth.AdminAgents, Handler: s.createAgentToken},
		{Method: "GET", Pattern: "/api/v1/agent-tokens", Perm: auth.AdminAgents, Handler: s.listAgentTokens},
		{Method: "GET", Pattern: "/api/v1/agent-identities", Perm: auth.AdminAgents, Handler: s.listAgentIdentities},
		{Method: "POST", Pattern: "/api/v1/agents/{node}/revoke", Perm: auth.AdminAgents, Handler: s.revokeAgent,
			Before: func(r *http.Request) any { return s.identityOf(r.PathValue("node")) }},
		// Agents: enrollment (the principal comes from the enrollment
		// token, see agentCaller) and renewal (from the certificate).
		{Method: "POST", Pattern: "/api/v1/agents/{node}/enroll", Perm: auth.AgentReport, Handler: s.enrollAgent},
		{Method: "POST", Pattern: "/api/v1/agents/{node}/certificate", Perm: auth.AgentReport, Handler: s.renewAgent},
	}
}

func apiAgentToken(t enroll.Token) api.AgentToken {
	return api.AgentToken{ID: t.ID, Node: t.Node, Created: t.Created, CreatedBy: t.CreatedBy, Expires: t.Expires, Used: t.Used}
}

func (s *Server) createAgentToken(w http.ResponseWriter, r *http.Request) {
	var req api.AgentTokenRequest
	if err := httpapi.ReadJSON(w, r, &req, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if s.enroll == nil {
		httpapi.WriteError(w, errPlainHTTP)
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 || d > 366*24*time.Hour {
			httpapi.WriteError(w, api.BadRequest("ttl", "ttl %q: want a duration between 1s and 8784h, such as 24h", req.TTL))
			return
		}
		ttl = d
	}
	if err := enroll.CheckNode(req.Node); err != nil {
		httpapi.WriteError(w, api.BadRequest("node", "%v", err))
		return
	}
	t, secret, err := s.enroll.CreateToken(req.Node, ttl, auth.Who(r.Context()))
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, api.NewAgentToken{AgentToken: apiAgentToken(t), Secret: secret})
}

func (s *Server) listAgentTokens(w http.ResponseWriter, _ *http.Request) {
	out := []api.AgentToken{}
	if s.enroll != nil {
		for _, t := range s.enroll.Tokens() {
			out = append(out, apiAgentToken(t))
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func apiIdentity(n enroll.Node) api.AgentIdentity {
	id := api.AgentIdentity{Node: n.Node, Live: len(n.Serials), Enrolled: n.Enrolled, Renewed: n.Renewed, Revoked: n.Revoked, RevokedBy: n.RevokedBy}
	for _, na := range n.Serials {
		if id.NotAfter == nil || na.After(*id.NotAfter) {
			t := na
			id.NotAfter = &t
		}
	}
	return id
}

// identityOf is a node's identity record (nil when it never enrolled).
func (s *Server) identityOf(node string) any {
	if s.enroll == nil {
		return nil
	}
	if n, ok := s.enroll.Node(node); ok {
		return apiIdentity(n)
	}
	return nil
}

func (s *Server) listAgentIdentities(w http.ResponseWriter, _ *http.Request) {
	out := []api.AgentIdentity{}
	if s.enroll != nil {
		for _, n := range s.enroll.Nodes() {
			out = append(out, apiIdentity(n))
		}
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) revokeAgent(w http.ResponseWriter, r *http.Request) {
	if s.enroll == nil {
		httpapi.WriteError(w, errPlainHTTP)
		return
	}
	n, err := s.enroll.Revoke(r.PathValue("node"), auth.Who(r.Context()))
	if errors.Is(err, enroll.ErrNoNode) {
		httpapi.WriteError(w, api.NotFound("%v", err))
		return
	}
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	slog.Info("agent revoked: its certificates are refused from now on", "node", n.Node, "by", n.RevokedBy)
	httpapi.WriteJSON(w, http.StatusOK, apiIdentity(n))
}

func (s *Server) enrollAgent(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	tokenID, enrolling := strings.CutPrefix(p.TokenID, "enroll:")
	var req api.CertificateRequest
	if err := httpapi.ReadJSON(w, r, &req, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if s.enroll == nil {
		httpapi.WriteError(w, errPlainHTTP)
		return
	}
	if !enrolling {
		httpapi.WriteError(w, api.BadRequest("", "enrollment takes the node's enrollment token as the bearer token (an admin creates one with `palisade agent token create --node NODE`)"))
		return
	}
	if req.CSR == "" {
		httpapi.WriteError(w, api.BadRequest("csr", "csr: a PEM certificate request is required"))
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	iss, err := s.enroll.Enroll(strings.TrimSpace(tok), r.PathValue("node"), []byte(req.CSR))
	s.answerCertificate(w, r, p, iss, err, map[string]any{"tokenId": tokenID})
}

func (s *Server) renewAgent(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	var req api.CertificateRequest
	if err := httpapi.ReadJSON(w, r, &req, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	if s.enroll == nil {
		httpapi.WriteError(w, errPlainHTTP)
		return
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		httpapi.WriteError(w, api.BadRequest("", "renewal is made with the agent's current client certificate (mTLS); enroll first"))
		return
	}
	if req.CSR == "" {
		httpapi.WriteError(w, api.BadRequest("csr", "csr: a PEM certificate request is required"))
		return
	}
	old := r.TLS.PeerCertificates[0]
	iss, err := s.enroll.Renew(old, []byte(req.CSR))
	s.answerCertificate(w, r, p, iss, err, map[string]any{"previousSerial": hex.EncodeToString(old.SerialNumber.Bytes()), "previousNotAfter": old.NotAfter})
}

// answerCertificate answers an enrollment or renewal and records it in
// the audit log (agent calls are otherwise not audited).
func (s *Server) answerCertificate(w http.ResponseWriter, r *http.Request, p auth.Principal, iss enroll.Issued, err error, extra map[string]any) {
	status := http.StatusOK
	after := map[string]any{}
	for k, v := range extra {
		after[k] = v
	}
	var e *api.Error
	switch {
	case errors.Is(err, enroll.ErrBadRequest):
		e = api.BadRequest("csr", "%v", err)
	case errors.Is(err, enroll.ErrTokenUsed), errors.Is(err, enroll.ErrTokenExpired), errors.Is(err, enroll.ErrTokenInvalid),
		errors.Is(err, enroll.ErrRevoked), errors.Is(err, enroll.ErrUnknownCert):
		// Used between the check and now (two agents racing one token).
		e = api.Errorf(http.StatusUnauthorized, "%v", err)
	case errors.Is(err, enroll.ErrWrongNode):
		e = api.Errorf(http.StatusForbidden, "%v", err)
	case err != nil:
		slog.Error("enroll: signing an agent certificate", "node", r.PathValue("node"), "err", err)
		e = api.Errorf(http.StatusInternalServerError, "internal error (logged on the server)")
	}
	if e != nil {
		status = e.Status
		after["error"] = e.Message
	} else {
		after["serial"], after["notAfter"] = iss.Serial, iss.NotAfter
	}
	ab, _ := json.Marshal(after)
	if aerr := s.audit.Append(audit.Record{Time: time.Now().UTC(), Who: p.String(), Role: string(p.Role),
		Action: r.Pattern, Path: r.URL.Path, Status: status, After: ab}); aerr != nil {
		slog.Error("audit: cannot record an agent certificate", "node", iss.Node, "err", aerr)
	}
	if e != nil {
		httpapi.WriteError(w, e)
		return
	}
	ca, _ := os.ReadFile(s.path(CACertFile))
	life := s.enroll.Lifetime()
	httpapi.WriteJSON(w, http.StatusOK, api.Certificate{Node: iss.Node, Serial: iss.Serial, NotAfter: iss.NotAfter,
		Certificate: string(iss.CertPEM), CA: string(ca), RenewAfter: iss.NotAfter.Add(-life / 3)})
}

// agentLimits bound each agent's flow batches (internal/flow/flowapi).
func (s *Server) agentLimits() flowapi.Limits {
	return flowapi.Limits{MaxFuture: s.cfg.AgentClockSkew, MaxAge: s.cfg.FlowRetention,
		BatchRate: s.cfg.AgentBatchRate, BatchBurst: s.cfg.AgentBatchBurst}
}
