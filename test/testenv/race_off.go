//go:build !race

package testenv

// Race is true when the test binary runs under the race detector (see race.go).
const Race = false
