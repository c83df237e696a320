package testenv

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
)

func TestMain(m *testing.M) {
	// envtest logs through controller-runtime; without a logger it complains later.
	logf.SetLogger(logr.Discard())
	os.Exit(m.Run())
}

// requireAssets fails (never skips) when the binaries are missing: a skipped suite in CI
// looks green while testing nothing.
func requireAssets(t *testing.T) {
	t.Helper()
	if _, err := AssetsDir(); err != nil {
		t.Fatal(err)
	}
}

func startEnv(t *testing.T, opts Options) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t0 := time.Now()
	env, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Logf("Start took %s (workloads: %t)", time.Since(t0).Round(10*time.Millisecond), !opts.WithoutWorkloads)
	t.Cleanup(func() { _ = env.Stop() })
	return env
}

func TestStartRunsWorkloads(t *testing.T) {
	requireAssets(t)
	g := NewWithT(t)
	env := startEnv(t, Options{})
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	g.Expect(err).NotTo(HaveOccurred())

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}}
	_, err = cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "demo"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "example.invalid/web:1", // kwok never pulls it
				}}},
			},
		},
	}
	_, err = cs.AppsV1().Deployments("demo").Create(ctx, dep, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	g.Eventually(func(g Gomega) {
		d, err := cs.AppsV1().Deployments("demo").Get(ctx, "web", metav1.GetOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(d.Status.AvailableReplicas).To(BeEquivalentTo(2))
	}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())

	pods, err := cs.CoreV1().Pods("demo").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(pods.Items).To(HaveLen(2))
	for _, p := range pods.Items {
		g.Expect(p.Spec.NodeName).To(Equal(NodeName), "pod %s", p.Name)
		g.Expect(p.Status.Phase).To(Equal(corev1.PodRunning), "pod %s", p.Name)
		g.Expect(p.Status.PodIP).NotTo(BeEmpty(), "pod %s", p.Name)
	}

	// A user without groups authenticates but has no rights until RBAC grants some.
	userCfg, userKubeconfig, err := env.AddUser("system:serviceaccount:demo:viewer", nil)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(userKubeconfig).To(BeAnExistingFile())
	userCS, err := kubernetes.NewForConfig(userCfg)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = userCS.CoreV1().Pods("demo").List(ctx, metav1.ListOptions{})
	g.Expect(err).To(MatchError(ContainSubstring("forbidden")))

	// The admin kubeconfig works for kubectl-style clients.
	g.Expect(env.Kubeconfig).To(BeAnExistingFile())

	// Everything this env started must be gone after Stop.
	mine := envProcesses(t, env)
	g.Expect(mine).To(HaveLen(5), "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok: %v", mine)
	g.Expect(env.Stop()).To(Succeed())
	g.Expect(env.Stop()).To(Succeed(), "second Stop")
	g.Eventually(func() []string { return stillRunning(mine) }).WithTimeout(10 * time.Second).Should(BeEmpty())
	g.Expect(env.Dir).NotTo(BeADirectory())
}

func TestAuditLog(t *testing.T) {
	requireAssets(t)
	g := NewWithT(t)
	assets, _ := AssetsDir()
	env := startEnv(t, Options{
		AuditLog:          true,
		WithoutWorkloads:  true,
		CRDDirectoryPaths: []string{filepath.Join(assets, "cert-manager-crds")},
	})
	g.Expect(env.AuditLogPath).NotTo(BeEmpty())

	cs, err := kubernetes.NewForConfig(env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	// The CRDs are served by the time Start returns.
	_, err = cs.Discovery().ServerResourcesForGroupVersion("cert-manager.io/v1")
	g.Expect(err).NotTo(HaveOccurred())
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "audited", Namespace: "default"}}
	_, err = cs.CoreV1().ConfigMaps("default").Create(context.Background(), cm, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred())

	// Blocking mode: the event is written before the response, so no waiting is needed.
	f, err := os.Open(env.AuditLogPath)
	g.Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	found := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Verb      string `json:"verb"`
			Stage     string `json:"stage"`
			Level     string `json:"level"`
			ObjectRef struct {
				Resource, Namespace, Name string
			} `json:"objectRef"`
		}
		g.Expect(json.Unmarshal(sc.Bytes(), &ev)).To(Succeed(), "line: %s", sc.Text())
		g.Expect(ev.Stage).NotTo(Equal("RequestReceived"))
		if ev.Verb == "create" && ev.ObjectRef.Resource == "configmaps" && ev.ObjectRef.Name == "audited" {
			g.Expect(ev.Level).To(Equal("Metadata"))
			found = true
		}
	}
	g.Expect(sc.Err()).NotTo(HaveOccurred())
	g.Expect(found).To(BeTrue(), "no audit event for the ConfigMap create in %s", env.AuditLogPath)
}

