// Package cellapi is the protocol between an OpenClaw cell (one gateway per
// tenant, inside a sandbox) and clawhold.
//
// A cell reaches clawhold over exactly one unix socket, bound read-only
// into the cell (clawhold up binds <data dir>/cells/<t>/run/cell.sock at the
// same path; SocketInside is the plugin's default). clawhold runs one
// listener per cell, so the socket a request arrives on is the cell's
// identity: nothing in a request names the tenant, and nothing in a request
// is trusted to.
//
// The protocol is HTTP over that socket (the plugin sends HTTP/1.0, the
// provider's client HTTP/1.1) with JSON bodies. Request bodies
// are limited to MaxBody (2 MiB) and must be a single JSON value with
// Content-Type application/json. Routes:
//
//	POST /v1/tool-call
//	    Body: a ToolCall, as the clawhold-toolgate plugin forwards each
//	    before_tool_call and after_tool_call hook.
//	    phase "before": 200 and a Decision. The plugin runs the tool only on
//	    exactly {"allow":true}; anything else, including a 5xx when the
//	    policy fails, blocks the call (fail closed).
//	    phase "after": 204 once recorded; the decision is ignored.
//
//	POST /v1/secrets
//	    Body: {"names":["<secret name>",...]} (1-512 names, each valid per
//	    secrets.ValidName).
//	    200 {"values":{"<name>":"<base64 of the value>",...}}: standard
//	    base64 with padding, so arbitrary bytes round-trip. Unknown names
//	    are absent.
//
// Errors are 4xx/5xx with {"error":"<message>"}. Messages never quote the
// request body or a secret value: 404 unknown route (or a nil Handler
// func), 405 wrong method, 413 body over MaxBody, 415 not JSON, 400
// malformed or invalid request, 500 the Handler func failed.
package cellapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	"github.com/clawhold/clawhold/secrets"
)

// SocketInside is the plugin's default cell socket path.
const SocketInside = "/run/clawhold/cell.sock"

// MaxBody bounds every request and response body of the protocol.
const MaxBody = 2 << 20

// maxNames bounds a secrets request; it is OpenClaw's own limit of ids per
// exec provider batch.
const maxNames = 512

// Routes.
const (
	pathToolCall = "/v1/tool-call"
	pathSecrets  = "/v1/secrets"
)

// Phases of a ToolCall.
const (
	PhaseBefore = "before"
	PhaseAfter  = "after"
)

// ToolCall is one before_tool_call or after_tool_call hook, as the plugin forwards it.
type ToolCall struct {
	Phase      string          `json:"phase"` // "before" or "after"
	ToolName   string          `json:"toolName"`
	Params     json.RawMessage `json:"params,omitempty"` // truncated by the plugin to 64 KiB
	ToolCallID string          `json:"toolCallId,omitempty"`
	RunID      string          `json:"runId,omitempty"`
	AgentID    string          `json:"agentId,omitempty"`
	SessionKey string          `json:"sessionKey,omitempty"`
	SessionID  string          `json:"sessionId,omitempty"`
	// ChannelID is ctx.channelId, set for calls made from a channel run.
	ChannelID string `json:"channelId,omitempty"`
	// ToolKind and ToolInputKind are OpenClaw's discriminators for tools
	// that share a name (e.g. "code_mode_exec" for Code Mode exec).
	ToolKind      string `json:"toolKind,omitempty"`
	ToolInputKind string `json:"toolInputKind,omitempty"`
	// TraceID is ctx.trace.traceId, OpenClaw's diagnostic trace of the run.
	TraceID string `json:"traceId,omitempty"`
	// User is the requesting user, when the hook context names one
	// (ctx.requester.senderId). Observed on OpenClaw 2026.9.6 with
	// trusted-proxy auth: /tools/invoke hooks get no requester at all, and
	// agent runs from /v1/chat/completions get {"channel":"webchat",
	// "senderIsOwner":true} without senderId, so User is empty for both;
	// the proxy's x-forwarded-user never reaches the hooks.
	User      string          `json:"user,omitempty"`
	Requester json.RawMessage `json:"requester,omitempty"` // ctx.requester as OpenClaw gave it
	// after only
	Error      string          `json:"error,omitempty"`
	DurationMs int64           `json:"durationMs,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"` // truncated by the plugin to 64 KiB
}

