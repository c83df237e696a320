// Command demo runs meshplane on the real local control plane: it starts etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok, runs the operator with
// the RBAC it ships, applies config/samples, waits for them to become Ready, shows what the
// operator created and keeps everything running for kubectl until interrupted. With
// DEMO_EXIT=1 it exits once the samples are Ready (for scripts and CI).
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/devcluster"
)

const readyTimeout = 3 * time.Minute

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "[demo] error:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("[demo] "+format+"\n", args...) }

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	logDir, err := os.MkdirTemp("", "meshplane-demo-logs-")
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(logDir, "operator.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	ctrl.SetLogger(zap.New(zap.WriteTo(logFile)))

	step("starting the local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok")
	start := time.Now()
	cluster, err := devcluster.Start(ctx, devcluster.Options{LogDir: logDir, Metrics: true})
	if err != nil {
		return err
	}
	defer func() {
		step("stopping the operator and the control plane")
		cluster.Stop()
	}()
	step("control plane and operator up in %s (operator log: %s)", time.Since(start).Round(100*time.Millisecond), logFile.Name())

	names, canaries, err := applySamples(ctx, cluster)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := waitReady(ctx, cluster.Admin, name); err != nil {
			return err
		}
	}
	for _, key := range canaries {
		if err := waitCanaryReady(ctx, cluster.Admin, key); err != nil {
			return err
		}
	}

	if err := deployDemoApp(ctx, cluster.Admin); err != nil {
		return err
	}

	kubectl := filepath.Join(cluster.Env.AssetsDir, "kubectl")
	for _, args := range [][]string{
		{"get", "meshcontrolplanes"},
		{"get", "deployments,services,configmaps,serviceaccounts,horizontalpodautoscalers,pods", "-n", "istio-system", "-l", "app.kubernetes.io/part-of=istio"},
		{"get", "clusterroles,clusterrolebindings", "-l", "app.kubernetes.io/managed-by=meshplane"},
		{"get", "mutatingwebhookconfigurations"},
		{"get", "pods", "-n", demoNamespace, "-o", "custom-columns=POD:.metadata.name,STATUS:.status.phase,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name,REVISION:.metadata.annotations.istio\\.io/rev"},
	} {
		fmt.Printf("\n$ kubectl %s\n", strings.Join(args, " "))
		if err := runKubectl(kubectl, cluster.Env.Kubeconfig, os.Stdout, args...); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := printStatus(ctx, cluster.Admin, name); err != nil {
			return err
		}
	}
	for _, key := range canaries {
		fmt.Printf("\n$ kubectl get canary,deployments,services,virtualservices,destinationrules -n %s\n", key.Namespace)
		if err := runKubectl(kubectl, cluster.Env.Kubeconfig, os.Stdout, "get", "canary,deployments,services,virtualservices,destinationrules", "-n", key.Namespace); err != nil {
			return err
		}
	}

	fmt.Println()
	step("the control plane keeps running; in another shell:")
	fmt.Printf("    export KUBECONFIG=%s\n", cluster.Env.Kubeconfig)
	fmt.Printf("    export PATH=%s:$PATH   # kubectl\n", cluster.Env.AssetsDir)
	fmt.Println("    kubectl get mcp")
	fmt.Println("    kubectl wait --for=condition=Ready mcp/default")
	for _, key := range canaries {
		fmt.Printf("    kubectl -n %s get canary %s -o wide   # README: Canary, to roll out a new revision\n", key.Namespace, key.Name)
	}
	fmt.Printf("    kubectl get pods -n %s -o jsonpath='{.items[0].spec.containers[*].name}'\n", demoNamespace)
	fmt.Printf("    curl -s %s | grep ^meshplane_   # the operator's metrics\n", cluster.MetricsURL)
	if os.Getenv("DEMO_EXIT") == "1" {
		step("DEMO_EXIT=1: exiting")
		return nil
	}
	step("press Ctrl-C to stop")
	<-ctx.Done()
	return nil
}

const demoNamespace = "demo-app"

// deployDemoApp runs a small Deployment in a namespace labelled for injection and waits
// until its pods run with the sidecar the operator injected.
func deployDemoApp(ctx context.Context, c client.Client) error {
	step("deploying a demo app into namespace %s (labelled istio-injection=enabled)", demoNamespace)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: demoNamespace, Labels: map[string]string{"istio-injection": "enabled"}}}
	if err := c.Create(ctx, ns); err != nil {
		return err
	}
	labels := map[string]string{"app": "hello"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: demoNamespace},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "hello", Image: "registry.k8s.io/e2e-test-images/agnhost:2.53",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}}},
			},
		},
	}
	// Pods need the namespace's default service account, which kube-controller-manager
	// creates a moment after the namespace; the ReplicaSet controller retries until then.
	if err := c.Create(ctx, deploy); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace(demoNamespace), client.MatchingLabels(labels)); err == nil {
			running := 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.Annotations["sidecar.istio.io/status"] != "" {
					running++
				}
			}
			if running == 2 {
				step("demo app running with injected sidecars")
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("demo app not running with sidecars within %s", readyTimeout)
		case <-tick.C:
		}
	}
}

// canaryNamespace is where the demo applies the namespaced samples (a Canary), as kubectl
// apply would without -n.
const canaryNamespace = "default"

