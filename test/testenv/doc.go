// Package testenv starts the clusters canopy's tests run against, from components built
// from pinned sources into bin/ by `make components`:
//
//   - StartEnvtest: kube-apiserver and etcd (controller-runtime's envtest) with canopy's,
//     Istio's and cert-manager's CRDs installed. Objects are stored and validated, nothing
//     acts on them: for reconciler tests.
//   - StartLocalCluster: the same plus kube-controller-manager, kube-scheduler and kwok with
//     one fake Node, so Deployments roll out, Pods become Ready and Services get
//     EndpointSlices: for end-to-end tests.
//
// StartPrometheus and Env.StartCertManager add a real Prometheus and cert-manager's
// controllers. Every server listens on 127.0.0.1 on a free port. Child processes run in
// their own process groups, die with the test binary (Pdeathsig, and a watchdog for the
// ones envtest starts) and log to files in the state directory, which Main prints when a
// test failed.
//
// A package shares one environment between its tests:
//
//	var env *testenv.Env
//
//	func TestMain(m *testing.M) { testenv.Main(m, testenv.Options{}, &env) }
//
//	func TestSomething(t *testing.T) {
//		testenv.SkipIfShort(t)
//		ns := env.CreateNamespace(t)
//		...
//	}
package testenv
