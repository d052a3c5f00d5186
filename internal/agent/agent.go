// Package agent is Palisade's node agent: it observes flows at a node's pod
// and node interfaces (eBPF tc counters, package capture), reads NAT
// mappings from conntrack (package conntrack), turns both into
// flow.Observations in conversation or detailed mode, and delivers them
// through a durable spool (package report).
//
// One Agent serves one node, i.e. one network namespace; several can run in
// one process (the lab runs one per node namespace):
//
//	err := agent.Run(ctx, agent.Config{Server: url, Node: "node1", NetNS: "/run/netns/node1", SpoolDir: dir})
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/palisade-dev/palisade/internal/agent/capture"
	"github.com/palisade-dev/palisade/internal/agent/conntrack"
	"github.com/palisade-dev/palisade/internal/agent/enforce"
	"github.com/palisade-dev/palisade/internal/agent/report"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/version"
	"github.com/palisade-dev/palisade/pkg/client"
)

// netnsDir is where `ip netns` keeps named network namespaces.
const netnsDir = "/run/netns"

// Config configures an Agent. Zero durations take the defaults noted.
type Config struct {
	Server string // base URL of the Palisade server
	Node   string // node name; also the agent name unless Agent is set
	Agent  string
	// Token is the legacy shared agent token of a plain-HTTP server
	// (tests, --insecure-listen). An agent of a TLS server has none: it
	// calls with the client certificate it enrolled for (EnrollToken,
	// StateDir; see Identity).
	Token string
	// EnrollToken is a one-time enrollment token (`palisade agent token
	// create --node NODE`): used on first start to get the node's client
	// certificate, kept in StateDir and reused (and renewed) afterwards.
	// A different token given later enrolls again.
	EnrollToken string
	// StateDir keeps the agent's identity (default
	// /var/lib/palisade/agent/NODE).
	StateDir string
	// CAFile is the server's CA (<data>/ca.crt) to trust; empty: the
	// system's roots.
	CAFile string
	// NetNS is the node's network namespace: an `ip netns` name (node1,
	// for /run/netns/node1) or a path (/run/netns/node1, /proc/PID/ns/net);
	// "" is the agent's own.
	NetNS string
	// Mode is the mode the agent starts in, flow.ConversationMode (default)
	// or flow.DetailedMode. The server's mode for the node takes precedence
	// as soon as the server answers (it is where operators change it:
	// `palisade agent mode NODE MODE`); Mode holds until then, and while
	// the server cannot be reached. A Mode set here and replaced by the
	// server's is logged once.
	Mode string
	// SpoolDir keeps unsent batches and the sequence number (default
	// /var/lib/palisade/agent/NODE).
	SpoolDir string
	// BPFFS is where the flow maps are pinned, per node, so a restarted
	// agent drains what was counted while it was down (default
	// /run/palisade/bpffs; "-" disables pinning).
	BPFFS string
	// DetachOnExit removes the classifier and the pinned maps when Run
	// returns. Without it they stay, and counting goes on until the next
	// agent for the node takes over.
	DetachOnExit bool
	// Uplinks names the node interfaces; with it set, every other veth
	// leading to another namespace is a pod interface. Without it, bridge
	// ports are pod interfaces. Classify overrides both.
	Uplinks  []string
	Classify Classifier `json:"-"`

	// Enforce programs the server's rule sets for the node and its pods
	// (internal/agent/enforce); they stay in force when the agent stops.
	Enforce bool
	// PodNetNS finds pods' namespaces for enforcement; default: the named
	// namespace under /run/netns (starting with PodNetNSPrefix) that holds
	// the pod's IP.
	PodNetNS       enforce.PodNamespaces `json:"-"`
	PodNetNSPrefix string

	DetailedInterval     time.Duration // 1 s: drain and report cadence in detailed mode
	ConversationInterval time.Duration // 15 s: summary window in conversation mode
	DrainInterval        time.Duration // 1 s: how often the kernel maps are drained in conversation mode
	ConfigPoll           time.Duration // 5 s
	HeartbeatInterval    time.Duration // 10 s
	MaxFlows             uint32        // flow map size (default 262144)
	MaxBatch             int           // observations per batch (default 5000)
	HTTPClient           *http.Client  `json:"-"`
	// identity is the agent's client certificate (mTLS servers).
	identity *Identity
	// API, when set, is the client for every call to the server (Server,
	// Token and HTTPClient are then ignored).
	API *client.Client `json:"-"`
	Log *slog.Logger   `json:"-"`
}

