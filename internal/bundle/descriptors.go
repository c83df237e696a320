package bundle

import (
	"slices"
	"strings"
	"unicode"

	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// x-descriptors the OpenShift console renders (its SpecCapability and StatusCapability).
const (
	xText            = "urn:alm:descriptor:com.tectonic.ui:text"
	xNumber          = "urn:alm:descriptor:com.tectonic.ui:number"
	xBooleanSwitch   = "urn:alm:descriptor:com.tectonic.ui:booleanSwitch"
	xSelect          = "urn:alm:descriptor:com.tectonic.ui:select:"
	xResources       = "urn:alm:descriptor:com.tectonic.ui:resourceRequirements"
	xNodeAffinity    = "urn:alm:descriptor:com.tectonic.ui:nodeAffinity"
	xPodAffinity     = "urn:alm:descriptor:com.tectonic.ui:podAffinity"
	xPodAntiAffinity = "urn:alm:descriptor:com.tectonic.ui:podAntiAffinity"
	xAdvanced        = "urn:alm:descriptor:com.tectonic.ui:advanced"
	xPodCount        = "urn:alm:descriptor:com.tectonic.ui:podCount"
	xKubernetes      = "urn:alm:descriptor:io.kubernetes:" // + a kind: a picker of that kind's objects
	xConditions      = "urn:alm:descriptor:io.kubernetes.conditions"
	xStatusText      = "urn:alm:descriptor:text"
)

// specXDescriptors replaces the x-descriptors inferred from the schema where a field means
// more than its type says, by kind and path. Kinds without entries still get inferred ones.
var specXDescriptors = map[string]map[string][]string{
	"MeshControlPlane": {
		"namespace":      {xKubernetes + "Namespace"},
		"pilot.replicas": {xPodCount},
		"security.certificateAuthority.plugged.secretName": {xKubernetes + "Secret"},
	},
}

// advancedFields are field names that, in every kind, go under the console's "Advanced"
// section: pod scheduling and environment knobs most users leave alone.
var advancedFields = []string{"affinity", "annotations", "env", "labels", "nodeSelector", "tolerations"}

// acronyms are written in capitals (or their usual case) in display names.
var acronyms = map[string]string{
	"api": "API", "ca": "CA", "cpu": "CPU", "dns": "DNS", "http": "HTTP", "id": "ID",
	"ip": "IP", "mtls": "mTLS", "tls": "TLS", "url": "URL",
}

// descriptors derives a kind's spec and status descriptors from its schema: one for every
// field, walking into objects with fixed properties but not into lists or maps, with
// x-descriptors inferred from the field's type (select for enums, number, switch, text) or
// its shape (resource requirements, affinity, conditions), then specXDescriptors.
func descriptors(kind string, root *apiextensionsv1.JSONSchemaProps) ([]operatorsv1alpha1.SpecDescriptor, []operatorsv1alpha1.StatusDescriptor) {
	var spec []operatorsv1alpha1.SpecDescriptor
	specFields := walk(root.Properties["spec"], nil)
	names := displayNames(specFields)
	for i, f := range specFields {
		x := specX(f)
		if override, ok := specXDescriptors[kind][f.path()]; ok {
			x = slices.Clone(override)
		}
		if slices.ContainsFunc(f.names, func(n string) bool { return slices.Contains(advancedFields, n) }) {
			x = append(x, xAdvanced)
		}
		spec = append(spec, operatorsv1alpha1.SpecDescriptor{
			Path: f.path(), DisplayName: names[i], Description: f.schema.Description, XDescriptors: x,
		})
	}
	var status []operatorsv1alpha1.StatusDescriptor
	statusFields := walk(root.Properties["status"], nil)
	names = displayNames(statusFields)
	for i, f := range statusFields {
		status = append(status, operatorsv1alpha1.StatusDescriptor{
			Path: f.path(), DisplayName: names[i], Description: f.schema.Description, XDescriptors: statusX(f),
		})
	}
	return spec, status
}

type field struct {
	names  []string
	schema apiextensionsv1.JSONSchemaProps
	// affinityPart is the console widget of a part of a corev1.Affinity.
	affinityPart string
}

var affinityParts = map[string]string{
	"nodeAffinity": xNodeAffinity, "podAffinity": xPodAffinity, "podAntiAffinity": xPodAntiAffinity,
}

func (f field) path() string { return strings.Join(f.names, ".") }

// walk lists the fields under s depth-first, in name order. Affinity is listed as its three
// parts, the unit the console's affinity widgets edit.
func walk(s apiextensionsv1.JSONSchemaProps, prefix []string) []field {
	var fields []field
	for _, name := range sortedKeys(s.Properties) {
		child := s.Properties[name]
		f := field{names: append(slices.Clone(prefix), name), schema: child}
		if isAffinity(child) {
			for _, part := range sortedKeys(child.Properties) {
				fields = append(fields, field{names: append(slices.Clone(f.names), part), schema: child.Properties[part], affinityPart: affinityParts[part]})
			}
			continue
		}
		fields = append(fields, f)
		if child.Type == "object" && len(child.Properties) > 0 && !isResources(child) {
			fields = append(fields, walk(child, f.names)...)
		}
	}
	return fields
}

func specX(f field) []string {
	s := f.schema
	switch {
	case isResources(s):
		return []string{xResources}
	case f.affinityPart != "":
		return []string{f.affinityPart}
	case s.Type == "boolean":
		return []string{xBooleanSwitch}
	case s.Type == "integer" || s.Type == "number":
		return []string{xNumber}
	case s.Type == "string" && len(s.Enum) > 0:
		var x []string
		for _, e := range s.Enum {
			x = append(x, xSelect+strings.Trim(string(e.Raw), `"`))
		}
		return x
	case s.Type == "string" || s.XIntOrString:
		return []string{xText}
	}
	return nil
}

func statusX(f field) []string {
	s := f.schema
	switch {
	case f.path() == "conditions" && s.Type == "array" && s.Items != nil && s.Items.Schema != nil &&
		hasProperties(*s.Items.Schema, "type", "status"):
		return []string{xConditions}
	case s.Type == "string":
		return []string{xStatusText}
	}
	return nil
}

// isResources recognises corev1.ResourceRequirements.
func isResources(s apiextensionsv1.JSONSchemaProps) bool {
	return s.Type == "object" && hasProperties(s, "limits", "requests")
}

// isAffinity recognises corev1.Affinity: an object whose properties are all affinity parts.
func isAffinity(s apiextensionsv1.JSONSchemaProps) bool {
	if s.Type != "object" || len(s.Properties) == 0 {
		return false
	}
	for name := range s.Properties {
		if _, ok := affinityParts[name]; !ok {
			return false
		}
	}
	return true
}

func hasProperties(s apiextensionsv1.JSONSchemaProps, names ...string) bool {
	for _, n := range names {
		if _, ok := s.Properties[n]; !ok {
			return false
		}
	}
	return true
}

// displayNames names each field after its last path element, qualified by its parent when
// two fields would otherwise share a name (mode: "mTLS Mode", "Sidecar Injector Mode").
func displayNames(fields []field) []string {
	names := make([]string, len(fields))
	depth := make([]int, len(fields))
	for i := range fields {
		depth[i] = 1
	}
	for {
		count := map[string]int{}
		for i, f := range fields {
			names[i] = humanize(strings.Join(f.names[max(len(f.names)-depth[i], 0):], " "))
			count[names[i]]++
		}
		clash := false
		for i, f := range fields {
			if count[names[i]] > 1 && depth[i] < len(f.names) {
				depth[i]++
				clash = true
			}
		}
		if !clash {
			return names
		}
	}
}

// humanize turns camelCase words into title-cased ones: "holdApplicationUntilProxyStarts"
// is "Hold Application Until Proxy Starts", "rewriteAppHTTPProbers" "Rewrite App HTTP Probers".
func humanize(s string) string {
	var words []string
	for _, part := range strings.Fields(s) {
		words = append(words, splitCamel(part)...)
	}
	for i, w := range words {
		if a, ok := acronyms[strings.ToLower(w)]; ok {
			words[i] = a
			continue
		}
		r := []rune(w)
		r[0] = unicode.ToUpper(r[0])
		words[i] = string(r)
	}
	return strings.Join(words, " ")
}

func splitCamel(s string) []string {
	r := []rune(s)
	var words []string
	start := 0
	for i := 1; i < len(r); i++ {
		lowerToUpper := unicode.IsLower(r[i-1]) && unicode.IsUpper(r[i])
		// The last capital of a run starts the next word: "HTTPProbers" is "HTTP Probers".
		acronymEnd := unicode.IsUpper(r[i-1]) && unicode.IsUpper(r[i]) && i+1 < len(r) && unicode.IsLower(r[i+1])
		if lowerToUpper || acronymEnd {
			words = append(words, string(r[start:i]))
			start = i
		}
	}
	return append(words, string(r[start:]))
}
