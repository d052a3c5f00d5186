package agent_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent"
	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/flow"
)

// server is a stand-in for the Palisade server: it validates batches with
// the server's own rules, keeps observations by (Agent, Seq), serves the
// node's mode, and can be taken down.
type server struct {
	t        *testing.T
	mu       sync.Mutex
	mode     string
	down     bool
	obs      map[seqKey]flow.Observation
	dups     int
	nat      []flow.NAT
	beats    []flow.Heartbeat
	invalid  []string
	received int
}

type seqKey struct {
	agent string
	seq   uint64
}

func newServer(t *testing.T, mode string) (*server, string) {
	s := &server{t: t, mode: mode, obs: map[seqKey]flow.Observation{}}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs.URL
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if r.Header.Get("Authorization") != "Bearer tok" {
		http.Error(w, "unauthenticated", http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == http.MethodPost && filepath.Base(r.URL.Path) == "flows":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var b flow.Batch
		if err := json.NewDecoder(zr).Decode(&b); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		if err := b.Validate(); err != nil {
			s.invalid = append(s.invalid, err.Error())
			http.Error(w, err.Error(), 400)
			return
		}
		s.received++
		for _, o := range b.Observations {
			k := seqKey{o.Agent, o.Seq}
			if _, dup := s.obs[k]; dup {
				s.dups++
			}
			s.obs[k] = o
		}
		s.nat = append(s.nat, b.NAT...)
		_ = json.NewEncoder(w).Encode(flow.IngestResponse{Accepted: len(b.Observations), Config: flow.AgentConfig{Mode: s.mode}})
	case r.Method == http.MethodGet && filepath.Base(r.URL.Path) == "config":
		_ = json.NewEncoder(w).Encode(flow.AgentConfig{Mode: s.mode})
	case r.Method == http.MethodPost && filepath.Base(r.URL.Path) == "heartbeat":
		var hb flow.Heartbeat
		_ = json.NewDecoder(r.Body).Decode(&hb)
		s.beats = append(s.beats, hb)
	default:
		http.NotFound(w, r)
	}
}

func (s *server) setMode(m string) { s.mu.Lock(); s.mode = m; s.mu.Unlock() }
func (s *server) setDown(d bool)   { s.mu.Lock(); s.down = d; s.mu.Unlock() }

// observations returns the stored observations (one per (Agent, Seq)).
func (s *server) observations() []flow.Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.invalid) > 0 {
		s.t.Fatalf("server refused batches: %v", s.invalid)
	}
	out := make([]flow.Observation, 0, len(s.obs))
	for _, o := range s.obs {
		out = append(out, o)
	}
	return out
}

type running struct {
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan error
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
}

