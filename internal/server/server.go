// Package server is Palisade's control plane: it owns the stores, runs the
// cluster connectors and serves the REST API. Storage and query packages
// know nothing of HTTP; this package adapts them.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/palisade-dev/palisade/internal/audit"
	"github.com/palisade-dev/palisade/internal/auth"
	"github.com/palisade-dev/palisade/internal/enroll"
	"github.com/palisade-dev/palisade/internal/flow"
	flowstore "github.com/palisade-dev/palisade/internal/flow/store"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/k8s"
	"github.com/palisade-dev/palisade/internal/store"
	"github.com/palisade-dev/palisade/internal/version"
	"github.com/palisade-dev/palisade/internal/vuln"
)

// Version and Commit are reported by /api/v1/status: the build's (package
// version) unless the binary sets them.
var (
	Version = version.Version
	Commit  = version.Commit
)

// Cluster is one Kubernetes cluster to watch.
type Cluster struct {
	Name   string
	Config *rest.Config
}

// Config configures a server.
type Config struct {
	DataDir  string
	Listen   string // host:port; port 0 picks a free one
	Clusters []Cluster
	// AgentToken is the legacy shared agent token, accepted only by a
	// plain-HTTP server (tests, --insecure-listen on loopback). Empty: a
	// random one is generated once and kept in DataDir/agent-token. A TLS
	// server accepts agents only by the client certificate they enroll
	// for (internal/enroll, internal/server/enroll.go).
	AgentToken string
	// AgentCertLifetime is the validity of agents' client certificates
	// (default 30 days; agents renew after two thirds of it).
	// EnrollTokenTTL is how long an enrollment token may be used
	// (default 24 h).
	AgentCertLifetime, EnrollTokenTTL time.Duration
	// AgentBatchRate and AgentBatchBurst bound the flow batches one node
	// may post (per second, at once; defaults 10 and 50: 429 past them);
	// AgentClockSkew how far ahead of the server's clock a flow may be
	// stamped (default 5 min). Flows older than FlowRetention are refused
	// too (internal/flow/flowapi/limits.go).
	AgentBatchRate  float64
	AgentBatchBurst int
	AgentClockSkew  time.Duration
	// FlowRetention drops stored flows older than this. Default 7 days.
	FlowRetention time.Duration
	// InventoryRetention is how much inventory history is kept (superseded
	// versions, deleted workloads, ended address leases); compaction runs
	// hourly. Default inventory.Retention(FlowRetention): 30 days or the
	// flow retention, whichever is longer, so every stored flow resolves.
	InventoryRetention time.Duration
	// FlowMaxBytes caps the flow store's files: the oldest segments go
	// first. 0: half of the data disk's free space at start (logged).
	FlowMaxBytes int64
	// ScanRegistries is the allow-list of registries the scanner pulls
	// images from (none by default: images are inventoried, not pulled).
	// Entries are "host", "host:port" or a CIDR (see internal/vuln/egress);
	// every connection of a pull is checked at dial time, and loopback,
	// private and link-local addresses need an explicit entry.
	ScanRegistries []string
	// VulnImportDir confines POST /api/v1/vulndb/import to paths below it
	// ("" disables that route's imports).
	VulnImportDir string
	// ScanCacheMaxBytes caps the scanner's layer cache (least recently
	// used layers evicted first). 0: 2 GiB, or a quarter of the free space
	// if less (logged).
	ScanCacheMaxBytes int64
	// FlowWindow is how long the flow pipeline waits for more observation
	// points of a flow (default 30 s; tests shorten it).
	FlowWindow time.Duration
	// AllowedHosts are extra host names clients may address the server by
	// (Host header); IP literals, localhost and the machine's name always
	// work. Anything else is refused (DNS rebinding).
	AllowedHosts []string
	// MaxConns caps concurrent connections (default DefaultMaxConns).
	MaxConns int
	// TLS serves HTTPS: with TLSCert/TLSKey, or else with a certificate
	// from a CA the server creates in the data directory on first start
	// (<data>/ca.crt, which clients trust). `palisade server` sets it
	// unless --insecure-listen. Without it the server serves plain HTTP,
	// on a loopback address only.
	TLS             bool
	TLSCert, TLSKey string
	// DiscoveryTimeout bounds a policy discovery job, from its start to
	// its result (default DefaultDiscoveryTimeout): past it the job ends
	// as failed, saying so, and stores no version.
	DiscoveryTimeout time.Duration
}

