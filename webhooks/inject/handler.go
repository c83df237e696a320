// Package inject serves sidecar injection: an admission webhook that answers, for each
// MeshControlPlane, the pods its revision's MutatingWebhookConfiguration routes to it, with
// the same mutator the offline `kube-inject` command uses.
package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/inject"
	"github.com/meshplane/meshplane/internal/metrics"
	"github.com/meshplane/meshplane/internal/render"
)

type controlPlaneKey struct{}

// Handler injects sidecars for the MeshControlPlane named in the request path.
type Handler struct {
	// Client reads MeshControlPlanes (from the operator's cache).
	Client  client.Reader
	Decoder admission.Decoder

	// configs caches each MeshControlPlane's injection config by UID, valid for one
	// generation: resolving it on every admission was measurable in the load run.
	configs sync.Map // types.UID -> cachedConfig
}

type cachedConfig struct {
	generation int64
	cfg        *inject.Config
}

// config returns the injection config of mcp's current generation. The config is only
// read by the mutator, so one instance serves concurrent requests.
func (h *Handler) config(mcp *meshv1alpha1.MeshControlPlane) (*inject.Config, error) {
	if c, ok := h.configs.Load(mcp.UID); ok && c.(cachedConfig).generation == mcp.Generation {
		return c.(cachedConfig).cfg, nil
	}
	cfg, err := render.InjectionConfigFor(mcp)
	if err != nil {
		return nil, err
	}
	h.configs.Store(mcp.UID, cachedConfig{generation: mcp.Generation, cfg: cfg})
	return cfg, nil
}

// Webhook wraps the handler for the webhook server, taking the MeshControlPlane's name from
// the path (render.InjectPathPrefix + name). Register it at render.InjectPathPrefix.
func (h *Handler) Webhook() *admission.Webhook {
	return &admission.Webhook{
		Handler: h,
		WithContextFunc: func(ctx context.Context, r *http.Request) context.Context {
			return context.WithValue(ctx, controlPlaneKey{}, strings.TrimPrefix(r.URL.Path, render.InjectPathPrefix))
		},
	}
}

// Handle answers one AdmissionReview for a pod and records it in the injection metrics.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := time.Now()
	var labels metrics.InjectionLabels
	resp := h.handle(ctx, req, &labels)
	metrics.ObserveInjection(labels, resp, time.Since(start))
	return resp
}

// handle answers the review, filling in labels as it finds the control plane.
func (h *Handler) handle(ctx context.Context, req admission.Request, labels *metrics.InjectionLabels) admission.Response {
	name, _ := ctx.Value(controlPlaneKey{}).(string)
	if name == "" || strings.Contains(name, "/") {
		return admission.Errored(http.StatusNotFound, fmt.Errorf("no MeshControlPlane named in the webhook path"))
	}
	mcp := &meshv1alpha1.MeshControlPlane{}
	if err := h.Client.Get(ctx, client.ObjectKey{Name: name}, mcp); err != nil {
		if apierrors.IsNotFound(err) {
			// The control plane is being removed with its webhook configuration: let the pod
			// through uninjected rather than block workloads on a deleted mesh.
			return admission.Allowed(fmt.Sprintf("MeshControlPlane %s no longer exists; not injected", name))
		}
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading MeshControlPlane %s: %w", name, err))
	}
	labels.ControlPlane = mcp.Name
	cfg, err := h.config(mcp)
	if err != nil {
		return admission.Denied(fmt.Sprintf("MeshControlPlane %s cannot inject: %v", name, err))
	}
	labels.Revision = cfg.Revision

	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	out, injected, err := inject.Inject(pod, req.Namespace, cfg)
	if err != nil {
		return admission.Denied(err.Error())
	}
	if !injected {
		return admission.Allowed("not injected")
	}
	return patch(req, pod, out)
}

// patch answers with a JSON patch from pod to out. Injection changes only the spec, labels
// and annotations, so three "add" operations (which replace an existing member) describe
// it exactly; diffing the two serialised pods would cost more than the injection itself.
// Anything else changed falls back to the diff.
func patch(req admission.Request, pod, out *corev1.Pod) admission.Response {
	before, after := pod.ObjectMeta.DeepCopy(), out.ObjectMeta.DeepCopy()
	before.Labels, before.Annotations, after.Labels, after.Annotations = nil, nil, nil, nil
	if !equality.Semantic.DeepEqual(before, after) || !equality.Semantic.DeepEqual(pod.Status, out.Status) {
		raw, err := json.Marshal(out)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		return admission.PatchResponseFromRaw(req.Object.Raw, raw)
	}
	return admission.Patched("",
		jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/labels", Value: out.Labels},
		jsonpatch.JsonPatchOperation{Operation: "add", Path: "/metadata/annotations", Value: out.Annotations},
		jsonpatch.JsonPatchOperation{Operation: "replace", Path: "/spec", Value: out.Spec},
	)
}
