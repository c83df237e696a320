// Package metrics checks meshplane's metrics and alerts end to end: the operator runs on the
// real local control plane serving its metrics endpoint, and a real Prometheus scrapes it
// with the alerts of config/prometheus loaded, as the ServiceMonitor and PrometheusRule
// would have it in a cluster.
package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/devcluster"
	"github.com/meshplane/meshplane/internal/testenv"
)

const (
	timeout = 60 * time.Second
	poll    = 250 * time.Millisecond
	// job is the scrape job the ServiceMonitor gives the operator (its jobLabel), which
	// the MeshplaneOperatorDown alert selects.
	job = "meshplane"
)

var (
	cluster *devcluster.Cluster
	k8s     client.Client
	prom    *testenv.Prometheus
	// ruleCount is how many rules config/prometheus ships.
	ruleCount int
)

func TestMetrics(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "meshplane metrics and alerts")
}

var _ = BeforeSuite(func(ctx SpecContext) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	cluster, err = devcluster.Start(ctx, devcluster.Options{Metrics: true})
	Expect(err).NotTo(HaveOccurred())
	k8s = cluster.Admin
	DeferCleanup(cluster.Stop)

	rules := filepath.Join(GinkgoT().TempDir(), "rules.yaml")
	ruleCount = writeShippedRules(filepath.Join(cluster.Root, "config", "prometheus", "rules.yaml"), rules)
	target, err := url.Parse(cluster.MetricsURL)
	Expect(err).NotTo(HaveOccurred())
	prom, err = testenv.StartPrometheus(ctx, testenv.PrometheusOptions{
		ScrapeTargets: []string{target.Host},
		JobName:       job,
		RuleFiles:     []string{rules},
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(prom.Stop)
}, NodeTimeout(3*time.Minute))

// writeShippedRules writes the PrometheusRule's groups as a plain rule file for Prometheus
// and returns how many rules it holds.
func writeShippedRules(from, to string) int {
	raw, err := os.ReadFile(from)
	Expect(err).NotTo(HaveOccurred())
	var pr struct {
		Spec struct {
			Groups []struct {
				Rules []any `json:"rules"`
			} `json:"groups"`
		} `json:"spec"`
	}
	Expect(yaml.Unmarshal(raw, &pr)).To(Succeed())
	var spec map[string]any
	Expect(yaml.Unmarshal(raw, &spec)).To(Succeed())
	out, err := yaml.Marshal(spec["spec"])
	Expect(err).NotTo(HaveOccurred())
	Expect(os.WriteFile(to, out, 0o600)).To(Succeed())
	n := 0
	for _, g := range pr.Spec.Groups {
		n += len(g.Rules)
	}
	return n
}

// scrape reads the operator's metrics endpoint as Prometheus does and returns every
// sample as `name{label="value",...}` -> value, labels sorted by name; a histogram gives
// its _count.
func scrape(g Gomega) map[string]float64 {
	resp, err := http.Get(cluster.MetricsURL)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.Metric {
			key := name + labelString(m.Label)
			switch {
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Histogram != nil:
				out[name+"_count"+labelString(m.Label)] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func labelString(pairs []*dto.LabelPair) string {
	parts := make([]string, 0, len(pairs))
	for _, p := range pairs {
		parts = append(parts, fmt.Sprintf("%s=%q", p.GetName(), p.GetValue()))
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// withPrefix keeps the samples whose keys start with prefix.
func withPrefix(all map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range all {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// promGet calls Prometheus' HTTP API and decodes the data of a successful answer.
func promGet(g Gomega, path string, params url.Values, data any) {
	u := prom.URL + path
	if len(params) > 0 {
		u += "?" + params.Encode()
	}
	resp, err := http.Get(u)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), "%s", body)
	var envelope struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
	}
	g.Expect(json.Unmarshal(body, &envelope)).To(Succeed())
	g.Expect(envelope.Status).To(Equal("success"), "%s", body)
	g.Expect(json.Unmarshal(envelope.Data, data)).To(Succeed())
}

// query evaluates an instant PromQL query and returns each series' labels and value.
func query(g Gomega, promql string) map[string]string {
	var data struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	promGet(g, "/api/v1/query", url.Values{"query": {promql}}, &data)
	out := map[string]string{}
	for _, r := range data.Result {
		delete(r.Metric, "__name__")
		key, _ := json.Marshal(r.Metric)
		out[string(key)] = fmt.Sprint(r.Value[1])
	}
	return out
}

// alert is one of Prometheus' active alerts.
type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

func alerts(g Gomega) []alert {
	var data struct {
		Alerts []alert `json:"alerts"`
	}
	promGet(g, "/api/v1/alerts", nil, &data)
	return data.Alerts
}

// alertsNamed returns the active alerts with that name, by the value of label.
func alertsNamed(g Gomega, name, label string) map[string]alert {
	out := map[string]alert{}
	for _, a := range alerts(g) {
		if a.Labels["alertname"] == name {
			out[a.Labels[label]] = a
		}
	}
	return out
}

func ctx() context.Context { return context.Background() }
