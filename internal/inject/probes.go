package inject

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// With mutual TLS the kubelet can no longer reach the application's probe endpoints through
// the sidecar. Upstream therefore points every probe (and HTTP/TCP lifecycle hook) of the app
// containers at the agent's status port, and hands the agent the original probes in
// ISTIO_KUBE_APP_PROBERS so it can run them from inside the pod.

// prober is the agent's view of one probe (the JSON keys are the agent's contract).
type prober struct {
	HTTPGet        *corev1.HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket      *corev1.TCPSocketAction `json:"tcpSocket,omitempty"`
	GRPC           *corev1.GRPCAction      `json:"grpc,omitempty"`
	TimeoutSeconds int32                   `json:"timeoutSeconds,omitempty"`
}

// Kinds of probe the agent serves, and its URL for one of a container's.
const (
	readyz     = "readyz"
	livez      = "livez"
	startupz   = "startupz"
	prestopz   = "prestopz"
	poststartz = "poststartz"
)

func agentPath(container, kind string) string {
	if kind == prestopz || kind == poststartz {
		return "/app-lifecycle/" + container + "/" + kind
	}
	return "/app-health/" + container + "/" + kind
}

func probeToProber(p *corev1.Probe) *prober {
	switch {
	case p == nil:
		return nil
	case p.HTTPGet != nil:
		h := *p.HTTPGet
		return &prober{HTTPGet: &h, TimeoutSeconds: p.TimeoutSeconds}
	case p.TCPSocket != nil:
		t := *p.TCPSocket
		return &prober{TCPSocket: &t, TimeoutSeconds: p.TimeoutSeconds}
	case p.GRPC != nil:
		g := *p.GRPC
		return &prober{GRPC: &g, TimeoutSeconds: p.TimeoutSeconds}
	}
	return nil
}

func hookToProber(h *corev1.LifecycleHandler) *prober {
	switch {
	case h == nil:
		return nil
	case h.HTTPGet != nil:
		a := *h.HTTPGet
		return &prober{HTTPGet: &a}
	case h.TCPSocket != nil:
		t := *h.TCPSocket
		return &prober{TCPSocket: &t}
	}
	return nil
}

// resolvePort turns a named port into the container's number. It drops probes on an unknown
// named port and probes already aimed at the agent (a re-run must not record them).
func resolvePort(p *prober, named map[string]int32) *prober {
	if p == nil || p.GRPC != nil {
		return p // gRPC ports are always numbers
	}
	var port *intstr.IntOrString
	switch {
	case p.HTTPGet != nil:
		port = &p.HTTPGet.Port
	case p.TCPSocket != nil:
		port = &p.TCPSocket.Port
	default:
		return nil
	}
	if port.Type == intstr.String {
		n, ok := named[port.StrVal]
		if !ok {
			return nil
		}
		*port = intstr.FromInt32(n)
	} else if port.IntVal == statusPort {
		return nil
	}
	return p
}

// appProbers is ISTIO_KUBE_APP_PROBERS for the pod, or "" when it has nothing to probe.
func appProbers(pod *corev1.Pod) string {
	out := map[string]*prober{}
	add := func(container, kind string, p *prober) {
		if p != nil {
			out[agentPath(container, kind)] = p
		}
	}
	visit := func(c *corev1.Container) {
		if c.Name == ProxyContainerName {
			return
		}
		named := map[string]int32{}
		for _, p := range c.Ports {
			if p.Name != "" {
				named[p.Name] = p.ContainerPort
			}
		}
		add(c.Name, readyz, resolvePort(probeToProber(c.ReadinessProbe), named))
		add(c.Name, livez, resolvePort(probeToProber(c.LivenessProbe), named))
		add(c.Name, startupz, resolvePort(probeToProber(c.StartupProbe), named))
		if c.Lifecycle != nil {
			add(c.Name, prestopz, resolvePort(hookToProber(c.Lifecycle.PreStop), named))
			add(c.Name, poststartz, resolvePort(hookToProber(c.Lifecycle.PostStart), named))
		}
	}
	for i := range pod.Spec.InitContainers {
		visit(&pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		visit(&pod.Spec.Containers[i])
	}
	if len(out) == 0 {
		return ""
	}
	b, err := json.Marshal(out)
	if err != nil {
		return ""
	}
	return string(b)
}

// agentGet aims an HTTP GET at the agent. HTTPS becomes HTTP: the kubelet talks plain HTTP to
// the agent, which speaks HTTPS to the application.
func agentGet(a *corev1.HTTPGetAction, path string) {
	a.Port = intstr.FromInt32(statusPort)
	a.Path = path
	if a.Scheme == corev1.URISchemeHTTPS {
		a.Scheme = corev1.URISchemeHTTP
	}
}

func rewriteProbe(p *corev1.Probe, container, kind string) *corev1.Probe {
	if p == nil || p.HTTPGet == nil && p.TCPSocket == nil && p.GRPC == nil {
		return p
	}
	path := agentPath(container, kind)
	p = p.DeepCopy()
	if p.HTTPGet == nil {
		p.HTTPGet = &corev1.HTTPGetAction{}
	}
	p.TCPSocket, p.GRPC = nil, nil
	agentGet(p.HTTPGet, path)
	return p
}

func rewriteHook(h *corev1.LifecycleHandler, container, kind string) *corev1.LifecycleHandler {
	if h == nil || h.HTTPGet == nil && h.TCPSocket == nil {
		return h
	}
	path := agentPath(container, kind)
	h = h.DeepCopy()
	if h.HTTPGet == nil {
		h.HTTPGet = &corev1.HTTPGetAction{}
	}
	h.TCPSocket = nil
	agentGet(h.HTTPGet, path)
	return h
}

// rewriteAppProbes points the app containers' probes and hooks at the agent.
func rewriteAppProbes(pod *corev1.Pod) {
	rewrite := func(c *corev1.Container) {
		if c.Name == ProxyContainerName {
			return
		}
		c.ReadinessProbe = rewriteProbe(c.ReadinessProbe, c.Name, readyz)
		c.LivenessProbe = rewriteProbe(c.LivenessProbe, c.Name, livez)
		c.StartupProbe = rewriteProbe(c.StartupProbe, c.Name, startupz)
		if c.Lifecycle != nil {
			c.Lifecycle.PreStop = rewriteHook(c.Lifecycle.PreStop, c.Name, prestopz)
			c.Lifecycle.PostStart = rewriteHook(c.Lifecycle.PostStart, c.Name, poststartz)
		}
	}
	for i := range pod.Spec.InitContainers {
		rewrite(&pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		rewrite(&pod.Spec.Containers[i])
	}
}
