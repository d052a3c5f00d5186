package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/audit"
	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/httpapi"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

// AdminTokenFile is where the first start writes the admin token, 0600.
const AdminTokenFile = "admin-token"

// openAuth loads the token registry and, on the first start (no token
// yet), creates the admin token and writes it to <data>/admin-token.
func (s *Server) openAuth() error {
	toks, err := auth.OpenTokens(s.kv)
	if err != nil {
		return err
	}
	s.tokens = toks
	s.authz = &auth.Authorizer{Scopes: s.scopePath}
	if s.audit, err = audit.Open(s.kv, 0); err != nil {
		return err
	}
	if toks.Len() > 0 {
		return nil
	}
	_, secret, err := toks.Create("admin", auth.Admin, "palisade server (first start)")
	if err != nil {
		return fmt.Errorf("server: admin token: %w", err)
	}
	path := filepath.Join(s.cfg.DataDir, AdminTokenFile)
	if err := writeSecret(path, secret+"\n"); err != nil {
		return fmt.Errorf("server: admin token: %w", err)
	}
	slog.Info("created the admin API token (shown nowhere else; create others with `palisade token create`)", "file", path)
	return nil
}

// writeSecret writes a file only its owner can read, replacing any.
func writeSecret(path, data string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// AdminToken is the admin token the first start wrote to the data
// directory ("" once an operator removed the file).
func (s *Server) AdminToken() string {
	b, err := os.ReadFile(filepath.Join(s.cfg.DataDir, AdminTokenFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Client is an API client for this server with token ("" for the admin
// token).
func (s *Server) Client(token string) *client.Client {
	if token == "" {
		token = s.AdminToken()
	}
	c, err := client.New(client.Options{Server: s.URL(), Token: token, HTTP: s.HTTPClient()})
	if err != nil {
		panic(err) // the server's own URL is always valid
	}
	return c
}

// HTTPClient is an HTTP client that reaches this server (trusting its CA).
func (s *Server) HTTPClient() *http.Client { return s.httpClientFor() }

// Tokens is the API token registry.
func (s *Server) Tokens() *auth.Tokens { return s.tokens }

// authenticate finds the caller of r from its bearer token.
func (s *Server) authenticate(r *http.Request) (auth.Principal, error) {
	if p, ok, err := s.agentCaller(r); ok { // enroll.go: client certificates, enrollment tokens
		return p, err
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return auth.Principal{}, errors.New("no API token (send Authorization: Bearer <token>)")
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok {
		return auth.Principal{}, errors.New("Authorization: want a Bearer token")
	}
	tok = strings.TrimSpace(tok)
	if !s.tls && s.cfg.AgentToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.AgentToken)) == 1 {
		// The legacy shared agent token (plain-HTTP servers only): any node.
		return auth.Principal{Name: "agent", Role: auth.Agent}, nil
	}
	return s.tokens.Check(tok)
}

// guard lets a request reach a route's handler only when its caller holds
// the route's permission: 401 without a valid token, 403 without the
// permission. An agent reaches only its own node's routes.
func (s *Server) guard(rt Route, h http.Handler) http.Handler {
	if rt.Perm == auth.Public {
		return h
	}
	nodeRoute := strings.Contains(rt.Pattern, "{node}")
	agentRoute := strings.HasPrefix(rt.Pattern, "/api/v1/agents/{node}/")
	refuse := func(w http.ResponseWriter, r *http.Request, e *api.Error) {
		if agentRoute && s.Flows != nil {
			// GET /api/v1/agents shows who is being refused, and why.
			s.Flows.Agents.Refuse(r.PathValue("node"), e.Message, r.RemoteAddr, time.Now())
		}
		rt.Refuse(w, e)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="palisade"`)
			refuse(w, r, api.Errorf(http.StatusUnauthorized, "unauthenticated: %v", err))
			return
		}
		if err := s.authz.Authorize(r.Context(), p, rt.Perm, ""); err != nil {
			refuse(w, r, api.Errorf(http.StatusForbidden, "%v", err))
			return
		}
		if err := s.authorizeScope(r, rt, p); err != nil {
			refuse(w, r, api.Errorf(http.StatusForbidden, "%v", err))
			return
		}
		if p.Role == auth.Agent {
			if !nodeRoute || (p.Node != "" && r.PathValue("node") != p.Node) {
				e := api.Errorf(http.StatusForbidden, "forbidden: agent %s may only use its own node's endpoints, not %s %s", p, r.Method, r.URL.Path)
				if p.Node != "" && agentRoute && s.Flows != nil {
					// An enrolled agent acting as another node: listed
					// under its own node, not the one it tried to be.
					s.Flows.Agents.Refuse(p.Node, e.Message, r.RemoteAddr, time.Now())
					rt.Refuse(w, e)
				} else {
					refuse(w, r, e)
				}
				return
			}
		}
		s.audited(rt, p, h).ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), p)))
	})
}

func init() { addRoutes((*Server).authRoutes) }

func (s *Server) authRoutes() []Route {
	return []Route{
		{Method: "GET", Pattern: "/api/v1/whoami", Perm: auth.StatusRead, Scope: httpapi.Global, Handler: s.whoami},
		{Method: "GET", Pattern: "/api/v1/tokens", Perm: auth.AdminTokens, Handler: s.listTokens},
		{Method: "POST", Pattern: "/api/v1/tokens", Perm: auth.AdminTokens, Handler: s.createToken},
		{Method: "DELETE", Pattern: "/api/v1/tokens/{id}", Perm: auth.AdminTokens, Handler: s.revokeToken, Before: s.tokenBefore},
	}
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.FromContext(r.Context())
	httpapi.WriteJSON(w, http.StatusOK, api.Whoami{Name: p.Name, Role: string(p.Role), Scope: p.Scope, TokenID: p.TokenID, Node: p.Node})
}

func apiToken(t auth.Token) api.Token {
	return api.Token{ID: t.ID, Name: t.Name, Role: string(t.Role), Scope: t.Scope, Created: t.Created, CreatedBy: t.CreatedBy, Revoked: t.Revoked}
}

func (s *Server) listTokens(w http.ResponseWriter, _ *http.Request) {
	out := []api.Token{}
	for _, t := range s.tokens.List() {
		out = append(out, apiToken(t))
	}
	httpapi.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req api.TokenRequest
	if err := httpapi.ReadJSON(w, r, &req, 0); err != nil {
		httpapi.WriteError(w, err)
		return
	}
	role, err := auth.ParseRole(req.Role)
	if err != nil {
		httpapi.WriteError(w, api.BadRequest("role", "%v", err))
		return
	}
	scope, err := s.tokenScope(req.Scope)
	if err != nil {
		httpapi.WriteError(w, api.BadRequest("scope", "%v", err))
		return
	}
	t, secret, err := s.tokens.CreateScoped(req.Name, role, scope, auth.Who(r.Context()))
	switch {
	case errors.Is(err, auth.ErrScopedRole):
		httpapi.WriteError(w, api.BadRequest("scope", "%v", err))
		return
	case errors.Is(err, auth.ErrExists):
		httpapi.WriteError(w, api.Errorf(http.StatusConflict, "%v", err))
		return
	case err != nil && strings.HasPrefix(err.Error(), "name"):
		httpapi.WriteError(w, api.BadRequest("name", "%v", err))
		return
	case err != nil:
		httpapi.WriteError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusCreated, api.NewToken{Token: apiToken(t), Secret: secret})
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	t, err := s.tokens.Revoke(r.PathValue("id"))
	if errors.Is(err, auth.ErrNoToken) {
		httpapi.WriteError(w, api.NotFound("no live token with id or name %q", r.PathValue("id")))
		return
	}
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, apiToken(t))
}

// tokenScope resolves the scope a token is bound to: a scope name, or its
// path from an ancestor down written with ':' (e.g. "cluster-lab:sock-shop",
// as the reference product writes "Root:App"), each element the parent of
// the next. "" binds nothing.
func (s *Server) tokenScope(ref string) (string, error) {
	if ref == "" {
		return "", nil
	}
	parts := strings.Split(ref, ":")
	name := parts[len(parts)-1]
	path, ok := s.scopePath(name)
	if !ok {
		return "", fmt.Errorf("scope %q does not exist (palisade get scopes lists them)", name)
	}
	if len(parts) > len(path) || !slices.Equal(path[len(path)-len(parts):], parts) {
		return "", fmt.Errorf("scope %q: its path is %s", ref, strings.Join(path, ":"))
	}
	return name, nil
}

// tokenBefore is the live token a revocation names (audit).
func (s *Server) tokenBefore(r *http.Request) any {
	for _, t := range s.tokens.List() {
		if t.Revoked == nil && (t.ID == r.PathValue("id") || t.Name == r.PathValue("id")) {
			return apiToken(t)
		}
	}
	return nil
}
