// Package bundle generates meshplane's OLM bundle (registry+v1) from the same kustomize
// sources as config/default, so the two installs cannot drift apart.
//
// config/manifests is built with kustomize (the CSV base, config/default, the samples and
// the scorecard configuration) and every object it yields is routed to its place in the
// bundle: the Deployment, its service account's bindings and their roles become the CSV's
// install strategy; CRDs become owned APIs (those config/istio-crds ships are marked
// internal objects), with descriptors derived from their schemas; samples become
// alm-examples; Services and unbound roles ship beside the CSV. An object the generator
// does not know how to ship is an error, never silently dropped.
package bundle

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Source directories, relative to the repository root.
const (
	// ManifestsDir is the kustomization the bundle is built from.
	ManifestsDir = "config/manifests"
	// InternalCRDsDir holds the CRDs shipped for others (Istio's), marked internal objects.
	InternalCRDsDir = "config/istio-crds"
	// SamplesDir holds the samples: those of meshplane's kinds become alm-examples, others
	// (a demo workload beside a sample) are not part of the install and stay out.
	SamplesDir = "config/samples"
	// IconFile is the operator's icon, embedded base64 in the CSV.
	IconFile = "config/manifests/icon.svg"
)

// Output locations, relative to the repository root.
const (
	OutputDir  = "bundle"
	Dockerfile = "bundle.Dockerfile"
)

// Options are the inputs of a bundle that do not come from config/.
type Options struct {
	// Root is the repository root.
	Root string
	// Image is the operator image the CSV deploys and lists first in relatedImages.
	Image string
	// Version is the operator's semantic version (the CSV is named <package>.v<Version>).
	Version string
	// Channels the bundle is published in; DefaultChannel is the package's default.
	Channels       []string
	DefaultChannel string
}

// File is one generated file, with its path relative to the repository root.
type File struct {
	Path string
	Data []byte
}

// Generate builds the bundle's files. It reads config/ and writes nothing.
func Generate(opts Options) ([]File, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	in := inputs{internalCRDs: map[string]bool{}, samples: map[string]bool{}}
	var err error
	if in.objects, err = kustomize(opts.Root, ManifestsDir); err != nil {
		return nil, err
	}
	internal, err := kustomize(opts.Root, InternalCRDsDir)
	if err != nil {
		return nil, err
	}
	for _, o := range internal {
		if o.GetKind() != "CustomResourceDefinition" {
			return nil, fmt.Errorf("%s holds a %s %q; it must hold only CustomResourceDefinitions", InternalCRDsDir, o.GetKind(), o.GetName())
		}
		in.internalCRDs[o.GetName()] = true
	}
	samples, err := kustomize(opts.Root, SamplesDir)
	if err != nil {
		return nil, err
	}
	for _, o := range samples {
		in.samples[key(o)] = true
	}
	if in.icon, err = os.ReadFile(filepath.Join(opts.Root, IconFile)); err != nil {
		return nil, fmt.Errorf("reading the operator icon: %w", err)
	}
	return assemble(in, opts)
}

// inputs are what the bundle is assembled from.
type inputs struct {
	// objects are config/manifests' objects.
	objects []*unstructured.Unstructured
	// internalCRDs names config/istio-crds' CRDs.
	internalCRDs map[string]bool
	// samples holds the keys (kind/namespace/name) of config/samples' objects.
	samples map[string]bool
	icon    []byte
}

// Write replaces the bundle directory and bundle.Dockerfile under root with files, so a
// file the generator no longer produces (a removed CRD) does not linger.
func Write(root string, files []File) error {
	if err := os.RemoveAll(filepath.Join(root, OutputDir)); err != nil {
		return fmt.Errorf("removing the old bundle: %w", err)
	}
	for _, f := range files {
		path := filepath.Join(root, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (o Options) validate() error {
	var missing []string
	if o.Root == "" {
		missing = append(missing, "root")
	}
	if o.Image == "" {
		missing = append(missing, "image")
	}
	if o.Version == "" {
		missing = append(missing, "version")
	}
	if len(o.Channels) == 0 {
		missing = append(missing, "channels")
	}
	if len(missing) > 0 {
		return fmt.Errorf("bundle options not set: %s", strings.Join(missing, ", "))
	}
	if o.DefaultChannel != "" && !slices.Contains(o.Channels, o.DefaultChannel) {
		return fmt.Errorf("default channel %q is not one of the channels %q", o.DefaultChannel, o.Channels)
	}
	return nil
}

// kustomize builds dir (relative to root) and returns its objects in kustomize's order.
func kustomize(root, dir string) ([]*unstructured.Unstructured, error) {
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).
		Run(filesys.MakeFsOnDisk(), filepath.Join(root, dir))
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resources.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return nil, fmt.Errorf("kustomize build %s: decoding %s: %w", dir, r.CurId(), err)
		}
		objs = append(objs, u)
	}
	return objs, nil
}
