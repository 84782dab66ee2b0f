package manager

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCgroupMemoryLimit(t *testing.T) {
	write := func(t *testing.T, root, rel, content string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		self  string
		want  int64
	}{
		{"v2 in a container", map[string]string{"memory.max": "536870912\n"}, "0::/\n", 512 << 20},
		{"v2, the process's own cgroup", map[string]string{"kubepods/pod1/memory.max": "1073741824\n"}, "0::/kubepods/pod1\n", 1 << 30},
		{"v2 without a limit", map[string]string{"memory.max": "max\n"}, "0::/\n", 0},
		{"v1", map[string]string{"memory/memory.limit_in_bytes": "268435456\n"}, "4:memory:/\n1:cpu,cpuacct:/\n", 256 << 20},
		{"v1 nested", map[string]string{"memory/docker/abc/memory.limit_in_bytes": "268435456\n"}, "5:cpuacct,memory:/docker/abc\n", 256 << 20},
		{"v1 without a limit", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, "4:memory:/\n", 0},
		{"no cgroup files", nil, "0::/\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, content := range tc.files {
				write(t, root, rel, content)
			}
			if got := cgroupMemoryLimit(root, tc.self); got != tc.want {
				t.Fatalf("limit %d, want %d", got, tc.want)
			}
		})
	}
}

func TestApplyMemoryLimitRefusesABadRatio(t *testing.T) {
	for _, r := range []float64{-0.1, 1.5} {
		if _, err := ApplyMemoryLimit(r); err == nil {
			t.Errorf("ratio %v accepted", r)
		}
	}
}
