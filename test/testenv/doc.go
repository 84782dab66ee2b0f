// Package testenv starts the clusters canopy's tests run against, from components built
// from pinned sources into bin/ by `make components`. Start(Options{}) gives one of two levels:
//
//   - envtest (the default): kube-apiserver and etcd (controller-runtime's envtest) with
//     canopy's, Istio's and cert-manager's CRDs installed. Objects are stored and
//     validated, nothing acts on them: for reconciler tests.
//   - a local cluster (Options.LocalCluster): the same plus kube-controller-manager,
//     kube-scheduler and kwok with one fake Node, so Deployments roll out, Pods become
//     Ready and Services get EndpointSlices: for end-to-end tests.
//
// Options.CertManager (or Env.StartCertManager) adds cert-manager's controllers, and
// StartPrometheus a real Prometheus. Every server listens on 127.0.0.1 on a free port.
// Child processes run in their own process groups, die with the test binary (Pdeathsig,
// and a reaper for the ones envtest starts) and log to files in the state directory,
// which Main prints when a test failed.
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
