// Package devcluster runs meshplane against the real local control plane: it starts
// internal/testenv with meshplane's and Istio's CRDs, creates the operator's identity with
// exactly the RBAC the release ships (config/rbac), and runs the operator's manager under
// it. The end-to-end suites, the benchmarks and `make demo` all start from here.
package devcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/operator"
	"github.com/meshplane/meshplane/internal/testenv"
)

// OperatorNamespace is the operator's namespace on the local control plane.
const OperatorNamespace = "meshplane-system"

// OperatorUser is the user the operator authenticates as; only config/rbac's ClusterRole is
// bound to it, so a permission missing from the shipped RBAC fails here as it would in a
// real cluster.
const OperatorUser = "meshplane-operator"

// Options configure Start.
type Options struct {
	// AuditLog turns on the API server's audit log (to count the operator's writes).
	AuditLog bool
	// SyncPeriod, when set, makes the operator's informers resync this often.
	SyncPeriod time.Duration
	// LogDir keeps the components' logs (default: a temporary directory removed on Stop).
	LogDir string
	// CertManager runs the real cert-manager controllers too.
	CertManager bool
	// WebhookCertSecret, when set, makes the operator serve its webhooks with this Secret
	// in OperatorNamespace (issued by cert-manager), re-read every WebhookCertResync.
	WebhookCertSecret string
	WebhookCertResync time.Duration
	// IstioValidation has the operator render each revision's istio-validator, addressed to
	// https://127.0.0.1:<port> (Cluster.IstiodWebhookURL) rather than the istiod Service: the
	// API server would resolve the Service's name off this machine. Nothing listens there
	// unless a test runs istiod on that address; until istiod takes the configuration over,
	// its failurePolicy Ignore lets Istio config through.
	IstioValidation bool
	// Metrics serves the operator's metrics endpoint over plain HTTP on a free loopback port
	// (Cluster.MetricsURL), as a Prometheus on this machine can scrape it.
	Metrics bool
}

// Cluster is a running control plane with the operator.
type Cluster struct {
	Env *testenv.Env
	// Admin is a client with cluster-admin rights, for the test or the person driving it.
	Admin client.Client
	// OperatorConfig is the operator's own identity.
	OperatorConfig *rest.Config
	// Manager is the operator.
	Manager ctrl.Manager
	// Root is the repository root (where config/ lives).
	Root string
	// WebhookURL is where the operator serves its admission webhooks.
	WebhookURL string
	// MetricsURL is the operator's metrics endpoint ("http://127.0.0.1:<port>/metrics") with
	// Options.Metrics, else empty.
	MetricsURL string

	mgrOpts operator.Options
	cancel  context.CancelFunc
	done    chan error

	mu          sync.Mutex
	istiodPorts map[string]int
}

// RepoRoot finds the repository root from the working directory (go test runs in the
// package's directory; the demo runs from the root).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "config", "crd")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the meshplane repository root (a directory with go.mod and config/crd)")
		}
		dir = parent
	}
}

