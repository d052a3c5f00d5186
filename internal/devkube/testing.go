package devkube

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// StartForTests starts a private control plane for one test binary, for use
// from TestMain. It builds the binaries when they are not cached (CI's
// .ci/run builds them first), so tests never skip for want of an API
// server. The returned stop function removes everything it made.
func StartForTests() (*Cluster, func(), error) {
	dir, err := os.MkdirTemp("", "palisade-devkube-")
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Dir: dir, Log: os.Stderr})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("a real kube-apiserver is required for these tests: %w", err)
	}
	return c, func() {
		c.Stop()
		os.RemoveAll(dir)
	}, nil
}

// Main is a TestMain body for packages whose tests need the API server:
// it starts a private control plane, hands it to setup, runs the tests and
// exits with their status.
//
//	func TestMain(m *testing.M) { devkube.Main(m, func(c *devkube.Cluster) { kube = c }) }
func Main(m *testing.M, setup func(*Cluster)) {
	c, stop, err := StartForTests()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	setup(c)
	code := m.Run()
	stop()
	os.Exit(code)
}
