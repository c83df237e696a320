package metrics

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql/parser"
	"gomodules.xyz/jsonpatch/v2"
	"k8s.io/apimachinery/pkg/util/sets"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/testenv"
)

// The checks in this file hold config/prometheus and config/grafana to what the operator
// exports: a rule or a panel naming a metric or label that does not exist never fires or
// stays empty, silently.

const (
	rulesPath     = "../../config/prometheus/rules.yaml"
	monitorPath   = "../../config/prometheus/monitor.yaml"
	servicePath   = "../../config/manager/metrics_service.yaml"
	dashboardPath = "../../config/grafana/meshplane-dashboard.json"
)

// prometheusRule is the part of a PrometheusRule the checks read; decoding is strict, so a
// misspelt field fails.
type prometheusRule struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   map[string]any `json:"metadata"`
	Spec       struct {
		Groups []ruleGroup `json:"groups"`
	} `json:"spec"`
}

type ruleGroup struct {
	Name  string `json:"name"`
	Rules []rule `json:"rules"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func readRules(t *testing.T) prometheusRule {
	t.Helper()
	raw, err := os.ReadFile(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	var pr prometheusRule
	if err := yaml.UnmarshalStrict(raw, &pr); err != nil {
		t.Fatalf("decoding %s: %v", rulesPath, err)
	}
	return pr
}

// exportedMetrics returns each metric the operator exports with its label names, from a
// registry holding the status collector over fixtures in which every field is set, and the
// webhook metrics after one admission. A histogram gives its _bucket (with le), _sum and
// _count series, as Prometheus stores them.
func exportedMetrics(t *testing.T) map[string]sets.Set[string] {
	t.Helper()
	c := newCollector(fakeReader(t, readyControlPlane(), stalledControlPlane(), progressingCanary()))
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c, injectionAdmissions, injectionDuration)
	ObserveInjection(InjectionLabels{ControlPlane: "default", Revision: "default"},
		admission.Patched("", jsonpatch.JsonPatchOperation{Operation: "add", Path: "/spec", Value: 1}), time.Millisecond)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}

	// The fixtures must give every described metric a series, or the checks would miss it.
	described := sets.New[string]()
	descs := make(chan *prometheus.Desc, 100)
	c.Describe(descs)
	injectionAdmissions.Describe(descs)
	injectionDuration.Describe(descs)
	close(descs)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		described.Insert(fqName.FindStringSubmatch(d.String())[1])
	}
	gathered := sets.New[string]()
	for _, f := range families {
		gathered.Insert(f.GetName())
	}
	if missing := described.Difference(gathered); missing.Len() > 0 {
		t.Fatalf("the fixtures give these metrics no series: %v", sets.List(missing))
	}

	out := map[string]sets.Set[string]{}
	add := func(name string, labels []*dto.LabelPair, extra ...string) {
		if out[name] == nil {
			out[name] = sets.New[string]()
		}
		for _, l := range labels {
			out[name].Insert(l.GetName())
		}
		out[name].Insert(extra...)
	}
	for _, f := range families {
		for _, m := range f.Metric {
			if f.GetType() == dto.MetricType_HISTOGRAM {
				add(f.GetName()+"_bucket", m.Label, "le")
				add(f.GetName()+"_sum", m.Label)
				add(f.GetName()+"_count", m.Label)
				continue
			}
			add(f.GetName(), m.Label)
		}
	}
	return out
}

// targetMetrics are series Prometheus makes itself for each scrape target, with the target's
// labels: the ServiceMonitor's job and the instance.
var targetMetrics = map[string]sets.Set[string]{"up": sets.New("job", "instance")}

// exprUses is what a PromQL expression reads: each metric with the label names its selectors
// match on, and the label names it groups or matches by.
type exprUses struct {
	metrics  map[string]sets.Set[string]
	grouping sets.Set[string]
}

func parseUses(expr string) (exprUses, error) {
	u := exprUses{metrics: map[string]sets.Set[string]{}, grouping: sets.New[string]()}
	node, err := parser.ParseExpr(expr)
	if err != nil {
		return u, err
	}
	var errs []string
	parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.VectorSelector:
			if n.Name == "" {
				errs = append(errs, fmt.Sprintf("selector %s names no metric", n))
				return nil
			}
			if u.metrics[n.Name] == nil {
				u.metrics[n.Name] = sets.New[string]()
			}
			for _, m := range n.LabelMatchers {
				if m.Name != "__name__" {
					u.metrics[n.Name].Insert(m.Name)
				}
			}
		case *parser.AggregateExpr:
			u.grouping.Insert(n.Grouping...)
		case *parser.BinaryExpr:
			if n.VectorMatching != nil {
				u.grouping.Insert(n.VectorMatching.MatchingLabels...)
				u.grouping.Insert(n.VectorMatching.Include...)
			}
		}
		return nil
	})
	if len(errs) > 0 {
		return u, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return u, nil
}

// checkUses reports what expr reads that is not exported: an unknown metric, a label a
// selector matches on that the metric has not, a grouping label none of its metrics has.
func checkUses(exported map[string]sets.Set[string], expr string) []string {
	u, err := parseUses(expr)
	if err != nil {
		return []string{fmt.Sprintf("%q does not parse: %v", expr, err)}
	}
	var problems []string
	available := sets.New[string]()
	for name, labels := range u.metrics {
		have, ok := exported[name]
		if !ok {
			have, ok = targetMetrics[name]
		}
		if !ok {
			problems = append(problems, fmt.Sprintf("metric %s is not exported", name))
			continue
		}
		available = available.Union(have)
		if extra := labels.Difference(have); extra.Len() > 0 {
			problems = append(problems, fmt.Sprintf("%s has no label %v (it has %v)", name, sets.List(extra), sets.List(have)))
		}
	}
	if extra := u.grouping.Difference(available); extra.Len() > 0 {
		problems = append(problems, fmt.Sprintf("groups or matches by %v, which none of its metrics has", sets.List(extra)))
	}
	return problems
}

func TestRulesUseOnlyExportedMetricsAndLabels(t *testing.T) {
	g := NewWithT(t)
	exported := exportedMetrics(t)
	pr := readRules(t)
	g.Expect(pr.APIVersion).To(Equal("monitoring.coreos.com/v1"))
	g.Expect(pr.Kind).To(Equal("PrometheusRule"))
	names := sets.New[string]()
	for _, grp := range pr.Spec.Groups {
		for _, r := range grp.Rules {
			g.Expect(r.Alert).To(HavePrefix("Meshplane"), "alerts are named Meshplane<What>")
			g.Expect(names.Has(r.Alert)).To(BeFalse(), "alert %s is defined twice", r.Alert)
			names.Insert(r.Alert)
			g.Expect(checkUses(exported, r.Expr)).To(BeEmpty(), "alert %s", r.Alert)
			g.Expect(r.Labels).To(HaveKeyWithValue("severity", BeElementOf("critical", "warning")), "alert %s", r.Alert)
			for _, a := range []string{"summary", "description", "runbook"} {
				g.Expect(strings.TrimSpace(r.Annotations[a])).NotTo(BeEmpty(), "alert %s has no %s", r.Alert, a)
			}
		}
	}
	g.Expect(names.Len()).To(BeNumerically(">=", 8))
}

// The checker itself: each kind of mistake is caught.
func TestCheckUsesCatchesMistakes(t *testing.T) {
	exported := map[string]sets.Set[string]{
		"meshplane_canary_phase": sets.New("namespace", "canary", "phase"),
		"meshplane_d_bucket":     sets.New("control_plane", "le"),
	}
	for expr, want := range map[string]string{
		`meshplane_canary_phasee == 1`:                                         "meshplane_canary_phasee is not exported",
		`meshplane_canary_phase{phases="Failed"} == 1`:                         "has no label [phases]",
		`sum by (control_plane) (meshplane_canary_phase)`:                      "groups or matches by [control_plane]",
		`meshplane_canary_phase and on (cnary) meshplane_canary_phase`:         "groups or matches by [cnary]",
		`{__name__=~"meshplane_.*"}`:                                           "names no metric",
		`sum(rate(meshplane_canary_phase[5m]`:                                  "does not parse",
		`up{namespace="meshplane-system"}`:                                     "up has no label [namespace]",
		`histogram_quantile(0.9, sum by (le) (rate(meshplane_d[5m])))`:         "meshplane_d is not exported",
		`histogram_quantile(0.9, sum by (lee) (rate(meshplane_d_bucket[5m])))`: "groups or matches by [lee]",
	} {
		NewWithT(t).Expect(checkUses(exported, expr)).To(ContainElement(ContainSubstring(want)), expr)
	}
	NewWithT(t).Expect(checkUses(exported, `histogram_quantile(0.9, sum by (le, control_plane) (rate(meshplane_d_bucket[5m])))`)).To(BeEmpty())
}

// grafanaDashboard is the part of a dashboard the checks read.
type grafanaDashboard struct {
	UID        string         `json:"uid"`
	Title      string         `json:"title"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// grafanaIntervals are Grafana's own variables that stand for a range in PromQL.
var grafanaIntervals = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "5m", "$__range", "5m")

func TestDashboardUsesOnlyExportedMetricsAndLabels(t *testing.T) {
	g := NewWithT(t)
	exported := exportedMetrics(t)
	raw, err := os.ReadFile(dashboardPath)
	g.Expect(err).NotTo(HaveOccurred())
	var d grafanaDashboard
	g.Expect(json.Unmarshal(raw, &d)).To(Succeed())
	g.Expect(d.UID).NotTo(BeEmpty())
	g.Expect(d.Title).NotTo(BeEmpty())

	var panels []grafanaPanel
	for _, p := range d.Panels {
		panels = append(panels, p)
		panels = append(panels, p.Panels...)
	}
	ids := sets.New[int]()
	exprs := 0
	const datasource = `{"type":"prometheus","uid":"${datasource}"}`
	for _, p := range panels {
		g.Expect(ids.Has(p.ID)).To(BeFalse(), "panel id %d is used twice", p.ID)
		ids.Insert(p.ID)
		g.Expect(p.GridPos.X+p.GridPos.W).To(BeNumerically("<=", 24), "panel %q is wider than the grid", p.Title)
		if p.Type == "row" {
			continue
		}
		g.Expect(p.Targets).NotTo(BeEmpty(), "panel %q queries nothing", p.Title)
		g.Expect(p.Datasource).To(MatchJSON(datasource), "panel %q must use the dashboard's data source variable", p.Title)
		for _, target := range p.Targets {
			g.Expect(target.Datasource).To(MatchJSON(datasource), "panel %q", p.Title)
			expr := grafanaIntervals.Replace(target.Expr)
			g.Expect(expr).NotTo(ContainSubstring("$__"), "panel %q: a Grafana variable this check does not know", p.Title)
			g.Expect(checkUses(exported, expr)).To(BeEmpty(), "panel %q, query %s", p.Title, target.RefID)
			exprs++
		}
	}
	g.Expect(exprs).To(BeNumerically(">=", 10))

	// Variables: label_values(<selector>, <label>) must name an exported metric and label.
	labelValues := regexp.MustCompile(`^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	vars := 0
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		query, _ := q["query"].(string)
		m := labelValues.FindStringSubmatch(query)
		g.Expect(m).NotTo(BeNil(), "variable %s: %q is not label_values(<selector>, <label>)", v.Name, query)
		g.Expect(checkUses(exported, m[1])).To(BeEmpty(), "variable %s", v.Name)
		u, err := parseUses(m[1])
		g.Expect(err).NotTo(HaveOccurred())
		for name := range u.metrics {
			g.Expect(exported[name].Has(m[2])).To(BeTrue(), "variable %s: %s has no label %s", v.Name, name, m[2])
		}
		vars++
	}
	g.Expect(vars).To(BeNumerically(">=", 1))
}

// MeshplaneOperatorDown selects up{job=...}: the ServiceMonitor must give the target that job.
func TestOperatorDownAlertSelectsTheServiceMonitorsJob(t *testing.T) {
	g := NewWithT(t)
	var monitor struct {
		Spec struct {
			JobLabel string `json:"jobLabel"`
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
		} `json:"spec"`
	}
	var service struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	for path, into := range map[string]any{monitorPath: &monitor, servicePath: &service} {
		raw, err := os.ReadFile(path)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(yaml.Unmarshal(raw, into)).To(Succeed(), path)
	}
	g.Expect(monitor.Spec.JobLabel).NotTo(BeEmpty())
	job := service.Metadata.Labels[monitor.Spec.JobLabel]
	g.Expect(job).NotTo(BeEmpty(), "the metrics Service has no %s label", monitor.Spec.JobLabel)

	var jobs []string
	for _, grp := range readRules(t).Spec.Groups {
		for _, r := range grp.Rules {
			node, err := parser.ParseExpr(r.Expr)
			g.Expect(err).NotTo(HaveOccurred())
			parser.Inspect(node, func(n parser.Node, _ []parser.Node) error {
				if vs, ok := n.(*parser.VectorSelector); ok && vs.Name == "up" {
					for _, m := range vs.LabelMatchers {
						if m.Name == "job" {
							jobs = append(jobs, m.Value)
						}
					}
				}
				return nil
			})
		}
	}
	g.Expect(jobs).NotTo(BeEmpty())
	for _, j := range jobs {
		g.Expect(j).To(Equal(job))
	}
}

// promtool returns the promtool unpacked with the Prometheus the tests run
// (hack/install-prometheus.sh puts both in one folder).
func promtool(t *testing.T) string {
	t.Helper()
	bin, err := testenv.PrometheusBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(filepath.Dir(bin), "promtool")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no promtool beside %s: %v (run hack/install-prometheus.sh again)", bin, err)
	}
	return p
}

// writeRuleGroups writes the PrometheusRule's groups as a plain Prometheus rule file.
func writeRuleGroups(t *testing.T, dir string, groups []ruleGroup) string {
	t.Helper()
	raw, err := yaml.Marshal(map[string]any{"groups": groups})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Prometheus' own checker accepts the rules: PromQL, durations, annotation templates.
func TestPromtoolChecksRules(t *testing.T) {
	path := writeRuleGroups(t, t.TempDir(), readRules(t).Spec.Groups)
	out, err := exec.Command(promtool(t), "check", "rules", path).CombinedOutput()
	NewWithT(t).Expect(err).NotTo(HaveOccurred(), "%s", out)
}

// The alerts fire when they should and stay quiet when they should not (promtool's rule
// unit tests in testdata/alerts_test.yaml), and every alert has such a test.
func TestAlertsFireWhenTheyShould(t *testing.T) {
	g := NewWithT(t)
	pr := readRules(t)
	dir := t.TempDir()
	groups := slices.Clone(pr.Spec.Groups)
	for i := range groups {
		groups[i].Rules = slices.Clone(groups[i].Rules)
		for j := range groups[i].Rules {
			groups[i].Rules[j].Annotations = nil
		}
	}
	writeRuleGroups(t, dir, groups)
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), tests, 0o600)).To(Succeed())
	out, err := exec.Command(promtool(t), "test", "rules", filepath.Join(dir, "alerts_test.yaml")).CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "%s", out)

	// Every alert is tested firing, with the labels its annotations use.
	var unit struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []struct {
					ExpLabels map[string]string `json:"exp_labels"`
				} `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	g.Expect(yaml.Unmarshal(tests, &unit)).To(Succeed())
	firing := map[string]sets.Set[string]{}
	for _, tc := range unit.Tests {
		for _, a := range tc.AlertRuleTest {
			for _, e := range a.ExpAlerts {
				if firing[a.Alertname] == nil {
					firing[a.Alertname] = sets.New[string]()
				}
				for l := range e.ExpLabels {
					firing[a.Alertname].Insert(l)
				}
			}
		}
	}
	labelRef := regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)
	var untested []string
	for _, grp := range pr.Spec.Groups {
		for _, r := range grp.Rules {
			labels, ok := firing[r.Alert]
			if !ok {
				untested = append(untested, r.Alert)
				continue
			}
			for _, text := range r.Annotations {
				for _, m := range labelRef.FindAllStringSubmatch(text, -1) {
					g.Expect(labels.Has(m[1])).To(BeTrue(), "alert %s's annotations use $labels.%s, which it does not carry", r.Alert, m[1])
				}
			}
		}
	}
	sort.Strings(untested)
	g.Expect(untested).To(BeEmpty(), "alerts never tested firing in testdata/alerts_test.yaml")
}
