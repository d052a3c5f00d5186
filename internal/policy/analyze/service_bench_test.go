package analyze

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowgen"
	"github.com/palisade-dev/palisade/internal/flow/store"
	"github.com/palisade-dev/palisade/internal/inventory"
)

// addEndpoints gives each of benchSetup's services, from t0, the pods of
// its app as endpoints (pod i serves app-(i mod 500), service i selects
// app-i): 10 each, listening on the target port 8080.
func addEndpoints(b *testing.B, inv *inventory.Inventory, t0 time.Time) {
	for i := range 500 {
		id := fmt.Sprintf("c/service/ns-%d/svc-%d", i%50, i)
		w, _, ok := inv.Get(id)
		if !ok {
			b.Fatalf("no service %s", id)
		}
		n := *w
		n.Endpoints = nil
		for j := i; j < 5000; j += 500 {
			n.Endpoints = append(n.Endpoints, inventory.Endpoint{IP: fmt.Sprintf("10.244.%d.%d", j/250, j%250+1), Ports: []int32{8080},
				Pod: fmt.Sprintf("ns-%d/pod-%d", j%50, j), Ready: true})
		}
		n.Updated = t0
		if !inv.Apply(n) {
			b.Fatalf("endpoints of %s not applied", id)
		}
	}
}

// threadCPU is the calling thread's CPU time (the goroutine must be locked
// to its thread).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkServiceIngest is the flow service's whole ingest path per flow
// of the flow store's benchmark data: two observation points' records per
// flow, ingested in batches (validated, deduplicated, logged durably),
// merged by the pipeline, enriched through the inventory and stored
// (fsync per batch) — without a hook, and with live analysis on the
// OnFlows hook (decided with the pipeline's ends against 2,000 intents,
// counted per verdict, rule, scope and minute, its session warmed first),
// and with the hook as it was before it had the pipeline's ends
// (hook=reresolve: both ends resolved again through analyze.LiveResolver).
// It reports the process's CPU per flow, and for the hook the CPU of the
// thread running it (RUSAGE_THREAD, so garbage collection on other
// threads is not counted to it). With endpoints=10, each service has its
// app's 10 pods as endpoints (target port 8080), as a cluster's services
// do: enrichment then also finds the service behind a pod's address.
func BenchmarkServiceIngest(b *testing.B) {
	for _, bc := range []struct {
		hook      string
		endpoints bool
	}{{"none", false}, {"analysis", false}, {"reresolve", false}, {"none", true}} {
		hook, name := bc.hook, "hook="+bc.hook
		if bc.endpoints {
			name += ",endpoints=10"
		}
		b.Run(name, func(b *testing.B) {
			ev, inv, first := benchSetup(b, 1)
			t0 := first[0].Start
			if bc.endpoints {
				addEndpoints(b, inv, t0)
			}
			st, err := store.Open(b.TempDir(), store.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var hookCPU time.Duration
			var hooked int
			opts := flow.Options{Window: 30 * time.Second, Now: func() time.Time { return t0.Add(time.Hour) }}
			if hook != "none" {
				var r Resolver
				if hook == "reresolve" {
					r = &LiveResolver{R: inv}
				}
				a := New(ev, r, "")
				tl := NewTally("", nil, time.Time{}, time.Time{}, nil)
				// Warm the session's classes, as a server running for a
				// while has them: the first flow of a workload version
				// classifies it against every filter (≈ 100 µs).
				wg := flowgen.New(1)
				var wf flow.Flow
				for i := range 1 << 16 {
					wg.Flow(&wf, t0.Add(time.Duration(i)*5*time.Millisecond))
					a.AnalyzeResolved(&wf, pipelineEnds(&wf, inv))
				}
				opts.OnFlows = func(flows []flow.Flow, ends []flow.Ends) {
					c := threadCPU()
					for i := range flows {
						var fv FlowVerdict
						if r != nil {
							fv, _ = a.Analyze(&flows[i])
						} else {
							fv, _ = a.AnalyzeResolved(&flows[i], ends[i])
						}
						tl.Add(&fv)
					}
					hookCPU += threadCPU() - c
					hooked += len(flows)
				}
			}
			svc, err := flow.NewService(st, inv, opts)
			if err != nil {
				b.Fatal(err)
			}
			g := flowgen.New(1)
			const batch = 5000
			var f flow.Flow
			var seq uint64
			bt := flow.Batch{Agent: "bench", Node: "node-0", Observations: make([]flow.Observation, 0, 2*batch)}
			runtime.GC()
			b.ResetTimer()
			var cpu time.Duration
			for done := 0; done < b.N; {
				n := min(batch, b.N-done)
				b.StopTimer()
				bt.Observations = bt.Observations[:0]
				for i := range n {
					g.Flow(&f, t0.Add(time.Duration(done+i)*5*time.Millisecond))
					for _, p := range f.Points {
						seq++
						bt.Observations = append(bt.Observations, flow.Observation{Agent: "bench", Seq: seq, Mode: f.Mode, Point: p,
							Tuple: flow.Tuple{Proto: f.Proto, SrcIP: f.Src.IP, DstIP: f.Dst.IP, SrcPort: f.Src.Port, DstPort: f.Dst.Port},
							Start: f.Start, End: f.End, FwdPackets: f.FwdPackets, FwdBytes: f.FwdBytes, RevPackets: f.RevPackets,
							RevBytes: f.RevBytes, Flags: f.Flags, Conns: f.Conns, NewConns: f.Conns})
					}
				}
				b.StartTimer()
				c := cpuTime()
				if err := svc.Ingest(b.Context(), bt); err != nil {
					b.Fatal(err)
				}
				if err := svc.Flush(true); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime() - c
				done += n
			}
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/flow")
			if hooked > 0 {
				b.ReportMetric(float64(hookCPU.Nanoseconds())/float64(hooked), "hook-cpu-ns/flow")
				b.ReportMetric(float64(hookCPU.Nanoseconds())/float64(cpu.Nanoseconds())*100, "hook-%")
			}
		})
	}
}
