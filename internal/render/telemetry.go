package render

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/types/known/wrapperspb"
	telemetryv1alpha1 "istio.io/api/telemetry/v1alpha1"
	istiometav1ac "istio.io/client-go/pkg/applyconfiguration/meta/v1"
	telemetryv1ac "istio.io/client-go/pkg/applyconfiguration/telemetry/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// Names of the providers the mesh-wide Telemetry refers to. They are stable, and documented,
// so that users' namespace and workload Telemetry resources can name them too.
const (
	// ProviderAccessLogText is Istio's built-in file access log ("/dev/stdout", text).
	ProviderAccessLogText = "envoy"
	// ProviderAccessLogJSON is the same log in Istio's default JSON format.
	ProviderAccessLogJSON = "envoy-json"
	// ProviderZipkin and ProviderOpenTelemetry are the tracing collectors, named as in
	// Istio's tracing tasks.
	ProviderZipkin        = "zipkin"
	ProviderOpenTelemetry = "otel-tracing"
)

// TelemetryName names the mesh-wide Telemetry: Istio's documented "mesh-default",
// suffixed for a named revision so revisions side by side in one namespace do not share it
// (each istiod reads only the one labelled with its revision).
func (cp *ControlPlane) TelemetryName() string { return cp.suffixed("mesh-default") }

func (cp *ControlPlane) telemetry() *meshv1alpha1.TelemetrySpec {
	if t := cp.Owner.Spec.Telemetry; t != nil {
		return t
	}
	return &meshv1alpha1.TelemetrySpec{}
}

// scrapeAnnotations reports whether pods carry Prometheus' prometheus.io annotations (and
// the mesh merges application metrics), as upstream does by default.
func (cp *ControlPlane) scrapeAnnotations() bool {
	m := cp.telemetry().Metrics
	if m == nil || m.Prometheus == nil || m.Prometheus.ScrapeAnnotations == nil {
		return true
	}
	return *m.Prometheus.ScrapeAnnotations
}

// accessLogProvider is the provider the mesh-wide Telemetry logs with.
func accessLogProvider(al *meshv1alpha1.AccessLogging) string {
	if al.Encoding == "JSON" {
		return ProviderAccessLogJSON
	}
	return ProviderAccessLogText
}

// tracingProvider is the spec's tracing collector as a meshConfig extension provider.
func tracingProvider(tr *meshv1alpha1.TelemetryTracing) *extensionProvider {
	switch {
	case tr.Zipkin != nil:
		return &extensionProvider{Name: ProviderZipkin, Zipkin: &tracingService{Service: tr.Zipkin.Service, Port: tr.Zipkin.Port}}
	case tr.OpenTelemetry != nil:
		return &extensionProvider{Name: ProviderOpenTelemetry,
			Opentelemetry: &tracingService{Service: tr.OpenTelemetry.Service, Port: tr.OpenTelemetry.Port}}
	}
	return nil // the schema requires exactly one
}

// extensionProviders are the providers the mesh-wide Telemetry needs beyond Istio's
// built-in ones. istiod merges them into its defaults by name.
func (cp *ControlPlane) extensionProviders() []extensionProvider {
	var out []extensionProvider
	t := cp.telemetry()
	if al := t.AccessLogging; al != nil && accessLogProvider(al) == ProviderAccessLogJSON {
		// Empty labels select Istio's default JSON fields.
		out = append(out, extensionProvider{Name: ProviderAccessLogJSON, EnvoyFileAccessLog: &envoyFileAccessLog{
			Path: "/dev/stdout", LogFormat: &accessLogFormat{Labels: map[string]string{}},
		}})
	}
	if tr := t.Tracing; tr != nil {
		if p := tracingProvider(tr); p != nil {
			out = append(out, *p)
		}
	}
	return out
}

// TelemetryApplyConfiguration is Istio's generated apply configuration with the accessors
// controller-runtime's Client.Apply and the applier need, which Istio's lacks.
type TelemetryApplyConfiguration struct {
	*telemetryv1ac.TelemetryApplyConfiguration
}

// IsApplyConfiguration marks it as an apply configuration.
func (TelemetryApplyConfiguration) IsApplyConfiguration() {}

// GetAPIVersion returns the apiVersion.
func (t TelemetryApplyConfiguration) GetAPIVersion() *string { return t.APIVersion }

// GetKind returns the kind.
func (t TelemetryApplyConfiguration) GetKind() *string { return t.Kind }

// GetName returns the name.
func (t TelemetryApplyConfiguration) GetName() *string { return t.Name }

// GetNamespace returns the namespace.
func (t TelemetryApplyConfiguration) GetNamespace() *string { return t.Namespace }

// telemetryObject is the mesh-wide Telemetry in the root namespace, or nil when the spec
// configures neither access logging nor tracing. Its istio.io/rev label (from cp.labels)
// makes only this revision's istiod read it.
func telemetryObject(cp *ControlPlane) (Object, error) {
	t := cp.telemetry()
	if t.AccessLogging == nil && t.Tracing == nil {
		return nil, nil
	}
	spec := &telemetryv1alpha1.Telemetry{}
	if al := t.AccessLogging; al != nil {
		logging := &telemetryv1alpha1.AccessLogging{Providers: []*telemetryv1alpha1.ProviderRef{{Name: accessLogProvider(al)}}}
		if al.Enabled != nil && !*al.Enabled {
			logging.Disabled = wrapperspb.Bool(true)
		}
		spec.AccessLogging = []*telemetryv1alpha1.AccessLogging{logging}
	}
	if tr := t.Tracing; tr != nil {
		provider := tracingProvider(tr)
		if provider == nil {
			return nil, fmt.Errorf("spec.telemetry.tracing must set exactly one of zipkin or openTelemetry")
		}
		tracing := &telemetryv1alpha1.Tracing{Providers: []*telemetryv1alpha1.ProviderRef{{Name: provider.Name}}}
		// Without a rate of its own the Telemetry leaves sampling to the mesh default
		// (PILOT_TRACE_SAMPLING) and pods' proxy.istio.io/config, as Istio does.
		if tr.SamplingPercentage != "" {
			rate, err := strconv.ParseFloat(tr.SamplingPercentage, 64)
			if err != nil || rate < 0 || rate > 100 {
				return nil, fmt.Errorf("spec.telemetry.tracing.samplingPercentage %q is not a percentage from 0 to 100", tr.SamplingPercentage)
			}
			tracing.RandomSamplingPercentage = wrapperspb.Double(rate)
		}
		spec.Tracing = []*telemetryv1alpha1.Tracing{tracing}
	}
	tel := telemetryv1ac.Telemetry(cp.TelemetryName(), cp.Namespace).
		WithLabels(cp.labels("Base")).
		WithOwnerReferences(convert[istiometav1ac.OwnerReferenceApplyConfiguration](cp.ownerReference()))
	// Set directly: protobuf messages must not be copied, which WithSpec's value does.
	tel.Spec = spec
	return &TelemetryApplyConfiguration{tel}, nil
}
