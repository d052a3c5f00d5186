// Package report delivers an agent's observations to the server: numbered,
// batched, gzip'd JSON (flow.Batch) POSTed to
// {server}/api/v1/agents/{node}/flows.
//
// Every batch is written to an on-disk spool (one append-only file per
// batch, fsync'd) before it is sent, and removed only after the server's
// 200, which the server gives after a durable write. So batches survive a
// server outage and an agent crash, and a resend carries the same
// (Agent, Seq) numbers as the first try: the server recognises duplicates.
// The next Seq is persisted, so numbering continues across restarts.
package report

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

// Config configures a Reporter.
type Config struct {
	Server string // base URL, e.g. http://127.0.0.1:8443
	Node   string
	Agent  string // defaults to Node
	Token  string // sent as "Authorization: Bearer <token>"
	// SpoolDir holds unsent batches and the sequence state. Required.
	SpoolDir string
	// MaxBatch is the most observations per batch (default 5000).
	MaxBatch int
	// MaxSpoolBytes bounds the spool; past it the oldest batches are
	// dropped and counted (default 1 GiB).
	MaxSpoolBytes int64
	// RetryMin/RetryMax bound the backoff after a failed send.
	RetryMin, RetryMax time.Duration
	Client             *http.Client
	// API, when set, is the client batches are posted with (Server, Token
	// and Client are then ignored).
	API *client.Client
	// OnResponse is called with each 2xx response body (the server may
	// piggyback agent config, e.g. {"mode":"detailed"}).
	OnResponse func(body []byte)
	Log        *slog.Logger
}

// Counters are the reporter's health numbers.
type Counters struct {
	ObservationsSent    uint64 `json:"observationsSent"`
	BatchesSent         uint64 `json:"batchesSent"`
	ObservationsSpooled uint64 `json:"observationsSpooled"` // currently waiting on disk
	BatchesSpooled      uint64 `json:"batchesSpooled"`
	ObservationsDropped uint64 `json:"observationsDropped"` // refused by the server or spool overflow
	SendFailures        uint64 `json:"sendFailures"`
	NextSeq             uint64 `json:"nextSeq"`
}

// Reporter numbers, spools and sends batches. Submit may be called
// concurrently with Run.
type Reporter struct {
	cfg  Config
	wake chan struct{}

	mu        sync.Mutex
	state     seqState
	pending   []spoolFile // oldest first
	spoolSize int64

	sent, sentBatches, dropped, failures atomic.Uint64
}

type seqState struct {
	NextSeq   uint64 `json:"nextSeq"`
	NextBatch uint64 `json:"nextBatch"`
	// Mark is the caller's token of the last marked submission (see
	// SubmitMarked).
	Mark string `json:"mark,omitempty"`
}

type spoolFile struct {
	name  string
	batch uint64
	obs   int
	size  int64
	mark  string
}

const stateFile = "state.json"

