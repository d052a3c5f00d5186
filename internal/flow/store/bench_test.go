package store

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/flow/flowgen"
)

// cpuTime is the process's user+system CPU time: the machine is shared,
// so wall-clock rates understate what 2 free cores do.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAppend measures durable ingest: batches of 10,000 flows, each
// batch fsynced, as the service writes them. Each batch is generated into
// a reused buffer with the timer stopped, and CPU time is counted only
// during Append: what is measured is the store, whose heap holds one
// batch of flows as the service's does (a pool of 200,000 pre-made flows,
// used before 2026-11-25, made every GC cycle scan ≈ 190 MB of pointers
// that a real ingest does not have).
func BenchmarkAppend(b *testing.B) {
	s, err := Open(b.TempDir(), Options{NoSync: os.Getenv("FLOWSTORE_BENCH_NOSYNC") != ""})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	g := flowgen.New(1)
	const batch = 10_000
	buf := make([]flow.Flow, batch)
	start := time.Now().Add(-6 * time.Hour)
	var cpu time.Duration
	runtime.GC()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(batch, b.N-done)
		b.StopTimer()
		for i := range n {
			g.Flow(&buf[i], start.Add(time.Duration(done+i)*5*time.Millisecond))
		}
		b.StartTimer()
		c0 := cpuTime()
		if err := s.Append(buf[:n], nil); err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - c0
		done += n
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/flow")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "flows/s")
	b.ReportMetric(float64(s.Stats().Bytes)/float64(b.N), "disk-B/flow")
}

