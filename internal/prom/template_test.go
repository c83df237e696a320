package prom

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestRenderTemplate(t *testing.T) {
	vars := TemplateVars{Namespace: "shop", Target: "web", Primary: "web-primary", Interval: time.Minute}
	for _, tc := range []struct {
		name, text string
		vars       TemplateVars
		want       string
		wantErr    string
	}{
		{
			name: "Flagger's style",
			text: `sum(rate(http_requests_total{namespace="{{ namespace }}",pod=~"{{ target }}-[0-9a-z]+-[0-9a-z]+",status!~"5.."}[{{ interval }}]))`,
			vars: vars,
			want: `sum(rate(http_requests_total{namespace="shop",pod=~"web-[0-9a-z]+-[0-9a-z]+",status!~"5.."}[1m]))`,
		},
		{
			name: "without spaces, repeated, comparing canary with primary",
			text: `sum(rate(x{w="{{target}}"}[{{interval}}])) - sum(rate(x{w="{{primary}}"}[{{interval}}]))`,
			vars: vars,
			want: `sum(rate(x{w="web"}[1m])) - sum(rate(x{w="web-primary"}[1m]))`,
		},
		{name: "no variables", text: `vector(1)`, vars: vars, want: `vector(1)`},
		{name: "compound interval", text: `[{{ interval }}]`, vars: TemplateVars{Interval: 90 * time.Second}, want: `[1m30s]`},
		{name: "empty", text: " \n", vars: vars, wantErr: "query template is empty"},
		{name: "unknown variable", text: `x{a="{{ service }}"}`, vars: vars,
			wantErr: `query template: unknown "{{ service }}" at offset 5; use {{ namespace }}, {{ target }}, {{ primary }}, {{ interval }}`},
		{name: "Go template actions are not variables", text: `{{ if .x }}1{{ end }}`, vars: vars, wantErr: `unknown "{{ if .x }}" at offset 0`},
		{name: "Flagger's custom variables are not supported", text: `{{ variables.x }}`, vars: vars, wantErr: `unknown "{{ variables.x }}"`},
		{name: "unclosed", text: `x[{{ interval ]`, vars: vars, wantErr: `"{{" at offset 2 is not closed by }}`},
		{name: "a value the caller lacks", text: `x{w="{{ primary }}"}`, vars: TemplateVars{Namespace: "shop"}, wantErr: "{{ primary }} has no value here"},
		{name: "no interval", text: `x[{{ interval }}]`, vars: TemplateVars{}, wantErr: "{{ interval }} has no value here"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			got, err := RenderTemplate(tc.text, tc.vars)
			if tc.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tc.want))
		})
	}
}

func TestValidateTemplate(t *testing.T) {
	g := NewWithT(t)
	g.Expect(ValidateTemplate(`sum(rate(x{ns="{{ namespace }}",w="{{ target }}"}[{{ interval }}]))`)).To(Succeed())
	g.Expect(ValidateTemplate(`x{w="{{ primary }}"}`)).To(Succeed(), "validation needs no values")
	g.Expect(ValidateTemplate(`x{w="{{ targets }}"}`)).To(MatchError(ContainSubstring(`unknown "{{ targets }}"`)))
	g.Expect(ValidateTemplate(`x{w="{{ target "}`)).To(MatchError(ContainSubstring("not closed")))
	g.Expect(ValidateTemplate(``)).To(MatchError(ContainSubstring("empty")))
}

func FuzzRenderTemplate(f *testing.F) {
	for _, s := range []string{`x{a="{{ target }}"}[{{interval}}]`, `{{`, `}}{{}}`, `{{ if }}`} {
		f.Add(s)
	}
	vars := TemplateVars{Namespace: "shop", Target: "web", Primary: "web-primary", Interval: time.Minute}
	f.Fuzz(func(t *testing.T, text string) {
		out, err := RenderTemplate(text, vars)
		if verr := ValidateTemplate(text); (verr == nil) != (err == nil) {
			t.Fatalf("ValidateTemplate and RenderTemplate disagree on %q: %v vs %v", text, verr, err)
		}
		if err == nil && len(out) == 0 {
			t.Fatalf("rendered %q to nothing", text)
		}
	})
}
