// Package kubeinject injects sidecars into manifests offline (the counterpart of istioctl
// kube-inject), with the same mutator the admission webhook runs, so what GitOps users
// pre-render is what the webhook would have produced.
package kubeinject

import (
	"errors"
	"fmt"
	"io"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/inject"
)

// templatePaths are where each workload kind keeps its pod template.
var templatePaths = map[string][]string{
	"Deployment":            {"spec", "template"},
	"StatefulSet":           {"spec", "template"},
	"DaemonSet":             {"spec", "template"},
	"ReplicaSet":            {"spec", "template"},
	"ReplicationController": {"spec", "template"},
	"Job":                   {"spec", "template"},
	"CronJob":               {"spec", "jobTemplate", "spec", "template"},
}

// Manifests reads YAML or JSON documents from r and writes them to w as YAML, with the pod
// templates of workloads (and bare Pods) injected for cfg. Other documents pass through
// unchanged. defaultNamespace is used for objects without a namespace.
func Manifests(r io.Reader, w io.Writer, cfg *inject.Config, defaultNamespace string) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	first := true
	for i := 1; ; i++ {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := Object(u, cfg, defaultNamespace); err != nil {
			return fmt.Errorf("document %d (%s %s): %w", i, u.GetKind(), u.GetName(), err)
		}
		out, err := yaml.Marshal(u.Object)
		if err != nil {
			return err
		}
		if !first {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		first = false
		if _, err := w.Write(out); err != nil {
			return err
		}
	}
}

// Object injects one object in place: a Pod, the pod template of a workload, or each item
// of a List.
func Object(u *unstructured.Unstructured, cfg *inject.Config, defaultNamespace string) error {
	ns := u.GetNamespace()
	if ns == "" {
		ns = defaultNamespace
	}
	switch kind := u.GetKind(); {
	case u.IsList():
		items, _, err := unstructured.NestedSlice(u.Object, "items")
		if err != nil {
			return err
		}
		for i, it := range items {
			m, ok := it.(map[string]any)
			if !ok {
				continue
			}
			item := &unstructured.Unstructured{Object: m}
			if err := Object(item, cfg, defaultNamespace); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
			items[i] = item.Object
		}
		return unstructured.SetNestedSlice(u.Object, items, "items")
	case kind == "Pod":
		pod := &corev1.Pod{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, pod); err != nil {
			return err
		}
		out, injected, err := inject.Inject(pod, ns, cfg)
		if err != nil || !injected {
			return err
		}
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(out)
		if err != nil {
			return err
		}
		u.Object = withoutEmptyStatus(obj)
		return nil
	default:
		path, ok := templatePaths[kind]
		if !ok {
			return nil
		}
		raw, found, err := unstructured.NestedMap(u.Object, path...)
		if err != nil || !found {
			return err
		}
		tpl := &corev1.PodTemplateSpec{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, tpl); err != nil {
			return err
		}
		pod := &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
		if pod.GenerateName == "" && pod.Name == "" {
			// As the workload controller will name its pods.
			pod.GenerateName = u.GetName() + "-"
		}
		pod.OwnerReferences = nil
		out, injected, err := inject.Inject(pod, ns, cfg)
		if err != nil || !injected {
			return err
		}
		tpl.ObjectMeta.Labels, tpl.ObjectMeta.Annotations = out.Labels, out.Annotations
		tpl.Spec = out.Spec
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(tpl)
		if err != nil {
			return err
		}
		return unstructured.SetNestedMap(u.Object, withoutEmptyStatus(obj), path...)
	}
}

// withoutEmptyStatus drops the empty status and null creationTimestamp a typed round trip
// adds, so output differs from input only by the injection.
func withoutEmptyStatus(obj map[string]any) map[string]any {
	if st, ok := obj["status"].(map[string]any); ok && len(st) == 0 {
		delete(obj, "status")
	}
	if md, ok := obj["metadata"].(map[string]any); ok {
		if ts, ok := md["creationTimestamp"]; ok && ts == nil {
			delete(md, "creationTimestamp")
		}
	}
	return obj
}
