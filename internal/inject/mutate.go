package inject

import (
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"istio.io/api/annotation"
	"istio.io/api/label"
)

// autoImage in a user-defined istio-proxy container means "the injector's image".
const autoImage = "auto"

// mutate merges the rendered template into pod (a private copy) and post-processes it as
// upstream's injector does.
func mutate(pod *corev1.Pod, namespace string, c *Config, o *options) error {
	w := workloadOf(pod, namespace)
	r, err := render(pod, w, c, o)
	if err != nil {
		return err
	}

	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	for k, v := range r.labels {
		pod.Labels[k] = v
	}
	for k, v := range r.annotations {
		pod.Annotations[k] = v
	}

	// A pod may define its own istio-proxy (or istio-init) to customise the injected one
	// ("injection customization"). Upstream merges the template into it and then re-applies
	// the user's fields on top, recording them in proxy.istio.io/overrides.
	var overrides struct {
		Containers     []corev1.Container `json:"containers,omitempty"`
		InitContainers []corev1.Container `json:"initContainers,omitempty"`
	}
	if o.native {
		// With native sidecars the proxy lives in initContainers; a customisation written
		// for the classic layout moves with it.
		if i := indexOf(pod.Spec.Containers, ProxyContainerName); i >= 0 && indexOf(pod.Spec.InitContainers, ProxyContainerName) < 0 {
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, pod.Spec.Containers[i])
			pod.Spec.Containers = slices.Delete(pod.Spec.Containers, i, i+1)
		}
	}
	for _, t := range r.containers {
		merged, user, err := mergeContainer(&pod.Spec.Containers, t)
		if err != nil {
			return err
		}
		if merged {
			overrides.Containers = append(overrides.Containers, user)
		}
	}
	for _, t := range r.initContainers {
		merged, user, err := mergeContainer(&pod.Spec.InitContainers, t)
		if err != nil {
			return err
		}
		if merged {
			overrides.InitContainers = append(overrides.InitContainers, user)
		}
	}
	if len(overrides.Containers) > 0 || len(overrides.InitContainers) > 0 {
		js, err := json.Marshal(overrides)
		if err != nil {
			return fmt.Errorf("recording proxy overrides: %w", err)
		}
		pod.Annotations[annotation.ProxyOverrides.Name] = string(js)
	}
	for _, v := range r.volumes {
		if i := slices.IndexFunc(pod.Spec.Volumes, func(x corev1.Volume) bool { return x.Name == v.Name }); i >= 0 {
			pod.Spec.Volumes[i] = v
		} else {
			pod.Spec.Volumes = append(pod.Spec.Volumes, v)
		}
	}
	for _, s := range r.imagePullSecrets {
		if !slices.ContainsFunc(pod.Spec.ImagePullSecrets, func(x corev1.LocalObjectReference) bool { return x.Name == s }) {
			pod.Spec.ImagePullSecrets = append(pod.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
		}
	}

	sidecar := findContainer(pod, ProxyContainerName)
	setClusterEnv(pod, sidecar, c)
	applyPrometheusMerge(pod, sidecar, o.promMerge)
	if o.rewriteProbes && sidecar != nil {
		if probers := appProbers(pod); probers != "" {
			sidecar.Env = append(sidecar.Env, corev1.EnvVar{Name: "ISTIO_KUBE_APP_PROBERS", Value: probers})
		}
		rewriteAppProbes(pod)
	}
	status, err := statusAnnotation(r, c.Revision)
	if err != nil {
		return err
	}
	pod.Annotations[annotation.SidecarStatus.Name] = status
	reorder(pod, o.hold)
	return nil
}

func indexOf(cs []corev1.Container, name string) int {
	return slices.IndexFunc(cs, func(c corev1.Container) bool { return c.Name == name })
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	if i := indexOf(pod.Spec.Containers, name); i >= 0 {
		return &pod.Spec.Containers[i]
	}
	if i := indexOf(pod.Spec.InitContainers, name); i >= 0 {
		return &pod.Spec.InitContainers[i]
	}
	return nil
}

