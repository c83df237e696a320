package render

import (
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"k8s.io/utils/ptr"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

const componentPilot = "Pilot"

// Defaults of the default profile, from upstream's istiod chart.
const (
	defaultMinReplicas = 1
	defaultMaxReplicas = 5
	defaultTargetCPU   = 80
)

func istiodServiceAccount(cp *ControlPlane) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(cp.IstiodName(), cp.Namespace).
		WithLabels(cp.labels(componentPilot)).
		WithOwnerReferences(cp.ownerReference())
}

// ReaderServiceAccountName is the multi-cluster reader identity. Upstream's base chart names
// it without a revision; meshplane suffixes named revisions so two revisions side by side do
// not compete for one object.
func (cp *ControlPlane) ReaderServiceAccountName() string {
	return cp.suffixed("istio-reader-service-account")
}

func readerServiceAccount(cp *ControlPlane) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(cp.ReaderServiceAccountName(), cp.Namespace).
		WithLabels(cp.labels("Base")).
		WithOwnerReferences(cp.ownerReference())
}

// istiodSelector selects this revision's istiod pods (upstream's Deployment selector).
func (cp *ControlPlane) istiodSelector() map[string]string {
	if cp.Revision == "" {
		return map[string]string{"istio": "pilot"}
	}
	return map[string]string{"app": "istiod", LabelIstioRev: cp.Revision}
}

func istiodService(cp *ControlPlane) *corev1ac.ServiceApplyConfiguration {
	// The default revision's Service matches on istio=pilot rather than the revision label,
	// as upstream's does, so it never picks up a canary revision's pods.
	selector := map[string]string{"app": "istiod", "istio": "pilot"}
	if cp.Revision != "" {
		selector = map[string]string{"app": "istiod", LabelIstioRev: cp.Revision}
	}
	port := func(name string, port, target int32) *corev1ac.ServicePortApplyConfiguration {
		return corev1ac.ServicePort().WithName(name).WithPort(port).
			WithTargetPort(intstr.FromInt32(target)).WithProtocol(corev1.ProtocolTCP)
	}
	return corev1ac.Service(cp.IstiodName(), cp.Namespace).
		WithLabels(cp.labels(componentPilot)).
		WithLabels(map[string]string{"app": "istiod", "istio": "pilot"}).
		WithOwnerReferences(cp.ownerReference()).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(selector).
			WithPorts(
				port("grpc-xds", 15010, 15010),
				port("https-dns", 15012, 15012),
				port("https-webhook", 443, 15017),
				port("http-monitoring", 15014, 15014),
			))
}

// fixedReplicas is istiod's replica count when no autoscaler runs it, else nil.
func (cp *ControlPlane) fixedReplicas() *int32 {
	p := cp.Owner.Spec.Pilot
	switch {
	case p != nil && p.Replicas != nil:
		return p.Replicas
	case p != nil && p.Autoscaling != nil:
		return nil
	case cp.Profile == meshv1alpha1.ProfileDemo:
		return ptr.To[int32](1)
	}
	return nil
}

// autoscaling is the resolved autoscaler of istiod, or nil with fixed replicas.
func (cp *ControlPlane) autoscaling() *meshv1alpha1.Autoscaling {
	if cp.fixedReplicas() != nil {
		return nil
	}
	var in *meshv1alpha1.Autoscaling
	if p := cp.Owner.Spec.Pilot; p != nil {
		in = p.Autoscaling
	}
	return resolveAutoscaling(in)
}

// resolveAutoscaling fills an autoscaler's unset fields with upstream's defaults (1 to 5
// replicas at 80% CPU).
func resolveAutoscaling(in *meshv1alpha1.Autoscaling) *meshv1alpha1.Autoscaling {
	as := meshv1alpha1.Autoscaling{
		MinReplicas:                    ptr.To[int32](defaultMinReplicas),
		MaxReplicas:                    ptr.To[int32](defaultMaxReplicas),
		TargetCPUUtilizationPercentage: ptr.To[int32](defaultTargetCPU),
	}
	if in != nil {
		if in.MinReplicas != nil {
			as.MinReplicas = in.MinReplicas
		}
		if in.MaxReplicas != nil {
			as.MaxReplicas = in.MaxReplicas
		}
		if in.TargetCPUUtilizationPercentage != nil {
			as.TargetCPUUtilizationPercentage = in.TargetCPUUtilizationPercentage
		}
		// A minimum above the default maximum raises the maximum rather than failing.
		if *as.MaxReplicas < *as.MinReplicas {
			as.MaxReplicas = as.MinReplicas
		}
	}
	return &as
}

