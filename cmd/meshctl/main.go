// Command meshctl is meshplane's command-line tool.
//
//	meshctl kube-inject -f deploy.yaml [--control-plane mcp.yaml | --version 1.31.1 ...]
//
// injects Istio sidecars into manifests offline, with exactly the mutator the operator's
// webhook runs, for a revision described by a MeshControlPlane manifest, a live
// MeshControlPlane (--from-cluster), or flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/kubeinject"
	"github.com/meshplane/meshplane/internal/operator"
	"github.com/meshplane/meshplane/internal/render"
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "kube-inject" {
		fmt.Fprintln(os.Stderr, "usage: meshctl kube-inject [flags]   (meshctl kube-inject -h for the flags)")
		os.Exit(2)
	}
	if err := kubeInject(os.Args[2:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "meshctl kube-inject:", err)
		os.Exit(1)
	}
}

type fileList []string

func (f *fileList) String() string     { return fmt.Sprint(*f) }
func (f *fileList) Set(v string) error { *f = append(*f, v); return nil }

func kubeInject(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("kube-inject", flag.ContinueOnError)
	var files fileList
	fs.Var(&files, "f", "Manifest file to inject, \"-\" for standard input (repeatable; default: standard input).")
	mcpFile := fs.String("control-plane", "", "A MeshControlPlane manifest describing the revision to inject for.")
	fromCluster := fs.String("from-cluster", "", "Name of a MeshControlPlane to read from the cluster (current kubeconfig).")
	namespace := fs.String("namespace", "default", "Namespace of objects that do not set one.")
	spec := meshv1alpha1.MeshControlPlaneSpec{}
	fs.StringVar(&spec.Version, "version", "", "Istio version (default: the newest supported).")
	fs.StringVar(&spec.Hub, "hub", "", "Image hub (default docker.io/istio).")
	fs.StringVar(&spec.Revision, "revision", "", "Control plane revision (default: the default revision).")
	fs.StringVar(&spec.Namespace, "control-plane-namespace", "", "Namespace of istiod (default istio-system).")
	native := fs.Bool("native-sidecar", false, "Inject istio-proxy as a native sidecar (init container with restartPolicy Always).")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *native {
		spec.SidecarInjector = &meshv1alpha1.SidecarInjectorSpec{Mode: meshv1alpha1.SidecarModeNativeSidecar}
	}

	mcp := &meshv1alpha1.MeshControlPlane{Spec: spec}
	switch {
	case *mcpFile != "" && *fromCluster != "":
		return errors.New("--control-plane and --from-cluster are alternatives")
	case *mcpFile != "":
		raw, err := os.ReadFile(*mcpFile)
		if err != nil {
			return err
		}
		mcp = &meshv1alpha1.MeshControlPlane{}
		if err := yaml.UnmarshalStrict(raw, mcp); err != nil {
			return fmt.Errorf("%s: %w", *mcpFile, err)
		}
	case *fromCluster != "":
		cfg, err := config.GetConfig()
		if err != nil {
			return err
		}
		c, err := client.New(cfg, client.Options{Scheme: operator.Scheme()})
		if err != nil {
			return err
		}
		mcp = &meshv1alpha1.MeshControlPlane{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: *fromCluster}, mcp); err != nil {
			return err
		}
	}
	cfg, err := render.InjectionConfigFor(mcp)
	if err != nil {
		return err
	}

	if len(files) == 0 {
		files = fileList{"-"}
	}
	// One stream of documents, so the output is one YAML stream too.
	var inputs []io.Reader
	for i, f := range files {
		if i > 0 {
			inputs = append(inputs, strings.NewReader("\n---\n"))
		}
		if f == "-" {
			inputs = append(inputs, stdin)
			continue
		}
		file, err := os.Open(f)
		if err != nil {
			return err
		}
		defer file.Close()
		inputs = append(inputs, file)
	}
	return kubeinject.Manifests(io.MultiReader(inputs...), stdout, cfg, *namespace)
}
