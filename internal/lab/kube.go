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
	"sort"
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
			ObjectMeta: metav1.ObjectMeta{Name: nd.info.Name, Labels: map[string]string{
				"kubernetes.io/hostname": nd.info.Name, "kubernetes.io/os": "linux",
				"kubernetes.io/arch": runtime.GOARCH, LabelLab: lab,
			}},
			Spec: corev1.NodeSpec{PodCIDR: nd.info.PodCIDR, PodCIDRs: []string{nd.info.PodCIDR}},
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

// deployApp creates the app's namespace, Deployments and Services.
func deployApp(ctx context.Context, c kubernetes.Interface, a app.App, replicas int32, lab string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: a.Namespace, Labels: map[string]string{LabelLab: lab}}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("namespace %s: %w", a.Namespace, err)
	}
	for _, comp := range a.Components {
		lbl := map[string]string{"app": comp.Name, "name": comp.Name}
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: comp.Name, Namespace: a.Namespace, Labels: map[string]string{"app": comp.Name, LabelLab: lab}},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: lbl},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: lbl},
					Spec: corev1.PodSpec{
						TerminationGracePeriodSeconds: new(int64),
						Containers: []corev1.Container{{
							Name: comp.Name, Image: comp.Image,
							Ports: []corev1.ContainerPort{{ContainerPort: comp.Port, Protocol: corev1.ProtocolTCP}},
							ReadinessProbe: &corev1.Probe{
								ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(comp.Port)}},
								PeriodSeconds: 10,
							},
						}},
					},
				},
			},
		}
		// A deployment still being deleted by a previous lab's down is
		// waited for, not mistaken for ours.
		err := retry(ctx, time.Minute, func() error {
			_, err := c.AppsV1().Deployments(a.Namespace).Create(ctx, d, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				old, gerr := c.AppsV1().Deployments(a.Namespace).Get(ctx, d.Name, metav1.GetOptions{})
				if gerr == nil && old.DeletionTimestamp == nil {
					return nil
				}
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("deployment %s: %w", comp.Name, err)
		}
		if comp.Service == "" {
			continue
		}
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: comp.Name, Namespace: a.Namespace, Labels: map[string]string{"app": comp.Name, LabelLab: lab}},
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
		if _, err := c.CoreV1().Services(a.Namespace).Create(ctx, svc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("service %s: %w", comp.Name, err)
		}
	}
	return nil
}

// deleteAPIObjects removes what the lab registered: the app namespace's
// deployments, replica sets, services and pods (pods with grace period 0:
// there is no kubelet left to confirm them), every pod bound to a lab node,
// and the Nodes. The namespace itself stays, so a next `up` can reuse it.
func deleteAPIObjects(ctx context.Context, c kubernetes.Interface, lab, appNS string) error {
	orphan := metav1.DeletePropagationOrphan
	var firstErr error
	note := func(err error) {
		if err != nil && !apierrors.IsNotFound(err) && firstErr == nil {
			firstErr = err
		}
	}
	if appNS != "" {
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
	return firstErr
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

func tcpPorts(pod *corev1.Pod) []int32 {
	var ports []int32
	for _, ctr := range pod.Spec.Containers {
		for _, p := range ctr.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				ports = append(ports, p.ContainerPort)
			}
		}
	}
	return ports
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
