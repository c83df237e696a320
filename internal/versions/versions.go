// Package versions holds the Istio releases meshplane can install: the three newest minors,
// newest patch of each. The MeshControlPlane CRD's enum for spec.version must list exactly
// these (a test checks the generated CRD against this table).
package versions

import (
	"fmt"
	"strings"
)

// Release is one supported Istio release.
type Release struct {
	// Version is the Istio release, as users write it and as images are tagged ("1.31.1").
	Version string
}

// PilotImage is istiod's image for this release.
func (r Release) PilotImage(hub string) string { return hub + "/pilot:" + r.Version }

// ProxyImage is the sidecar and gateway image for this release.
func (r Release) ProxyImage(hub string) string { return hub + "/proxyv2:" + r.Version }

// Supported lists the supported releases, newest first.
var Supported = []Release{
	{Version: "1.31.1"},
	{Version: "1.30.3"},
	{Version: "1.29.6"},
}

// Default is the release installed when spec.version is not set.
var Default = Supported[0]

// DefaultHub is where upstream Istio publishes its images.
const DefaultHub = "docker.io/istio"

// Lookup returns the supported release named version, or an error listing the supported ones.
func Lookup(version string) (Release, error) {
	for _, r := range Supported {
		if r.Version == version {
			return r, nil
		}
	}
	return Release{}, fmt.Errorf("Istio version %q is not supported; supported versions: %s", version, List())
}

// List returns the supported versions, newest first, comma separated.
func List() string {
	v := make([]string, len(Supported))
	for i, r := range Supported {
		v[i] = r.Version
	}
	return strings.Join(v, ", ")
}
