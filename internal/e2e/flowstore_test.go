package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/lab"
)

// follower reads the server's live flow stream (what `palisade flows
// follow` prints) in the background.
type follower struct {
	mu    sync.Mutex
	seen  map[uint16]time.Time // client port → when it was streamed
	flows []flow.Flow
}

func (e *env) follow(t *testing.T, filter string) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", e.server().URL()+flow.FollowPath+"?filter="+url.QueryEscape(filter), nil)
	req.Header.Set("Authorization", "Bearer "+e.server().AdminToken())
	resp, err := e.server().HTTPClient().Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("follow: %v %v", resp, err)
	}
	f := &follower{seen: map[uint16]time.Time{}}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<16), 1<<24)
		for sc.Scan() {
			var x flow.Flow
			if json.Unmarshal(sc.Bytes(), &x) != nil {
				continue
			}
			f.mu.Lock()
			if _, ok := f.seen[x.Src.Port]; !ok {
				f.seen[x.Src.Port] = time.Now()
			}
			f.flows = append(f.flows, x)
			f.mu.Unlock()
		}
	}()
	return f
}

func (f *follower) at(port uint16) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.seen[port]
	return t, ok
}

// searchable polls flows search until a flow filter matches appears and
// returns how long after since that was.
func (e *env) searchable(t *testing.T, filter string, since time.Time, within time.Duration) (time.Duration, bool) {
	for time.Since(since) < within {
		if fs := e.search(t, filter, since.Add(-time.Minute)); len(fs) > 0 {
			return time.Since(since), true
		}
		time.Sleep(25 * time.Millisecond)
	}
	return 0, false
}

func pct(d []time.Duration, q float64) time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d[int(q*float64(len(d)-1))]
}