func (c *Config) defaults() error {
	if c.Node == "" {
		return errors.New("agent: node name required")
	}
	if c.Server == "" {
		return errors.New("agent: server URL required")
	}
	if c.Agent == "" {
		c.Agent = c.Node
	}
	if c.NetNS != "" && !strings.Contains(c.NetNS, "/") {
		c.NetNS = filepath.Join(netnsDir, c.NetNS) // an `ip netns` name
	}
	switch c.Mode {
	case "":
		c.Mode = flow.ConversationMode
	case flow.ConversationMode, flow.DetailedMode:
	default:
		return fmt.Errorf("agent: mode %q: want %q or %q", c.Mode, flow.ConversationMode, flow.DetailedMode)
	}
	if c.SpoolDir == "" {
		c.SpoolDir = filepath.Join("/var/lib/palisade/agent", c.Node)
	}
	if c.BPFFS == "" {
		c.BPFFS = "/run/palisade/bpffs"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.DetailedInterval, time.Second)
	def(&c.ConversationInterval, 15*time.Second)
	def(&c.DrainInterval, time.Second)
	def(&c.ConfigPoll, 5*time.Second)
	def(&c.HeartbeatInterval, 10*time.Second)
	if c.StateDir == "" {
		c.StateDir = filepath.Join("/var/lib/palisade/agent", c.Node)
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.API == nil && c.HTTPClient == nil && strings.HasPrefix(c.Server, "https://") {
		if c.Token != "" {
			return fmt.Errorf("agent: --token is the shared token of a plain-HTTP server; a TLS server (%s) takes enrolled agents only: enroll with --enroll-token (palisade agent token create --node %s)", c.Server, c.Node)
		}
		if err := c.openIdentity(); err != nil {
			return err
		}
	}
	if c.API == nil {
		api, err := client.New(client.Options{Server: c.Server, Token: c.Token, HTTP: c.HTTPClient, CAFile: c.CAFile,
			Timeout: 10 * time.Second, UserAgent: "palisade-agent"})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		c.API = api
	}
	if c.HTTPClient == nil {
		// For the calls not made through API (enforcement's long poll):
		// the same transport, trusting the same CA.
		c.HTTPClient = c.API.HTTPClient()
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	c.Log = c.Log.With("node", c.Node)
	if c.Classify == nil {
		c.Classify = DefaultClassifier(c.Uplinks)
	}
	return nil
}

// Health is the agent's state and counters.
type Health struct {
	Node       string                  `json:"node"`
	Mode       string                  `json:"mode"`
	Interfaces []flow.ObservationPoint `json:"interfaces"`
	FlowsSeen  uint64                  `json:"flowsSeen"` // distinct 5-tuples per interface
	Capture    capture.Stats           `json:"capture"`
	Conntrack  conntrack.Counters      `json:"conntrack"`
	Report     report.Counters         `json:"report"`
}

// Agent observes one node. Create with New, start with Run.
type Agent struct {
	cfg  Config
	mode atomic.Value // string
	// modeCh wakes the loop on a mode change.
	modeCh chan struct{}

	cap      *capture.Capture
	rep      *report.Reporter
	ct       *conntrack.Watcher
	ifs      *ifaces
	agg      *aggregator
	seen     atomic.Uint64
	ready    chan struct{}
	statsMu  sync.Mutex
	lastStat capture.Stats
	mark     string // id of the open conversation window
	enforcer atomic.Pointer[enforce.Enforcer]
	// modeFromConfig is Config.Mode when set explicitly; the first mode
	// from the server that differs from it is logged.
	modeFromConfig string
	serverMode     sync.Once
}

// New validates the configuration.
func New(cfg Config) (*Agent, error) {
	explicit := cfg.Mode
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, modeCh: make(chan struct{}, 1), ready: make(chan struct{}), modeFromConfig: explicit}
	a.mode.Store(cfg.Mode)
	return a, nil
}

// Run runs an agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// Ready is closed once the classifier is attached to the node's interfaces
// present at start.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Mode is the current mode.
func (a *Agent) Mode() string { return a.mode.Load().(string) }

// SetMode switches mode; the current conversation window is reported first.
func (a *Agent) SetMode(m string) error {
	if m != flow.ConversationMode && m != flow.DetailedMode {
		return fmt.Errorf("mode %q: want %q or %q", m, flow.ConversationMode, flow.DetailedMode)
	}
	if a.mode.Swap(m) != m {
		a.cfg.Log.Info("mode changed", "mode", m)
		select {
		case a.modeCh <- struct{}{}:
		default:
		}
	}
	return nil
}

// Health returns the agent's counters.
func (a *Agent) Health() Health {
	h := Health{Node: a.cfg.Node, Mode: a.Mode(), FlowsSeen: a.seen.Load()}
	if a.ifs != nil {
		h.Interfaces = a.ifs.snapshot()
	}
	a.statsMu.Lock()
	h.Capture = a.lastStat
	a.statsMu.Unlock()
	if a.ct != nil {
		h.Conntrack = a.ct.Counters()
	}
	if a.rep != nil {
		h.Report = a.rep.Counters()
	}
	return h
}

// Run observes and reports until ctx ends, then reports what is left.
func (a *Agent) Run(ctx context.Context) (err error) {
	cfg := a.cfg
	ctx, stopIdentity := context.WithCancel(ctx)
	defer stopIdentity()
	if err := a.ensureIdentity(ctx); err != nil {
		return err
	}
	nsh, err := openNS(cfg.NetNS)
	if err != nil {
		return err
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", cfg.NetNS, err)
	}
	defer h.Close()

	pin := ""
	if cfg.BPFFS != "-" {
		pin = capture.PinDirFor(cfg.BPFFS, cfg.Node)
	}
	a.cap, err = capture.Open(capture.Options{PinDir: pin, MaxFlows: cfg.MaxFlows})
	if err != nil {
		return err
	}
	defer a.cap.Close()

	if err := conntrack.Enable(cfg.NetNS); err != nil {
		return err
	}
	a.ct = conntrack.NewWatcher(conntrack.Config{Node: cfg.Node, NSPath: cfg.NetNS, Log: cfg.Log})

	a.rep, err = report.Open(report.Config{
		API: cfg.API, Node: cfg.Node, Agent: cfg.Agent,
		SpoolDir: cfg.SpoolDir, MaxBatch: cfg.MaxBatch, Log: cfg.Log,
		OnResponse: a.onIngestResponse,
	})
	if err != nil {
		return err
	}

	a.ifs = &ifaces{
		node: cfg.Node, h: h, ns: nsh, classify: cfg.Classify,
		attach:   func(i int) error { return a.cap.Attach(h, i) },
		points:   map[int]flow.ObservationPoint{},
		attached: map[int]bool{},
		nsNames:  map[int]string{},
	}
	a.agg = newAggregator(cfg.Node, a.ifs.point)
	a.mark = newMark()
	if err := a.restoreWindow(); err != nil {
		return fmt.Errorf("conversation checkpoint: %w", err)
	}
	if a.Mode() == flow.DetailedMode && len(a.agg.conv) > 0 {
		// Killed in conversation mode, back in detailed: report the
		// resumed window now, as it is.
		if err := a.rep.SubmitMarked(a.agg.closeWindow(), nil, a.mark); err != nil {
			return err
		}
		a.mark = newMark()
		if err := a.saveWindow(); err != nil {
			return err
		}
	}

	done := make(chan struct{})
	defer close(done)
	updates, err := a.followLinks(nsh, h, done)
	if err != nil {
		return err
	}
	close(a.ready)
	if cfg.DetachOnExit {
		defer a.detach(h)
	}

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopBG(); wg.Wait() }()
	for _, f := range []func(context.Context){
		func(c context.Context) { a.rep.Run(c) },
		func(c context.Context) { _ = a.ct.Run(c) },
		a.pollConfig,
		a.heartbeats,
		a.runEnforcement,
	} {
		wg.Add(1)
		go func() { defer wg.Done(); f(bg) }()
	}

	drain := time.NewTicker(a.drainEvery())
	defer drain.Stop()
	windowEnd := time.Now().Add(cfg.ConversationInterval)
	mode := a.Mode()
	for {
		select {
		case <-ctx.Done():
			a.tick(mode, true)
			a.flush(5 * time.Second)
			return nil
		case u, ok := <-updates:
			if !ok {
				// The subscription broke (e.g. socket overrun): start
				// over, listing links again so none is missed.
				cfg.Log.Warn("link subscription lost; resubscribing")
				time.Sleep(100 * time.Millisecond)
				if updates, err = a.followLinks(nsh, h, done); err != nil {
					return err
				}
				continue
			}
			a.onLink(u)
		case <-a.modeCh:
			if m := a.Mode(); m != mode {
				a.tick(mode, true) // close the old mode's window
				mode = m
				windowEnd = time.Now().Add(cfg.ConversationInterval)
				drain.Reset(a.drainEvery())
			}
		case now := <-drain.C:
			closeWin := mode == flow.DetailedMode || !now.Before(windowEnd)
			a.tick(mode, closeWin)
			if closeWin && mode == flow.ConversationMode {
				windowEnd = windowEnd.Add(cfg.ConversationInterval)
				if windowEnd.Before(now) {
					windowEnd = now.Add(cfg.ConversationInterval)
				}
			}
		}
	}
}

