// Package testenv runs a real local Kubernetes control plane for tests and the demo, with no
// Docker: envtest's etcd and kube-apiserver, plus kube-controller-manager, kube-scheduler and
// kwok (a fake node that makes pods Running/Ready), all as local processes on loopback.
//
// The binaries come from hack/install-testbins.sh, found through KUBEBUILDER_ASSETS.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

const (
	// NodeName is the fake node Start creates (unless WithoutWorkloads).
	NodeName = "kwok-node-0"

	// startTimeout bounds Start when the caller's context has no earlier deadline.
	startTimeout = 2 * time.Minute
	// envtest's own per-process start timeout defaults to 20s, tight on a loaded 2-core
	// machine; used unless KUBEBUILDER_CONTROLPLANE_START_TIMEOUT says otherwise.
	controlPlaneStartTimeout = 60 * time.Second
	controlPlaneStopTimeout  = 30 * time.Second
	// componentStopGrace is how long a component gets between SIGTERM and SIGKILL.
	componentStopGrace = 10 * time.Second
)

// Options for Start.
type Options struct {
	CRDDirectoryPaths []string // passed to envtest; installed before Start returns (envtest waits for them)
	AuditLog          bool     // when true, kube-apiserver writes an audit log (JSON lines, policy: level Metadata for every request, omitStages RequestReceived) to Env.AuditLogPath, mode blocking
	WithoutWorkloads  bool     // when true, start only etcd+apiserver (no controller-manager, scheduler, kwok, node)
	LogDir            string   // where component stdout/stderr go (one file per component); default: inside Env.Dir, so removed by Stop (set it to keep them)
	// CertManager also installs cert-manager's CRDs and runs the real cert-manager
	// controllers (hack/cert-manager: issuers, certificates, SelfSigned and CA signers),
	// with CertManagerNamespace as their cluster resource namespace.
	CertManager bool
}

// CertManagerNamespace is where cert-manager keeps ClusterIssuers' Secrets.
const CertManagerNamespace = "cert-manager"

// Env is a running control plane. Stop it when done.
type Env struct {
	Config       *rest.Config // admin (system:masters) config
	Kubeconfig   string       // path to an admin kubeconfig file usable by kubectl (written in Dir)
	Dir          string       // a temp dir owned by this env, removed by Stop
	AuditLogPath string       // "" unless Options.AuditLog
	AssetsDir    string

	mu       sync.Mutex
	logDir   string
	te       *envtest.Environment
	logFiles []*os.File   // etcd's and kube-apiserver's logs, closed after envtest stops
	comps    []*component // started by us, in start order
	watchdog *watchdog
}

