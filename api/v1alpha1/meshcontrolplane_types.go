package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Profile selects the defaults an install starts from, as istioctl's profiles do.
// +kubebuilder:validation:Enum=default;demo;minimal
type Profile string

const (
	// ProfileDefault is the production profile: an autoscaled istiod with production resources.
	ProfileDefault Profile = "default"
	// ProfileDemo trades resources for observability: one small istiod, access logs on and
	// every request traced.
	ProfileDemo Profile = "demo"
	// ProfileMinimal installs istiod only (no gateways, once gateways exist).
	ProfileMinimal Profile = "minimal"
)

// MeshControlPlaneSpec is the desired state of an Istio control plane.
// +kubebuilder:validation:XValidation:rule="!(has(self.telemetry) && has(self.telemetry.accessLogging) && has(self.meshConfig) && (has(self.meshConfig.accessLogFile) || has(self.meshConfig.accessLogEncoding)))",message="set access logging in spec.telemetry.accessLogging or in spec.meshConfig.accessLogFile and accessLogEncoding, not both: Istio ignores the mesh config's access log wherever a Telemetry configures access logging"
// +kubebuilder:validation:XValidation:rule="!(has(self.telemetry) && has(self.telemetry.tracing) && has(self.telemetry.tracing.samplingPercentage) && has(self.meshConfig) && has(self.meshConfig.tracing))",message="set the sampling percentage in spec.telemetry.tracing.samplingPercentage or in spec.meshConfig.tracing, not both: the Telemetry's rate replaces the mesh default"
type MeshControlPlaneSpec struct {
	// version is the Istio release to install. Only the releases meshplane supports are
	// accepted (the newest patch of each of the three newest minors); it defaults to the newest.
	// +kubebuilder:validation:Enum="1.31.1";"1.30.3";"1.29.6"
	// +kubebuilder:default="1.31.1"
	// +optional
	Version string `json:"version,omitempty"`

	// hub is the registry and repository prefix the Istio images are pulled from: istiod runs
	// <hub>/pilot:<version> and proxies run <hub>/proxyv2:<version>.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=200
	// +kubebuilder:validation:Pattern=`^[a-zA-Z0-9]([a-zA-Z0-9._/:-]*[a-zA-Z0-9])?$`
	// +kubebuilder:default="docker.io/istio"
	// +optional
	Hub string `json:"hub,omitempty"`

	// profile selects the defaults the install starts from: "default" (production),
	// "demo" (small, access logs and full tracing) or "minimal" (istiod only).
	// +kubebuilder:default=default
	// +optional
	Profile Profile `json:"profile,omitempty"`

	// namespace is where the control plane runs. It is created when absent and cannot be
	// changed afterwards: create a new MeshControlPlane to move a control plane.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="namespace is immutable; create a new MeshControlPlane to move the control plane"
	// +kubebuilder:validation:XValidation:rule="!(self in ['kube-system', 'kube-public', 'kube-node-lease', 'default'])",message="namespace must not be kube-system, kube-public, kube-node-lease or default; use a dedicated namespace such as istio-system"
	// +kubebuilder:default=istio-system
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// revision names this control plane so several can run side by side (canary upgrades).
	// Its objects get a "-<revision>" suffix and workloads select it with the label
	// istio.io/rev=<revision>. Empty means the default revision.
	// +kubebuilder:validation:MaxLength=56
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self != 'default'",message="revision \"default\" is reserved; leave revision empty for the default revision"
	// +optional
	Revision string `json:"revision,omitempty"`

	// meshConfig holds the mesh-wide settings users set most, rendered into the "istio"
	// ConfigMap that istiod and every proxy read.
	// +optional
	MeshConfig *MeshConfig `json:"meshConfig,omitempty"`

	// pilot configures the istiod Deployment: scale, resources, scheduling and extra env.
	// +optional
	Pilot *PilotSpec `json:"pilot,omitempty"`

	// sidecarInjector configures the sidecars the operator injects into this revision's pods.
	// +optional
	SidecarInjector *SidecarInjectorSpec `json:"sidecarInjector,omitempty"`

	// gateways are the ingress and egress gateways this control plane runs: Envoy proxies
	// (<hub>/proxyv2:<version>) that Istio Gateway resources select with the labels
	// app=<name> and istio=<name without an "istio-" prefix>. Each may live in any namespace.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=name
	// +optional
	Gateways []GatewaySpec `json:"gateways,omitempty"`

	// security sets mesh-wide mutual TLS and the certificate authority istiod signs workload
	// certificates with.
	// +optional
	Security *SecuritySpec `json:"security,omitempty"`

	// telemetry configures the mesh's observability with Istio's Telemetry API: access logs,
	// tracing to a Zipkin or OpenTelemetry collector, and the annotations Prometheus finds
	// metrics by. Access logging and tracing are rendered as the mesh-wide Telemetry
	// "mesh-default" ("mesh-default-<revision>") in the control plane's namespace, with the
	// collector as a meshConfig extension provider; namespace and workload Telemetry
	// resources still override it.
	// +optional
	Telemetry *TelemetrySpec `json:"telemetry,omitempty"`
}

