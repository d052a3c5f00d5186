// Package duckdb runs Palisade's flow store and DuckDB side by side on the
// same generated flows: ingest rate and the search benchmark's query mix
// (internal/flow/flowgen), as ratios. It is a measurement in a module of
// its own, so the product never links DuckDB (a cgo build).
//
//	cd bench/duckdb && SIDE_FLOWS=10000000 go test -run TestSideBySide -v -timeout 0
//
// DuckDB is loaded through its Appender by default, row by row (about
// 55 µs of CPU per row with this table's MAP and LIST columns). With
// SIDE_LOAD=arrow and -tags duckdb_arrow it is loaded in bulk instead:
// Arrow record batches built in Go, each copied by one INSERT … SELECT
// through DuckDB's Arrow interface (about 14 µs per row) — its fastest
// path for data already in memory, and the one the 100 M-row comparison
// uses:
//
//	SIDE_LOAD=arrow SIDE_FLOWS=100000000 SIDE_SPAN=168h go test -tags duckdb_arrow -run TestSideBySide -v -timeout 0
//
// With SIDE_DIR=DIR the store and the DuckDB database are kept in DIR: a
// later run with the same SIDE_DIR reopens both (the flows' times are kept
// in DIR/side.meta) and runs only the queries, so two versions of the
// store can be compared on the same data against the same DuckDB database
// without paying DuckDB's ingest again (58 µs of CPU per row).
package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowgen"
	"github.com/palisade-dev/palisade/internal/flow/store"
)

const schema = `CREATE TABLE flows (
	id VARCHAR, mode VARCHAR, proto VARCHAR,
	src_ip VARCHAR, src_port USMALLINT, src_workload VARCHAR, src_kind VARCHAR, src_name VARCHAR, src_namespace VARCHAR,
	src_labels MAP(VARCHAR, VARCHAR), src_owner_kind VARCHAR, src_owner_name VARCHAR, src_service VARCHAR, src_node VARCHAR,
	dst_ip VARCHAR, dst_port USMALLINT, dst_workload VARCHAR, dst_kind VARCHAR, dst_name VARCHAR, dst_namespace VARCHAR,
	dst_labels MAP(VARCHAR, VARCHAR), dst_owner_kind VARCHAR, dst_owner_name VARCHAR, dst_service VARCHAR, dst_node VARCHAR,
	start_ts TIMESTAMP, end_ts TIMESTAMP,
	fwd_packets UBIGINT, fwd_bytes UBIGINT, rev_packets UBIGINT, rev_bytes UBIGINT, conns UBIGINT,
	flags VARCHAR[], replied BOOLEAN, points VARCHAR[], related_ids VARCHAR[], related_reasons VARCHAR[], tunnel VARCHAR
)`

// sqlOf is the query mix in SQL, query by query (same names as
// flowgen.QueryMix). IP ranges: the generated addresses are dotted quads,
// so a /24 is a prefix of the text.
var sqlOf = map[string]string{
	"namespace":                     `src_namespace = 'ns-7'`,
	"ns+port":                       `src_namespace = 'ns-7' AND dst_port = 5432`,
	"pod pair (rare, full scan)":    `src_name = 'pod-123' AND dst_name = 'pod-4567'`,
	"label+attr":                    `src_labels['app'] = 'app-3' AND NOT replied AND dst_kind = 'service'`,
	"cidr":                          `starts_with(dst_ip, '203.0.0.') AND len(related_ids) > 0`,
	"egress not replied, full scan": `starts_with(dst_ip, '203.0.7.') AND NOT replied AND src_namespace = 'ns-3'`,
	"src.port (per port value)":     `src_port = 40000`,
	"bytes (per flow, full scan)":   `fwd_bytes > 1048000 AND rev_bytes > 1048000`,
	"1 h, no filter":                `TRUE`,
	"everything, limit 100":         `TRUE`,
}

func endpointRow(e *flow.Endpoint) []driver.Value {
	labels := duckdb.Map{}
	for k, v := range e.Labels {
		labels[k] = v
	}
	ok, on := "", ""
	if e.Owner != nil {
		ok, on = e.Owner.Kind, e.Owner.Name
	}
	return []driver.Value{e.IP, e.Port, e.Workload, e.Kind, e.Name, e.Namespace, labels, ok, on, e.Service, e.Node}
}

func row(f *flow.Flow) []driver.Value {
	r := []driver.Value{f.ID, f.Mode, f.Proto}
	r = append(r, endpointRow(&f.Src)...)
	r = append(r, endpointRow(&f.Dst)...)
	points := make([]string, len(f.Points))
	for i, p := range f.Points {
		points[i] = p.Node + "/" + p.Interface
	}
	ids, reasons := []string{}, []string{}
	for _, x := range f.Related {
		ids, reasons = append(ids, x.ID), append(reasons, x.Reason)
	}
	flags := f.Flags
	if flags == nil {
		flags = []string{}
	}
	return append(r, f.Start, f.End, f.FwdPackets, f.FwdBytes, f.RevPackets, f.RevBytes, f.Conns,
		flags, f.Replied, points, ids, reasons, f.Tunnel)
}

