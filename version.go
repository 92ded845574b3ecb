package main

import (
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is the release this binary is, when the build sets it:
// go build -ldflags "-X main.version=v1.2.3". Empty, the module's version
// from the build information stands: the tag `go install …@v1.2.3`
// fetched, a pseudo-version derived from the checkout, or "(devel)".
var version string

func versionCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("wxreply version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: wxreply version\n\nPrints the version of wxreply, the Go version it was built with and, when\nthe build recorded it, the commit it was built from.")
	}
	if err := fs.Parse(args); err != nil {
		return parseFailed(err)
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	info, _ := debug.ReadBuildInfo()
	fmt.Fprintln(stdout, versionLine(version, info))
	return 0
}

// versionLine is "wxreply VERSION built with GOVERSION from revision REV
// (modified)", less what the build did not record. set, when not empty, is
// the version the build set.
func versionLine(set string, info *debug.BuildInfo) string {
	v, goVersion := set, runtime.Version()
	var revision string
	modified := false
	if info != nil {
		if v == "" {
			v = info.Main.Version
		}
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	line := "wxreply " + v + " built with " + goVersion
	if revision != "" {
		line += " from revision " + revision
		if modified {
			line += " (modified)"
		}
	}
	return line
}