// TelemetrySpec configures access logs, tracing and metrics scraping for the whole mesh.
type TelemetrySpec struct {
	// accessLogging turns Envoy's access logs to standard output on or off for every proxy,
	// in the mesh-wide Telemetry. It replaces spec.meshConfig.accessLogFile and
	// accessLogEncoding (and the demo profile's access logs), which cannot be set with it.
	// +optional
	AccessLogging *AccessLogging `json:"accessLogging,omitempty"`

	// tracing sends spans to a Zipkin or OpenTelemetry collector.
	// +optional
	Tracing *TelemetryTracing `json:"tracing,omitempty"`

	// metrics configures how Prometheus finds the mesh's metrics.
	// +optional
	Metrics *TelemetryMetrics `json:"metrics,omitempty"`
}

// AccessLogging configures the proxies' access logs.
type AccessLogging struct {
	// enabled writes an access log line per request to each proxy's standard output
	// (true, the default when accessLogging is set) or turns access logs off mesh-wide.
	// +optional
	Enabled *bool `json:"enabled,omitempty"`

	// encoding of the lines: TEXT (default: Envoy's text format, Istio's built-in "envoy"
	// provider) or JSON (Istio's default JSON fields, the extension provider "envoy-json").
	// +optional
	Encoding AccessLogEncoding `json:"encoding,omitempty"`
}

// TelemetryTracing sends spans to one collector.
// +kubebuilder:validation:XValidation:rule="[has(self.zipkin), has(self.openTelemetry)].filter(x, x).size() == 1",message="tracing must set exactly one of zipkin or openTelemetry: the collector the proxies send spans to"
type TelemetryTracing struct {
	// zipkin sends spans in Zipkin's format (to Zipkin, or Jaeger's Zipkin endpoint), as the
	// meshConfig extension provider "zipkin".
	// +optional
	Zipkin *TracingCollector `json:"zipkin,omitempty"`

	// openTelemetry sends spans over OTLP/gRPC to an OpenTelemetry collector, as the
	// meshConfig extension provider "otel-tracing".
	// +optional
	OpenTelemetry *TracingCollector `json:"openTelemetry,omitempty"`

	// samplingPercentage is the percentage of requests traced when no upstream decision was
	// made, from "0" to "100" with up to two decimals (for example "1" or "0.05"). Unset, the
	// mesh default applies: spec.meshConfig.tracing.samplingPercentage, else 1 (100 in the
	// demo profile), which pods may override with proxy.istio.io/config.
	// +kubebuilder:validation:MaxLength=6
	// +kubebuilder:validation:XValidation:rule="self.matches('^(100([.]0{1,2})?|[0-9]{1,2}([.][0-9]{1,2})?)$')",message="samplingPercentage must be a number from 0 to 100 with at most two decimals, such as \"1\" or \"0.05\""
	// +optional
	SamplingPercentage string `json:"samplingPercentage,omitempty"`
}

// TracingCollector is where proxies send spans.
type TracingCollector struct {
	// service is the collector's fully qualified host name as the mesh knows it: a Kubernetes
	// Service (otel-collector.observability.svc.cluster.local) or a ServiceEntry host,
	// prefixed with "<namespace>/" only when the host alone is ambiguous.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)+$')",message="service must be the collector's fully qualified host name, such as otel-collector.observability.svc.cluster.local, optionally prefixed with <namespace>/"
	// +required
	Service string `json:"service"`

	// port the collector receives spans on (Zipkin usually listens on 9411, OTLP/gRPC on 4317).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +required
	Port int32 `json:"port"`
}

// TelemetryMetrics configures metrics scraping.
type TelemetryMetrics struct {
	// prometheus configures how Prometheus discovers the mesh's metrics.
	// +optional
	Prometheus *PrometheusMetrics `json:"prometheus,omitempty"`
}

