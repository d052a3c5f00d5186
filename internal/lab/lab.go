package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"

	discoveryv1 "k8s.io/api/discovery/v1"

	"golang.org/x/sys/unix"

	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/netns"
)

// Lab is a running lab. Its methods are safe for concurrent use.
type Lab struct {
	cfg    Config
	log    interface{ Info(string, ...any) }
	apps   []app.App
	net    *network
	client kubernetes.Interface
	nodes  map[string]*node

	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	queue   workqueue.TypedRateLimitingInterface[string]
	pods    corelisters.PodLister
	svcs    corelisters.ServiceLister
	slices  discoverylisters.EndpointSliceLister
	deploys appslisters.DeploymentLister
	extSrv  *app.Server

	mu       sync.Mutex
	local    map[string]*localPod // by namespace/name
	assigned map[string]string    // pod key → node name, bound by us but maybe not yet seen
	applied  map[string]int       // service namespace/name → endpoints programmed
	proxyErr error

	proxyKick chan struct{}
	stateKick chan struct{}
	probesOK  atomic.Int64
	probesBad atomic.Int64
	downOnce  sync.Once
	downErr   error
}

type localPod struct {
	uid     string
	info    PodInfo
	ip      netip.Addr
	node    *node
	srv     *app.Server
	running bool // status reported to the API
}

// Up builds the lab's network, registers its nodes, deploys the app and
// returns once every deployment's pods run and every service's endpoints are
// programmed. The lab keeps following the API server until Down.
func Up(ctx context.Context, cfg Config) (_ *Lab, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the lab needs root (network namespaces, veths, iptables): run as root")
	}
	rc := cfg.RestConfig
	if rc == nil {
		if cfg.Kubeconfig == "" {
			return nil, errors.New("lab: RestConfig or Kubeconfig is required")
		}
		if rc, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig); err != nil {
			return nil, fmt.Errorf("kubeconfig %s: %w", cfg.Kubeconfig, err)
		}
	}
	rc = rest.CopyConfig(rc)
	rc.QPS, rc.Burst = 500, 1000
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	if st, err := ReadState(cfg.StateDir); err == nil && st.PID != os.Getpid() && processAlive(st.PID) {
		return nil, fmt.Errorf("lab %s is already running (pid %d): `palisade lab down --name %s` first", cfg.Name, st.PID, cfg.Name)
	}
	// Leftovers of a crashed lab with the same name go first.
	if err := removeAll(cfg.Name); err != nil {
		return nil, err
	}
	l := &Lab{
		cfg: cfg, log: cfg.Logger, client: client, nodes: map[string]*node{},
		local: map[string]*localPod{}, assigned: map[string]string{}, applied: map[string]int{},
		proxyKick: make(chan struct{}, 1), stateKick: make(chan struct{}, 1),
	}
	if l.apps, err = app.Parse(cfg.App); err != nil {
		return nil, err
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	if err := l.saveState("starting"); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	defer func() {
		if err != nil {
			_ = l.Down()
		}
	}()
	start := time.Now()
	if l.net, err = buildNetwork(cfg.Name, cfg.Mode, cfg.Nodes); err != nil {
		return nil, err
	}
	for _, nd := range l.net.nodes {
		l.nodes[nd.info.Name] = nd
	}
	if l.extSrv, err = app.Listen(l.net.ext.path, "external", app.ExternalPorts); err != nil {
		return nil, err
	}
	l.log.Info("lab network up", "lab", cfg.Name, "nodes", cfg.Nodes, "mode", cfg.Mode, "took", time.Since(start).Round(time.Millisecond))
	if err := registerNodes(ctx, client, cfg.Name, l.net.nodes); err != nil {
		return nil, err
	}
	if err := l.startControllers(ctx); err != nil {
		return nil, err
	}
	var nodeNames []string
	for _, nd := range l.net.nodes {
		nodeNames = append(nodeNames, nd.info.Name)
	}
	for _, a := range l.apps {
		if err := deployApp(ctx, client, a, int32(cfg.Replicas), cfg.Name, nodeNames); err != nil {
			return nil, err
		}
	}
	if err := l.WaitReady(ctx); err != nil {
		return nil, err
	}
	if err := l.saveState("ready"); err != nil {
		return nil, err
	}
	l.log.Info("lab ready", "lab", cfg.Name, "pods", len(l.Status().Pods), "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

func (l *Lab) startControllers(ctx context.Context) error {
	f := informers.NewSharedInformerFactory(l.client, 0)
	podInf := f.Core().V1().Pods()
	svcInf := f.Core().V1().Services()
	sliceInf := f.Discovery().V1().EndpointSlices()
	depInf := f.Apps().V1().Deployments()
	l.pods, l.svcs, l.slices, l.deploys = podInf.Lister(), svcInf.Lister(), sliceInf.Lister(), depInf.Lister()
	l.queue = workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			l.queue.Add(key)
		}
	}
	kick := func(any) { l.kickProxy() }
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	for _, inf := range []cache.SharedIndexInformer{svcInf.Informer(), sliceInf.Informer()} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: kick, UpdateFunc: func(_, o any) { kick(o) }, DeleteFunc: kick,
		}); err != nil {
			return err
		}
	}
	_ = depInf.Informer()
	f.Start(l.ctx.Done())
	if err := waitCacheSync(ctx, podInf.Informer().HasSynced, svcInf.Informer().HasSynced,
		sliceInf.Informer().HasSynced, depInf.Informer().HasSynced); err != nil {
		return err
	}
	for range 8 {
		l.wg.Go(l.podWorker)
	}
	l.wg.Go(l.proxyLoop)
	l.wg.Go(l.stateLoop)
	l.wg.Go(l.probeLoop)
	l.wg.Go(func() { <-l.ctx.Done(); l.queue.ShutDown(); f.Shutdown() })
	l.kickProxy()
	return nil
}

