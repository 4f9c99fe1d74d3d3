// socket.io connections (msgpack parser, token in the connect auth) and acked calls.
import { io } from "socket.io-client";
import parser from "socket.io-msgpack-parser";
import { CarelineError, isFatalAuth } from "./errors.js";

/**
 * Open a socket to a namespace ("/visit", "/threads", "/hotline"). socket.io-client reconnects by
 * itself with exponential backoff (1 s doubling to 10 s, randomized); `onStatus` hears about it:
 *   onStatus({state: "connected" | "reconnecting" | "offline" | "refused", attempt, code, message})
 * A refused connect with an auth code ("refused") is final: the client stops retrying.
 * `getToken` is called before every (re)connect, so a renewed token is picked up.
 * `baseUrl` ("http(s)://host:port", optional) connects to another server than the page's own
 * (a video visit held by another node: `visit.wrong_node`); the server must accept this page's
 * origin (`cluster.allowed_origins`). `extraAuth` adds fields to the connect auth payload (the
 * hotline's `media_only`).
 */
export function connect(namespace, getToken, onStatus = () => {}, baseUrl = "", extraAuth = {}) {
  const socket = io(baseUrl ? baseUrl.replace(/\/+$/, "") + namespace : namespace, {
    parser,
    auth: (cb) => cb({ ...extraAuth, token: getToken() }),
    reconnectionDelay: 1000,
    reconnectionDelayMax: 10000,
    randomizationFactor: 0.5,
    timeout: 10000,
  });
  socket.on("connect", () => onStatus({ state: "connected" }));
  socket.on("disconnect", (reason) => {
    // "io server disconnect": the server cut us off on purpose (replaced, ended, expired): the
    // page decides. Anything else is a network loss the client retries by itself.
    if (reason !== "io server disconnect" && reason !== "io client disconnect") {
      onStatus({ state: "reconnecting", attempt: 0 });
    }
  });
  socket.io.on("reconnect_attempt", (attempt) => onStatus({ state: "reconnecting", attempt }));
  socket.on("connect_error", (err) => {
    const code = err && err.data && err.data.code;
    if (code && isFatalAuth(code)) {
      onStatus({ state: "refused", code, message: err.message });
    } else if (!socket.active) {
      onStatus({ state: "refused", code: code || "network", message: err && err.message });
    } else {
      onStatus({ state: "offline", code: code || "network", message: err && err.message });
    }
  });
  return socket;
}

/**
 * Emit `event` with an ack; resolve with its data or throw CarelineError (code "timeout"). The
 * error's `details` holds the fields an error ack carries beside code and message (`node_url`).
 */
export async function call(socket, event, payload, timeoutMs = 15000) {
  let reply;
  try {
    reply = await socket.timeout(timeoutMs).emitWithAck(event, payload === undefined ? {} : payload);
  } catch (err) {
    throw new CarelineError("timeout", `no answer to ${event}`);
  }
  if (!reply || reply.ok !== true) {
    const error = (reply && reply.error) || {};
    const failure = new CarelineError(error.code || "internal", error.message);
    failure.details = error;
    throw failure;
  }
  return reply.data;
}