// followLinks subscribes to link changes in the node namespace, then lists
// the links present and attaches to them (subscribing first, so no link
// falls between the two).
func (a *Agent) followLinks(nsh netns.NsHandle, h *netlink.Handle, done chan struct{}) (chan netlink.LinkUpdate, error) {
	updates := make(chan netlink.LinkUpdate, 1024)
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace: &nsh,
		ErrorCallback: func(err error) {
			select {
			case <-done:
			default:
				a.cfg.Log.Warn("link subscription", "err", err)
			}
		},
		ReceiveBufferSize: 4 << 20,
	}); err != nil {
		return nil, fmt.Errorf("link subscription: %w", err)
	}
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if err := a.ifs.update(l); err != nil {
			a.cfg.Log.Warn("attach", "iface", l.Attrs().Name, "err", err)
		}
	}
	return updates, nil
}

func (a *Agent) drainEvery() time.Duration {
	if a.Mode() == flow.DetailedMode {
		return a.cfg.DetailedInterval
	}
	return min(a.cfg.DrainInterval, a.cfg.ConversationInterval)
}

func (a *Agent) onLink(u netlink.LinkUpdate) {
	switch u.Header.Type {
	case unix.RTM_NEWLINK:
		// Bridge-port notifications (AF_BRIDGE) carry no link kind: read
		// the link afresh rather than trust the message.
		l, err := a.ifs.h.LinkByIndex(int(u.Index))
		if err != nil {
			return // gone again
		}
		if err := a.ifs.update(l); err != nil {
			a.cfg.Log.Warn("attach", "iface", l.Attrs().Name, "err", err)
		}
	case unix.RTM_DELLINK:
		a.ifs.gone(int(u.Index))
	}
}

