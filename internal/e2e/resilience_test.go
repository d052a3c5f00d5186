package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/pkg/client"
)

// setMode sets a node's mode on the server and waits until its agent runs
// in it.
func (e *env) setMode(t *testing.T, node, mode string) {
	t.Helper()
	if err := e.server().Flows.Agents.SetConfig(node, flow.AgentConfig{Mode: mode}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, node+"'s agent in "+mode+" mode", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.agents[node] != nil && e.agents[node].a.Mode() == mode
	})
}

// exchange makes one HTTP/1.1 connection from pod to addr and returns its
// client port.
//
// The client port is bound explicitly, a new one per call (20000–31999,
// below the ephemeral range): the kernel may hand out a port again as soon
// as its connection has closed on the client's side (the server closes
// first, so the TIME_WAIT is the server's), and the tests that count
// connections by client port need each one to be its own 5-tuple.
func (e *env) exchange(from lab.PodInfo, addr string) (uint16, error) {
	pod, err := e.lab.Status().FindPod(podKey(from))
	if err != nil {
		return 0, err
	}
	local := 20000 + int(e.srcPorts.Add(1)%12000)
	c, err := app.DialFrom(pod.NetNSPath, "", local, addr, 3*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr); err != nil {
		return 0, err
	}
	b, err := io.ReadAll(c)
	if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		return 0, fmt.Errorf("answer %q: %v", b, err)
	}
	return uint16(c.LocalAddr().(*net.TCPAddr).Port), nil
}

// testConversationCadence: acceptance 7, conversation half, with the real
// 15 s window. Connections made over 11 s inside one window come out as one
// record per observation point, i.e. one flow with both points carrying
// every connection.
func (e *env) testConversationCadence(t *testing.T, p plan) {
	e.restartAgents(t, agentOpts{conv: 15 * time.Second, drain: time.Second, detach: true})
	const span = 11 * time.Second
	sleepUntil(e.slot(t, span+time.Second))
	from := time.Now()
	n := 0
	for time.Since(from) < span {
		e.get(t, p.a, hostPort(p.b.IP, p.b.Ports[0]))
		n++
		time.Sleep(400 * time.Millisecond)
	}
	to := time.Now()
	t.Logf("%d connections over %s; waiting for the 15 s window to close", n, to.Sub(from).Round(time.Millisecond))
	sleepUntil(e.settled(to))
	fs := e.search(t, fmt.Sprintf("proto = tcp and src.ip = %q and dst.ip = %q", p.a.IP, p.b.IP), from.Add(-time.Second))
	// A second record of the conversation at either point within the
	// window would be a second flow (a flow takes one record per point).
	f := one(t, fs, "conversation", "tcp", p.a.IP, p.b.IP, uint16(p.b.Ports[0]))
	wantConns(t, "conversation", f, n)
	wantPoints(t, "conversation", f, podPoint(p.a), podPoint(p.b))
	if f.Mode != flow.ConversationMode || f.Src.Port != 0 {
		t.Errorf("mode %q, source port %d: want a conversation summary without source port", f.Mode, f.Src.Port)
	}
	if d := f.End.Sub(f.Start); d < span-time.Second {
		t.Errorf("the record spans %s, want the whole %s of traffic in one summary", d, span)
	}
}