func (cp *ControlPlane) istiodResources() *corev1ac.ResourceRequirementsApplyConfiguration {
	if p := cp.Owner.Spec.Pilot; p != nil && p.Resources != nil {
		rr := corev1ac.ResourceRequirements()
		if len(p.Resources.Requests) > 0 {
			rr.WithRequests(p.Resources.Requests)
		}
		if len(p.Resources.Limits) > 0 {
			rr.WithLimits(p.Resources.Limits)
		}
		return rr
	}
	cpu, mem := "500m", "2Gi"
	if cp.Profile == meshv1alpha1.ProfileDemo {
		cpu, mem = "10m", "100Mi"
	}
	return corev1ac.ResourceRequirements().WithRequests(corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(cpu),
		corev1.ResourceMemory: resource.MustParse(mem),
	})
}

func (cp *ControlPlane) istiodEnv() []*corev1ac.EnvVarApplyConfiguration {
	value := func(name, v string) *corev1ac.EnvVarApplyConfiguration {
		e := corev1ac.EnvVar().WithName(name)
		if v != "" { // the API drops empty values; sending one would never match the live object
			e.WithValue(v)
		}
		return e
	}
	field := func(name, path string) *corev1ac.EnvVarApplyConfiguration {
		return corev1ac.EnvVar().WithName(name).WithValueFrom(corev1ac.EnvVarSource().
			WithFieldRef(corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath(path)))
	}
	limit := func(name string, res corev1.ResourceName) *corev1ac.EnvVarApplyConfiguration {
		return corev1ac.EnvVar().WithName(name).WithValueFrom(corev1ac.EnvVarSource().
			WithResourceFieldRef(corev1ac.ResourceFieldSelector().WithResource("limits." + string(res)).
				WithDivisor(resource.MustParse("1"))))
	}
	env := []*corev1ac.EnvVarApplyConfiguration{
		value("REVISION", cp.RevisionLabel()),
		value("PILOT_CERT_PROVIDER", "istiod"),
		field("POD_NAME", "metadata.name"),
		field("POD_NAMESPACE", "metadata.namespace"),
		field("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		value("KUBECONFIG", "/var/run/secrets/remote/config"),
		value("CLUSTER_ID", "Kubernetes"),
		value("PILOT_TRACE_SAMPLING", cp.traceSampling()),
		value("PILOT_ENABLE_ANALYSIS", "false"),
		// meshplane serves injection itself and owns its configuration: an empty name
		// turns istiod's injection webhook patcher off.
		value("INJECTION_WEBHOOK_CONFIG_NAME", ""),
		// istiod serves validation: with a name its webhook controller runs and patches
		// caBundle and failurePolicy into the revision's istio-validator (current releases
		// select the configurations by their istio.io/rev label and only test the name for
		// being empty). Empty when no validator is rendered.
		value("VALIDATION_WEBHOOK_CONFIG_NAME", cp.validatorConfigName()),
		value("ISTIOD_CUSTOM_HOST", cp.istiodCustomHosts()),
		limit("GOMEMLIMIT", corev1.ResourceMemory),
		limit("GOMAXPROCS", corev1.ResourceCPU),
	}
	// Extra env from the spec overrides a default of the same name, in place, so the order
	// (and so the rendered object) is stable.
	if p := cp.Owner.Spec.Pilot; p != nil {
		for i := range p.Env {
			e := convert[corev1ac.EnvVarApplyConfiguration](&p.Env[i])
			replaced := false
			for j := range env {
				if *env[j].Name == p.Env[i].Name {
					env[j], replaced = e, true
				}
			}
			if !replaced {
				env = append(env, e)
			}
		}
	}
	return env
}

// validatorConfigName is the istio-validator istiod patches, or "" when none is rendered.
func (cp *ControlPlane) validatorConfigName() string {
	if cp.Validation == nil {
		return ""
	}
	return cp.ValidatorWebhookName()
}

// istiodCustomHosts are the names istiod's serving certificate is issued for besides its
// own: the istiod Service of a named revision, and the host the API server calls its
// webhooks at when it does not go through the Service.
func (cp *ControlPlane) istiodCustomHosts() string {
	hosts := cp.IstiodName() + "." + cp.Namespace + ".svc"
	if h := cp.validatorHost(); h != "" {
		hosts += "," + h
	}
	return hosts
}

func istiodDeployment(cp *ControlPlane) *appsv1ac.DeploymentApplyConfiguration {
	podLabels := cp.labels(componentPilot)
	for k, v := range cp.istiodSelector() {
		podLabels[k] = v
	}
	podLabels["app"] = "istiod"
	podLabels["istio"] = "pilot"
	podLabels["sidecar.istio.io/inject"] = "false"
	delete(podLabels, LabelManagedBy) // pods are the ReplicaSet's, not meshplane's
	delete(podLabels, LabelControlPlane)

	container := corev1ac.Container().
		WithName("discovery").
		WithImage(cp.Release.PilotImage(cp.Hub)).
		WithArgs("discovery", "--monitoringAddr=:15014", "--log_output_level=default:info",
			"--domain", "cluster.local", "--keepaliveMaxServerConnectionAge", "30m").
		WithPorts(
			containerPort("http-debug", 8080),
			containerPort("grpc-xds", 15010),
			containerPort("tls-xds", 15012),
			containerPort("https-webhooks", 15017),
			containerPort("http-monitoring", 15014),
		).
		WithReadinessProbe(corev1ac.Probe().
			WithHTTPGet(corev1ac.HTTPGetAction().WithPath("/ready").WithPort(intstr.FromInt32(8080))).
			WithInitialDelaySeconds(1).WithPeriodSeconds(3).WithTimeoutSeconds(5)).
		WithEnv(cp.istiodEnv()...).
		WithResources(cp.istiodResources()).
		WithSecurityContext(restrictedSecurityContext()).
		WithVolumeMounts(
			corev1ac.VolumeMount().WithName("istio-token").WithMountPath("/var/run/secrets/tokens").WithReadOnly(true),
			corev1ac.VolumeMount().WithName("local-certs").WithMountPath("/var/run/secrets/istio-dns"),
			corev1ac.VolumeMount().WithName("cacerts").WithMountPath("/etc/cacerts").WithReadOnly(true),
			corev1ac.VolumeMount().WithName("istio-kubeconfig").WithMountPath("/var/run/secrets/remote").WithReadOnly(true),
		)

	pod := corev1ac.PodSpec().
		WithServiceAccountName(cp.IstiodName()).
		WithContainers(container).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithVolumes(
			corev1ac.Volume().WithName("local-certs").
				WithEmptyDir(corev1ac.EmptyDirVolumeSource().WithMedium(corev1.StorageMediumMemory)),
			corev1ac.Volume().WithName("istio-token").WithProjected(corev1ac.ProjectedVolumeSource().
				WithSources(corev1ac.VolumeProjection().WithServiceAccountToken(
					corev1ac.ServiceAccountTokenProjection().WithAudience("istio-ca").
						WithExpirationSeconds(43200).WithPath("istio-token")))),
			// A self-signed istiod still reads a "cacerts" Secret when one appears, as upstream's
			// does; a plugged or issued CA must be there, or istiod would silently self-sign.
			corev1ac.Volume().WithName("cacerts").WithSecret(corev1ac.SecretVolumeSource().
				WithSecretName(cp.CA.SecretName).WithOptional(cp.CA.Mode == meshv1alpha1.CAModeSelfSigned)),
			corev1ac.Volume().WithName("istio-kubeconfig").WithSecret(corev1ac.SecretVolumeSource().
				WithSecretName("istio-kubeconfig").WithOptional(true)),
		)
	if p := cp.Owner.Spec.Pilot; p != nil {
		schedule(pod, p.NodeSelector, p.Tolerations, p.Affinity)
	}

	podAnnotations := map[string]string{}
	if cp.scrapeAnnotations() {
		podAnnotations["prometheus.io/scrape"] = "true"
		podAnnotations["prometheus.io/port"] = "15014"
	}
	if cp.CA.Fingerprint != "" {
		podAnnotations[AnnotationCAFingerprint] = cp.CA.Fingerprint
	}

	spec := appsv1ac.DeploymentSpec().
		WithSelector(metav1ac.LabelSelector().WithMatchLabels(cp.istiodSelector())).
		WithStrategy(surgeStrategy()).
		WithTemplate(corev1ac.PodTemplateSpec().
			WithLabels(podLabels).
			WithAnnotations(podAnnotations).
			WithSpec(pod))
	// With an autoscaler the HPA owns the replica count; setting it here would fight it.
	spec.Replicas = cp.fixedReplicas()

	return appsv1ac.Deployment(cp.IstiodName(), cp.Namespace).
		WithLabels(cp.labels(componentPilot)).
		WithLabels(map[string]string{"app": "istiod", "istio": "pilot"}).
		WithOwnerReferences(cp.ownerReference()).
		WithSpec(spec)
}

// schedule adds the user's scheduling constraints to a pod spec.
func schedule(pod *corev1ac.PodSpecApplyConfiguration, nodeSelector map[string]string,
	tolerations []corev1.Toleration, affinity *corev1.Affinity) {
	if len(nodeSelector) > 0 {
		pod.WithNodeSelector(nodeSelector)
	}
	for i := range tolerations {
		pod.WithTolerations(convert[corev1ac.TolerationApplyConfiguration](&tolerations[i]))
	}
	if affinity != nil {
		pod.WithAffinity(convert[corev1ac.AffinityApplyConfiguration](affinity))
	}
}

// surgeStrategy rolls istiod and gateways as upstream does: new pods first (up to double),
// at most a quarter of the old ones unavailable.
func surgeStrategy() *appsv1ac.DeploymentStrategyApplyConfiguration {
	return appsv1ac.DeploymentStrategy().
		WithType(appsv1.RollingUpdateDeploymentStrategyType).
		WithRollingUpdate(appsv1ac.RollingUpdateDeployment().
			WithMaxSurge(intstr.FromString("100%")).
			WithMaxUnavailable(intstr.FromString("25%")))
}

func containerPort(name string, port int32) *corev1ac.ContainerPortApplyConfiguration {
	return corev1ac.ContainerPort().WithName(name).WithContainerPort(port).WithProtocol(corev1.ProtocolTCP)
}

// restrictedSecurityContext satisfies the Pod Security "restricted" profile.
func restrictedSecurityContext() *corev1ac.SecurityContextApplyConfiguration {
	return corev1ac.SecurityContext().
		WithAllowPrivilegeEscalation(false).
		WithReadOnlyRootFilesystem(true).
		WithRunAsNonRoot(true).
		WithRunAsUser(1337).
		WithRunAsGroup(1337).
		WithCapabilities(corev1ac.Capabilities().WithDrop("ALL"))
}

func istiodHPA(cp *ControlPlane) *autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration {
	as := cp.autoscaling()
	if as == nil {
		return nil
	}
	return deploymentHPA(cp.IstiodName(), cp.Namespace, cp.labels(componentPilot), cp.ownerReference(), as)
}

// deploymentHPA scales the Deployment of the same name on CPU.
func deploymentHPA(name, namespace string, labels map[string]string, owner *metav1ac.OwnerReferenceApplyConfiguration,
	as *meshv1alpha1.Autoscaling) *autoscalingv2ac.HorizontalPodAutoscalerApplyConfiguration {
	return autoscalingv2ac.HorizontalPodAutoscaler(name, namespace).
		WithLabels(labels).
		WithOwnerReferences(owner).
		WithSpec(autoscalingv2ac.HorizontalPodAutoscalerSpec().
			WithScaleTargetRef(autoscalingv2ac.CrossVersionObjectReference().
				WithAPIVersion("apps/v1").WithKind("Deployment").WithName(name)).
			WithMinReplicas(*as.MinReplicas).
			WithMaxReplicas(*as.MaxReplicas).
			WithMetrics(autoscalingv2ac.MetricSpec().
				WithType(autoscalingv2.ResourceMetricSourceType).
				WithResource(autoscalingv2ac.ResourceMetricSource().
					WithName(corev1.ResourceCPU).
					WithTarget(autoscalingv2ac.MetricTarget().
						WithType(autoscalingv2.UtilizationMetricType).
						WithAverageUtilization(*as.TargetCPUUtilizationPercentage)))))
}

// istiodPDB keeps one istiod up during voluntary disruptions, but only when more than one
// runs.
func istiodPDB(cp *ControlPlane) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	return minAvailablePDB(cp.IstiodName(), cp.Namespace, cp.labels(componentPilot), cp.ownerReference(),
		cp.istiodSelector(), cp.fixedReplicas(), cp.autoscaling())
}

// minAvailablePDB keeps one pod up during voluntary disruptions, but only when more than one
// runs (fixed replicas, or an autoscaler's minimum): with a single replica a PDB of
// minAvailable 1 would block node drains forever. It returns nil otherwise.
func minAvailablePDB(name, namespace string, labels map[string]string, owner *metav1ac.OwnerReferenceApplyConfiguration,
	selector map[string]string, fixed *int32, as *meshv1alpha1.Autoscaling) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	minimum := int32(0)
	if fixed != nil {
		minimum = *fixed
	} else if as != nil {
		minimum = *as.MinReplicas
	}
	if minimum <= 1 {
		return nil
	}
	return policyv1ac.PodDisruptionBudget(name, namespace).
		WithLabels(labels).
		WithOwnerReferences(owner).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMinAvailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selector)))
}
