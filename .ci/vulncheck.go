//go:build ignore

// vulncheck reads `govulncheck -format json` from standard input and fails
// (exit 1) if the code calls a known vulnerability, as govulncheck's text
// mode does (exit 3), except for the IDs listed in the allow file named by
// its argument. It prints one block per called vulnerability.
//
// An allow-file line is an ID and a reason: "GO-2026-1234 why it is safe".
// Blank lines and lines starting with # are ignored. An allowed ID stops
// being allowed as soon as the database knows a fixed version for any
// module in which it is called: then the fix is the answer, not the list.
//
//	govulncheck -format json ./... | go run .ci/vulncheck.go .ci/govulncheck-allow
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// The subset of golang.org/x/vuln/internal/govulncheck's protocol used here.
type message struct {
	Config *struct {
		ScannerVersion string `json:"scanner_version"`
		DB             string `json:"db"`
		GoVersion      string `json:"go_version"`
		ScanLevel      string `json:"scan_level"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *finding `json:"finding"`
}

type finding struct {
	OSV          string   `json:"osv"`
	FixedVersion string   `json:"fixed_version"`
	Trace        []*frame `json:"trace"`
}

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
		Column   int    `json:"column"`
	} `json:"position"`
}

var idRE = regexp.MustCompile(`^GO-\d{4}-\d+$`)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: govulncheck -format json ./... | go run vulncheck.go ALLOWFILE")
		os.Exit(2)
	}
	allow, err := readAllow(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(2)
	}

	summaries := map[string]string{}
	called := map[string][]*finding{} // by OSV ID, symbol-level findings only
	var scanLevel, goVersion string
	sawConfig := false
	dec := json.NewDecoder(bufio.NewReader(os.Stdin))
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "vulncheck: reading govulncheck output:", err)
			os.Exit(2)
		}
		switch {
		case m.Config != nil:
			sawConfig = true
			scanLevel, goVersion = m.Config.ScanLevel, m.Config.GoVersion
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0 && m.Finding.Trace[0].Function != "":
			called[m.Finding.OSV] = append(called[m.Finding.OSV], m.Finding)
		}
	}
	if !sawConfig {
		fmt.Fprintln(os.Stderr, "vulncheck: no govulncheck output on standard input")
		os.Exit(2)
	}
	if scanLevel != "" && scanLevel != "symbol" {
		fmt.Fprintf(os.Stderr, "vulncheck: scan level %q, want symbol\n", scanLevel)
		os.Exit(2)
	}

	ids := make([]string, 0, len(called))
	for id := range called {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	failed := 0
	for _, id := range ids {
		fs := called[id]
		fmt.Printf("%s: %s\n", id, summaries[id])
		fixable := false
		// One line per module (a vulnerability can be in the standard
		// library and in x/net at once), with the shortest example traces.
		var mods []string
		byMod := map[string][]*finding{}
		for _, f := range fs {
			m := f.Trace[0].Module
			if _, ok := byMod[m]; !ok {
				mods = append(mods, m)
			}
			byMod[m] = append(byMod[m], f)
			if f.FixedVersion != "" {
				fixable = true
			}
		}
		sort.Strings(mods)
		for _, m := range mods {
			mfs := byMod[m]
			sort.SliceStable(mfs, func(i, j int) bool {
				if len(mfs[i].Trace) != len(mfs[j].Trace) {
					return len(mfs[i].Trace) < len(mfs[j].Trace)
				}
				return describe(mfs[i].Trace) < describe(mfs[j].Trace)
			})
			vuln := mfs[0].Trace[0]
			name := m
			if m == "stdlib" || m == "toolchain" {
				name = "Go standard library (" + goVersion + ")"
			} else if vuln.Version != "" {
				name += "@" + vuln.Version
			}
			fixed := "no fixed version"
			if v := mfs[0].FixedVersion; v != "" {
				fixed = "fixed in " + v
			}
			symbols := "symbols"
			if len(mfs) == 1 {
				symbols = "symbol"
			}
			fmt.Printf("    %s, %s; %d vulnerable %s reached, e.g.\n", name, fixed, len(mfs), symbols)
			shown := map[string]bool{}
			for _, f := range mfs {
				if d := describe(f.Trace); !shown[d] && len(shown) < 2 {
					shown[d] = true
					fmt.Printf("      %s\n", d)
				}
			}
		}
		reason, ok := allow[id]
		switch {
		case ok && !fixable:
			fmt.Printf("    allowed by %s: %s\n", os.Args[1], reason)
			delete(allow, id)
		case ok:
			fmt.Printf("    listed in %s, but a fix exists now: upgrade instead\n", os.Args[1])
			delete(allow, id)
			failed++
		default:
			failed++
		}
	}
	for id := range allow {
		fmt.Printf("note: %s is in %s but no longer called; remove it\n", id, os.Args[1])
	}
	switch {
	case len(ids) == 0:
		fmt.Println("No vulnerabilities found in called code.")
	case failed == 0:
		fmt.Printf("%d called vulnerabilities, all allowed.\n", len(ids))
	default:
		fmt.Printf("Your code calls %d known vulnerabilities (%d more are allowed).\n", failed, len(ids)-failed)
		os.Exit(1)
	}
}

// describe renders a trace as the text mode's compact example does:
// "pos: pkg.Caller calls pkg.Vulnerable" (trace[0] is the vulnerable
// symbol, the last frame the entry point in this module).
func describe(trace []*frame) string {
	vuln, entry := trace[0], trace[len(trace)-1]
	pos := ""
	if entry.Position != nil && entry.Position.Filename != "" {
		pos = fmt.Sprintf("%s:%d:%d: ", entry.Position.Filename, entry.Position.Line, entry.Position.Column)
	}
	if len(trace) == 1 {
		return pos + symbol(vuln)
	}
	verb := " calls "
	if len(trace) > 2 {
		verb = " eventually calls "
	}
	return pos + symbol(entry) + verb + symbol(vuln)
}

func symbol(f *frame) string {
	parts := strings.Split(f.Package, "/")
	pkg := parts[len(parts)-1]
	if len(parts) > 1 && regexp.MustCompile(`^v[0-9]+$`).MatchString(pkg) {
		pkg = parts[len(parts)-2]
	}
	name := f.Function
	if r := strings.TrimPrefix(f.Receiver, "*"); r != "" {
		name = r + "." + name
	}
	return pkg + "." + name
}

func readAllow(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	allow := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, reason, _ := strings.Cut(line, " ")
		reason = strings.TrimSpace(reason)
		if !idRE.MatchString(id) || reason == "" {
			return nil, fmt.Errorf("%s:%d: want \"GO-YYYY-NNNN reason\", got %q", path, i+1, line)
		}
		allow[id] = reason
	}
	return allow, nil
}
