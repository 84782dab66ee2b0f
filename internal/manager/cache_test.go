package manager

import (
	"context"
	"maps"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
)

func TestParseShardSelector(t *testing.T) {
	for _, tt := range []struct {
		selector string
		selects  map[string]string
		skips    map[string]string
	}{
		{"", map[string]string{"canopy.dev/shard": "a"}, nil},
		{"canopy.dev/shard=a", map[string]string{"canopy.dev/shard": "a"}, map[string]string{"canopy.dev/shard": "b"}},
		{"!canopy.dev/shard", map[string]string{"app": "x"}, map[string]string{"canopy.dev/shard": "a"}},
		{"canopy.dev/shard in (b,c)", map[string]string{"canopy.dev/shard": "c"}, map[string]string{}},
	} {
		sel, err := ParseShardSelector(tt.selector)
		if err != nil {
			t.Fatalf("%q: %v", tt.selector, err)
		}
		if !sel.Matches(labels.Set(tt.selects)) {
			t.Errorf("%q does not select %v", tt.selector, tt.selects)
		}
		if tt.skips != nil && sel.Matches(labels.Set(tt.skips)) {
			t.Errorf("%q selects %v", tt.selector, tt.skips)
		}
	}
}

// Bad shard flags are refused before canopy contacts the cluster, naming the flag.
func TestRunRefusesBadShardFlags(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"malformed selector", Options{ShardSelector: "canopy.dev/shard in (a"}, `--shard-selector "canopy.dev/shard in (a"`},
		{"shared lease", Options{ShardSelector: "canopy.dev/shard=a", LeaderElect: true, LeaderElectionID: DefaultLeaderElectionID}, "--leader-election-id: a shard"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Run(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run() = %v, want an error with %q", err, tt.want)
			}
		})
	}
}

// The cache drops what canopy never reads, and keeps what it does.
func TestCacheTransformStripsWhatCanopyNeverReads(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{
		Name:          "reviews",
		Annotations:   map[string]string{corev1.LastAppliedConfigAnnotation: `{"kind":"Deployment"}`, "team": "books"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	obj, err := cacheTransform(d)
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*appsv1.Deployment)
	if got.ManagedFields != nil {
		t.Errorf("managedFields kept: %v", got.ManagedFields)
	}
	if want := map[string]string{"team": "books"}; !maps.Equal(got.Annotations, want) {
		t.Errorf("annotations %v, want %v", got.Annotations, want)
	}
	obj, err = cacheTransform(&corev1.ConfigMap{Data: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if cm := obj.(*corev1.ConfigMap); cm.Data != nil {
		t.Errorf("a ConfigMap's data kept: %v", cm.Data)
	}
}