// Start brings up the control plane and the operator. Stop it when done.
func Start(ctx context.Context, opts Options) (_ *Cluster, retErr error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	env, err := testenv.Start(ctx, testenv.Options{
		CRDDirectoryPaths: []string{
			filepath.Join(root, "config", "crd", "bases"),
			filepath.Join(root, "config", "istio-crds"),
		},
		AuditLog:    opts.AuditLog,
		LogDir:      opts.LogDir,
		CertManager: opts.CertManager,
	})
	if err != nil {
		return nil, err
	}
	c := &Cluster{Env: env, Root: root}
	defer func() {
		if retErr != nil {
			c.Stop()
		}
	}()

	scheme := operator.Scheme()
	c.Admin, err = client.New(env.Config, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the admin client: %w", err)
	}
	if err := c.grantOperatorRBAC(ctx); err != nil {
		return nil, err
	}
	c.OperatorConfig, _, err = env.AddUser(OperatorUser, nil)
	if err != nil {
		return nil, fmt.Errorf("creating the operator's user: %w", err)
	}

	if err := c.Admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: OperatorNamespace}}); err != nil {
		return nil, fmt.Errorf("creating the operator's namespace: %w", err)
	}
	// The operator runs outside the cluster: the API server calls its webhooks on loopback.
	port, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	c.WebhookURL = fmt.Sprintf("https://127.0.0.1:%d", port)
	mgrOpts := operator.Options{
		MetricsBindAddress:     "0",
		HealthProbeBindAddress: "0",
		Namespace:              OperatorNamespace,
		Webhooks: &operator.WebhookOptions{Host: "127.0.0.1", Port: port, URL: c.WebhookURL,
			CertSecret: opts.WebhookCertSecret, CertResync: opts.WebhookCertResync},
	}
	if opts.SyncPeriod > 0 {
		mgrOpts.SyncPeriod = &opts.SyncPeriod
	}
	if opts.Metrics {
		port, err := testenv.FreePort()
		if err != nil {
			return nil, err
		}
		mgrOpts.MetricsBindAddress = fmt.Sprintf("127.0.0.1:%d", port)
		c.MetricsURL = "http://" + mgrOpts.MetricsBindAddress + "/metrics"
	}
	if opts.IstioValidation {
		mgrOpts.IstioValidation = true
		mgrOpts.IstiodWebhookURL = c.IstiodWebhookURL
	}
	c.mgrOpts = mgrOpts
	if err := c.startOperator(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// startOperator builds a manager from c.mgrOpts, starts it and waits for its caches.
func (c *Cluster) startOperator(ctx context.Context) error {
	mgr, err := operator.NewManager(c.OperatorConfig, c.mgrOpts)
	if err != nil {
		return err
	}
	c.Manager = mgr
	mgrCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan error, 1)
	go func() { c.done <- mgr.Start(mgrCtx) }()
	syncCtx, syncCancel := context.WithTimeout(ctx, time.Minute)
	defer syncCancel()
	if !mgr.GetCache().WaitForCacheSync(syncCtx) {
		return errors.New("the operator's caches did not sync within a minute")
	}
	return nil
}

// StopOperator stops the operator (as a crash or a rollout of its Deployment would) and
// leaves the control plane running. It returns the manager's error, if any.
func (c *Cluster) StopOperator() error {
	if c.cancel == nil {
		return nil
	}
	c.cancel()
	err := <-c.done
	c.cancel = nil
	return err
}

// StartOperator starts a new operator, with the first one's options and nothing it held
// in memory, after StopOperator: the new one must resume from what the cluster holds.
func (c *Cluster) StartOperator(ctx context.Context) error {
	if c.cancel != nil {
		return errors.New("the operator is running: stop it first")
	}
	// This process built a manager with the same controllers before.
	c.mgrOpts.SkipControllerNameValidation = true
	return c.startOperator(ctx)
}

// IstiodWebhookURL is where the API server calls the webhooks of the istiod of a namespace
// and revision: a loopback port of its own, chosen free on first use and kept, on which a
// test runs that istiod (pilot-discovery's --httpsAddr).
func (c *Cluster) IstiodWebhookURL(namespace, revision string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := namespace + "/" + revision
	port, ok := c.istiodPorts[key]
	if !ok {
		var err error
		if port, err = testenv.FreePort(); err != nil {
			// Never fall back to the istiod Service (it resolves off this machine): a
			// loopback port nothing listens on refuses the API server's calls, which the
			// failurePolicy Ignore lets through. The next reconcile tries again.
			return "https://127.0.0.1:1"
		}
		if c.istiodPorts == nil {
			c.istiodPorts = map[string]int{}
		}
		c.istiodPorts[key] = port
	}
	return fmt.Sprintf("https://127.0.0.1:%d", port)
}

// grantOperatorRBAC binds config/rbac/role.yaml, as shipped, to the operator's user.
func (c *Cluster) grantOperatorRBAC(ctx context.Context) error {
	raw, err := os.ReadFile(filepath.Join(c.Root, "config", "rbac", "role.yaml"))
	if err != nil {
		return err
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(raw, role); err != nil {
		return fmt.Errorf("parsing config/rbac/role.yaml: %w", err)
	}
	if err := c.Admin.Create(ctx, role); err != nil {
		return fmt.Errorf("creating the operator's ClusterRole: %w", err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: OperatorUser}},
	}
	if err := c.Admin.Create(ctx, binding); err != nil {
		return fmt.Errorf("binding the operator's ClusterRole: %w", err)
	}
	return nil
}

// Stop stops the operator, then the control plane.
func (c *Cluster) Stop() {
	_ = c.StopOperator()
	if c.Env != nil {
		_ = c.Env.Stop()
	}
}
