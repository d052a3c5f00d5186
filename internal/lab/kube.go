package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/palisade-dev/palisade/internal/lab/app"
	"github.com/palisade-dev/palisade/internal/lab/proxy"
)

// KubeletVersion is what lab nodes report as their kubelet.
const KubeletVersion = "v1.37.2"

// registerNodes creates (or replaces) one Node per lab node and reports it
// Ready, with its InternalIP and podCIDR.
func registerNodes(ctx context.Context, c kubernetes.Interface, lab string, nodes []*node) error {
	var uname unixName
	kernel := uname.kernel()
	for _, nd := range nodes {
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: nd.info.Name, Labels: nodeLabels(lab, nd.info.Name)},
			Spec:       corev1.NodeSpec{PodCIDR: nd.info.PodCIDR, PodCIDRs: []string{nd.info.PodCIDR}},
		}
		_ = c.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
		created, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("register node %s: %w", n.Name, err)
		}
		now := metav1.Now()
		cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason string) corev1.NodeCondition {
			return corev1.NodeCondition{Type: t, Status: s, Reason: reason, LastHeartbeatTime: now, LastTransitionTime: now}
		}
		created.Status = corev1.NodeStatus{
			Phase: corev1.NodeRunning,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: nd.info.IP},
				{Type: corev1.NodeHostName, Address: nd.info.Name},
			},
			Conditions: []corev1.NodeCondition{
				cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady"),
				cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory"),
				cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure"),
				cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID"),
				cond(corev1.NodeNetworkUnavailable, corev1.ConditionFalse, "RouteCreated"),
			},
			Capacity: corev1.ResourceList{
				corev1.ResourcePods: resource.MustParse("250"), corev1.ResourceCPU: resource.MustParse("2"),
				corev1.ResourceMemory: resource.MustParse("4Gi"),
			},
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion: KubeletVersion, KernelVersion: kernel, OperatingSystem: "linux",
				Architecture: runtime.GOARCH, OSImage: "Palisade lab", ContainerRuntimeVersion: "palisade-lab://1",
			},
		}
		created.Status.Allocatable = created.Status.Capacity
		if _, err := c.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("node %s status: %w", n.Name, err)
		}
	}
	return nil
}

// nodeLabels are the labels of lab node name; the lab's scheduler matches
// pods' nodeSelectors against them.
func nodeLabels(lab, name string) map[string]string {
	return map[string]string{
		"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
		"kubernetes.io/arch": runtime.GOARCH, LabelLab: lab,
	}
}