// tick drains the kernel maps; emit reports the detailed records or the
// closed conversation window.
func (a *Agent) tick(mode string, emit bool) {
	recs, inner, err := a.cap.Drain()
	if err != nil {
		a.cfg.Log.Error("drain flow maps", "err", err)
	}
	if size := a.cap.FlowMapSize(); uint64(len(recs)) > uint64(size)*3/4 {
		// The LRU map evicts un-drained counts when full: drain more
		// often or raise MaxFlows.
		a.cfg.Log.Warn("flow map nearly full between drains", "entries", len(recs), "size", size)
	}
	var obs []flow.Observation
	mark := ""
	if mode == flow.DetailedMode {
		obs = a.agg.detailed(recs, inner)
	} else {
		a.agg.accumulate(recs, inner)
		if emit {
			obs = a.agg.closeWindow()
			if len(obs) > 0 {
				mark = a.mark
			}
			a.mark = newMark()
		} else if len(recs) > 0 {
			if err := a.saveWindow(); err != nil {
				a.cfg.Log.Error("checkpoint conversation window", "err", err)
			}
		}
	}
	a.agg.prune(time.Now(), 5*time.Second, 2*time.Minute, 30*time.Second)
	a.seen.Store(a.agg.seen)
	if st, err := a.cap.Stats(); err == nil {
		a.statsMu.Lock()
		a.lastStat = st
		a.statsMu.Unlock()
	}
	nat := a.ct.Take()
	if err := a.rep.SubmitMarked(obs, nat, mark); err != nil {
		a.cfg.Log.Error("spool observations", "err", err, "observations", len(obs))
	}
	if mark != "" {
		// Reported (durably, with the mark): the checkpoint is spent.
		if err := a.saveWindow(); err != nil {
			a.cfg.Log.Error("checkpoint conversation window", "err", err)
		}
	}
}

