package k8s

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/palisade-dev/palisade/internal/inventory"
)

// BenchmarkInitialSync10k measures how long a new connector takes to bring
// 10,000 pods from the real API server into the inventory (list, convert,
// index), the cost a server restart or a new cluster pays.
func BenchmarkInitialSync10k(b *testing.B) {
	const n = 10000
	ctx := context.Background()
	ns := "sync-bench"
	cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	for round := 0; ; round++ {
		existing, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if len(existing.Items) >= n {
			break
		}
		if round == 5 {
			b.Fatalf("only %d of %d fixture pods created", len(existing.Items), n)
		}
		have := map[string]bool{}
		for _, p := range existing.Items {
			have[p.Name] = true
		}
		createPods(ns, n, have)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		inv, _ := inventory.Open(nil)
		cctx, cancel := context.WithCancel(ctx)
		conn := New(fmt.Sprintf("bench%d", i), kubeCfg, inv)
		start := time.Now()
		done := make(chan struct{})
		go func() { conn.Run(cctx); close(done) }()
		for conn.Status().State != StateSynced {
			time.Sleep(time.Millisecond)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/sync")
		if got := inv.Len(); got < n {
			b.Fatalf("synced %d workloads, want ≥ %d", got, n)
		}
		cancel()
		<-done
		inv.Close()
	}
}

// createPods creates the pods p-00000..p-<n-1> missing from have.
func createPods(ns string, n int, have map[string]bool) {
	ctx := context.Background()
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				p := &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%05d", i), Labels: map[string]string{"app": fmt.Sprintf("app-%d", i%50)}},
					Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "registry.local/app:1"}}},
				}
				cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}) //nolint:errcheck // the caller counts with List
			}
		}()
	}
	for i := 0; i < n; i++ {
		if !have[fmt.Sprintf("p-%05d", i)] {
			work <- i
		}
	}
	close(work)
	wg.Wait()
}
