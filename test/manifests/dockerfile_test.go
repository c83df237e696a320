package manifests

import (
	"encoding/json"
	"go/build"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

// The operator binary the image builds, relative to the repository root.
const operatorMain = "cmd/meshplane"

type instruction struct {
	cmd  string   // upper-cased, e.g. "COPY"
	args []string // flags (--from=...) included
}

// dockerfileStages parses the Dockerfile into its stages' instructions. It knows only what
// meshplane's Dockerfile uses: comments, line continuations, and shell or JSON argument
// forms.
func dockerfileStages(t *testing.T) [][]instruction {
	t.Helper()
	var lines []string
	var current strings.Builder
	for _, line := range strings.Split(string(readRepoFile(t, "Dockerfile")), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(trimmed, `\`); ok {
			current.WriteString(cont + " ")
			continue
		}
		current.WriteString(trimmed)
		lines = append(lines, current.String())
		current.Reset()
	}
	if current.Len() > 0 {
		lines = append(lines, current.String())
	}

	var stages [][]instruction
	for _, line := range lines {
		cmd, rest, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd)}
		rest = strings.TrimSpace(rest)
		var flags []string
		for strings.HasPrefix(rest, "--") {
			flag, after, _ := strings.Cut(rest, " ")
			flags = append(flags, flag)
			rest = strings.TrimSpace(after)
		}
		var args []string
		if strings.HasPrefix(rest, "[") && json.Unmarshal([]byte(rest), &args) == nil {
			in.args = append(flags, args...)
		} else {
			in.args = append(flags, strings.Fields(rest)...)
		}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		if len(stages) == 0 {
			// ARG before the first FROM.
			continue
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	if len(stages) == 0 {
		t.Fatalf("Dockerfile has no FROM")
	}
	return stages
}

func TestDockerfileFinalStage(t *testing.T) {
	g := NewWithT(t)
	stages := dockerfileStages(t)
	final := stages[len(stages)-1]

	g.Expect(final[0].args).NotTo(BeEmpty())
	g.Expect(final[0].args[0]).To(Equal("gcr.io/distroless/static:nonroot"), "final stage base image")

	var users []string
	for _, in := range final {
		if in.cmd == "USER" {
			users = append(users, strings.Join(in.args, " "))
		}
	}
	g.Expect(users).NotTo(BeEmpty(), "final stage sets no USER")
	g.Expect(users[len(users)-1]).To(Equal("65532:65532"), "final stage USER")
}

// TestDockerfileCopiesSources checks that every source the Dockerfile copies from the build
// context exists (and is not dockerignored), and that every top-level directory holding a
// package the operator binary imports is copied: a new package the image does not copy
// would break 'make docker-build', which no other check runs.
func TestDockerfileCopiesSources(t *testing.T) {
	g := NewWithT(t)
	root := repoRoot(t)

	var ignored []string
	if data, err := os.ReadFile(filepath.Join(root, ".dockerignore")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				ignored = append(ignored, strings.Trim(line, "/"))
			}
		}
	}

	var copied []string
	for _, stage := range dockerfileStages(t) {
		for _, in := range stage {
			if in.cmd != "COPY" && in.cmd != "ADD" {
				continue
			}
			if slices.ContainsFunc(in.args, func(a string) bool { return strings.HasPrefix(a, "--from=") }) {
				continue
			}
			var operands []string
			for _, a := range in.args {
				if !strings.HasPrefix(a, "--") {
					operands = append(operands, a)
				}
			}
			g.Expect(len(operands)).To(BeNumerically(">=", 2), "%s %v: want sources and a destination", in.cmd, in.args)
			for _, src := range operands[:len(operands)-1] {
				info, err := os.Stat(filepath.Join(root, src))
				g.Expect(err).NotTo(HaveOccurred(), "Dockerfile copies %s, which does not exist", src)
				if err == nil && strings.HasSuffix(src, "/") {
					g.Expect(info.IsDir()).To(BeTrue(), "Dockerfile copies %s as a directory", src)
				}
				clean := path.Clean(src)
				for _, pattern := range ignored {
					matched, _ := path.Match(pattern, clean)
					g.Expect(matched).To(BeFalse(), "Dockerfile copies %s, which .dockerignore excludes (%s)", src, pattern)
				}
				copied = append(copied, strings.SplitN(clean, "/", 2)[0])
			}
		}
	}
	g.Expect(copied).NotTo(BeEmpty(), "Dockerfile copies nothing from the build context")
	g.Expect(string(readRepoFile(t, "Dockerfile"))).To(ContainSubstring("./"+operatorMain),
		"the Dockerfile no longer builds %s; update operatorMain", operatorMain)

	needed := operatorTopLevelDirs(t, root)
	g.Expect(needed).To(ContainElement(strings.SplitN(operatorMain, "/", 2)[0]))
	for _, dir := range needed {
		g.Expect(copied).To(ContainElement(dir),
			"the operator imports packages under %s/, which the Dockerfile does not copy", dir)
	}
}

// operatorTopLevelDirs lists the top-level directories of the module's packages that the
// operator's main package imports, directly or not, as built for the image (linux, no cgo).
func operatorTopLevelDirs(t *testing.T, root string) []string {
	t.Helper()
	module := modulePath(t)
	ctx := build.Default
	ctx.GOOS, ctx.GOARCH, ctx.CgoEnabled = "linux", "amd64", false

	seen := map[string]bool{}
	dirs := map[string]bool{}
	var visit func(rel string)
	visit = func(rel string) {
		if seen[rel] {
			return
		}
		seen[rel] = true
		dirs[strings.SplitN(rel, "/", 2)[0]] = true
		pkg, err := ctx.ImportDir(filepath.Join(root, filepath.FromSlash(rel)), 0)
		if err != nil {
			t.Fatalf("reading package %s: %v", rel, err)
		}
		for _, imp := range pkg.Imports {
			if sub, ok := strings.CutPrefix(imp, module+"/"); ok {
				visit(sub)
			}
		}
	}
	visit(operatorMain)
	return slices.Sorted(func(yield func(string) bool) {
		for d := range dirs {
			if !yield(d) {
				return
			}
		}
	})
}

func modulePath(t *testing.T) string {
	t.Helper()
	for _, line := range strings.Split(string(readRepoFile(t, "go.mod")), "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(name), `"`)
		}
	}
	t.Fatalf("go.mod names no module")
	return ""
}
