package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// assetsEnvVar names the directory holding the control-plane binaries built by
// hack/install-testbins.sh (envtest reads the same variable).
const assetsEnvVar = "KUBEBUILDER_ASSETS"

// requiredAssets are the files Start uses from the assets directory.
var requiredAssets = []string{
	"etcd",
	"kube-apiserver",
	"kube-controller-manager",
	"kube-scheduler",
	"kwok",
	"kwok-stages.yaml",
	"cert-manager-controller",
	"cert-manager-crds",
}

// executableAssets are the entries of requiredAssets that must be runnable.
var executableAssets = map[string]bool{
	"etcd":                    true,
	"kube-apiserver":          true,
	"kube-controller-manager": true,
	"kube-scheduler":          true,
	"kwok":                    true,
	"cert-manager-controller": true,
}

const buildHint = `run "make testbin" to build them (or "make test", which builds them and sets ` + assetsEnvVar + `)`

// AssetsDir returns KUBEBUILDER_ASSETS, checking that the binaries are there; if unset or
// incomplete, an error telling the user to run `make testbin` (or `make test`).
func AssetsDir() (string, error) {
	dir := os.Getenv(assetsEnvVar)
	if dir == "" {
		return "", fmt.Errorf("%s is not set: it must point at the local control-plane binaries; %s", assetsEnvVar, buildHint)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("resolving %s=%s: %w", assetsEnvVar, dir, err)
	}
	var missing []string
	for _, name := range requiredAssets {
		fi, err := os.Stat(filepath.Join(abs, name))
		switch {
		case errors.Is(err, os.ErrNotExist):
			missing = append(missing, name)
		case err != nil:
			return "", fmt.Errorf("checking %s in %s=%s: %w", name, assetsEnvVar, abs, err)
		case executableAssets[name] && (fi.IsDir() || fi.Mode().Perm()&0o111 == 0):
			missing = append(missing, name+" (not executable)")
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("%s=%s is incomplete, missing: %s; %s",
			assetsEnvVar, abs, strings.Join(missing, ", "), buildHint)
	}
	return abs, nil
}
