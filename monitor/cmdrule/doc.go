// Package cmdrule detects dangerous shell command lines with rules.
//
// A command line is parsed with a real bash parser (mvdan.cc/sh) into the
// simple commands it would run: pipeline stages, && / || / ; lists,
// subshells, command and process substitutions, "bash -c" / "sh -c"
// strings, eval of literal arguments and here-documents fed to a shell.
// Quoting and escaping are resolved to the literal word: curl written
// with an empty quoted string inside, with backslashes before each letter
// or partly double-quoted all become curl. Variables assigned a
// literal earlier in the line are substituted; anything else that is only
// known at run time marks the call Dynamic. Launchers such as sudo, env,
// nohup and timeout are unwrapped. Base64 and hex literals in arguments
// and here-strings are decoded one level and, when they decode to text,
// analysed as commands too.
//
// # Rules
//
// A rule document is YAML of the form
//
//	rules:
//	  - id: download-exec            # unique
//	    severity: critical           # critical, high, medium, low or info
//	    technique: T1059.004         # MITRE ATT&CK technique id
//	    description: ...
//	    match:                       # alternatives; any one may match
//	      - program: [curl, wget]    # all fields of one alternative must hold
//	        feeds: [sh, bash]
//
// A rule is evaluated against every simple command. The fields of an
// alternative are:
//
//   - program: the base name of argv[0] is in the list; "python*"
//     matches by prefix.
//   - args: each regular expression matches at least one argument.
//   - argline: the regular expression matches the arguments joined by
//     spaces.
//   - flags: one of the flags is present; "--long" also matches
//     "--long=v" and "-x" also matches inside a cluster like "-xvf".
//   - feeds: the command's output reaches one of these programs, through
//     a later pipeline stage or a $(...) / <(...) substitution that is
//     an argument or input redirect of it ("curl x | sh", "bash <(curl x)").
//   - redirect, redirect_in, redirect_out: a redirection target (any, read,
//     write) matches the regular expression ("/dev/tcp/...").
//   - assign: a NAME=value assignment of the statement matches.
//   - host: the host of a URL argument matches the regular expression.
//   - unknown_host: a URL argument names a host outside
//     EvalContext.AllowedHosts; an entry allows its subdomains and
//     loopback is always allowed.
//   - decoded_matches: the command was decoded from a base64 or hex
//     literal and matched one of the named rules ("*" for any). Such
//     rules run after the others.
//
// Regular expressions use Go syntax (RE2). Default returns an engine with
// the embedded default rule set.
package cmdrule
