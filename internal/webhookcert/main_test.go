package webhookcert

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/internal/testenv"
)

// The local control plane starts on first use, so the pure tests run without it.
var (
	envOnce sync.Once
	env     *testenv.Env
	envC    client.Client
	envErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// apiClient returns an uncached client of the local control plane.
func apiClient(t *testing.T) client.Client {
	t.Helper()
	envOnce.Do(func() {
		env, envErr = testenv.Start(context.Background(), testenv.Options{WithoutWorkloads: true})
		if envErr == nil {
			envC, envErr = client.New(env.Config, client.Options{})
		}
	})
	if envErr != nil {
		t.Fatalf("starting the local control plane: %v", envErr)
	}
	return envC
}

// namespace creates a namespace named after the test.
func namespace(t *testing.T, c client.Client) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 63 {
		name = name[:63]
	}
	name = strings.Trim(name, "-")
	NewWithT(t).Expect(c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
	return name
}