// TestFailedStartCleansUp makes Start fail after the apiserver is up (a CRD path that does
// not exist) and checks that nothing it started is left running.
func TestFailedStartCleansUp(t *testing.T) {
	requireAssets(t)
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env, err := Start(ctx, Options{CRDDirectoryPaths: []string{"/nonexistent/crds"}})
	g.Expect(err).To(MatchError(ContainSubstring("/nonexistent/crds")))
	g.Expect(env).To(BeNil())
	g.Expect(ourChildren()).To(BeEmpty())
}

// TestHardKillLeavesNothing starts an env in a child process, SIGKILLs the child (no Stop,
// no cleanup) and checks that the watchdog and Pdeathsig take every component down.
func TestHardKillLeavesNothing(t *testing.T) {
	requireAssets(t)
	g := NewWithT(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldEnv$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTENV_HELPER=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cmd.Start()).To(Succeed())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	// The helper prints "DIR=<env.Dir>" once Start has returned.
	dirCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "DIR="); ok {
				dirCh <- d
			}
		}
		close(dirCh)
	}()
	var dir string
	select {
	case d, ok := <-dirCh:
		g.Expect(ok).To(BeTrue(), "helper exited before its env was up")
		dir = d
	case <-time.After(3 * time.Minute):
		t.Fatal("helper did not start its env in time")
	}

	procs := processesMentioning(dir + "/")
	// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok.
	g.Expect(procs).To(HaveLen(5), "%v", procs)
	g.Expect(cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
	_ = cmd.Wait()
	g.Eventually(func() []string { return stillRunning(procs) }).WithTimeout(15 * time.Second).Should(BeEmpty())
	g.Eventually(dir).WithTimeout(15*time.Second).ShouldNot(BeADirectory(), "the watchdog removes the env's directory")
}

// TestHelperHoldEnv is the child of TestHardKillLeavesNothing; it does nothing otherwise.
func TestHelperHoldEnv(t *testing.T) {
	if os.Getenv("TESTENV_HELPER") != "1" {
		return
	}
	env, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("DIR=%s\n", env.Dir)
	time.Sleep(10 * time.Minute) // until killed
}

// envProcesses lists "pid exe" for processes run from the assets dir that belong to env
// (another suite may be using the same binaries concurrently).
func envProcesses(t *testing.T, env *Env) []string {
	t.Helper()
	assets, err := filepath.EvalSymlinks(env.AssetsDir)
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, p := range processesMentioning(env.Dir + "/") {
		if strings.HasPrefix(strings.SplitN(p, " ", 2)[1], assets+"/") {
			mine = append(mine, p)
		}
	}
	return mine
}

// processesMentioning returns "pid exe" for every process whose command line contains s.
func processesMentioning(s string) []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmdline), s) {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		found = append(found, fmt.Sprintf("%d %s", pid, exe))
	}
	return found
}

// ourChildren returns "pid exe" for live (non-zombie) child processes of the test process.
func ourChildren() []string {
	var found []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so split after the last ')'.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) < 2 || fields[0] == "Z" || fields[1] != strconv.Itoa(os.Getpid()) {
			continue
		}
		exe, _ := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		found = append(found, e.Name()+" "+exe)
	}
	return found
}

// stillRunning returns the entries of procs ("pid exe") whose pid still runs the same exe.
func stillRunning(procs []string) []string {
	var alive []string
	for _, p := range procs {
		pid, exe, _ := strings.Cut(p, " ")
		cur, err := os.Readlink("/proc/" + pid + "/exe")
		if err == nil && cur == exe {
			alive = append(alive, p)
		}
	}
	return alive
}