// PrometheusMetrics configures Prometheus' annotation-based discovery.
type PrometheusMetrics struct {
	// scrapeAnnotations (true, the default, as upstream Istio) puts the prometheus.io/scrape,
	// port and path annotations on istiod's and the gateways' pods, and sets meshConfig
	// enablePrometheusMerge so injected pods are annotated for the metrics their agent
	// merges on port 15020. Set it to false when Prometheus Operator monitors scrape the
	// mesh: no pod gets these annotations, and applications keep their own. Changing it
	// rolls istiod and the gateways.
	// +optional
	ScrapeAnnotations *bool `json:"scrapeAnnotations,omitempty"`
}

// SecuritySpec configures mesh-wide mutual TLS and the certificate authority.
type SecuritySpec struct {
	// mtls sets the mesh-wide mutual TLS mode.
	// +optional
	MTLS *MTLSSpec `json:"mtls,omitempty"`

	// certificateAuthority is the CA istiod signs workload certificates with (default:
	// selfSigned, istiod's own).
	// +optional
	CertificateAuthority *CertificateAuthority `json:"certificateAuthority,omitempty"`
}

// MTLSMode is Istio's PeerAuthentication mutual TLS mode.
// +kubebuilder:validation:Enum=STRICT;PERMISSIVE;DISABLE
type MTLSMode string

const (
	// MTLSModeStrict accepts only mutual TLS traffic.
	MTLSModeStrict MTLSMode = "STRICT"
	// MTLSModePermissive accepts both mutual TLS and plain text traffic.
	MTLSModePermissive MTLSMode = "PERMISSIVE"
	// MTLSModeDisable accepts plain text traffic only.
	MTLSModeDisable MTLSMode = "DISABLE"
)

// MTLSSpec is the mesh-wide mutual TLS setting.
type MTLSSpec struct {
	// mode is STRICT, PERMISSIVE or DISABLE, rendered as the mesh-wide PeerAuthentication
	// "default" in the control plane's namespace (the root namespace). Unset renders none,
	// which Istio treats as PERMISSIVE; namespace and workload PeerAuthentications still
	// override it.
	// +optional
	Mode MTLSMode `json:"mode,omitempty"`
}

// CertificateAuthority selects the CA istiod signs workload certificates with: exactly one
// of selfSigned, plugged or certManager.
// +kubebuilder:validation:XValidation:rule="[has(self.selfSigned), has(self.plugged), has(self.certManager)].filter(x, x).size() == 1",message="certificateAuthority must set exactly one of selfSigned, plugged or certManager"
type CertificateAuthority struct {
	// selfSigned lets istiod generate and run its own root CA (the default).
	// +optional
	SelfSigned *SelfSignedCA `json:"selfSigned,omitempty"`

	// plugged makes istiod sign with a CA the user provides in a Secret of the control
	// plane's namespace, in the cacerts layout (ca-cert.pem, ca-key.pem, cert-chain.pem,
	// root-cert.pem). The operator validates it on every change and never modifies it; while
	// it is invalid, istiod keeps its previous configuration.
	// +optional
	Plugged *PluggedCA `json:"plugged,omitempty"`

	// certManager has cert-manager issue istiod's intermediate CA from an Issuer or
	// ClusterIssuer; the operator turns the issued Secret into the cacerts layout and rolls
	// istiod when the CA changes. Control planes of several clusters sharing one issuer's
	// root trust each other (multi-primary).
	// +optional
	CertManager *CertManagerCA `json:"certManager,omitempty"`
}

// SelfSignedCA is istiod's own CA. It has no settings.
type SelfSignedCA struct{}

// PluggedCA is a CA the user provides.
type PluggedCA struct {
	// secretName is the Secret in the control plane's namespace holding the CA (default
	// "cacerts", the name upstream Istio reads).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +kubebuilder:default=cacerts
	// +optional
	SecretName string `json:"secretName,omitempty"`
}

// IssuerKind is the kind of a cert-manager issuer.
// +kubebuilder:validation:Enum=Issuer;ClusterIssuer
type IssuerKind string

