package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent"
	"github.com/palisade-dev/palisade/internal/devkube"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/internal/testutil"
)

var modes = []lab.Mode{lab.ModeDirect, lab.ModeVXLAN}

// kubes holds one private control plane per lab mode: a lab owns the
// sock-shop namespace of its API server, so the two labs cannot share one.
var kubes = map[lab.Mode]*devkube.Cluster{}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: these tests need root (lab network namespaces, iptables, eBPF tc programs): run them as root")
		os.Exit(1)
	}
	var stops []func()
	stopAll := func() {
		for _, s := range stops {
			s()
		}
	}
	for _, mode := range modes {
		c, stop, err := devkube.StartForTests()
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			stopAll()
			os.Exit(1)
		}
		kubes[mode], stops = c, append(stops, stop)
	}
	code := m.Run()
	stopAll()
	os.Exit(code)
}

// Pipeline timing of the tests. The server waits flowWindow for more
// observation points of a flow; agents summarise conversations every
// convInterval (cases 1-6; case 7 uses the real 15 s) and drain the kernel
// maps every drainEvery.
const (
	flowWindow   = 3 * time.Second
	convInterval = 5 * time.Second
	drainEvery   = 500 * time.Millisecond
)

// env is one lab (one mode) with its server and one agent per node.
type env struct {
	mode      lab.Mode
	lab       *lab.Lab
	st        lab.Status
	kube      *devkube.Cluster
	dataDir   string
	spoolRoot string
	listen    string // the server's host:port, kept across restarts
	byVeth    map[string]string

	mu     sync.Mutex
	srv    *server.Server
	agents map[string]*runAgent // by node name

	// srcPorts numbers the client ports exchange binds: each connection
	// its own 5-tuple, whatever port the kernel would reuse.
	srcPorts atomic.Uint32
}

type runAgent struct {
	a        *agent.Agent
	cancel   context.CancelFunc
	done     chan error
	ready    time.Time // the agent's conversation windows start here
	interval time.Duration
	drain    time.Duration
}

type agentOpts struct {
	conv   time.Duration // conversation window
	drain  time.Duration
	detach bool // remove the classifier and pinned maps on exit
	// enforce: the agent also programs the server's enforcement rules
	// (palisade agent --enforce).
	enforce bool
}

func newEnv(t *testing.T, mode lab.Mode) *env {
	t.Helper()
	return newEnvNamed(t, mode, "e2e"+string(mode))
}

