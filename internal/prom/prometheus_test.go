package prom_test

// The provider against a real Prometheus (hack/install-prometheus.sh) scraping the synthetic
// Istio exporter every second: what a Canary's analysis will see, workload by workload.

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/common/model"

	"github.com/meshplane/meshplane/internal/prom"
	"github.com/meshplane/meshplane/internal/testenv"
	"github.com/meshplane/meshplane/test/exporter"
)

const (
	namespace = "shop"
	// window is the analysis interval the queries use: ten scrapes.
	window = 10 * time.Second
	// settle bounds how long a change takes to show: a full window of new samples plus
	// scrape and startup delays, with room for a loaded 2-core machine.
	settle = 90 * time.Second
	poll   = 500 * time.Millisecond

	password = "pr0m-passw0rd"
	token    = "pr0m-t0ken"
)

// startPrometheus serves the exporter on loopback and starts Prometheus scraping it.
func startPrometheus(t *testing.T, exp *exporter.Exporter) *testenv.Prometheus {
	t.Helper()
	// Fails rather than skips: a skipped suite in CI looks green while testing nothing.
	if _, err := testenv.PrometheusBinary(); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(exp.Handler())
	t.Cleanup(srv.Close)

	logDir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := testenv.StartPrometheus(ctx, testenv.PrometheusOptions{
		ScrapeTargets: []string{srv.Listener.Addr().String()},
		LogDir:        logDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("stopping Prometheus: %v", err)
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(logDir, "prometheus.log")); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("last lines of prometheus.log:\n%s", strings.Join(lines[max(0, len(lines)-30):], "\n"))
			}
		}
	})
	return p
}

// measure runs the three built-in queries for one workload.
type measure struct {
	c      *prom.Client
	target prom.Target
}

func (m measure) query(g Gomega, build func(prom.Target, time.Duration) (string, error)) prom.Result {
	q, err := build(m.target, window)
	g.Expect(err).NotTo(HaveOccurred())
	res, err := m.c.Query(context.Background(), q, time.Time{})
	g.Expect(err).NotTo(HaveOccurred())
	return res
}

