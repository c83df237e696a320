package canary

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// TemplateRevision identifies a pod template: a hash of its content (as the API server
// returns it, defaults included), so any change to the template is a new revision and the
// same template always has the same one. Replicas are not part of it: scaling is not a
// release.
func TemplateRevision(t *corev1.PodTemplateSpec) string {
	// encoding/json is deterministic: struct fields in order, map keys sorted.
	raw, err := json.Marshal(t)
	if err != nil {
		panic(fmt.Sprintf("canary render: marshalling a pod template: %v", err))
	}
	h := fnv.New64a()
	_, _ = h.Write(raw)
	return rand.SafeEncodeString(strconv.FormatUint(h.Sum64(), 10))
}

// Replicas is a Deployment's spec.replicas, 1 when unset (the API server's default).
func Replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// DeploymentReady reports whether d has rolled out its current pod template and can serve:
// the Deployment controller has seen the latest spec, every wanted replica runs the current
// template and is available, no old replica is left, and it wants at least one replica (a
// Deployment scaled to zero serves nothing).
func DeploymentReady(d *appsv1.Deployment) bool {
	want := Replicas(d)
	s := d.Status
	return want >= 1 &&
		s.ObservedGeneration >= d.Generation &&
		s.UpdatedReplicas == want &&
		s.Replicas == want &&
		s.AvailableReplicas == want
}

// OwnsReplicas reports whether fieldManager's server-side apply owns d's spec.replicas:
// then the value is the one the operator set, not one the user chose.
func OwnsReplicas(d *appsv1.Deployment, fieldManager string) bool {
	return ownsReplicas(d, fieldManager, func(op metav1.ManagedFieldsOperationType) bool {
		return op == metav1.ManagedFieldsOperationApply
	})
}

// ManagesReplicas reports whether fieldManager owns d's spec.replicas by any operation: by
// its apply, or by the update that set them back while a Canary is deleted.
func ManagesReplicas(d *appsv1.Deployment, fieldManager string) bool {
	return ownsReplicas(d, fieldManager, func(metav1.ManagedFieldsOperationType) bool { return true })
}

func ownsReplicas(d *appsv1.Deployment, fieldManager string, op func(metav1.ManagedFieldsOperationType) bool) bool {
	for _, mf := range d.ManagedFields {
		if mf.Manager != fieldManager || !op(mf.Operation) || mf.Subresource != "" || mf.FieldsV1 == nil {
			continue
		}
		var fields struct {
			Spec map[string]json.RawMessage `json:"f:spec"`
		}
		if json.Unmarshal(mf.FieldsV1.Raw, &fields) == nil {
			if _, ok := fields.Spec["f:replicas"]; ok {
				return true
			}
		}
	}
	return false
}

// IntendedReplicas is how many replicas the user wants the workload to run, which the
// primary mirrors and the target is scaled back to. While the operator owns the target's
// spec.replicas (it scaled it), the value there is the operator's, and the intent is what
// the primary runs. Once anyone else sets it (kubectl scale, a new apply of the manifest),
// that value is the intent. It is 1 only when nothing says otherwise.
func IntendedReplicas(target, primary *appsv1.Deployment, fieldManager string) int32 {
	if !OwnsReplicas(target, fieldManager) {
		return Replicas(target)
	}
	if primary != nil && primary.Spec.Replicas != nil {
		return *primary.Spec.Replicas
	}
	return max(Replicas(target), 1)
}

// PrimaryRevision is the target revision the live primary's template was copied from.
func PrimaryRevision(primary *appsv1.Deployment) string {
	return primary.Annotations[AnnotationRevision]
}

// ValidateTarget says why target cannot be rolled out by c, naming what to change, or
// returns nil.
func ValidateTarget(c *meshv1alpha1.Canary, target *appsv1.Deployment) error {
	var errs []string
	n := NamesOf(c)
	for _, name := range []string{n.Apex, n.Primary, n.Canary} {
		if msgs := validation.IsDNS1035Label(name); len(msgs) > 0 {
			errs = append(errs, fmt.Sprintf("Service name %q is invalid (%s): a Canary's target needs a name of at most %d lowercase letters, digits and '-', starting with a letter",
				name, strings.Join(msgs, "; "), validation.DNS1035LabelMaxLength-len(PrimarySuffix)))
			break
		}
	}
	// The primary's pods carry every matchLabels key with a suffixed value, so neither the
	// target's selector (which needs the plain values) nor its Services select them.
	if sel := target.Spec.Selector; sel == nil || len(sel.MatchLabels) == 0 {
		errs = append(errs, fmt.Sprintf("Deployment %s selects its pods without spec.selector.matchLabels: a Canary derives the primary's selector from them", target.Name))
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// AppliedWeight is the canary's share of traffic the live VirtualService carries: the
// weight of the <t>-canary destination in the route VirtualService builds. It is nil when
// the VirtualService is not c's or its routes are not the ones the operator writes (hand
// edited beyond the weights), so nothing is read into it.
func AppliedWeight(c *meshv1alpha1.Canary, vs *networkingv1.VirtualService) *int32 {
	if vs == nil || !metav1.IsControlledBy(vs, c) || len(vs.Spec.Http) != 1 {
		return nil
	}
	n := NamesOf(c)
	dests := vs.Spec.Http[0].Route
	var canary, primary int32
	seen := false
	for _, d := range dests {
		if d.Destination == nil {
			return nil
		}
		switch d.Destination.Host {
		case n.Canary:
			canary += d.Weight
			seen = true
		case n.Primary:
			primary += d.Weight
		default:
			return nil
		}
	}
	switch {
	case len(dests) == 0:
		return nil
	case len(dests) == 1 && canary+primary == 0:
		// A single destination without a weight takes all traffic, as Istio reads it.
		if seen {
			canary = 100
		}
	}
	return &canary
}
