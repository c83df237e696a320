// Package manifests checks, without a cluster, what meshplane ships: the kustomize tree
// under config/, the operator's RBAC against the roles it grants, the generated CRDs
// against the Go tables they must mirror, the samples and the Dockerfile.
package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	. "github.com/onsi/gomega"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// repoRoot walks up from the test's working directory to the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getting working directory: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatalf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// readRepoFile reads a file given by its path relative to the repository root.
func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatalf("reading %s: %v", rel, err)
	}
	return data
}

// yamlDocuments splits a multi-document YAML stream, dropping documents that hold no
// object (only comments or whitespace, such as a generated file's header).
func yamlDocuments(t *testing.T, data []byte) [][]byte {
	t.Helper()
	g := NewWithT(t)
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		g.Expect(err).NotTo(HaveOccurred(), "splitting YAML documents")
		var content map[string]any
		g.Expect(yaml.Unmarshal(doc, &content)).To(Succeed(), "decoding YAML document:\n%s", doc)
		if len(content) == 0 {
			continue
		}
		docs = append(docs, doc)
	}
	return docs
}
