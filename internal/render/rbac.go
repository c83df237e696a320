package render

import (
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
)

// The API resources istiod reads or writes. Upstream's charts grant "*" on these groups;
// meshplane lists them, so neither istiod's roles nor the operator's (which must hold every
// permission it grants) need wildcards. IstioResources must match the Istio CRDs shipped in
// config/istio-crds (a test checks).
var (
	IstioResources = map[string][]string{
		"extensions.istio.io": {"trafficextensions", "wasmplugins"},
		"networking.istio.io": {"destinationrules", "envoyfilters", "gateways", "proxyconfigs",
			"serviceentries", "sidecars", "virtualservices", "workloadentries", "workloadgroups"},
		"security.istio.io":  {"authorizationpolicies", "peerauthentications", "requestauthentications"},
		"telemetry.istio.io": {"telemetries"},
	}
	istioGroups = []string{"extensions.istio.io", "networking.istio.io", "security.istio.io", "telemetry.istio.io"}

	gatewayAPIResources = []string{"backendtlspolicies", "gatewayclasses", "gateways", "grpcroutes",
		"httproutes", "listenersets", "referencegrants", "tcproutes", "tlsroutes", "udproutes"}
	gatewayAPIXResources = []string{"xbackendtrafficpolicies", "xlistenersets", "xmeshes"}

	readOnly  = []string{"get", "list", "watch"}
	readWrite = []string{"get", "list", "watch", "create", "update", "patch", "delete"}
)

func statusOf(resources []string) []string {
	out := make([]string, len(resources))
	for i, r := range resources {
		out[i] = r + "/status"
	}
	return out
}

func rule(groups []string, resources []string, verbs ...string) *rbacv1ac.PolicyRuleApplyConfiguration {
	return rbacv1ac.PolicyRule().WithAPIGroups(groups...).WithResources(resources...).WithVerbs(verbs...)
}

func istioReadRules() []*rbacv1ac.PolicyRuleApplyConfiguration {
	rules := make([]*rbacv1ac.PolicyRuleApplyConfiguration, 0, len(istioGroups))
	for _, g := range istioGroups {
		rules = append(rules, rule([]string{g}, IstioResources[g], readOnly...))
	}
	return rules
}

// IstiodClusterRules are the cluster-wide permissions of istiod (upstream's
// istiod-clusterrole, without wildcards).
func IstiodClusterRules() []*rbacv1ac.PolicyRuleApplyConfiguration {
	rules := []*rbacv1ac.PolicyRuleApplyConfiguration{
		rule([]string{"admissionregistration.k8s.io"}, []string{"mutatingwebhookconfigurations"}, "get", "list", "watch", "update", "patch"),
		rule([]string{"admissionregistration.k8s.io"}, []string{"validatingwebhookconfigurations"}, "get", "list", "watch", "update"),
	}
	rules = append(rules, istioReadRules()...)
	rules = append(rules,
		rule([]string{"networking.istio.io"}, []string{"workloadentries", "workloadentries/status", "serviceentries/status"}, readWrite...),
		rule([]string{"security.istio.io"}, []string{"authorizationpolicies/status"}, readWrite...),
		rule([]string{"apiextensions.k8s.io"}, []string{"customresourcedefinitions"}, readOnly...),
		rule([]string{""}, []string{"pods", "nodes", "services", "namespaces", "endpoints"}, readOnly...),
		rule([]string{"discovery.k8s.io"}, []string{"endpointslices"}, readOnly...),
		rule([]string{"networking.k8s.io"}, []string{"ingresses", "ingressclasses"}, readOnly...),
		rule([]string{"networking.k8s.io"}, []string{"ingresses/status"}, "get", "update", "patch"),
		rule([]string{""}, []string{"configmaps"}, "create", "get", "list", "watch", "update"),
		rule([]string{"certificates.k8s.io"}, []string{"certificatesigningrequests", "certificatesigningrequests/approval",
			"certificatesigningrequests/status"}, "update", "create", "get", "delete", "watch"),
		rbacv1ac.PolicyRule().WithAPIGroups("certificates.k8s.io").WithResources("signers").
			WithResourceNames("kubernetes.io/legacy-unknown").WithVerbs("approve"),
		rule([]string{"authentication.k8s.io"}, []string{"tokenreviews"}, "create"),
		rule([]string{"authorization.k8s.io"}, []string{"subjectaccessreviews"}, "create"),
		rule([]string{"gateway.networking.k8s.io"}, gatewayAPIResources, readOnly...),
		rule([]string{"gateway.networking.k8s.io"}, statusOf(gatewayAPIResources), "update", "patch"),
		rule([]string{"gateway.networking.k8s.io"}, []string{"gatewayclasses"}, "create", "update", "patch", "delete"),
		rule([]string{"gateway.networking.x-k8s.io"}, gatewayAPIXResources, readOnly...),
		rule([]string{"gateway.networking.x-k8s.io"}, statusOf(gatewayAPIXResources), "update", "patch"),
		rule([]string{"inference.networking.k8s.io"}, []string{"inferencepools"}, readOnly...),
		rule([]string{"inference.networking.k8s.io"}, []string{"inferencepools/status"}, "update", "patch"),
		rule([]string{""}, []string{"secrets"}, readOnly...),
		rule([]string{"multicluster.x-k8s.io"}, []string{"serviceexports"}, "get", "list", "watch", "create", "delete"),
		rule([]string{"multicluster.x-k8s.io"}, []string{"serviceimports"}, readOnly...),
	)
	return rules
}

