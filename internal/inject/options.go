package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"istio.io/api/annotation"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
)

// Interception modes (ProxyConfig.InboundInterceptionMode names).
const (
	modeRedirect = "REDIRECT"
	modeTProxy   = "TPROXY"
	modeNone     = "NONE"
)

// Values of upstream's default install (values.global.proxy.*) that meshplane does not expose.
const (
	defaultComponentLogLevel = "misc:error"
	defaultAgentLogLevel     = "default:info"
	defaultClusterID         = "Kubernetes"
	defaultReadinessPeriod   = 15
	defaultReadinessFailures = 4
)

// options is everything the pod's annotations decide, validated.
type options struct {
	native        bool
	interception  string
	proxyConfig   *meshv1alpha1.ProxyConfig
	hold          bool
	image         string
	resources     corev1.ResourceRequirements
	rewriteProbes bool
	promMerge     bool

	logLevel, componentLogLevel, agentLogLevel string

	includeIPRanges, excludeIPRanges           string
	includeInboundPorts, excludeInboundPorts   string
	includeOutboundPorts, excludeOutboundPorts *string // nil: flag not passed
	virtualInterfaces, excludeInterfaces       *string

	readinessDelay, readinessPeriod, readinessFailures int32

	bootstrapOverride string // ConfigMap with a custom Envoy bootstrap, or ""
	userVolumes       []corev1.Volume
	userMounts        []corev1.VolumeMount
}

// envoyLogLevels are the levels --proxyLogLevel accepts.
var envoyLogLevels = []string{"trace", "debug", "info", "warning", "error", "critical", "off"}

// annotationError names the annotation and the value, as the API server shows it to the user.
func annotationError(name, value string, err error) error {
	return fmt.Errorf("annotation %s: invalid value %q: %w", name, value, err)
}

