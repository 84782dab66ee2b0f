package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReferenceUpToDate fails when docs/reference.md is not what the CRDs generate.
func TestReferenceUpToDate(t *testing.T) {
	got, err := Generate(filepath.Join("..", "..", "config", "crd", "bases"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("..", "..", "docs", "reference.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("docs/reference.md is stale: run make docs")
	}
}

func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	crd := `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, listKind: WidgetList, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            description: The widget.
            type: object
            required: [size]
            x-kubernetes-validations:
            - rule: self.size <= self.max
              message: size must not exceed max
            properties:
              size: {type: integer, format: int32, minimum: 1, default: 3, description: "How big | how many."}
              max: {type: integer}
              mode: {type: string, enum: [Fast, Slow]}
              tags:
                type: array
                items: {type: string, maxLength: 5}
              a: {type: object, properties: {x: {type: string}}}
              b: {type: object, description: other, properties: {x: {type: string}}}
`
	if err := os.WriteFile(filepath.Join(dir, "widgets.yaml"), []byte(crd), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := Generate(dir)
	if err != nil {
		t.Fatal(err)
	}
	page := string(out)
	for _, want := range []string{
		"`apiVersion: example.com/v1`, `kind: Widget`; namespaced",
		"### `Widget.spec`\n\nThe widget.\n\n- *Rule:* size must not exceed max: `self.size <= self.max`",
		"| `size` | integer (int32) | **Required.** How big \\| how many. *Default:* `3`. *Minimum:* 1. |",
		"| `mode` | string | *One of:* `\"Fast\"`, `\"Slow\"`. |",
		"| `tags` | []string | *Each item:* *Max length:* 5. |",
		// Identical objects are described once.
		"| `b` | [object](#widget-spec-a) |",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("want %q in\n%s", want, page)
		}
	}
	if _, err := Generate(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no CRDs in") {
		t.Errorf("an empty directory: got %v", err)
	}
}