// GatewayControllerRules let istiod deploy gateways for Gateway API resources.
func GatewayControllerRules() []*rbacv1ac.PolicyRuleApplyConfiguration {
	return []*rbacv1ac.PolicyRuleApplyConfiguration{
		rule([]string{"apps"}, []string{"deployments"}, readWrite...),
		rule([]string{"autoscaling"}, []string{"horizontalpodautoscalers"}, readWrite...),
		rule([]string{"policy"}, []string{"poddisruptionbudgets"}, readWrite...),
		rule([]string{""}, []string{"services", "serviceaccounts"}, readWrite...),
	}
}

// ReaderRules are what a remote istiod's reader identity may do in this cluster.
func ReaderRules() []*rbacv1ac.PolicyRuleApplyConfiguration {
	rules := istioReadRules()
	rules = append(rules,
		rule([]string{""}, []string{"endpoints", "pods", "services", "nodes", "replicationcontrollers", "namespaces", "secrets"}, readOnly...),
		rule([]string{"gateway.networking.k8s.io"}, []string{"gateways"}, readOnly...),
		rule([]string{"apiextensions.k8s.io"}, []string{"customresourcedefinitions"}, readOnly...),
		rule([]string{"discovery.k8s.io"}, []string{"endpointslices"}, readOnly...),
		rule([]string{"multicluster.x-k8s.io"}, []string{"serviceexports"}, "get", "list", "watch", "create", "delete"),
		rule([]string{"multicluster.x-k8s.io"}, []string{"serviceimports"}, readOnly...),
		rule([]string{"apps"}, []string{"replicasets"}, readOnly...),
		rule([]string{"authentication.k8s.io"}, []string{"tokenreviews"}, "create"),
		rule([]string{"authorization.k8s.io"}, []string{"subjectaccessreviews"}, "create"),
	)
	return rules
}

// IstiodNamespaceRules are istiod's permissions in its own namespace.
func IstiodNamespaceRules() []*rbacv1ac.PolicyRuleApplyConfiguration {
	return []*rbacv1ac.PolicyRuleApplyConfiguration{
		rule([]string{"networking.istio.io"}, []string{"gateways"}, "create"),
		rule([]string{""}, []string{"secrets"}, "create", "get", "watch", "list", "update", "delete"),
		rule([]string{""}, []string{"configmaps"}, "delete"),
		rule([]string{"coordination.k8s.io"}, []string{"leases"}, "get", "update", "patch", "create"),
	}
}

func rbac(cp *ControlPlane) []Object {
	istiodSubject := rbacv1ac.Subject().WithKind("ServiceAccount").WithName(cp.IstiodName()).WithNamespace(cp.Namespace)
	readerSubject := rbacv1ac.Subject().WithKind("ServiceAccount").WithName(cp.ReaderServiceAccountName()).WithNamespace(cp.Namespace)

	var objs []Object
	cluster := func(base string, component string, rules []*rbacv1ac.PolicyRuleApplyConfiguration, subject *rbacv1ac.SubjectApplyConfiguration) {
		name := cp.clusterScopedName(base)
		objs = append(objs,
			rbacv1ac.ClusterRole(name).
				WithLabels(cp.labels(component)).
				WithOwnerReferences(cp.ownerReference()).
				WithRules(rules...),
			rbacv1ac.ClusterRoleBinding(name).
				WithLabels(cp.labels(component)).
				WithOwnerReferences(cp.ownerReference()).
				WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(name)).
				WithSubjects(subject),
		)
	}
	cluster("istiod-clusterrole", componentPilot, IstiodClusterRules(), istiodSubject)
	cluster("istiod-gateway-controller", componentPilot, GatewayControllerRules(), istiodSubject)
	cluster("istio-reader-clusterrole", "Base", ReaderRules(), readerSubject)

	name := cp.IstiodName()
	objs = append(objs,
		rbacv1ac.Role(name, cp.Namespace).
			WithLabels(cp.labels(componentPilot)).
			WithOwnerReferences(cp.ownerReference()).
			WithRules(IstiodNamespaceRules()...),
		rbacv1ac.RoleBinding(name, cp.Namespace).
			WithLabels(cp.labels(componentPilot)).
			WithOwnerReferences(cp.ownerReference()).
			WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("Role").WithName(name)).
			WithSubjects(istiodSubject),
	)
	return objs
}