// testDetailedCadence: acceptance 7, detailed half: a connection held open
// for 4 s, sending all along, is reported once per second.
func (e *env) testDetailedCadence(t *testing.T, p plan) {
	e.setMode(t, p.n1.Name, flow.DetailedMode)
	addr := hostPort(p.b.IP, p.b.Ports[0])
	c, err := e.lab.Dial(podKey(p.a), addr)
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(c.LocalAddr().(*net.TCPAddr).Port)
	read := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, c); read <- err }()
	from := time.Now()
	requests := 0
	for time.Since(from) < 4*time.Second {
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
			t.Fatalf("request %d on the held connection: %v", requests, err)
		}
		requests++
		time.Sleep(100 * time.Millisecond)
	}
	held := time.Since(from)
	c.Close()
	<-read
	time.Sleep(2*time.Second + flowWindow + 2*time.Second)
	var fs []flow.Flow
	for _, f := range e.search(t, fmt.Sprintf("proto = tcp and src.ip = %q and dst.ip = %q", p.a.IP, p.b.IP), from.Add(-time.Second)) {
		if f.Src.Port == port && f.Mode == flow.DetailedMode {
			fs = append(fs, f)
		}
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].Start.Before(fs[j].Start) })
	t.Logf("connection held %s (%d requests): %d detailed flows", held.Round(time.Millisecond), requests, len(fs))
	if len(fs) < 4 || len(fs) > 6 {
		t.Fatalf("want a record per second (4-6) for a connection active for %s, have %d:%s", held, len(fs), describe(fs))
	}
	for i, f := range fs {
		wantPoints(t, fmt.Sprintf("record %d", i), f, podPoint(p.a), podPoint(p.b))
		if d := f.End.Sub(f.Start); d > 1200*time.Millisecond {
			t.Errorf("record %d spans %s, more than a second:%s", i, d, describe([]flow.Flow{f}))
		}
		if i > 0 && f.Start.Sub(fs[i-1].Start) < 500*time.Millisecond {
			t.Errorf("records %d and %d start %s apart:%s", i-1, i, f.Start.Sub(fs[i-1].Start), describe(fs[i-1:i+1]))
		}
		if f.FwdPackets == 0 || f.RevPackets == 0 {
			t.Errorf("record %d without packets both ways:%s", i, describe([]flow.Flow{f}))
		}
	}
}

