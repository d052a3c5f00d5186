package agent

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/palisade-dev/palisade/internal/agent/report"
	"github.com/palisade-dev/palisade/internal/flow"
)

// The open conversation window lives in memory for up to 15 s. So that a
// killed agent loses none of it, it is checkpointed to the spool directory
// after every drain, marked with the window's id; the report that closes
// the window carries the same mark (report.SubmitMarked), so on restart a
// checkpoint is either already reported (mark matches: dropped) or resumed.

const checkpointFile = "conversation.json"

type checkpoint struct {
	Mark    string       `json:"mark"`
	Entries []checkEntry `json:"entries"`
}

type checkEntry struct {
	Ifindex int              `json:"ifindex"`
	Proto   uint8            `json:"proto"`
	Obs     flow.Observation `json:"obs"`
}

func newMark() string { return strconv.FormatInt(time.Now().UnixNano(), 10) }

// saveWindow writes the open window durably; an empty window removes the
// checkpoint.
func (a *Agent) saveWindow() error {
	path := filepath.Join(a.cfg.SpoolDir, checkpointFile)
	if len(a.agg.conv) == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	cp := checkpoint{Mark: a.mark}
	for k, acc := range a.agg.conv {
		cp.Entries = append(cp.Entries, checkEntry{Ifindex: k.ifindex, Proto: k.proto, Obs: acc.obs})
	}
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	return report.WriteDurable(a.cfg.SpoolDir, checkpointFile, b)
}

// restoreWindow resumes a checkpointed window not yet reported.
func (a *Agent) restoreWindow() error {
	path := filepath.Join(a.cfg.SpoolDir, checkpointFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var cp checkpoint
	if err := json.Unmarshal(b, &cp); err != nil {
		a.cfg.Log.Warn("conversation checkpoint unreadable; dropped", "err", err)
		return os.Remove(path)
	}
	if cp.Mark == a.rep.Mark() {
		return os.Remove(path) // reported before the restart
	}
	a.mark = cp.Mark
	for _, e := range cp.Entries {
		c, err1 := netip.ParseAddr(e.Obs.Tuple.SrcIP)
		s, err2 := netip.ParseAddr(e.Obs.Tuple.DstIP)
		if err1 != nil || err2 != nil {
			continue
		}
		k := convKey{ifindex: e.Ifindex, proto: e.Proto, client: c, server: s, serverPort: e.Obs.Tuple.DstPort}
		acc := &convAcc{obs: e.Obs}
		if e.Obs.Tunnel != nil {
			acc.inner = map[flow.Tuple]struct{}{}
			for _, t := range e.Obs.Tunnel.Inner {
				acc.inner[t] = struct{}{}
			}
		}
		a.agg.conv[k] = acc
	}
	a.cfg.Log.Info("resumed conversation window", "conversations", len(cp.Entries))
	return nil
}