// CertManagerCA is an intermediate CA cert-manager issues for istiod.
type CertManagerCA struct {
	// issuerRef is the cert-manager issuer that signs istiod's CA certificate; it must be
	// able to issue CA certificates (a CA or Vault issuer, for example). An Issuer must live in
	// the control plane's namespace.
	// +required
	IssuerRef IssuerReference `json:"issuerRef"`

	// duration is how long the CA certificate is valid (cert-manager's default: 90 days).
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`

	// renewBefore is how long before expiry cert-manager renews the CA certificate
	// (cert-manager's default: a third of its duration).
	// +optional
	RenewBefore *metav1.Duration `json:"renewBefore,omitempty"`
}

// IssuerReference names a cert-manager issuer.
type IssuerReference struct {
	// name of the Issuer or ClusterIssuer.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// kind is Issuer (in the control plane's namespace, the default) or ClusterIssuer.
	// +kubebuilder:default=Issuer
	// +optional
	Kind IssuerKind `json:"kind,omitempty"`

	// group of the issuer's API (default cert-manager.io; external issuers have their own).
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:default=cert-manager.io
	// +optional
	Group string `json:"group,omitempty"`
}

// GatewayType says which way a gateway carries traffic.
// +kubebuilder:validation:Enum=Ingress;Egress
type GatewayType string

const (
	// GatewayTypeIngress receives traffic from outside the mesh (default Service: LoadBalancer).
	GatewayTypeIngress GatewayType = "Ingress"
	// GatewayTypeEgress sends the mesh's traffic out (default Service: ClusterIP).
	GatewayTypeEgress GatewayType = "Egress"
)

// GatewaySpec is one ingress or egress gateway.
// +kubebuilder:validation:XValidation:rule="!(has(self.replicas) && has(self.autoscaling))",message="set either replicas (a fixed count) or autoscaling on a gateway, not both"
type GatewaySpec struct {
	// name of the gateway: its Deployment, Service, ServiceAccount and Role are called so,
	// and its pods carry app=<name>. It must not be taken by istiod's own objects ("istiod",
	// "istiod-<revision>", "istio-reader-service-account").
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="self != 'istiod' && !self.startsWith('istiod-') && !self.startsWith('istio-reader-service-account')",message="gateway name must not be istiod, start with istiod- or start with istio-reader-service-account: those names belong to the control plane's own objects"
	// +required
	Name string `json:"name"`

	// type is Ingress or Egress.
	// +required
	Type GatewayType `json:"type"`

	// namespace the gateway runs in (default: the control plane's namespace). It is created
	// when absent and never deleted by the operator.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +kubebuilder:validation:XValidation:rule="!(self in ['kube-system', 'kube-public', 'kube-node-lease'])",message="a gateway must not run in kube-system, kube-public or kube-node-lease"
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// revision is the control plane revision the gateway's proxies connect to (their
	// istio.io/rev); it defaults to this control plane's revision. "default" is the default
	// revision. The revision's istiod must run in this control plane's namespace.
	// +kubebuilder:validation:MaxLength=56
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +optional
	Revision string `json:"revision,omitempty"`

	// replicas fixes the number of gateway pods and turns autoscaling off.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// autoscaling runs the gateway under a HorizontalPodAutoscaler; without replicas or
	// autoscaling it autoscales from 1 to 5 pods at 80% CPU.
	// +optional
	Autoscaling *Autoscaling `json:"autoscaling,omitempty"`

	// service configures the gateway's Service.
	// +optional
	Service *GatewayService `json:"service,omitempty"`

	// resources of the istio-proxy container (default: requests 100m CPU and 128Mi memory,
	// limits 2 CPUs and 1Gi; the demo profile requests 10m and 40Mi).
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// labels are added to the gateway's pods and Service. app, istio, istio.io/rev,
	// sidecar.istio.io/inject and meshplane's own labels are set by the operator.
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, !(k in ['app', 'istio', 'istio.io/rev', 'sidecar.istio.io/inject', 'app.kubernetes.io/managed-by', 'mesh.meshplane.io/control-plane', 'mesh.meshplane.io/gateway']))",message="gateway labels must not set app, istio, istio.io/rev, sidecar.istio.io/inject, app.kubernetes.io/managed-by, mesh.meshplane.io/control-plane or mesh.meshplane.io/gateway: the operator sets them"
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 253 && k.matches('^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'))",message="gateway label keys must be [prefix/]name, as Kubernetes requires"
	// +optional
	Labels map[string]LabelValue `json:"labels,omitempty"`

	// annotations are added to the gateway's pods and Service (cloud load balancer settings,
	// for one); they override the operator's pod annotations of the same name.
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 253 && k.matches('^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$'))",message="gateway annotation keys must be [prefix/]name, as Kubernetes requires"
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`

	// nodeSelector constrains which nodes the gateway runs on.
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations let the gateway run on tainted nodes.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// affinity sets the gateway's scheduling affinity.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
}

