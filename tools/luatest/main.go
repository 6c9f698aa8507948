// Command argocd-lua-health runs an ArgoCD resource-customization health check against its
// test cases, the way ArgoCD evaluates it (see argocd.go), and prints a JSON report.
//
// Usage:
//
//	argocd-lua-health [-open-libs] DIR
//
// DIR holds health.lua and health_test.yaml in ArgoCD's format (as under argoproj/argo-cd's
// resource_customizations/<group>/<Kind>/):
//
//	tests:
//	  - healthStatus: {status: Healthy, message: "..."}
//	    inputPath: testdata/healthy.yaml
//
// Every case gets a fresh Lua state and its inputPath (relative to DIR) as the global obj, and
// the script's result must equal healthStatus exactly (status and message), as in ArgoCD's own
// TestLuaHealthScript. By default the standard libraries are not opened, as for a script
// installed through argocd-cm; -open-libs opens them, as ArgoCD does for its built-in scripts.
//
// The report (stdout) is one JSON object; every failing case is also named on stderr with what
// was expected and what the script returned. Exit status: 0 all cases pass, 1 some case failed,
// 2 the directory, a file or the arguments could not be used.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"

	"sigs.k8s.io/yaml"
)

// testFile is health_test.yaml (ArgoCD's util/lua TestStructure/IndividualTest).
type testFile struct {
	Tests []testCase `json:"tests"`
}

type testCase struct {
	InputPath    string       `json:"inputPath"`
	HealthStatus HealthStatus `json:"healthStatus"`
}

type caseResult struct {
	InputPath string        `json:"inputPath"`
	Expected  HealthStatus  `json:"expected"`
	Actual    *HealthStatus `json:"actual,omitempty"`
	Error     string        `json:"error,omitempty"`
	Passed    bool          `json:"passed"`
}

type report struct {
	Dir       string       `json:"dir"`
	OpenLibs  bool         `json:"openLibs"`
	GopherLua string       `json:"gopherLua"`
	Passed    int          `json:"passed"`
	Failed    int          `json:"failed"`
	Cases     []caseResult `json:"cases"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("argocd-lua-health", flag.ContinueOnError)
	flags.SetOutput(stderr)
	openLibs := flags.Bool("open-libs", false,
		"open Lua's standard libraries (ArgoCD does so for built-in scripts and for argocd-cm "+
			"scripts with resource.customizations.useOpenLibs.<group_kind>: \"true\")")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: argocd-lua-health [-open-libs] DIR  (DIR holds health.lua and health_test.yaml)")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if flags.NArg() != 1 {
		flags.Usage()
		return 2
	}
	dir := flags.Arg(0)
	rep, err := runDir(dir, *openLibs)
	if err != nil {
		fmt.Fprintf(stderr, "argocd-lua-health: %v\n", err)
		return 2
	}
	for _, c := range rep.Cases {
		if c.Passed {
			continue
		}
		got := "error: " + c.Error
		if c.Actual != nil {
			got = describe(*c.Actual)
		}
		fmt.Fprintf(stderr, "FAIL %s: expected %s, got %s\n", c.InputPath, describe(c.Expected), got)
	}
	out, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "argocd-lua-health: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, string(out))
	if rep.Failed > 0 {
		return 1
	}
	return 0
}

func describe(h HealthStatus) string {
	return fmt.Sprintf("%s %q", h.Status, h.Message)
}

func runDir(dir string, openLibs bool) (*report, error) {
	script, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	if err != nil {
		return nil, err
	}
	spec, err := os.ReadFile(filepath.Join(dir, "health_test.yaml"))
	if err != nil {
		return nil, err
	}
	var tests testFile
	// Strict: a misspelt key would otherwise expect an empty status and hide the intent.
	if err := yaml.UnmarshalStrict(spec, &tests); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "health_test.yaml"), err)
	}
	if len(tests.Tests) == 0 {
		return nil, errors.New(filepath.Join(dir, "health_test.yaml") + " has no tests")
	}
	rep := &report{Dir: dir, OpenLibs: openLibs, GopherLua: gopherLuaVersion(), Cases: []caseResult{}}
	for _, tc := range tests.Tests {
		obj, err := readObject(filepath.Join(dir, tc.InputPath))
		if err != nil {
			return nil, err
		}
		res := caseResult{InputPath: tc.InputPath, Expected: tc.HealthStatus}
		actual, err := executeHealthLua(obj, string(script), openLibs)
		if err != nil {
			res.Error = err.Error()
		} else {
			res.Actual = actual
			res.Passed = *actual == tc.HealthStatus
		}
		if res.Passed {
			rep.Passed++
		} else {
			rep.Failed++
		}
		rep.Cases = append(rep.Cases, res)
	}
	return rep, nil
}

// readObject reads a test object as ArgoCD's test does (util/lua/health_test.go getObj).
func readObject(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj := make(map[string]any)
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

// gopherLuaVersion is the gopher-lua module this binary was built with, for the report.
func gopherLuaVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/yuin/gopher-lua" {
			if dep.Replace != nil {
				return dep.Replace.Version
			}
			return dep.Version
		}
	}
	return "unknown"
}