// TestFlowsLive: flows are searchable seconds after a connection closes
// (provisional records), followers get them, and once the dedup window has
// passed the stored flows are exact: detailed mode (one record per
// connection, related ClusterIP flows both ways) and conversation mode (the
// connection count of a conversation over 3 windows with an agent restart
// in the middle equals the connections made).
func TestFlowsLive(t *testing.T) {
	e := newEnvNamed(t, lab.ModeDirect, "fslive")
	p := e.plan(t)

	t.Run("detailed-searchable-within-3s", func(t *testing.T) {
		for _, n := range e.st.Nodes {
			e.setMode(t, n.Name, flow.DetailedMode)
		}
		base := fmt.Sprintf("proto = tcp and src.ip = %q and dst.ip = %q", p.a.IP, p.b.IP)
		fol := e.follow(t, base)
		e.server().Flows.ResetSearchableLatency()
		addr := hostPort(p.b.IP, p.b.Ports[0])
		var lat, folLat []time.Duration
		const n = 20
		for i := range n {
			port, err := e.exchange(p.a, addr)
			if err != nil {
				t.Fatal(err)
			}
			closed := time.Now()
			d, ok := e.searchable(t, fmt.Sprintf("%s and src.port = %d", base, port), closed, 10*time.Second)
			if !ok || d > 3*time.Second {
				t.Errorf("connection %d (:%d): searchable after %v (found %v), want ≤ 3 s", i, port, d, ok)
			}
			lat = append(lat, d)
			for start := time.Now(); time.Since(start) < 5*time.Second; time.Sleep(20 * time.Millisecond) {
				if at, ok := fol.at(port); ok {
					folLat = append(folLat, at.Sub(closed))
					break
				}
			}
			time.Sleep(time.Duration(100+37*i%300) * time.Millisecond)
		}
		if len(folLat) != n {
			t.Errorf("follow printed %d of %d connections", len(folLat), n)
		}
		p50, p99 := e.server().Flows.SearchableLatency()
		t.Logf("detailed mode, the agent's report → searchable (server side, every flow of the lab meanwhile): p50 %v, p99 %v", p50.Round(time.Millisecond), p99.Round(time.Millisecond))
		t.Logf("detailed mode, close → searchable over %d connections: p50 %v, p99 %v, max %v; close → followed: p50 %v, p99 %v",
			n, pct(lat, 0.5).Round(time.Millisecond), pct(lat, 0.99).Round(time.Millisecond), pct(lat, 1).Round(time.Millisecond),
			pct(folLat, 0.5).Round(time.Millisecond), pct(folLat, 0.99).Round(time.Millisecond))

		// Once the window has passed: the connection of the ClusterIP
		// client is one flow per 5-tuple, related both ways.
		port, err := e.exchange(p.c, hostPort(p.svc1.ClusterIP, p.svc1.Ports[0].Port))
		if err != nil {
			t.Fatal(err)
		}
		since := time.Now()
		time.Sleep(2*time.Second + flowWindow + 2*time.Second)
		var pre, post []flow.Flow
		for _, f := range e.search(t, fmt.Sprintf("src.ip = %q and src.port = %d", p.c.IP, port), since.Add(-time.Minute)) {
			switch f.Dst.IP {
			case p.svc1.ClusterIP:
				pre = append(pre, f)
			case p.b1.IP:
				post = append(post, f)
			}
		}
		if len(pre) != 1 || len(post) != 1 {
			t.Fatalf("after the window: %d pod→service and %d pod→pod flows, want one each:%s", len(pre), len(post), describe(append(pre, post...)))
		}
		wantRelated(t, "ClusterIP, detailed", pre[0], post[0], flow.ReasonClusterIP)
		wantPoints(t, "pod→pod after DNAT", post[0], podPoint(p.b1))
		if m := e.server().Flows.Metrics(); m.PendingFlows < 0 {
			t.Fatal(m)
		}
	})

	t.Run("conversation-exact-count-across-windows-and-restart", func(t *testing.T) {
		for _, n := range e.st.Nodes {
			e.setMode(t, n.Name, flow.ConversationMode)
		}
		// The agent restarted mid-traffic leaves its classifier and maps
		// pinned, as a crashed one would: the next one drains them.
		e.stopAgent(t, p.n1.Name)
		e.startAgent(t, p.n1, agentOpts{conv: convInterval, drain: drainEvery, detach: false})
		addr := hostPort(p.b.IP, p.b.Ports[0])
		e.server().Flows.ResetSearchableLatency()
		const m = 60
		from := time.Now()
		span := 3 * convInterval // three windows
		firstSearchable := make(chan time.Duration, 1)
		for i := range m {
			if _, err := e.exchange(p.a, addr); err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			if i == m/2 {
				e.stopAgent(t, p.n1.Name)
				e.startAgent(t, p.n1, agentOpts{conv: convInterval, drain: drainEvery, detach: true})
			}
			if i == 0 {
				closed := time.Now()
				srv := e.server()
				go func() {
					filter := fmt.Sprintf("proto = tcp and src.ip = %q and dst.ip = %q and mode = conversation", p.a.IP, p.b.IP)
					for time.Since(closed) < 30*time.Second {
						if fs, err := srv.Flows.Search(filter, closed.Add(-time.Minute), time.Now().Add(time.Minute), 10); err == nil && len(fs) > 0 {
							break
						}
						time.Sleep(25 * time.Millisecond)
					}
					firstSearchable <- time.Since(closed)
				}()
			}
			sleepUntil(from.Add(span * time.Duration(i+1) / m))
		}
		to := time.Now()
		sleepUntil(e.settled(to))
		var total uint64
		var fs []flow.Flow
		for _, f := range e.search(t, fmt.Sprintf("proto = tcp and src.ip = %q and dst.ip = %q and mode = conversation", p.a.IP, p.b.IP), from.Add(-time.Second)) {
			if f.Dst.Port == uint16(p.b.Ports[0]) && !f.Start.Before(from.Add(-time.Second)) {
				total += f.Conns
				fs = append(fs, f)
			}
		}
		t.Logf("%d connections over %v (3 windows of %v, agent of %s restarted in the middle): %d flows, %d connections counted; first searchable %v after its connection closed",
			m, to.Sub(from).Round(time.Millisecond), convInterval, p.n1.Name, len(fs), total, (<-firstSearchable).Round(time.Millisecond))
		if total != m {
			t.Errorf("the conversation counts %d connections, the generator made %d:%s", total, m, describe(fs))
		}
		p50, p99 := e.server().Flows.SearchableLatency()
		t.Logf("conversation mode, the agent's report → searchable (server side, every flow of the lab meanwhile): p50 %v, p99 %v", p50.Round(time.Millisecond), p99.Round(time.Millisecond))
	})
}
