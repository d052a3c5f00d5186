package enforce

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/palisade-dev/palisade/internal/ruleset"
)

// FollowConfig connects an Enforcer to the server.
type FollowConfig struct {
	Server string // base URL
	Node   string
	Token  string
	Client *http.Client
	// Wait is the long poll's wait (default 25 s).
	Wait time.Duration
	// StatusInterval is how often the status is reported (default 5 s;
	// drift events are reported at once).
	StatusInterval time.Duration
	// FailOpenAfter: with a bundle that says FailOpen, how long the server
	// may be unreachable before the rules are removed (default 60 s).
	FailOpenAfter time.Duration
}

// Follow runs e and keeps it on the server's bundle for the node: a long
// poll carrying the hash programmed, so a new bundle arrives as soon as
// the server compiles it. When the server is unreachable the rules stay in
// force (fail-closed) unless the bundle says FailOpen. It returns when
// ctx ends; the rules stay.
func Follow(ctx context.Context, e *Enforcer, fc FollowConfig) error {
	if fc.Client == nil {
		fc.Client = &http.Client{}
	}
	if fc.Wait <= 0 {
		fc.Wait = 25 * time.Second
	}
	if fc.StatusInterval <= 0 {
		fc.StatusInterval = 5 * time.Second
	}
	if fc.FailOpenAfter <= 0 {
		fc.FailOpenAfter = 60 * time.Second
	}
	base := strings.TrimRight(fc.Server, "/") + "/api/v1/agents/" + url.PathEscape(fc.Node) + "/enforcement"
	report := make(chan struct{}, 1)
	prevDrift := e.cfg.OnDrift
	e.cfg.OnDrift = func(ev ruleset.DriftEvent) {
		if prevDrift != nil {
			prevDrift(ev)
		}
		select {
		case report <- struct{}{}:
		default:
		}
	}
	runErr := make(chan error, 1)
	go func() { runErr <- e.Run(ctx) }()
	go func() {
		t := time.NewTicker(fc.StatusInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-report:
			}
			st := e.Status()
			buf, _ := json.Marshal(st)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/status", bytes.NewReader(buf))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+fc.Token)
			if resp, err := fc.Client.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}()
	have := ""
	if b := e.Bundle(); b != nil {
		have = b.Hash
	}
	var lostSince time.Time
	backoff := 200 * time.Millisecond
	failedOpen := false
	for ctx.Err() == nil {
		b, err := poll(ctx, fc, base, have)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			if lostSince.IsZero() {
				lostSince = time.Now()
				e.log.Warn("enforce: server unreachable; rules stay in force", "err", err)
			}
			e.SetServerLost(true)
			if cur := e.Bundle(); cur != nil && cur.FailOpen && !failedOpen && time.Since(lostSince) > fc.FailOpenAfter {
				e.log.Warn("enforce: fail-open: removing the rules after losing the server", "for", time.Since(lostSince))
				if err := e.Disable(); err == nil {
					failedOpen, have = true, ""
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		lostSince, backoff = time.Time{}, 200*time.Millisecond
		e.SetServerLost(false)
		if b == nil {
			continue // not modified
		}
		if err := e.Apply(b); err != nil {
			e.log.Error("enforce: programming the bundle", "hash", b.Hash, "err", err)
		}
		have, failedOpen = b.Hash, false
		select {
		case report <- struct{}{}:
		default:
		}
	}
	return <-runErr
}

// poll asks for the node's bundle; nil, nil means not modified.
func poll(ctx context.Context, fc FollowConfig, base, have string) (*ruleset.Bundle, error) {
	ctx, cancel := context.WithTimeout(ctx, fc.Wait+10*time.Second)
	defer cancel()
	u := fmt.Sprintf("%s?hash=%s&wait=%s", base, url.QueryEscape(have), fc.Wait)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+fc.Token)
	resp, err := fc.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return nil, nil
	case http.StatusOK:
		var b ruleset.Bundle
		if err := json.NewDecoder(resp.Body).Decode(&b); err != nil {
			return nil, fmt.Errorf("bundle: %w", err)
		}
		return &b, nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return nil, fmt.Errorf("GET %s: HTTP %d: %s", base, resp.StatusCode, strings.TrimSpace(string(msg)))
}