// BenchmarkSearch10M stores FLOWSTORE_BENCH_FLOWS flows (default 10 M)
// spread over FLOWSTORE_BENCH_SPAN (default 24 h) up to now, closes and
// reopens the store (cold segments: everything older than the hot window,
// 1 h), then runs the search mix over the whole span and over the last
// hour, and reports latency percentiles and the heap.
// Run with -benchtime=1x: the setup dominates.
func BenchmarkSearch10M(b *testing.B) {
	total := 10_000_000
	if v := os.Getenv("FLOWSTORE_BENCH_FLOWS"); v != "" {
		total, _ = strconv.Atoi(v)
	}
	span := 24 * time.Hour
	if v := os.Getenv("FLOWSTORE_BENCH_SPAN"); v != "" {
		span, _ = time.ParseDuration(v)
	}
	dir := b.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	g := flowgen.New(2)
	t1 := time.Now()
	t0 := t1.Add(-span)
	step := span / time.Duration(total)
	batch := make([]flow.Flow, 10000)
	var appendTime, appendCPU time.Duration
	for done := 0; done < total; {
		n := min(len(batch), total-done)
		for i := range n {
			g.Flow(&batch[i], t0.Add(time.Duration(done+i)*step))
		}
		st, c0 := time.Now(), cpuTime()
		if err := s.Append(batch[:n], nil); err != nil {
			b.Fatal(err)
		}
		appendTime += time.Since(st)
		appendCPU += cpuTime() - c0
		done += n
	}
	stats := s.Stats()
	b.Logf("stored %d flows in %d segments (%d hot), %.0f MB on disk, heap %.0f MB; append %.0f flows/s wall, %.2f µs CPU per flow",
		stats.Flows, stats.Segments, stats.HotSegments, float64(stats.Bytes)/1e6, heapMB(), float64(total)/appendTime.Seconds(),
		float64(appendCPU.Nanoseconds())/float64(total)/1e3)
	s.Close()
	st := time.Now()
	if s, err = Open(dir, Options{}); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	reopen := time.Since(st)
	stats = s.Stats()
	b.Logf("reopened in %v: %d segments, %d hot; heap %.0f MB", reopen, stats.Segments, stats.HotSegments, heapMB())
	rowB, colB := filesBytes(dir, segSuffix), filesBytes(dir, colSuffix)
	b.Logf("disk: row files %.1f B per flow, column files %.1f B per flow (%d of %d cold segments with one)",
		float64(rowB)/float64(stats.Flows), float64(colB)/float64(stats.Flows), len(globs(dir, colSuffix)), stats.Segments-stats.HotSegments)

	all := queryMix(b, t0, t1)
	recent := queryMix(b, t1.Add(-time.Hour), t1)
	recent = recent[:len(recent)-2] // the last two are "1 h" and "everything"
	b.ResetTimer()
	runs := 5
	if v := os.Getenv("FLOWSTORE_BENCH_RUNS"); v != "" {
		runs, _ = strconv.Atoi(v)
	}
	run := func(queries []namedQuery) (lat, cpus []time.Duration) {
		for _, q := range queries {
			for range runs {
				st, c0 := time.Now(), cpuTime()
				if _, err := s.Search(q.q); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(st))
				cpus = append(cpus, cpuTime()-c0)
			}
		}
		return lat, cpus
	}
	var lat, cpus, hotLat []time.Duration
	for range b.N {
		l, c := run(all)
		lat, cpus = append(lat, l...), append(cpus, c...)
		l, _ = run(recent)
		hotLat = append(hotLat, l...)
	}
	b.StopTimer()
	for _, q := range all {
		st, c0 := time.Now(), cpuTime()
		fs, _ := s.Search(q.q)
		b.Logf("%-32s %4d flows  wall %-14v cpu %v", q.name, len(fs), time.Since(st), cpuTime()-c0)
	}
	for _, q := range recent {
		st, c0 := time.Now(), cpuTime()
		fs, _ := s.Search(q.q)
		b.Logf("last hour: %-21s %4d flows  wall %-14v cpu %v", q.name, len(fs), time.Since(st), cpuTime()-c0)
	}
	for range 3 {
		st, c0 := time.Now(), cpuTime()
		top, _ := s.Top(all[len(all)-1].q, "src.namespace", 10)
		b.Logf("top by src.namespace over all: %v, cpu %v (%d groups)", time.Since(st), cpuTime()-c0, len(top))
	}
	b.Logf("heap after the queries %.0f MB (cold cache %.0f MB, %d cold segment reads); %s", heapMB(), float64(s.Stats().ColdCacheBytes)/1e6, s.Stats().ColdReads, rss())
	slices.Sort(lat)
	slices.Sort(cpus)
	slices.Sort(hotLat)
	p := func(d []time.Duration, q float64) float64 {
		return float64(d[int(q*float64(len(d)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(p(lat, 0.5), "p50-ms")
	b.ReportMetric(p(lat, 0.99), "p99-ms")
	b.ReportMetric(p(cpus, 0.5), "p50-cpu-ms")
	b.ReportMetric(p(cpus, 0.99), "p99-cpu-ms")
	b.ReportMetric(p(hotLat, 0.99), "hot-p99-ms")
	b.ReportMetric(float64(reopen.Milliseconds()), "reopen-ms")
	b.ReportMetric(heapMB(), "heap-MB")
	b.ReportMetric(float64(stats.Flows), "flows")
}

func globs(dir, suffix string) []string {
	m, _ := filepath.Glob(filepath.Join(dir, "*"+suffix))
	return m
}

// filesBytes is the size of dir's files ending in suffix.
func filesBytes(dir, suffix string) int64 {
	var n int64
	for _, p := range globs(dir, suffix) {
		if fi, err := os.Stat(p); err == nil {
			n += fi.Size()
		}
	}
	return n
}

// rss reports the process's resident memory from /proc/self/status: peak
// (VmHWM), and now split into anonymous memory (heap, stacks) and mapped
// file pages (the column files a query read, reclaimable page cache).
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		for _, k := range []string{"VmHWM:", "RssAnon:", "RssFile:"} {
			if strings.HasPrefix(l, k) {
				out = append(out, strings.Join(strings.Fields(l), " "))
			}
		}
	}
	return strings.Join(out, ", ")
}

// heapMB is the live heap after a collection, in MB.
func heapMB() float64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc) / 1e6
}

// namedQuery is one query of the search benchmark's mix, compiled.
type namedQuery struct {
	name string
	q    flow.Query
}

// queryMix compiles flowgen.QueryMix.
func queryMix(tb testing.TB, t0, t1 time.Time) []namedQuery {
	var out []namedQuery
	for _, q := range flowgen.QueryMix(t0, t1) {
		c, err := flow.NewQuery(q.Filter, q.From.UnixNano(), q.To.UnixNano(), q.Limit)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, namedQuery{q.Name, c})
	}
	return out
}