// LabelValue is the value of a Kubernetes label: at most 63 letters, digits, '-', '_' or
// '.', starting and ending with a letter or digit.
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`
type LabelValue string

// GatewayServiceType is the type of a gateway's Service.
// +kubebuilder:validation:Enum=LoadBalancer;ClusterIP;NodePort
type GatewayServiceType string

// GatewayService configures a gateway's Service.
type GatewayService struct {
	// type is LoadBalancer (the ingress default), ClusterIP (the egress default) or NodePort.
	// +optional
	Type GatewayServiceType `json:"type,omitempty"`

	// ports the Service exposes. The default for ingress: status-port 15021, http2 80->8080,
	// https 443->8443; for egress: http2 80->8080, https 443->8443. Setting ports replaces
	// the defaults.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	// +kubebuilder:validation:XValidation:rule="self.all(p, self.exists_one(q, q.port == p.port && q.protocol == p.protocol))",message="gateway service ports must be unique: the same port number appears twice with the same protocol"
	// +listType=map
	// +listMapKey=name
	// +optional
	Ports []GatewayPort `json:"ports,omitempty"`
}

// GatewayPort is one port of a gateway's Service.
type GatewayPort struct {
	// name of the port; Istio reads the protocol from its prefix (http2-, https-, tcp-, tls-...).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Name string `json:"name"`

	// port the Service listens on.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +required
	Port int32 `json:"port"`

	// targetPort is the proxy's port behind it (default: port). The gateway's pods may bind
	// ports below 1024.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	// +optional
	TargetPort int32 `json:"targetPort,omitempty"`

	// protocol is TCP (default), UDP or SCTP.
	// +kubebuilder:validation:Enum=TCP;UDP;SCTP
	// +kubebuilder:default=TCP
	// +optional
	Protocol corev1.Protocol `json:"protocol,omitempty"`
}

// SidecarMode says how the proxy runs next to the application.
// +kubebuilder:validation:Enum=Sidecar;NativeSidecar
type SidecarMode string

const (
	// SidecarModeSidecar runs istio-proxy as a regular container, with the istio-init init
	// container setting up traffic redirection.
	SidecarModeSidecar SidecarMode = "Sidecar"
	// SidecarModeNativeSidecar runs istio-proxy as a Kubernetes native sidecar (an init
	// container with restartPolicy Always), so it starts before and stops after the
	// application, and Jobs complete.
	SidecarModeNativeSidecar SidecarMode = "NativeSidecar"
)

// ProxyLogLevel is an Envoy log level.
// +kubebuilder:validation:Enum=trace;debug;info;warning;error;critical;off
type ProxyLogLevel string

// SidecarInjectorSpec configures sidecar injection for a revision.
type SidecarInjectorSpec struct {
	// mode is Sidecar (default) or NativeSidecar.
	// +optional
	Mode SidecarMode `json:"mode,omitempty"`

	// resources of the injected istio-proxy container (default: requests 100m CPU and
	// 128Mi memory, limits 2 CPUs and 1Gi). Pods override them with the
	// sidecar.istio.io/proxyCPU, proxyMemory, proxyCPULimit and proxyMemoryLimit annotations.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// logLevel of the injected proxies (default warning); pods override it with the
	// sidecar.istio.io/logLevel annotation.
	// +optional
	LogLevel ProxyLogLevel `json:"logLevel,omitempty"`

	// rewriteAppHTTPProbers sends applications' HTTP probes through the proxy's agent, so
	// they keep working under STRICT mTLS (default true); pods override it with the
	// sidecar.istio.io/rewriteAppHTTPProbers annotation.
	// +optional
	RewriteAppHTTPProbers *bool `json:"rewriteAppHTTPProbers,omitempty"`
}

// AccessLogEncoding is the format of Envoy's access log lines.
// +kubebuilder:validation:Enum=TEXT;JSON
type AccessLogEncoding string

// OutboundTrafficPolicyMode says whether proxies may reach hosts outside the mesh registry.
// +kubebuilder:validation:Enum=ALLOW_ANY;REGISTRY_ONLY
type OutboundTrafficPolicyMode string

// MeshConfig is the typed subset of Istio's MeshConfig that meshplane manages.
type MeshConfig struct {
	// accessLogFile is where proxies write access logs; "/dev/stdout" turns them on for
	// kubectl logs, empty turns them off (the demo profile defaults to /dev/stdout).
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[^\x00-\x1F\x7F-\x9F]*$`
	// +optional
	AccessLogFile *string `json:"accessLogFile,omitempty"`

	// accessLogEncoding is TEXT (default) or JSON.
	// +optional
	AccessLogEncoding AccessLogEncoding `json:"accessLogEncoding,omitempty"`

	// trustDomain is the SPIFFE trust domain of workload identities (default "cluster.local").
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	// +optional
	TrustDomain string `json:"trustDomain,omitempty"`

	// outboundTrafficPolicy controls traffic to destinations unknown to the mesh.
	// +optional
	OutboundTrafficPolicy *OutboundTrafficPolicy `json:"outboundTrafficPolicy,omitempty"`

	// tracing sets how much traffic proxies trace.
	// +optional
	Tracing *Tracing `json:"tracing,omitempty"`

	// defaultConfig is the proxy configuration every sidecar and gateway starts from.
	// +optional
	DefaultConfig *ProxyConfig `json:"defaultConfig,omitempty"`
}

