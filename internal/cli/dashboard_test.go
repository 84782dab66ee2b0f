package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The dashboard's flags are checked before anything listens, each error naming its flag.
func TestDashboardRefusesBadFlags(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	// A cluster nothing answers at: the flags are refused before it is reached.
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--address", "3200"}, `--address "3200"`},
		{[]string{"--address", "0.0.0.0:3200"}, `--address "0.0.0.0:3200": give the one address browsers will use`},
		{[]string{"--address", ":3200"}, `--address ":3200": give the one address`},
		{[]string{"--history", "0"}, "--history 0: want a positive number"},
		{[]string{"--prometheus-url", "127.0.0.1:9090"}, `--prometheus-url "127.0.0.1:9090": want an http(s) URL`},
		{[]string{"extra"}, "unknown command"},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"dashboard", "--kubeconfig", kubeconfig}, tc.args...)
		code := run(t.Context(), args, IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}, defaultSettings())
		if code != ExitError || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", tc.args, code, errOut.String(), ExitError, tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("%v: printed %q: nothing should listen", tc.args, out.String())
		}
	}
}
