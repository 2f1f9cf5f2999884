// Command secretscan runs clawhold's secret scanner (audit.SecretScanner,
// the one behind `clawhold audit --repo/--image` and the workspace and
// .env checks) over one source and prints what it read and how fast, for
// bench/secretscan.sh to put beside the gitleaks CLI.
//
//	secretscan -mode git|dir|image PATH
//
// Output, one line: mode bytes files hits seconds MB/s.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/clawhold/clawhold/audit"
)

func main() {
	mode := flag.String("mode", "git", "git (every commit), dir (files) or image (every layer)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: secretscan -mode git|dir|image PATH")
		os.Exit(2)
	}
	ctx := context.Background()
	start := time.Now()
	sc, err := audit.NewSecretScanner()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var (
		hits []audit.SecretHit
		st   audit.ScanStats
	)
	switch *mode {
	case "git":
		hits, st, err = sc.Git(ctx, flag.Arg(0))
	case "dir":
		hits, st, err = sc.Dir(ctx, flag.Arg(0))
	case "image":
		hits, st, err = sc.Image(ctx, flag.Arg(0))
	default:
		err = fmt.Errorf("unknown mode %q", *mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("%s %d %d %d %.3f %.1f\n", *mode, st.Bytes, st.Files, int64(len(hits))+st.Dropped, secs, float64(st.Bytes)/1e6/secs)
}
