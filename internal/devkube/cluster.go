package devkube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Controllers run by kube-controller-manager. Without kubelets, the node
// lifecycle and taint-eviction controllers would mark lab nodes unreachable
// and evict their pods, and node IPAM would fight the lab over podCIDRs.
var controllers = []string{
	"deployment-controller", "replicaset-controller", "endpointslice-controller",
	"endpoints-controller", "garbage-collector-controller", "namespace-controller",
	"serviceaccount-controller", "job-controller", "cronjob-controller",
	"daemonset-controller", "statefulset-controller",
}

// Options configure a control plane.
type Options struct {
	// Dir holds certificates, etcd data, logs and the kubeconfig. Reusing
	// a Dir keeps the cluster's data across restarts.
	Dir string
	// Detach starts the processes in their own session so they outlive the
	// calling process (palisade dev kube up); otherwise Stop or the death of
	// the caller ends them.
	Detach bool
	// Log receives build progress. Nil discards it.
	Log io.Writer
}

// Cluster is a running control plane.
type Cluster struct {
	Dir        string
	Kubeconfig string // path of an admin kubeconfig
	URL        string // https://127.0.0.1:PORT
	Config     *rest.Config
	state      state
}

// state is persisted in Dir/state.json so a detached cluster can be found
// and stopped by a later process.
type state struct {
	URL   string         `json:"url"`
	Ports map[string]int `json:"ports"`
	PIDs  map[string]int `json:"pids"` // component → pid, stopped in reverse start order
}

var startOrder = []string{"etcd", "kube-apiserver", "kube-controller-manager"}

