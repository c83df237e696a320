//go:build tools

// Package tools pins the code generators the Makefile builds into bin/, in a module of its
// own so their dependencies stay out of the operator's go.mod.
package tools

import (
	_ "sigs.k8s.io/controller-tools/cmd/controller-gen"
)
