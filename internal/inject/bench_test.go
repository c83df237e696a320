package inject

import "testing"

// BenchmarkInject measures one injection of a typical Deployment pod: two containers, HTTP and
// TCP probes, the app's Prometheus annotations and resource annotations.
func BenchmarkInject(b *testing.B) {
	pod, cfg := typicalPod(), testConfig()
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := Inject(pod, "bookinfo", cfg); err != nil || !ok {
			b.Fatalf("Inject: injected=%v err=%v", ok, err)
		}
	}
}