// windowFull checks that every series of the workload has a sample per scrape across the
// window. Until then a count over the window is still rising, and would pass through any
// expected value on its way.
func (m measure) windowFull(g Gomega) {
	res, err := m.c.Query(context.Background(), fmt.Sprintf(
		`min(count_over_time(istio_requests_total{destination_workload_namespace=%q,destination_workload=%q}[%s]))`,
		m.target.Namespace, m.target.Workload, model.Duration(window)), time.Time{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res).To(HaveField("Value", BeNumerically(">=", window.Seconds())), "samples of %s in the window", m.target.Workload)
}

func (m measure) successRate(g Gomega) prom.Result { return m.query(g, prom.RequestSuccessRateQuery) }
func (m measure) p99(g Gomega) prom.Result         { return m.query(g, prom.RequestDurationP99Query) }
func (m measure) count(g Gomega) prom.Result       { return m.query(g, prom.RequestCountQuery) }

// value matches a Result holding a number within tolerance of want.
func value(want, tolerance float64) OmegaMatcher {
	return And(
		HaveField("NoData", BeFalse()),
		HaveField("Value", BeNumerically("~", want, tolerance)),
	)
}

// noData matches a Result with no data for the given reason.
func noData(reason string) OmegaMatcher {
	return And(HaveField("NoData", BeTrue()), HaveField("Reason", reason))
}

func TestAgainstPrometheus(t *testing.T) {
	exp := exporter.New()
	p := startPrometheus(t, exp)
	c, err := prom.NewClient(prom.Config{Address: p.URL})
	if err != nil {
		t.Fatal(err)
	}
	on := func(workload string) measure {
		return measure{c: c, target: prom.Target{Namespace: namespace, Workload: workload}}
	}
	set := func(t *testing.T, name string, tr exporter.Traffic) {
		t.Helper()
		if err := exp.Set(exporter.Workload{Namespace: namespace, Name: name, Service: strings.TrimSuffix(name, "-primary")}, tr); err != nil {
			t.Fatal(err)
		}
	}
	// Every workload starts now and changes at one moment, so the test waits for a full
	// window of samples twice in all rather than once per scenario.
	set(t, "web-primary", exporter.Traffic{RequestsPerSecond: 200, P99Latency: 40 * time.Millisecond})
	set(t, "web", exporter.Traffic{RequestsPerSecond: 100, P99Latency: 120 * time.Millisecond})
	set(t, "edge", exporter.Traffic{RequestsPerSecond: 20, P99Latency: 250 * time.Millisecond})
	set(t, "broken", exporter.Traffic{RequestsPerSecond: 50, ErrorRatio: 1, P99Latency: 5 * time.Millisecond})
	set(t, "api", exporter.Traffic{RequestsPerSecond: 100, P99Latency: 80 * time.Millisecond})
	set(t, "slow", exporter.Traffic{RequestsPerSecond: 100, P99Latency: 80 * time.Millisecond})
	set(t, "batch", exporter.Traffic{RequestsPerSecond: 100, P99Latency: 30 * time.Millisecond})

	t.Run("healthy canary beside its primary", func(t *testing.T) {
		g := NewWithT(t)
		canary, primary := on("web"), on("web-primary")
		g.Eventually(func(g Gomega) {
			canary.windowFull(g)
			g.Expect(canary.successRate(g)).To(value(1, 1e-9))
			g.Expect(canary.p99(g)).To(value(120, 1.2))
			g.Expect(canary.count(g)).To(value(100*window.Seconds(), 50))
		}).WithTimeout(settle).WithPolling(poll).Should(Succeed())
		// The primary's own numbers: the workload label keeps them apart.
		g.Expect(primary.successRate(g)).To(value(1, 1e-9))
		g.Expect(primary.p99(g)).To(value(40, 0.4))
		g.Expect(primary.count(g)).To(value(200*window.Seconds(), 100))
	})

	t.Run("a p99 on a bucket's bound, at a low rate", func(t *testing.T) {
		// 250ms sits in the top 1% of its bucket, where the exporter spills requests into
		// the bucket above; reading it back exactly shows both sides use Istio's buckets.
		g := NewWithT(t)
		g.Eventually(func(g Gomega) {
			g.Expect(on("edge").p99(g)).To(value(250, 0.5))
		}).WithTimeout(settle).WithPolling(poll).Should(Succeed())
	})

	t.Run("every request failing is a success rate of 0, not no data", func(t *testing.T) {
		g := NewWithT(t)
		broken := on("broken")
		g.Eventually(func(g Gomega) {
			broken.windowFull(g)
			g.Expect(broken.count(g)).To(value(50*window.Seconds(), 25))
			g.Expect(broken.successRate(g)).To(value(0, 0))
		}).WithTimeout(settle).WithPolling(poll).Should(Succeed())
	})

	t.Run("no traffic ever is no data", func(t *testing.T) {
		g := NewWithT(t)
		// The other workloads' series are in Prometheus (above), so the idle one's absence
		// is real, not a scrape yet to come.
		idle := on("idle")
		g.Expect(idle.successRate(g)).To(noData(prom.ReasonNoSeries))
		g.Expect(idle.p99(g)).To(noData(prom.ReasonNoSeries))
		g.Expect(idle.count(g)).To(noData(prom.ReasonNoSeries))
	})

	t.Run("changes at runtime: 5xx injected, latency raised, traffic stopped", func(t *testing.T) {
		g := NewWithT(t)
		api, slow, batch := on("api"), on("slow"), on("batch")
		g.Eventually(func(g Gomega) {
			for _, m := range []measure{api, slow, batch} {
				g.Expect(m.successRate(g)).To(value(1, 1e-9), m.target.Workload)
			}
			g.Expect(api.p99(g)).To(value(80, 0.8))
			g.Expect(slow.p99(g)).To(value(80, 0.8))
		}).WithTimeout(settle).WithPolling(poll).Should(Succeed())

		set(t, "api", exporter.Traffic{RequestsPerSecond: 100, ErrorRatio: 0.25, P99Latency: 80 * time.Millisecond})
		set(t, "slow", exporter.Traffic{RequestsPerSecond: 100, P99Latency: 600 * time.Millisecond})
		set(t, "batch", exporter.Traffic{})
		g.Eventually(func(g Gomega) {
			g.Expect(api.successRate(g)).To(value(0.75, 0.005))
			g.Expect(slow.p99(g)).To(value(600, 6))
			g.Expect(batch.successRate(g)).To(noData(prom.ReasonNaN), "0/0")
			g.Expect(batch.p99(g)).To(noData(prom.ReasonNaN))
			g.Expect(batch.count(g)).To(value(0, 0), "no requests in the window: a count of 0")
		}).WithTimeout(settle).WithPolling(poll).Should(Succeed())
		g.Expect(api.p99(g)).To(value(80, 0.8), "errors alone do not move the latency")
		g.Expect(slow.successRate(g)).To(value(1, 1e-9), "latency alone does not fail requests")
	})

	t.Run("custom queries", func(t *testing.T) {
		g := NewWithT(t)
		q, err := prom.RenderTemplate(
			`sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ target }}"}[{{ interval }}]))`+
				` / sum(rate(istio_requests_total{reporter="destination",destination_workload_namespace="{{ namespace }}",destination_workload="{{ primary }}"}[{{ interval }}]))`,
			prom.TemplateVars{Namespace: namespace, Target: "web", Primary: "web-primary", Interval: window})
		g.Expect(err).NotTo(HaveOccurred())
		g.Eventually(func(g Gomega) {
			res, err := c.Query(context.Background(), q, time.Time{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(res).To(value(0.5, 0.005), "the canary gets half the primary's requests")
		}).WithTimeout(settle).WithPolling(poll).Should(Succeed())

		res, err := c.Query(context.Background(), `scalar(vector(2))`, time.Time{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res).To(value(2, 0))
		res, err = c.Query(context.Background(), `vector(1) / 0`, time.Time{})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res).To(noData(prom.ReasonInfinite))
		res, err = c.Query(context.Background(), q, time.Now().Add(-time.Hour))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res).To(noData(prom.ReasonNoSeries), "an hour ago there was nothing")
	})

	t.Run("queries that cannot be answered with one number", func(t *testing.T) {
		g := NewWithT(t)
		queryErr := func(q string) *prom.QueryError {
			_, err := c.Query(context.Background(), q, time.Time{})
			g.Expect(err).To(HaveOccurred(), q)
			g.Expect(err).To(BeAssignableToTypeOf(&prom.QueryError{}))
			return err.(*prom.QueryError)
		}
		e := queryErr(`sum(rate(istio_requests_total[1m])`)
		g.Expect(e.Reason).To(Equal(prom.ErrorQueryFailed))
		g.Expect(e.Error()).To(And(HavePrefix("querying Prometheus at "+p.URL+": query failed: bad_data: "), ContainSubstring("parse error")))
		e = queryErr(`no_such_function(up)`)
		g.Expect(e.Reason).To(Equal(prom.ErrorQueryFailed))
		g.Expect(e.Error()).To(ContainSubstring(`unknown function with name "no_such_function"`))

		g.Eventually(func(g Gomega) {
			_, err := c.Query(context.Background(), `sum by (destination_workload) (istio_requests_total{destination_workload=~"web|web-primary"})`, time.Time{})
			g.Expect(err).To(MatchError(ContainSubstring(
				`the query returned 2 series, not one number: {destination_workload="web"}, {destination_workload="web-primary"}; aggregate them`)))
		}).WithTimeout(settle).WithPolling(poll).Should(Succeed())
		e = queryErr(`istio_requests_total[1m]`)
		g.Expect(e.Reason).To(Equal(prom.ErrorUnusableResult))
		g.Expect(e.Error()).To(ContainSubstring("range vector"))
	})

	t.Run("unreachable Prometheus", func(t *testing.T) {
		g := NewWithT(t)
		port, err := testenv.FreePort()
		g.Expect(err).NotTo(HaveOccurred())
		addr := "http://127.0.0.1:" + strconv.Itoa(port)
		down, err := prom.NewClient(prom.Config{Address: addr, Credentials: prom.Credentials{Username: "flagger", Password: password}})
		g.Expect(err).NotTo(HaveOccurred())
		_, err = down.Query(context.Background(), `vector(1)`, time.Time{})
		g.Expect(err).To(MatchError(And(HavePrefix("querying Prometheus at "+addr+": "), ContainSubstring("connection refused"))))
		g.Expect(err.(*prom.QueryError).Reason).To(Equal(prom.ErrorUnreachable))
		g.Expect(err.Error()).NotTo(Or(ContainSubstring(password), ContainSubstring("flagger")))
	})

	t.Run("credentials and TLS through an authenticating proxy", func(t *testing.T) {
		testThroughAuthProxy(t, p)
	})
}

// testThroughAuthProxy puts an HTTPS reverse proxy that demands basic auth or a bearer
// token in front of the real Prometheus. The proxy is a stub for this purpose only:
// Prometheus' own web config does basic auth but not bearer tokens, and the point is to see
// what the client sends.
func testThroughAuthProxy(t *testing.T, p *testenv.Prometheus) {
	g := NewWithT(t)
	target, err := url.Parse(p.URL)
	g.Expect(err).NotTo(HaveOccurred())
	upstream := httputil.NewSingleHostReverseProxy(target)
	var basicSeen, bearerSeen atomic.Int32
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, isBasic := r.BasicAuth()
		switch {
		case isBasic && user == "flagger" && pass == password:
			basicSeen.Add(1)
		case r.Header.Get("Authorization") == "Bearer "+token:
			bearerSeen.Add(1)
		default:
			w.Header().Set("WWW-Authenticate", `Basic realm="prometheus"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		r.Header.Del("Authorization")
		upstream.ServeHTTP(w, r)
	}))
	// The client that lacks the CA aborts its handshake, on purpose.
	proxy.Config.ErrorLog = log.New(io.Discard, "", 0)
	proxy.StartTLS()
	t.Cleanup(proxy.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: proxy.Certificate().Raw})

	query := func(cfg prom.Config) (prom.Result, error) {
		cfg.Address = proxy.URL
		c, err := prom.NewClient(cfg)
		g.Expect(err).NotTo(HaveOccurred())
		return c.Query(context.Background(), `vector(1)`, time.Time{})
	}
	fromSecret := func(data map[string]string) prom.Credentials {
		b := map[string][]byte{}
		for k, v := range data {
			b[k] = []byte(v)
		}
		creds, err := prom.CredentialsFromSecret(b)
		g.Expect(err).NotTo(HaveOccurred())
		return creds
	}
	caStr := string(ca)

	res, err := query(prom.Config{Credentials: fromSecret(map[string]string{"username": "flagger", "password": password, "ca.crt": caStr})})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res).To(value(1, 0))
	g.Expect(basicSeen.Load()).To(BeNumerically(">=", 1), "basic auth reached the proxy")

	res, err = query(prom.Config{Credentials: fromSecret(map[string]string{"token": token, "ca.crt": caStr})})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res).To(value(1, 0))
	g.Expect(bearerSeen.Load()).To(BeNumerically(">=", 1), "the bearer token reached the proxy")

	res, err = query(prom.Config{Credentials: prom.Credentials{Username: "flagger", Password: password}, InsecureSkipVerify: true})
	g.Expect(err).NotTo(HaveOccurred(), "insecureSkipVerify accepts the unknown certificate")
	g.Expect(res).To(value(1, 0))

	for name, cfg := range map[string]prom.Config{
		"wrong password": {Credentials: prom.Credentials{Username: "flagger", Password: "not-" + password, CA: ca}},
		"no credentials": {Credentials: prom.Credentials{CA: ca}},
		"wrong token":    {Credentials: prom.Credentials{BearerToken: token + "-old", CA: ca}},
	} {
		_, err := query(cfg)
		g.Expect(err).To(MatchError(HavePrefix("querying Prometheus at "+proxy.URL+": HTTP 401: the credentials were refused")), name)
		g.Expect(err.(*prom.QueryError).Reason).To(Equal(prom.ErrorUnauthorized), name)
		g.Expect(err.Error()).NotTo(Or(ContainSubstring(password), ContainSubstring(token)), name)
	}

	_, err = query(prom.Config{Credentials: prom.Credentials{BearerToken: token}})
	g.Expect(err).To(MatchError(ContainSubstring("certificate signed by unknown authority")), "without the CA")
	g.Expect(err.(*prom.QueryError).Reason).To(Equal(prom.ErrorUnreachable))
	g.Expect(err.Error()).NotTo(ContainSubstring(token))
}
