package render

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// LabelGateway names the gateway an object belongs to, so a gateway's objects are found
// (and a conflict in one of them holds back the rest) without knowing every name.
const LabelGateway = "mesh.meshplane.io/gateway"

// Ports of the gateway proxy that are Istio's contract, not the user's.
const (
	gatewayStatusPort    = 15021 // /healthz/ready
	gatewayMetricsPort   = 15020 // merged Prometheus metrics
	gatewayEnvoyPromPort = 15090
	gatewayContainerName = "istio-proxy"
)

// Gateway is one resolved gateway: the spec with every default applied.
type Gateway struct {
	Name      string
	Namespace string
	Type      meshv1alpha1.GatewayType
	// Revision is the istio.io/rev of the gateway's proxies ("default" for the default revision).
	Revision    string
	ServiceType corev1.ServiceType
	// Ports have their targetPort and protocol set.
	Ports []meshv1alpha1.GatewayPort
	spec  *meshv1alpha1.GatewaySpec
}

// Component is the gateway's component in the MeshControlPlane's status.
func (gw *Gateway) Component() string {
	if gw.Type == meshv1alpha1.GatewayTypeEgress {
		return "EgressGateway"
	}
	return "IngressGateway"
}

// operatorComponent is upstream's operator.istio.io/component label of the gateway's objects.
func (gw *Gateway) operatorComponent() string { return gw.Component() + "s" }

// IstioLabel is the value of the istio label that Istio Gateway resources select on:
// the name without an "istio-" prefix, as upstream's gateway chart derives it (so
// "istio-ingressgateway" is selected by istio=ingressgateway).
func (gw *Gateway) IstioLabel() string { return strings.TrimPrefix(gw.Name, "istio-") }

// selector selects the gateway's pods: app and istio, as upstream's charts do.
func (gw *Gateway) selector() map[string]string {
	return map[string]string{"app": gw.Name, "istio": gw.IstioLabel()}
}

// istiodName is the istiod the gateway's proxies connect to: its revision's, in the
// control plane's namespace.
func (gw *Gateway) istiodName() string {
	if gw.Revision == "default" {
		return "istiod"
	}
	return "istiod-" + gw.Revision
}

func (gw *Gateway) meshConfigMapName() string {
	if gw.Revision == "default" {
		return "istio"
	}
	return "istio-" + gw.Revision
}

// defaultGatewayPorts are upstream's: the proxy listens on unprivileged ports behind the
// Service's 80 and 443; ingress also exposes the status port for load balancer health checks.
func defaultGatewayPorts(t meshv1alpha1.GatewayType) []meshv1alpha1.GatewayPort {
	ports := []meshv1alpha1.GatewayPort{
		{Name: "http2", Port: 80, TargetPort: 8080, Protocol: corev1.ProtocolTCP},
		{Name: "https", Port: 443, TargetPort: 8443, Protocol: corev1.ProtocolTCP},
	}
	if t == meshv1alpha1.GatewayTypeIngress {
		ports = append([]meshv1alpha1.GatewayPort{
			{Name: "status-port", Port: gatewayStatusPort, TargetPort: gatewayStatusPort, Protocol: corev1.ProtocolTCP},
		}, ports...)
	}
	return ports
}

// resolveGateways applies the gateways' defaults: namespace and revision of the control
// plane, the Service type and ports of the gateway's type.
func (cp *ControlPlane) resolveGateways() {
	cp.Gateways = nil
	for i := range cp.Owner.Spec.Gateways {
		in := &cp.Owner.Spec.Gateways[i]
		gw := Gateway{
			Name:      in.Name,
			Namespace: in.Namespace,
			Type:      in.Type,
			Revision:  in.Revision,
			spec:      in,
		}
		if gw.Type == "" {
			gw.Type = meshv1alpha1.GatewayTypeIngress
		}
		if gw.Namespace == "" {
			gw.Namespace = cp.Namespace
		}
		if gw.Revision == "" {
			gw.Revision = cp.RevisionLabel()
		}
		gw.ServiceType = corev1.ServiceTypeLoadBalancer
		if gw.Type == meshv1alpha1.GatewayTypeEgress {
			gw.ServiceType = corev1.ServiceTypeClusterIP
		}
		gw.Ports = defaultGatewayPorts(gw.Type)
		if svc := in.Service; svc != nil {
			if svc.Type != "" {
				gw.ServiceType = corev1.ServiceType(svc.Type)
			}
			if len(svc.Ports) > 0 {
				gw.Ports = make([]meshv1alpha1.GatewayPort, len(svc.Ports))
				for j, p := range svc.Ports {
					if p.TargetPort == 0 {
						p.TargetPort = p.Port
					}
					if p.Protocol == "" {
						p.Protocol = corev1.ProtocolTCP
					}
					gw.Ports[j] = p
				}
			}
		}
		cp.Gateways = append(cp.Gateways, gw)
	}
}

