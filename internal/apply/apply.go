// Package apply converges owned children with server-side apply, sending nothing when the
// live object already holds what the operator would apply, and never taking over an object
// it did not create.
package apply

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/client-go/applyconfigurations"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
)

// Object is a typed apply configuration of one object (client-go's and ours all satisfy it).
type Object interface {
	runtime.ApplyConfiguration
	GetAPIVersion() *string
	GetKind() *string
	GetName() *string
	GetNamespace() *string
}

// ConflictError reports an object the operator needs that exists and belongs to someone else.
type ConflictError struct {
	Kind string
	Key  client.ObjectKey
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s %s already exists and is not managed by this resource", e.Kind, displayKey(e.Key))
}

func displayKey(k client.ObjectKey) string {
	if k.Namespace == "" {
		return k.Name
	}
	return k.String()
}

// Applier applies desired objects for one controller (one field manager).
type Applier struct {
	// Client reads from the operator's cache, which holds only objects meshplane labelled.
	Client client.Client
	// APIReader reads the API server directly: an object missing from the cache may still
	// exist without meshplane's label, and must then not be taken over.
	APIReader  client.Reader
	Scheme     *runtime.Scheme
	FieldOwner string

	// converter knows the schemas of Kubernetes' own kinds; deduced serves every other kind
	// (Istio's, cert-manager's), deducing the structure from the object itself. Deduced
	// lists are atomic, which is exact enough for comparing what we applied: a list of ours
	// is extracted whole.
	converter managedfields.TypeConverter
	deduced   managedfields.TypeConverter
}

// Unstructured is the apply configuration of an object of a kind without Go types in the
// operator (cert-manager's Certificate): the fields to apply, and nothing else.
type Unstructured struct {
	*unstructured.Unstructured
}

// IsApplyConfiguration marks Unstructured as an apply configuration.
func (Unstructured) IsApplyConfiguration() {}

// GetAPIVersion returns the object's apiVersion.
func (u Unstructured) GetAPIVersion() *string { return ptrTo(u.Unstructured.GetAPIVersion()) }

// GetKind returns the object's kind.
func (u Unstructured) GetKind() *string { return ptrTo(u.Unstructured.GetKind()) }

// GetName returns the object's name.
func (u Unstructured) GetName() *string { return ptrTo(u.Unstructured.GetName()) }

// GetNamespace returns the object's namespace.
func (u Unstructured) GetNamespace() *string { return ptrTo(u.Unstructured.GetNamespace()) }

// MarshalJSON encodes the object's content.
func (u Unstructured) MarshalJSON() ([]byte, error) { return json.Marshal(u.Object) }

// SeedFieldOwner is the field manager of seeded fields (see Seeded): a manager of its own,
// so the operator's regular applies never own them.
const SeedFieldOwner = "meshplane-bootstrap"

// Seeded is a desired object with fields the operator sets only when it creates the object,
// and then leaves to another controller (istiod takes over a validating webhook's
// failurePolicy, switching it to Fail once it serves). Apply creates the object from
// Initial under SeedFieldOwner, takes what Object holds under its own field manager, then
// has SeedFieldOwner keep only Seed's fields. From then on it applies and compares Object
// alone, so it neither reverts the other controller's values nor sees them as drift, and a
// field later dropped from Object is removed rather than kept alive by the seed's owner.
type Seeded struct {
	// Object is what the operator applies on every pass; it never sets the seeded fields.
	Object
	// Initial is Object plus the seeded fields: the object as it is created.
	Initial Object
	// Seed holds only the seeded fields, with the keys that locate them (list item names).
	Seed Object
}

// MarshalJSON encodes what the operator applies on every pass.
func (s *Seeded) MarshalJSON() ([]byte, error) { return json.Marshal(s.Object) }

// NewApplier returns an Applier for the field manager fieldOwner.
func NewApplier(c client.Client, apiReader client.Reader, scheme *runtime.Scheme, fieldOwner string) *Applier {
	return &Applier{
		Client:     c,
		APIReader:  apiReader,
		Scheme:     scheme,
		FieldOwner: fieldOwner,
		converter:  applyconfigurations.NewTypeConverter(scheme),
		deduced:    managedfields.NewDeducedTypeConverter(),
	}
}

// Identity returns an apply configuration's kind and key.
func Identity(desired Object) (schema.GroupVersionKind, client.ObjectKey) {
	gvk := schema.FromAPIVersionAndKind(deref(desired.GetAPIVersion()), deref(desired.GetKind()))
	return gvk, client.ObjectKey{Namespace: deref(desired.GetNamespace()), Name: deref(desired.GetName())}
}