// deployApp creates the app's namespaces, Deployments and Services. With
// a.Spread, component i is pinned to nodes[i mod len(nodes)].
func deployApp(ctx context.Context, c kubernetes.Interface, a app.App, replicas int32, lab string, nodes []string) error {
	for _, ns := range a.AllNamespaces() {
		if err := ensureNamespace(ctx, c, ns, lab); err != nil {
			return err
		}
	}
	for i, comp := range a.Components {
		ns := a.NamespaceOf(comp)
		lbl := comp.PodLabels()
		spec := corev1.PodSpec{TerminationGracePeriodSeconds: new(int64)}
		if len(comp.Containers) > 0 {
			for _, ct := range comp.Containers {
				ctr := corev1.Container{Name: ct.Name, Image: comp.Image}
				for _, p := range ct.Ports {
					ctr.Ports = append(ctr.Ports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.Port, Protocol: corev1.Protocol(p.Protocol)})
				}
				spec.Containers = append(spec.Containers, ctr)
			}
		} else {
			spec.Containers = []corev1.Container{{
				Name: comp.Name, Image: comp.Image,
				Ports: []corev1.ContainerPort{{ContainerPort: comp.Port, Protocol: corev1.ProtocolTCP}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(comp.Port)}},
					PeriodSeconds: 10,
				},
			}}
		}
		if a.Spread && len(nodes) > 0 {
			spec.NodeSelector = map[string]string{"kubernetes.io/hostname": nodes[i%len(nodes)]}
		}
		depLabels := map[string]string{LabelLab: lab}
		for k, v := range lbl {
			depLabels[k] = v
		}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: comp.Name, Namespace: ns, Labels: depLabels},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: lbl},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: lbl}, Spec: spec},
			},
		}
		// A deployment still being deleted by a previous lab's down is
		// waited for, not mistaken for ours.
		err := retry(ctx, time.Minute, func() error {
			_, err := c.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				old, gerr := c.AppsV1().Deployments(ns).Get(ctx, d.Name, metav1.GetOptions{})
				if gerr == nil && old.DeletionTimestamp == nil {
					return nil
				}
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("deployment %s/%s: %w", ns, comp.Name, err)
		}
		if comp.Service == "" {
			continue
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: comp.Name, Namespace: ns, Labels: map[string]string{"app": comp.Name, LabelLab: lab}},
			Spec: corev1.ServiceSpec{
				Selector: lbl,
				Ports:    []corev1.ServicePort{{Name: "tcp", Port: comp.ServicePort, TargetPort: intstr.FromInt32(comp.Port), Protocol: corev1.ProtocolTCP}},
				Type:     corev1.ServiceTypeClusterIP,
			},
		}
		switch comp.Service {
		case "NodePort":
			svc.Spec.Type = corev1.ServiceTypeNodePort
		case "Headless":
			svc.Spec.ClusterIP = corev1.ClusterIPNone
		}
		if _, err := c.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("service %s/%s: %w", ns, comp.Name, err)
		}
	}
	return nil
}

// ensureNamespace creates ns with its labels and the lab's, or adds the
// labels to an existing one. A namespace still being deleted (a previous
// lab's down) is waited for.
func ensureNamespace(ctx context.Context, c kubernetes.Interface, ns app.Namespace, lab string) error {
	want := map[string]string{LabelLab: lab}
	for k, v := range ns.Labels {
		want[k] = v
	}
	err := retry(ctx, namespaceGoneTimeout, func() error {
		old, err := c.CoreV1().Namespaces().Get(ctx, ns.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			_, err = c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name, Labels: want}}, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		if old.DeletionTimestamp != nil {
			return errors.New("still being deleted")
		}
		changed := false
		for k, v := range want {
			if old.Labels[k] != v {
				if old.Labels == nil {
					old.Labels = map[string]string{}
				}
				old.Labels[k], changed = v, true
			}
		}
		if changed {
			_, err = c.CoreV1().Namespaces().Update(ctx, old, metav1.UpdateOptions{})
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns.Name, err)
	}
	return nil
}

// namespaceGoneTimeout bounds how long down waits for the namespace
// controller to finish deleting the apps' namespaces (and up for a previous
// lab's to go).
const namespaceGoneTimeout = time.Minute

// deleteAPIObjects removes what the lab registered: the app namespaces'
// deployments, replica sets, services and pods (pods with grace period 0:
// there is no kubelet left to confirm them), every pod bound to a lab node,
// the Nodes, and the app namespaces the lab labelled as its own — with
// whatever else was created in them (NetworkPolicies, ...). With wait, it
// waits until the namespace controller has removed those namespaces, which
// takes at least 5 s (the controller's fixed delay before it acts on a
// deletion).
func deleteAPIObjects(ctx context.Context, c kubernetes.Interface, lab string, namespaces []string, wait bool) error {
	orphan := metav1.DeletePropagationOrphan
	var firstErr error
	note := func(err error) {
		if err != nil && !apierrors.IsNotFound(err) && firstErr == nil {
			firstErr = err
		}
	}
	for _, appNS := range namespaces {
		sel := metav1.ListOptions{LabelSelector: LabelLab + "=" + lab}
		note(c.AppsV1().Deployments(appNS).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &orphan}, sel))
		note(c.AppsV1().ReplicaSets(appNS).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &orphan}, metav1.ListOptions{}))
		if pods, err := c.CoreV1().Pods(appNS).List(ctx, metav1.ListOptions{}); err == nil {
			note(deletePods(ctx, c, pods.Items))
		}
		if svcs, err := c.CoreV1().Services(appNS).List(ctx, sel); err == nil {
			for _, s := range svcs.Items {
				note(c.CoreV1().Services(appNS).Delete(ctx, s.Name, metav1.DeleteOptions{}))
			}
		}
	}
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: LabelLab + "=" + lab})
	if err != nil {
		return err
	}
	for _, n := range nodes.Items {
		pods, err := c.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name})
		note(err)
		if err == nil {
			note(deletePods(ctx, c, pods.Items))
		}
		note(c.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{}))
	}
	var owned []string
	for _, name := range namespaces {
		ns, err := c.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			note(err)
			continue
		}
		if ns.Labels[LabelLab] == lab {
			owned = append(owned, name)
			note(c.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{}))
		}
	}
	if firstErr != nil || !wait {
		return firstErr
	}
	return waitNamespacesGone(ctx, c, owned)
}