// testRestarts: acceptance 8. Connections pod a → pod b (one node, so both
// observation points belong to the agent being killed) in detailed mode,
// where each connection is its own 5-tuple: the agent of the node is
// stopped mid-traffic and a new one started on the same spool and pinned
// maps; then the server is stopped for 30 s while traffic goes on, and
// started again on the same data directory and port. Every connection
// the generator made must be reported at both pod interfaces, no other,
// and no record twice (see below).
func (e *env) testRestarts(t *testing.T, p plan) {
	for _, n := range e.st.Nodes {
		e.setMode(t, n.Name, flow.DetailedMode)
	}
	// The agent to kill leaves its classifier and maps behind, as a
	// crashed one would.
	e.stopAgent(t, p.n1.Name)
	e.startAgent(t, p.n1, agentOpts{conv: convInterval, drain: drainEvery, detach: false})

	const m = 60
	addr := hostPort(p.b.IP, p.b.Ports[0])
	var (
		mu     sync.Mutex
		ports  = map[uint16]bool{}
		genErr error
		done   = make(chan struct{})
	)
	from := time.Now()
	go func() {
		defer close(done)
		for i := 0; i < m; i++ {
			port, err := e.exchange(p.a, addr)
			mu.Lock()
			if err != nil && genErr == nil {
				genErr = fmt.Errorf("connection %d: %w", i, err)
			}
			if err == nil {
				ports[port] = true
			}
			mu.Unlock()
			time.Sleep(150 * time.Millisecond)
		}
	}()
	time.Sleep(2 * time.Second)
	e.stopAgent(t, p.n1.Name) // cancelled while traffic runs
	time.Sleep(time.Second)   // traffic counted with no agent running
	e.startAgent(t, p.n1, agentOpts{conv: convInterval, drain: drainEvery, detach: true})
	time.Sleep(2 * time.Second)
	e.stopServer(t)
	stopped := time.Now()
	t.Logf("server stopped %s after the traffic started", stopped.Sub(from).Round(time.Millisecond))
	<-done
	if genErr != nil {
		t.Fatal(genErr)
	}
	if len(ports) != m {
		t.Fatalf("%d distinct client ports for %d connections", len(ports), m)
	}
	sleepUntil(stopped.Add(30 * time.Second))
	e.startServer(t, e.listen)
	for _, n := range e.st.Nodes {
		if err := e.server().Flows.Agents.SetConfig(n.Name, flow.AgentConfig{Mode: flow.DetailedMode}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "agents' spools sent", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, a := range e.agents {
			if h := a.a.Health(); h.Report.ObservationsSpooled > 0 || h.Report.BatchesSpooled > 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(2*time.Second + flowWindow + 2*time.Second)

	byPort := map[uint16][]flow.Flow{}
	var phantom []flow.Flow
	for _, f := range e.search(t, fmt.Sprintf("proto = tcp and src.ip = %q and dst.ip = %q", p.a.IP, p.b.IP), from.Add(-time.Second)) {
		if f.Mode != flow.DetailedMode || f.Dst.Port != uint16(p.b.Ports[0]) || f.Start.Before(from) {
			continue
		}
		if !ports[f.Src.Port] {
			phantom = append(phantom, f)
			continue
		}
		byPort[f.Src.Port] = append(byPort[f.Src.Port], f)
	}
	if len(phantom) > 0 {
		t.Errorf("%d flows of connections the generator did not make:%s", len(phantom), describe(phantom))
	}
	want := []string{podPoint(p.a), podPoint(p.b)}
	lost, dup := 0, 0
	for port := range ports {
		fs := byPort[port]
		seen := map[string]int{}
		for _, f := range fs {
			for _, pt := range pointsOf(f) {
				seen[pt]++
			}
			if !f.HasFlag(flow.FlagSYN) {
				t.Errorf("connection :%d: a record without the connection's SYN:%s", port, describe([]flow.Flow{f}))
			}
		}
		// One drain boundary (the agent's restart) can split a connection
		// of a few ms once at each point: at most two records name a
		// point. The server merges the two points' parts that agree, so
		// such a connection can show as three flows (seen once: its SYN
		// alone at the client's point, the whole at both points, the
		// server side's part at its point).
		for pt, n := range seen {
			if n > 2 {
				t.Errorf("connection :%d (a few ms long) in %d records at %s:%s", port, n, pt, describe(fs))
			}
		}
		for _, pt := range want {
			if seen[pt] == 0 {
				lost++
				t.Errorf("connection :%d not reported at %s:%s", port, pt, describe(fs))
			}
		}
		for i := range fs {
			for j := i + 1; j < len(fs); j++ {
				a, b := fs[i], fs[j]
				// A record reported twice (a resend taken again, counts
				// drained again by a restarted agent) is the same counts
				// over the same span at the same point. A connection whose
				// packets one drain split between two records (the drain
				// of one map is not atomic over its entries) is two flows
				// with different counts: legitimate.
				if sharePoint(a, b) && a.Start.Equal(b.Start) && a.End.Equal(b.End) &&
					a.FwdPackets == b.FwdPackets && a.RevPackets == b.RevPackets && a.FwdBytes == b.FwdBytes && a.RevBytes == b.RevBytes {
					dup++
					t.Errorf("connection :%d reported twice:%s", port, describe([]flow.Flow{a, b}))
				}
			}
		}
	}
	met := e.server().Flows.Metrics()
	t.Logf("%d connections: %d reported, %d lost, %d duplicated; server after restart: %d observations, %d resent records skipped",
		m, len(byPort), lost, dup, met.Observations, met.Duplicates)
	if len(byPort) != m {
		t.Errorf("%d of the %d connections reported", len(byPort), m)
	}
}

func sharePoint(a, b flow.Flow) bool {
	for _, x := range pointsOf(a) {
		for _, y := range pointsOf(b) {
			if x == y {
				return true
			}
		}
	}
	return false
}

// testBadInput: acceptance 9. Malformed, oversized and unauthenticated
// batches get a 4xx, are counted in /api/v1/flows/metrics, and leave the
// flows stored before as they were.
func (e *env) testBadInput(t *testing.T, p plan, since time.Time) {
	srv := e.server()
	before := e.search(t, "", since)
	if len(before) == 0 {
		t.Fatal("no flows stored before the bad input")
	}
	metrics := func() flow.Metrics {
		t.Helper()
		var m flow.Metrics
		if err := srv.Client("").Do(context.Background(), client.Request{Method: "GET", Path: "/api/v1/flows/metrics"}, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	m0 := metrics()
	url := srv.URL() + "/api/v1/agents/" + p.n1.Name + "/flows"
	post := func(body io.Reader, size int64, gz bool, token string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, url, body)
		if err != nil {
			t.Fatal(err)
		}
		if size >= 0 {
			req.ContentLength = size
		}
		req.Header.Set("Content-Type", "application/json")
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := srv.HTTPClient().Do(req)
		if err != nil {
			t.Fatalf("POST: %v", err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body) //nolint:errcheck
		return resp.StatusCode
	}
	now := time.Now().UTC()
	phantom := flow.Batch{Agent: "intruder", Node: p.n1.Name, Observations: []flow.Observation{{
		Seq: 1, Mode: flow.ConversationMode, Point: flow.ObservationPoint{Node: p.n1.Name, Interface: "eth0", Kind: "node"},
		Tuple: flow.Tuple{Proto: "tcp", SrcIP: "192.0.2.66", DstIP: p.b.IP, DstPort: 80},
		Start: now, End: now, FwdPackets: 1, FwdBytes: 60, Conns: 1, NewConns: 1,
	}}}
	good, _ := json.Marshal(phantom)
	badIP := phantom
	badIP.Observations = []flow.Observation{phantom.Observations[0]}
	badIP.Observations[0].Tuple.SrcIP = "not-an-ip"
	badIPBody, _ := json.Marshal(badIP)
	tok := srv.AgentToken()

	// A gzip body that decodes past the 32 MiB limit, and a plain body
	// past the 16 MiB one.
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestSpeed)
	zw.Write([]byte(`{"agent":"`)) //nolint:errcheck
	chunk := bytes.Repeat([]byte("a"), 1<<20)
	for range 130 {
		zw.Write(chunk) //nolint:errcheck
	}
	zw.Close()
	big := append([]byte(`{"agent":"`), bytes.Repeat([]byte("a"), 17<<20)...)

	for _, c := range []struct {
		name   string
		body   []byte
		gz     bool
		token  string
		status int
	}{
		{"no token", good, false, "", http.StatusUnauthorized},
		{"wrong token", good, false, "not-the-token", http.StatusUnauthorized},
		{"not JSON", []byte(`{"agent": "x", "observations": [`), false, tok, http.StatusBadRequest},
		{"bad address", badIPBody, false, tok, http.StatusBadRequest},
		{"bad gzip", []byte("not gzip at all"), true, tok, http.StatusBadRequest},
		{"decodes past the limit", bomb.Bytes(), true, tok, http.StatusRequestEntityTooLarge},
		{"larger than the limit", big, false, tok, http.StatusRequestEntityTooLarge},
	} {
		if got := post(bytes.NewReader(c.body), int64(len(c.body)), c.gz, c.token); got != c.status {
			t.Errorf("%s: status %d, want %d", c.name, got, c.status)
		}
	}
	m1 := metrics()
	for _, c := range []struct {
		name        string
		got, before uint64
		want        uint64
	}{
		{"unauthenticated", m1.RefusedUnauthenticated, m0.RefusedUnauthenticated, 2},
		{"malformed", m1.RefusedMalformed, m0.RefusedMalformed, 3},
		{"oversized", m1.RefusedOversized, m0.RefusedOversized, 2},
	} {
		if c.got-c.before != c.want {
			t.Errorf("refused %s: counted %d, want %d", c.name, c.got-c.before, c.want)
		}
	}
	t.Logf("metrics after the bad input: %+v", m1)

	// Nothing stored before is harmed, nothing of the refused batches is
	// stored.
	time.Sleep(time.Second + flowWindow + time.Second)
	after := e.search(t, "", since)
	byID := map[string]flow.Flow{}
	for _, f := range after {
		byID[f.ID] = f
		if f.Src.IP == "192.0.2.66" {
			t.Errorf("a refused batch was stored:%s", describe([]flow.Flow{f}))
		}
	}
	for _, f := range before {
		g, ok := byID[f.ID]
		if !ok {
			t.Errorf("flow lost after the bad input:%s", describe([]flow.Flow{f}))
			continue
		}
		if g.Conns != f.Conns || g.FwdBytes != f.FwdBytes || !slices.Equal(pointsOf(f), pointsOf(g)) {
			t.Errorf("flow changed by the bad input:%s\nnow:%s", describe([]flow.Flow{f}), describe([]flow.Flow{g}))
		}
	}
	if d, err := srv.Flows.Get(before[0].ID); err != nil || d.ID != before[0].ID {
		t.Errorf("get %s after the bad input: %v", before[0].ID, err)
	}
}
