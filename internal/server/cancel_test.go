package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	flowstore "github.com/palisade-dev/palisade/internal/flow/store"
)

// A historical read (analysis, discovery) and a flow search stop with
// their context's error: at once when it is done before they start,
// within a few thousand flows when it is cancelled midway (the client went
// away) or its deadline passes.
func TestReadsStopWithTheirContext(t *testing.T) {
	st, err := flowstore.Open(t.TempDir(), flowstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	svc, err := flow.NewService(st, nil, flow.Options{Window: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		b := mustBatch(t, fmt.Sprintf("c%d", i), 1000)
		if err := svc.Ingest(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Flush(true); err != nil {
		t.Fatal(err)
	}
	from, to := time.Now().Add(-time.Hour), time.Now().Add(time.Minute)
	all := 0
	if _, err := readSlices(context.Background(), st, from, to, func(*flow.Flow) { all++ }, nil); err != nil || all < 20000 {
		t.Fatalf("uncancelled read: %d flows, %v", all, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err = readSlices(ctx, st, from, to, func(*flow.Flow) {
		if n++; n == 100 {
			cancel()
		}
	}, nil)
	if !errors.Is(err, context.Canceled) || n > 100+sliceCheckEvery {
		t.Fatalf("read cancelled after 100 flows: %v after %d flows", err, n)
	}
	expired, cancel2 := context.WithTimeout(context.Background(), -time.Second)
	defer cancel2()
	n = 0
	if _, err := readSlices(expired, st, from, to, func(*flow.Flow) { n++ }, nil); !errors.Is(err, context.DeadlineExceeded) || n != 0 {
		t.Fatalf("read past its deadline: %v after %d flows", err, n)
	}
	if _, err := svc.SearchContext(expired, "", from, to, 100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("flow search past its deadline: %v", err)
	}
	if _, err := svc.TopContext(expired, "", "dst.port", from, to, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("flow top past its deadline: %v", err)
	}
	if fl, err := svc.SearchContext(context.Background(), "", from, to, 100); err != nil || len(fl) != 100 {
		t.Fatalf("flow search: %d, %v", len(fl), err)
	}
}