func (l *Lab) kickProxy() {
	select {
	case l.proxyKick <- struct{}{}:
	default:
	}
}

func (l *Lab) kickState() {
	select {
	case l.stateKick <- struct{}{}:
	default:
	}
}

func (l *Lab) podWorker() {
	for {
		key, quit := l.queue.Get()
		if quit {
			return
		}
		if err := l.syncPod(key); err != nil && l.ctx.Err() == nil {
			l.log.Info("pod sync failed, retrying", "pod", key, "err", err)
			l.queue.AddRateLimited(key)
		} else {
			l.queue.Forget(key)
		}
		l.queue.Done(key)
	}
}

// syncPod is the lab's scheduler and kubelet for one pod.
func (l *Lab) syncPod(key string) error {
	ctx := l.ctx
	ns, name, _ := strings.Cut(key, "/")
	pod, err := l.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		l.teardown(key, "")
		return nil
	}
	if err != nil {
		return err
	}
	if pod.Spec.NodeName == "" {
		return l.schedule(pod)
	}
	nd := l.nodes[pod.Spec.NodeName]
	if nd == nil {
		return nil // another cluster member's pod
	}
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		l.teardown(key, "")
		if pod.DeletionTimestamp != nil {
			zero := int64(0)
			uid := pod.UID
			err := l.client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
				GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return err
			}
		}
		return nil
	}
	l.teardown(key, string(pod.UID)) // a previous pod of the same name
	l.mu.Lock()
	lp := l.local[key]
	l.mu.Unlock()
	if lp == nil {
		if lp, err = l.setup(pod, nd); err != nil {
			return err
		}
	}
	if !podRunningAs(pod, lp.info.IP) {
		if err := patchPodStatus(ctx, l.client, pod, runningStatus(pod, nd.info.IP, lp.ip)); err != nil {
			return fmt.Errorf("pod %s status: %w", key, err)
		}
	}
	l.mu.Lock()
	if !lp.running {
		lp.running = true
		l.kickState()
	}
	l.mu.Unlock()
	return nil
}

// schedule binds a pending pod to the lab node with the fewest pods.
func (l *Lab) schedule(pod *corev1.Pod) error {
	if pod.DeletionTimestamp != nil || (pod.Spec.SchedulerName != "" && pod.Spec.SchedulerName != corev1.DefaultSchedulerName) {
		return nil
	}
	key := pod.Namespace + "/" + pod.Name
	l.mu.Lock()
	if _, done := l.assigned[key]; done {
		l.mu.Unlock()
		return nil
	}
	count := map[string]int{}
	for _, n := range l.assigned {
		count[n]++
	}
	var best string
	for _, nd := range l.net.nodes {
		n := nd.info.Name
		if !labels.SelectorFromSet(pod.Spec.NodeSelector).Matches(labels.Set(nodeLabels(l.cfg.Name, n))) {
			continue
		}
		if best == "" || count[n] < count[best] {
			best = n
		}
	}
	if best == "" {
		l.mu.Unlock()
		l.log.Info("pod fits no lab node: it stays pending", "pod", key, "nodeSelector", pod.Spec.NodeSelector)
		return nil
	}
	l.assigned[key] = best
	l.mu.Unlock()
	err := l.client.CoreV1().Pods(pod.Namespace).Bind(l.ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: best},
	}, metav1.CreateOptions{})
	if err != nil {
		l.mu.Lock()
		delete(l.assigned, key)
		l.mu.Unlock()
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // bound by someone else, or gone
		}
		return fmt.Errorf("bind %s to %s: %w", key, best, err)
	}
	return nil
}

