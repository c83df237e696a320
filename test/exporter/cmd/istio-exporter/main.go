// Command istio-exporter serves the synthetic Istio metrics of package exporter on its own,
// for trying queries by hand or pointing a Prometheus at it outside the Go tests:
//
//	go run ./test/exporter/cmd/istio-exporter -listen 127.0.0.1:9102 \
//	  -workload shop/web-primary@web=100,0,40ms -workload shop/web@web=100,0.05,250ms
//	curl -X PUT 127.0.0.1:9102/traffic -d '{"namespace":"shop","name":"web","service":"web","requestsPerSecond":100,"errorRatio":0.5,"p99Latency":"1s"}'
//	curl 127.0.0.1:9102/metrics
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshplane/meshplane/test/exporter"
)

// workloadFlags collects -workload NAMESPACE/NAME[@SERVICE]=RPS,ERROR_RATIO,P99.
type workloadFlags []string

func (w *workloadFlags) String() string     { return strings.Join(*w, " ") }
func (w *workloadFlags) Set(v string) error { *w = append(*w, v); return nil }

func parseWorkload(s string) (exporter.Workload, exporter.Traffic, error) {
	bad := func(why string) error {
		return fmt.Errorf("-workload %q: %s (want NAMESPACE/NAME[@SERVICE]=RPS,ERROR_RATIO,P99 such as shop/web@web=100,0.01,250ms)", s, why)
	}
	id, spec, ok := strings.Cut(s, "=")
	if !ok {
		return exporter.Workload{}, exporter.Traffic{}, bad("no '='")
	}
	ns, name, ok := strings.Cut(id, "/")
	if !ok {
		return exporter.Workload{}, exporter.Traffic{}, bad("no namespace")
	}
	name, service, _ := strings.Cut(name, "@")
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		return exporter.Workload{}, exporter.Traffic{}, bad("traffic needs three values")
	}
	rps, err1 := strconv.ParseFloat(parts[0], 64)
	errRatio, err2 := strconv.ParseFloat(parts[1], 64)
	p99, err3 := time.ParseDuration(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return exporter.Workload{}, exporter.Traffic{}, bad(err.Error())
	}
	return exporter.Workload{Namespace: ns, Name: name, Service: service},
		exporter.Traffic{RequestsPerSecond: rps, ErrorRatio: errRatio, P99Latency: p99}, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:9102", "address to serve /metrics and /traffic on")
	var workloads workloadFlags
	flag.Var(&workloads, "workload", "NAMESPACE/NAME[@SERVICE]=RPS,ERROR_RATIO,P99 (repeatable)")
	flag.Parse()

	e := exporter.New()
	for _, s := range workloads {
		w, t, err := parseWorkload(s)
		if err == nil {
			err = e.Set(w, t)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	log.Printf("Serving synthetic Istio metrics on http://%s/metrics (traffic settings at /traffic)", *listen)
	srv := &http.Server{Addr: *listen, Handler: e.Handler(), ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