func start(t *testing.T, cfg agent.Config) *running {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = "tok"
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = t.TempDir()
	}
	if cfg.BPFFS == "" {
		cfg.BPFFS = "-"
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{a: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	select {
	case <-a.Ready():
	case err := <-r.done:
		t.Fatalf("agent: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("agent not ready")
	}
	t.Cleanup(cancel)
	return r
}

// detailedOnNode1 builds a two-node cluster and runs a detailed-mode agent
// (200 ms records) on node1.
func detailedOnNode1(t *testing.T, mode string, heartbeat time.Duration) (*agenttest.Cluster, *server, *running) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes(mode)
	srv, url := newServer(t, flow.DetailedMode)
	ag := start(t, agent.Config{Server: url, Node: "node1", NetNS: agenttest.Path(cl.Nodes[0].NS), Mode: flow.DetailedMode,
		DetailedInterval: 200 * time.Millisecond, HeartbeatInterval: heartbeat})
	return cl, srv, ag
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type total struct {
	fwdP, fwdB, revP, revB, conns, newConns uint64
	flags                                   map[string]bool
	records                                 int
	points                                  map[string]flow.ObservationPoint
}

// sum adds up the observations matching fn.
func sum(obs []flow.Observation, fn func(o flow.Observation) bool) total {
	t := total{flags: map[string]bool{}, points: map[string]flow.ObservationPoint{}}
	for _, o := range obs {
		if !fn(o) {
			continue
		}
		t.records++
		t.fwdP += o.FwdPackets
		t.fwdB += o.FwdBytes
		t.revP += o.RevPackets
		t.revB += o.RevBytes
		t.conns += o.Conns
		t.newConns += o.NewConns
		for _, f := range o.Flags {
			t.flags[f] = true
		}
		t.points[o.Point.Interface] = o.Point
	}
	return t
}

func is(o flow.Observation, iface string, client netip.AddrPort, server string) bool {
	return o.Point.Interface == iface && o.Tuple.SrcIP == client.Addr().String() &&
		(o.Tuple.SrcPort == client.Port() || o.Mode == flow.ConversationMode) &&
		netip.AddrPortFrom(netip.MustParseAddr(o.Tuple.DstIP), o.Tuple.DstPort).String() == server
}

// TestAgentIntraNodeDetailed: pod1→pod2 on one node, detailed mode; each
// connection is reported at both pod interfaces with the kernel's exact
// packet counts both ways, SYN/SYN-ACK/FIN, and never at the uplink.
func TestAgentIntraNodeDetailed(t *testing.T) {
	cl, srv, ag := detailedOnNode1(t, "direct", 200*time.Millisecond)
	p1, p2 := cl.Pod("p1"), cl.Pod("p2")

	ts, err := agenttest.ListenTCP(p2.NS, p2.IP+":8080", 3000)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	var conns []agenttest.Conn
	for i := 0; i < 5; i++ {
		c, err := agenttest.Exchange(p1.NS, p2.IP+":8080", 20000+i*1000)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, 5*time.Second, "a heartbeat counting flows", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for _, b := range srv.beats {
			if b.FlowsSeen > 0 && b.FlowsSent > 0 {
				return true
			}
		}
		return false
	})
	ag.stop(t)

	obs := srv.observations()
	for i, c := range conns {
		for _, veth := range []string{"vethp1", "vethp2"} {
			tot := sum(obs, func(o flow.Observation) bool { return is(o, veth, c.Local, p2.IP+":8080") })
			if tot.records == 0 {
				t.Fatalf("conn %d: nothing at %s", i, veth)
			}
			if tot.fwdP != uint64(c.SegsOut) || tot.revP != uint64(c.SegsIn) {
				t.Errorf("conn %d at %s: packets %d/%d, kernel %d/%d", i, veth, tot.fwdP, tot.revP, c.SegsOut, c.SegsIn)
			}
			if tot.fwdB < c.BytesSent+40*tot.fwdP || tot.revB < c.BytesReceived+40*tot.revP {
				t.Errorf("conn %d at %s: bytes %d/%d below payload %d/%d + headers", i, veth, tot.fwdB, tot.revB, c.BytesSent, c.BytesReceived)
			}
			for _, f := range []string{flow.FlagSYN, flow.FlagSYNACK, flow.FlagFIN} {
				if !tot.flags[f] {
					t.Errorf("conn %d at %s: flag %s missing (%v)", i, veth, f, tot.flags)
				}
			}
			if tot.newConns != 1 {
				t.Errorf("conn %d at %s: newConns %d, want 1", i, veth, tot.newConns)
			}
			p := tot.points[veth]
			if p.Kind != "pod" || p.Node != "node1" || p.Pod == "" {
				t.Errorf("conn %d: point %+v", i, p)
			}
		}
		if tot := sum(obs, func(o flow.Observation) bool { return is(o, "eth0", c.Local, p2.IP+":8080") }); tot.records != 0 {
			t.Errorf("conn %d: intra-node flow reported at the uplink", i)
		}
	}
}

// TestAgentVXLAN: pod1 (node1) → pod3 (node2) over VXLAN. node1's agent
// reports the pod flow at the pod veth and the vxlan device, and the UDP
// node1→node2:4789 flow at the uplink carrying the inner tuple and VNI.
func TestAgentVXLAN(t *testing.T) {
	cl, srv, ag := detailedOnNode1(t, "vxlan", 0)
	n1, p1, p3 := cl.Nodes[0], cl.Pod("p1"), cl.Pod("p3")
	ts, err := agenttest.ListenTCP(p3.NS, p3.IP+":8080", 100)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	c, err := agenttest.Exchange(p1.NS, p3.IP+":8080", 5000)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	ag.stop(t)
	obs := srv.observations()
	server := p3.IP + ":8080"
	for _, iface := range []string{"vethp1", "vxlan0"} {
		tot := sum(obs, func(o flow.Observation) bool { return is(o, iface, c.Local, server) })
		if tot.fwdP != uint64(c.SegsOut) || tot.revP != uint64(c.SegsIn) {
			t.Errorf("pod flow at %s: packets %d/%d, kernel %d/%d", iface, tot.fwdP, tot.revP, c.SegsOut, c.SegsIn)
		}
	}
	if k := sum(obs, func(o flow.Observation) bool { return is(o, "vxlan0", c.Local, server) }).points["vxlan0"].Kind; k != "node" {
		t.Errorf("vxlan0 kind %q", k)
	}
	want := flow.Tuple{Proto: "tcp", SrcIP: p1.IP, DstIP: p3.IP, SrcPort: c.Local.Port(), DstPort: 8080}
	var tunnelPkts uint64
	found := false
	for _, o := range obs {
		if o.Point.Interface != "eth0" || o.Tuple.Proto != "udp" || o.Tuple.DstPort != 4789 {
			continue
		}
		// One UDP flow per direction (the source port hashes the inner flow).
		ends := o.Tuple.SrcIP + ">" + o.Tuple.DstIP
		if ends != n1.IP+">"+cl.Nodes[1].IP && ends != cl.Nodes[1].IP+">"+n1.IP || o.Tunnel == nil || o.Tunnel.Type != "vxlan" || o.Tunnel.VNI != 42 {
			t.Errorf("tunnel observation %+v", o)
			continue
		}
		for _, in := range o.Tunnel.Inner {
			if in == want {
				found = true
			}
		}
		tunnelPkts += o.FwdPackets + o.RevPackets
	}
	if !found {
		t.Errorf("no tunnel observation at eth0 carrying %+v", want)
	}
	if tunnelPkts < uint64(c.SegsOut+c.SegsIn) {
		t.Errorf("tunnel carried %d packets, pod flow had %d", tunnelPkts, c.SegsOut+c.SegsIn)
	}
	if tot := sum(obs, func(o flow.Observation) bool { return is(o, "eth0", c.Local, server) }); tot.records != 0 {
		t.Errorf("inner flow reported as a plain flow at the uplink")
	}
}

// TestAgentNAT: pod1 → ClusterIP-like 10.96.0.10:80 DNAT'd to pod2:8080.
// The source veth reports pod1→svc:80, the destination veth pod1→pod2:8080,
// and the batch carries the conntrack mapping between them.
func TestAgentNAT(t *testing.T) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n1, p1, p2 := cl.Nodes[0], cl.Pod("p1"), cl.Pod("p2")
	lab.Exec(n1.NS, "iptables", "-w", "-t", "nat", "-A", "PREROUTING", "-d", "10.96.0.10/32", "-p", "tcp",
		"--dport", "80", "-j", "DNAT", "--to-destination", p2.IP+":8080")
	srv, url := newServer(t, flow.DetailedMode)
	ag := start(t, agent.Config{Server: url, Node: "node1", NetNS: agenttest.Path(n1.NS), Mode: flow.DetailedMode,
		DetailedInterval: 200 * time.Millisecond})
	time.Sleep(100 * time.Millisecond)
	ts, err := agenttest.ListenTCP(p2.NS, p2.IP+":8080", 100)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	c, err := agenttest.Exchange(p1.NS, "10.96.0.10:80", 100)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	ag.stop(t)
	obs := srv.observations()
	if sum(obs, func(o flow.Observation) bool { return is(o, "vethp1", c.Local, "10.96.0.10:80") }).records == 0 {
		t.Error("no pod1→service observation at vethp1")
	}
	if sum(obs, func(o flow.Observation) bool { return is(o, "vethp2", c.Local, p2.IP+":8080") }).records == 0 {
		t.Error("no pod1→pod2:8080 observation at vethp2")
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for _, n := range srv.nat {
		if n.Original.SrcPort == c.Local.Port() && n.Original.DstIP == "10.96.0.10" && n.Reply.SrcIP == p2.IP && n.Reply.SrcPort == 8080 {
			return
		}
	}
	t.Errorf("no NAT mapping for %v in %+v", c.Local, srv.nat)
}

// TestAgentModes: conversation mode summarises per window (source port
// dropped, at most one record per conversation per window, each connection
// counted once as new); switching the server's mode to detailed makes the
// agent report a long connection once per interval while it is active.
func TestAgentModes(t *testing.T) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n1, p1, p2 := cl.Nodes[0], cl.Pod("p1"), cl.Pod("p2")
	srv, url := newServer(t, flow.ConversationMode)
	const window = time.Second
	ag := start(t, agent.Config{Server: url, Node: "node1", NetNS: agenttest.Path(n1.NS),
		ConversationInterval: window, DrainInterval: 100 * time.Millisecond,
		DetailedInterval: 250 * time.Millisecond, ConfigPoll: 100 * time.Millisecond})
	ts, err := agenttest.ListenTCP(p2.NS, p2.IP+":8080", 10)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	const n = 12
	began := time.Now()
	for i := 0; i < n; i++ {
		if _, err := agenttest.Exchange(p1.NS, p2.IP+":8080", 100); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(window + 200*time.Millisecond)
	elapsed := time.Since(began)

	conv := func(o flow.Observation) bool {
		return o.Mode == flow.ConversationMode && o.Point.Interface == "vethp1" && o.Tuple.SrcIP == p1.IP && o.Tuple.DstIP == p2.IP && o.Tuple.DstPort == 8080
	}
	var recs []flow.Observation
	for _, o := range srv.observations() {
		if conv(o) {
			recs = append(recs, o)
			if o.Tuple.SrcPort != 0 {
				t.Errorf("conversation record keeps the source port: %+v", o.Tuple)
			}
		}
	}
	tot := sum(recs, func(flow.Observation) bool { return true })
	if tot.newConns != n || tot.conns < n {
		t.Errorf("conversation: newConns %d conns %d, want %d", tot.newConns, tot.conns, n)
	}
	if max := int(elapsed/window) + 2; tot.records > max || tot.records < 2 {
		t.Errorf("conversation: %d records over %v, want 2..%d (one per window)", tot.records, elapsed, max)
	}

	// Switch to detailed through the server.
	srv.setMode(flow.DetailedMode)
	waitFor(t, 5*time.Second, "detailed mode", func() bool { return ag.a.Mode() == flow.DetailedMode })
	time.Sleep(300 * time.Millisecond) // the run loop closes the conversation window
	// One connection active for ~2 s: a record per 250 ms interval.
	c, err := agenttest.DialTCP(p1.NS, p2.IP+":8080")
	if err != nil {
		t.Fatal(err)
	}
	local := netip.MustParseAddrPort(c.LocalAddr().String())
	for i := 0; i < 20; i++ {
		if _, err := c.Write(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.Close()
	time.Sleep(500 * time.Millisecond)
	ag.stop(t)
	det := sum(srv.observations(), func(o flow.Observation) bool {
		return o.Mode == flow.DetailedMode && is(o, "vethp1", local, p2.IP+":8080")
	})
	if det.records < 6 || det.records > 11 {
		t.Errorf("detailed: %d records for a 2 s connection at 250 ms, want 6..11", det.records)
	}
	if det.newConns != 1 || det.fwdB < 2000 {
		t.Errorf("detailed: %+v", det)
	}
}

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	os.Exit(m.Run())
}

// TestAgentEgressSNAT: pod1 → an outside host (node2's uplink address)
// masqueraded by node1. The pod veth reports pod1→ext, the uplink reports
// node1IP→ext, and the NAT mapping ties the two (same translated port).
func TestAgentEgressSNAT(t *testing.T) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n1, n2, p1 := cl.Nodes[0], cl.Nodes[1], cl.Pod("p1")
	lab.Exec(n1.NS, "iptables", "-w", "-t", "nat", "-A", "POSTROUTING", "-s", "10.244.1.0/24", "-o", "eth0", "-j", "MASQUERADE")
	srv, url := newServer(t, flow.DetailedMode)
	ag := start(t, agent.Config{Server: url, Node: "node1", NetNS: agenttest.Path(n1.NS), Mode: flow.DetailedMode,
		DetailedInterval: 200 * time.Millisecond})
	ext := n2.IP + ":9090"
	ts, err := agenttest.ListenTCP(n2.NS, ext, 500)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	c, err := agenttest.Exchange(p1.NS, ext, 700)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	ag.stop(t)
	obs := srv.observations()
	pod := sum(obs, func(o flow.Observation) bool { return is(o, "vethp1", c.Local, ext) })
	if pod.fwdP != uint64(c.SegsOut) || pod.revP != uint64(c.SegsIn) || pod.points["vethp1"].Kind != "pod" {
		t.Errorf("pod side: %+v, kernel %d/%d", pod, c.SegsOut, c.SegsIn)
	}
	srv.mu.Lock()
	var nat *flow.NAT
	for i, n := range srv.nat {
		if n.Original.SrcIP == p1.IP && n.Original.SrcPort == c.Local.Port() && n.Original.DstIP == n2.IP {
			nat = &srv.nat[i]
		}
	}
	srv.mu.Unlock()
	if nat == nil || nat.Reply.DstIP != n1.IP {
		t.Fatalf("no SNAT mapping for %v: %+v", c.Local, nat)
	}
	snat := netip.AddrPortFrom(netip.MustParseAddr(n1.IP), nat.Reply.DstPort)
	node := sum(obs, func(o flow.Observation) bool { return is(o, "eth0", snat, ext) })
	if node.fwdP != uint64(c.SegsOut) || node.revP != uint64(c.SegsIn) || node.points["eth0"].Kind != "node" {
		t.Errorf("node side %v: %+v, kernel %d/%d", snat, node, c.SegsOut, c.SegsIn)
	}
}

// TestAgentFollowsPods: a pod plugged in after the agent started is
// observed at its veth; one removed goes away without disturbing the rest.
func TestAgentFollowsPods(t *testing.T) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n1, p1, p2 := cl.Nodes[0], cl.Pod("p1"), cl.Pod("p2")
	srv, url := newServer(t, flow.DetailedMode)
	ag := start(t, agent.Config{Server: url, Node: "node1", NetNS: agenttest.Path(n1.NS), Mode: flow.DetailedMode,
		DetailedInterval: 200 * time.Millisecond})
	p4 := lab.AddPod(n1, "p4", 14)
	waitFor(t, 10*time.Second, "vethp4 attached as a pod interface", func() bool {
		for _, p := range ag.a.Health().Interfaces {
			if p.Interface == "vethp4" && p.Kind == "pod" {
				return true
			}
		}
		return false
	})
	ts, err := agenttest.ListenTCP(p2.NS, p2.IP+":8080", 100)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	c4, err := agenttest.Exchange(p4.NS, p2.IP+":8080", 100)
	if err != nil {
		t.Fatal(err)
	}
	lab.RemovePod(p4)
	c1, err := agenttest.Exchange(p1.NS, p2.IP+":8080", 100)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond)
	h := ag.a.Health()
	ag.stop(t)
	obs := srv.observations()
	tot := sum(obs, func(o flow.Observation) bool { return is(o, "vethp4", c4.Local, p2.IP+":8080") })
	if tot.fwdP != uint64(c4.SegsOut) || tot.points["vethp4"].Kind != "pod" || tot.points["vethp4"].Pod != p4.NS {
		t.Errorf("new pod: %+v (kernel %d out)", tot, c4.SegsOut)
	}
	if tot := sum(obs, func(o flow.Observation) bool { return is(o, "vethp1", c1.Local, p2.IP+":8080") }); tot.fwdP != uint64(c1.SegsOut) {
		t.Errorf("after removal: %+v", tot)
	}
	for _, p := range h.Interfaces {
		if p.Interface == "vethp4" {
			t.Errorf("removed pod's veth still listed: %+v", h.Interfaces)
		}
	}
}