// Apply makes the live object hold desired, with owner as its controller. It returns
// whether a write was sent, and a *ConflictError when the object exists and owner does not
// control it (the object is then left untouched).
func (a *Applier) Apply(ctx context.Context, owner metav1.Object, desired Object) (bool, error) {
	seeded, _ := desired.(*Seeded)
	if seeded != nil {
		desired = seeded.Object
	}
	gvk, key := Identity(desired)
	live, err := a.newObject(gvk)
	if err != nil {
		return false, err
	}
	switch err := a.Client.Get(ctx, key, live); {
	case apierrors.IsNotFound(err):
		// Not in the cache: either absent, or present without meshplane's label.
		meta := &metav1.PartialObjectMetadata{}
		meta.SetGroupVersionKind(gvk)
		switch err := a.APIReader.Get(ctx, key, meta); {
		case apierrors.IsNotFound(err):
			if seeded != nil {
				return true, a.create(ctx, seeded, gvk, key)
			}
		case err != nil:
			return false, fmt.Errorf("reading %s %s: %w", gvk.Kind, displayKey(key), err)
		case !metav1.IsControlledBy(meta, owner):
			return false, &ConflictError{Kind: gvk.Kind, Key: key}
		}
	case err != nil:
		return false, fmt.Errorf("reading %s %s: %w", gvk.Kind, displayKey(key), err)
	case !metav1.IsControlledBy(live, owner):
		return false, &ConflictError{Kind: gvk.Kind, Key: key}
	default:
		// Typed objects read through a client carry no kind; the type converter needs it.
		live.GetObjectKind().SetGroupVersionKind(gvk)
		same, err := a.holds(live, desired)
		if err != nil {
			return false, fmt.Errorf("comparing %s %s: %w", gvk.Kind, displayKey(key), err)
		}
		if same {
			return false, nil
		}
	}
	var ac runtime.ApplyConfiguration = desired
	if u, ok := desired.(Unstructured); ok {
		ac = client.ApplyConfigurationFromUnstructured(u.Unstructured)
	}
	if err := a.Client.Apply(ctx, ac, client.FieldOwner(a.FieldOwner), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("applying %s %s: %w", gvk.Kind, displayKey(key), err)
	}
	return true, nil
}

// create creates a Seeded object: from Initial under SeedFieldOwner, then Object under the
// applier's own manager, then SeedFieldOwner keeps only Seed's fields. The seed's applies
// are never forced, so they cannot overwrite another controller's values: should the
// object have appeared meanwhile, the first conflicts (and the next pass finds the object),
// and a conflict in the last means the other controller has already taken over.
func (a *Applier) create(ctx context.Context, s *Seeded, gvk schema.GroupVersionKind, key client.ObjectKey) error {
	if err := a.Client.Apply(ctx, s.Initial, client.FieldOwner(SeedFieldOwner)); err != nil {
		return fmt.Errorf("creating %s %s: %w", gvk.Kind, displayKey(key), err)
	}
	if err := a.Client.Apply(ctx, s.Object, client.FieldOwner(a.FieldOwner), client.ForceOwnership); err != nil {
		return fmt.Errorf("applying %s %s: %w", gvk.Kind, displayKey(key), err)
	}
	if err := a.Client.Apply(ctx, s.Seed, client.FieldOwner(SeedFieldOwner)); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("handing over %s %s: %w", gvk.Kind, displayKey(key), err)
	}
	return nil
}

func (a *Applier) newObject(gvk schema.GroupVersionKind) (client.Object, error) {
	if !a.Scheme.Recognizes(gvk) {
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gvk)
		return u, nil
	}
	o, err := a.Scheme.New(gvk)
	if err != nil {
		return nil, fmt.Errorf("no Go type for %s: %w", gvk, err)
	}
	obj, ok := o.(client.Object)
	if !ok {
		return nil, fmt.Errorf("%s is not a client.Object", gvk)
	}
	return obj, nil
}

// holds reports whether the fields this field manager owns in live are exactly desired.
// Server-side apply records each manager's fields in managedFields; extracting ours gives
// what our last apply left (minus what others have since taken over or changed), so any
// drift, deletion of a field or change of ours shows up as a difference.
func (a *Applier) holds(live client.Object, desired Object) (bool, error) {
	var entry *metav1.ManagedFieldsEntry
	for i, mf := range live.GetManagedFields() {
		if mf.Manager == a.FieldOwner && mf.Operation == metav1.ManagedFieldsOperationApply && mf.Subresource == "" {
			entry = &live.GetManagedFields()[i]
			break
		}
	}
	if entry == nil || entry.FieldsV1 == nil {
		return false, nil
	}
	owned := &fieldpath.Set{}
	if err := owned.FromJSON(bytes.NewReader(entry.FieldsV1.Raw)); err != nil {
		return false, err
	}
	typed, err := a.toTyped(live)
	if err != nil {
		return false, err
	}
	extracted := typed.ExtractItems(owned.Leaves()).AsValue().Unstructured()

	want, err := normalize(desired)
	if err != nil {
		return false, err
	}
	got, err := normalize(extracted)
	if err != nil {
		return false, err
	}
	return reflect.DeepEqual(want, got), nil
}

