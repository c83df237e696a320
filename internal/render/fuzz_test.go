package render

import (
	"encoding/json"
	"regexp"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/versions"
)

// dnsLabel and printable mirror the CRD's patterns.
var (
	dnsLabel  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	printable = regexp.MustCompile(`^[^\x00-\x1F\x7F-\x9F]*$`)
)

// FuzzObjects feeds the builders arbitrary specs. Whatever the input, they must not panic;
// for input the CRD schema admits, every object must serialise and carry valid names and
// labels. Run longer with: go test ./internal/render -fuzz FuzzObjects -fuzztime 60s
func FuzzObjects(f *testing.F) {
	f.Add("istio-system", "", "docker.io/istio", "default", 0, 0, 0, "", "1", "PILOT_X", "1")
	f.Add("mesh", "canary", "registry.example.com/istio", "demo", 3, 0, 0, "/dev/stdout", "100", "PILOT_ENABLE_ANALYSIS", "true")
	f.Add("a", "x", "h", "minimal", 0, 7, 2, "", "0.05", "", "")
	f.Fuzz(func(t *testing.T, namespace, revision, hub, profile string, replicas, minR, maxR int,
		accessLog, sampling, envName, envValue string) {
		m := mcp(func(s *meshv1alpha1.MeshControlPlaneSpec) {
			s.Namespace, s.Revision, s.Hub, s.Profile = namespace, revision, hub, meshv1alpha1.Profile(profile)
			s.MeshConfig = &meshv1alpha1.MeshConfig{AccessLogFile: ptr.To(accessLog)}
			if sampling != "" {
				s.MeshConfig.Tracing = &meshv1alpha1.Tracing{SamplingPercentage: sampling}
			}
			s.Pilot = &meshv1alpha1.PilotSpec{}
			if replicas != 0 {
				s.Pilot.Replicas = ptr.To(int32(replicas))
			} else if minR != 0 || maxR != 0 {
				s.Pilot.Autoscaling = &meshv1alpha1.Autoscaling{MinReplicas: ptr.To(int32(minR)), MaxReplicas: ptr.To(int32(maxR))}
			}
			if envName != "" {
				s.Pilot.Env = []corev1.EnvVar{{Name: envName, Value: envValue}}
			}
			// A gateway in the fuzzed namespace, scaled like istiod.
			gw := meshv1alpha1.GatewaySpec{Name: "gw", Type: meshv1alpha1.GatewayTypeIngress, Namespace: namespace}
			gw.Replicas, gw.Autoscaling = s.Pilot.Replicas, s.Pilot.Autoscaling
			s.Gateways = []meshv1alpha1.GatewaySpec{gw}
		})
		cp, err := Resolve(m)
		if err != nil {
			return
		}
		cp.Validation = &ValidationEndpoint{}
		objs, err := Objects(cp) // must not panic, whatever the input
		admitted := dnsLabel.MatchString(cp.Namespace) && len(cp.Namespace) <= 63 &&
			(revision == "" || dnsLabel.MatchString(revision) && len(revision) <= 56 && revision != "default") &&
			cp.Release.Version == versions.Default.Version && printable.MatchString(accessLog) && len(accessLog) <= 256
		if !admitted {
			return // input the schema rejects may fail, but cleanly
		}
		if err != nil {
			t.Fatalf("Objects: %v", err)
		}
		for _, o := range objs {
			if _, err := json.Marshal(o); err != nil {
				t.Fatalf("%s %s does not serialise: %v", *o.GetKind(), *o.GetName(), err)
			}
			if errs := validation.IsDNS1123Subdomain(*o.GetName()); len(errs) > 0 {
				t.Fatalf("%s name %q: %v", *o.GetKind(), *o.GetName(), errs)
			}
		}
		for k, v := range cp.labels(componentPilot) {
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Fatalf("label %s=%q: %v", k, v, errs)
			}
		}
	})
}
