// Package k8s is the Kubernetes connector: client-go informers on pods,
// services, endpointslices, nodes and namespaces feed inventory versions,
// one connector per cluster.
package k8s

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/palisade-dev/palisade/internal/inventory"
)

// State of a connector.
const (
	StateConnecting = "connecting" // before the first full sync
	StateSynced     = "synced"     // watching, inventory complete
	StateDegraded   = "degraded"   // the API server is unreachable or watches fail; retrying
)

// Status is what /api/v1/status reports for a connector.
type Status struct {
	Cluster  string    `json:"cluster"`
	Server   string    `json:"server"`
	State    string    `json:"state"`
	Error    string    `json:"error,omitempty"`
	Since    time.Time `json:"since"`
	LastSync time.Time `json:"lastSync,omitempty"`
}

// Connector mirrors one cluster into the inventory.
type Connector struct {
	cluster string
	cfg     *rest.Config
	inv     *inventory.Inventory

	mu     sync.Mutex
	status Status

	rs   cache.Indexer
	jobs cache.Indexer
	svcs cache.Indexer
	eps  cache.Indexer
	nss  cache.Indexer
	// podMu orders a pod's conversion and Apply with its namespace's: a pod
	// converted with its namespace's old labels is never applied after the
	// namespace handler applied it with the new ones. It also guards the
	// two maps below.
	podMu sync.Mutex
	// nsLabels are the labels each namespace's pods were last re-applied
	// with; nsMissing marks namespaces some pod was converted without (it
	// arrived before its namespace). A namespace event re-applies its pods
	// only when one of them is stale, so the initial sync converts each pod
	// once.
	nsLabels  map[string]map[string]string
	nsMissing map[string]bool
}

// New returns a connector for cluster; Run starts it.
func New(cluster string, cfg *rest.Config, inv *inventory.Inventory) *Connector {
	return &Connector{
		cluster: cluster, cfg: cfg, inv: inv,
		status: Status{Cluster: cluster, Server: cfg.Host, State: StateConnecting, Since: time.Now()},
	}
}

// Status returns the connector's current state.
func (c *Connector) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Connector) setState(state string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if c.status.State != state {
		slog.Info("connector state", "cluster", c.cluster, "state", state, "err", msg)
		c.status.Since = time.Now()
	}
	c.status.State, c.status.Error = state, msg
	if state == StateSynced {
		c.status.LastSync = time.Now()
	}
}

// Run watches the cluster until ctx ends. It never returns early on API
// errors: client-go relists after a disconnect, and the connector reports
// itself degraded meanwhile.
func (c *Connector) Run(ctx context.Context) error {
	cfg := rest.CopyConfig(c.cfg)
	cfg.Timeout = 0 // watches are long
	cfg.QPS, cfg.Burst = 200, 400
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("connector %s: %w", c.cluster, err)
	}
	f := informers.NewSharedInformerFactory(client, 0)
	pods := f.Core().V1().Pods().Informer()
	svcs := f.Core().V1().Services().Informer()
	eps := f.Discovery().V1().EndpointSlices().Informer()
	nodes := f.Core().V1().Nodes().Informer()
	nss := f.Core().V1().Namespaces().Informer()
	rs := f.Apps().V1().ReplicaSets().Informer()
	jobs := f.Batch().V1().Jobs().Informer()
	c.rs, c.jobs, c.svcs, c.eps, c.nss = rs.GetIndexer(), jobs.GetIndexer(), svcs.GetIndexer(), eps.GetIndexer(), nss.GetIndexer()
	eps.AddIndexers(cache.Indexers{"service": func(obj any) ([]string, error) {
		s := obj.(*discoveryv1.EndpointSlice)
		return []string{s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName]}, nil
	}})

	watchErr := func(_ *cache.Reflector, err error) {
		c.setState(StateDegraded, err)
	}
	for _, inf := range []cache.SharedIndexInformer{pods, svcs, eps, nodes, nss, rs, jobs} {
		if err := inf.SetWatchErrorHandler(watchErr); err != nil {
			return err
		}
	}

	// Handler registrations report synced once the initial list has been
	// delivered to our handlers (an informer's own HasSynced only covers its
	// cache), which is what "the inventory is complete" means.
	var synced []cache.InformerSynced
	register := func(inf cache.SharedIndexInformer, h cache.ResourceEventHandler) error {
		reg, err := inf.AddEventHandler(h)
		if err != nil {
			return err
		}
		synced = append(synced, reg.HasSynced)
		return nil
	}
	for _, r := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{pods, c.handler(func(obj any) { c.applyPod(obj.(*corev1.Pod)) },
			func(obj any) { c.deleted(inventory.KindPod, obj) })},
		{svcs, c.handler(func(obj any) { c.applyService(obj.(*corev1.Service)) },
			func(obj any) { c.deleted(inventory.KindService, obj) })},
		{eps, c.handler(func(obj any) { c.sliceChanged(obj) }, func(obj any) { c.sliceChanged(obj) })},
		{nodes, c.handler(func(obj any) { c.inv.Apply(nodeWorkload(c.cluster, obj.(*corev1.Node))) },
			func(obj any) { c.deleted(inventory.KindNode, obj) })},
		{nss, c.handler(func(obj any) { c.namespaceChanged(pods.GetIndexer(), obj.(*corev1.Namespace)) },
			func(obj any) { c.deleted(inventory.KindNamespace, obj) })},
		{rs, cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) { c.ownerAppeared(pods.GetIndexer(), obj) }}},
		{jobs, cache.ResourceEventHandlerFuncs{}},
	} {
		if err := register(r.inf, r.h); err != nil {
			return err
		}
	}

	f.Start(ctx.Done())
	go c.health(ctx, client)
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		f.Shutdown()
		return ctx.Err()
	}
	// Whatever the inventory holds for this cluster but the API no longer
	// has was deleted while Palisade was not watching.
	c.reconcile(inventory.KindPod, pods.GetIndexer())
	c.reconcile(inventory.KindService, svcs.GetIndexer())
	c.reconcile(inventory.KindNode, nodes.GetIndexer())
	c.reconcile(inventory.KindNamespace, nss.GetIndexer())
	c.setState(StateSynced, nil)
	<-ctx.Done()
	f.Shutdown()
	return nil
}

