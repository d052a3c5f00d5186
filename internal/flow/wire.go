package flow

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// IngestResponse answers an accepted batch; it carries the node's
// configuration so a mode change reaches the agent with its next batch.
type IngestResponse struct {
	Accepted int         `json:"accepted"`
	Config   AgentConfig `json:"config"`
}

// Path names the field at fault within the batch, e.g.
// "observations[3].tuple.srcIP", "nat[0].original.dstIP" or "node".
func (e *BatchError) Path() string {
	switch e.Record {
	case "":
		return e.Field
	case "observation":
		return "observations[" + strconv.Itoa(e.Index) + "]." + e.Field
	default:
		return e.Record + "[" + strconv.Itoa(e.Index) + "]." + e.Field
	}
}

// Refusal is why a batch was refused before ingest; Metrics counts them.
type Refusal int

// Refusal reasons.
const (
	RefusedUnauthenticated Refusal = iota
	RefusedMalformed
	RefusedOversized
)

// CountRefused counts a batch refused before Ingest (by the HTTP layer).
func (s *Service) CountRefused(r Refusal) {
	switch r {
	case RefusedUnauthenticated:
		s.m.refusedUnauthenticated.Add(1)
	case RefusedMalformed:
		s.m.refusedMalformed.Add(1)
	case RefusedOversized:
		s.m.refusedOversized.Add(1)
	}
}

// Options are the service's effective options (defaults filled in).
func (s *Service) Options() Options { return s.opts }

// ParseTime reads an RFC 3339 time, unix seconds, or a duration before now
// ("5m", "-5m"); empty gives def.
func ParseTime(v string, def, now time.Time) (time.Time, error) {
	if v == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		// Unix seconds within what a time.Time in nanoseconds holds
		// (1678-2262); NaN and infinities are refused.
		if f != f || f < -9e9 || f > 9e9 {
			return time.Time{}, errors.New("time " + strconv.Quote(v) + ": unix seconds out of range")
		}
		return time.Unix(0, int64(f*1e9)), nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(v, "-")); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("time " + strconv.Quote(v) + ": a duration before now must not be negative")
		}
		return now.Add(-d), nil
	}
	return time.Time{}, errors.New("time " + strconv.Quote(v) + ": want RFC 3339, unix seconds or a duration like 5m")
}