// waitNamespacesGone waits until the namespaces no longer exist.
func waitNamespacesGone(ctx context.Context, c kubernetes.Interface, owned []string) error {
	var left []string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, namespaceGoneTimeout, true, func(ctx context.Context) (bool, error) {
		left = left[:0]
		for _, name := range owned {
			if _, err := c.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				left = append(left, name)
			}
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("namespaces %v still terminating (is the namespace controller running?): %w", left, err)
	}
	return nil
}

// deletePods deletes pods with grace period 0, several at a time.
func deletePods(ctx context.Context, c kubernetes.Interface, pods []corev1.Pod) error {
	zero := int64(0)
	errs := make([]error, len(pods))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, p := range pods {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := c.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			if err != nil && !apierrors.IsNotFound(err) {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// imageID is a stable stand-in for the digest a runtime would report.
func imageID(image string) string {
	sum := sha256.Sum256([]byte(image))
	repo := image
	if i := lastIndexAfterSlash(image, ':'); i >= 0 {
		repo = image[:i]
	}
	return repo + "@sha256:" + hex.EncodeToString(sum[:])
}

func lastIndexAfterSlash(s string, ch byte) int {
	for i := len(s) - 1; i >= 0 && s[i] != '/'; i-- {
		if s[i] == ch {
			return i
		}
	}
	return -1
}

// runningStatus is the status a kubelet reports for a started, ready pod.
func runningStatus(pod *corev1.Pod, nodeIP string, podIP netip.Addr) corev1.PodStatus {
	now := metav1.Now()
	start := now
	if pod.Status.StartTime != nil {
		start = *pod.Status.StartTime
	}
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	st := corev1.PodStatus{
		Phase:   corev1.PodRunning,
		HostIP:  nodeIP,
		HostIPs: []corev1.HostIP{{IP: nodeIP}},
		PodIP:   podIP.String(),
		PodIPs:  []corev1.PodIP{{IP: podIP.String()}},
		Conditions: []corev1.PodCondition{
			cond(corev1.PodReadyToStartContainers), cond(corev1.PodInitialized), cond(corev1.PodReady),
			cond(corev1.ContainersReady), cond(corev1.PodScheduled),
		},
		StartTime: &start,
		QOSClass:  corev1.PodQOSBestEffort,
	}
	started := true
	for _, ctr := range pod.Spec.Containers {
		sum := sha256.Sum256([]byte(string(pod.UID) + "/" + ctr.Name))
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: ctr.Name, Image: ctr.Image, ImageID: imageID(ctr.Image),
			ContainerID: "containerd://" + hex.EncodeToString(sum[:]),
			Ready:       true, Started: &started,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: start}},
		})
	}
	return st
}