// Decision answers a before ToolCall.
type Decision struct {
	Allow  bool   `json:"allow"`
	Reason string `json:"reason,omitempty"`
}

// DefaultDenyReason is sent when a ToolCall func denies without a reason, so
// that the agent and the /tools/invoke caller see who blocked the call.
const DefaultDenyReason = "blocked by clawhold policy"

// Handler serves the cell socket. Nil funcs answer 404.
type Handler struct {
	// ToolCall decides a before call and records an after call (its
	// Decision is ignored).
	ToolCall func(ctx context.Context, c ToolCall) (Decision, error)
	// Secrets resolves secret names for the exec provider; see
	// secrets.Lookup. The returned buffers are zeroed once the response is
	// written, so it must hand over buffers it does not keep.
	Secrets func(ctx context.Context, names []string) (map[string][]byte, error)
	Logger  *slog.Logger
}

// httpError is an error answer. msg must never contain request data.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *httpError {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func (h *Handler) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var serve func(http.ResponseWriter, *http.Request) *httpError
	switch r.URL.Path {
	case pathToolCall:
		if h.ToolCall != nil {
			serve = h.serveToolCall
		}
	case pathSecrets:
		if h.Secrets != nil {
			serve = h.serveSecrets
		}
	}
	var herr *httpError
	switch {
	case serve == nil:
		herr = errorf(http.StatusNotFound, "not found")
	case r.Method != http.MethodPost:
		w.Header().Set("Allow", http.MethodPost)
		herr = errorf(http.StatusMethodNotAllowed, "method not allowed; use POST")
	default:
		herr = serve(w, r)
	}
	if herr != nil {
		// Path and method are ours to log; the body never is.
		h.logger().LogAttrs(r.Context(), levelFor(herr.status), "cellapi: request rejected",
			slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", herr.status), slog.String("reason", herr.msg))
		writeJSON(w, herr.status, struct {
			Error string `json:"error"`
		}{herr.msg})
	}
}

func levelFor(status int) slog.Level {
	if status >= 500 {
		return slog.LevelError
	}
	return slog.LevelWarn
}

func (h *Handler) serveToolCall(w http.ResponseWriter, r *http.Request) *httpError {
	var c ToolCall
	if herr := readJSON(w, r, &c); herr != nil {
		return herr
	}
	if herr := c.validate(); herr != nil {
		return herr
	}
	d, err := h.ToolCall(r.Context(), c)
	if err != nil {
		// The error may be anything the policy produced; it is logged
		// here and the plugin only learns that the policy failed.
		h.logger().ErrorContext(r.Context(), "cellapi: tool call policy failed",
			"phase", c.Phase, "tool", c.ToolName, "toolCallId", c.ToolCallID, "err", err)
		return errorf(http.StatusInternalServerError, "tool call policy failed")
	}
	if c.Phase == PhaseAfter {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if !d.Allow && d.Reason == "" {
		d.Reason = DefaultDenyReason
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

func (c *ToolCall) validate() *httpError {
	switch c.Phase {
	case PhaseBefore, PhaseAfter:
	default:
		return errorf(http.StatusBadRequest, `invalid tool call: phase must be "before" or "after"`)
	}
	if c.ToolName == "" {
		return errorf(http.StatusBadRequest, "invalid tool call: no toolName")
	}
	if c.DurationMs < 0 {
		return errorf(http.StatusBadRequest, "invalid tool call: negative durationMs")
	}
	if c.Phase == PhaseBefore && (c.Error != "" || c.DurationMs != 0 || len(c.Result) != 0) {
		return errorf(http.StatusBadRequest, "invalid tool call: error, durationMs and result are for phase after only")
	}
	return nil
}

// readJSON decodes the body of r, exactly one JSON value of at most MaxBody
// bytes, into v. Unknown fields are accepted so that a newer plugin can
// talk to an older clawhold. Decoder errors are not passed on: they can quote
// the input.
func readJSON(w http.ResponseWriter, r *http.Request, v any) *httpError {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return errorf(http.StatusUnsupportedMediaType, "content type must be application/json")
	}
	if r.ContentLength > MaxBody {
		return errorf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", MaxBody)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	err := dec.Decode(v)
	if err == nil {
		// Anything after the value, even another value, is malformed.
		if _, terr := dec.Token(); terr == nil {
			return errorf(http.StatusBadRequest, "malformed body: data after the JSON value")
		} else if !errors.Is(terr, io.EOF) {
			err = terr
		}
	}
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return errorf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", MaxBody)
		}
		if errors.Is(err, io.EOF) {
			return errorf(http.StatusBadRequest, "malformed body: empty")
		}
		if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			return errorf(http.StatusBadRequest, "malformed body: a field has the wrong type")
		}
		return errorf(http.StatusBadRequest, "malformed body: not valid JSON (at byte %d)", dec.InputOffset())
	}
	return nil
}

