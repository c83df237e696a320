// Package e2e runs meshplane's operator against the real local control plane (etcd,
// kube-apiserver, kube-controller-manager, kube-scheduler and kwok), as its own user with
// the RBAC the release ships.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/meshplane/meshplane/internal/devcluster"
)

var (
	cluster *devcluster.Cluster
	k8s     client.Client
)

// syncPeriod makes the operator's informers resync often, so the steady-state spec sees
// many resyncs within its minute.
const syncPeriod = 10 * time.Second

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "meshplane end-to-end")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	// Istio validation on, as the operator's binary defaults to: every control plane has
	// its istio-validator (on loopback, failing open while no istiod serves it).
	cluster, err = devcluster.Start(ctx, devcluster.Options{AuditLog: true, SyncPeriod: syncPeriod, IstioValidation: true})
	Expect(err).NotTo(HaveOccurred())
	k8s = cluster.Admin
	DeferCleanup(cluster.Stop)
}, NodeTimeout(3*time.Minute))

// auditEvent is the part of an API server audit event the suite reads.
type auditEvent struct {
	Stage string `json:"stage"`
	Verb  string `json:"verb"`
	User  struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	RequestReceivedTimestamp time.Time `json:"requestReceivedTimestamp"`
}

// operatorWrites returns the write requests the operator sent since `since`, from the API
// server's audit log: the server's own record, not the client's.
func operatorWrites(since time.Time) []string {
	f, err := os.Open(cluster.Env.AuditLogPath)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	var writes []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEvent
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Stage != "ResponseComplete" || e.User.Username != devcluster.OperatorUser || e.RequestReceivedTimestamp.Before(since) {
			continue
		}
		switch e.Verb {
		case "create", "update", "patch", "delete", "deletecollection", "apply":
			r := e.ObjectRef
			writes = append(writes, e.Verb+" "+r.Resource+"/"+r.Subresource+" "+r.Namespace+"/"+r.Name)
		}
	}
	Expect(sc.Err()).NotTo(HaveOccurred())
	return writes
}

// ctx is the context of API calls made by the specs.
func ctx() context.Context { return context.Background() }
