package discovery

import (
	"sync"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/internal/policy"
)

// Parallel is a discovery on several cores: flows added are handed in
// batches to one Discoverer per worker, merged at the end (exactly: the
// result is the one a single Discoverer gives). Add is for one goroutine.
type Parallel struct {
	shards []*Discoverer
	work   []chan []flow.Flow
	free   chan []flow.Flow
	batch  []flow.Flow
	next   int
	wg     sync.WaitGroup
	done   bool
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
	if p.batch == nil {
		select {
		case p.batch = <-p.free:
		default:
			p.batch = make([]flow.Flow, 0, parallelBatch)
		}
	}
	p.batch = append(p.batch, *f)
	if len(p.batch) == parallelBatch {
		p.flush()
	}
}

func (p *Parallel) flush() {
	if len(p.batch) == 0 {
		return
	}
	p.work[p.next] <- p.batch
	p.next = (p.next + 1) % len(p.work)
	p.batch = nil
}

// Close hands the last flows to the workers and waits for them to end (a
// discovery abandoned without its Result must still be closed). No flows
// may be added afterwards; closing again does nothing.
func (p *Parallel) Close() {
	if p.work != nil && !p.done {
		p.flush()
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
