package canary

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// targetName is spec.targetRef.name's pattern in the CRD.
var targetName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)

// FuzzObjects builds every object from arbitrary spec values (the target's name as
// admission allows it, everything else arbitrary): no panic, the weights always sum to 100 and read back as built, the
// JSON round-trips, and the primary's pods are never selected by the target's selector.
func FuzzObjects(f *testing.F) {
	f.Add("web", int32(80), "http", int32(25), "web.example.com", "mesh", "/api", "GET", "x-canary", "always", int64(15), int32(3), "app", "web")
	f.Add("a", int32(1), "grpc", int32(0), "", "", "", "", "", "", int64(0), int32(0), "k", "")
	f.Add("shop-v2", int32(65535), "http-web", int32(100), "*.shop.example.com", "ns/gw", ".*", "", "user-agent", "x", int64(3600), int32(100), "tier", "front")
	f.Fuzz(func(t *testing.T, target string, port int32, portName string, weight int32, host, gateway, prefix, method, header, value string,
		timeoutSeconds int64, attempts int32, labelKey, labelValue string) {
		if !targetName.MatchString(target) {
			t.Skip("admission rejects this targetRef.name") // names are the objects' identities, compared as given
		}
		weight = max(0, min(weight, 100)) // the state machine's range
		c := newCanary(func(c *meshv1alpha1.Canary) {
			c.Spec.TargetRef.Name = target
			s := &c.Spec.Service
			s.Port, s.PortName = port, portName
			if host != "" {
				s.Hosts = []meshv1alpha1.Hostname{meshv1alpha1.Hostname(host)}
			}
			if gateway != "" {
				s.Gateways = []meshv1alpha1.GatewayName{meshv1alpha1.GatewayName(gateway)}
			}
			m := meshv1alpha1.HTTPMatch{}
			if prefix != "" {
				m.URI = &meshv1alpha1.StringMatch{Prefix: ptr.To(prefix)}
			}
			if method != "" {
				m.Method = &meshv1alpha1.StringMatch{Exact: ptr.To(method)}
			}
			if header != "" {
				m.Headers = map[string]meshv1alpha1.StringMatch{header: {Regex: ptr.To(value)}}
			}
			s.Match = []meshv1alpha1.HTTPMatch{m}
			if timeoutSeconds > 0 {
				s.Timeout = &metav1.Duration{Duration: time.Duration(timeoutSeconds) * time.Second}
			}
			s.Retries = &meshv1alpha1.HTTPRetry{Attempts: attempts}
		})
		d := newTarget(func(d *appsv1.Deployment) {
			d.Name = target
			d.Spec.Selector.MatchLabels = map[string]string{labelKey: labelValue}
			d.Spec.Template.Labels = map[string]string{labelKey: labelValue, "version": "v2"}
		})
		n := NamesOf(c)
		objs := []any{
			PrimaryDeployment(c, d, Primary{Template: PrimaryTemplate(d), Revision: TemplateRevision(&d.Spec.Template), Replicas: 2}),
			Service(c, n.Apex, PrimarySelector(d)), Service(c, n.Canary, TargetSelector(d)),
			DestinationRule(c, n.Primary), TargetScale(c, 0),
		}
		vs := VirtualService(c, weight)
		objs = append(objs, vs)
		for _, o := range objs {
			if _, err := json.Marshal(o); err != nil {
				t.Fatalf("%T does not marshal: %v", o, err)
			}
		}

		var sum int32
		for _, r := range vs.Spec.Http[0].Route {
			sum += r.Weight
		}
		if sum != 100 {
			t.Fatalf("weights sum to %d", sum)
		}
		raw, err := json.Marshal(vs)
		if err != nil {
			t.Fatal(err)
		}
		live := &networkingv1.VirtualService{}
		if err := json.Unmarshal(raw, live); err != nil {
			t.Fatalf("the VirtualService does not read back: %v", err)
		}
		live.OwnerReferences = []metav1.OwnerReference{{APIVersion: meshv1alpha1.GroupVersion.String(), Kind: "Canary", Name: c.Name, UID: c.UID, Controller: ptr.To(true)}}
		if got := AppliedWeight(c, live); got == nil || *got != weight {
			t.Fatalf("applied weight %v, built %d", got, weight)
		}

		if labelValue != "" || labelKey != "" {
			primaryPods := PrimaryTemplate(d).Labels
			if labels.SelectorFromSet(d.Spec.Selector.MatchLabels).Matches(labels.Set(primaryPods)) {
				t.Fatalf("the target's selector %v selects the primary's pods %v", d.Spec.Selector.MatchLabels, primaryPods)
			}
		}
	})
}
