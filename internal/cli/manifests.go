package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// manifest is one object read from a file.
type manifest struct {
	obj    client.Object
	source string // "path#3": the file and the document's index
}

// readManifests reads the objects of files, directories (their .yaml, .yml and .json files;
// subdirectories with recursive) and "-" (standard input), multi-document YAML or JSON,
// v1 Lists included. Objects without a namespace get ns, as kubectl apply would give them.
// Documents of kinds canopy does not know (a Kustomization, another operator's resource)
// are skipped; warn hears about the ones that are not Kubernetes objects at all.
func readManifests(paths []string, recursive bool, stdin io.Reader, s *runtime.Scheme, ns string, warn func(string)) ([]manifest, error) {
	files, err := expand(paths, recursive)
	if err != nil {
		return nil, err
	}
	// Strict decoding: a misspelt field is a warning, not a silent no-op.
	decoder := serializer.NewCodecFactory(s, serializer.EnableStrict).UniversalDeserializer()
	var out []manifest
	for _, f := range files {
		var data []byte
		if f == "-" {
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(f) //nolint:gosec // G304: reading the files the user names is the point
		}
		if err != nil {
			return nil, err
		}
		docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 0; ; i++ {
			doc, err := docs.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("reading %s: %w", f, err)
			}
			source := fmt.Sprintf("%s#%d", f, i)
			objs, err := decodeDoc(decoder, doc, source, warn)
			if err != nil {
				return nil, err
			}
			for _, o := range objs {
				if o.GetNamespace() == "" && namespaced(o) {
					o.SetNamespace(ns)
				}
				out = append(out, manifest{obj: o, source: source})
			}
		}
	}
	return out, nil
}

func decodeDoc(decoder runtime.Decoder, doc []byte, source string, warn func(string)) ([]client.Object, error) {
	if len(bytes.TrimSpace(stripComments(doc))) == 0 {
		return nil, nil
	}
	var meta struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return nil, fmt.Errorf("%s: not YAML or JSON: %w", source, err)
	}
	if meta.Kind == "" || meta.APIVersion == "" {
		if !strings.Contains(source, "kustomization.") {
			warn(fmt.Sprintf("skipping %s: not a Kubernetes object (no apiVersion or kind)", source))
		}
		return nil, nil
	}
	if meta.APIVersion == "v1" && meta.Kind == kindList {
		var out []client.Object
		for i, item := range meta.Items {
			objs, err := decodeDoc(decoder, item, fmt.Sprintf("%s.items[%d]", source, i), warn)
			if err != nil {
				return nil, err
			}
			out = append(out, objs...)
		}
		return out, nil
	}
	obj, _, err := decoder.Decode(doc, nil, nil)
	switch {
	case runtime.IsNotRegisteredError(err):
		return nil, nil // not an object canopy reads or generates
	case runtime.IsStrictDecodingError(err):
		warn(fmt.Sprintf("%s: %v", source, err))
	case err != nil:
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	o, ok := obj.(client.Object)
	if !ok {
		return nil, nil
	}
	return []client.Object{o}, nil
}

// stripComments drops comment lines, so that a document of comments only is empty.
func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for line := range bytes.Lines(doc) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] == '#' {
			continue
		}
		b.Write(line)
	}
	return b.Bytes()
}

// expand lists the files to read, in the order given, a directory's sorted by name.
func expand(paths []string, recursive bool) ([]string, error) {
	var out []string
	for _, p := range paths {
		if p == "-" {
			out = append(out, p)
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, p)
			continue
		}
		var found []string
		err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if path != p && !recursive {
					return filepath.SkipDir
				}
				return nil
			}
			switch strings.ToLower(filepath.Ext(path)) {
			case ".yaml", ".yml", ".json":
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		slices.Sort(found)
		out = append(out, found...)
	}
	if len(out) == 0 {
		return nil, errors.New("no manifests: give files or directories with -f (or -f - for standard input)")
	}
	return out, nil
}

// namespaced reports whether o is of a namespaced kind; the only cluster-scoped kinds canopy
// reads from files are Namespaces (and it ignores them).
func namespaced(o client.Object) bool {
	kind := o.GetObjectKind().GroupVersionKind().Kind
	return kind != "Namespace" && kind != "ClusterIssuer" && kind != "ClusterRole" && kind != "ClusterRoleBinding" &&
		kind != "CustomResourceDefinition"
}
