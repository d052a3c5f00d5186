package flow

import (
	"math/rand/v2"
	"testing"
	"time"
)

// convPoint simulates one observation point's agent in conversation mode:
// a record per window with the connections active in it (Conns) and those
// that started in it (NewConns, the SYNs).
type convPoint struct {
	point ObservationPoint
	agent string
	seq   uint64
	phase time.Duration // window alignment
}

type conn struct{ start, end time.Time }

// window returns the point's record of [from, to), if any connection was
// active in it.
func (c *convPoint) window(tu Tuple, conns []conn, from, to time.Time) (Observation, bool) {
	o := Observation{Agent: c.agent, Mode: ConversationMode, Point: c.point, Tuple: tu}
	for _, x := range conns {
		if !x.start.Before(to) || x.end.Before(from) {
			continue
		}
		s, e := maxTime(x.start, from), minTime(x.end, to)
		if o.Conns == 0 || s.Before(o.Start) {
			o.Start = s
		}
		if e.After(o.End) {
			o.End = e
		}
		o.Conns++
		o.FwdPackets += 3
		if !x.start.Before(from) {
			o.NewConns++
		}
	}
	if o.Conns == 0 {
		return o, false
	}
	c.seq++
	o.Seq = c.seq
	return o, true
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Conversation mode: 60 connections (some lasting over a window boundary)
// spread over 3 windows of 15 s, seen by two points whose windows are not
// aligned, with the client node's agent restarting in the middle (its
// windows start again from its restart): the conversation's stored
// connection count is exactly 60.
func TestConversationCountsExactAcrossWindowsAndRestart(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
		var conns []conn
		for range 60 {
			s := base.Add(time.Duration(r.IntN(45_000)) * time.Millisecond)
			d := time.Duration(50+r.IntN(400)) * time.Millisecond
			if r.IntN(10) == 0 {
				d = time.Duration(5+r.IntN(15)) * time.Second // spans a window boundary
			}
			conns = append(conns, conn{s, s.Add(d)})
		}
		tu := Tuple{Proto: "tcp", SrcIP: "10.244.1.10", DstIP: "10.244.2.20", DstPort: 8080}
		client := &convPoint{point: ObservationPoint{Node: "node1", Interface: "vethc", Kind: "pod"}, agent: "agent-node1", phase: 0}
		server := &convPoint{point: ObservationPoint{Node: "node2", Interface: "veths", Kind: "pod"}, agent: "agent-node2", phase: 7 * time.Second}
		type rec struct {
			o       Observation
			arrival time.Time
		}
		var recs []rec
		// The server's windows: regular.
		for w := base.Add(server.phase - 15*time.Second); w.Before(base.Add(70 * time.Second)); w = w.Add(15 * time.Second) {
			if o, ok := server.window(tu, conns, w, w.Add(15*time.Second)); ok {
				recs = append(recs, rec{o, w.Add(16 * time.Second)})
			}
		}
		// The client's agent restarts at 22.3 s: its window then closes early
		// (the agent reports what it has on the way out) and a new series
		// starts at its restart. Connections alive across the restart are
		// not new again (no SYN seen after it).
		restart := base.Add(22300 * time.Millisecond)
		for w := base; w.Before(base.Add(70 * time.Second)); {
			end := w.Add(15 * time.Second)
			if w.Before(restart) && end.After(restart) {
				end = restart
			}
			if o, ok := client.window(tu, conns, w, end); ok {
				recs = append(recs, rec{o, end.Add(time.Second)})
			}
			w = end
		}
		// Arrival order, with flushes every second.
		p := NewPipeline(30*time.Second, nil)
		var total uint64
		var flows int
		next := 0
		sortRecs := func(i, j int) bool { return recs[i].arrival.Before(recs[j].arrival) }
		for i := 1; i < len(recs); i++ {
			for j := i; j > 0 && sortRecs(j, j-1); j-- {
				recs[j], recs[j-1] = recs[j-1], recs[j]
			}
		}
		for now := base; now.Before(base.Add(3 * time.Minute)); now = now.Add(time.Second) {
			for next < len(recs) && !recs[next].arrival.After(now) {
				p.Add(&recs[next].o, recs[next].arrival)
				next++
			}
			for _, f := range p.Flush(now, false).Flows {
				total += f.Conns
				flows++
			}
		}
		for _, f := range p.Flush(base.Add(time.Hour), true).Flows {
			total += f.Conns
			flows++
		}
		if total != 60 {
			t.Fatalf("seed %d: %d connections counted over %d flows from %d records, want 60", seed, total, flows, len(recs))
		}
	}
}
