package discovery

import (
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/policy"
)

// Parallel is a discovery on several cores: flows added are handed in
// batches to one Discoverer per worker, merged at the end (exactly: the
// result is the one a single Discoverer gives). A flow goes to the worker
// of its source address, so the workers' consumers, and so their edges,
// are disjoint: each keeps only its share of the rules and the merge has
// nothing to fold twice. Add is for one goroutine.
type Parallel struct {
	shards  []*Discoverer
	work    []chan []flow.Flow
	free    chan []flow.Flow
	batches [][]flow.Flow // per worker
	wg      sync.WaitGroup
	done    bool
}

// parallelBatch is the number of flows handed to a worker at once.
const parallelBatch = 1024

// NewParallel prepares a discovery like New on workers goroutines (1: on
// the caller's).
func NewParallel(in Input, opts Options, workers int) (*Parallel, error) {
	opts, err := checkOptions(in, opts)
	if err != nil {
		return nil, err
	}
	ev, err := policy.Compile(in.Set)
	if err != nil {
		return nil, err
	}
	workers = max(workers, 1)
	p := &Parallel{free: make(chan []flow.Flow, 3*workers)}
	for range workers {
		d, err := newDiscoverer(in, opts, ev)
		if err != nil {
			return nil, err
		}
		p.shards = append(p.shards, d)
	}
	if workers == 1 {
		return p, nil
	}
	p.batches = make([][]flow.Flow, workers)
	for _, d := range p.shards {
		ch := make(chan []flow.Flow, 2)
		p.work = append(p.work, ch)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for b := range ch {
				for i := range b {
					d.Add(&b[i])
				}
				select {
				case p.free <- b[:0]:
				default:
				}
			}
		}()
	}
	return p, nil
}

// Add takes one flow into account (a copy of *f is kept until a worker has
// taken it).
func (p *Parallel) Add(f *flow.Flow) {
	if p.work == nil {
		p.shards[0].Add(f)
		return
	}
	w := int(hashString(f.Src.IP) % uint32(len(p.work)))
	b := p.batches[w]
	if b == nil {
		select {
		case b = <-p.free:
		default:
			b = make([]flow.Flow, 0, parallelBatch)
		}
	}
	b = append(b, *f)
	p.batches[w] = b
	if len(b) == parallelBatch {
		p.flush(w)
	}
}

func (p *Parallel) flush(w int) {
	if len(p.batches[w]) == 0 {
		return
	}
	p.work[w] <- p.batches[w]
	p.batches[w] = nil
}

// hashString is FNV-1a.
func hashString(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// Close hands the last flows to the workers and waits for them to end (a
// discovery abandoned without its Result must still be closed). No flows
// may be added afterwards; closing again does nothing.
func (p *Parallel) Close() {
	if p.work != nil && !p.done {
		for w := range p.work {
			p.flush(w)
		}
		for _, ch := range p.work {
			close(ch)
		}
		p.wg.Wait()
		p.done = true
	}
}

// Result closes p and merges what the workers found.
func (p *Parallel) Result(from, to time.Time) *Result {
	p.Close()
	d := p.shards[0]
	if len(d.merged) == 0 {
		for _, o := range p.shards[1:] {
			d.Merge(o)
		}
	}
	return d.Result(from, to)
}
