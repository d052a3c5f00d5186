package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/palisade-dev/palisade/internal/flow"
)

// wal is the log of agent batches acknowledged but not yet stored as flows.
// It is a series of files of framed JSON batches; a file is deleted once
// every record in it is stored as a flow.
type wal struct {
	dir  string
	sync bool
	// aside moves a damaged file aside (see Store.moveAside).
	aside func(path, why string) error

	mu     sync.Mutex
	files  []*walFile // oldest first; the last is active
	next   int
	active *os.File
}

type walFile struct {
	n    int
	path string
	size int64
	obs  flow.Seqs
}

const walRotate = 64 << 20

func openWAL(dir string, sync bool, aside func(path, why string) error) (*wal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("flow log: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("flow log: %w", err)
	}
	w := &wal{dir: dir, sync: sync, aside: aside}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("flow log: %w", err)
	}
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".log"))
		if err != nil || !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		f := &walFile{n: n, path: filepath.Join(dir, e.Name()), obs: flow.Seqs{}}
		if err := f.repair(aside); err != nil {
			return nil, err
		}
		good, err := f.scan(func(b *flow.Batch) {
			for _, o := range b.Observations {
				f.obs.Add(o.Agent, o.Seq)
			}
		})
		if err != nil {
			return nil, err
		}
		f.size = good
		w.files = append(w.files, f)
		w.next = max(w.next, n+1)
	}
	sort.Slice(w.files, func(i, j int) bool { return w.files[i].n < w.files[j].n })
	return w, nil
}

// repair rewrites a file with a damaged batch in its middle without it
// (the original is moved aside): the batches around it were acknowledged
// and must not be lost with it. A torn tail is left to scan.
func (f *walFile) repair(aside func(path, why string) error) error {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("flow log: %w", err)
	}
	var good []byte
	var why []string
	bad, tail := frames(data, func(off int, payload []byte, end int) {
		var b flow.Batch
		if err := json.Unmarshal(payload, &b); err != nil {
			why = append(why, fmt.Sprintf("bytes %d-%d: %v", off, end, err))
			return
		}
		good = append(good, data[off:end]...)
	})
	for _, b := range bad {
		why = append(why, fmt.Sprintf("bytes %d-%d: a damaged batch", b[0], b[1]))
	}
	if len(why) == 0 {
		return nil
	}
	good = append(good, data[tail:]...) // a torn tail, for scan to cut
	tmp := f.path + ".repair"
	if err := writeSync(tmp, good); err != nil {
		return fmt.Errorf("flow log: %w", err)
	}
	if err := aside(f.path, strings.Join(why, "; ")); err != nil {
		return err
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("flow log: %w", err)
	}
	return syncDir(filepath.Dir(f.path))
}

// scan calls fn for each whole batch of the file and returns the length of
// the whole blocks (a torn tail is truncated).
func (f *walFile) scan(fn func(*flow.Batch)) (int64, error) {
	data, err := os.ReadFile(f.path)
	if err != nil {
		return 0, fmt.Errorf("flow log: %w", err)
	}
	rest := data
	for {
		payload, next, ok := unframe(rest)
		if !ok {
			break
		}
		var b flow.Batch
		if err := json.Unmarshal(payload, &b); err != nil {
			break
		}
		fn(&b)
		rest = next
	}
	good := int64(len(data) - len(rest))
	if good < int64(len(data)) {
		if err := os.Truncate(f.path, good); err != nil {
			return 0, fmt.Errorf("flow log: %w", err)
		}
	}
	return good, nil
}

func (w *wal) append(b *flow.Batch) error {
	payload, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("flow log: %w", err)
	}
	block := frame(payload)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active == nil || w.files[len(w.files)-1].size > walRotate {
		if err := w.rotate(); err != nil {
			return err
		}
	}
	f := w.files[len(w.files)-1]
	if _, err := w.active.WriteAt(block, f.size); err != nil {
		return fmt.Errorf("flow log: %w", err)
	}
	if w.sync {
		if err := w.active.Sync(); err != nil {
			return fmt.Errorf("flow log: %w", err)
		}
	}
	f.size += int64(len(block))
	for _, o := range b.Observations {
		f.obs.Add(o.Agent, o.Seq)
	}
	return nil
}

// rotate starts a new active file. Caller holds mu.
func (w *wal) rotate() error {
	if w.active != nil {
		w.active.Close()
	}
	f := &walFile{n: w.next, path: filepath.Join(w.dir, strconv.Itoa(w.next)+".log"), obs: flow.Seqs{}}
	w.next++
	af, err := os.OpenFile(f.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("flow log: %w", err)
	}
	if w.sync {
		if err := syncDir(w.dir); err != nil {
			af.Close()
			return err
		}
	}
	w.active = af
	w.files = append(w.files, f)
	return nil
}

// drop deletes the files all of whose records are done. The active file is
// replaced by a new one first when it is done too.
func (w *wal) drop(done flow.Seqs) {
	w.mu.Lock()
	defer w.mu.Unlock()
	keep := w.files[:0]
	for i, f := range w.files {
		active := i == len(w.files)-1 && w.active != nil
		if f.size == 0 || !done.Covers(f.obs) || active && f.size < 1<<20 {
			keep = append(keep, f)
			continue
		}
		if active {
			w.active.Close()
			w.active = nil
		}
		os.Remove(f.path)
	}
	w.files = keep
}

// pending returns the logged batches, less their done records.
func (w *wal) pending(done flow.Seqs) ([]flow.Batch, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []flow.Batch
	for _, f := range w.files {
		_, err := f.scan(func(b *flow.Batch) {
			obs := b.Observations[:0]
			for _, o := range b.Observations {
				if !done.Has(o.Agent, o.Seq) {
					obs = append(obs, o)
				}
			}
			b.Observations = obs
			if len(obs) > 0 || len(b.NAT) > 0 {
				out = append(out, *b)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (w *wal) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active != nil {
		err := w.active.Close()
		w.active = nil
		return err
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("flow store: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("flow store: sync %s: %w", dir, err)
	}
	return nil
}