// parseOptions reads and validates every annotation the injector honours. All malformed
// annotations are reported at once, in a stable order.
func parseOptions(pod *corev1.Pod, c *Config) (*options, error) {
	annos := pod.Annotations
	var errs []error
	bad := func(name string, err error) {
		errs = append(errs, annotationError(name, annos[name], err))
	}
	get := func(name, def string) string {
		if v, ok := annos[name]; ok {
			return v
		}
		return def
	}

	o := &options{
		native:              c.NativeSidecar,
		logLevel:            get(annotation.SidecarLogLevel.Name, c.LogLevel),
		componentLogLevel:   get(annotation.SidecarComponentLogLevel.Name, defaultComponentLogLevel),
		agentLogLevel:       get(annotation.SidecarAgentLogLevel.Name, defaultAgentLogLevel),
		includeIPRanges:     get(annotation.SidecarTrafficIncludeOutboundIPRanges.Name, "*"),
		excludeIPRanges:     get(annotation.SidecarTrafficExcludeOutboundIPRanges.Name, ""),
		includeInboundPorts: get(annotation.SidecarTrafficIncludeInboundPorts.Name, "*"),
		excludeInboundPorts: get(annotation.SidecarTrafficExcludeInboundPorts.Name, ""),
		rewriteProbes:       c.RewriteAppProbes,
		promMerge:           !c.DisablePrometheusMerge,
		readinessPeriod:     defaultReadinessPeriod,
		readinessFailures:   defaultReadinessFailures,
	}
	// Upstream treats any value but "false" as native, an empty one as unset.
	if v := annos[annotation.SidecarNativeSidecar.Name]; v != "" {
		o.native = v != "false"
	}
	optional := func(name string) *string {
		if v, ok := annos[name]; ok {
			return &v
		}
		return nil
	}
	o.includeOutboundPorts = optional(annotation.SidecarTrafficIncludeOutboundPorts.Name)
	o.excludeOutboundPorts = optional(annotation.SidecarTrafficExcludeOutboundPorts.Name)
	o.virtualInterfaces = optional(annotation.IoIstioRerouteVirtualInterfaces.Name)
	if o.virtualInterfaces == nil {
		o.virtualInterfaces = optional(annotation.SidecarTrafficKubevirtInterfaces.Name)
	}
	o.excludeInterfaces = optional(annotation.SidecarTrafficExcludeInterfaces.Name)

	if !slices.Contains(envoyLogLevels, o.logLevel) {
		bad(annotation.SidecarLogLevel.Name, fmt.Errorf("must be one of %s", strings.Join(envoyLogLevels, ", ")))
	}
	if v, ok := annos[annotation.SidecarTrafficIncludeOutboundIPRanges.Name]; ok && v != "*" {
		if err := validateCIDRs(v); err != nil {
			bad(annotation.SidecarTrafficIncludeOutboundIPRanges.Name, err)
		}
	}
	if err := validateCIDRs(o.excludeIPRanges); err != nil {
		bad(annotation.SidecarTrafficExcludeOutboundIPRanges.Name, err)
	}
	if o.includeInboundPorts != "*" {
		if err := validatePorts(o.includeInboundPorts); err != nil {
			bad(annotation.SidecarTrafficIncludeInboundPorts.Name, err)
		}
	}
	for _, name := range []string{
		annotation.SidecarTrafficExcludeInboundPorts.Name,
		annotation.SidecarTrafficIncludeOutboundPorts.Name,
		annotation.SidecarTrafficExcludeOutboundPorts.Name,
	} {
		if err := validatePorts(annos[name]); err != nil {
			bad(name, err)
		}
	}
	if v, ok := annos[annotation.SidecarInterceptionMode.Name]; ok {
		if v != modeRedirect && v != modeTProxy && v != modeNone {
			bad(annotation.SidecarInterceptionMode.Name, errors.New("must be one of REDIRECT, TPROXY, NONE"))
		}
	}
	if v, ok := annos[annotation.PrometheusMergeMetrics.Name]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			bad(annotation.PrometheusMergeMetrics.Name, errors.New("must be a boolean"))
		}
		o.promMerge = b
	}
	// Upstream ignores an unparsable value here and keeps the default.
	if b, err := strconv.ParseBool(annos[annotation.SidecarRewriteAppHTTPProbers.Name]); err == nil {
		o.rewriteProbes = b
	}
	for _, r := range []struct {
		name string
		into *int32
	}{
		{annotation.SidecarStatusReadinessInitialDelaySeconds.Name, &o.readinessDelay},
		{annotation.SidecarStatusReadinessPeriodSeconds.Name, &o.readinessPeriod},
		{annotation.SidecarStatusReadinessFailureThreshold.Name, &o.readinessFailures},
	} {
		v, ok := annos[r.name]
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n > math.MaxInt32 {
			bad(r.name, errors.New("must be a whole number of at most 2147483647"))
			continue
		}
		*r.into = int32(n)
	}

	// Only the sidecar template is built in; rendering it for a pod that asked for another
	// (a gateway, a gRPC agent) would produce a broken pod.
	if v, ok := annos[annotation.InjectTemplates.Name]; ok {
		for _, t := range strings.Split(v, ",") {
			if strings.TrimSpace(t) != "sidecar" {
				bad(annotation.InjectTemplates.Name, errors.New("only the sidecar template is supported"))
				break
			}
		}
	}
	o.bootstrapOverride = annos[annotation.SidecarBootstrapOverride.Name]
	if v, ok := annos[annotation.SidecarUserVolume.Name]; ok {
		vols, err := parseNamed[corev1.Volume](v, func(v *corev1.Volume) *string { return &v.Name })
		if err != nil {
			bad(annotation.SidecarUserVolume.Name, err)
		}
		o.userVolumes = vols
	}
	if v, ok := annos[annotation.SidecarUserVolumeMount.Name]; ok {
		mounts, err := parseNamed[corev1.VolumeMount](v, func(m *corev1.VolumeMount) *string { return &m.Name })
		if err != nil {
			bad(annotation.SidecarUserVolumeMount.Name, err)
		}
		o.userMounts = mounts
	}

	res, resErrs := proxyResources(annos, c.ProxyResources)
	errs = append(errs, resErrs...)
	o.resources = res

	pc, err := effectiveProxyConfig(c, annos)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	o.proxyConfig = pc
	o.hold = pc.GetHoldApplicationUntilProxyStarts().GetValue()
	o.interception = get(annotation.SidecarInterceptionMode.Name, pc.GetInterceptionMode().String())
	o.image = proxyImage(c, pc, annos)
	return o, nil
}

