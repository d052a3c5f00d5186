package devkube

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
)

// SharedDir is where the shared dev cluster (palisade dev kube up, the
// demo, lab commands without --kubeconfig) keeps its state.
func SharedDir() string { return filepath.Join(CacheDir(), "devkube") }

// Up returns the shared dev cluster, starting it detached if it is not
// running. Its data persists in SharedDir across up/down.
func Up(ctx context.Context, log io.Writer) (*Cluster, error) {
	if c, ok := Running(SharedDir()); ok {
		return c, nil
	}
	return Start(ctx, Options{Dir: SharedDir(), Detach: true, Log: log})
}

// Down stops the shared dev cluster if it runs.
func Down() error {
	c, ok := Running(SharedDir())
	if !ok {
		// Stop whatever a half-finished Start left behind.
		c = &Cluster{Dir: SharedDir()}
		if b, err := os.ReadFile(filepath.Join(SharedDir(), "state.json")); err == nil {
			json.Unmarshal(b, &c.state) //nolint:errcheck // best effort cleanup
		}
	}
	c.Stop()
	return nil
}

// Running returns the cluster recorded in dir when its API server process
// is alive.
func Running(dir string) (*Cluster, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, false
	}
	c := &Cluster{Dir: dir, Kubeconfig: filepath.Join(dir, "kubeconfig")}
	if err := json.Unmarshal(b, &c.state); err != nil {
		return nil, false
	}
	for _, name := range startOrder {
		if !alive(c.state.PIDs[name]) {
			return nil, false
		}
	}
	c.URL = c.state.URL
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, false
	}
	c.Config = cfg
	return c, true
}

// Env prints shell exports for the shared cluster.
func Env(w io.Writer) error {
	c, ok := Running(SharedDir())
	if !ok {
		return fmt.Errorf("the dev cluster is not running; start it with `palisade dev kube up`")
	}
	fmt.Fprintf(w, "export KUBECONFIG=%s\n", c.Kubeconfig)
	return nil
}
