package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/console/browsertest"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/inventory"
	"github.com/palisade-dev/palisade/internal/server"
)

// pods adds n pods to the server's inventory, spread over 50 namespaces;
// pod i has the IP 10.(i/65536+100).(i/256%256).(i%256) and owner
// Deployment app-(i/group).
func pods(s *server.Server, n, group int) []inventory.Workload {
	out := make([]inventory.Workload, 0, n)
	now := time.Now().Add(-time.Hour)
	for i := range n {
		ns := fmt.Sprintf("team-%02d", i%50)
		name := fmt.Sprintf("app-%d-%05d", i/group, i)
		w := inventory.Workload{
			ID: "bench/pod/" + ns + "/" + name, Cluster: "bench", Kind: inventory.KindPod, Namespace: ns, Name: name,
			IPs:    []string{fmt.Sprintf("10.%d.%d.%d", 100+i/65536, i/256%256, i%256)},
			Labels: map[string]string{"app": fmt.Sprintf("app-%d", i/group), "tier": []string{"web", "api", "db"}[i%3]},
			Node:   fmt.Sprintf("node-%d", i%20), Phase: "Running",
			Owner:      &inventory.Owner{Kind: "Deployment", Name: fmt.Sprintf("app-%d", i/group)},
			Containers: []inventory.Container{{Name: "main", Image: fmt.Sprintf("registry.example/app-%d:1.0", i/group)}},
			Created:    now,
		}
		s.Inventory.Apply(w)
		out = append(out, w)
	}
	return out
}

// BenchmarkInventoryFirstPage: a fresh load of the console's inventory page
// over 10,000 workloads, from navigation start to the first page of the
// table rendered (the API answer of all 10,000 included).
func BenchmarkInventoryFirstPage(b *testing.B) {
	s := startServer(b)
	pods(s, 10000, 1)
	br := browsertest.Start(b)
	p := br.NewPage(b)
	p.SignIn(s.URL(), s.AdminToken())
	var total, apiFirst, apiAll float64
	for i := 0; b.Loop(); i++ {
		p.Open(fmt.Sprintf("%s/?load=%d#/inventory", s.URL(), i))
		p.WaitFor("first page", `performance.getEntriesByName("palisade:inventory-rendered").length > 0`, 30*time.Second)
		ms := browsertest.Eval[float64](p, `performance.getEntriesByName("palisade:inventory-rendered")[0].startTime`)
		rows := browsertest.Eval[int](p, `document.querySelectorAll("[data-testid=inventory-table] tbody tr").length`)
		if rows != 50 {
			b.Fatalf("first page has %d rows, want 50", rows)
		}
		total += ms
		// Every match loaded (nothing of this load left on the server), then
		// the peer: the API's own answer times for the page's two requests.
		p.WaitFor("all 10,000", `document.querySelector("[data-testid=row-count]")?.textContent.endsWith("of 10,000")`, time.Minute)
		apiFirst += timeGet(b, s, "/api/v1/inventory?limit=50")
		apiAll += timeGet(b, s, "/api/v1/inventory")
	}
	p.Clean("inventory of 10,000")
	b.ReportMetric(total/float64(b.N), "ms/first-page")
	b.ReportMetric(apiFirst/float64(b.N), "ms/api-first-50")
	b.ReportMetric(apiAll/float64(b.N), "ms/api-all")
}

