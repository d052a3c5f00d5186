package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/pkg/client"
)

// Faults at start, black-box against `palisade server` processes: a server
// killed with acknowledged batches in its log, then a flipped byte in the
// middle of the log, a truncated flow dictionary, a corrupt done set and a
// corrupt key file. The next server starts, names what it moved aside, and
// every acknowledged batch outside the damaged frame is searchable.
func TestServerStartsOverDamagedFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	server := func() (*cliProcess, string) {
		p := startCLI(t, "server", "--data", dir, "--listen", "127.0.0.1:0")
		l := p.line(t, "listening on", 60*time.Second)
		return p, strings.TrimSpace(l[strings.LastIndex(l, " "):])
	}
	var agentID *agent.Identity // enrolled once, reused across restarts
	post := func(base string, seq uint64, port uint16) {
		t.Helper()
		if agentID == nil {
			_, agentID = enrolledAgent(t, base, dir, "n1")
		}
		now := time.Now()
		b := flow.Batch{Agent: "agent-n1", Node: "n1", Observations: []flow.Observation{{Agent: "agent-n1", Seq: seq, Mode: flow.DetailedMode,
			Point: flow.ObservationPoint{Node: "n1", Interface: "veth1", Kind: "pod"},
			Tuple: flow.Tuple{Proto: "tcp", SrcIP: "10.244.1.10", SrcPort: 40000, DstIP: "10.244.1.11", DstPort: port},
			Start: now.Add(-time.Second), End: now, FwdPackets: 1, Conns: 1, NewConns: 1}}}
		postBatchWith(t, identityClient(t, base, dir, agentID), b)
	}
	// 1: a flow stored (graceful stop flushes it).
	p, base := server()
	post(base, 1, 1001)
	p.stop(t, syscall.SIGTERM)
	// 2: three batches acknowledged, then a crash.
	p, base = server()
	for i, port := range []uint16{2001, 2002, 2003} {
		post(base, uint64(10+i), port)
	}
	p.stop(t, syscall.SIGKILL)

	flows := filepath.Join(dir, "flows")
	logs, _ := filepath.Glob(filepath.Join(flows, "wal", "*.log"))
	damagedLog := ""
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		if bytes.Count(data, []byte("PFB1")) == 3 {
			second := bytes.Index(data[4:], []byte("PFB1")) + 4
			data[second+40] ^= 0xff
			os.WriteFile(l, data, 0o600)
			damagedLog = l
		}
	}
	if damagedLog == "" {
		t.Fatalf("no log file with the three batches among %v", logs)
	}
	dict := filepath.Join(flows, "dict.pfd")
	st, err := os.Stat(dict)
	if err != nil || st.Size() < 20 {
		t.Fatalf("dictionary: %v %v", st, err)
	}
	os.Truncate(dict, st.Size()/2)
	os.WriteFile(filepath.Join(flows, "done.state"), []byte("not a done set"), 0o600)
	os.WriteFile(filepath.Join(dir, "vuln", "credentials.key"), []byte("short"), 0o600)

	// 3: the server starts over the damage.
	p, base = server()
	defer p.stop(t, syscall.SIGTERM)
	res, err := dataDirClient(t, base, dir, "admin-token").SearchFlows(context.Background(), client.FlowQuery{From: "1h", Filter: "dst.ip = 10.244.1.11"})
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, f := range res.Flows {
		ports = append(ports, fmt.Sprint(f.Dst.Port))
	}
	if strings.Join(ports, ",") != "2003,2001,1001" {
		t.Fatalf("searchable after the damage: ports %v (want 2003, 2001, 1001: the batch of port 2002 was in the damaged frame)\n%s", ports, p.errText())
	}
	// Every damaged file named in the log.
	time.Sleep(200 * time.Millisecond)
	logText := p.errText()
	for _, want := range []string{filepath.Base(damagedLog), "dict.pfd", "done.state", "credentials.key"} {
		if !strings.Contains(logText, want) {
			t.Errorf("the log does not name %s:\n%s", want, logText)
		}
	}
	for _, l := range strings.Split(logText, "\n") {
		if strings.Contains(l, "aside") {
			t.Log(l)
		}
	}
	for _, d := range []string{dir, flows} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v %v", d, fi.Mode().Perm(), err)
		}
	}
}
