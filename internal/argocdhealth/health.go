// Package argocdhealth runs the Argo CD health checks meshplane ships (config/argocd) the
// way Argo CD runs a check configured in argocd-cm, so tests can judge them over real
// objects without an Argo CD.
//
// Argo CD (util/lua in argoproj/argo-cd) creates a gopher-lua state with the standard
// libraries skipped (a check from argocd-cm has resource.customizations.useOpenLibs off by
// default), then opens only package, base and table, plus a "safe" os library (time and
// date) that it registers under the table module and preloads for require("os"). It sets
// the global obj to the resource, runs the script under a one-second deadline, and reads the
// returned table's status and message; a status outside Argo CD's set becomes Unknown.
// Evaluate does the same, except that it offers no os functions at all: a check that passes
// here never relies on anything Argo CD lacks.
package argocdhealth

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/config/argocd"
)

// Argo CD's health statuses (gitops-engine's pkg/health).
const (
	Healthy     = "Healthy"
	Progressing = "Progressing"
	Degraded    = "Degraded"
	Suspended   = "Suspended"
	Missing     = "Missing"
	Unknown     = "Unknown"
)

// Health is what a check returns.
type Health struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// Kinds lists the kinds that have a health check, sorted.
func Kinds() ([]string, error) {
	files, err := fs.Glob(argocd.Files, "health/*.lua")
	if err != nil {
		return nil, err
	}
	kinds := make([]string, 0, len(files))
	for _, f := range files {
		kinds = append(kinds, strings.TrimSuffix(path.Base(f), ".lua"))
	}
	sort.Strings(kinds)
	return kinds, nil
}

// Script returns the health check of a kind of mesh.meshplane.io.
func Script(kind string) (string, error) {
	b, err := argocd.Files.ReadFile("health/" + kind + ".lua")
	if err != nil {
		return "", fmt.Errorf("no Argo CD health check for %s: %w", kind, err)
	}
	return string(b), nil
}

// ConfigMapKey is the argocd-cm key of a kind's health check.
func ConfigMapKey(kind string) string {
	return "resource.customizations.health." + meshv1alpha1.GroupVersion.Group + "_" + kind
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := meshv1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// ToUnstructured converts one of meshplane's typed objects as the API server would serve it
// (apiVersion and kind set, integers as int64), which is what Argo CD hands its checks.
func ToUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	gvk, err := apiutil.GVKForObject(obj, scheme)
	if err != nil {
		return nil, err
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvk)
	return u, nil
}

// Check runs the shipped health check of the object's kind over it.
func Check(obj runtime.Object) (Health, error) {
	u, err := ToUnstructured(obj)
	if err != nil {
		return Health{}, err
	}
	script, err := Script(u.GetKind())
	if err != nil {
		return Health{}, err
	}
	return Evaluate(script, u.Object)
}

// Evaluate runs a health check over an object in Argo CD's sandbox.
func Evaluate(script string, obj map[string]any) (Health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return Health{}, fmt.Errorf("opening the %s library: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return Health{}, err
	}
	ret := l.Get(-1)
	table, ok := ret.(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	// Argo CD encodes the table to JSON and decodes a HealthStatus from it: a status or
	// message that is not a string fails there too.
	var h Health
	for _, f := range []struct {
		key string
		to  *string
	}{{"status", &h.Status}, {"message", &h.Message}} {
		switch v := table.RawGetString(f.key).(type) {
		case lua.LString:
			*f.to = string(v)
		case *lua.LNilType:
		default:
			return Health{}, fmt.Errorf("%s is a %s, not a string", f.key, v.Type())
		}
	}
	switch h.Status {
	case Healthy, Progressing, Degraded, Suspended, Missing, Unknown:
		return h, nil
	}
	return Health{Status: Unknown, Message: "Lua returned an invalid health status"}, nil
}

// toLua converts a JSON-like value as Argo CD's decodeValue does: maps to tables, slices to
// arrays, numbers (int64 from the API server, float64) to numbers, json.Number to a string.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}