// OutboundTrafficPolicy mirrors Istio's meshConfig.outboundTrafficPolicy.
type OutboundTrafficPolicy struct {
	// mode is ALLOW_ANY (default: unknown hosts are passed through) or REGISTRY_ONLY
	// (only services in the mesh registry or ServiceEntries are reachable).
	// +required
	Mode OutboundTrafficPolicyMode `json:"mode"`
}

// Tracing configures request tracing.
type Tracing struct {
	// samplingPercentage is the percentage of requests traced, from "0" to "100" with up to
	// two decimals (for example "1" or "0.05"). Defaults to 1, or 100 in the demo profile.
	// +kubebuilder:validation:MaxLength=6
	// +kubebuilder:validation:Pattern=`^(100(\.0{1,2})?|[0-9]{1,2}(\.[0-9]{1,2})?)$`
	// +required
	SamplingPercentage string `json:"samplingPercentage"`
}

// ProxyConfig is the typed subset of Istio's ProxyConfig that meshplane manages.
type ProxyConfig struct {
	// holdApplicationUntilProxyStarts delays application containers until the sidecar is
	// ready, so applications never start without a working network.
	// +optional
	HoldApplicationUntilProxyStarts *bool `json:"holdApplicationUntilProxyStarts,omitempty"`

	// terminationDrainDuration is how long a stopping proxy keeps draining connections.
	// +optional
	TerminationDrainDuration *metav1.Duration `json:"terminationDrainDuration,omitempty"`

	// proxyMetadata sets environment variables of every proxy (Istio's proxy feature flags).
	// +kubebuilder:validation:MaxProperties=64
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) <= 128 && k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))",message="proxyMetadata keys must be environment variable names (letters, digits and underscores, at most 128 characters)"
	// +optional
	ProxyMetadata map[string]ProxyMetadataValue `json:"proxyMetadata,omitempty"`
}

// ProxyMetadataValue is the value of a proxy environment variable: printable text.
// +kubebuilder:validation:MaxLength=1024
// +kubebuilder:validation:Pattern=`^[^\x00-\x1F\x7F-\x9F]*$`
type ProxyMetadataValue string

// PilotSpec configures istiod.
// +kubebuilder:validation:XValidation:rule="!(has(self.replicas) && has(self.autoscaling))",message="set either pilot.replicas (a fixed count) or pilot.autoscaling, not both"
type PilotSpec struct {
	// replicas fixes the number of istiod replicas and turns autoscaling off.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`

	// autoscaling runs istiod under a HorizontalPodAutoscaler. The default profile
	// autoscales from 1 to 5 replicas at 80% CPU when neither replicas nor autoscaling is set.
	// +optional
	Autoscaling *Autoscaling `json:"autoscaling,omitempty"`

	// resources of the discovery container (default profile: requests 500m CPU, 2Gi memory).
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`

	// nodeSelector constrains which nodes istiod runs on.
	// +kubebuilder:validation:MaxProperties=32
	// +optional
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`

	// tolerations let istiod run on tainted nodes.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`

	// affinity sets istiod's scheduling affinity.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`

	// env adds environment variables to istiod (Istio's PILOT_* feature flags), overriding
	// defaults of the same name. Variables the operator derives from the spec cannot be set.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.all(e, !(e.name in ['REVISION', 'POD_NAME', 'POD_NAMESPACE', 'SERVICE_ACCOUNT', 'KUBECONFIG', 'CLUSTER_ID', 'PILOT_CERT_PROVIDER']))",message="pilot.env must not set REVISION, POD_NAME, POD_NAMESPACE, SERVICE_ACCOUNT, KUBECONFIG, CLUSTER_ID or PILOT_CERT_PROVIDER: the operator derives them from the spec"
	// +listType=map
	// +listMapKey=name
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
}