// Namespaces are the namespaces the control plane's objects live in, sorted: its own and
// its gateways'. The operator creates those that do not exist.
func (cp *ControlPlane) Namespaces() []string {
	set := map[string]bool{cp.Namespace: true}
	for _, gw := range cp.Gateways {
		set[gw.Namespace] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// gatewayLabels are the labels of every object of a gateway.
func (cp *ControlPlane) gatewayLabels(gw *Gateway) map[string]string {
	l := gw.selector()
	maps.Copy(l, map[string]string{
		"app.kubernetes.io/name":     gw.Name,
		"app.kubernetes.io/instance": gw.Name,
		"app.kubernetes.io/part-of":  "istio",
		"app.kubernetes.io/version":  cp.Release.Version,
		LabelIstioRev:                gw.Revision,
		labelComponent:               gw.operatorComponent(),
		LabelManagedBy:               ManagedByValue,
		LabelControlPlane:            cp.Owner.Name,
		LabelGateway:                 gw.Name,
	})
	return l
}

// withUserLabels returns the user's labels overlaid by ours (the schema already rejects the
// keys the operator sets, so nothing of the user's is dropped in practice).
func withUserLabels(ours map[string]string, user map[string]meshv1alpha1.LabelValue) map[string]string {
	out := make(map[string]string, len(ours)+len(user))
	for k, v := range user {
		out[k] = string(v)
	}
	maps.Copy(out, ours)
	return out
}

// gatewayObjects renders a gateway's objects. The Deployment comes before the Service and
// the autoscaler, so a foreign Deployment of the same name stops the gateway before anything
// would route to or scale it.
func gatewayObjects(cp *ControlPlane, gw *Gateway) ([]Object, error) {
	dep, err := gatewayDeployment(cp, gw)
	if err != nil {
		return nil, err
	}
	labels := cp.gatewayLabels(gw)
	objs := []Object{
		corev1ac.ServiceAccount(gw.Name, gw.Namespace).
			WithLabels(labels).
			WithOwnerReferences(cp.ownerReference()),
		rbacv1ac.Role(gw.Name, gw.Namespace).
			WithLabels(labels).
			WithOwnerReferences(cp.ownerReference()).
			WithRules(GatewayRules()...),
		rbacv1ac.RoleBinding(gw.Name, gw.Namespace).
			WithLabels(labels).
			WithOwnerReferences(cp.ownerReference()).
			WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("Role").WithName(gw.Name)).
			WithSubjects(rbacv1ac.Subject().WithKind("ServiceAccount").WithName(gw.Name).WithNamespace(gw.Namespace)),
		dep,
		gatewayService(cp, gw),
	}
	fixed, as := gw.scaling()
	if as != nil {
		objs = append(objs, deploymentHPA(gw.Name, gw.Namespace, labels, cp.ownerReference(), as))
	}
	if pdb := minAvailablePDB(gw.Name, gw.Namespace, labels, cp.ownerReference(), gw.selector(), fixed, as); pdb != nil {
		objs = append(objs, pdb)
	}
	return objs, nil
}

// GatewayRules are a gateway's permissions in its namespace: reading the TLS Secrets its
// Gateway resources name (credentialName), which the proxy fetches over SDS.
func GatewayRules() []*rbacv1ac.PolicyRuleApplyConfiguration {
	return []*rbacv1ac.PolicyRuleApplyConfiguration{
		rule([]string{""}, []string{"secrets"}, "get", "watch", "list"),
	}
}

// scaling is the gateway's fixed replica count, or else its resolved autoscaler.
func (gw *Gateway) scaling() (*int32, *meshv1alpha1.Autoscaling) {
	if gw.spec.Replicas != nil {
		return gw.spec.Replicas, nil
	}
	return nil, resolveAutoscaling(gw.spec.Autoscaling)
}

func gatewayService(cp *ControlPlane, gw *Gateway) *corev1ac.ServiceApplyConfiguration {
	spec := corev1ac.ServiceSpec().
		WithType(gw.ServiceType).
		WithSelector(gw.selector())
	for _, p := range gw.Ports {
		spec.WithPorts(corev1ac.ServicePort().
			WithName(p.Name).
			WithPort(p.Port).
			WithTargetPort(intstr.FromInt32(p.TargetPort)).
			WithProtocol(p.Protocol))
	}
	svc := corev1ac.Service(gw.Name, gw.Namespace).
		WithLabels(withUserLabels(cp.gatewayLabels(gw), gw.spec.Labels)).
		WithOwnerReferences(cp.ownerReference()).
		WithSpec(spec)
	if len(gw.spec.Annotations) > 0 {
		svc.WithAnnotations(gw.spec.Annotations)
	}
	return svc
}

func (cp *ControlPlane) gatewayResources(gw *Gateway) *corev1ac.ResourceRequirementsApplyConfiguration {
	if r := gw.spec.Resources; r != nil {
		rr := corev1ac.ResourceRequirements()
		if len(r.Requests) > 0 {
			rr.WithRequests(r.Requests)
		}
		if len(r.Limits) > 0 {
			rr.WithLimits(r.Limits)
		}
		return rr
	}
	cpu, mem := "100m", "128Mi"
	if cp.Profile == meshv1alpha1.ProfileDemo {
		cpu, mem = "10m", "40Mi"
	}
	return corev1ac.ResourceRequirements().
		WithRequests(corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse(cpu),
			corev1.ResourceMemory: resource.MustParse(mem),
		}).
		WithLimits(corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("2"),
			corev1.ResourceMemory: resource.MustParse("1Gi"),
		})
}

