// Package policy decides whether a sensitive operation of a cell is
// allowed, denied or must wait for a human ("ask").
//
// # Engine choice
//
// Policies are written in Cedar and evaluated with
// github.com/cedar-policy/cedar-go. Cedar was chosen over OPA/Rego and
// CEL because its principal/action/resource model is small and
// analysable, its forbid-overrides-permit semantics is exactly "deny
// always wins", and policies are plain text files whose parse errors
// carry positions. OPA/Rego brings a large dependency tree and a
// general-purpose language; CEL evaluates single expressions and has no
// policy-set semantics, so combining rules would be hand-made again.
//
// # Requests and the Cedar schema
//
// A Request is mapped to a Cedar request as follows:
//
//	principal  User::"<tenant>/<user>"  attributes {name, tenant, role}
//	action     Action::"<kind>"  kind is tool.call, egress, secret.read or install
//	resource   tool.call:   Tool::"<tool>"        (e.g. Tool::"exec")
//	           egress:      Host::"<host>"        (e.g. Host::"api.example.com")
//	           secret.read: Secret::"<secret id>"
//	           install:     Package::"<package>"
//	context    {
//	             tenant:        String
//	             role:          String
//	             hour:          Long, 0-23, UTC
//	             weekday:       Long, 0-6, Sunday is 0, UTC
//	             command:       String, the shell command of an exec call
//	             programs:      Set<String>, the command's programs (monitor/cmdrule)
//	             command_rules: Set<String>, ids of the command rules it matched
//	             path:          String, a file write's resolved path ("" if not a write)
//	             in_workspace:  Bool, path lies inside the cell's workspace
//	             port:          Long, egress port
//	             risk:          Long, the monitor's risk signal, 0-100
//	             findings:      Set<String>, an install scan's findings
//	             params:        Record, the tool call's string parameters
//	           }
//
// Host names are lower-cased. A zero Request.Time means now; hour and
// weekday are taken in UTC so a policy means the same on every host.
// Only string-valued params are passed (Cedar has no null or float).
//
// Every context attribute is always present (empty string, empty set,
// 0 or false when it does not apply), so policies need no "has" checks.
//
// # Effects
//
// A matching forbid denies, whatever else matches: deny always wins.
// Otherwise a matching permit annotated @decision("ask") asks, even
// when a plain permit also matches (ask is the more cautious of the
// two). Otherwise a matching plain permit allows. When nothing matches,
// the effect is Options.Defaults[kind], and deny when the kind has no
// default. A forbid whose condition fails to evaluate (a type error, say)
// also denies, so a broken deny rule fails closed.
//
// The egress proxy only asks the policy about hosts its own allowlist
// does not already allow, so an egress request means "a new host".
//
// The Decision names the determining policies (their @id, or file:line
// when they have none) and the @reason texts of those policies.
//
// # Annotations
//
// Only @id("..."), @reason("...") and @decision("ask") are accepted;
// any other annotation, @decision with another value or on a forbid, and
// an @id used twice (across all loaded files) are load errors naming
// file:line:col. The embedded default.cedar is loaded first unless
// Options.NoDefault is set.
package policy
