package manager

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// A bad notifications config stops the operator before it starts, naming the flag, the file
// and the field.
func TestRunRefusesABadNotificationsConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notifications.yaml")
	if err := os.WriteFile(path, []byte("channels:\n- {name: ops, type: pager, url: 'https://x.example/secret'}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// No API server is reached: the config is checked first.
	err := Run(t.Context(), &rest.Config{Host: "http://127.0.0.1:1"}, Options{NotificationsConfig: path})
	if err == nil {
		t.Fatal("Run accepted a channel of type pager")
	}
	for _, want := range []string{"--notifications-config", path, `channels[0].type: "pager" is not one of slack, teams, webhook`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}

	err = Run(t.Context(), &rest.Config{Host: "http://127.0.0.1:1"}, Options{NotificationsConfig: filepath.Join(t.TempDir(), "missing.yaml")})
	if err == nil || !strings.Contains(err.Error(), "--notifications-config: reading the notifications config") {
		t.Fatalf("error %v, want one about reading the file", err)
	}
}
