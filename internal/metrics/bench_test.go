package metrics

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1 "canopy.dev/canopy/api/v1alpha1"
)

// listReader serves fixed lists, as the informer cache serves them from memory (the fake
// client would measure its own JSON round trips instead).
type listReader struct {
	client.Reader
	canaries []meshv1.Canary
}

func (r listReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	switch l := list.(type) {
	case *meshv1.CanaryList:
		l.Items = r.canaries
	case *meshv1.MeshPolicyList:
		l.Items = nil
	}
	return nil
}

// BenchmarkStateCollect is one scrape's work for 1000 and 10,000 Canaries with two checks
// each (about 20 series a Canary).
func BenchmarkStateCollect(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("canaries=%d", n), func(b *testing.B) { benchmarkStateCollect(b, n) })
	}
}

func benchmarkStateCollect(b *testing.B, n int) {
	items := make([]meshv1.Canary, n)
	now := metav1.NewTime(time.Now())
	for i := range items {
		items[i] = meshv1.Canary{
			ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("app-%d", i)},
			Spec:       meshv1.CanarySpec{TargetRef: meshv1.TargetRef{Name: fmt.Sprintf("app-%d", i)}},
			Status: meshv1.CanaryStatus{Phase: meshv1.PhaseProgressing, CanaryWeight: 20, RolloutStarted: &now, LastTransitionTime: &now,
				Checks: []meshv1.CheckStatus{{Name: "request-success-rate", Value: "99.9"}, {Name: "request-duration", Value: "212"}}},
		}
	}
	s := &StateCollector{Reader: listReader{canaries: items}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(s)
	b.ReportAllocs()
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil || len(mfs) == 0 {
			b.Fatal(err)
		}
	}
}
