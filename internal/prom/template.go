package prom

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// TemplateVars are what a custom query template refers to, as {{ name }} (spaces optional),
// after Flagger's metric templates.
type TemplateVars struct {
	Namespace string        // {{ namespace }}: the Canary's namespace
	Target    string        // {{ target }}: the canary workload (the Deployment the Canary targets)
	Primary   string        // {{ primary }}: the stable workload (<target>-primary)
	Interval  time.Duration // {{ interval }}: the analysis window, as a PromQL duration ("1m")
}

// templateVariables in the order error messages list them.
var templateVariables = []string{"namespace", "target", "primary", "interval"}

// value returns the text for one variable.
func (v TemplateVars) value(name string) (string, error) {
	var s string
	switch name {
	case "namespace":
		s = v.Namespace
	case "target":
		s = v.Target
	case "primary":
		s = v.Primary
	case "interval":
		if v.Interval == 0 {
			break
		}
		return Duration(v.Interval)
	}
	if s == "" {
		return "", fmt.Errorf("{{ %s }} has no value here", name)
	}
	return s, nil
}

// ValidateTemplate checks that a custom query template only uses known variables and is
// well formed; admission calls it, so a Canary cannot hold a template that never renders.
// The PromQL itself is checked by Prometheus when queried (an ErrorQueryFailed).
func ValidateTemplate(text string) error {
	_, err := expand(text, func(string) (string, error) { return "", nil })
	return err
}

// RenderTemplate substitutes vars into a custom query template.
func RenderTemplate(text string, vars TemplateVars) (string, error) {
	return expand(text, vars.value)
}

// expand replaces each {{ name }} with value(name).
func expand(text string, value func(string) (string, error)) (string, error) {
	if strings.TrimSpace(text) == "" {
		return "", errors.New("query template is empty")
	}
	var b strings.Builder
	rest := text
	for {
		open := strings.Index(rest, "{{")
		if open < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:open])
		offset := len(text) - len(rest) + open
		end := strings.Index(rest[open:], "}}")
		if end < 0 {
			return "", fmt.Errorf("query template: %q at offset %d is not closed by }}", "{{", offset)
		}
		name := strings.TrimSpace(rest[open+2 : open+end])
		if !slices.Contains(templateVariables, name) {
			return "", fmt.Errorf("query template: unknown %q at offset %d; use {{ %s }}",
				rest[open:open+end+2], offset, strings.Join(templateVariables, " }}, {{ "))
		}
		v, err := value(name)
		if err != nil {
			return "", fmt.Errorf("query template: %w", err)
		}
		b.WriteString(v)
		rest = rest[open+end+2:]
	}
	return b.String(), nil
}
