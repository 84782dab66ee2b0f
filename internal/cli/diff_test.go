package cli

import (
	"testing"

	"sigs.k8s.io/yaml"
)

func obj(t *testing.T, s string) map[string]any {
	t.Helper()
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDiffComparesOnlyTheFieldsCanopySets(t *testing.T) {
	desired := `
apiVersion: v1
kind: Service
metadata: {name: reviews, labels: {app.kubernetes.io/managed-by: canopy}}
spec:
  selector: {app: reviews-primary}
  ports:
  - {name: http, port: 9080, targetPort: 9080, protocol: TCP}
`
	tests := []struct {
		name string
		live string
		want string
	}{{
		name: "defaults, other managers' fields and entries are not canopy's",
		live: `
apiVersion: v1
kind: Service
metadata:
  name: reviews
  uid: 1234
  resourceVersion: "7"
  labels: {app.kubernetes.io/managed-by: canopy, team: books}
  annotations: {mesh.canopy.dev/applied-hash: abc}
spec:
  clusterIP: 10.0.0.1
  type: ClusterIP
  selector: {app: reviews-primary}
  ports:
  - {name: metrics, port: 9090, targetPort: 9090, protocol: TCP}
  - {name: http, port: 9080, targetPort: 9080, protocol: TCP}
`,
	}, {
		name: "a field canopy sets, changed by hand",
		live: `
apiVersion: v1
kind: Service
metadata: {name: reviews, labels: {app.kubernetes.io/managed-by: canopy}}
spec:
  selector: {app: reviews}
  ports:
  - {name: http, port: 9080, targetPort: 9080, protocol: TCP}
`,
		want: `--- live
+++ canopy
@@ -11,4 +11,4 @@
     protocol: TCP
     targetPort: 9080
   selector:
-    app: reviews
+    app: reviews-primary
`,
	}, {
		name: "a port canopy routes, gone",
		live: `
apiVersion: v1
kind: Service
metadata: {name: reviews, labels: {app.kubernetes.io/managed-by: canopy}}
spec:
  selector: {app: reviews-primary}
  ports:
  - {name: grpc, port: 9081, targetPort: 9081, protocol: TCP}
`,
		want: `--- live
+++ canopy
@@ -5,6 +5,10 @@
     app.kubernetes.io/managed-by: canopy
   name: reviews
 spec:
-  ports: []
+  ports:
+  - name: http
+    port: 9080
+    protocol: TCP
+    targetPort: 9080
   selector:
     app: reviews-primary
`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := diffFields(obj(t, tt.live), obj(t, desired))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("diff:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// Istio's lists are atomic: a route another hand added to a generated VirtualService is a
// difference (canopy's next apply removes it).
func TestDiffShowsEntriesAddedToIstioLists(t *testing.T) {
	desired := obj(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews-primary}
      weight: 100
`)
	live := obj(t, `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: debug
    route:
    - destination: {host: reviews-canary}
  - route:
    - destination: {host: reviews-primary}
      weight: 100
`)
	got, err := diffFields(live, desired)
	if err != nil {
		t.Fatal(err)
	}
	want := `--- live
+++ canopy
@@ -8,8 +8,5 @@
   http:
   - route:
     - destination:
-        host: reviews-canary
-  - route:
-    - destination:
         host: reviews-primary
       weight: 100
`
	if got != want {
		t.Errorf("diff:\n%s\nwant:\n%s", got, want)
	}
}