// mergeContainer adds the template container t to list, or, when the pod already defines a
// container of that name, merges as upstream does: the template over the user's container,
// then the user's container (with image "auto" cleared) over the result. It reports the
// user's container when it merged.
func mergeContainer(list *[]corev1.Container, t corev1.Container) (bool, corev1.Container, error) {
	i := indexOf(*list, t.Name)
	if i < 0 {
		*list = append(*list, t)
		return false, corev1.Container{}, nil
	}
	user := *(*list)[i].DeepCopy()
	if user.Image == autoImage {
		user.Image = ""
	}
	merged, err := strategicMerge(&(*list)[i], &t)
	if err == nil {
		merged, err = strategicMerge(merged, &user)
	}
	if err != nil {
		return false, corev1.Container{}, fmt.Errorf("merging the pod's own %s container: %w", t.Name, err)
	}
	(*list)[i] = *merged
	return true, user, nil
}

// strategicMerge applies patch over base with Kubernetes' strategic merge rules (lists of env,
// ports, mounts merge by key).
func strategicMerge(base, patch *corev1.Container) (*corev1.Container, error) {
	b, err := json.Marshal(base)
	if err != nil {
		return nil, err
	}
	p, err := json.Marshal(patch)
	if err != nil {
		return nil, err
	}
	out, err := strategicpatch.StrategicMergePatch(b, p, corev1.Container{})
	if err != nil {
		return nil, err
	}
	var c corev1.Container
	if err := json.Unmarshal(out, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// setClusterEnv applies the cluster and network identity as upstream's webhook does after
// rendering: the pod's topology.istio.io/network label wins over the configured network and is
// set from it; values it overrides move to the end of the proxy's env in name order.
func setClusterEnv(pod *corev1.Pod, sidecar *corev1.Container, c *Config) {
	override := map[string]string{}
	if c.ClusterID != defaultClusterID {
		override["ISTIO_META_CLUSTER_ID"] = c.ClusterID
	}
	network := c.Network
	if n, ok := pod.Labels[label.TopologyNetwork.Name]; ok {
		network = n
	}
	if network != "" {
		override["ISTIO_META_NETWORK"] = network
		pod.Labels[label.TopologyNetwork.Name] = network
	}
	if sidecar == nil || len(override) == 0 {
		return
	}
	sidecar.Env = slices.DeleteFunc(sidecar.Env, func(e corev1.EnvVar) bool {
		_, ok := override[e.Name]
		return ok
	})
	for _, name := range []string{"ISTIO_META_CLUSTER_ID", "ISTIO_META_NETWORK"} { // name order
		if v, ok := override[name]; ok {
			sidecar.Env = append(sidecar.Env, corev1.EnvVar{Name: name, Value: v})
		}
	}
}

func statusAnnotation(r *rendered, revision string) (string, error) {
	names := func(cs []corev1.Container) []string {
		var out []string
		for i := range cs {
			out = append(out, cs[i].Name)
		}
		return out
	}
	s := sidecarStatus{
		InitContainers: names(r.initContainers),
		Containers:     names(r.containers),
		Revision:       revision,
	}
	for i := range r.volumes {
		s.Volumes = append(s.Volumes, r.volumes[i].Name)
	}
	if len(r.imagePullSecrets) > 0 {
		s.ImagePullSecrets = r.imagePullSecrets
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// moveTo takes the named container out of cs and puts it first or last.
func moveTo(cs []corev1.Container, name string, first bool) []corev1.Container {
	i := indexOf(cs, name)
	if i < 0 {
		return cs
	}
	c := cs[i]
	cs = slices.Delete(cs, i, i+1)
	if first {
		return slices.Insert(cs, 0, c)
	}
	return append(cs, c)
}

// reorder is upstream's reorderPod. The proxy is the last container, so kubectl defaults to
// the app, unless the app must wait for it. As a native sidecar it follows istio-init at the
// front, so the other init containers are already in the mesh; classic istio-init runs last,
// so it does not cut off the other init containers' traffic.
func reorder(pod *corev1.Pod, hold bool) {
	pod.Spec.Containers = moveTo(pod.Spec.Containers, ProxyContainerName, hold)
	if indexOf(pod.Spec.InitContainers, ProxyContainerName) >= 0 {
		pod.Spec.InitContainers = moveTo(pod.Spec.InitContainers, ProxyContainerName, true)
		pod.Spec.InitContainers = moveTo(pod.Spec.InitContainers, InitContainerName, true)
	} else {
		pod.Spec.InitContainers = moveTo(pod.Spec.InitContainers, InitContainerName, false)
	}
}