// A loader puts flows into DuckDB's flows table, batch by batch.
type loader interface {
	Append([]flow.Flow) error
	Close() error
}

// loaders by SIDE_LOAD name: "appender" (the default: the driver's
// Appender, row by row, flushed per batch); arrow_test.go adds "arrow".
var loaders = map[string]func(c driver.Conn, exec func(string) error) (loader, error){
	"appender": func(c driver.Conn, _ func(string) error) (loader, error) {
		app, err := duckdb.NewAppenderFromConn(c, "", "flows")
		return appender{app}, err
	},
}

type appender struct{ *duckdb.Appender }

func (a appender) Append(fs []flow.Flow) error {
	for i := range fs {
		if err := a.AppendRow(row(&fs[i])...); err != nil {
			return err
		}
	}
	return a.Flush()
}

// dirBytes is the size of a file or of every file under a directory.
func dirBytes(path string) int64 {
	var n int64
	filepath.WalkDir(path, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

type lat struct{ p50, p99, max time.Duration }

func percentiles(d []time.Duration) lat {
	slices.Sort(d)
	return lat{d[len(d)/2], d[int(0.99*float64(len(d)-1))], d[len(d)-1]}
}

// TestSideBySide loads SIDE_FLOWS generated flows (default 1 M) over
// SIDE_SPAN (default 24 h) into the flow store and into DuckDB (one
// table, the same columns, through the SIDE_LOAD loader, batches of
// 10,000), then
// runs the query mix on both (5 runs each) and prints a table with
// ratios. Both sides checked to return the same number of flows.
func TestSideBySide(t *testing.T) {
	total := 1_000_000
	if v := os.Getenv("SIDE_FLOWS"); v != "" {
		total, _ = strconv.Atoi(v)
	}
	span := 24 * time.Hour
	if v := os.Getenv("SIDE_SPAN"); v != "" {
		span, _ = time.ParseDuration(v)
	}
	dir := t.TempDir()
	if v := os.Getenv("SIDE_DIR"); v != "" {
		dir = v
	}
	meta := filepath.Join(dir, "side.meta")
	var kept struct{ t0, t1, total int64 }
	reuse := false
	if b, err := os.ReadFile(meta); err == nil {
		if _, err := fmt.Sscan(string(b), &kept.t0, &kept.t1, &kept.total); err != nil {
			t.Fatalf("%s: %v", meta, err)
		}
		reuse = true
		total = int(kept.total)
	}
	t.Logf("machine: %d cores, load average at start %s", runtime.NumCPU(), loadavg())

	st, err := store.Open(filepath.Join(dir, "flows"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if reuse {
		// Cold segments of an older format get their column files from
		// retention passes: finish that before measuring.
		c0, w0 := cpuTime(), time.Now()
		// A pass checks the version of up to 256 files not yet read,
		// so old ones show in ColdRowOnly only once a pass has seen them.
		probe := st.Stats().Segments/256 + 2
		for i := 0; (i < probe || st.Stats().ColdRowOnly > 0) && i < 10_000; i++ {
			st.Retain(time.Now())
		}
		t.Logf("reopened %d flows: %+v; column files made in %v wall, %v CPU", total, st.Stats(), time.Since(w0), cpuTime()-c0)
	}
	conn, err := duckdb.NewConnector(filepath.Join(dir, "flows.duckdb"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	db := sql.OpenDB(conn)
	defer db.Close()
	setup := []string{`SET threads = 2`, `SET memory_limit = '6GB'`, schema}
	if reuse {
		setup = setup[:2]
	}
	for _, q := range setup {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var version string
	if err := db.QueryRow(`SELECT version()`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	t.Logf("DuckDB %s", version)
	dc, err := conn.Connect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	how := os.Getenv("SIDE_LOAD")
	if how == "" {
		how = "appender"
	}
	newLoader, ok := loaders[how]
	if !ok {
		t.Fatalf("SIDE_LOAD=%s: no such loader (appender; arrow needs -tags duckdb_arrow)", how)
	}
	exec := func(q string) error {
		_, err := dc.(driver.ExecerContext).ExecContext(context.Background(), q, nil)
		return err
	}
	ld, err := newLoader(dc, exec)
	if err != nil {
		t.Fatal(err)
	}

	g := flowgen.New(2)
	t1 := time.Now()
	t0 := t1.Add(-span)
	if reuse {
		t0, t1 = time.Unix(0, kept.t0), time.Unix(0, kept.t1)
	}
	step := t1.Sub(t0) / time.Duration(total)
	batch := make([]flow.Flow, 10_000)
	var storeWall, storeCPU, duckWall, duckCPU time.Duration
	for done := 0; done < total && !reuse; {
		n := min(len(batch), total-done)
		for i := range n {
			g.Flow(&batch[i], t0.Add(time.Duration(done+i)*step))
		}
		w, c := time.Now(), cpuTime()
		if err := st.Append(batch[:n], nil); err != nil {
			t.Fatal(err)
		}
		storeWall, storeCPU = storeWall+time.Since(w), storeCPU+cpuTime()-c
		w, c = time.Now(), cpuTime()
		if err := ld.Append(batch[:n]); err != nil {
			t.Fatal(err)
		}
		duckWall, duckCPU = duckWall+time.Since(w), duckCPU+cpuTime()-c
		done += n
	}
	w, c := time.Now(), cpuTime()
	if err := ld.Close(); err != nil {
		t.Fatal(err)
	}
	duckWall, duckCPU = duckWall+time.Since(w), duckCPU+cpuTime()-c
	dc.Close()
	if _, err := db.Exec(`CHECKPOINT`); err != nil {
		t.Fatal(err)
	}
	if !reuse && os.Getenv("SIDE_DIR") != "" {
		if err := os.WriteFile(meta, fmt.Appendf(nil, "%d %d %d\n", t0.UnixNano(), t1.UnixNano(), total), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("on disk: store %d MB, DuckDB %d MB", dirBytes(filepath.Join(dir, "flows"))>>20, dirBytes(filepath.Join(dir, "flows.duckdb"))>>20)
	rate := func(d time.Duration) float64 { return float64(total) / d.Seconds() }
	if !reuse {
		t.Logf("ingest %d flows (DuckDB through %s): store %.0f flows/s (%.2f µs CPU/flow), DuckDB %.0f rows/s (%.2f µs CPU/row); store/DuckDB rate ratio %.2f; load average %s",
			total, how, rate(storeWall), float64(storeCPU.Nanoseconds())/float64(total)/1e3, rate(duckWall),
			float64(duckCPU.Nanoseconds())/float64(total)/1e3, rate(storeWall)/rate(duckWall), loadavg())
	}

	type result struct {
		name                string
		store, duck         lat
		storeN, duckN       int
		storeCPUs, duckCPUs time.Duration
	}
	var results []result
	var allStore, allDuck []time.Duration
	for _, q := range flowgen.QueryMix(t0, t1) {
		cond, ok := sqlOf[q.Name]
		if !ok {
			t.Fatalf("no SQL for %q", q.Name)
		}
		sqlText := fmt.Sprintf(`SELECT * FROM flows WHERE start_ts <= ? AND end_ts >= ? AND (%s) ORDER BY start_ts DESC LIMIT %d`, cond, q.Limit)
		cq, err := flow.NewQuery(q.Filter, q.From.UnixNano(), q.To.UnixNano(), q.Limit)
		if err != nil {
			t.Fatal(err)
		}
		r := result{name: q.Name}
		var sl, dl []time.Duration
		for range 5 {
			w, c := time.Now(), cpuTime()
			fs, err := st.Search(cq)
			if err != nil {
				t.Fatal(err)
			}
			sl = append(sl, time.Since(w))
			r.storeCPUs += cpuTime() - c
			r.storeN = len(fs)

			w, c = time.Now(), cpuTime()
			rows, err := db.Query(sqlText, q.To, q.From)
			if err != nil {
				t.Fatalf("%s: %v", sqlText, err)
			}
			cols, _ := rows.Columns()
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			n := 0
			for rows.Next() {
				if err := rows.Scan(ptrs...); err != nil {
					t.Fatal(err)
				}
				n++
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			rows.Close()
			dl = append(dl, time.Since(w))
			r.duckCPUs += cpuTime() - c
			r.duckN = n
		}
		r.store, r.duck = percentiles(slices.Clone(sl)), percentiles(slices.Clone(dl))
		allStore, allDuck = append(allStore, sl...), append(allDuck, dl...)
		if r.storeN != r.duckN {
			t.Errorf("%s: store %d flows, DuckDB %d rows", q.Name, r.storeN, r.duckN)
		}
		results = append(results, r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| query | flows | store p50 (max) | DuckDB p50 (max) | store/DuckDB p50 | store CPU/run | DuckDB CPU/run |\n|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d | %v (%v) | %v (%v) | %.2f | %v | %v |\n", r.name, r.storeN, r.store.p50.Round(10*time.Microsecond), r.store.max.Round(10*time.Microsecond),
			r.duck.p50.Round(10*time.Microsecond), r.duck.max.Round(10*time.Microsecond),
			float64(r.store.p50)/float64(r.duck.p50), (r.storeCPUs / 5).Round(10*time.Microsecond), (r.duckCPUs / 5).Round(10*time.Microsecond))
	}
	sa, da := percentiles(allStore), percentiles(allDuck)
	fmt.Fprintf(&b, "| **whole mix** | | p50 %v, p99 %v | p50 %v, p99 %v | p99 ratio %.2f | | |\n", sa.p50.Round(10*time.Microsecond), sa.p99.Round(10*time.Microsecond),
		da.p50.Round(10*time.Microsecond), da.p99.Round(10*time.Microsecond), float64(sa.p99)/float64(da.p99))
	t.Log(b.String())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("load average at the end %s; Go heap %.0f MB", loadavg(), float64(ms.HeapAlloc)/1e6)
}