// flush gives the reporter a moment to deliver the last batches; what is
// not delivered stays spooled for the next run.
func (a *Agent) flush(wait time.Duration) {
	deadline := time.Now().Add(wait)
	for a.rep.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

func (a *Agent) detach(h *netlink.Handle) {
	for idx := range a.ifs.attached {
		_ = a.cap.Detach(h, idx)
	}
	if err := a.cap.Unpin(); err != nil {
		a.cfg.Log.Warn("unpin flow maps", "err", err)
	}
}

func (a *Agent) onIngestResponse(body []byte) {
	var r flow.IngestResponse
	if json.Unmarshal(body, &r) == nil && r.Config.Mode != "" {
		_ = a.setServerMode(r.Config.Mode)
	}
}

// setServerMode applies the mode the server holds for the node, which
// takes precedence over Config.Mode; the first time it replaces an
// explicitly configured mode, it says so and how to change it.
func (a *Agent) setServerMode(m string) error {
	if err := a.SetMode(m); err != nil {
		return err
	}
	a.serverMode.Do(func() {
		if own := a.modeFromConfig; own != "" && own != m {
			a.cfg.Log.Warn(fmt.Sprintf("mode %s from --mode replaced by %s from the server; change it with `palisade agent mode %s %s`",
				own, m, a.cfg.Node, own))
		}
	})
	return nil
}

func (a *Agent) pollConfig(ctx context.Context) {
	every(ctx, a.cfg.ConfigPoll, true, func() {
		if c, err := a.cfg.API.AgentConfig(ctx, a.cfg.Node); err == nil && c.Mode != "" {
			if err := a.setServerMode(c.Mode); err != nil {
				a.cfg.Log.Warn("server config", "err", err)
			}
		}
	})
}

func (a *Agent) heartbeats(ctx context.Context) {
	every(ctx, a.cfg.HeartbeatInterval, false, func() {
		h := a.Health()
		hb := flow.Heartbeat{
			Agent:        a.cfg.Agent,
			FlowsSeen:    h.FlowsSeen,
			FlowsSent:    h.Report.ObservationsSent,
			FlowsDropped: h.Report.ObservationsDropped + h.Capture.InsertFails,
			Spooled:      h.Report.ObservationsSpooled,
			Mode:         h.Mode,
			Version:      version.Version,
			Commit:       version.Commit,
		}
		if _, err := a.cfg.API.Heartbeat(ctx, a.cfg.Node, hb); err != nil {
			if report.IsRefusal(err) {
				a.cfg.Log.Error("the server refuses this agent's heartbeat", "err", err)
			} else {
				a.cfg.Log.Debug("heartbeat", "err", err)
			}
		}
	})
}

// every calls fn every d (and at once if now) until ctx ends.
func every(ctx context.Context, d time.Duration, now bool, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	if now {
		fn()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

func openNS(path string) (netns.NsHandle, error) {
	if path == "" {
		h, err := netns.Get()
		if err != nil {
			return h, fmt.Errorf("own netns: %w", err)
		}
		return h, nil
	}
	if _, err := os.Stat(path); err != nil {
		return netns.None(), fmt.Errorf("netns %s: %w (give an `ip netns list` name or a path)", path, err)
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		return h, fmt.Errorf("netns %s: %w", path, err)
	}
	return h, nil
}