func podRunningAs(pod *corev1.Pod, ip string) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP != ip {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func patchPodStatus(ctx context.Context, c kubernetes.Interface, pod *corev1.Pod, st corev1.PodStatus) error {
	body, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	_, err = c.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	return err
}

// containerPorts lists the pod's container ports of protocol proto (TCP
// when a port names none), each once.
func containerPorts(pod *corev1.Pod, proto corev1.Protocol) []int32 {
	var ports []int32
	for _, ctr := range pod.Spec.Containers {
		for _, p := range ctr.Ports {
			pp := p.Protocol
			if pp == "" {
				pp = corev1.ProtocolTCP
			}
			if pp == proto && !slices.Contains(ports, p.ContainerPort) {
				ports = append(ports, p.ContainerPort)
			}
		}
	}
	return ports
}

// deploymentOf names the Deployment that owns pod (through its
// ReplicaSet), else the pod's `app` label.
func deploymentOf(pod *corev1.Pod) string {
	if h := pod.Labels[appsv1.DefaultDeploymentUniqueLabelKey]; h != "" {
		for _, o := range pod.OwnerReferences {
			if o.Kind == "ReplicaSet" && strings.HasSuffix(o.Name, "-"+h) {
				return strings.TrimSuffix(o.Name, "-"+h)
			}
		}
	}
	return pod.Labels["app"]
}

// servicePorts turns Services and their EndpointSlices into the proxy's
// input: ready endpoints of every port of every service with a ClusterIP.
func servicePorts(svcs []*corev1.Service, slices cacheSlices) []proxy.ServicePort {
	var out []proxy.ServicePort
	for _, svc := range svcs {
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
			continue
		}
		sl := slices(svc.Namespace, svc.Name)
		for _, sp := range svc.Spec.Ports {
			p := proxy.ServicePort{
				Namespace: svc.Namespace, Name: svc.Name, PortName: sp.Name, ClusterIP: svc.Spec.ClusterIP,
				Port: sp.Port, NodePort: sp.NodePort, Protocol: string(sp.Protocol),
			}
			seen := map[string]bool{}
			for _, s := range sl {
				if s.AddressType != discoveryv1.AddressTypeIPv4 {
					continue
				}
				var port int32
				for _, pp := range s.Ports {
					name := ""
					if pp.Name != nil {
						name = *pp.Name
					}
					if name == sp.Name && pp.Port != nil {
						port = *pp.Port
					}
				}
				if port == 0 {
					continue
				}
				for _, ep := range s.Endpoints {
					if ep.Conditions.Ready != nil && !*ep.Conditions.Ready || len(ep.Addresses) == 0 || seen[ep.Addresses[0]] {
						continue
					}
					seen[ep.Addresses[0]] = true
					p.Endpoints = append(p.Endpoints, proxy.Endpoint{IP: ep.Addresses[0], Port: port})
				}
			}
			out = append(out, p)
		}
	}
	return out
}

type cacheSlices func(ns, svc string) []*discoveryv1.EndpointSlice

func serviceInfos(svcs []*corev1.Service) []ServiceInfo {
	var out []ServiceInfo
	for _, svc := range svcs {
		if svc.Namespace == "default" && svc.Name == "kubernetes" {
			continue
		}
		si := ServiceInfo{Namespace: svc.Namespace, Name: svc.Name, Type: string(svc.Spec.Type), ClusterIP: svc.Spec.ClusterIP}
		for _, p := range svc.Spec.Ports {
			si.Ports = append(si.Ports, ServicePortInfo{Name: p.Name, Port: p.Port, TargetPort: p.TargetPort.IntVal,
				NodePort: p.NodePort, Protocol: string(p.Protocol)})
		}
		out = append(out, si)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out
}

func selectorMatches(svc *corev1.Service, pod *corev1.Pod) bool {
	if len(svc.Spec.Selector) == 0 || svc.Namespace != pod.Namespace {
		return false
	}
	return labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels))
}

// waitCacheSync is cache.WaitForCacheSync with an error.
func waitCacheSync(ctx context.Context, synced ...cache.InformerSynced) error {
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return fmt.Errorf("API server informers did not sync: %w", ctx.Err())
	}
	return nil
}

// retry runs fn until it succeeds, ctx ends or d passes.
func retry(ctx context.Context, d time.Duration, fn func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