// BenchmarkServiceMapLayout: the service map of 500 workloads (each its
// own Deployment) with 1,500 observed calls between them, laid out by
// Cytoscape.js + fCoSE in headless Chromium.
func BenchmarkServiceMapLayout(b *testing.B) {
	const n = 500
	s := startServer(b)
	ws := pods(s, n, 1)
	var obs []flow.Observation
	now := time.Now().Add(-2 * time.Minute)
	for i := range n {
		for _, j := range []int{(i + 1) % n, (i*7 + 3) % n, (i*13 + 5) % n} {
			obs = append(obs, flow.Observation{
				Agent: "bench", Seq: uint64(len(obs) + 1), Mode: flow.ConversationMode,
				Point: flow.ObservationPoint{Node: ws[i].Node, Interface: fmt.Sprintf("veth%05d", i), Kind: "pod", Pod: ws[i].Namespace + "/" + ws[i].Name},
				Tuple: flow.Tuple{Proto: "tcp", SrcIP: ws[i].IPs[0], DstIP: ws[j].IPs[0], DstPort: 8080},
				Start: now, End: now.Add(10 * time.Second), FwdPackets: 10, FwdBytes: 1200, RevPackets: 8, RevBytes: 5400,
				Flags: []string{flow.FlagSYN, flow.FlagSYNACK}, Conns: 2, NewConns: 2,
			})
		}
	}
	if err := s.Flows.Ingest(context.Background(), flow.Batch{Agent: "bench", Node: "node-0", Observations: obs}); err != nil {
		b.Fatal(err)
	}
	if err := s.Flows.Flush(true); err != nil {
		b.Fatal(err)
	}
	br := browsertest.Start(b)
	p := br.NewPage(b)
	p.SignIn(s.URL(), s.AdminToken())
	// fast: what the map uses above 150 workloads (fCoSE's spectral draft);
	// fine, the peer: the draft refined by fCoSE's force-directed phase.
	for _, layout := range []string{"fast", "fine"} {
		b.Run(layout, func(b *testing.B) {
			var total, load, lay, draw, create, cpu float64
			for i := 0; b.Loop(); i++ {
				// The browser's CPU time (every process) from before the
				// navigation to the laid-out map (the page's load, the
				// flows' answer, the chunk, layout and draw): what the
				// work costs whatever the machine's load.
				cpu0 := p.CPU()
				p.Open(fmt.Sprintf("%s/?load=%d#/map?from=1h&layout=%s", s.URL(), i, layout))
				p.WaitFor("laid out", `(document.querySelector("[data-testid=service-map]")?.dataset.layoutMs ?? "") !== ""`, 5*time.Minute)
				nodes := browsertest.Eval[string](p, `document.querySelector("[data-testid=service-map]").dataset.nodes`)
				if nodes != fmt.Sprint(n) {
					b.Fatalf("map has %s nodes, want %d", nodes, n)
				}
				cpu += float64(p.CPU().Since(cpu0).Microseconds()) / 1000
				total += browsertest.Eval[float64](p, `Number(document.querySelector("[data-testid=service-map]").dataset.layoutMs)`)
				if layout == "fast" {
					// Where the time goes: loading the chunk, the layout on
					// the headless copy, drawing at the computed positions.
					ph := browsertest.Eval[[]float64](p, `["palisade:map-import", "palisade:map-layout-start", "palisade:map-layout-end", "palisade:map-drawn", "palisade:map-created"].map(n => performance.getEntriesByName(n).at(-1)?.startTime ?? 0)`)
					load += ph[1] - ph[0]
					lay += ph[2] - ph[1]
					draw += ph[3] - ph[2]
					create += ph[4] - ph[2]
				}
			}
			if layout == "fast" {
				b.ReportMetric(load/float64(b.N), "ms/chunk+init")
				b.ReportMetric(lay/float64(b.N), "ms/fcose")
				b.ReportMetric(draw/float64(b.N), "ms/draw")
				b.ReportMetric(create/float64(b.N), "ms/draw-create")
			}
			p.Clean("map of 500")
			p.Screenshot("bench-map-500-" + layout)
			b.ReportMetric(total/float64(b.N), "ms/layout")
			b.ReportMetric(cpu/float64(b.N), "ms-cpu/page")
		})
	}
	// again: the same 500 workloads over another time range, in the page
	// that laid them out (positions kept): from the chunk's import to the
	// drawn map, no layout run.
	b.Run("again", func(b *testing.B) {
		p.Open(s.URL() + "/?load=again#/map?from=1h")
		p.WaitFor("laid out", `(document.querySelector("[data-testid=service-map]")?.dataset.layoutMs ?? "") !== ""`, 5*time.Minute)
		var total, cpu float64
		for i := 0; b.Loop(); i++ {
			drawn := browsertest.Eval[int](p, `performance.getEntriesByName("palisade:map-drawn").length`)
			cpu0 := p.CPU()
			browsertest.Eval[any](p, fmt.Sprintf(`location.hash = "#/map?from=%dm"`, 61+i))
			p.WaitFor("drawn again", fmt.Sprintf(`performance.getEntriesByName("palisade:map-drawn").length > %d`, drawn), time.Minute)
			cpu += float64(p.CPU().Since(cpu0).Microseconds()) / 1000
			total += browsertest.Eval[float64](p, `performance.getEntriesByName("palisade:map-drawn").at(-1).startTime - performance.getEntriesByName("palisade:map-import").at(-1).startTime`)
			if got := browsertest.Eval[string](p, `document.querySelector("[data-testid=service-map]").dataset.nodes`); got != fmt.Sprint(n) {
				b.Fatalf("map has %s nodes, want %d", got, n)
			}
		}
		p.Clean("map of 500 again")
		b.ReportMetric(total/float64(b.N), "ms/layout")
		b.ReportMetric(cpu/float64(b.N), "ms-cpu/change")
	})
}

// timeGet returns how long a GET takes to answer in full, in ms.
func timeGet(b *testing.B, s *server.Server, path string) float64 {
	b.Helper()
	url := s.URL() + path
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+s.AdminToken())
	t0 := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, res.Body) //nolint:errcheck // timing only
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %s", url, res.Status)
	}
	return float64(time.Since(t0).Microseconds()) / 1000
}