// newEnvNamed is newEnv with a lab of its own name, for tests that may run
// while another process runs the flow tests' labs.
func newEnvNamed(t *testing.T, mode lab.Mode, name string) *env {
	t.Helper()
	e := &env{mode: mode, kube: kubes[mode], agents: map[string]*runAgent{}, byVeth: map[string]string{}}
	dir := t.TempDir()
	e.dataDir, e.spoolRoot = filepath.Join(dir, "server"), filepath.Join(dir, "agents")
	ctx := context.Background()
	start := time.Now()
	l, err := lab.Up(ctx, lab.Config{
		Name: name, Nodes: 2, Mode: mode, App: "sockshop", RestConfig: e.kube.Config,
		// Probes are node→pod connections every period: they would add
		// flows to the counts these tests check.
		ProbePeriod: -1,
	})
	if err != nil {
		t.Fatalf("lab up (%s): %v", mode, err)
	}
	e.lab = l
	t.Cleanup(func() {
		e.stopAgents(t)
		e.mu.Lock()
		if e.srv != nil {
			if err := e.srv.Stop(); err != nil {
				t.Errorf("server stop: %v", err)
			}
		}
		e.mu.Unlock()
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	e.st = l.Status()
	if len(e.st.Nodes) != 2 || len(e.st.Pods) < 8 {
		t.Fatalf("lab: want 2 nodes and the 8 sock-shop pods, have %d nodes, %d pods", len(e.st.Nodes), len(e.st.Pods))
	}
	for _, p := range e.st.Pods {
		e.byVeth[p.HostVeth] = p.Namespace + "/" + p.Name
	}
	if err := os.MkdirAll(e.dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The server restarts on the same address in case 8: take a port below
	// the ephemeral range, so no other test's listener on :0 grabs it while
	// the server is down.
	e.startServer(t, stablePort(t))
	e.listen = strings.TrimPrefix(e.server().URL(), "http://")
	// Enrichment is from the inventory at the flow's time: wait until the
	// connector has every pod.
	waitFor(t, 60*time.Second, "inventory has every lab pod and node", func() bool {
		for _, p := range e.st.Pods {
			if _, ok := e.server().Inventory.WorkloadAt(p.IP, time.Now()); !ok {
				return false
			}
		}
		for _, n := range e.st.Nodes {
			if _, ok := e.server().Inventory.WorkloadAt(n.IP, time.Now()); !ok {
				return false
			}
		}
		return true
	})
	e.startAgents(t, agentOpts{conv: convInterval, drain: drainEvery, detach: true})
	t.Logf("%s lab, server and agents up in %s", mode, time.Since(start).Round(time.Millisecond))
	return e
}

func (e *env) server() *server.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv
}

func (e *env) startServer(t *testing.T, listen string) {
	t.Helper()
	s, err := server.Start(context.Background(), server.Config{
		DataDir: e.dataDir, Listen: listen,
		Clusters:   []server.Cluster{{Name: "lab", Config: e.kube.Config}},
		FlowWindow: flowWindow,
		// Nothing may be pulled from outside this machine.
		ScanRegistries: []string{"127.0.0.1"}, // any loopback registry (the console test serves one)
	})
	if err != nil {
		t.Fatalf("server start: %v", err)
	}
	e.mu.Lock()
	e.srv = s
	e.mu.Unlock()
}

func (e *env) stopServer(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	s := e.srv
	e.srv = nil
	e.mu.Unlock()
	if err := s.Stop(); err != nil {
		t.Fatalf("server stop: %v", err)
	}
}

func uplinks(n lab.NodeInfo) []string {
	u := []string{n.Uplink}
	if n.VXLAN != "" {
		u = append(u, n.VXLAN)
	}
	return u
}

// startAgent starts the agent of one node and waits until it observes the
// node's interfaces.
func (e *env) startAgent(t *testing.T, n lab.NodeInfo, o agentOpts) *runAgent {
	t.Helper()
	ups := uplinks(n)
	mode := flow.ConversationMode
	if s := e.server(); s != nil {
		mode = s.Flows.Agents.Config(n.Name).Mode
	}
	a, err := agent.New(agent.Config{
		Server: "http://" + e.listen, Node: n.Name, Token: e.server().AgentToken(), NetNS: n.NetNSPath,
		Mode: mode, Uplinks: ups, SpoolDir: filepath.Join(e.spoolRoot, n.Name), DetachOnExit: o.detach,
		Enforce: o.enforce, PodNetNSPrefix: lab.Prefix(e.st.Name) + "pod-",
		ConversationInterval: o.conv, DrainInterval: o.drain, DetailedInterval: time.Second,
		ConfigPoll: time.Second, HeartbeatInterval: 2 * time.Second,
		Classify: agent.PodVeths(func(veth string) (string, bool) { p, ok := e.byVeth[veth]; return p, ok }, ups...),
	})
	if err != nil {
		t.Fatalf("agent %s: %v", n.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runAgent{a: a, cancel: cancel, done: make(chan error, 1), interval: o.conv, drain: o.drain}
	go func() { ra.done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
		ra.ready = time.Now()
	case err := <-ra.done:
		cancel()
		t.Fatalf("agent %s stopped before it was ready: %v", n.Name, err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatalf("agent %s not ready within 30 s", n.Name)
	}
	e.mu.Lock()
	e.agents[n.Name] = ra
	e.mu.Unlock()
	return ra
}

func (e *env) startAgents(t *testing.T, o agentOpts) {
	t.Helper()
	for _, n := range e.st.Nodes {
		e.startAgent(t, n, o)
	}
}

// stopAgent cancels a node's agent and waits for it to report its last
// window and return.
func (e *env) stopAgent(t *testing.T, node string) {
	t.Helper()
	e.mu.Lock()
	ra := e.agents[node]
	delete(e.agents, node)
	e.mu.Unlock()
	if ra == nil {
		return
	}
	ra.cancel()
	select {
	case err := <-ra.done:
		if err != nil {
			t.Errorf("agent %s: %v", node, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("agent %s did not stop within 30 s", node)
	}
}

func (e *env) stopAgents(t *testing.T) {
	for _, n := range e.st.Nodes {
		e.stopAgent(t, n.Name)
	}
}

// restartAgents replaces every agent with one configured by o. The agents
// being stopped detach (nothing counted is pending: callers wait for
// their flows first).
func (e *env) restartAgents(t *testing.T, o agentOpts) {
	t.Helper()
	e.stopAgents(t)
	e.startAgents(t, o)
}

// slot returns when to start a burst of traffic lasting up to burst so that
// it falls inside one conversation window of every agent: a window closes
// at the first drain at or after its nominal end, so the burst keeps clear
// of [end, end+drain+lag].
func (e *env) slot(t *testing.T, burst time.Duration) time.Time {
	t.Helper()
	e.mu.Lock()
	var as []*runAgent
	for _, a := range e.agents {
		as = append(as, a)
	}
	e.mu.Unlock()
	const lag = 700 * time.Millisecond
	now := time.Now().Add(100 * time.Millisecond)
	for d := time.Duration(0); d < 3*time.Minute; d += 20 * time.Millisecond {
		at := now.Add(d)
		ok := true
		for _, a := range as {
			frac := at.Sub(a.ready) % a.interval
			if frac < a.drain+lag || frac > a.interval-burst-300*time.Millisecond {
				ok = false
				break
			}
		}
		if ok {
			return at
		}
	}
	t.Fatalf("no common window slot of %s for the agents", burst)
	return time.Time{}
}

// settled returns when flows of traffic ending at end are surely stored:
// the window holding end closed, its batch arrived, the server's flow
// window passed and the flush ran.
func (e *env) settled(end time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	last := end
	for _, a := range e.agents {
		frac := end.Sub(a.ready) % a.interval
		closeAt := end.Add(a.interval - frac + a.drain)
		if closeAt.After(last) {
			last = closeAt
		}
	}
	return last.Add(time.Second + flowWindow + 2*time.Second)
}

func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, within, what, cond)
}

// search returns the flows overlapping [from, now+1m] matching filter.
func (e *env) search(t *testing.T, filter string, from time.Time) []flow.Flow {
	t.Helper()
	fs, err := e.server().Flows.Search(filter, from, time.Now().Add(time.Minute), 10000)
	if err != nil {
		t.Fatalf("search %q: %v", filter, err)
	}
	return fs
}

// --- traffic -------------------------------------------------------------

func podKey(p lab.PodInfo) string { return p.Namespace + "/" + p.Name }

// get makes one HTTP request (one TCP connection) from a pod.
func (e *env) get(t *testing.T, from lab.PodInfo, addr string) string {
	t.Helper()
	body, err := e.lab.Get(podKey(from), addr)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", addr, podKey(from), err)
	}
	return body
}

// extGet makes one HTTP request from the external host.
func (e *env) extGet(t *testing.T, addr string) string {
	t.Helper()
	body, err := app.Get(e.st.External[0].NetNSPath, addr, 3*time.Second)
	if err != nil {
		t.Fatalf("GET %s from the external host: %v", addr, err)
	}
	return body
}

// --- topology helpers ----------------------------------------------------

func (e *env) podsOn(node string) []lab.PodInfo {
	var out []lab.PodInfo
	for _, p := range e.st.Pods {
		if p.Node == node {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (e *env) node(name string) lab.NodeInfo {
	n, _ := e.st.Node(name)
	return n
}

func (e *env) other(node string) lab.NodeInfo {
	for _, n := range e.st.Nodes {
		if n.Name != node {
			return n
		}
	}
	return lab.NodeInfo{}
}

// serviceOf returns the ClusterIP service in front of pod p, if any.
func (e *env) serviceOf(p lab.PodInfo) (lab.ServiceInfo, bool) {
	s, ok := e.st.Service(p.Namespace, p.App)
	if !ok || s.ClusterIP == "" || s.ClusterIP == "None" || len(s.Ports) == 0 {
		return lab.ServiceInfo{}, false
	}
	return s, true
}

func hostPort(ip string, port int32) string {
	return netip.AddrPortFrom(netip.MustParseAddr(ip), uint16(port)).String()
}

// --- flow assertions -----------------------------------------------------

// point names an observation point as node/iface.
func point(node, iface string) string { return node + "/" + iface }

func pointsOf(f flow.Flow) []string {
	var out []string
	for _, p := range f.Points {
		out = append(out, point(p.Node, p.Interface))
	}
	sort.Strings(out)
	return out
}

func podPoint(p lab.PodInfo) string { return point(p.Node, p.HostVeth) }

// select_ returns the flows src→dst:dport of proto.
func selectFlows(fs []flow.Flow, proto, src, dst string, dport uint16) []flow.Flow {
	var out []flow.Flow
	for _, f := range fs {
		if f.Proto == proto && f.Src.IP == src && f.Dst.IP == dst && f.Dst.Port == dport {
			out = append(out, f)
		}
	}
	return out
}

func describe(fs []flow.Flow) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, "\n  %s %s %s:%d -> %s:%d conns=%d pkts=%d/%d bytes=%d/%d flags=%v points=%v related=%v tunnel=%q [%s .. %s]",
			f.ID, f.Proto, f.Src.IP, f.Src.Port, f.Dst.IP, f.Dst.Port, f.Conns, f.FwdPackets, f.RevPackets, f.FwdBytes, f.RevBytes,
			f.Flags, pointsOf(f), f.Related, f.Tunnel, f.Start.Format("15:04:05.000"), f.End.Format("15:04:05.000"))
	}
	return b.String()
}

// one returns the single flow proto src→dst:dport among fs, failing
// otherwise.
func one(t *testing.T, fs []flow.Flow, what, proto, src, dst string, dport uint16) flow.Flow {
	t.Helper()
	got := selectFlows(fs, proto, src, dst, dport)
	if len(got) != 1 {
		t.Fatalf("%s: want exactly one flow %s %s -> %s:%d, have %d:%s\nall flows:%s", what, proto, src, dst, dport, len(got), describe(got), describe(fs))
	}
	return got[0]
}

func wantPoints(t *testing.T, what string, f flow.Flow, want ...string) {
	t.Helper()
	sort.Strings(want)
	if got := pointsOf(f); !slices.Equal(got, want) {
		t.Errorf("%s: observed at %v, want %v%s", what, got, want, describe([]flow.Flow{f}))
	}
}

func relatedTo(f flow.Flow, id, reason string) bool {
	for _, r := range f.Related {
		if r.ID == id && r.Reason == reason {
			return true
		}
	}
	return false
}

// wantRelated checks a and b are related with reason, both ways.
func wantRelated(t *testing.T, what string, a, b flow.Flow, reason string) {
	t.Helper()
	if !relatedTo(a, b.ID, reason) || !relatedTo(b, a.ID, reason) {
		t.Errorf("%s: flows not related both ways as %q:%s", what, reason, describe([]flow.Flow{a, b}))
	}
}

func wantConns(t *testing.T, what string, f flow.Flow, n int) {
	t.Helper()
	if f.Conns != uint64(n) {
		t.Errorf("%s: conns %d, want %d%s", what, f.Conns, n, describe([]flow.Flow{f}))
	}
}

// stablePort returns a free 127.0.0.1 address with a port below the
// kernel's ephemeral range (32768 and up).
func stablePort(t *testing.T) string {
	t.Helper()
	for i := 0; i < 200; i++ {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(10000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port in 20000-29999")
	return ""
}