// Server is a running control plane.
type Server struct {
	cfg        Config
	kv         *store.Bolt
	Inventory  *inventory.Inventory
	connectors []*k8s.Connector
	filters    *savedFilters
	flowStore  *flowstore.Store
	Flows      *flow.Service
	Vuln       *vuln.Service
	policy     *policyAPI
	enforce    *enforcement

	tls     bool
	addr    string
	metrics *serverMetrics
	tokens  *auth.Tokens
	authz   *auth.Authorizer
	audit   *audit.Log
	enroll  *enroll.Service // agent certificates (TLS servers only)

	httpSrv  *http.Server
	listener net.Listener
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	started  time.Time

	// discoveries are the discovery jobs (internal/server/discovery.go).
	discoveries discoveryJobs
}

// Start opens the stores, starts the connectors and serves the API.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: a data directory is required (--data)")
	}
	if err := secureDataDir(cfg.DataDir); err != nil {
		return nil, err
	}
	kv, err := store.Open(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	inv, err := inventory.Open(kv)
	if err != nil {
		kv.Close()
		return nil, err
	}
	s := &Server{cfg: cfg, kv: kv, Inventory: inv, filters: &savedFilters{kv: kv}, started: time.Now()}
	fail := func(err error) (*Server, error) {
		if s.Vuln != nil {
			s.Vuln.Close()
		}
		if s.flowStore != nil {
			s.flowStore.Close()
		}
		inv.Close()
		kv.Close()
		return nil, err
	}
	if cfg.DiscoveryTimeout < 0 {
		return fail(fmt.Errorf("server: discovery timeout %s: want a positive duration (--discovery-timeout)", cfg.DiscoveryTimeout))
	}
	if s.cfg.DiscoveryTimeout == 0 {
		s.cfg.DiscoveryTimeout = DefaultDiscoveryTimeout
	}
	if cfg.TLS && cfg.AgentToken != "" {
		return fail(errors.New("server: a shared agent token is for plain-HTTP servers only; agents of a TLS server enroll (palisade agent token create)"))
	}
	if s.cfg.AgentToken == "" && !cfg.TLS {
		if s.cfg.AgentToken, err = agentToken(cfg.DataDir); err != nil {
			return fail(err)
		}
	}
	if err := s.openAuth(); err != nil {
		return fail(err)
	}
	if s.cfg.FlowRetention == 0 {
		s.cfg.FlowRetention = 7 * 24 * time.Hour
	}
	if s.cfg.InventoryRetention < 0 {
		return fail(fmt.Errorf("server: --inventory-retention %s: want a positive duration", s.cfg.InventoryRetention))
	}
	if s.cfg.InventoryRetention == 0 {
		s.cfg.InventoryRetention = inventory.Retention(s.cfg.FlowRetention)
	}
	if s.flowStore, err = openFlowStore(filepath.Join(cfg.DataDir, "flows"), s.cfg.FlowRetention, s.cfg.FlowMaxBytes); err != nil {
		return fail(err)
	}
	if s.policy, err = newPolicyAPI(kv, inv, s.flowStore); err != nil {
		return fail(err)
	}
	s.policy.srv = s
	if s.enforce, err = newEnforcement(kv, inv, s.policy.repo); err != nil {
		return fail(err)
	}
	if s.Flows, err = flow.NewService(s.flowStore, inv, flow.Options{Window: cfg.FlowWindow, OnFlows: s.policy.onFlows, MaxBatchDecoded: maxBatchDecoded}); err != nil {
		return fail(err)
	}
	if err := s.persistAgentConfigs(); err != nil {
		return fail(err)
	}
	var tlsCfg *tls.Config
	if cfg.TLS {
		host, _, _ := net.SplitHostPort(cfg.Listen)
		if tlsCfg, err = s.tlsConfig(host); err != nil {
			return fail(err)
		}
		s.tls = true
	} else if err := checkInsecureListen(cfg.Listen); err != nil {
		return fail(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fail(fmt.Errorf("server: listen on %s: %w", cfg.Listen, err))
	}
	s.addr = ln.Addr().String()
	s.listener = limitListener(ln, cfg.MaxConns)
	ln = s.listener
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if err := s.startScanner(runCtx, filepath.Join(cfg.DataDir, "vuln")); err != nil {
		cancel()
		ln.Close()
		return fail(err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.Flows.Run(runCtx) //nolint:errcheck // returns nil when stopped
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.enforce.run(runCtx)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.compactInventory(runCtx)
	}()
	for _, c := range cfg.Clusters {
		conn := k8s.New(c.Name, c.Config, inv)
		s.connectors = append(s.connectors, conn)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := conn.Run(runCtx); err != nil && runCtx.Err() == nil {
				slog.Error("connector stopped", "cluster", c.Name, "err", err)
			}
		}()
	}
	s.metrics = s.newMetrics()
	h, err := s.handler()
	if err != nil {
		cancel()
		ln.Close()
		return fail(err)
	}
	s.httpSrv = newHTTPServer(h)
	s.httpSrv.TLSConfig = tlsCfg
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		serve := s.httpSrv.Serve
		if tlsCfg != nil {
			// Plain HTTP on the HTTPS port gets a 400 saying so.
			serve = func(ln net.Listener) error { return s.httpSrv.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("http server", "err", err)
		}
	}()
	slog.Info("palisade server started", "listen", s.URL(), "data", cfg.DataDir, "clusters", len(cfg.Clusters))
	return s, nil
}

// URL is the base URL the API is served on.
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.addr
	}
	return "http://" + s.addr
}

