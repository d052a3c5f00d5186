package agent_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/palisade-dev/palisade/internal/agent"
	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/flow"
)

// TestFlowCaptureLoad measures the agent against a plain `conntrack -E`
// listener on the same load: new TCP connections per second from pod1 to
// pod2 on one node. Run with PALISADE_AGENT_BENCH="5000,20000" (rates) and
// optionally PALISADE_AGENT_BENCH_MODE=detailed; results go to the log.
func TestFlowCaptureLoad(t *testing.T) {
	rates := os.Getenv("PALISADE_AGENT_BENCH")
	if rates == "" {
		t.Skip("benchmark: set PALISADE_AGENT_BENCH=5000,20000")
	}
	mode := os.Getenv("PALISADE_AGENT_BENCH_MODE")
	if mode == "" {
		mode = flow.ConversationMode
	}
	dur := 10 * time.Second
	for _, r := range strings.Split(rates, ",") {
		rate, err := strconv.Atoi(r)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(fmt.Sprintf("%s-%d", mode, rate), func(t *testing.T) { loadRun(t, rate, dur, mode) })
	}
}

func loadRun(t *testing.T, rate int, dur time.Duration, mode string) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n1, p1, p2 := cl.Nodes[0], cl.Pod("p1"), cl.Pod("p2")
	srv, url := newServer(t, mode)
	var targets []string
	for port := 9001; port <= 9008; port++ {
		targets = append(targets, fmt.Sprintf("%s:%d", p2.IP, port))
	}
	sink, err := agenttest.ListenSink(p2.NS, targets...)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	// The agent in its own process, so its CPU is its own.
	cfg := agent.Config{Server: url, Node: "node1", NetNS: agenttest.Path(n1.NS), Mode: mode, Token: "tok",
		SpoolDir: t.TempDir(), BPFFS: "-", DetachOnExit: true, ConversationInterval: 5 * time.Second}
	ag := startAgentProcess(t, cfg)
	defer func() { _ = ag.Process.Kill(); _ = ag.Wait() }()

	// The peer: a plain conntrack -E listener in the node namespace.
	ct := exec.Command("nsenter", "--net="+agenttest.Path(n1.NS), "--", "conntrack", "-E", "-e", "NEW", "-p", "tcp", "-b", "67108864")
	ctOut, _ := ct.StdoutPipe()
	ct.Stderr = os.Stderr
	if err := ct.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ct.Process.Kill(); _ = ct.Wait() }()
	var ctNew atomic.Int64
	ctDone := make(chan struct{})
	go func() {
		defer close(ctDone)
		sc := bufio.NewScanner(ctOut)
		for sc.Scan() {
			l := sc.Text()
			if strings.Contains(l, "src="+p1.IP+" ") && strings.Contains(l, "dport=900") {
				ctNew.Add(1)
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)

	var pc *agenttest.PacketCounter
	if os.Getenv("PALISADE_AGENT_BENCH_AFPACKET") != "" {
		if pc, err = agenttest.CountAFPacket(n1.NS, []string{"vethp1", "vethp2"}); err != nil {
			t.Fatal(err)
		}
	}
	_ = os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("1"), 0)
	bpf0 := bpfRuntime(t)
	cpu0 := procCPU(t, ag.Process.Pid)
	t0 := time.Now()
	res, err := agenttest.Churn(p1.NS, targets, rate, dur, workers())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // last drain
	cpu1 := procCPU(t, ag.Process.Pid)
	bpf1 := bpfRuntime(t)
	wall := time.Since(t0)
	_ = os.WriteFile("/proc/sys/kernel/bpf_stats_enabled", []byte("0"), 0)
	if pc != nil {
		pc.Stop()
	}

	_ = ag.Process.Signal(syscall.SIGTERM) // final window, flush
	_ = ag.Wait()
	time.Sleep(300 * time.Millisecond)
	_ = ct.Process.Signal(syscall.SIGTERM)
	<-ctDone

	var agentConns uint64
	for _, o := range srv.observations() {
		if o.Point.Interface == "vethp1" && o.Tuple.SrcIP == p1.IP && o.Tuple.DstPort >= 9001 && o.Tuple.DstPort <= 9008 {
			agentConns += o.NewConns
		}
	}
	achieved := float64(res.Made) / res.Elapsed.Seconds()
	cpuPct := 100 * (cpu1 - cpu0).Seconds() / wall.Seconds()
	per1k := cpuPct / (achieved / 1000)
	ratio := float64(agentConns) / float64(ctNew.Load())
	t.Logf("BENCH mode=%s target=%d/s achieved=%.0f/s made=%d failed=%d conntrackNEW=%d agent=%d agent/conntrack=%.4f agent/made=%.4f agentCPU=%.1f%% perK=%.2f%%",
		mode, rate, achieved, res.Made, res.Failed, ctNew.Load(), agentConns, ratio, float64(agentConns)/float64(res.Made), cpuPct, per1k)
	bpfPct := 100 * (bpf1.rt - bpf0.rt).Seconds() / wall.Seconds()
	runs := bpf1.n - bpf0.n
	t.Logf("BENCH bpf classifier in kernel: %d runs, %.0f ns/packet, %.2f%% of a core, %.2f%% per 1k conn/s",
		runs, float64(bpf1.rt-bpf0.rt)/float64(max(runs, 1)), bpfPct, bpfPct/(achieved/1000))
	if pc != nil {
		afPct := 100 * pc.CPU.Seconds() / wall.Seconds()
		t.Logf("BENCH af_packet reader (2 veths): %d packets, %d dropped by the socket, %d flows, reader CPU %.1f%% (%.2f%% per 1k conn/s)",
			pc.Packets, pc.Drops, pc.Flows, afPct, afPct/(achieved/1000))
	}
}

type bpfStat struct {
	rt time.Duration
	n  uint64
}

// bpfRuntime sums the kernel's run time of every loaded palisade_flow
// classifier (needs kernel.bpf_stats_enabled=1).
func bpfRuntime(t *testing.T) bpfStat {
	var s bpfStat
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if err != nil {
			return s
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue
		}
		if info, err := p.Info(); err == nil && info.Name == "palisade_flow" {
			if st, err := p.Stats(); err == nil {
				s.rt += st.Runtime
				s.n += st.RunCount
			}
		}
		p.Close()
	}
}

func workers() int {
	if n, err := strconv.Atoi(os.Getenv("PALISADE_AGENT_BENCH_WORKERS")); err == nil && n > 0 {
		return n
	}
	return 6
}

// procCPU is a process's user+system CPU time from /proc/PID/stat.
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}
