//go:build !linux

package main

// stopWithParent does nothing outside Linux: stop the program itself, not `go run`.
func stopWithParent() {}
