package argocdhealth

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/config/argocd"
)

// The sandbox must be no more generous than Argo CD's, or a check could pass here and fail
// there with "attempt to index a nil value".
func TestSandboxIsArgoCDs(t *testing.T) {
	for name, tc := range map[string]struct {
		script string
		want   Health
		err    string
	}{
		"base and table are open": {
			script: `local t = {} table.insert(t, tostring(tonumber("2"))) for _, v in ipairs(t) do return {status = "Healthy", message = v} end`,
			want:   Health{Status: Healthy, Message: "2"},
		},
		"require exists (package is open)": {
			script: `return {status = type(require) == "function" and "Healthy" or "Degraded"}`,
			want:   Health{Status: Healthy},
		},
		"no string library":         {script: `return {status = string.format("%s", "Healthy")}`, err: "nil"},
		"no string methods":         {script: `return {status = ("Healthy"):lower()}`, err: "attempt to index"},
		"no math library":           {script: `return {status = "Healthy", message = math.floor(1.5)}`, err: "nil"},
		"no io library":             {script: `io.write("x") return {status = "Healthy"}`, err: "nil"},
		"no global os":              {script: `return {status = "Healthy", message = os.getenv("HOME")}`, err: "nil"},
		"numbers concatenate plain": {script: `return {status = "Healthy", message = "generation " .. obj.n}`, want: Health{Status: Healthy, Message: "generation 3"}},
		"an unknown status is Unknown": {
			script: `return {status = "Fine"}`,
			want:   Health{Status: Unknown, Message: "Lua returned an invalid health status"},
		},
		"a script must return a table": {script: `return "Healthy"`, err: "expect table output"},
		"a runaway script is stopped":  {script: `while true do end`, err: "context deadline exceeded"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			h, err := Evaluate(tc.script, map[string]any{"n": int64(3)})
			if tc.err != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.err)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(h).To(Equal(tc.want))
		})
	}
}

// Every kind the operator serves has a check: a new CRD without one fails here.
func TestEveryKindHasAHealthCheck(t *testing.T) {
	g := NewWithT(t)
	files, err := filepath.Glob("../../config/crd/bases/*.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(files).NotTo(BeEmpty())
	var crdKinds []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		crd := &apiextensionsv1.CustomResourceDefinition{}
		g.Expect(yaml.Unmarshal(raw, crd)).To(Succeed())
		g.Expect(crd.Spec.Group).To(Equal(meshv1alpha1.GroupVersion.Group))
		crdKinds = append(crdKinds, crd.Spec.Names.Kind)
	}
	sort.Strings(crdKinds)
	kinds, err := Kinds()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(kinds).To(Equal(crdKinds), "config/argocd/health must hold one <Kind>.lua per CRD in config/crd/bases")
}

// The Component merges every check into Argo CD's own argocd-cm, keeping what is there.
func TestComponentMergesIntoArgoCDConfigMap(t *testing.T) {
	g := NewWithT(t)
	fSys := filesys.MakeFsInMemory()
	g.Expect(fs.WalkDir(argocd.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := argocd.Files.ReadFile(p)
		if err != nil {
			return err
		}
		return fSys.WriteFile(filepath.Join("/meshplane/config/argocd", p), b)
	})).To(Succeed())
	// Argo CD's install.yaml has argocd-cm without a namespace; the installing kustomization
	// usually sets one.
	g.Expect(fSys.WriteFile("/argocd/install.yaml", []byte(`apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}
data:
  application.resourceTrackingMethod: annotation
`))).To(Succeed())
	g.Expect(fSys.WriteFile("/argocd/kustomization.yaml", []byte(`namespace: argocd
resources: [install.yaml]
components: [../meshplane/config/argocd]
`))).To(Succeed())

	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fSys, "/argocd")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Resources()).To(HaveLen(1), "the Component adds no ConfigMap of its own")
	cm := res.Resources()[0]
	g.Expect(cm.GetName()).To(Equal("argocd-cm"), "no name suffix: Argo CD reads argocd-cm by name")
	g.Expect(cm.GetNamespace()).To(Equal("argocd"))
	data := cm.GetDataMap()
	g.Expect(data).To(HaveKeyWithValue("application.resourceTrackingMethod", "annotation"))
	kinds, err := Kinds()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(data).To(HaveLen(len(kinds) + 1))
	for _, kind := range kinds {
		script, err := Script(kind)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(data).To(HaveKeyWithValue(ConfigMapKey(kind), script))
	}
}

