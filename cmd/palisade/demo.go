package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/palisade-dev/palisade/internal/agent"
	"github.com/palisade-dev/palisade/internal/devkube"
	"github.com/palisade-dev/palisade/internal/lab"
	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/server"
	"github.com/palisade-dev/palisade/internal/vuln/sample"
)

func newDemoCmd() *cobra.Command {
	var (
		dataDir, listen, mode, kubeconfig, labName string
		nodes                                      int
		rate                                       float64
		duration                                   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run everything on embedded defaults: API server, Palisade server, lab cluster with sock-shop, agents, traffic",
		Long: `demo starts the local Kubernetes control plane (palisade dev kube up), the
Palisade server watching it, a lab cluster of network namespaces running the
sock-shop application, one flow agent per lab node and a traffic generator
along the application's call graph. It prints how to search the inventory
and the flows, and runs until interrupted (or for --duration), then removes
the lab. The control plane stays up for the next run (palisade dev kube down).

Standard output carries only the demo's steps and the commands to try, which
work as printed from the directory the demo was started in. The components'
logs go to demo.log in the data directory; warnings and errors also reach
standard error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			return runDemo(ctx, cmd.OutOrStdout(), cmd.ErrOrStderr(), demoConfig{
				dataDir: dataDir, listen: listen, nodes: nodes, mode: lab.Mode(mode), rate: rate,
				kubeconfig: kubeconfig, labName: labName, cli: invokedAs(),
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dataDir, "data", defaultDataDir("demo"), "the demo server's data directory")
	f.StringVar(&listen, "listen", "127.0.0.1:7070", "address of the demo server's API")
	f.IntVar(&nodes, "nodes", 2, "lab nodes")
	f.StringVar(&mode, "mode", "vxlan", "lab pod network: direct or vxlan")
	f.Float64Var(&rate, "rate", 10, "application connections per second")
	f.DurationVar(&duration, "duration", 0, "stop after this long (0: until interrupted)")
	f.StringVar(&kubeconfig, "kubeconfig", "", "API server for the lab (default: the shared dev control plane, started if needed)")
	f.StringVar(&labName, "lab", "demo", "name of the demo's lab")
	return cmd
}

type demoConfig struct {
	dataDir, listen     string
	nodes               int
	mode                lab.Mode
	rate                float64
	kubeconfig, labName string
	// cli is how the user ran palisade (./bin/palisade, palisade, ...):
	// the printed commands start with it, so they work as printed.
	cli string
}

// invokedAs is how to run this binary again from the working directory:
// the name as typed when it was found on PATH, else a path relative to the
// working directory ("./bin/palisade"), else an absolute path.
func invokedAs() string {
	arg0 := os.Args[0]
	if !strings.Contains(arg0, "/") {
		return arg0
	}
	abs, err := filepath.Abs(arg0)
	if err != nil {
		return arg0
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, abs); err == nil && !strings.HasPrefix(rel, "..") {
			return "./" + rel
		}
	}
	return abs
}

func runDemo(ctx context.Context, out, term io.Writer, c demoConfig) error {
	say := func(format string, args ...any) { fmt.Fprintf(out, format+"\n", args...) }
	if err := os.MkdirAll(c.dataDir, 0o700); err != nil { // the server keeps it private
		return err
	}
	// The components (server, connectors, lab, agents, the loopback
	// registry's request log) log to a file; warnings and errors also to
	// the terminal, so the steps below stay readable.
	logPath := filepath.Join(c.dataDir, "demo.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("demo log: %w", err)
	}
	defer logFile.Close()
	logger := slog.New(slog.NewMultiHandler(
		slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo}),
		slog.NewTextHandler(term, &slog.HandlerOptions{Level: slog.LevelWarn})))
	prev := slog.Default()
	slog.SetDefault(logger) // also routes the standard log package into logger
	defer slog.SetDefault(prev)
	say("Component logs go to %s (warnings and errors also show here).", logPath)

	say("1/6 Kubernetes control plane (kube-apiserver %s, etcd, kube-controller-manager)...", devkube.KubernetesVersion)
	var kubeConfig *rest.Config
	if c.kubeconfig != "" {
		if kubeConfig, err = clientcmd.BuildConfigFromFlags("", c.kubeconfig); err != nil {
			return fmt.Errorf("kubeconfig %s: %w", c.kubeconfig, err)
		}
		say("    %s (export KUBECONFIG=%s)", kubeConfig.Host, c.kubeconfig)
	} else {
		kube, err := devkube.Up(ctx, logFile)
		if err != nil {
			return err
		}
		kubeConfig = kube.Config
		say("    %s (export KUBECONFIG=%s)", kube.URL, kube.Kubeconfig)
	}

	say("2/6 Palisade server...")
	srv, err := server.Start(ctx, server.Config{
		DataDir: c.dataDir, Listen: c.listen,
		Clusters:   []server.Cluster{{Name: "lab", Config: kubeConfig}},
		FlowWindow: 20 * time.Second,
		// The lab runs sock-shop images by their public names; nothing may be
		// pulled from outside this machine, so only a loopback registry is scanned.
		ScanRegistries: []string{"127.0.0.1", "localhost"},
		TLS:            true,
	})
	if err != nil {
		return err
	}
	defer srv.Stop()
	// The CA certificate is public; the data directory is not: a copy
	// anyone may read, for the commands printed below.
	caCopy := filepath.Join(os.TempDir(), "palisade-demo-ca.crt")
	if b, err := os.ReadFile(filepath.Join(c.dataDir, server.CACertFile)); err == nil {
		if err := os.WriteFile(caCopy, b, 0o644); err == nil {
			os.Chmod(caCopy, 0o644) //nolint:errcheck
		}
	}
	say("    API on %s, data in %s, admin token in %s", srv.URL(), c.dataDir, filepath.Join(c.dataDir, server.AdminTokenFile))

	if os.Geteuid() != 0 {
		say("The lab needs root (network namespaces, iptables): showing the inventory only.")
		say("Try: %s inventory search 'kind = namespace' --server %s --token-file %s --ca %s", c.cli, srv.URL(), filepath.Join(c.dataDir, server.AdminTokenFile), caCopy)
		<-ctx.Done()
		return nil
	}
	say("3/6 lab cluster: %d nodes, %s pod network, sock-shop...", c.nodes, c.mode)
	l, err := lab.Up(ctx, lab.Config{Name: c.labName, Nodes: c.nodes, Mode: c.mode, App: "sockshop",
		RestConfig: kubeConfig, Kubeconfig: c.kubeconfig, Logger: logger})
	if err != nil {
		return err
	}
	defer func() {
		say("removing the lab...")
		if err := l.Down(); err != nil {
			logger.Error("lab down", "err", err)
		}
	}()
	st := l.Status()

	say("4/6 flow agents, one per node...")
	agentCtx, stopAgents := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { stopAgents(); wg.Wait() }()
	for _, n := range st.Nodes {
		uplinks := []string{n.Uplink}
		if n.VXLAN != "" {
			uplinks = append(uplinks, n.VXLAN)
		}
		// Each agent enrolls (mTLS from then on) with a one-time token, as
		// `palisade agent token create --node NODE` makes one.
		_, enrollToken, err := srv.Enrollment().CreateToken(n.Name, time.Hour, "demo")
		if err != nil {
			return fmt.Errorf("agent on %s: %w", n.Name, err)
		}
		a, err := agent.New(agent.Config{
			Server: srv.URL(), Node: n.Name, EnrollToken: enrollToken, StateDir: filepath.Join(c.dataDir, "agents", n.Name, "identity"),
			CAFile: filepath.Join(c.dataDir, server.CACertFile), NetNS: n.NetNSPath,
			Uplinks: uplinks, SpoolDir: filepath.Join(c.dataDir, "agents", n.Name), DetachOnExit: true,
			Log: logger,
		})
		if err != nil {
			return fmt.Errorf("agent on %s: %w", n.Name, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := a.Run(agentCtx); err != nil && agentCtx.Err() == nil {
				logger.Error("agent stopped", "node", n.Name, "err", err)
			}
		}()
	}

	say("5/6 scanner: payment rolls out a Go image with vulnerable x/net and x/text from a loopback registry (in the background)...")
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := demoVulnerableImage(ctx, srv, l, c.dataDir); err != nil && ctx.Err() == nil {
			// Scanning is one of the demo's parts; the rest goes on without it.
			logger.Warn("scanner part of the demo skipped", "err", err)
		}
	}()

	say("6/6 traffic along the sock-shop call graph (%.0f connections/s)...", c.rate)
	shop, _ := app.ByName("sockshop")
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			// Fresh topology each round: pods come and go (the payment rollout).
			if _, err := lab.Traffic(ctx, l.Status(), shop, lab.TrafficOptions{Duration: 15 * time.Second, Rate: c.rate}); err != nil && ctx.Err() == nil {
				logger.Warn("traffic", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(2 * time.Second):
				}
			}
		}
	}()

	sudo := ""
	if os.Getenv("SUDO_USER") != "" {
		sudo = "sudo " // the lab commands and the token file need root, the rest does not
	}
	say(`
Palisade is running over HTTPS (its CA: a copy in %[6]s). Every API call needs a token; the server wrote the admin
token to %[2]s. In another shell, from this directory:

  export PALISADE_SERVER=%[1]s
  export PALISADE_CA=%[6]s
  export PALISADE_TOKEN=$(%[4]scat %[2]s)

  %[3]s inventory search 'namespace = sock-shop and kind = pod'
  %[3]s inventory search 'kind = service and service.type = NodePort' -o json
  %[4]s%[3]s lab status -o json --name %[5]s
  %[3]s flows search 'dst.namespace = sock-shop' --since 5m   # flows appear after ~30 s
  %[3]s flows top --by dst.port
  %[3]s inventory search 'vuln.cve contains "CVE-2022-32149"'   # once the scan finished
  %[3]s token create alice --role viewer   # a read-only token, printed once
  curl -s --cacert $PALISADE_CA -H "Authorization: Bearer $PALISADE_TOKEN" '%[1]s/api/v1/vulnerabilities?filter=package%%20=%%20golang.org/x/net'
  curl -s --cacert $PALISADE_CA -H "Authorization: Bearer $PALISADE_TOKEN" %[1]s/api/v1/status

Ctrl-C stops the demo and removes the lab.`, srv.URL(), filepath.Join(c.dataDir, server.AdminTokenFile), c.cli, sudo, c.labName, caCopy)
	<-ctx.Done()
	return nil
}

// demoVulnerableImage serves a loopback registry holding a Go program that
// links vulnerable golang.org/x/net and x/text, imports the real Go
// vulnerability database, and points the payment Deployment at the image.
// The lab's controllers roll the new pod out; the scanner pulls the image
// from loopback and publishes vuln.* attributes on the pod.
func demoVulnerableImage(ctx context.Context, srv *server.Server, l *lab.Lab, dataDir string) error {
	host, _, err := sample.Registry() // lives as long as the demo process
	if err != nil {
		return err
	}
	exe, err := sample.GoApp(filepath.Join(dataDir, "vulnapp"))
	if err != nil {
		return err
	}
	img, err := sample.Image("app/payment", exe)
	if err != nil {
		return err
	}
	ref, err := sample.Push(img, host+"/sock-shop/payment:vulnerable")
	if err != nil {
		return err
	}
	db, err := sample.GoVulnDB()
	if err != nil {
		return err
	}
	if _, err := srv.Vuln.ImportDB(ctx, db, nil); err != nil {
		return err
	}
	deploys := l.Client().AppsV1().Deployments(l.Namespace())
	d, err := deploys.Get(ctx, "payment", metav1.GetOptions{})
	if err != nil {
		return err
	}
	d.Spec.Template.Spec.Containers[0].Image = ref
	_, err = deploys.Update(ctx, d, metav1.UpdateOptions{})
	return err
}
