package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/netns"
)

// probeLoop is the kubelet's periodic TCP probe: every ProbePeriod each node
// connects from its node IP to every port of each of its pods.
func (l *Lab) probeLoop() {
	if l.cfg.ProbePeriod < 0 {
		return
	}
	t := time.NewTicker(l.cfg.ProbePeriod)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		l.mu.Lock()
		var pods []*localPod
		for _, lp := range l.local {
			pods = append(pods, lp)
		}
		l.mu.Unlock()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 16)
		for _, lp := range pods {
			for _, port := range lp.info.Ports {
				if l.ctx.Err() != nil {
					break
				}
				sem <- struct{}{}
				wg.Go(func() {
					defer func() { <-sem }()
					addr := net.JoinHostPort(lp.info.IP, strconv.Itoa(int(port)))
					c, err := app.Dial(lp.node.ns.path, lp.node.info.IP, addr, 2*time.Second)
					if l.ctx.Err() != nil {
						return // torn down while probing: not a failure
					}
					if err != nil {
						l.probesBad.Add(1)
						l.log.Info("probe failed", "node", lp.node.info.Name, "pod", lp.info.Namespace+"/"+lp.info.Name, "err", err)
						return
					}
					c.Close()
					l.probesOK.Add(1)
				})
			}
		}
		wg.Wait()
		if d := time.Since(start); d > l.cfg.ProbePeriod {
			l.log.Info("probe round slower than the probe period", "lab", l.cfg.Name, "took", d.Round(time.Millisecond))
		}
	}
}

// Probes returns how many kubelet-style probes succeeded and failed so far.
func (l *Lab) Probes() (ok, failed int64) { return l.probesOK.Load(), l.probesBad.Load() }

// RunInPod runs fn on a thread inside the pod's network namespace; sockets
// fn opens stay there. target is NAMESPACE/NAME or a deployment name.
func (l *Lab) RunInPod(target string, fn func() error) error {
	p, err := l.Status().FindPod(target)
	if err != nil {
		return err
	}
	return netns.Do(p.NetNSPath, fn)
}

// Dial opens a TCP connection from inside a pod (NAMESPACE/NAME or a
// deployment name) to addr.
func (l *Lab) Dial(fromPod, addr string) (net.Conn, error) {
	p, err := l.Status().FindPod(fromPod)
	if err != nil {
		return nil, err
	}
	return app.Dial(p.NetNSPath, "", addr, 3*time.Second)
}

// Get makes one HTTP request from inside a pod to addr and returns the body,
// which names the pod that answered.
func (l *Lab) Get(fromPod, addr string) (string, error) {
	p, err := l.Status().FindPod(fromPod)
	if err != nil {
		return "", err
	}
	return app.Get(p.NetNSPath, addr, 3*time.Second)
}

// Exec runs argv inside a pod's network namespace and returns its combined
// output.
func (l *Lab) Exec(pod string, argv ...string) (string, error) {
	p, err := l.Status().FindPod(pod)
	if err != nil {
		return "", err
	}
	return netns.Output(p.NetNSPath, "", argv...)
}

// NodeExec runs argv inside a node's network namespace (name "node1" or the
// Kubernetes node name).
func (l *Lab) NodeExec(nodeName string, argv ...string) (string, error) {
	n, ok := l.Status().Node(nodeName)
	if !ok {
		return "", fmt.Errorf("no node %q in lab %s", nodeName, l.cfg.Name)
	}
	return netns.Output(n.NetNSPath, "", argv...)
}

// ExtExec runs argv inside the external host's namespace.
func (l *Lab) ExtExec(argv ...string) (string, error) {
	return netns.Output(l.net.ext.path, "", argv...)
}

// RunAttached runs argv in the namespace at nsPath with the caller's stdio
// and returns its exit code (for `lab exec` and friends).
func RunAttached(nsPath string, argv []string) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := netns.Run(nsPath, cmd)
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}

// TrafficOptions tune the traffic generator.
type TrafficOptions struct {
	Duration time.Duration // default 10s
	Rate     float64       // connections per second over all edges; default 20
	Workers  int           // concurrent connections; default 8
}

// EdgeReport counts the connections made for one edge of the call graph.
type EdgeReport struct {
	From        string   `json:"from"`
	To          string   `json:"to"`
	Via         app.Via  `json:"via"`
	Targets     []string `json:"targets"` // addresses dialled (ClusterIP:port, nodeIP:nodePort, ...)
	Connections int64    `json:"connections"`
	OK          int64    `json:"ok"`
	Failed      int64    `json:"failed"`
	LastError   string   `json:"lastError,omitempty"`
}

// TrafficReport is what `palisade lab traffic` prints.
type TrafficReport struct {
	Lab      string       `json:"lab"`
	Started  time.Time    `json:"started"`
	Duration string       `json:"duration"`
	Edges    []EdgeReport `json:"edges"`
}