// setup plumbs a pod's namespace and serves its container ports.
func (l *Lab) setup(pod *corev1.Pod, nd *node) (*localPod, error) {
	ip, err := nd.allocIP()
	if err != nil {
		return nil, err
	}
	pi, err := l.net.plugPod(nd, pod.Namespace, pod.Name, ip)
	if err != nil {
		nd.freeIP(ip)
		return nil, err
	}
	pi.App, pi.UID = deploymentOf(pod), string(pod.UID)
	pi.Ports, pi.UDPPorts = containerPorts(pod, corev1.ProtocolTCP), containerPorts(pod, corev1.ProtocolUDP)
	srv, err := app.ListenPorts(pi.NetNSPath, pod.Namespace+"/"+pod.Name, pi.Ports, pi.UDPPorts)
	if err != nil {
		_ = l.net.unplugPod(nd, pi)
		nd.freeIP(ip)
		return nil, err
	}
	lp := &localPod{uid: string(pod.UID), info: *pi, ip: ip, node: nd, srv: srv}
	key := pod.Namespace + "/" + pod.Name
	l.mu.Lock()
	l.local[key] = lp
	l.assigned[key] = nd.info.Name
	l.mu.Unlock()
	return lp, nil
}

// teardown removes the local pod key unless its UID is keepUID.
func (l *Lab) teardown(key, keepUID string) {
	l.mu.Lock()
	lp := l.local[key]
	if lp == nil || (keepUID != "" && lp.uid == keepUID) {
		if lp == nil && keepUID == "" {
			delete(l.assigned, key)
		}
		l.mu.Unlock()
		return
	}
	delete(l.local, key)
	if keepUID == "" {
		delete(l.assigned, key)
	}
	l.mu.Unlock()
	_ = lp.srv.Close()
	_ = l.net.unplugPod(lp.node, &lp.info)
	lp.node.freeIP(lp.ip)
	l.kickState()
}

// proxyLoop reprograms every node's NAT rules when Services or
// EndpointSlices change (changes within 50 ms are applied together).
func (l *Lab) proxyLoop() {
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.proxyKick:
		}
		time.Sleep(50 * time.Millisecond)
		svcs, err := l.svcs.List(labels.Everything())
		if err != nil {
			continue
		}
		ports := servicePorts(svcs, func(ns, svc string) []*discoveryv1.EndpointSlice {
			s, _ := l.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc}))
			return s
		})
		errs := make([]error, len(l.net.nodes))
		var wg sync.WaitGroup
		for i, nd := range l.net.nodes {
			wg.Go(func() { errs[i] = nd.proxy.Sync(ports) })
		}
		wg.Wait()
		err = errors.Join(errs...)
		applied := map[string]int{}
		for _, p := range ports {
			k := p.Namespace + "/" + p.Name
			if n, ok := applied[k]; !ok || len(p.Endpoints) < n {
				applied[k] = len(p.Endpoints)
			}
		}
		l.mu.Lock()
		l.proxyErr = err
		if err == nil {
			l.applied = applied
		}
		l.mu.Unlock()
		if err != nil {
			l.log.Info("proxy sync failed", "err", err)
			time.Sleep(time.Second)
			l.kickProxy()
		}
		l.kickState()
	}
}

