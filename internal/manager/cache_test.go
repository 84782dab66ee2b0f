package manager

import (
	"context"
	"strings"
	"testing"

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