// gatewayProxyConfig is PROXY_CONFIG: the mesh's default proxy config, pointed at the
// gateway's revision. The proxy reads mesh config from the revision's ConfigMap only when
// it shares its namespace; this makes a gateway in any namespace find its istiod.
func (cp *ControlPlane) gatewayProxyConfig(gw *Gateway) (string, error) {
	pc := meshConfigOf(cp).DefaultConfig
	pc.DiscoveryAddress = fmt.Sprintf("%s.%s.svc:15012", gw.istiodName(), cp.Namespace)
	out, err := json.Marshal(pc) // map keys sorted: deterministic
	if err != nil {
		return "", err
	}
	return string(out), nil
}

func (cp *ControlPlane) gatewayEnv(gw *Gateway) ([]*corev1ac.EnvVarApplyConfiguration, error) {
	proxyConfig, err := cp.gatewayProxyConfig(gw)
	if err != nil {
		return nil, fmt.Errorf("gateway %s: proxy config: %w", gw.Name, err)
	}
	value := func(name, v string) *corev1ac.EnvVarApplyConfiguration {
		return corev1ac.EnvVar().WithName(name).WithValue(v)
	}
	field := func(name, path string) *corev1ac.EnvVarApplyConfiguration {
		return corev1ac.EnvVar().WithName(name).WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath(path)))
	}
	mc := meshConfigOf(cp)
	env := []*corev1ac.EnvVarApplyConfiguration{
		value("PILOT_CERT_PROVIDER", "istiod"),
		value("CA_ADDR", fmt.Sprintf("%s.%s.svc:15012", gw.istiodName(), cp.Namespace)),
		field("NODE_NAME", "spec.nodeName"),
		field("POD_NAME", "metadata.name"),
		field("POD_NAMESPACE", "metadata.namespace"),
		field("INSTANCE_IP", "status.podIP"),
		field("HOST_IP", "status.hostIP"),
		corev1ac.EnvVar().WithName("ISTIO_CPU_LIMIT").WithValueFrom(corev1ac.EnvVarSource().
			WithResourceFieldRef(corev1ac.ResourceFieldSelector().WithResource("limits.cpu").
				WithDivisor(resource.MustParse("1")))),
		field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		value("ISTIO_META_WORKLOAD_NAME", gw.Name),
		value("ISTIO_META_OWNER", "kubernetes://apis/apps/v1/namespaces/"+gw.Namespace+"/deployments/"+gw.Name),
		value("ISTIO_META_MESH_ID", mc.TrustDomain),
		value("TRUST_DOMAIN", mc.TrustDomain),
		value("ISTIO_META_UNPRIVILEGED_POD", "true"),
		value("PROXY_CONFIG", proxyConfig),
		value("ISTIO_META_CLUSTER_ID", "Kubernetes"),
		field("ISTIO_META_NODE_NAME", "spec.nodeName"),
	}
	// The mesh's proxy metadata, as the chart sets it: a variable of the same name is
	// replaced in place, so no name appears twice and the order stays stable.
	md := mc.DefaultConfig.ProxyMetadata
	for _, k := range slices.Sorted(maps.Keys(md)) {
		e := corev1ac.EnvVar().WithName(k)
		if md[k] != "" { // the API drops empty values; sending one would never match
			e.WithValue(md[k])
		}
		replaced := false
		for j := range env {
			if *env[j].Name == k {
				env[j], replaced = e, true
			}
		}
		if !replaced {
			env = append(env, e)
		}
	}
	return env, nil
}

