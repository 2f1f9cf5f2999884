package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/clawhold/clawhold/openclaw"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print clawhold's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := struct {
				Version  string `json:"version"`
				Commit   string `json:"commit,omitempty"`
				Go       string `json:"go"`
				OpenClaw string `json:"openclaw"`
			}{Version: version, Go: runtime.Version(), OpenClaw: openclaw.Version}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v.Commit = s.Value
					}
				}
			}
			if a.json {
				return writeJSON(a.stdout, v)
			}
			fmt.Fprintf(a.stdout, "clawhold %s (%s, pinned OpenClaw %s)\n", v.Version, v.Go, v.OpenClaw)
			return nil
		},
	}
}
