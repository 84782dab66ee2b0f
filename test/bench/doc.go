// Package bench measures canopy at scale on the local cluster (test/testenv): N Canaries,
// each with its Deployment and Service, initialized, rolled out and rolled back, with the
// manager running as its own process so that its memory and CPU are its own. `make bench`
// runs BenchmarkScale and writes docs/benchmarks.md; TestScaleSmoke runs the same code
// with a handful of Canaries in `go test ./...`, so that it cannot rot.
// BenchmarkAPIServerWrite measures what one write of each kind a weight step makes costs
// the apiserver: the floor under the rollout and rollback times at large N.
package bench
