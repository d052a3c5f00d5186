package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/palisade-dev/palisade/internal/devkube"
	"github.com/palisade-dev/palisade/internal/lab"
)

// rootAndPrivateAPI fails the test without root (labs need it) and starts
// a control plane of its own for it (one lab per API server).
func rootAndPrivateAPI(t *testing.T) *devkube.Cluster {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("lab tests need root (network namespaces, veths, iptables): run `make test` as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	kube, err := devkube.Start(ctx, devkube.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("devkube: %v", err)
	}
	t.Cleanup(kube.Stop)
	return kube
}

// labCLI runs the palisade command line in-process and returns stdout; an
// error carries stderr.
func labCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, errOut, err := runCLI(t, nil, args...)
	if err != nil {
		err = fmt.Errorf("palisade %s: %w (stderr: %s)", strings.Join(args, " "), err, errOut)
	}
	return out, err
}

// TestLabReachCLI: `palisade lab reach` on a lab running sock-shop and the
// NetworkPolicy model prints a JSON list and an upstream-style table that
// agree probe for probe; `lab status -o json` lists the model's pods.
func TestLabReachCLI(t *testing.T) {
	kube := rootAndPrivateAPI(t)
	ctx := context.Background()
	name := fmt.Sprintf("cli%d", os.Getpid()%100000)
	l, err := lab.Up(ctx, lab.Config{Name: name, App: "sockshop,netpol", RestConfig: kube.Config, ProbePeriod: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Down() })

	out, err := labCLI(t, "lab", "status", "-o", "json", "--name", name)
	if err != nil {
		t.Fatal(err)
	}
	var st lab.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	model := 0
	for _, p := range st.Pods {
		if slices.Contains([]string{"x", "y", "z"}, p.Namespace) {
			model++
			if !slices.Contains([]string{"a", "b", "c"}, p.App) || p.Node == "" || p.IP == "" || p.NetNS == "" ||
				!slices.Equal(p.Ports, []int32{80, 81}) || !slices.Equal(p.UDPPorts, []int32{80, 81}) {
				t.Errorf("status pod %+v", p)
			}
		}
	}
	if model != 9 || len(st.Pods) != 17 {
		t.Errorf("status lists %d model pods of %d, want 9 of 17", model, len(st.Pods))
	}

	jsonOut, err := labCLI(t, "lab", "reach", "--name", name, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON []lab.Probe
	if err := json.Unmarshal([]byte(jsonOut), &fromJSON); err != nil {
		t.Fatalf("reach JSON: %v\n%s", err, jsonOut)
	}
	// The documented keys, exactly.
	var raw []map[string]any
	_ = json.Unmarshal([]byte(jsonOut), &raw)
	if len(raw) == 0 || raw[0]["from"] != "x/a" || raw[0]["to"] != "x/a" || raw[0]["port"] != 80.0 || raw[0]["protocol"] != "tcp" || raw[0]["reachable"] != true {
		t.Errorf("first JSON probe %v", raw[0])
	}
	tableOut, err := labCLI(t, "lab", "reach", "--name", name)
	if err != nil {
		t.Fatal(err)
	}
	fromTable, err := lab.ParseTable(tableOut)
	if err != nil {
		t.Fatalf("table: %v\n%s", err, tableOut)
	}
	if len(fromJSON) != 324 || len(fromTable) != 324 {
		t.Fatalf("%d probes in JSON, %d in the table, want 324\n%s", len(fromJSON), len(fromTable), tableOut)
	}
	if d := lab.Diff(fromJSON, fromTable); len(d) > 0 {
		t.Errorf("JSON and table disagree:\n%s", strings.Join(d, "\n"))
	}
	for _, p := range fromJSON {
		if !p.Reachable {
			t.Errorf("%s blocked with no policy: %s", p.Case(), p.Error)
		}
	}
	if !strings.HasPrefix(tableOut, "tcp/80\n-\tx/a\tx/b\tx/c\ty/a") {
		t.Errorf("table does not start like upstream's:\n%s", tableOut)
	}

	// Closed port, other sources, and one protocol: agree again.
	jsonOut, err = labCLI(t, "lab", "reach", "--name", name, "-o", "json", "--from", "external,node1,z/c", "--to", "x/a,y/b", "--ports", "81,82", "--protocols", "udp", "--timeout", "2s")
	if err != nil {
		t.Fatal(err)
	}
	tableOut, err = labCLI(t, "lab", "reach", "--name", name, "--from", "external,node1,z/c", "--to", "x/a,y/b", "--ports", "81,82", "--protocols", "udp", "--timeout", "2s")
	if err != nil {
		t.Fatal(err)
	}
	fromJSON, fromTable = nil, nil
	if err := json.Unmarshal([]byte(jsonOut), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if fromTable, err = lab.ParseTable(tableOut); err != nil {
		t.Fatal(err)
	}
	if len(fromJSON) != 12 || len(lab.Diff(fromJSON, fromTable)) != 0 || len(lab.Diff(fromTable, fromJSON)) != 0 {
		t.Errorf("JSON %v\ntable\n%s", fromJSON, tableOut)
	}
	for _, p := range fromJSON {
		if p.Reachable != (p.Port == 81) {
			t.Errorf("%s: reachable=%v (%s)", p.Case(), p.Reachable, p.Error)
		}
	}
	if _, err := labCLI(t, "lab", "reach", "--name", name, "--protocols", "icmp"); err == nil || !strings.Contains(err.Error(), "icmp") {
		t.Errorf("bad protocol: %v", err)
	}
}

// TestLabUpDownCLI: `palisade lab up --app sockshop,netpol` (a process, in
// the foreground as a user runs it) serves both apps, and `palisade lab down`
// from another process leaves nothing: no process, network namespace, state,
// API namespace, pod or Node.
func TestLabUpDownCLI(t *testing.T) {
	kube := rootAndPrivateAPI(t)
	bin := makeBuild(t, t.TempDir())
	name := fmt.Sprintf("cud%d", os.Getpid()%100000)
	up := exec.Command(bin, "lab", "up", "--app", "sockshop,netpol", "--kubeconfig", kube.Kubeconfig, "--name", name, "--probe-period", "-1s")
	var upOut strings.Builder
	up.Stdout, up.Stderr = &upOut, &upOut
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lab.Remove(name, "", time.Second) })
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st, err := lab.ReadState(lab.StateDir(name))
		if err == nil && st.Phase == "ready" && len(st.Status.Pods) == 17 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab up not ready: %v\n%s", err, upOut.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	out, err := exec.Command(bin, "lab", "reach", "--name", name, "--from", "x/a,z/c", "--to", "y/b", "-o", "json").Output()
	var probes []lab.Probe
	if err != nil || json.Unmarshal(out, &probes) != nil || len(probes) != 8 {
		t.Fatalf("lab reach: %v\n%s", err, out)
	}
	if out, err := exec.Command(bin, "lab", "down", "--name", name).CombinedOutput(); err != nil {
		t.Fatalf("lab down: %v\n%s", err, out)
	}
	if err := up.Wait(); err != nil {
		t.Errorf("lab up exited with %v\n%s", err, upOut.String())
	}
	if left, err := lab.Leftovers(name); err != nil || len(left) > 0 {
		t.Errorf("network namespaces left: %v %v", left, err)
	}
	if _, err := os.Stat(lab.StateDir(name)); !os.IsNotExist(err) {
		t.Errorf("state left: %v", err)
	}
	c := kubernetes.NewForConfigOrDie(kube.Config)
	ctx := context.Background()
	for _, ns := range []string{"x", "y", "z", "sock-shop"} {
		if _, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("namespace %s after lab down: %v", ns, err)
		}
	}
	if pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil || len(pods.Items) != 0 {
		t.Errorf("pods after lab down: %d %v", len(pods.Items), err)
	}
	if nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err != nil || len(nodes.Items) != 0 {
		t.Errorf("nodes after lab down: %d %v", len(nodes.Items), err)
	}
}
