package bundle

import (
	"testing"

	. "github.com/onsi/gomega"
	operatorsv1alpha1 "github.com/operator-framework/api/pkg/operators/v1alpha1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

func TestHumanize(t *testing.T) {
	for in, want := range map[string]string{
		"MeshControlPlane":                "Mesh Control Plane",
		"holdApplicationUntilProxyStarts": "Hold Application Until Proxy Starts",
		"rewriteAppHTTPProbers":           "Rewrite App HTTP Probers",
		"targetCPUUtilizationPercentage":  "Target CPU Utilization Percentage",
		"mtls mode":                       "mTLS Mode",
		"meshID":                          "Mesh ID",
		"proxyv2":                         "Proxyv2",
	} {
		if got := humanize(in); got != want {
			t.Errorf("humanize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDescriptorsFromSchema(t *testing.T) {
	g := NewWithT(t)
	str := apiextensionsv1.JSONSchemaProps{Type: "string", Description: "a string"}
	obj := func(props map[string]apiextensionsv1.JSONSchemaProps) apiextensionsv1.JSONSchemaProps {
		return apiextensionsv1.JSONSchemaProps{Type: "object", Properties: props}
	}
	root := obj(map[string]apiextensionsv1.JSONSchemaProps{
		"spec": obj(map[string]apiextensionsv1.JSONSchemaProps{
			"namespace": str,
			"mode":      {Type: "string", Enum: []apiextensionsv1.JSON{{Raw: []byte(`"On"`)}, {Raw: []byte(`"Off"`)}}},
			"enabled":   {Type: "boolean"},
			"pilot": obj(map[string]apiextensionsv1.JSONSchemaProps{
				"replicas":  {Type: "integer"},
				"resources": obj(map[string]apiextensionsv1.JSONSchemaProps{"limits": {Type: "object"}, "requests": {Type: "object"}}),
				"affinity":  obj(map[string]apiextensionsv1.JSONSchemaProps{"nodeAffinity": {Type: "object"}, "podAntiAffinity": {Type: "object"}}),
				"env":       {Type: "array"},
				"mode":      str,
			}),
			"labels": {Type: "object", AdditionalProperties: &apiextensionsv1.JSONSchemaPropsOrBool{Schema: &str}},
		}),
		"status": obj(map[string]apiextensionsv1.JSONSchemaProps{
			"conditions": {Type: "array", Items: &apiextensionsv1.JSONSchemaPropsOrArray{Schema: &apiextensionsv1.JSONSchemaProps{
				Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"type": str, "status": str},
			}}},
			"observedGeneration": {Type: "integer"},
			"address":            str,
		}),
	})

	spec, status := descriptors("MeshControlPlane", &root)
	g.Expect(spec).To(Equal([]operatorsv1alpha1.SpecDescriptor{
		{Path: "enabled", DisplayName: "Enabled", XDescriptors: []string{xBooleanSwitch}},
		{Path: "labels", DisplayName: "Labels", XDescriptors: []string{xAdvanced}},
		{Path: "mode", DisplayName: "Mode", XDescriptors: []string{xSelect + "On", xSelect + "Off"}},
		{Path: "namespace", DisplayName: "Namespace", Description: "a string", XDescriptors: []string{xKubernetes + "Namespace"}},
		{Path: "pilot", DisplayName: "Pilot"},
		{Path: "pilot.affinity.nodeAffinity", DisplayName: "Node Affinity", XDescriptors: []string{xNodeAffinity, xAdvanced}},
		{Path: "pilot.affinity.podAntiAffinity", DisplayName: "Pod Anti Affinity", XDescriptors: []string{xPodAntiAffinity, xAdvanced}},
		{Path: "pilot.env", DisplayName: "Env", XDescriptors: []string{xAdvanced}},
		{Path: "pilot.mode", DisplayName: "Pilot Mode", Description: "a string", XDescriptors: []string{xText}},
		{Path: "pilot.replicas", DisplayName: "Replicas", XDescriptors: []string{xPodCount}},
		{Path: "pilot.resources", DisplayName: "Resources", XDescriptors: []string{xResources}},
	}))
	g.Expect(status).To(Equal([]operatorsv1alpha1.StatusDescriptor{
		{Path: "address", DisplayName: "Address", Description: "a string", XDescriptors: []string{xStatusText}},
		{Path: "conditions", DisplayName: "Conditions", XDescriptors: []string{xConditions}},
		{Path: "observedGeneration", DisplayName: "Observed Generation"},
	}))
}
