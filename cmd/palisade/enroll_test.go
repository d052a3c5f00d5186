package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palisade-dev/palisade/internal/agent"
	"github.com/palisade-dev/palisade/internal/flow"
	"github.com/palisade-dev/palisade/pkg/api"
	"github.com/palisade-dev/palisade/pkg/client"
)

// startTLSServer runs `palisade server` over HTTPS with extra flags and
// returns it, its URL and its data directory.
func startTLSServer(t *testing.T, flags ...string) (*cliProcess, string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	p := startCLI(t, append([]string{"server", "--data", dir, "--listen", "127.0.0.1:0"}, flags...)...)
	l := p.line(t, "listening on", 60*time.Second)
	return p, strings.TrimSpace(l[strings.LastIndex(l, " "):]), dir
}

// agentToken runs `palisade agent token create --node NODE` as the admin
// and returns the last line of its output.
func agentToken(t *testing.T, base, dir, node string, extra ...string) string {
	t.Helper()
	out, _, err := runCLI(t, nil, append([]string{"agent", "token", "create", "--node", node, "--server", base,
		"--ca", filepath.Join(dir, "ca.crt"), "--token-file", filepath.Join(dir, "admin-token")}, extra...)...)
	if err != nil {
		t.Fatalf("agent token create: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// enrolledAgent enrolls node the way the agent does (internal/agent's
// Identity, state in a temporary directory) and returns the agent's mTLS
// client and its identity.
func enrolledAgent(t *testing.T, base, dir, node string) (*client.Client, *agent.Identity) {
	t.Helper()
	id, err := agent.OpenIdentity(t.TempDir(), node, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := identityClient(t, base, dir, id)
	if err := id.Enroll(context.Background(), c, agentToken(t, base, dir, node)); err != nil {
		t.Fatalf("enroll %s: %v", node, err)
	}
	return c, id
}

func identityClient(t *testing.T, base, dir string, id *agent.Identity) *client.Client {
	t.Helper()
	tc, err := id.TLS(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Options{Server: base, TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func oneFlow(node string, seq uint64) flow.Batch {
	now := time.Now()
	return flow.Batch{Agent: node, Node: node, Observations: []flow.Observation{{Agent: node, Seq: seq, Mode: flow.DetailedMode,
		Point: flow.ObservationPoint{Node: node, Interface: "veth1", Kind: "pod"},
		Tuple: flow.Tuple{Proto: "tcp", SrcIP: "10.244.1.10", SrcPort: 40000, DstIP: "10.244.1.11", DstPort: 80},
		Start: now.Add(-time.Second), End: now, FwdPackets: 1, Conns: 1, NewConns: 1}}}
}

// postStatus posts b for node with c and returns the answer's status.
func postStatus(c *client.Client, node string, b flow.Batch) (int, error) {
	err := c.Do(context.Background(), client.Request{Method: "POST", Path: "/api/v1/agents/" + node + "/flows", JSON: b}, nil)
	if err == nil {
		return 200, nil
	}
	if st := api.StatusOf(err); st != 0 {
		return st, err
	}
	return 0, err
}

// TestAgentEnrollmentBlackBox: against a `palisade server` process,
// agents enroll with one-time tokens and then call with client
// certificates (mTLS) for their own node only; no certificate, another
// node's certificate or a revoked one cannot post flows or read
// configuration; tokens work once and expire; enroll and revoke are
// admin-only and audited; refused agents show in GET /api/v1/agents.
func TestAgentEnrollmentBlackBox(t *testing.T) {
	p, base, dir := startTLSServer(t)
	defer p.stop(t, syscall.SIGTERM)
	admin := dataDirClient(t, base, dir, "admin-token")
	ctx := context.Background()
	if _, err := os.Stat(filepath.Join(dir, "agent-token")); !os.IsNotExist(err) {
		t.Fatalf("a TLS server has a shared agent token file: %v", err)
	}

	tok := agentToken(t, base, dir, "n1")
	if !strings.HasPrefix(tok, "pae_") {
		t.Fatalf("last line of `agent token create`: %q", tok)
	}
	viewer, err := admin.CreateToken(ctx, "v", "viewer")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCLI(t, nil, "agent", "token", "create", "--node", "n1", "--server", base, "--ca", filepath.Join(dir, "ca.crt"),
		"--token", viewer.Secret); api.StatusOf(err) != 403 {
		t.Fatalf("a viewer creates an enrollment token: %v", err)
	}

	n1, _ := enrolledAgent(t, base, dir, "n1")
	n2, _ := enrolledAgent(t, base, dir, "n2")

	t.Run("own node: flows, heartbeat, config, enforcement", func(t *testing.T) {
		if st, err := postStatus(n1, "n1", oneFlow("n1", 1)); st != 200 {
			t.Fatalf("n1 posts its own flows: %d %v", st, err)
		}
		if _, err := n1.Heartbeat(ctx, "n1", api.Heartbeat{Agent: "n1"}); err != nil {
			t.Fatal(err)
		}
		if _, err := n1.AgentConfig(ctx, "n1"); err != nil {
			t.Fatal(err)
		}
		if err := n1.Do(ctx, client.Request{Method: "GET", Path: "/api/v1/agents/n1/enforcement", Query: map[string][]string{"wait": {"0s"}}}, nil); err != nil && api.StatusOf(err) != 304 {
			t.Fatalf("n1 reads its enforcement bundle: %v", err)
		}
	})
	t.Run("another node's certificate", func(t *testing.T) {
		if st, _ := postStatus(n2, "n1", oneFlow("n1", 2)); st != 403 {
			t.Fatalf("n2's certificate posts n1's flows: %d", st)
		}
		for _, path := range []string{"/api/v1/agents/n1/config", "/api/v1/agents/n1/enforcement?wait=0s", "/api/v1/agents", "/api/v1/flows", "/api/v1/inventory"} {
			if err := n2.Do(ctx, client.Request{Method: "GET", Path: path}, nil); api.StatusOf(err) != 403 {
				t.Errorf("n2 reads %s: %v", path, err)
			}
		}
		if _, err := n2.Heartbeat(ctx, "n1", api.Heartbeat{}); api.StatusOf(err) != 403 {
			t.Errorf("n2 heartbeats as n1: %v", err)
		}
		// GET /api/v1/agents lists n2 as refused, saying it tried n1's
		// endpoints; n1 itself is not marked.
		agents, err := admin.Agents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		byNode := map[string]api.AgentStatus{}
		for _, a := range agents.Agents {
			byNode[a.Node] = a
		}
		if r := byNode["n2"].Refused; r == nil || !strings.Contains(r.Reason, "/api/v1/agents/n1/") {
			t.Errorf("n2 in GET /api/v1/agents: %+v", byNode["n2"])
		}
		if byNode["n1"].Refused != nil {
			t.Errorf("n1 marked refused for n2's attempts: %+v", byNode["n1"].Refused)
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		anon, err := client.New(client.Options{Server: base, CAFile: filepath.Join(dir, "ca.crt")})
		if err != nil {
			t.Fatal(err)
		}
		if st, _ := postStatus(anon, "n1", oneFlow("n1", 3)); st != 401 {
			t.Fatalf("no certificate posts flows: %d", st)
		}
		if _, err := anon.AgentConfig(ctx, "n1"); api.StatusOf(err) != 401 {
			t.Fatalf("no certificate reads config: %v", err)
		}
		// A certificate from another server's CA does not pass the
		// handshake.
		other, otherBase, otherDir := startTLSServer(t)
		defer other.stop(t, syscall.SIGTERM)
		_, foreign := enrolledAgent(t, otherBase, otherDir, "n1")
		fc := identityClient(t, base, dir, foreign)
		if st, err := postStatus(fc, "n1", oneFlow("n1", 4)); st == 200 || err == nil {
			t.Fatalf("a certificate of another CA posts: %d", st)
		}
	})
	t.Run("token works once, and expires", func(t *testing.T) {
		tok := agentToken(t, base, dir, "n3")
		a, _ := agent.OpenIdentity(t.TempDir(), "n3", nil)
		ac := identityClient(t, base, dir, a)
		if err := a.Enroll(ctx, ac, tok); err != nil {
			t.Fatal(err)
		}
		b, _ := agent.OpenIdentity(t.TempDir(), "n3", nil)
		err := b.Enroll(ctx, identityClient(t, base, dir, b), tok)
		if st := api.StatusOf(err); (st != 401 && st != 403) || !strings.Contains(err.Error(), "already used") {
			t.Fatalf("second use of a token: %v", err)
		}
		tok4 := agentToken(t, base, dir, "n4")
		c, _ := agent.OpenIdentity(t.TempDir(), "n5", nil)
		if err := c.Enroll(ctx, identityClient(t, base, dir, c), tok4); api.StatusOf(err) != 401 || !strings.Contains(err.Error(), "n4") {
			t.Fatalf("n4's token used for n5: %v", err)
		}
		short := agentToken(t, base, dir, "n6", "--ttl", "1s")
		time.Sleep(1100 * time.Millisecond)
		d, _ := agent.OpenIdentity(t.TempDir(), "n6", nil)
		if err := d.Enroll(ctx, identityClient(t, base, dir, d), short); api.StatusOf(err) != 401 || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("expired token: %v", err)
		}
		// An enrollment token is not an API credential.
		t7 := agentToken(t, base, dir, "n7")
		tc, _ := client.New(client.Options{Server: base, CAFile: filepath.Join(dir, "ca.crt"), Token: t7})
		if st, _ := postStatus(tc, "n7", oneFlow("n7", 1)); st != 401 {
			t.Fatalf("an enrollment token posts flows: %d", st)
		}
	})
	t.Run("revoked", func(t *testing.T) {
		out, _, err := runCLI(t, nil, "agent", "revoke", "n2", "--server", base, "--ca", filepath.Join(dir, "ca.crt"), "--token-file", filepath.Join(dir, "admin-token"))
		if err != nil || !strings.Contains(out, "n2 revoked") {
			t.Fatalf("agent revoke: %q %v", out, err)
		}
		// A connection made before the revocation is refused as well.
		st, err := postStatus(n2, "n2", oneFlow("n2", 5))
		if st != 401 || !strings.Contains(err.Error(), "revoked") {
			t.Fatalf("revoked n2 posts: %d %v", st, err)
		}
		if _, err := n2.AgentConfig(ctx, "n2"); api.StatusOf(err) != 401 {
			t.Fatalf("revoked n2 reads config: %v", err)
		}
		agents, err := admin.Agents(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, a := range agents.Agents {
			if a.Node == "n2" && a.Refused != nil && strings.Contains(a.Refused.Reason, "revoked") {
				found = true
			}
		}
		if !found {
			t.Fatalf("GET /api/v1/agents does not show n2 refused as revoked: %+v", agents)
		}
		// n1 is untouched.
		if st, err := postStatus(n1, "n1", oneFlow("n1", 6)); st != 200 {
			t.Fatalf("n1 after n2's revocation: %d %v", st, err)
		}
		out, _, err = runCLI(t, nil, "agent", "token", "list", "--server", base, "--ca", filepath.Join(dir, "ca.crt"), "--token-file", filepath.Join(dir, "admin-token"))
		if err != nil || !strings.Contains(out, "n2 ") || !strings.Contains(out, "by admin") {
			t.Fatalf("agent token list: %v\n%s", err, out)
		}
		if _, err := admin.RevokeAgent(ctx, "never-enrolled"); api.StatusOf(err) != 404 {
			t.Fatalf("revoking an unknown node: %v", err)
		}
	})
	t.Run("audited", func(t *testing.T) {
		recs, err := admin.Audit(ctx, client.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range recs {
			seen[r.Who+" "+r.Action] = true
			if strings.Contains(string(r.After), "pae_") {
				t.Errorf("an enrollment token in the audit log: %s", r.After)
			}
		}
		for _, w := range []string{"admin POST /api/v1/agent-tokens", "agent:n1 POST /api/v1/agents/{node}/enroll", "admin POST /api/v1/agents/{node}/revoke"} {
			if !seen[w] {
				t.Errorf("no audit record %q in %v", w, seen)
			}
		}
	})
}

// TestAgentProcessEnrollsAndReuses: a `palisade agent` process (in a
// network namespace of its own) enrolls with --enroll-token, keeps its
// key and certificate in --state-dir (0700/0600) and, restarted without a
// token, calls with the certificate it kept, which it renews by itself
// (a short --agent-cert-lifetime).
func TestAgentProcessEnrollsAndReuses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test runs an agent in a network namespace: run it as root")
	}
	p, base, dir := startTLSServer(t, "--agent-cert-lifetime", "24s")
	defer p.stop(t, syscall.SIGTERM)
	admin := dataDirClient(t, base, dir, "admin-token")
	ns := fmt.Sprintf("mtls-enroll-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	state := filepath.Join(t.TempDir(), "state")
	spool := t.TempDir()
	run := func(extra ...string) *cliProcess {
		return startCLI(t, append([]string{"agent", "--server", base, "--ca", filepath.Join(dir, "ca.crt"), "--node", "node-a",
			"--state-dir", state, "--spool", spool, "--netns", ns, "--bpffs", "-", "--detach-on-exit"}, extra...)...)
	}
	// seen waits for a heartbeat of node-a after since.
	seen := func(since time.Time) {
		t.Helper()
		deadline := time.Now().Add(40 * time.Second)
		for time.Now().Before(deadline) {
			agents, err := admin.Agents(context.Background())
			if err == nil {
				for _, a := range agents.Agents {
					if a.Node == "node-a" && a.LastSeen.After(since) && a.Refused == nil {
						return
					}
				}
			}
			time.Sleep(300 * time.Millisecond)
		}
		t.Fatal("no heartbeat of node-a within 40 s")
	}
	start := time.Now()
	a := run("--enroll-token", agentToken(t, base, dir, "node-a"))
	seen(start)
	a.stop(t, syscall.SIGTERM)
	fi, err := os.Stat(state)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v %v", fi, err)
	}
	for _, f := range []string{agent.IdentityCertFile, agent.IdentityKeyFile} {
		fi, err := os.Stat(filepath.Join(state, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
	ids, err := admin.AgentIdentities(context.Background())
	if err != nil || len(ids) != 1 || ids[0].Node != "node-a" || ids[0].Live < 1 {
		t.Fatalf("agent identities: %+v %v", ids, err)
	}
	enrolled := ids[0].Enrolled
	cert1, _ := os.ReadFile(filepath.Join(state, agent.IdentityCertFile))

	restart := time.Now()
	a = run() // no token: it can only call with the certificate it kept
	defer a.stop(t, syscall.SIGTERM)
	seen(restart)
	// Renewed by the agent itself after two thirds of 24 s, over mTLS,
	// without enrolling again.
	deadline := time.Now().Add(40 * time.Second)
	for {
		ids, err = admin.AgentIdentities(context.Background())
		if err == nil && len(ids) == 1 && ids[0].Renewed.After(restart) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not renewed: %+v %v\n%s", ids, err, a.errText())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !ids[0].Enrolled.Equal(enrolled) || ids[0].Revoked != nil {
		t.Fatalf("enrolled again: %+v (first enrolled %v)", ids[0], enrolled)
	}
	time.Sleep(300 * time.Millisecond)
	cert2, _ := os.ReadFile(filepath.Join(state, agent.IdentityCertFile))
	if string(cert1) == string(cert2) {
		t.Fatal("the renewed certificate was not kept in the state directory")
	}
	seen(time.Now()) // still accepted with the renewed certificate
	// Without a token and without a state directory: a clear error.
	_, _, err = runCLI(t, nil, "agent", "--server", base, "--ca", filepath.Join(dir, "ca.crt"), "--node", "node-b", "--state-dir", t.TempDir(), "--netns", ns)
	if err == nil || !strings.Contains(err.Error(), "--enroll-token") {
		t.Fatalf("agent without certificate or token: %v", err)
	}
	// The legacy shared token against a TLS server: said at once.
	_, _, err = runCLI(t, nil, "agent", "--server", base, "--ca", filepath.Join(dir, "ca.crt"), "--node", "node-b", "--token", "x", "--netns", ns)
	if err == nil || !strings.Contains(err.Error(), "enrolled agents only") {
		t.Fatalf("agent with --token against a TLS server: %v", err)
	}
}

// TestAgentCertificateRotation: with a short certificate lifetime, the
// agent renews over mTLS after two thirds of it and keeps posting past
// the first certificate's expiry.
func TestAgentCertificateRotation(t *testing.T) {
	p, base, dir := startTLSServer(t, "--agent-cert-lifetime", "9s")
	defer p.stop(t, syscall.SIGTERM)
	c, id := enrolledAgent(t, base, dir, "rot")
	first := id.Cert().Leaf
	if life := first.NotAfter.Sub(time.Now()); life > 10*time.Second {
		t.Fatalf("certificate valid for %v, want about 9 s", life)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go id.RunRenewal(ctx, c)
	deadline := time.Now().Add(30 * time.Second)
	for id.Cert().Leaf.SerialNumber.Cmp(first.SerialNumber) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("not renewed within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	renewed := time.Now()
	if renewed.Before(first.NotBefore.Add(first.NotAfter.Sub(first.NotBefore) * 2 / 3).Add(-time.Second)) {
		t.Fatalf("renewed at %v, before two thirds of the lifetime (%v - %v)", renewed, first.NotBefore, first.NotAfter)
	}
	// Past the first certificate's end, calls still go through (new
	// connections present the new certificate).
	time.Sleep(time.Until(first.NotAfter) + 500*time.Millisecond)
	if st, err := postStatus(c, "rot", oneFlow("rot", 1)); st != 200 {
		t.Fatalf("after the first certificate expired: %d %v", st, err)
	}
	admin := dataDirClient(t, base, dir, "admin-token")
	ids, err := admin.AgentIdentities(context.Background())
	if err != nil || len(ids) != 1 || ids[0].Renewed.IsZero() {
		t.Fatalf("identities: %+v %v", ids, err)
	}
}
