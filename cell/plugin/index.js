// clawhold-toolgate: forwards every OpenClaw tool call to clawhold over the
// cell socket (HTTP/1.1 over a unix socket, see Go package cellapi) and lets
// a call run only when clawhold answers exactly {"allow":true}.
//
// It FAILS CLOSED: a deny, a timeout, an unreachable socket, a non-200
// answer, a malformed answer or any error blocks the call. after_tool_call
// is only reported, waited for briefly, and never throws.
//
// No dependencies: only node: builtins, so the sandboxed gateway loads it as
// plain files.
import net from "node:net";

const PLUGIN_ID = "clawhold-toolgate";
const DEFAULT_SOCKET = "/run/clawhold/cell.sock";
const DEFAULT_TIMEOUT_MS = 10000;
// after_tool_call is observation: do not hold up the agent for long.
const AFTER_TIMEOUT_MS = 2000;
// Params and results are cut to this many bytes of JSON.
const MAX_FORWARD_BYTES = 64 * 1024;
// Decisions are tiny; anything bigger is not clawhold.
const MAX_ANSWER_BYTES = 64 * 1024;
const MAX_REASON_CHARS = 2000;
const TOOL_CALL_PATH = "/v1/tool-call";

function str(v) {
  return typeof v === "string" && v !== "" ? v : undefined;
}

function byteLength(s) {
  return Buffer.byteLength(s, "utf8");
}

// forwardable returns v as a JSON-safe value whose JSON is at most
// MAX_FORWARD_BYTES, replacing a larger one with a marker object that keeps
// the beginning of its JSON text. Values JSON cannot encode (BigInt, cycles)
// become a marker too, never an exception.
function forwardable(v) {
  if (v === undefined) return undefined;
  let text;
  try {
    text = JSON.stringify(v);
  } catch (err) {
    return { clawholdUnserializable: true, error: String(err && err.message ? err.message : err).slice(0, 200) };
  }
  if (text === undefined) return undefined; // functions, symbols
  const size = byteLength(text);
  if (size <= MAX_FORWARD_BYTES) return JSON.parse(text);
  // Escaping can double the prefix; shrink until the marker fits.
  let n = MAX_FORWARD_BYTES - 256;
  for (;;) {
    const marker = {
      clawholdTruncated: true,
      originalBytes: size,
      jsonPrefix: Buffer.from(text, "utf8").subarray(0, n).toString("utf8"),
    };
    if (byteLength(JSON.stringify(marker)) <= MAX_FORWARD_BYTES || n < 1024) return marker;
    n = Math.floor(n * 0.75);
  }
}

// identity picks the requesting user out of ctx.requester. Observed on
// OpenClaw 2026.9.6 behind trusted-proxy auth: /tools/invoke sets no
// requester; an agent run from /v1/chat/completions sets
// {"channel":"webchat","senderIsOwner":true} without a senderId. Channel
// runs (Discord etc.) carry senderId.
function identity(requester) {
  if (!requester || typeof requester !== "object") return undefined;
  const id = requester.senderId;
  if (typeof id === "string" && id !== "") return id;
  if (typeof id === "number" && Number.isFinite(id)) return String(id);
  return undefined;
}

function toolCall(phase, event, ctx) {
  event = event || {};
  ctx = ctx || {};
  const requester = forwardable(ctx.requester);
  const call = {
    phase,
    toolName: str(event.toolName) || str(ctx.toolName) || "",
    params: forwardable(event.params),
    toolCallId: str(event.toolCallId) || str(ctx.toolCallId),
    runId: str(event.runId) || str(ctx.runId),
    agentId: str(ctx.agentId),
    sessionKey: str(ctx.sessionKey),
    sessionId: str(ctx.sessionId),
    channelId: str(ctx.channelId),
    toolKind: str(event.toolKind) || str(ctx.toolKind),
    toolInputKind: str(event.toolInputKind) || str(ctx.toolInputKind),
    traceId: ctx.trace && typeof ctx.trace === "object" ? str(ctx.trace.traceId) : undefined,
    user: identity(ctx.requester),
    requester,
  };
  if (phase === "after") {
    if (event.error !== undefined && event.error !== null) {
      const e = event.error;
      call.error = (typeof e === "string" ? e : e && e.message ? String(e.message) : String(e)).slice(0, 4096);
    }
    if (typeof event.durationMs === "number" && Number.isFinite(event.durationMs) && event.durationMs >= 0) {
      call.durationMs = Math.round(event.durationMs);
    }
    call.result = forwardable(event.result);
  }
  return call;
}