type plannedEdge struct {
	rep     *EdgeReport
	sources []string // namespace paths
	targets []string
	mu      sync.Mutex
	next    int
	ok      atomic.Int64
	failed  atomic.Int64
}

// PlanEdge resolves one call-graph edge to source namespaces and target
// addresses in the lab's current topology.
func PlanEdge(st Status, a app.App, e app.Edge) (sources, targets []string, err error) {
	if e.From == app.External {
		for _, x := range st.External {
			sources = append(sources, x.NetNSPath)
		}
	} else {
		for _, p := range st.PodsOf(a.Namespace, e.From) {
			sources = append(sources, p.NetNSPath)
		}
	}
	comp, _ := a.Component(e.To)
	svc, hasSvc := st.Service(a.Namespace, e.To)
	switch e.Via {
	case app.ViaNodePort:
		if !hasSvc || len(svc.Ports) == 0 || svc.Ports[0].NodePort == 0 {
			return nil, nil, fmt.Errorf("edge %s: no NodePort service %s", e, e.To)
		}
		for _, n := range st.Nodes {
			targets = append(targets, net.JoinHostPort(n.IP, strconv.Itoa(int(svc.Ports[0].NodePort))))
		}
	case app.ViaClusterIP:
		if !hasSvc || len(svc.Ports) == 0 || svc.ClusterIP == "" || svc.ClusterIP == "None" {
			return nil, nil, fmt.Errorf("edge %s: no ClusterIP service %s", e, e.To)
		}
		targets = append(targets, net.JoinHostPort(svc.ClusterIP, strconv.Itoa(int(svc.Ports[0].Port))))
	case app.ViaPodIP:
		for _, p := range st.PodsOf(a.Namespace, e.To) {
			targets = append(targets, net.JoinHostPort(p.IP, strconv.Itoa(int(comp.Port))))
		}
	case app.ViaExternal:
		for _, x := range st.External {
			targets = append(targets, net.JoinHostPort(x.IP, strconv.Itoa(int(e.Port))))
		}
	}
	if len(sources) == 0 || len(targets) == 0 {
		return nil, nil, fmt.Errorf("edge %s: no sources or targets in the lab", e)
	}
	return sources, targets, nil
}

// Traffic drives the app's call graph over the lab described by st: each
// connection is one HTTP request from a source namespace (round robin over
// the source pods) to the edge's target, edges taking turns. It returns how
// many connections it made per edge.
func Traffic(ctx context.Context, st Status, a app.App, opt TrafficOptions) (*TrafficReport, error) {
	if opt.Duration <= 0 {
		opt.Duration = 10 * time.Second
	}
	if opt.Rate <= 0 {
		opt.Rate = 20
	}
	if opt.Workers <= 0 {
		opt.Workers = 8
	}
	var edges []*plannedEdge
	for _, e := range a.Edges {
		src, dst, err := PlanEdge(st, a, e)
		if err != nil {
			return nil, err
		}
		edges = append(edges, &plannedEdge{rep: &EdgeReport{From: e.From, To: e.To, Via: e.Via, Targets: dst}, sources: src, targets: dst})
	}
	rep := &TrafficReport{Lab: st.Name, Started: time.Now().UTC()}
	jobs := make(chan *plannedEdge)
	var wg sync.WaitGroup
	for range opt.Workers {
		wg.Go(func() {
			for pe := range jobs {
				pe.mu.Lock()
				src := pe.sources[pe.next%len(pe.sources)]
				dst := pe.targets[pe.next%len(pe.targets)]
				pe.next++
				pe.mu.Unlock()
				if _, err := app.Get(src, dst, 3*time.Second); err != nil {
					pe.failed.Add(1)
					pe.mu.Lock()
					pe.rep.LastError = err.Error()
					pe.mu.Unlock()
				} else {
					pe.ok.Add(1)
				}
			}
		})
	}
	interval := time.Duration(float64(time.Second) / opt.Rate)
	tick := time.NewTicker(interval)
	deadline := time.NewTimer(opt.Duration)
	start := time.Now()
loop:
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			break loop
		case <-deadline.C:
			break loop
		case jobs <- edges[i%len(edges)]:
		}
		select {
		case <-ctx.Done():
			break loop
		case <-deadline.C:
			break loop
		case <-tick.C:
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	rep.Duration = time.Since(start).Round(time.Millisecond).String()
	for _, pe := range edges {
		pe.rep.OK, pe.rep.Failed = pe.ok.Load(), pe.failed.Load()
		pe.rep.Connections = pe.rep.OK + pe.rep.Failed
		rep.Edges = append(rep.Edges, *pe.rep)
	}
	return rep, nil
}
