package agent_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent"
	"github.com/palisade-dev/palisade/internal/agent/agenttest"
	"github.com/palisade-dev/palisade/internal/flow"
	"golang.org/x/sys/unix"
)

const helperEnv = "PALISADE_AGENT_TEST_HELPER"

// helperMain runs an agent from the JSON config in $PALISADE_AGENT_TEST_HELPER,
// so a test can SIGKILL a real agent process.
func helperMain() int {
	var cfg agent.Config
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	a, err := agent.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if p := os.Getenv("PALISADE_AGENT_CPUPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	go func() {
		<-a.Ready()
		fmt.Println("ready")
	}()
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// TestAgentKilledAndServerDown: traffic runs throughout; the server goes
// down, the agent process is SIGKILLed, a new agent starts on the same
// spool and pinned maps, then the server comes back. Every connection the
// generator made is reported exactly once at the pod interface, with the
// kernel's exact packet counts, and sequence numbers continue.
func TestAgentKilledAndServerDown(t *testing.T) {
	for _, mode := range []string{flow.DetailedMode, flow.ConversationMode} {
		t.Run(mode, func(t *testing.T) { killAndRestart(t, mode) })
	}
}

func killAndRestart(t *testing.T, mode string) {
	lab := agenttest.New(t)
	cl := lab.TwoNodes("direct")
	n1, p1, p2 := cl.Nodes[0], cl.Pod("p1"), cl.Pod("p2")
	srv, url := newServer(t, mode)

	bpffs := t.TempDir()
	t.Cleanup(func() { _ = unix.Unmount(bpffs, unix.MNT_DETACH) })
	cfg := agent.Config{Server: url, Node: "node1", NetNS: agenttest.Path(n1.NS), Mode: mode,
		Token: "tok", SpoolDir: t.TempDir(), BPFFS: bpffs, DetailedInterval: 200 * time.Millisecond,
		ConversationInterval: time.Second, DrainInterval: 200 * time.Millisecond}
	cmd := startAgentProcess(t, cfg)
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	ts, err := agenttest.ListenTCP(p2.NS, p2.IP+":8080", 2000)
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	var (
		mu    sync.Mutex
		conns []agenttest.Conn
		stop  = make(chan struct{})
		gen   sync.WaitGroup
	)
	gen.Add(1)
	go func() {
		defer gen.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c, err := agenttest.Exchange(p1.NS, p2.IP+":8080", 1000+i)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			time.Sleep(30 * time.Millisecond)
		}
	}()

	time.Sleep(time.Second)
	srv.setDown(true)
	time.Sleep(700 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	time.Sleep(time.Second) // traffic goes on with no agent
	cfg.DetachOnExit = true
	ag := start(t, cfg)
	time.Sleep(500 * time.Millisecond)
	srv.setDown(false)
	time.Sleep(time.Second)
	close(stop)
	gen.Wait()
	time.Sleep(500 * time.Millisecond)
	ag.stop(t)

	obs := srv.observations()
	mu.Lock()
	defer mu.Unlock()
	if len(conns) < 20 {
		t.Fatalf("only %d connections generated", len(conns))
	}
	var segsOut, segsIn uint64
	for i, c := range conns {
		segsOut += uint64(c.SegsOut)
		segsIn += uint64(c.SegsIn)
		if mode != flow.DetailedMode {
			continue
		}
		tot := sum(obs, func(o flow.Observation) bool { return is(o, "vethp1", c.Local, p2.IP+":8080") })
		if tot.newConns != 1 || tot.fwdP != uint64(c.SegsOut) || tot.revP != uint64(c.SegsIn) {
			t.Errorf("conn %d/%d %v: newConns %d packets %d/%d, kernel %d/%d", i, len(conns), c.Local, tot.newConns, tot.fwdP, tot.revP, c.SegsOut, c.SegsIn)
		}
	}
	// Every mode: the totals at pod1's veth are the generator's, exactly.
	all := sum(obs, func(o flow.Observation) bool {
		return o.Point.Interface == "vethp1" && o.Tuple.SrcIP == p1.IP && o.Tuple.DstIP == p2.IP && o.Tuple.DstPort == 8080
	})
	if all.newConns != uint64(len(conns)) || all.fwdP != segsOut || all.revP != segsIn {
		t.Errorf("%s: %d connections, %d/%d packets reported; generator made %d, %d/%d", mode, all.newConns, all.fwdP, all.revP, len(conns), segsOut, segsIn)
	}
	// (Agent, Seq) numbering continued across the restart: 0..N-1, no gap.
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for i := 0; i < len(srv.obs); i++ {
		if _, ok := srv.obs[seqKey{"node1", uint64(i)}]; !ok {
			t.Fatalf("seq %d missing of %d", i, len(srv.obs))
		}
	}
	t.Logf("%d connections, %d observations, %d batches received, %d duplicate receipts", len(conns), len(srv.obs), srv.received, srv.dups)
}

// startAgentProcess runs an agent with cfg in a child process (this test
// binary, as the helper TestMain recognises by helperEnv), so it can be
// killed or measured on its own, and returns once it reports ready.
func startAgentProcess(t *testing.T, cfg agent.Config) *exec.Cmd {
	t.Helper()
	js, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("agent process not ready")
	}
	return cmd
}