// validateCIDRs accepts an empty string or comma-separated CIDRs.
func validateCIDRs(list string) error {
	if list == "" {
		return nil
	}
	for _, cidr := range strings.Split(list, ",") {
		if _, _, err := net.ParseCIDR(cidr); err != nil {
			return fmt.Errorf("%q is not a CIDR", cidr)
		}
	}
	return nil
}

// validatePorts accepts an empty string or comma-separated ports; blanks around a port are
// tolerated, as upstream does.
func validatePorts(list string) error {
	if strings.TrimSpace(list) == "" {
		return nil
	}
	for _, p := range strings.Split(list, ",") {
		p = strings.TrimSpace(p)
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a port (1-65535)", p)
		}
	}
	return nil
}

var (
	defaultRequests = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("100m"),
		corev1.ResourceMemory: resource.MustParse("128Mi"),
	}
	defaultLimits = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("2000m"),
		corev1.ResourceMemory: resource.MustParse("1024Mi"),
	}
)

// proxyResources follows upstream's template: any resource annotation replaces the configured
// resources entirely (a request without a limit stays without one).
func proxyResources(annos map[string]string, configured corev1.ResourceRequirements) (corev1.ResourceRequirements, []error) {
	var out corev1.ResourceRequirements
	var errs []error
	set := false
	for _, a := range []struct {
		name  string
		limit bool
		res   corev1.ResourceName
	}{
		{annotation.SidecarProxyCPU.Name, false, corev1.ResourceCPU},
		{annotation.SidecarProxyMemory.Name, false, corev1.ResourceMemory},
		{annotation.SidecarProxyCPULimit.Name, true, corev1.ResourceCPU},
		{annotation.SidecarProxyMemoryLimit.Name, true, corev1.ResourceMemory},
	} {
		v, ok := annos[a.name]
		if !ok {
			continue
		}
		set = true
		q, err := resource.ParseQuantity(v)
		if err != nil {
			errs = append(errs, annotationError(a.name, v, err))
			continue
		}
		list := &out.Requests
		if a.limit {
			list = &out.Limits
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[a.res] = q
	}
	if set {
		return out, errs
	}
	if len(configured.Requests) > 0 || len(configured.Limits) > 0 || len(configured.Claims) > 0 {
		return *configured.DeepCopy(), nil
	}
	return corev1.ResourceRequirements{Requests: defaultRequests.DeepCopy(), Limits: defaultLimits.DeepCopy()}, nil
}

// Known image variants; a tag already carrying one has it replaced.
var imageTypes = []string{"distroless", "debug"}

// proxyImage is upstream's ProxyImage: <hub>/proxyv2:<tag>[-<type>], or the
// sidecar.istio.io/proxyImage annotation when it is a full reference (contains "/").
func proxyImage(c *Config, pc *meshv1alpha1.ProxyConfig, annos map[string]string) string {
	if img := annos[annotation.SidecarProxyImage.Name]; strings.Contains(img, "/") {
		return img
	}
	tag := c.Version
	imageType := ""
	if pc.GetImage() != nil {
		imageType = pc.GetImage().GetImageType()
	}
	if t, ok := annos[annotation.SidecarProxyImageType.Name]; ok {
		imageType = t
	}
	if imageType != "" {
		for _, t := range imageTypes {
			if strings.HasSuffix(tag, "-"+t) {
				tag = strings.TrimSuffix(tag, "-"+t)
				break
			}
		}
		if imageType != "default" {
			tag += "-" + imageType
		}
	}
	return c.Hub + "/proxyv2:" + tag
}

// parseNamed reads the userVolume/userVolumeMount annotations: a JSON object of name to item,
// taken in name order as the template's range over it does; a JSON array of named items is
// accepted too.
func parseNamed[T any](doc string, name func(*T) *string) ([]T, error) {
	var byName map[string]T
	if err := json.Unmarshal([]byte(doc), &byName); err == nil {
		keys := make([]string, 0, len(byName))
		for k := range byName {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		out := make([]T, 0, len(keys))
		for _, k := range keys {
			item := byName[k]
			*name(&item) = k
			out = append(out, item)
		}
		return out, nil
	}
	var list []T
	if err := json.Unmarshal([]byte(doc), &list); err != nil {
		return nil, errors.New("must be a JSON object of name to item")
	}
	for i := range list {
		if *name(&list[i]) == "" {
			return nil, fmt.Errorf("item %d has no name", i)
		}
	}
	return list, nil
}