// What every kind's check does with the parts of status every kind shares, read as kstatus
// reads them; the kinds' own tests (next to their status code) cover the rest.
func TestGenericStatus(t *testing.T) {
	kinds, err := Kinds()
	if err != nil {
		t.Fatal(err)
	}
	cond := func(t string, s metav1.ConditionStatus, reason string) any {
		return map[string]any{"type": t, "status": string(s), "reason": reason, "message": t + " says " + reason,
			"observedGeneration": int64(2), "lastTransitionTime": "2026-01-01T00:00:00Z"}
	}
	for _, kind := range kinds {
		for name, tc := range map[string]struct {
			mutate     func(u *unstructured.Unstructured)
			want       string
			message    string
			wantStatus status.Status
		}{
			"no status yet (the schema's default)": {
				mutate: func(u *unstructured.Unstructured) { setStatus(u, int64(0), nil) },
				want:   Progressing, message: "Waiting for the operator to report status",
				wantStatus: status.InProgressStatus,
			},
			"a generation the operator has not seen": {
				mutate: func(u *unstructured.Unstructured) {
					setStatus(u, int64(1), []any{cond("Ready", metav1.ConditionTrue, "Ok")})
				},
				want: Progressing, message: "Waiting for the operator to observe generation 2 (status is for 1)",
				wantStatus: status.InProgressStatus,
			},
			"being deleted": {
				mutate: func(u *unstructured.Unstructured) {
					setStatus(u, int64(2), []any{cond("Ready", metav1.ConditionTrue, "Ok")})
					u.SetDeletionTimestamp(&metav1.Time{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
					u.SetFinalizers([]string{"example.com/keep"})
				},
				want: Progressing, message: "Pending deletion",
				wantStatus: status.TerminatingStatus,
			},
			"stalled": {
				mutate: func(u *unstructured.Unstructured) {
					setStatus(u, int64(2), []any{cond("Ready", metav1.ConditionFalse, "Broken"),
						cond("Reconciling", metav1.ConditionFalse, "Broken"), cond("Stalled", metav1.ConditionTrue, "Broken")})
				},
				want: Degraded, message: "Broken: Stalled says Broken",
				wantStatus: status.FailedStatus,
			},
			"reconciling": {
				mutate: func(u *unstructured.Unstructured) {
					setStatus(u, int64(2), []any{cond("Ready", metav1.ConditionFalse, "Wait"),
						cond("Reconciling", metav1.ConditionTrue, "Wait"), cond("Stalled", metav1.ConditionFalse, "NoProblems")})
				},
				want: Progressing, wantStatus: status.InProgressStatus,
			},
			"ready": {
				mutate: func(u *unstructured.Unstructured) {
					setStatus(u, int64(2), []any{cond("Ready", metav1.ConditionTrue, "Ok"),
						cond("Reconciling", metav1.ConditionFalse, "UpToDate"), cond("Stalled", metav1.ConditionFalse, "NoProblems")})
				},
				want: Healthy, wantStatus: status.CurrentStatus,
			},
		} {
			t.Run(kind+"/"+name, func(t *testing.T) {
				g := NewWithT(t)
				typed, err := scheme.New(meshv1alpha1.GroupVersion.WithKind(kind))
				g.Expect(err).NotTo(HaveOccurred())
				u, err := ToUnstructured(typed)
				g.Expect(err).NotTo(HaveOccurred())
				u.SetName("example")
				u.SetGeneration(2)
				tc.mutate(u)

				script, err := Script(kind)
				g.Expect(err).NotTo(HaveOccurred())
				h, err := Evaluate(script, u.Object)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(h.Status).To(Equal(tc.want), h.Message)
				if tc.message != "" {
					g.Expect(h.Message).To(Equal(tc.message))
				}
				res, err := status.Compute(u)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(res.Status).To(Equal(tc.wantStatus), res.Message)
			})
		}
	}
}

func setStatus(u *unstructured.Unstructured, observed int64, conditions []any) {
	st := map[string]any{"observedGeneration": observed}
	if conditions != nil {
		st["conditions"] = conditions
	}
	u.Object["status"] = st
}

// The checks use nothing the sandbox lacks on paths the tests may not reach.
func TestScriptsUseOnlyBaseAndTable(t *testing.T) {
	g := NewWithT(t)
	kinds, err := Kinds()
	g.Expect(err).NotTo(HaveOccurred())
	for _, kind := range kinds {
		script, err := Script(kind)
		g.Expect(err).NotTo(HaveOccurred())
		for _, word := range []string{"string.", "math.", "os.", "io.", "require", "):", "json"} {
			for i, line := range strings.Split(script, "\n") {
				if code, _, _ := strings.Cut(line, "--"); strings.Contains(code, word) {
					t.Errorf("%s.lua:%d uses %q, which Argo CD's sandbox does not offer: %s", kind, i+1, word, line)
				}
			}
		}
	}
}