// post sends body to path on the unix socket and resolves to
// {status, text}; it rejects on any transport error or after timeoutMs.
//
// It speaks HTTP/1.0 over a raw node:net connection, not node:http:
// OpenClaw routes the process's HTTP traffic through its configured proxy
// (proxy.enabled), and the policy check must go to clawhold's socket, never
// through the egress proxy. HTTP/1.0 makes the answer end with the
// connection, with no chunked encoding to undo.
function post(socketPath, path, body, timeoutMs, signal) {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(JSON.stringify(body), "utf8");
    let settled = false;
    const finish = (fn, v) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (signal) signal.removeEventListener("abort", onAbort);
      fn(v);
    };
    const sock = net.connect({ path: socketPath });
    const timer = setTimeout(() => {
      const err = new Error(`no answer within ${timeoutMs} ms`);
      err.code = "ETIMEDOUT";
      sock.destroy(err);
      finish(reject, err);
    }, timeoutMs);
    const onAbort = () => {
      const err = new Error("tool call aborted");
      err.code = "ABORTED";
      sock.destroy(err);
      finish(reject, err);
    };
    if (signal) {
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
    }
    const chunks = [];
    let size = 0;
    sock.on("error", (err) => finish(reject, err));
    sock.on("data", (c) => {
      size += c.length;
      if (size > MAX_ANSWER_BYTES) {
        const err = new Error("answer too large");
        err.code = "E2BIG";
        sock.destroy(err);
        finish(reject, err);
        return;
      }
      chunks.push(c);
    });
    sock.on("end", () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      const head = raw.indexOf("\r\n\r\n");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
      if (head < 0 || !m) {
        const err = new Error("malformed answer");
        err.code = "EPROTO";
        finish(reject, err);
        return;
      }
      finish(resolve, { status: Number(m[1]), text: raw.slice(head + 4) });
    });
    sock.on("connect", () => {
      sock.write(
        `POST ${path} HTTP/1.0\r\nHost: cell\r\nContent-Type: application/json\r\nContent-Length: ${payload.length}\r\n\r\n`,
      );
      sock.end(payload);
    });
  });
}

function describe(err) {
  const code = err && typeof err.code === "string" ? err.code : "";
  const msg = err && err.message ? String(err.message) : String(err);
  return (code && !msg.includes(code) ? `${code}: ${msg}` : msg).slice(0, 300);
}

function block(reason) {
  return { block: true, blockReason: String(reason).slice(0, MAX_REASON_CHARS) };
}

function settings(api) {
  const cfg = (api && api.pluginConfig) || {};
  const socket = str(cfg.socket) || DEFAULT_SOCKET;
  let timeoutMs = DEFAULT_TIMEOUT_MS;
  if (typeof cfg.timeoutMs === "number" && Number.isFinite(cfg.timeoutMs) && cfg.timeoutMs > 0) {
    timeoutMs = Math.min(Math.floor(cfg.timeoutMs), 120000);
  }
  return { socket, timeoutMs };
}

function logger(api) {
  const l = api && api.logger;
  const f = (level) => (msg) => {
    try {
      if (l && typeof l[level] === "function") l[level](`[${PLUGIN_ID}] ${msg}`);
    } catch {
      // logging must never break a tool call
    }
  };
  return { info: f("info"), warn: f("warn"), error: f("error") };
}

export default {
  id: PLUGIN_ID,
  name: "clawhold tool gate",
  description: "Asks clawhold before every tool call; fails closed.",
  register(api) {
    const { socket, timeoutMs } = settings(api);
    const log = logger(api);

    async function beforeToolCall(event, ctx) {
      let call;
      try {
        call = toolCall("before", event, ctx);
        const { status, text } = await post(socket, TOOL_CALL_PATH, call, timeoutMs, ctx && ctx.abortSignal);
        if (status !== 200) {
          log.warn(`blocked ${call.toolName}: clawhold answered HTTP ${status}`);
          return block(`clawhold: policy check failed (HTTP ${status}); tool call blocked`);
        }
        let d;
        try {
          d = JSON.parse(text);
        } catch {
          return block("clawhold: malformed policy answer; tool call blocked");
        }
        if (d && typeof d === "object" && d.allow === true) return undefined;
        const reason = d && typeof d.reason === "string" && d.reason !== "" ? d.reason : "blocked by clawhold policy";
        return block(reason);
      } catch (err) {
        const tool = call ? call.toolName : "?";
        log.warn(`blocked ${tool}: clawhold unreachable: ${describe(err)}`);
        return block(`clawhold: policy check unavailable (${describe(err)}); tool call blocked`);
      }
    }

    async function afterToolCall(event, ctx) {
      try {
        const call = toolCall("after", event, ctx);
        const { status } = await post(socket, TOOL_CALL_PATH, call, Math.min(AFTER_TIMEOUT_MS, timeoutMs));
        if (status < 200 || status > 299) log.warn(`after_tool_call for ${call.toolName}: clawhold answered HTTP ${status}`);
      } catch (err) {
        log.warn(`after_tool_call not recorded: ${describe(err)}`);
      }
      return undefined;
    }

    // The runner's own budget (15 s default, fail closed) is set a little
    // above ours so that our timeout, with its clearer reason, fires first.
    api.on("before_tool_call", beforeToolCall, { priority: 1000, timeoutMs: timeoutMs + 1000 });
    api.on("after_tool_call", afterToolCall, { timeoutMs: AFTER_TIMEOUT_MS + 1000 });
    log.info(`gating tool calls through ${socket} (timeout ${timeoutMs} ms)`);
  },
};