// toTyped converts a live object for field extraction: Kubernetes' own kinds with their
// schemas, others by deduction from their JSON (which also honours custom marshallers, such
// as the protobuf-backed specs of Istio's types).
func (a *Applier) toTyped(live client.Object) (*typed.TypedValue, error) {
	if clientgoscheme.Scheme.Recognizes(live.GetObjectKind().GroupVersionKind()) {
		return a.converter.ObjectToTyped(live)
	}
	raw, err := json.Marshal(live)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{}
	if err := json.Unmarshal(raw, &u.Object); err != nil {
		return nil, err
	}
	return a.deduced.ObjectToTyped(u)
}

// normalize turns a value into plain JSON types, without the identity fields (which
// managedFields never records).
func normalize(v any) (map[string]any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	delete(m, "apiVersion")
	delete(m, "kind")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "name")
		delete(md, "namespace")
		if len(md) == 0 {
			delete(m, "metadata")
		}
	}
	return m, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Prune deletes the objects of the given kinds that match selector and are controlled by
// owner but are not in keep: what an earlier spec needed and the current one does not (a
// PodDisruptionBudget after scaling down, the objects of a renamed revision). Objects owner
// does not control are never touched. It returns how many it deleted.
func (a *Applier) Prune(ctx context.Context, owner metav1.Object, selector client.MatchingLabels,
	kinds []schema.GroupVersionKind, keep []Object) (int, error) {
	wanted := make(map[schema.GroupKind]map[client.ObjectKey]bool, len(keep))
	for _, o := range keep {
		gvk, key := Identity(o)
		if wanted[gvk.GroupKind()] == nil {
			wanted[gvk.GroupKind()] = map[client.ObjectKey]bool{}
		}
		wanted[gvk.GroupKind()][key] = true
	}
	deleted := 0
	for _, gvk := range kinds {
		typed, err := a.newList(gvk)
		if err != nil {
			return deleted, err
		}
		switch err := a.Client.List(ctx, typed, selector); {
		case apimeta.IsNoMatchError(err):
			continue // the kind is not installed (cert-manager's, say): nothing of it to prune
		case err != nil:
			return deleted, fmt.Errorf("listing %s: %w", gvk.Kind, err)
		}
		items, err := metaItems(typed)
		if err != nil {
			return deleted, err
		}
		for _, obj := range items {
			key := client.ObjectKeyFromObject(obj)
			if wanted[gvk.GroupKind()][key] || !metav1.IsControlledBy(obj, owner) || obj.GetDeletionTimestamp() != nil {
				continue
			}
			err := a.Client.Delete(ctx, obj, client.Preconditions{UID: ptrTo(obj.GetUID())},
				client.PropagationPolicy(metav1.DeletePropagationBackground))
			if client.IgnoreNotFound(err) != nil {
				return deleted, fmt.Errorf("deleting %s %s: %w", gvk.Kind, displayKey(key), err)
			}
			deleted++
		}
	}
	return deleted, nil
}

func (a *Applier) newList(gvk schema.GroupVersionKind) (client.ObjectList, error) {
	if !a.Scheme.Recognizes(gvk) {
		u := &unstructured.UnstructuredList{}
		u.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		return u, nil
	}
	o, err := a.Scheme.New(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
	if err != nil {
		return nil, fmt.Errorf("no list type for %s: %w", gvk, err)
	}
	list, ok := o.(client.ObjectList)
	if !ok {
		return nil, fmt.Errorf("%sList is not a client.ObjectList", gvk.Kind)
	}
	return list, nil
}

func metaItems(list client.ObjectList) ([]client.Object, error) {
	objs, err := apimeta.ExtractList(list)
	if err != nil {
		return nil, err
	}
	out := make([]client.Object, 0, len(objs))
	for _, o := range objs {
		obj, ok := o.(client.Object)
		if !ok {
			return nil, fmt.Errorf("%T is not a client.Object", o)
		}
		out = append(out, obj)
	}
	return out, nil
}

func ptrTo[T any](v T) *T { return &v }
