//go:build race

package testenv

// Race is true when the test binary runs under the race detector: the binaries a test builds
// (the manager of test/e2e/restarts) are then built with -race too.
const Race = true
