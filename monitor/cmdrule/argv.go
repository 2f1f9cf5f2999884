package cmdrule

import (
	"strings"

	"mvdan.cc/sh/v3/syntax"
)

// CommandLine turns the argv of an exec event into a command line that
// the engine reads as exactly the program and arguments the kernel ran:
// every word is quoted, so an argument such as "a; rm -rf /" stays one
// argument instead of becoming a second command. Shell scripts passed as
// data ("sh -c SCRIPT") are still analysed, because the engine unwraps
// shell -c strings itself.
func CommandLine(argv []string) string {
	var b strings.Builder
	for i, w := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(quoteWord(w, i == 0))
	}
	return b.String()
}

func quoteWord(w string, first bool) string {
	// The kernel ends each argument at its first NUL, so no argument
	// holds one; cut there rather than fail.
	if i := strings.IndexByte(w, 0); i >= 0 {
		w = w[:i]
	}
	q, err := syntax.Quote(w, syntax.LangBash)
	if err != nil {
		// Unreachable without NUL in LangBash; single quotes with the
		// usual '\'' escape are still exact.
		return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	// A program named like a reserved word ("if", "!", "[[") would be
	// read as syntax in first position; quoting makes it a plain word.
	if first && q == w && syntax.IsKeyword(w) {
		return "'" + w + "'"
	}
	return q
}