// writeJSON writes v, which must encode, with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen for our types
		b, status = []byte(`{"error":"internal error"}`), http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// secretsRequest is the body of POST /v1/secrets.
type secretsRequest struct {
	Names []string `json:"names"`
}

func (h *Handler) serveSecrets(w http.ResponseWriter, r *http.Request) *httpError {
	var req secretsRequest
	if herr := readJSON(w, r, &req); herr != nil {
		return herr
	}
	names, herr := checkNames(req.Names)
	if herr != nil {
		return herr
	}
	values, err := h.Secrets(r.Context(), names)
	defer func() {
		for _, v := range values {
			clear(v)
		}
	}()
	if err != nil {
		// Lookup errors are ours (store, keys), not secret values: the
		// secrets.Lookup contract keeps values out of errors.
		h.logger().ErrorContext(r.Context(), "cellapi: secret lookup failed", "names", len(names), "err", err)
		return errorf(http.StatusInternalServerError, "secret lookup failed")
	}
	resp, herr := encodeSecrets(names, values)
	if herr != nil {
		return herr
	}
	defer clear(resp)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(resp)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if _, err := w.Write(resp); err != nil {
		h.logger().WarnContext(r.Context(), "cellapi: writing secrets response", "err", err)
	}
	return nil
}

// checkNames validates the requested names and drops duplicates. Errors name
// the position, not the name: a caller could paste a secret into a name.
func checkNames(names []string) ([]string, *httpError) {
	switch {
	case len(names) == 0:
		return nil, errorf(http.StatusBadRequest, `invalid secrets request: "names" is missing or empty`)
	case len(names) > maxNames:
		return nil, errorf(http.StatusBadRequest, "invalid secrets request: %d names, more than %d", len(names), maxNames)
	}
	out := make([]string, 0, len(names))
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		if err := secrets.ValidName(n); err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid secrets request: name %d: %v", i, err)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, nil
}

// encodeSecrets lays out {"values":{...}} in one buffer sized up front, so
// that no partial copy of a value is left behind by growth; the caller
// clears it. Only requested names are sent.
func encodeSecrets(names []string, values map[string][]byte) ([]byte, *httpError) {
	const head, tail = `{"values":{`, "}}\n"
	size := len(head) + len(tail)
	for _, n := range names {
		if v, ok := values[n]; ok {
			// "name":"b64", — names are valid exec ids, so need no escaping.
			size += len(n) + 2 + 1 + b64.EncodedLen(len(v)) + 2 + 1
		}
	}
	if size > MaxBody {
		return nil, errorf(http.StatusInternalServerError, "secret values exceed the %d-byte response limit", MaxBody)
	}
	b := make([]byte, 0, size)
	b = append(b, head...)
	first := true
	for _, n := range names {
		v, ok := values[n]
		if !ok {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, n...)
		b = append(b, `":"`...)
		b = b64.AppendEncode(b, v)
		b = append(b, '"')
	}
	b = append(b, tail...)
	return b, nil
}