func (c *Connector) handler(upsert func(any), del func(any)) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    upsert,
		UpdateFunc: func(_, obj any) { upsert(obj) },
		DeleteFunc: del,
	}
}

func (c *Connector) deleted(kind inventory.Kind, obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, ok := metaOf(obj)
	if !ok {
		return
	}
	c.inv.Delete(ID(c.cluster, kind, m.GetNamespace(), m.GetName()), time.Now())
}

func (c *Connector) applyService(s *corev1.Service) {
	objs, _ := c.eps.ByIndex("service", s.Namespace+"/"+s.Name)
	slices := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		slices = append(slices, o.(*discoveryv1.EndpointSlice))
	}
	c.inv.Apply(serviceWorkload(c.cluster, s, slices))
}

func (c *Connector) sliceChanged(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	if o, exists, _ := c.svcs.GetByKey(sl.Namespace + "/" + sl.Labels[discoveryv1.LabelServiceName]); exists {
		c.applyService(o.(*corev1.Service))
	}
}

// namespaceChanged records a namespace and re-applies its pods, which carry
// the namespace's labels (a pod may also have arrived before its namespace).
// Pods whose version does not change are ignored by the inventory.
func (c *Connector) namespaceChanged(pods cache.Indexer, ns *corev1.Namespace) {
	c.inv.Apply(namespaceWorkload(c.cluster, ns))
	c.podMu.Lock()
	defer c.podMu.Unlock()
	if c.nsLabels == nil {
		c.nsLabels, c.nsMissing = map[string]map[string]string{}, map[string]bool{}
	}
	old, seen := c.nsLabels[ns.Name]
	if !c.nsMissing[ns.Name] && (!seen || maps.Equal(old, ns.Labels)) {
		// Every pod converted so far read these labels from the cache.
		c.nsLabels[ns.Name] = ns.Labels
		return
	}
	c.nsLabels[ns.Name] = ns.Labels
	delete(c.nsMissing, ns.Name)
	objs, _ := pods.ByIndex(cache.NamespaceIndex, ns.Name)
	for _, o := range objs {
		c.inv.Apply(podWorkload(c.cluster, o.(*corev1.Pod), c))
	}
}

func (c *Connector) applyPod(p *corev1.Pod) {
	c.podMu.Lock()
	defer c.podMu.Unlock()
	c.inv.Apply(podWorkload(c.cluster, p, c))
}

// ownerAppeared re-resolves pods whose ReplicaSet arrived after them.
func (c *Connector) ownerAppeared(pods cache.Indexer, obj any) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	objs, _ := pods.ByIndex(cache.NamespaceIndex, rs.Namespace)
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if ref := controllerOf(p.OwnerReferences); ref != nil && ref.UID == rs.UID {
			c.applyPod(p)
		}
	}
}

func (c *Connector) reconcile(kind inventory.Kind, idx cache.Indexer) {
	present := map[string]bool{}
	for _, o := range idx.List() {
		if m, ok := metaOf(o); ok {
			present[ID(c.cluster, kind, m.GetNamespace(), m.GetName())] = true
		}
	}
	now := time.Now()
	for _, id := range c.inv.Alive(c.cluster, kind) {
		if !present[id] {
			c.inv.Delete(id, now)
		}
	}
}

// health probes the API server so an outage that breaks no watch yet (or
// its end) is reported promptly.
func (c *Connector) health(ctx context.Context, client kubernetes.Interface) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(pctx)
		cancel()
		st := c.Status().State
		switch {
		case err != nil && ctx.Err() == nil:
			c.setState(StateDegraded, err)
		case err == nil && st == StateDegraded:
			// Back: client-go relists by itself; count it as synced once the
			// API answers again.
			c.setState(StateSynced, nil)
		}
	}
}

func (c *Connector) replicaSet(ns, name string) (*appsv1.ReplicaSet, bool) {
	o, ok, _ := c.rs.GetByKey(ns + "/" + name)
	if !ok {
		return nil, false
	}
	return o.(*appsv1.ReplicaSet), true
}

// namespaceLabels returns a namespace's labels from the cache; the caller
// holds podMu. A namespace not cached yet is remembered, so its arrival
// re-applies the pods converted without its labels.
func (c *Connector) namespaceLabels(ns string) map[string]string {
	if c.nss == nil {
		return nil
	}
	o, ok, _ := c.nss.GetByKey(ns)
	if !ok {
		if c.nsMissing == nil {
			c.nsLabels, c.nsMissing = map[string]map[string]string{}, map[string]bool{}
		}
		c.nsMissing[ns] = true
		return nil
	}
	return o.(*corev1.Namespace).Labels
}

func (c *Connector) job(ns, name string) (*batchv1.Job, bool) {
	o, ok, _ := c.jobs.GetByKey(ns + "/" + name)
	if !ok {
		return nil, false
	}
	return o.(*batchv1.Job), true
}