// Start brings the control plane up: envtest (etcd+apiserver, with the CRDs), an admin user,
// then (unless WithoutWorkloads) kube-controller-manager, kube-scheduler, kwok, and one fake
// Node named "kwok-node-0" (labels type=kwok, kubernetes.io/hostname, annotation
// kwok.x-k8s.io/node=fake, large capacity/allocatable: cpu 64, memory 256Gi, pods 250, no taints)
// and waits until that node is Ready (kwok marks it). It returns when everything is usable.
// On any error it tears down what it started.
func Start(ctx context.Context, opts Options) (_ *Env, retErr error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "meshplane-testenv-")
	if err != nil {
		return nil, fmt.Errorf("creating env directory: %w", err)
	}
	e := &Env{Dir: dir, AssetsDir: assets, logDir: opts.LogDir}
	defer func() {
		if retErr != nil {
			if err := e.Stop(); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("tearing down after failed start: %w", err))
			}
		}
	}()
	if e.logDir == "" {
		e.logDir = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(e.logDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory: %w", err)
	}

	// The watchdog comes first so that every process started below is covered.
	if e.watchdog, err = startWatchdog(dir); err != nil {
		return nil, err
	}
	if err := e.startAPIServer(opts); err != nil {
		return nil, err
	}
	if !opts.WithoutWorkloads {
		if err := e.startWorkloads(ctx); err != nil {
			return nil, err
		}
	}
	if opts.CertManager {
		if err := e.startCertManager(ctx); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// startAPIServer starts etcd and kube-apiserver through envtest and writes the admin kubeconfig.
func (e *Env) startAPIServer(opts Options) error {
	etcdLog, err := e.openLog("etcd")
	if err != nil {
		return err
	}
	apiLog, err := e.openLog("kube-apiserver")
	if err != nil {
		return err
	}

	crdPaths := opts.CRDDirectoryPaths
	if opts.CertManager {
		crdPaths = append(append([]string(nil), crdPaths...), filepath.Join(e.AssetsDir, "cert-manager-crds"))
	}
	te := &envtest.Environment{
		CRDDirectoryPaths:       crdPaths,
		ErrorIfCRDPathMissing:   true,
		BinaryAssetsDirectory:   e.AssetsDir,
		ControlPlaneStopTimeout: controlPlaneStopTimeout,
	}
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		te.ControlPlaneStartTimeout = controlPlaneStartTimeout
	}
	// Data and cert directories live under Dir: Stop removes them with it, and their paths
	// in etcd's and kube-apiserver's flags are what the watchdog recognises them by.
	te.ControlPlane.Etcd = &envtest.Etcd{
		Path:    filepath.Join(e.AssetsDir, "etcd"),
		DataDir: filepath.Join(e.Dir, "etcd"),
		Out:     etcdLog,
		Err:     etcdLog,
	}
	api := te.ControlPlane.GetAPIServer()
	api.Path = filepath.Join(e.AssetsDir, "kube-apiserver")
	api.CertDir = filepath.Join(e.Dir, "kube-apiserver")
	api.Out = apiLog
	api.Err = apiLog
	te.ControlPlane.KubectlPath = filepath.Join(e.AssetsDir, "kubectl")
	for _, d := range []string{te.ControlPlane.Etcd.DataDir, api.CertDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("creating %s: %w", d, err)
		}
	}

	// envtest's default Service range is a /24: 253 ClusterIPs, which 100 Canaries (three
	// Services each) exhaust. A /16 starts at the same address, so the kubernetes Service
	// keeps 10.0.0.1.
	api.Configure().Set("service-cluster-ip-range", "10.0.0.0/16")
	if !opts.WithoutWorkloads {
		// envtest turns the ServiceAccount admission plugin off, having no controller to
		// create service accounts. With kube-controller-manager running, keep it on, as every
		// real cluster does: pods then get serviceAccountName and its token volume before
		// mutating webhooks see them.
		api.Configure().Set("disable-admission-plugins", "")
	}
	if opts.AuditLog {
		policy := filepath.Join(e.Dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return fmt.Errorf("writing audit policy: %w", err)
		}
		e.AuditLogPath = filepath.Join(e.Dir, "audit.log")
		api.Configure().
			Set("audit-policy-file", policy).
			Set("audit-log-path", e.AuditLogPath).
			Set("audit-log-format", "json").
			// Blocking: an event is on disk before the request's response is sent, so a test
			// can read the log right after its call returns.
			Set("audit-log-mode", "blocking")
	}

	e.te = te
	cfg, err := te.Start()
	if err != nil && te.Config == nil {
		// The processes themselves failed: their logs say why.
		return fmt.Errorf("starting etcd and kube-apiserver: %w\n%s\n%s", err,
			logTail(filepath.Join(e.logDir, "kube-apiserver.log")), logTail(filepath.Join(e.logDir, "etcd.log")))
	}
	if err != nil {
		return fmt.Errorf("preparing kube-apiserver (CRDs): %w", err)
	}
	e.Config = cfg

	e.Kubeconfig = filepath.Join(e.Dir, "admin.kubeconfig")
	if err := os.WriteFile(e.Kubeconfig, te.KubeConfig, 0o600); err != nil {
		return fmt.Errorf("writing admin kubeconfig: %w", err)
	}
	return nil
}

