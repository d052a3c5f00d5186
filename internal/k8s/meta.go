package k8s

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

func metaOf(obj any) (metav1.Object, bool) {
	m, ok := obj.(metav1.Object)
	return m, ok
}
