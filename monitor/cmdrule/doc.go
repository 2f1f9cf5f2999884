// Package cmdrule detects dangerous shell command lines with rules.
//
// A command line is parsed with a real bash parser (mvdan.cc/sh) into the
// simple commands it would run: pipeline stages, && / || / ; lists,
// subshells, command and process substitutions, "bash -c" / "sh -c"
// strings, eval of literal arguments and here-documents fed to a shell.
// Quoting and escaping are resolved to the literal word: curl written
// with an empty quoted string inside, with backslashes before each letter
// or partly double-quoted all become curl. Brace expansion
// ("{cat,~/.ssh/id_rsa}") and the default $IFS ("cat${IFS}file") split
// words as bash would. Variables assigned a literal earlier in the line
// are substituted; anything else that is only known at run time marks
// the call Dynamic. Launchers such as sudo, env,
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
//	    enabled: true                # false: listed but not evaluated
//	    match:                       # alternatives; any one may match
//	      - program: [curl, wget]    # all fields of one alternative must hold
//	        feeds: [sh, bash]
//	    except:                      # optional; same fields as match
//	      - program: [curl]
//	        host: '^get\.example\.org$'
//
// A rule is evaluated against every simple command. It fires when one
// alternative of match holds and no alternative of except holds for the
// same simple command. Exceptions are judged per simple command, not per
// line, so "harmless; evil" cannot borrow the harmless part's exception.
// The fields of an alternative are:
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
//     A shell or interpreter stage that takes its program from its
//     arguments does not count, because what it reads is data: a script
//     file, a module ("python3 -m json.tool"), or inline code that does
//     not exec or eval ("python3 -c 'print(json.load(sys.stdin))'"). It
//     does count with -, /dev/stdin, sh -s and sh -c.
//   - redirect, redirect_in, redirect_out: a redirection target (any, read,
//     write) matches the regular expression ("/dev/tcp/...").
//   - redirect_truncate: a write redirection that empties its target
//     (">", ">|", "&>"; not ">>") matches the regular expression.
//     tee's file operands count as write redirections (">", or ">>"
//     with -a), since that is what tee does with them.
//   - assign: a NAME=value assignment of the statement matches.
//   - host: the host of a URL argument matches the regular expression.
//   - unknown_host: a URL argument names a host outside
//     EvalContext.AllowedHosts; an entry allows its subdomains and
//     loopback is always allowed.
//   - decoded_matches: the command was decoded from a base64 or hex
//     literal and matched one of the named rules ("*" for any). Such
//     rules run after the others.
//
// Regular expressions use Go syntax (RE2) and are unanchored unless they
// say ^ or $. decoded_matches cannot be used in except.
//
// # Rule sets
//
// Default returns an engine with the embedded default rule set
// (default.yaml). Load adds operator files on top: a rule whose id is
// already defined replaces that rule, any other is added, and the ids in
// the disabled list are removed (an unknown id is an error, so a typo
// does not leave a rule on). Errors name the file, line and rule:
// "ops.yaml:12: rule "x": match[1].args[0]: error parsing regexp ...".
//
// # Exec events
//
// An exec event has an argv, not a command line. CommandLine quotes each
// word so that the engine sees exactly the program and arguments the
// kernel ran: an argument "a; rm -rf /" stays one argument, while
// "sh -c SCRIPT" is still unwrapped and SCRIPT analysed.
package cmdrule