// WaitReady waits until every Deployment's desired replicas run on lab
// nodes with their status reported, and every Service's ready endpoints
// are programmed on every node. Call it after changing the app via the API.
func (l *Lab) WaitReady(ctx context.Context) error {
	// The generations the API server has now: the informers must catch up
	// with them, so a change made just before this call is waited for.
	gens := map[string]int64{}
	live, err := l.client.AppsV1().Deployments("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	for _, d := range live.Items {
		gens[d.Namespace+"/"+d.Name] = d.Generation
	}
	var why string
	last := time.Now()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 5*time.Minute, true, func(context.Context) (bool, error) {
		why = l.notReady(gens)
		if why != "" && time.Since(last) > 5*time.Second {
			pods, _ := l.pods.List(labels.Everything())
			l.mu.Lock()
			nlocal, nassigned := len(l.local), len(l.assigned)
			l.mu.Unlock()
			l.log.Info("lab not ready yet", "lab", l.cfg.Name, "waiting for", why, "apiPods", len(pods), "assigned", nassigned, "plumbed", nlocal)
			last = time.Now()
		}
		return why == "", nil
	})
	if err != nil {
		return fmt.Errorf("lab %s not ready: %s: %w", l.cfg.Name, why, err)
	}
	return nil
}

// notReady says what is still missing, or "".
func (l *Lab) notReady(gens map[string]int64) string {
	pods, _ := l.pods.List(labels.Everything())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.proxyErr != nil {
		return l.proxyErr.Error()
	}
	running := map[string]*corev1.Pod{}
	for _, p := range pods {
		key := p.Namespace + "/" + p.Name
		if lp := l.local[key]; lp != nil && lp.running && lp.uid == string(p.UID) && p.DeletionTimestamp == nil && podRunningAs(p, lp.info.IP) {
			running[key] = p
		}
	}
	deps, _ := l.deploys.List(labels.Everything())
	for _, d := range deps {
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			continue
		}
		if d.Generation < gens[d.Namespace+"/"+d.Name] || d.Status.ObservedGeneration < d.Generation || d.Status.Replicas != want {
			return fmt.Sprintf("deployment %s/%s is rolling out", d.Namespace, d.Name)
		}
		n := int32(0)
		for _, p := range running {
			if p.Namespace == d.Namespace && sel.Matches(labels.Set(p.Labels)) {
				n++
			}
		}
		if n != want {
			return fmt.Sprintf("deployment %s/%s has %d of %d pods running", d.Namespace, d.Name, n, want)
		}
	}
	svcs, _ := l.svcs.List(labels.Everything())
	for _, s := range svcs {
		if len(s.Spec.Selector) == 0 || s.Spec.ClusterIP == "" || s.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		n := 0
		for _, p := range running {
			if selectorMatches(s, p) {
				n++
			}
		}
		if got := l.applied[s.Namespace+"/"+s.Name]; got != n {
			return fmt.Sprintf("service %s/%s has %d of %d endpoints programmed", s.Namespace, s.Name, got, n)
		}
	}
	return ""
}

// Status returns the lab's topology now.
func (l *Lab) Status() Status {
	st := Status{Name: l.cfg.Name, Mode: l.cfg.Mode, Nodes: []NodeInfo{}, Pods: []PodInfo{}, Services: []ServiceInfo{}}
	if l.net == nil {
		return st
	}
	for _, nd := range l.net.nodes {
		if nd != nil {
			st.Nodes = append(st.Nodes, nd.info)
		}
	}
	if l.net.underlay != nil {
		st.UnderlayNetNS = l.net.underlay.name
	}
	if l.net.ext != nil {
		st.External = []ExternalInfo{{Name: "external", IP: ExternalIP, NetNS: l.net.ext.name, NetNSPath: l.net.ext.path, Ports: app.ExternalPorts}}
	}
	l.mu.Lock()
	for _, lp := range l.local {
		if lp.running {
			st.Pods = append(st.Pods, lp.info)
		}
	}
	l.mu.Unlock()
	sort.Slice(st.Pods, func(i, j int) bool {
		return st.Pods[i].Namespace+"/"+st.Pods[i].Name < st.Pods[j].Namespace+"/"+st.Pods[j].Name
	})
	if l.svcs != nil {
		svcs, _ := l.svcs.List(labels.Everything())
		st.Services = append(st.Services, serviceInfos(svcs)...)
	}
	return st
}

// Client is the lab's API client.
func (l *Lab) Client() kubernetes.Interface { return l.client }

// Namespace is the first app's main namespace ("" without an app):
// sock-shop for the sock-shop app.
func (l *Lab) Namespace() string {
	if len(l.apps) == 0 {
		return ""
	}
	return l.apps[0].Namespace
}

// Namespaces are every namespace the lab's apps created.
func (l *Lab) Namespaces() []string {
	var out []string
	for _, a := range l.apps {
		for _, ns := range a.AllNamespaces() {
			out = append(out, ns.Name)
		}
	}
	return out
}

