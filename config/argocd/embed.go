// Package argocd ships meshplane's Argo CD health checks (health/<Kind>.lua) and the
// kustomize Component that merges them into argocd-cm. The files are embedded so the tests
// (internal/argocdhealth) run exactly what ships.
package argocd

import "embed"

// Files holds health/*.lua and kustomization.yaml.
//
//go:embed health/*.lua kustomization.yaml
var Files embed.FS
