package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// prometheusEnvVar names the Prometheus binary unpacked by hack/install-prometheus.sh.
const prometheusEnvVar = "MESHPLANE_PROMETHEUS"

const prometheusHint = `run "make testbin-prometheus" and set ` + prometheusEnvVar +
	`=$(hack/install-prometheus.sh) (or run "make test", which does both)`

// PrometheusBinary returns MESHPLANE_PROMETHEUS, checking that it is an executable file; if
// unset or wrong, an error saying how to get one.
func PrometheusBinary() (string, error) {
	p := os.Getenv(prometheusEnvVar)
	if p == "" {
		return "", fmt.Errorf("%s is not set: it must point at a Prometheus server binary; %s", prometheusEnvVar, prometheusHint)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("resolving %s=%s: %w", prometheusEnvVar, p, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("%s=%s: %w; %s", prometheusEnvVar, abs, err, prometheusHint)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s=%s is not an executable file; %s", prometheusEnvVar, abs, prometheusHint)
	}
	return abs, nil
}

// PrometheusOptions for StartPrometheus.
type PrometheusOptions struct {
	// ScrapeTargets are host:port addresses serving /metrics over plain HTTP, scraped as job
	// JobName.
	ScrapeTargets []string
	// JobName is the scrape job's name, the job label of its series (default "meshplane-test").
	JobName string
	// RuleFiles are Prometheus rule files (absolute paths) to load: their alerts and
	// recording rules are evaluated every ScrapeInterval.
	RuleFiles []string
	// ScrapeInterval defaults to one second, so rate() over a few seconds has samples.
	ScrapeInterval time.Duration
	// LogDir receives prometheus.log; default: inside Prometheus.Dir, removed by Stop.
	LogDir string
}

// Prometheus is a running Prometheus server on loopback. Stop it when done.
type Prometheus struct {
	URL string // http://127.0.0.1:<port>, the API's base address
	Dir string // temp dir holding its configuration and TSDB, removed by Stop

	mu       sync.Mutex
	comp     *component
	watchdog *watchdog
}

// prometheusConfig is the whole configuration: one scrape job, scrape timeout equal to the
// interval (Prometheus rejects a timeout longer than the interval), rules evaluated as often.
const prometheusConfig = `global:
  scrape_interval: %[1]s
  scrape_timeout: %[1]s
  evaluation_interval: %[1]s
rule_files: [%[4]s]
scrape_configs:
- job_name: %[3]s
  static_configs:
  - targets: [%[2]s]
`

// StartPrometheus runs the Prometheus binary from MESHPLANE_PROMETHEUS on a free loopback
// port with a fresh TSDB, scraping opts.ScrapeTargets, and returns once it reports ready.
// Like Start, it leaves nothing behind even if the test process is killed: the process gets
// a parent-death signal and a watchdog removes its directory. On error it cleans up.
func StartPrometheus(ctx context.Context, opts PrometheusOptions) (_ *Prometheus, retErr error) {
	bin, err := PrometheusBinary()
	if err != nil {
		return nil, err
	}
	interval := opts.ScrapeInterval
	if interval <= 0 {
		interval = time.Second
	}
	if interval%time.Millisecond != 0 {
		return nil, fmt.Errorf("scrape interval %s: Prometheus takes whole milliseconds", interval)
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "meshplane-prometheus-")
	if err != nil {
		return nil, fmt.Errorf("creating Prometheus directory: %w", err)
	}
	p := &Prometheus{Dir: dir}
	defer func() {
		if retErr != nil {
			if err := p.Stop(); err != nil {
				retErr = errors.Join(retErr, fmt.Errorf("tearing down after failed start: %w", err))
			}
		}
	}()
	// First, so the process below is covered: its flags name files under dir.
	if p.watchdog, err = startWatchdog(dir); err != nil {
		return nil, err
	}
	logDir := opts.LogDir
	if logDir == "" {
		logDir = filepath.Join(dir, "logs")
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating log directory: %w", err)
	}

	targets := make([]string, len(opts.ScrapeTargets))
	for i, t := range opts.ScrapeTargets {
		targets[i] = strconv.Quote(t)
	}
	rules := make([]string, len(opts.RuleFiles))
	for i, r := range opts.RuleFiles {
		rules[i] = strconv.Quote(r)
	}
	job := opts.JobName
	if job == "" {
		job = "meshplane-test"
	}
	configPath := filepath.Join(dir, "prometheus.yml")
	cfg := fmt.Sprintf(prometheusConfig, strconv.FormatInt(interval.Milliseconds(), 10)+"ms",
		strings.Join(targets, ", "), strconv.Quote(job), strings.Join(rules, ", "))
	if err := os.WriteFile(configPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("writing Prometheus configuration: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p.comp, err = startComponent("prometheus", bin, []string{
		"--config.file=" + configPath,
		"--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr,
		// Debian's defaults point at /etc/prometheus, which this unpacked copy has not.
		"--web.console.templates=" + filepath.Join(dir, "consoles"),
		"--web.console.libraries=" + filepath.Join(dir, "console_libraries"),
	}, logDir)
	if err != nil {
		return nil, err
	}
	p.URL = "http://" + addr
	if err := waitURL(ctx, p.comp, p.URL+"/-/ready"); err != nil {
		return nil, err
	}
	return p, nil
}

// Stop terminates Prometheus, waits for it to exit and removes Dir. Safe to call twice.
func (p *Prometheus) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	if p.comp != nil {
		if err := p.comp.stop(componentStopGrace); err != nil {
			errs = append(errs, err)
		}
		p.comp = nil
	}
	if p.watchdog != nil {
		if err := p.watchdog.stop(); err != nil {
			errs = append(errs, err)
		}
		p.watchdog = nil
	}
	if p.Dir != "" {
		if err := os.RemoveAll(p.Dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", p.Dir, err))
		}
	}
	return errors.Join(errs...)
}
