// Command audit runs clawhold's native audit (audit.Run, no OpenClaw) on
// one state dir and prints the JSON report: bench/audit.sh's stand-in for
// `clawhold audit --openclaw off --json` when the CLI does not build.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/clawhold/clawhold/audit"
)

func main() {
	stateDir := flag.String("state-dir", "", "OpenClaw state dir")
	flag.Parse()
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	t, err := audit.NewTarget(*stateDir, "", env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "audit:", err)
		os.Exit(2)
	}
	rep, err := audit.Run(context.Background(), t, audit.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "audit:", err)
		os.Exit(2)
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, "audit:", err)
		os.Exit(2)
	}
}