// gatewayContainerPorts are the proxy's ports behind the Service (one per target port and
// protocol) and Envoy's Prometheus port.
func gatewayContainerPorts(gw *Gateway) []*corev1ac.ContainerPortApplyConfiguration {
	type key struct {
		port     int32
		protocol corev1.Protocol
	}
	seen := map[key]bool{}
	var out []*corev1ac.ContainerPortApplyConfiguration
	for _, p := range gw.Ports {
		k := key{p.TargetPort, p.Protocol}
		if seen[k] || k == (key{gatewayEnvoyPromPort, corev1.ProtocolTCP}) {
			continue
		}
		seen[k] = true
		out = append(out, corev1ac.ContainerPort().WithContainerPort(p.TargetPort).WithProtocol(p.Protocol))
	}
	return append(out, containerPort("http-envoy-prom", gatewayEnvoyPromPort))
}

func gatewayDeployment(cp *ControlPlane, gw *Gateway) (*appsv1ac.DeploymentApplyConfiguration, error) {
	env, err := cp.gatewayEnv(gw)
	if err != nil {
		return nil, err
	}
	podLabels := cp.gatewayLabels(gw)
	delete(podLabels, LabelManagedBy) // pods are the ReplicaSet's, not meshplane's
	delete(podLabels, LabelControlPlane)
	delete(podLabels, LabelGateway)
	canonicalRevision := gw.Revision
	if canonicalRevision == "default" {
		canonicalRevision = "latest"
	}
	maps.Copy(podLabels, map[string]string{
		"sidecar.istio.io/inject":             "false",
		"istio.io/dataplane-mode":             "none", // gateways stay out of ambient
		"service.istio.io/canonical-name":     gw.Name,
		"service.istio.io/canonical-revision": canonicalRevision,
	})
	podAnnotations := map[string]string{
		LabelIstioRev:             gw.Revision,
		"sidecar.istio.io/inject": "false",
	}
	if cp.scrapeAnnotations() {
		podAnnotations["prometheus.io/scrape"] = "true"
		podAnnotations["prometheus.io/port"] = fmt.Sprint(gatewayMetricsPort)
		podAnnotations["prometheus.io/path"] = "/stats/prometheus"
	}
	maps.Copy(podAnnotations, gw.spec.Annotations)

	mount := func(name, path string) *corev1ac.VolumeMountApplyConfiguration {
		return corev1ac.VolumeMount().WithName(name).WithMountPath(path)
	}
	container := corev1ac.Container().
		WithName(gatewayContainerName).
		WithImage(cp.Release.ProxyImage(cp.Hub)).
		WithArgs("proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
			"--proxyLogLevel=warning", "--proxyComponentLogLevel=misc:error",
			"--log_output_level=default:info").
		WithPorts(gatewayContainerPorts(gw)...).
		WithReadinessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/healthz/ready").
				WithPort(intstr.FromInt32(gatewayStatusPort)).WithScheme(corev1.URISchemeHTTP)).
			WithInitialDelaySeconds(1).WithPeriodSeconds(2).WithTimeoutSeconds(1).
			WithSuccessThreshold(1).WithFailureThreshold(30)).
		WithEnv(env...).
		WithResources(cp.gatewayResources(gw)).
		WithSecurityContext(restrictedSecurityContext().WithPrivileged(false)).
		WithVolumeMounts(
			mount("workload-socket", "/var/run/secrets/workload-spiffe-uds"),
			mount("credential-socket", "/var/run/secrets/credential-uds"),
			mount("workload-certs", "/var/run/secrets/workload-spiffe-credentials"),
			mount("istio-envoy", "/etc/istio/proxy"),
			mount("config-volume", "/etc/istio/config"),
			mount("istiod-ca-cert", "/var/run/secrets/istio"),
			mount("istio-token", "/var/run/secrets/tokens").WithReadOnly(true),
			mount("istio-data", "/var/lib/istio/data"),
			mount("podinfo", "/etc/istio/pod"),
		)

	emptyDir := func(name string) *corev1ac.VolumeApplyConfiguration {
		return corev1ac.Volume().WithName(name).WithEmptyDir(corev1ac.EmptyDirVolumeSource())
	}
	downward := func(path, fieldPath string) *corev1ac.DownwardAPIVolumeFileApplyConfiguration {
		// The items list is atomic: the API version the server would default is set here,
		// or the applied and live lists never compare equal.
		return corev1ac.DownwardAPIVolumeFile().WithPath(path).
			WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath(fieldPath))
	}
	pod := corev1ac.PodSpec().
		WithServiceAccountName(gw.Name).
		WithContainers(container).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)).
			// Lets the unprivileged proxy bind ports below 1024 (a namespaced, safe sysctl).
			WithSysctls(corev1ac.Sysctl().WithName("net.ipv4.ip_unprivileged_port_start").WithValue("0"))).
		WithVolumes(
			emptyDir("workload-socket"),
			emptyDir("credential-socket"),
			emptyDir("workload-certs"),
			corev1ac.Volume().WithName("istiod-ca-cert").WithConfigMap(corev1ac.ConfigMapVolumeSource().
				WithName("istio-ca-root-cert")),
			corev1ac.Volume().WithName("podinfo").WithDownwardAPI(corev1ac.DownwardAPIVolumeSource().
				WithItems(downward("labels", "metadata.labels"), downward("annotations", "metadata.annotations"))),
			emptyDir("istio-envoy"),
			emptyDir("istio-data"),
			corev1ac.Volume().WithName("istio-token").WithProjected(corev1ac.ProjectedVolumeSource().
				WithSources(corev1ac.VolumeProjection().WithServiceAccountToken(
					corev1ac.ServiceAccountTokenProjection().WithAudience("istio-ca").
						WithExpirationSeconds(43200).WithPath("istio-token")))),
			corev1ac.Volume().WithName("config-volume").WithConfigMap(corev1ac.ConfigMapVolumeSource().
				WithName(gw.meshConfigMapName()).WithOptional(true)),
		)
	schedule(pod, gw.spec.NodeSelector, gw.spec.Tolerations, gw.spec.Affinity)

	spec := appsv1ac.DeploymentSpec().
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(gw.selector())).
		WithStrategy(surgeStrategy()).
		WithTemplate(corev1ac.PodTemplateSpec().
			WithLabels(withUserLabels(podLabels, gw.spec.Labels)).
			WithAnnotations(podAnnotations).
			WithSpec(pod))
	// With an autoscaler the HPA owns the replica count; setting it here would fight it.
	spec.Replicas, _ = gw.scaling()

	return appsv1ac.Deployment(gw.Name, gw.Namespace).
		WithLabels(cp.gatewayLabels(gw)).
		WithOwnerReferences(cp.ownerReference()).
		WithSpec(spec), nil
}

// gatewayKinds are the kinds of a gateway's objects, all named after it.
var gatewayKinds = map[string]bool{
	"ServiceAccount": true, "Role": true, "RoleBinding": true, "Deployment": true,
	"Service": true, "HorizontalPodAutoscaler": true, "PodDisruptionBudget": true,
}

// GatewayOf returns the gateway a rendered object belongs to, or nil for the control
// plane's own objects. istiod's objects of these kinds cannot share a gateway's name: the
// schema reserves their names.
func (cp *ControlPlane) GatewayOf(o Object) *Gateway {
	if o.GetKind() == nil || !gatewayKinds[*o.GetKind()] || o.GetName() == nil || o.GetNamespace() == nil {
		return nil
	}
	for i := range cp.Gateways {
		if gw := &cp.Gateways[i]; gw.Name == *o.GetName() && gw.Namespace == *o.GetNamespace() {
			return gw
		}
	}
	return nil
}