// Apps are the applications the lab runs.
func (l *Lab) Apps() []app.App { return l.apps }

func (l *Lab) saveState(phase string) error {
	st := State{Name: l.cfg.Name, PID: os.Getpid(), Kubeconfig: l.cfg.Kubeconfig, App: l.cfg.App,
		Namespace: l.Namespace(), Namespaces: l.Namespaces(), Phase: phase, Status: l.Status()}
	return writeState(l.cfg.StateDir, st)
}

func (l *Lab) stateLoop() {
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-l.stateKick:
		}
		time.Sleep(200 * time.Millisecond)
		phase := "ready"
		if l.notReady(nil) != "" {
			phase = "starting"
		}
		if err := l.saveState(phase); err != nil {
			l.log.Info("writing lab state failed", "err", err)
		}
	}
}

// Down stops following the API server, removes the API objects the lab
// registered, stops its servers and deletes all its namespaces (and with
// them every interface and iptables rule). It is safe to call twice.
func (l *Lab) Down() error {
	l.downOnce.Do(func() {
		t0 := time.Now()
		l.cancel()
		l.wg.Wait()
		t1 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), namespaceGoneTimeout+20*time.Second)
		defer cancel()
		var errs []error
		if l.client != nil {
			if err := deleteAPIObjects(ctx, l.client, l.cfg.Name, l.Namespaces(), l.cfg.WaitNamespacesGone); err != nil {
				errs = append(errs, fmt.Errorf("API cleanup: %w", err))
			}
		}
		t2 := time.Now()
		l.mu.Lock()
		for _, lp := range l.local {
			_ = lp.srv.Close()
		}
		l.local = map[string]*localPod{}
		l.mu.Unlock()
		_ = l.extSrv.Close()
		l.net.close()
		t3 := time.Now()
		if err := removeAll(l.cfg.Name); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(l.cfg.StateDir); err != nil {
			errs = append(errs, err)
		}
		l.log.Info("lab down", "lab", l.cfg.Name, "stop", t1.Sub(t0).Round(time.Millisecond), "api", t2.Sub(t1).Round(time.Millisecond),
			"servers", t3.Sub(t2).Round(time.Millisecond), "namespaces", time.Since(t3).Round(time.Millisecond))
		l.downErr = errors.Join(errs...)
	})
	return l.downErr
}

// Remove tears down the lab called name from another process, also after a
// crash or a half-finished up: it stops the process recorded in its state
// (SIGTERM, then SIGKILL after grace), removes its API objects if the
// recorded kubeconfig still reaches an API server, and deletes every
// namespace with the lab's prefix.
func Remove(name, stateDir string, grace time.Duration) error {
	if stateDir == "" {
		stateDir = StateDir(name)
	}
	st, err := ReadState(stateDir)
	if err != nil && !errors.Is(err, ErrNoLab) {
		return err
	}
	if st.PID > 0 && st.PID != os.Getpid() && processAlive(st.PID) {
		_ = syscall.Kill(st.PID, syscall.SIGTERM)
		deadline := time.Now().Add(grace)
		for processAlive(st.PID) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if processAlive(st.PID) {
			_ = syscall.Kill(st.PID, syscall.SIGKILL)
			for i := 0; processAlive(st.PID) && i < 100; i++ {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	var errs []error
	if st.Kubeconfig != "" {
		if rc, err := clientcmd.BuildConfigFromFlags("", st.Kubeconfig); err == nil {
			rc.Timeout = 5 * time.Second
			rc.QPS, rc.Burst = 500, 1000
			if c, err := kubernetes.NewForConfig(rc); err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), namespaceGoneTimeout+20*time.Second)
				namespaces := st.Namespaces
				if len(namespaces) == 0 && st.Namespace != "" {
					namespaces = []string{st.Namespace}
				}
				if _, err := c.Discovery().ServerVersion(); err == nil {
					if err := deleteAPIObjects(ctx, c, name, namespaces, true); err != nil {
						errs = append(errs, fmt.Errorf("API cleanup: %w", err))
					}
				}
				cancel()
			}
		}
	}
	if err := removeAll(name); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(stateDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Leftovers lists the named namespaces of lab name that still exist.
func Leftovers(name string) ([]string, error) { return netns.List(Prefix(name)) }

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	// A zombie is not alive for our purposes.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

type unixName struct{}

func (unixName) kernel() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}