// Start builds the binaries if needed and starts etcd, kube-apiserver and
// kube-controller-manager on free 127.0.0.1 ports. It returns once the API
// server reports ready.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Dir == "" {
		return nil, errors.New("devkube: Options.Dir is required")
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("devkube: %w", err)
	}
	bins, err := EnsureBinaries(ctx, opts.Log)
	if err != nil {
		return nil, err
	}
	p, err := newPKI(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("devkube: certificates: %w", err)
	}
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	c := &Cluster{
		Dir:        opts.Dir,
		Kubeconfig: filepath.Join(opts.Dir, "kubeconfig"),
		URL:        fmt.Sprintf("https://127.0.0.1:%d", ports[2]),
		state: state{
			Ports: map[string]int{"etcd-client": ports[0], "etcd-peer": ports[1], "apiserver": ports[2], "controller-manager": ports[3]},
			PIDs:  map[string]int{},
		},
	}
	c.state.URL = c.URL
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cmds := map[string][]string{
		"etcd": {bins.Etcd,
			"--name=devkube", "--data-dir=" + filepath.Join(opts.Dir, "etcd"),
			"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=devkube=" + peerURL,
			"--unsafe-no-fsync", "--log-level=warn", "--quota-backend-bytes=4294967296",
		},
		"kube-apiserver": {bins.APIServer,
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(ports[2]),
			"--endpoint-reconciler-type=none",
			"--service-cluster-ip-range=10.96.0.0/12",
			"--service-node-port-range=30000-32767",
			"--client-ca-file=" + p.CACert,
			"--tls-cert-file=" + p.ServingCert, "--tls-private-key-file=" + p.ServingKey,
			"--service-account-issuer=https://kubernetes.default.svc",
			"--service-account-key-file=" + p.SAPub,
			"--service-account-signing-key-file=" + p.SAKey,
			"--authorization-mode=RBAC",
			// No kubelet mounts tokens here; the ServiceAccount admission plugin
			// would otherwise reject pods until each namespace's default SA exists.
			"--disable-admission-plugins=ServiceAccount",
			"--allow-privileged=true", "--profiling=false",
			"--cert-dir=" + filepath.Join(opts.Dir, "apiserver-certs"),
		},
		"kube-controller-manager": {bins.ControllerManager,
			"--kubeconfig=" + c.Kubeconfig,
			"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(ports[3]),
			"--leader-elect=false", "--use-service-account-credentials=false",
			"--service-account-private-key-file=" + p.SAKey, "--root-ca-file=" + p.CACert,
			"--controllers=" + strings.Join(controllers, ","),
			"--endpointslice-updates-batch-period=0s",
		},
	}
	if err := writeKubeconfig(c.Kubeconfig, c.URL, p); err != nil {
		return nil, err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return nil, fmt.Errorf("devkube: %w", err)
	}
	for _, name := range startOrder {
		pid, err := launch(opts, name, cmds[name])
		if err != nil {
			c.Stop()
			return nil, err
		}
		c.state.PIDs[name] = pid
		if err := c.saveState(); err != nil {
			c.Stop()
			return nil, err
		}
		switch name {
		case "kube-apiserver":
			err = c.waitReady(ctx, p, 90*time.Second)
		case "kube-controller-manager":
			err = c.waitHealthy(ctx, name, fmt.Sprintf("https://127.0.0.1:%d/healthz", ports[3]), 60*time.Second)
		}
		if err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

func launch(opts Options, name string, argv []string) (int, error) {
	logf, err := os.OpenFile(filepath.Join(opts.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("devkube: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if opts.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		// Tie the component's life to ours: if the test binary dies, so does it.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := startOnLauncher(cmd); err != nil {
		return 0, fmt.Errorf("devkube: start %s: %w", name, err)
	}
	go cmd.Wait() //nolint:errcheck // reaped; liveness is checked through the pid
	return cmd.Process.Pid, nil
}

// Pdeathsig is delivered when the *thread* that forked the child exits, not
// the process (golang/go#27505). Children are therefore started from one
// goroutine locked to its thread for the life of the process, so code that
// locks and abandons threads (network-namespace work) cannot kill them.
var (
	launcherOnce sync.Once
	launches     chan launchReq
)

type launchReq struct {
	cmd  *exec.Cmd
	done chan error
}

func startOnLauncher(cmd *exec.Cmd) error {
	launcherOnce.Do(func() {
		launches = make(chan launchReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the process
			for r := range launches {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error)
	launches <- launchReq{cmd, done}
	return <-done
}

func (c *Cluster) waitReady(ctx context.Context, p *pki, timeout time.Duration) error {
	cert, err := tls.LoadX509KeyPair(p.AdminCert, p.AdminKey)
	if err != nil {
		return err
	}
	caPEM, err := os.ReadFile(p.CACert)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if !alive(c.state.PIDs["kube-apiserver"]) {
			return fmt.Errorf("devkube: kube-apiserver exited; see %s", filepath.Join(c.Dir, "kube-apiserver.log"))
		}
		resp, err := hc.Get(c.URL + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, b)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("devkube: kube-apiserver not ready after %s (last: %.200s); see %s", timeout, last,
		filepath.Join(c.Dir, "kube-apiserver.log"))
}

// waitHealthy waits for a component's own health endpoint (served with a
// self-signed certificate, so not verified: it is our child on loopback).
func (c *Cluster) waitHealthy(ctx context.Context, name, url string, timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback child process
	}}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(c.state.PIDs[name]) {
			return fmt.Errorf("devkube: %s exited; see %s", name, filepath.Join(c.Dir, name+".log"))
		}
		if resp, err := hc.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("devkube: %s not healthy after %s; see %s", name, timeout, filepath.Join(c.Dir, name+".log"))
}

// Stop ends the control plane: controller-manager, then API server, then
// etcd (stopping etcd first can leave the API server's port bound for ~50 s).
func (c *Cluster) Stop() {
	for i := len(startOrder) - 1; i >= 0; i-- {
		stopPID(c.state.PIDs[startOrder[i]])
	}
	os.Remove(filepath.Join(c.Dir, "state.json"))
}

// PID returns the process id of a component ("etcd", "kube-apiserver",
// "kube-controller-manager"), for tests that simulate outages.
func (c *Cluster) PID(component string) int { return c.state.PIDs[component] }

func stopPID(pid int) {
	if pid <= 0 || !alive(pid) {
		return
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	// A zombie still answers signal 0; look at its state too.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func (c *Cluster) saveState() error {
	b, _ := json.MarshalIndent(c.state, "", "  ")
	return os.WriteFile(filepath.Join(c.Dir, "state.json"), b, 0o600)
}

func writeKubeconfig(path, url string, p *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["devkube"] = &clientcmdapi.Cluster{Server: url, CertificateAuthority: p.CACert}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificate: p.AdminCert, ClientKey: p.AdminKey}
	cfg.Contexts["devkube"] = &clientcmdapi.Context{Cluster: "devkube", AuthInfo: "admin"}
	cfg.CurrentContext = "devkube"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("devkube: write kubeconfig: %w", err)
	}
	return nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("devkube: no free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