// Autoscaling configures a HorizontalPodAutoscaler.
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",message="autoscaling.minReplicas must not exceed autoscaling.maxReplicas"
type Autoscaling struct {
	// minReplicas is the lower bound (default 1).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`

	// maxReplicas is the upper bound (default 5).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`

	// targetCPUUtilizationPercentage is the average CPU use, as a percentage of requests,
	// the autoscaler aims for (default 80).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	TargetCPUUtilizationPercentage *int32 `json:"targetCPUUtilizationPercentage,omitempty"`
}

// Condition types of a MeshControlPlane. Ready is the summary to wait on.
const (
	// ConditionReady is True when every component runs the current generation and is available.
	ConditionReady = "Ready"
	// ConditionReconciled is True when the last apply of this generation succeeded.
	ConditionReconciled = "Reconciled"
	// ConditionProgressing is True while a rollout of the current generation is in flight.
	ConditionProgressing = "Progressing"
	// ConditionStalled is True when the operator cannot proceed without a change by the user.
	ConditionStalled = "Stalled"
	// ConditionReconciling is True while the operator still works towards the current
	// generation (a rollout, a wait for cert-manager, a retried apply). It is kstatus'
	// "Reconciling" (sigs.k8s.io/cli-utils/pkg/kstatus): never True together with Stalled,
	// so kstatus reads InProgress or Failed whatever the order of the conditions.
	ConditionReconciling = "Reconciling"
	// ConditionCAWarning is True when the plugged or cert-manager CA material istiod uses is
	// valid but needs attention: a certificate in the last sixth of its lifetime (at most 30
	// days before it expires), or a ca-cert.pem holding more than the signing certificate. It
	// is absent with istiod's self-signed CA, which istiod renews itself.
	ConditionCAWarning = "CertificateAuthorityWarning"
)

// Condition reasons.
const (
	ReasonAvailable          = "Available"
	ReasonComponentsNotReady = "ComponentsNotReady"
	ReasonApplied            = "Applied"
	ReasonApplyFailed        = "ApplyFailed"
	ReasonRollingOut         = "RollingOut"
	ReasonRolledOut          = "RolledOut"
	ReasonResourceConflict   = "ResourceConflict"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonNoProblems         = "NoProblems"
	ReasonReconcileError     = "ReconcileError"
	// ReasonUpToDate: Reconciling is False because nothing is left to do for this generation.
	ReasonUpToDate = "UpToDate"
	// ReasonInvalidCA: the plugged or issued CA material cannot be used (or is missing).
	ReasonInvalidCA = "InvalidCA"
	// ReasonIssuerNotFound: the cert-manager issuer of spec.security.certificateAuthority does
	// not exist (or cert-manager is not installed).
	ReasonIssuerNotFound = "IssuerNotFound"
	// ReasonCertificateNotReady: cert-manager has not issued istiod's CA certificate yet.
	ReasonCertificateNotReady = "CertificateNotReady"
	// ReasonNeedsAttention and ReasonNoWarnings are the reasons of CertificateAuthorityWarning.
	ReasonNeedsAttention = "NeedsAttention"
	ReasonNoWarnings     = "NoWarnings"
)

// CA modes reported in status.certificateAuthority.mode.
const (
	CAModeSelfSigned  = "SelfSigned"
	CAModePlugged     = "Plugged"
	CAModeCertManager = "CertManager"
)

// CertificateAuthorityStatus describes the CA istiod is configured with: public facts only.
type CertificateAuthorityStatus struct {
	// mode is SelfSigned, Plugged or CertManager.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Mode string `json:"mode,omitempty"`
	// secretName is the cacerts Secret istiod mounts (empty for SelfSigned).
	// +kubebuilder:validation:MaxLength=253
	// +optional
	SecretName string `json:"secretName,omitempty"`
	// rootSubject is the subject of the mesh's root certificate.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	RootSubject string `json:"rootSubject,omitempty"`
	// rootFingerprint is the root certificate's SHA-256 fingerprint, as
	// `openssl x509 -noout -fingerprint -sha256` prints it.
	// +kubebuilder:validation:MaxLength=128
	// +optional
	RootFingerprint string `json:"rootFingerprint,omitempty"`
	// notAfter is when the CA certificate istiod signs with expires.
	// +optional
	NotAfter *metav1.Time `json:"notAfter,omitempty"`
}