// Stop shuts the server down and closes its stores.
func (s *Server) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.httpSrv.Shutdown(ctx) //nolint:errcheck // closing anyway
	s.cancel()
	s.wg.Wait()
	err := s.Flows.Flush(true)
	if cerr := s.Vuln.Close(); err == nil {
		err = cerr
	}
	if cerr := s.flowStore.Close(); err == nil {
		err = cerr
	}
	if cerr := s.Inventory.Close(); err == nil {
		err = cerr
	}
	if cerr := s.kv.Close(); err == nil {
		err = cerr
	}
	return err
}

// Connectors returns the status of every connector.
func (s *Server) Connectors() []k8s.Status {
	out := make([]k8s.Status, 0, len(s.connectors))
	for _, c := range s.connectors {
		out = append(out, c.Status())
	}
	return out
}

// AgentToken is the legacy shared agent token of a plain-HTTP server
// ("" for a TLS server: its agents enroll).
func (s *Server) AgentToken() string { return s.cfg.AgentToken }

// agentToken reads, or creates once, the data directory's agent token.
func agentToken(dir string) (string, error) {
	path := filepath.Join(dir, "agent-token")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(buf)
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("server: write agent token: %w", err)
	}
	return tok, nil
}

const bucketAgentConfig = "agents.config"

// persistAgentConfigs restores the agents' configuration (their flow mode)
// and keeps it in the store from now on.
func (s *Server) persistAgentConfigs() error {
	err := s.kv.View(func(tx store.Tx) error {
		return tx.ForEach(bucketAgentConfig, "", func(node string, v []byte) error {
			var c flow.AgentConfig
			if json.Unmarshal(v, &c) == nil {
				s.Flows.Agents.SetConfig(node, c) //nolint:errcheck // a stored config was valid when stored
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("server: agent configuration: %w", err)
	}
	s.Flows.Agents.OnConfig = func(node string, c flow.AgentConfig) {
		b, _ := json.Marshal(c)
		if err := s.kv.Update(func(tx store.Tx) error { return tx.Put(bucketAgentConfig, node, b) }); err != nil {
			slog.Error("server: persist agent configuration", "node", node, "err", err)
		}
	}
	return nil
}

// inventoryCompactEvery is how often the inventory's history is compacted.
const inventoryCompactEvery = time.Hour

// compactInventory drops inventory history older than the retention, a
// minute after start and then hourly, until ctx is done.
func (s *Server) compactInventory(ctx context.Context) {
	wait := time.Minute
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = inventoryCompactEvery
		cutoff := time.Now().Add(-s.cfg.InventoryRetention)
		st, err := s.Inventory.Compact(cutoff)
		if err != nil {
			slog.Error("inventory: compaction failed; will retry", "err", err)
			continue
		}
		if st.Versions+st.Incarnations+st.Leases > 0 {
			slog.Info("inventory: compacted history", "before", cutoff.Format(time.RFC3339), "versions", st.Versions,
				"workloads", st.Incarnations, "leases", st.Leases, "kept", st.Kept)
		}
	}
}
