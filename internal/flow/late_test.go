package flow

import (
	"testing"
	"time"
)

// A related partner that arrives after the first flow was emitted links
// both ways: the partner is emitted with the link, and the first flow is
// emitted again (an update, same ID) with the link to the partner.
func TestLatePartnerLinksBothWays(t *testing.T) {
	forModes(t, func(t *testing.T, mode string, sport uint16) {
		var m obsMaker
		p := NewPipeline(30*time.Second, nil)
		pre, post := tcp(pod1, sport, svcIP, 80), tcp(pod1, sport, pod3, 8080)
		p.AddNAT(NAT{Node: "node1", ConnID: 7, Original: tcp(pod1, 47514, svcIP, 80), Reply: tcp(pod3, 8080, pod1, 47514), Time: t0}, t0)
		first := m.obs(mode, "node1", "veth1", "pod", pre, t0, time.Second)
		p.Add(&first, t0.Add(2*time.Second))
		em1 := p.Flush(t0.Add(40*time.Second), false)
		if len(em1.Flows) != 1 || len(em1.Flows[0].Related) != 0 || len(em1.Updates) != 0 {
			t.Fatalf("first flow: %+v", em1)
		}
		a := em1.Flows[0]
		// node2's report comes 50 s later (its agent was restarting).
		late := m.obs(mode, "node2", "veth3", "pod", post, t0, time.Second)
		p.Add(&late, t0.Add(50*time.Second))
		em2 := p.Flush(t0.Add(81*time.Second), false)
		if len(em2.Flows) != 1 || len(em2.Updates) != 1 || em2.Updates[0].ID != a.ID {
			t.Fatalf("late partner: flows %s updates %s", dump(em2.Flows), dump(em2.Updates))
		}
		b, a2 := em2.Flows[0], em2.Updates[0]
		wantRelated(t, []Flow{a2, b}, a2, b, ReasonClusterIP)
		if !a2.Start.Equal(a.Start) || a2.FwdBytes != a.FwdBytes || len(a2.Points) != len(a.Points) {
			t.Fatalf("the update changed more than the links:\n%+v\n%+v", a, a2)
		}
		// Nothing more to update later.
		if em3 := p.Flush(t0.Add(10*time.Minute), false); len(em3.Updates) != 0 || len(em3.Flows) != 0 {
			t.Fatalf("again: %+v", em3)
		}
	})
}

// A NAT mapping relates only flows active at or after its time: an older
// flow of a reused tuple is not related through it.
func TestNATTime(t *testing.T) {
	var m obsMaker
	p := NewPipeline(time.Minute, nil)
	pre, post := tcp(pod1, 47514, svcIP, 80), tcp(pod1, 47514, pod3, 8080)
	p.AddNAT(NAT{Node: "node1", ConnID: 7, Original: pre, Reply: tcp(pod3, 8080, pod1, 47514), Time: t0.Add(time.Minute)}, t0)
	old := []Observation{
		m.obs(DetailedMode, "node1", "veth1", "pod", pre, t0, time.Second),
		m.obs(DetailedMode, "node2", "veth3", "pod", post, t0, time.Second),
	}
	for i := range old {
		p.Add(&old[i], t0)
	}
	fs := p.Flush(t0.Add(61*time.Second), false).Flows
	if len(fs) != 2 || len(fs[0].Related)+len(fs[1].Related) != 0 {
		t.Fatalf("flows before the mapping related:%s", dump(fs))
	}
	cur := []Observation{
		m.obs(DetailedMode, "node1", "veth1", "pod", pre, t0.Add(time.Minute), time.Second),
		m.obs(DetailedMode, "node2", "veth3", "pod", post, t0.Add(time.Minute), time.Second),
	}
	for i := range cur {
		p.Add(&cur[i], t0.Add(62*time.Second))
	}
	em := p.Flush(t0.Add(123*time.Second), false)
	fs = em.Flows
	if len(em.Updates) != 0 {
		t.Fatalf("old flows updated:%s", dump(em.Updates))
	}
	if len(fs) != 2 {
		t.Fatalf("flows:%s", dump(fs))
	}
	wantRelated(t, fs, fs[0], fs[1], ReasonClusterIP)
}