// Open prepares the spool directory and restores the sequence state and
// any batches left unsent by an earlier run.
func Open(cfg Config) (*Reporter, error) {
	if cfg.SpoolDir == "" {
		return nil, errors.New("report: spool directory required")
	}
	if cfg.Agent == "" {
		cfg.Agent = cfg.Node
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 5000
	}
	if cfg.MaxSpoolBytes <= 0 {
		cfg.MaxSpoolBytes = 1 << 30
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 200 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 5 * time.Second
	}
	if cfg.API == nil {
		if cfg.Client == nil {
			cfg.Client = &http.Client{Timeout: 30 * time.Second}
		}
		c, err := client.New(client.Options{Server: cfg.Server, Token: cfg.Token, HTTP: cfg.Client, UserAgent: "palisade-agent"})
		if err != nil {
			return nil, fmt.Errorf("report: %w", err)
		}
		cfg.API = c
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("spool dir: %w", err)
	}
	r := &Reporter{
		cfg:  cfg,
		wake: make(chan struct{}, 1),
	}
	if err := r.load(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Reporter) load() error {
	b, err := os.ReadFile(filepath.Join(r.cfg.SpoolDir, stateFile))
	if err == nil {
		if err := json.Unmarshal(b, &r.state); err != nil {
			return fmt.Errorf("spool state: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("spool state: %w", err)
	}
	ents, err := os.ReadDir(r.cfg.SpoolDir)
	if err != nil {
		return fmt.Errorf("read spool: %w", err)
	}
	for _, e := range ents {
		f, ok := parseSpoolName(e.Name())
		if !ok {
			if strings.HasSuffix(e.Name(), ".tmp") {
				_ = os.Remove(filepath.Join(r.cfg.SpoolDir, e.Name()))
			}
			continue
		}
		if info, err := e.Info(); err == nil {
			f.size = info.Size()
		}
		r.pending = append(r.pending, f)
		r.spoolSize += f.size
	}
	sort.Slice(r.pending, func(i, j int) bool { return r.pending[i].batch < r.pending[j].batch })
	// A crash between writing a batch and the state leaves the state
	// behind the spool: take the numbers from the newest batch.
	if n := len(r.pending); n > 0 {
		last := r.pending[n-1]
		if last.batch >= r.state.NextBatch {
			r.state.NextBatch = last.batch + 1
			if last.mark != "" {
				r.state.Mark = last.mark
			}
		}
		b, err := r.readBatch(last)
		if err == nil {
			for _, o := range b.Observations {
				if o.Seq >= r.state.NextSeq {
					r.state.NextSeq = o.Seq + 1
				}
			}
		}
	}
	return nil
}

func spoolName(batch uint64, obs int, mark string) string {
	if mark != "" {
		return fmt.Sprintf("b%020d-n%d-m%s.json.gz", batch, obs, mark)
	}
	return fmt.Sprintf("b%020d-n%d.json.gz", batch, obs)
}

func parseSpoolName(name string) (spoolFile, bool) {
	rest, ok := strings.CutSuffix(name, ".json.gz")
	if !ok || !strings.HasPrefix(rest, "b") {
		return spoolFile{}, false
	}
	rest, mark, _ := strings.Cut(rest, "-m")
	bs, ns, ok := strings.Cut(rest[1:], "-n")
	if !ok {
		return spoolFile{}, false
	}
	b, err1 := strconv.ParseUint(bs, 10, 64)
	n, err2 := strconv.Atoi(ns)
	if err1 != nil || err2 != nil {
		return spoolFile{}, false
	}
	return spoolFile{name: name, batch: b, obs: n, mark: mark}, true
}

// Submit numbers the observations (setting Agent and Seq), writes them to
// the spool in batches and wakes the sender. When it returns nil the
// observations are on disk.
func (r *Reporter) Submit(obs []flow.Observation, nat []flow.NAT) error {
	return r.SubmitMarked(obs, nat, "")
}

// SubmitMarked is Submit that also records mark (letters, digits) as done,
// atomically with the observations: after a crash, Mark tells whether the
// submission made it to disk. A marked submission is one batch whatever
// its size.
func (r *Reporter) SubmitMarked(obs []flow.Observation, nat []flow.NAT, mark string) error {
	if len(obs) == 0 && len(nat) == 0 && mark == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	maxBatch := r.cfg.MaxBatch
	if mark != "" {
		maxBatch = max(len(obs), 1)
	}
	for first := true; first || len(obs) > 0 || len(nat) > 0; first = false {
		n := min(len(obs), maxBatch)
		b := flow.Batch{Agent: r.cfg.Agent, Node: r.cfg.Node, Observations: obs[:n], NAT: nat}
		obs, nat = obs[n:], nil
		seq := r.state.NextSeq
		for i := range b.Observations {
			b.Observations[i].Agent = r.cfg.Agent
			b.Observations[i].Seq = seq
			seq++
		}
		f := spoolFile{batch: r.state.NextBatch, obs: len(b.Observations), mark: mark}
		f.name = spoolName(f.batch, f.obs, mark)
		size, err := r.writeBatch(f.name, &b)
		if err != nil {
			return err
		}
		f.size = size
		r.state.NextSeq = seq
		r.state.NextBatch++
		if mark != "" {
			r.state.Mark = mark
		}
		if err := r.saveState(); err != nil {
			return err
		}
		r.pending = append(r.pending, f)
		r.spoolSize += size
	}
	r.trimLocked()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// writeBatch writes the gzip'd batch durably: temp file, fsync, rename,
// fsync of the directory.
func (r *Reporter) writeBatch(name string, b *flow.Batch) (int64, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(b); err != nil {
		return 0, fmt.Errorf("encode batch: %w", err)
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	if err := WriteDurable(r.cfg.SpoolDir, name, buf.Bytes()); err != nil {
		return 0, fmt.Errorf("spool batch: %w", err)
	}
	return int64(buf.Len()), nil
}

func (r *Reporter) saveState() error {
	b, _ := json.Marshal(r.state)
	if err := WriteDurable(r.cfg.SpoolDir, stateFile, b); err != nil {
		return fmt.Errorf("spool state: %w", err)
	}
	return nil
}

// WriteDurable writes dir/name so that it survives a crash whole or not at
// all: temp file, fsync, rename, fsync of the directory.
func WriteDurable(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// trimLocked drops the oldest batches while the spool is over its bound.
func (r *Reporter) trimLocked() {
	for r.spoolSize > r.cfg.MaxSpoolBytes && len(r.pending) > 1 {
		f := r.pending[0]
		r.pending = r.pending[1:]
		r.spoolSize -= f.size
		r.dropped.Add(uint64(f.obs))
		_ = os.Remove(filepath.Join(r.cfg.SpoolDir, f.name))
		r.cfg.Log.Warn("spool full: dropped oldest batch", "batch", f.batch, "observations", f.obs)
	}
}

func (r *Reporter) readBatch(f spoolFile) (flow.Batch, error) {
	var b flow.Batch
	data, err := os.ReadFile(filepath.Join(r.cfg.SpoolDir, f.name))
	if err != nil {
		return b, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return b, err
	}
	err = json.NewDecoder(zr).Decode(&b)
	return b, err
}

// Run sends spooled batches in order until ctx ends, backing off while the
// server is unreachable.
func (r *Reporter) Run(ctx context.Context) {
	backoff := r.cfg.RetryMin
	for {
		f, ok := r.oldest()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
				continue
			}
		}
		err := r.send(ctx, f)
		if err == nil {
			backoff = r.cfg.RetryMin
			continue
		}
		if ctx.Err() != nil {
			return
		}
		r.failures.Add(1)
		wait := backoff
		var ae *api.Error
		if errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests {
			// The server's per-agent batch rate: wait as long as it says.
			wait = max(backoff, ae.RetryAfter)
			r.cfg.Log.Warn("the server rate-limits this agent's flow batches; waiting", "batch", f.batch, "err", err, "retry in", wait)
		} else if IsRefusal(err) {
			// Credentials or trust are wrong: say so on every try, since
			// nothing gets through until an operator fixes it.
			r.cfg.Log.Error("the server refuses this agent; flow batches stay spooled until it is fixed", "batch", f.batch, "err", err, "retry in", backoff)
		} else {
			r.cfg.Log.Debug("flow batch not delivered; will retry", "batch", f.batch, "err", err, "in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(backoff*2, r.cfg.RetryMax)
	}
}

func (r *Reporter) oldest() (spoolFile, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return spoolFile{}, false
	}
	return r.pending[0], true
}

// IsRefusal reports whether err means the server will not take this
// agent's calls as they are: its credential (401/403), an unknown node
// (404 from the server's API), or a certificate it cannot verify.
func IsRefusal(err error) bool {
	switch api.StatusOf(err) {
	case http.StatusUnauthorized, http.StatusForbidden:
		return true
	}
	var ua x509.UnknownAuthorityError
	var he x509.HostnameError
	var ci x509.CertificateInvalidError
	return errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || strings.Contains(err.Error(), "tls: ")
}

// errRefused marks a batch the server will never take (4xx): it is dropped.
var errRefused = errors.New("refused")

func (r *Reporter) send(ctx context.Context, f spoolFile) error {
	data, err := os.ReadFile(filepath.Join(r.cfg.SpoolDir, f.name))
	if err != nil {
		// Unreadable spool file: nothing to resend.
		r.cfg.Log.Error("spooled batch unreadable; dropping", "file", f.name, "err", err)
		r.remove(f, false)
		return nil
	}
	body, err := r.cfg.API.PostFlows(ctx, r.cfg.Node, data)
	status := api.StatusOf(err)
	switch {
	case err == nil:
		r.remove(f, true)
		if r.cfg.OnResponse != nil && len(body) > 0 {
			r.cfg.OnResponse(body)
		}
		return nil
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge ||
		status == http.StatusUnprocessableEntity:
		// A verdict on the batch's content: the server will never accept
		// it, and keeping it would block every later one. Every other
		// answer (404 or 405 from something else listening on the server's
		// address during an outage, 401, 429, 5xx) says nothing about the
		// batch, so it is kept and retried.
		r.cfg.Log.Error("server refused flow batch; dropping", "batch", f.batch, "err", err)
		r.remove(f, false)
		return nil
	case status != 0:
		return fmt.Errorf("%w: %w", errRefused, err)
	default:
		return err
	}
}

func (r *Reporter) remove(f spoolFile, delivered bool) {
	_ = os.Remove(filepath.Join(r.cfg.SpoolDir, f.name))
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) > 0 && r.pending[0].batch == f.batch {
		r.pending = r.pending[1:]
		r.spoolSize -= f.size
	}
	if delivered {
		r.sent.Add(uint64(f.obs))
		r.sentBatches.Add(1)
	} else {
		r.dropped.Add(uint64(f.obs))
	}
}

// Counters returns the reporter's health numbers.
func (r *Reporter) Counters() Counters {
	r.mu.Lock()
	var obs uint64
	for _, f := range r.pending {
		obs += uint64(f.obs)
	}
	c := Counters{
		ObservationsSpooled: obs,
		BatchesSpooled:      uint64(len(r.pending)),
		NextSeq:             r.state.NextSeq,
	}
	r.mu.Unlock()
	c.ObservationsSent = r.sent.Load()
	c.BatchesSent = r.sentBatches.Load()
	c.ObservationsDropped = r.dropped.Load()
	c.SendFailures = r.failures.Load()
	return c
}

// Mark is the mark of the last marked submission on disk.
func (r *Reporter) Mark() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.Mark
}

// Pending is the number of batches not yet acknowledged.
func (r *Reporter) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}
