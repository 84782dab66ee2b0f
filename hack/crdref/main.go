// Command crdref writes docs/reference.md, canopy's API reference, from the CRDs that
// controller-gen generates from api/v1alpha1 (config/crd/bases): every field with its type,
// description, default and validation, including the CEL rules and their messages. It runs
// in `make manifests` and `make docs`; a test fails when the checked-in page is stale.
//
//	go run ./hack/crdref [-crds config/crd/bases] [-out docs/reference.md]
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	crds := flag.String("crds", "config/crd/bases", "Directory of the CRD YAML files.")
	out := flag.String("out", "docs/reference.md", "The page to write.")
	flag.Parse()
	page, err := Generate(*crds)
	if err == nil {
		err = os.WriteFile(*out, page, 0o644) //nolint:gosec // G306: a documentation page, readable by all like the rest of the tree
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "crdref: %v\n", err)
		os.Exit(1)
	}
}
