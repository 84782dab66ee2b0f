package testenv

// Tool returns the path of a tool built into BinDir by `make components` (helm,
// kustomize), or an error that says how to build it.
func Tool(name string) (string, error) { return binary(name) }