// auditPolicy records every request at Metadata level, once per request (at ResponseComplete,
// or Panic), rather than also when it is received.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
`

// openLog opens <logDir>/<name>.log for a process envtest starts; Stop closes it.
func (e *Env) openLog(name string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(e.logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating log file for %s: %w", name, err)
	}
	e.logFiles = append(e.logFiles, f)
	return f, nil
}

// startWorkloads starts kube-controller-manager, kube-scheduler and kwok, creates the fake
// node and waits until all of them are usable.
func (e *Env) startWorkloads(ctx context.Context) error {
	var kcmPort, schedPort, kwokPort int
	for _, p := range []*int{&kcmPort, &schedPort, &kwokPort} {
		var err error
		if *p, err = FreePort(); err != nil {
			return err
		}
	}
	kubeconfigFlags := []string{
		"--kubeconfig=" + e.Kubeconfig,
		// Delegated authn/authz for the components' own secure ports.
		"--authentication-kubeconfig=" + e.Kubeconfig,
		"--authorization-kubeconfig=" + e.Kubeconfig,
		// envtest's apiserver has no front-proxy CA, so looking up
		// kube-system/extension-apiserver-authentication only logs an error every few
		// seconds; tokens are still checked through the kubeconfig.
		"--authentication-skip-lookup=true",
	}

	kcm, err := e.start("kube-controller-manager", append([]string{
		"--leader-elect=false",
		"--controllers=*",
		// One admin identity for every controller; envtest has no per-controller RBAC.
		"--use-service-account-credentials=false",
		// The key kube-apiserver verifies service-account tokens with (envtest generates it).
		"--service-account-private-key-file=" + filepath.Join(e.te.ControlPlane.APIServer.CertDir, "sa-signer.key"),
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(kcmPort),
		"--cert-dir=" + filepath.Join(e.Dir, "kube-controller-manager"),
	}, kubeconfigFlags...))
	if err != nil {
		return err
	}

	sched, err := e.start("kube-scheduler", append([]string{
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(schedPort),
		"--cert-dir=" + filepath.Join(e.Dir, "kube-scheduler"),
	}, kubeconfigFlags...))
	if err != nil {
		return err
	}

	kwok, err := e.start("kwok", []string{
		"--kubeconfig=" + e.Kubeconfig,
		// Stage definitions (node heartbeat, pod ready, ...); kwok refuses to start without.
		"--config=" + filepath.Join(e.AssetsDir, "kwok-stages.yaml"),
		"--manage-all-nodes=true",
		"--server-address=127.0.0.1:" + strconv.Itoa(kwokPort),
		"--node-ip=10.0.0.1",
		"--cidr=10.0.0.0/24",
	})
	if err != nil {
		return err
	}

	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return fmt.Errorf("creating clientset: %w", err)
	}
	if _, err := cs.CoreV1().Nodes().Create(ctx, fakeNode(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating node %s: %w", NodeName, err)
	}

	if err := waitHealthy(ctx, kcm, kcmPort); err != nil {
		return err
	}
	if err := waitHealthy(ctx, sched, schedPort); err != nil {
		return err
	}
	return waitNodeReady(ctx, cs, kwok)
}

// startCertManager runs the cert-manager controllers and waits until they serve /readyz
// (their caches synced, so an Issuer created next is seen).
func (e *Env) startCertManager(ctx context.Context) error {
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return fmt.Errorf("creating clientset: %w", err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: CertManagerNamespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", CertManagerNamespace, err)
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	cm, err := e.start("cert-manager-controller", []string{
		"--kubeconfig=" + e.Kubeconfig,
		"--namespace=" + CertManagerNamespace,
		"--healthz-address=127.0.0.1:" + strconv.Itoa(port),
		"--metrics-address=0",
	})
	if err != nil {
		return err
	}
	return waitURL(ctx, cm, "http://127.0.0.1:"+strconv.Itoa(port)+"/readyz")
}

// start runs one of the workload binaries from the assets directory and records it for Stop.
func (e *Env) start(name string, args []string) (*component, error) {
	c, err := startComponent(name, filepath.Join(e.AssetsDir, name), args, e.logDir)
	if err != nil {
		return nil, err
	}
	e.comps = append(e.comps, c)
	return c, nil
}

// fakeNode is the node kwok pretends to run; roomy enough that scheduling never fails for
// lack of resources.
func fakeNode() *corev1.Node {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: NodeName,
			Labels: map[string]string{
				"type":                   "kwok",
				"kubernetes.io/hostname": NodeName,
				"kubernetes.io/os":       "linux", // a common nodeSelector in manifests
			},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		},
		Status: corev1.NodeStatus{Capacity: res, Allocatable: res},
	}
}

// waitNodeReady polls until kwok has marked the fake node Ready and nothing taints it.
func waitNodeReady(ctx context.Context, cs kubernetes.Interface, kwok *component) error {
	last := "not observed yet"
	for {
		node, err := cs.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err == nil {
			ready := false
			for _, c := range node.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			switch {
			case ready && len(node.Spec.Taints) == 0:
				return nil
			case ready:
				last = fmt.Sprintf("Ready but tainted %v", node.Spec.Taints)
			default:
				last = fmt.Sprintf("conditions %v", node.Status.Conditions)
			}
		} else {
			last = err.Error()
		}
		select {
		case <-kwok.done:
			return kwok.failure(fmt.Errorf("exited before node %s became Ready", NodeName))
		case <-ctx.Done():
			return kwok.failure(fmt.Errorf("node %s not Ready (%s): %w", NodeName, last, ctx.Err()))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// AddUser creates a user authenticated by the apiserver (envtest ControlPlane.AddUser) and
// returns its rest.Config and a kubeconfig file path for it. Groups may be nil (no rights
// beyond RBAC granted later).
func (e *Env) AddUser(name string, groups []string) (*rest.Config, string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.te == nil || e.Config == nil {
		return nil, "", errors.New("adding user: env is not running")
	}
	u, err := e.te.AddUser(envtest.User{Name: name, Groups: groups}, &rest.Config{QPS: 1000, Burst: 2000})
	if err != nil {
		return nil, "", fmt.Errorf("adding user %q: %w", name, err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		return nil, "", fmt.Errorf("building kubeconfig for user %q: %w", name, err)
	}
	usersDir := filepath.Join(e.Dir, "users")
	if err := os.MkdirAll(usersDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("creating users directory: %w", err)
	}
	// User names may hold ':' (system:serviceaccount:...); a random suffix keeps repeated
	// names apart.
	f, err := os.CreateTemp(usersDir, unsafeFileChars.ReplaceAllString(name, "_")+"-*.kubeconfig")
	if err != nil {
		return nil, "", fmt.Errorf("creating kubeconfig for user %q: %w", name, err)
	}
	_, werr := f.Write(kc)
	if err := errors.Join(werr, f.Close()); err != nil {
		return nil, "", fmt.Errorf("writing kubeconfig for user %q: %w", name, err)
	}
	return u.Config(), f.Name(), nil
}

// Stop terminates every process started (child processes first, then envtest), waits for
// them to exit, and removes Dir. Safe to call twice and on a partially started env.
func (e *Env) Stop() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	// Reverse start order: kwok and the scheduler before the controller-manager, all of them
	// before the apiserver they talk to.
	for i := len(e.comps) - 1; i >= 0; i-- {
		if err := e.comps[i].stop(componentStopGrace); err != nil {
			errs = append(errs, err)
		}
	}
	e.comps = nil
	if e.te != nil {
		if err := e.te.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping etcd and kube-apiserver: %w", err))
		}
		e.te = nil
	}
	for _, f := range e.logFiles {
		_ = f.Close()
	}
	e.logFiles = nil
	// Closing the watchdog's pipe makes it sweep for anything left, then exit.
	if e.watchdog != nil {
		if err := e.watchdog.stop(); err != nil {
			errs = append(errs, err)
		}
		e.watchdog = nil
	}
	if e.Dir != "" {
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", e.Dir, err))
		}
	}
	return errors.Join(errs...)
}