// ComponentStatus reports one workload of the control plane.
type ComponentStatus struct {
	// name of the component's Deployment, for example "istiod", "istiod-canary" or a
	// gateway's name.
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
	// component is the part of Istio it runs: "Pilot", "IngressGateway" or "EgressGateway".
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Component string `json:"component,omitempty"`
	// namespace of the Deployment.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// ready is true when the Deployment runs the desired pod template on all its replicas
	// and is available.
	// +optional
	Ready bool `json:"ready"`
	// replicas is the number of pods the Deployment wants.
	// +optional
	Replicas int32 `json:"replicas"`
	// readyReplicas is the number of those pods that are ready.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
}

// GatewayStatus reports one gateway.
type GatewayStatus struct {
	// name of the gateway.
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// namespace the gateway runs in.
	// +kubebuilder:validation:MaxLength=63
	// +optional
	Namespace string `json:"namespace,omitempty"`
	// type is Ingress or Egress.
	// +optional
	Type GatewayType `json:"type,omitempty"`
	// ready is true when the gateway's Deployment runs the desired pod template on all its
	// replicas and is available. A LoadBalancer still waiting for an address does not hold
	// it back.
	// +optional
	Ready bool `json:"ready"`
	// replicas is the number of pods the Deployment wants.
	// +optional
	Replicas int32 `json:"replicas"`
	// readyReplicas is the number of those pods that are ready.
	// +optional
	ReadyReplicas int32 `json:"readyReplicas"`
	// address clients reach the gateway at: the load balancer's IP or hostname once one is
	// assigned (empty until then), else the Service's cluster IP.
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Address string `json:"address,omitempty"`
}

// RevisionStatus is a control plane revision in use.
type RevisionStatus struct {
	// name of the revision ("default" for the default revision); workloads select it with
	// the istio.io/rev label.
	// +kubebuilder:validation:MaxLength=63
	// +required
	Name string `json:"name"`
	// version is the Istio release this revision runs.
	// +kubebuilder:validation:MaxLength=32
	// +optional
	Version string `json:"version,omitempty"`
	// ready is true when the revision's istiod is available.
	// +optional
	Ready bool `json:"ready"`
	// injectedPods is the number of pods currently running this revision's sidecar.
	// +optional
	InjectedPods int32 `json:"injectedPods"`
}

// MeshControlPlaneStatus is the observed state of a MeshControlPlane.
type MeshControlPlaneStatus struct {
	// observedGeneration is the generation the conditions describe: the operator has seen it
	// and acted on it, successfully or not (Reconciled says which). It starts at 0, so a
	// MeshControlPlane the operator has not seen yet reads as in progress, not as done.
	// +kubebuilder:default=0
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the summary), Reconciled, Progressing, Reconciling and Stalled.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// components reports each workload of the control plane.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=64
	// +optional
	Components []ComponentStatus `json:"components,omitempty"`

	// gateways reports each gateway of spec.gateways.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Gateways []GatewayStatus `json:"gateways,omitempty"`

	// revisions lists the control plane revisions in use.
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Revisions []RevisionStatus `json:"revisions,omitempty"`

	// certificateAuthority describes the CA istiod runs with (for plugged and certManager,
	// the last valid material; never key material).
	// +optional
	CertificateAuthority *CertificateAuthorityStatus `json:"certificateAuthority,omitempty"`
}

// MeshControlPlane installs and runs an Istio control plane (istiod and its configuration).
// Usually there is one, named "default".
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mcp,categories=meshplane
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=`.spec.version`
// +kubebuilder:printcolumn:name="Revision",type=string,JSONPath=`.spec.revision`
// +kubebuilder:printcolumn:name="Profile",type=string,JSONPath=`.spec.profile`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MeshControlPlane struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired control plane; every field has a default, so `spec: {}` installs
	// the newest supported Istio with the default profile.
	// +kubebuilder:default={}
	// +optional
	Spec MeshControlPlaneSpec `json:"spec"`

	// status is what the operator observed. The schema defaults it to observedGeneration 0
	// until the operator writes it, so kstatus and Argo CD never take an unseen
	// MeshControlPlane for a reconciled one.
	// +kubebuilder:default={}
	// +optional
	Status MeshControlPlaneStatus `json:"status,omitempty"`
}

// MeshControlPlaneList contains a list of MeshControlPlane.
// +kubebuilder:object:root=true
type MeshControlPlaneList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MeshControlPlane `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MeshControlPlane{}, &MeshControlPlaneList{})
}