// applySamples server-side applies every manifest config/samples lists, as kubectl
// apply --server-side -k config/samples would, and returns the MeshControlPlanes' names and
// the Canaries' keys. A Canary's target Deployment is the user's: the demo creates one for
// it first (a stand-in for the user's app), so the Canary has something to take over.
func applySamples(ctx context.Context, c *devcluster.Cluster) ([]string, []client.ObjectKey, error) {
	dir := filepath.Join(c.Root, "config", "samples")
	raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, nil, err
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return nil, nil, fmt.Errorf("reading config/samples/kustomization.yaml: %w", err)
	}
	var names []string
	var canaries []client.ObjectKey
	for _, file := range k.Resources {
		objs, err := decodeAll(filepath.Join(dir, file))
		if err != nil {
			return nil, nil, err
		}
		for _, u := range objs {
			if u.GetKind() == "Canary" {
				if u.GetNamespace() == "" {
					u.SetNamespace(canaryNamespace)
				}
				if err := deployCanaryTarget(ctx, c.Admin, u); err != nil {
					return nil, nil, err
				}
				canaries = append(canaries, client.ObjectKeyFromObject(u))
			}
			step("applying %s %s (config/samples/%s)", u.GetKind(), u.GetName(), file)
			if err := c.Admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("meshplane-demo")); err != nil {
				return nil, nil, fmt.Errorf("applying %s: %w", file, err)
			}
			if u.GetKind() == "MeshControlPlane" {
				names = append(names, u.GetName())
			}
		}
	}
	return names, canaries, nil
}

// decodeAll reads every object of a YAML file.
func decodeAll(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []*unstructured.Unstructured
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("decoding %s: %w", path, err)
		}
		if len(u.Object) > 0 {
			out = append(out, u)
		}
	}
}

// deployCanaryTarget creates the Deployment a Canary sample targets, listening on the
// Canary's service port, as the user's app would be.
func deployCanaryTarget(ctx context.Context, c client.Client, canary *unstructured.Unstructured) error {
	var typed meshv1alpha1.Canary
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(canary.Object, &typed); err != nil {
		return fmt.Errorf("reading Canary %s: %w", canary.GetName(), err)
	}
	name, port := typed.Spec.TargetRef.Name, typed.Spec.Service.Port
	if name == "" || port == 0 {
		return fmt.Errorf("Canary %s: the sample needs spec.targetRef.name and spec.service.port", canary.GetName())
	}
	step("deploying %s/%s, the app Canary %s rolls out", canary.GetNamespace(), name, canary.GetName())
	labels := map[string]string{"app": name}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: canary.GetNamespace()},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: name, Image: "ghcr.io/stefanprodan/podinfo:6.7.1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
				}}},
			},
		},
	}
	if err := c.Create(ctx, deploy); err != nil {
		return fmt.Errorf("creating Deployment %s/%s: %w", deploy.Namespace, deploy.Name, err)
	}
	return nil
}

// waitCanaryReady polls a Canary until Ready=True at its generation: the primary runs
// the app and serves all its traffic, and the app's own Deployment is scaled to zero.
func waitCanaryReady(ctx context.Context, c client.Client, key client.ObjectKey) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		cr := &meshv1alpha1.Canary{}
		if err := c.Get(ctx, key, cr); err == nil {
			if cond := meta.FindStatusCondition(cr.Status.Conditions, meshv1alpha1.ConditionReady); cond != nil {
				msg := fmt.Sprintf("%s %s=%s (%s): %s", cr.Status.Phase, cond.Type, cond.Status, cond.Reason, cond.Message)
				if msg != last {
					step("Canary %s: %s", key, msg)
					last = msg
				}
				if cond.Status == metav1.ConditionTrue && cr.Status.ObservedGeneration == cr.Generation {
					step("Canary %s is Ready after %s", key, time.Since(start).Round(10*time.Millisecond))
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("Canary %s not Ready within %s (last: %s)", key, readyTimeout, last)
		case <-tick.C:
		}
	}
}

// waitReady polls a MeshControlPlane until Ready=True at its generation, printing each
// new message on the way.
func waitReady(ctx context.Context, c client.Client, name string) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		m := &meshv1alpha1.MeshControlPlane{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, m); err == nil {
			if cond := meta.FindStatusCondition(m.Status.Conditions, meshv1alpha1.ConditionReady); cond != nil {
				msg := fmt.Sprintf("%s=%s (%s): %s", cond.Type, cond.Status, cond.Reason, cond.Message)
				if msg != last {
					step("MeshControlPlane %s: %s", name, msg)
					last = msg
				}
				if cond.Status == metav1.ConditionTrue && m.Status.ObservedGeneration == m.Generation {
					step("MeshControlPlane %s is Ready after %s", name, time.Since(start).Round(10*time.Millisecond))
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("MeshControlPlane %s not Ready within %s (last: %s)", name, readyTimeout, last)
		case <-tick.C:
		}
	}
}

func printStatus(ctx context.Context, c client.Client, name string) error {
	m := &meshv1alpha1.MeshControlPlane{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, m); err != nil {
		return err
	}
	out, err := yaml.Marshal(m.Status)
	if err != nil {
		return err
	}
	fmt.Printf("\nstatus of mcp/%s:\n%s", name, out)
	return nil
}

func runKubectl(kubectl, kubeconfig string, w io.Writer, args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return nil
}
