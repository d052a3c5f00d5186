package flowapi

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/pkg/api"
)

// Limits bound what one agent may send. Zero values take the defaults.
type Limits struct {
	// MaxFuture is how far ahead of the server's clock an observation may
	// end (default 5 min): a node's clock may drift, but flows stamped
	// years ahead would escape retention.
	MaxFuture time.Duration
	// MaxAge refuses observations that ended longer ago than this (the
	// flow retention: they would be dropped at once). 0: no bound.
	MaxAge time.Duration
	// BatchRate is the sustained number of flow batches per second one
	// node may post (default 10), BatchBurst how many it may post at once
	// (default 50; a spool drained after an outage). Past them: 429 with
	// Retry-After.
	BatchRate  float64
	BatchBurst int
}

// Defaults.
const (
	DefaultMaxFuture  = 5 * time.Minute
	DefaultBatchRate  = 10
	DefaultBatchBurst = 50
)

func (l Limits) withDefaults() Limits {
	if l.MaxFuture <= 0 {
		l.MaxFuture = DefaultMaxFuture
	}
	if l.BatchRate <= 0 {
		l.BatchRate = DefaultBatchRate
	}
	if l.BatchBurst <= 0 {
		l.BatchBurst = DefaultBatchBurst
	}
	return l
}

// checkClock refuses a batch with an observation stamped too far ahead of
// now or older than MaxAge, naming the observation and the limit.
func (l Limits) checkClock(b *flow.Batch, now time.Time) *api.Error {
	if l.MaxFuture <= 0 { // no limits given
		return nil
	}
	for i := range b.Observations {
		o := &b.Observations[i]
		what := func() string {
			t := o.Tuple
			return fmt.Sprintf("observations[%d] (%s %s:%d > %s:%d at %s/%s)", i, t.Proto, t.SrcIP, t.SrcPort, t.DstIP, t.DstPort, o.Point.Node, o.Point.Interface)
		}
		if ahead := o.End.Sub(now); ahead > l.MaxFuture {
			return api.BadRequest(fmt.Sprintf("observations[%d].end", i),
				"%s ends at %s, %s ahead of the server's clock: more than the %s allowed (is the node's clock right?)",
				what(), o.End.UTC().Format(time.RFC3339), ahead.Round(time.Second), l.MaxFuture)
		}
		if l.MaxAge > 0 {
			if age := now.Sub(o.End); age > l.MaxAge {
				return api.BadRequest(fmt.Sprintf("observations[%d].end", i),
					"%s ended at %s, %s ago: older than the flow retention of %s (is the node's clock right?)",
					what(), o.End.UTC().Format(time.RFC3339), age.Round(time.Second), l.MaxAge)
			}
		}
	}
	return nil
}

// maxLimited bounds the per-node limiters kept; past it, the idle ones
// (a full bucket) are forgotten first.
const maxLimited = 4096

// batchLimiter is a token bucket of flow batches per node.
type batchLimiter struct {
	l  Limits
	mu sync.Mutex
	by map[string]*rate.Limiter
}

func newBatchLimiter(l Limits) *batchLimiter {
	return &batchLimiter{l: l, by: map[string]*rate.Limiter{}}
}

// allow takes one batch from node's bucket, or says how long to wait.
func (bl *batchLimiter) allow(node string, now time.Time) (time.Duration, bool) {
	if bl == nil { // no limits given
		return 0, true
	}
	bl.mu.Lock()
	defer bl.mu.Unlock()
	lim := bl.by[node]
	if lim == nil {
		if len(bl.by) >= maxLimited {
			for n, o := range bl.by {
				if o.TokensAt(now) >= float64(bl.l.BatchBurst) {
					delete(bl.by, n)
				}
			}
			// Still full (callers naming ever new nodes, which only the
			// legacy shared token can): forget any tenth.
			for n := range bl.by {
				if len(bl.by) < maxLimited*9/10 {
					break
				}
				delete(bl.by, n)
			}
		}
		lim = rate.NewLimiter(rate.Limit(bl.l.BatchRate), bl.l.BatchBurst)
		bl.by[node] = lim
	}
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// tooMany answers a batch over the node's rate: 429 with Retry-After.
func (bl *batchLimiter) tooMany(w http.ResponseWriter, node string, wait time.Duration) *api.Error {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	return api.Errorf(http.StatusTooManyRequests, "node %s posts flow batches faster than %g per second (burst %d): retry after %s",
		node, bl.l.BatchRate, bl.l.BatchBurst, wait.Round(time.Millisecond))
}
