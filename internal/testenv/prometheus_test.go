package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// requirePrometheus fails (never skips) when the binary is missing, like requireAssets.
func requirePrometheus(t *testing.T) {
	t.Helper()
	if _, err := PrometheusBinary(); err != nil {
		t.Fatal(err)
	}
}

func TestPrometheusBinaryExplainsWhatIsMissing(t *testing.T) {
	g := NewWithT(t)
	t.Setenv(prometheusEnvVar, "")
	_, err := PrometheusBinary()
	g.Expect(err).To(MatchError(ContainSubstring("MESHPLANE_PROMETHEUS is not set")))
	g.Expect(err).To(MatchError(ContainSubstring("make testbin-prometheus")))

	t.Setenv(prometheusEnvVar, t.TempDir())
	_, err = PrometheusBinary()
	g.Expect(err).To(MatchError(ContainSubstring("is not an executable file")))
}

func TestPrometheusStartsAndStops(t *testing.T) {
	requirePrometheus(t)
	g := NewWithT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	p, err := StartPrometheus(ctx, PrometheusOptions{ScrapeTargets: []string{"127.0.0.1:1"}})
	g.Expect(err).NotTo(HaveOccurred())
	t.Logf("StartPrometheus took %s", time.Since(t0).Round(10*time.Millisecond))
	defer func() { _ = p.Stop() }()

	resp, err := http.Get(p.URL + "/api/v1/targets")
	g.Expect(err).NotTo(HaveOccurred())
	_ = resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	procs := processesMentioning(p.Dir + "/")
	g.Expect(procs).To(HaveLen(1), "%v", procs)

	g.Expect(p.Stop()).To(Succeed())
	g.Expect(stillRunning(procs)).To(BeEmpty())
	g.Expect(p.Dir).NotTo(BeADirectory())
	g.Expect(p.Stop()).To(Succeed(), "a second Stop is harmless")
}

func TestPrometheusRejectsAnUnusableInterval(t *testing.T) {
	requirePrometheus(t)
	_, err := StartPrometheus(context.Background(), PrometheusOptions{ScrapeInterval: 1500 * time.Microsecond})
	NewWithT(t).Expect(err).To(MatchError(ContainSubstring("whole milliseconds")))
}

// TestPrometheusHardKillLeavesNothing SIGKILLs a test process holding a Prometheus and checks
// that the parent-death signal and the watchdog take it down and remove its directory.
func TestPrometheusHardKillLeavesNothing(t *testing.T) {
	requirePrometheus(t)
	g := NewWithT(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldPrometheus$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTENV_HELPER=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cmd.Start()).To(Succeed())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

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
		g.Expect(ok).To(BeTrue(), "helper exited before its Prometheus was up")
		dir = d
	case <-time.After(time.Minute):
		t.Fatal("helper did not start Prometheus in time")
	}
	procs := processesMentioning(dir + "/")
	g.Expect(procs).To(HaveLen(1), "%v", procs)
	g.Expect(cmd.Process.Signal(syscall.SIGKILL)).To(Succeed())
	_ = cmd.Wait()
	g.Eventually(func() []string { return stillRunning(procs) }).WithTimeout(15 * time.Second).Should(BeEmpty())
	g.Eventually(dir).WithTimeout(15*time.Second).ShouldNot(BeADirectory(), "the watchdog removes Prometheus' directory")
}

// TestHelperHoldPrometheus is the child of TestPrometheusHardKillLeavesNothing.
func TestHelperHoldPrometheus(t *testing.T) {
	if os.Getenv("TESTENV_HELPER") != "1" {
		return
	}
	p, err := StartPrometheus(context.Background(), PrometheusOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("DIR=%s\n", p.Dir)
	time.Sleep(10 * time.Minute) // until killed
}
