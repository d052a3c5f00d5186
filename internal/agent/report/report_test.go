package report

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
)

// fakeServer stores observations by (Agent, Seq); it can be down, or lose
// acks (store, then answer 500).
type fakeServer struct {
	mu       sync.Mutex
	down     bool
	loseAcks int
	seen     map[string]int // "agent/seq" -> times received
	requests int
	badAuth  int
}

func newFake() *fakeServer { return &fakeServer{seen: map[string]int{}} }

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if r.Header.Get("Authorization") != "Bearer s3cret" {
		f.badAuth++
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if f.down {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Path != "/api/v1/agents/node-1/flows" || r.Header.Get("Content-Encoding") != "gzip" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var b flow.Batch
	if err := json.NewDecoder(zr).Decode(&b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, o := range b.Observations {
		f.seen[fmt.Sprintf("%s/%d", o.Agent, o.Seq)]++
	}
	if f.loseAcks > 0 {
		f.loseAcks--
		http.Error(w, "ack lost", http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte(`{"mode":"detailed"}`))
}

func obs(n int) []flow.Observation {
	out := make([]flow.Observation, n)
	for i := range out {
		out[i] = flow.Observation{Mode: "detailed", Tuple: flow.Tuple{Proto: "tcp", SrcIP: "10.0.0.1", DstIP: "10.0.0.2", DstPort: uint16(i)}}
	}
	return out
}

func waitDrained(t *testing.T, r *Reporter) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.Pending() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("spool not drained: %+v", r.Counters())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestSpoolResendNoLossNoDup: the server is down, then loses an ack, then
// recovers; every observation arrives, the unique (Agent, Seq) set is
// exactly 0..N-1, and duplicates only come from the lost ack.
func TestSpoolResendNoLossNoDup(t *testing.T) {
	fs := newFake()
	fs.down = true
	fs.loseAcks = 1
	srv := httptest.NewServer(fs)
	defer srv.Close()

	var gotMode string
	var modeMu sync.Mutex
	r, err := Open(Config{Server: srv.URL, Node: "node-1", Token: "s3cret", SpoolDir: t.TempDir(),
		MaxBatch: 100, RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		OnResponse: func(b []byte) { modeMu.Lock(); gotMode = string(b); modeMu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	for i := 0; i < 10; i++ {
		if err := r.Submit(obs(55), nil); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.Counters().SendFailures == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c := r.Counters()
	if c.ObservationsSpooled != 550 || c.SendFailures == 0 {
		t.Fatalf("while down: %+v", c)
	}
	fs.mu.Lock()
	fs.down = false
	fs.mu.Unlock()
	waitDrained(t, r)

	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.seen) != 550 {
		t.Fatalf("server has %d distinct observations, want 550", len(fs.seen))
	}
	dups := 0
	for i := 0; i < 550; i++ {
		n := fs.seen[fmt.Sprintf("node-1/%d", i)]
		if n == 0 {
			t.Fatalf("seq %d missing", i)
		}
		dups += n - 1
	}
	// One lost ack: exactly that batch (55 observations) came twice, with
	// the same numbers.
	if dups != 55 {
		t.Errorf("%d duplicate receipts, want 55 (one resent batch)", dups)
	}
	c = r.Counters()
	if c.ObservationsSent != 550 || c.ObservationsDropped != 0 || c.NextSeq != 550 {
		t.Errorf("counters %+v", c)
	}
	modeMu.Lock()
	defer modeMu.Unlock()
	if gotMode != `{"mode":"detailed"}` {
		t.Errorf("OnResponse got %q", gotMode)
	}
}

// TestRestartKeepsSeqAndSpool: batches spooled by a reporter that never
// reached the server are sent by the next one, which numbers on.
func TestRestartKeepsSeqAndSpool(t *testing.T) {
	fs := newFake()
	srv := httptest.NewServer(fs)
	defer srv.Close()
	dir := t.TempDir()

	// First run: server unreachable (wrong port), process "dies" with
	// everything spooled.
	r1, err := Open(Config{Server: "http://127.0.0.1:1", Node: "node-1", Token: "s3cret", SpoolDir: dir, MaxBatch: 40})
	if err != nil {
		t.Fatal(err)
	}
	if err := r1.Submit(obs(100), []flow.NAT{{Node: "node-1", ConnID: 7}}); err != nil {
		t.Fatal(err)
	}

	r2, err := Open(Config{Server: srv.URL, Node: "node-1", Token: "s3cret", SpoolDir: dir, MaxBatch: 40, RetryMin: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if c := r2.Counters(); c.NextSeq != 100 || c.ObservationsSpooled != 100 {
		t.Fatalf("after restart: %+v", c)
	}
	if err := r2.Submit(obs(20), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r2.Run(ctx)
	waitDrained(t, r2)
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for i := 0; i < 120; i++ {
		if fs.seen[fmt.Sprintf("node-1/%d", i)] != 1 {
			t.Fatalf("seq %d received %d times", i, fs.seen[fmt.Sprintf("node-1/%d", i)])
		}
	}
	if len(fs.seen) != 120 {
		t.Fatalf("%d observations, want 120", len(fs.seen))
	}
}

// TestRefusedBatchIsDroppedNotBlocking: a 400 drops that batch (counted)
// and later batches still go; a bad token is retried, not dropped.
func TestRefusedBatchIsDroppedNotBlocking(t *testing.T) {
	fs := newFake()
	srv := httptest.NewServer(fs)
	defer srv.Close()
	r, err := Open(Config{Server: srv.URL, Node: "other-node", Token: "s3cret", SpoolDir: t.TempDir(), RetryMin: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Submit(obs(3), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	waitDrained(t, r)
	if c := r.Counters(); c.ObservationsDropped != 3 || c.ObservationsSent != 0 {
		t.Fatalf("counters %+v", c)
	}

	bad, err := Open(Config{Server: srv.URL, Node: "node-1", Token: "wrong", SpoolDir: t.TempDir(), RetryMin: time.Millisecond, RetryMax: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_ = bad.Submit(obs(2), nil)
	go bad.Run(ctx)
	time.Sleep(50 * time.Millisecond)
	if c := bad.Counters(); c.ObservationsSpooled != 2 || c.ObservationsDropped != 0 {
		t.Fatalf("unauthorized batch must stay spooled: %+v", c)
	}
}

// TestMarkSurvivesCrash: the mark of a marked submission is on disk with
// it, even if the state file was not written.
func TestMarkSurvivesCrash(t *testing.T) {
	dir := t.TempDir()
	r, err := Open(Config{Server: "http://127.0.0.1:1", Node: "n", SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SubmitMarked(obs(3), nil, "1234"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, stateFile)); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(Config{Server: "http://127.0.0.1:1", Node: "n", SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if r2.Mark() != "1234" || r2.Counters().NextSeq != 3 {
		t.Fatalf("mark %q counters %+v", r2.Mark(), r2.Counters())
	}
}

// TestSpoolBound: past MaxSpoolBytes the oldest batches are dropped and
// counted; the newest stay.
func TestSpoolBound(t *testing.T) {
	r, err := Open(Config{Server: "http://127.0.0.1:1", Node: "n", SpoolDir: t.TempDir(), MaxSpoolBytes: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := r.Submit(obs(10), nil); err != nil {
			t.Fatal(err)
		}
	}
	c := r.Counters()
	if c.BatchesSpooled != 1 || c.ObservationsDropped != 40 || c.ObservationsSpooled != 10 || c.NextSeq != 50 {
		t.Fatalf("%+v", c)
	}
}

// TestForeignAnswerKeepsBatch: while the server is down, something else may
// answer on its address (seen in CI: another process's HTTP server took the
// freed port and said 404). Such an answer says nothing about the batch: it
// stays spooled and reaches the server when it is back.
func TestForeignAnswerKeepsBatch(t *testing.T) {
	fs := newFake()
	var real atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !real.Load() {
			http.Error(w, `{"errors":[{"code":"METHOD_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		fs.ServeHTTP(w, req)
	}))
	defer srv.Close()
	r, err := Open(Config{Server: srv.URL, Node: "node-1", Token: "s3cret", SpoolDir: t.TempDir(), RetryMin: time.Millisecond, RetryMax: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Submit(obs(4), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.Run(ctx)
	time.Sleep(50 * time.Millisecond)
	if c := r.Counters(); c.ObservationsSpooled != 4 || c.ObservationsDropped != 0 {
		t.Fatalf("a 404 from something else dropped or lost the batch: %+v", c)
	}
	real.Store(true)
	waitDrained(t, r)
	if c := r.Counters(); c.ObservationsSent != 4 || c.ObservationsDropped != 0 {
		t.Fatalf("counters %+v", c)
	}
}
