// Kiosk screen (docs/web.md "Kiosk"): provisioned once with its kiosk id and device secret, it
// trades them for short-lived kiosk tokens, scans an order's QR code (or takes it typed), calls a
// pharmacist on /hotline, shows the queue, the video call and a thank-you screen, and recovers by
// itself after network loss. It only ever shows the opaque order id, never patient details.
import jsQR from "jsqr";
import { api } from "../common/api.js";
import { connect, call } from "../common/socket.js";
import { announce, el } from "../common/status.js";
import { SfuPeer, getLocalMedia, attach } from "../common/media.js";

const STORE = {
  id: "careline.kiosk.id",
  secret: "careline.kiosk.secret",
  idleAfter: "careline.kiosk.idle_after",
};
const DEFAULT_IDLE_AFTER = 20; // seconds on the thank-you screen
const SCAN_EVERY_MS = 250; // QR decode rate (4 per second)
const SCAN_MAX_SIDE = 640; // frames are scaled down to this before decoding
// Liveness checks of the socket (an acked hotline.resume, which reads the queue on the server):
// often while talking, less often while waiting in line (many kiosks may wait), rarely when idle.
const HEARTBEAT_CALL_MS = 3000;
const HEARTBEAT_QUEUE_MS = 8000;
const HEARTBEAT_IDLE_MS = 30000;
const HEARTBEAT_TIMEOUT_MS = 5000;

const main = document.getElementById("main");
const banner = document.getElementById("banner");

const kiosk = {
  id: null,
  secret: null,
  token: null,
  renewTimer: null,
  socket: null,
  online: false,
  iceServers: [],
  call: null, // the open call (call view), or null
  position: null,
  estimate: null,
  note: "", // a line under the queue position (requeued after a missed ring, reconnected)
  callbackOffered: false,
  peer: null,
  mediaSocketId: null, // socket id media was started on (a new socket needs media.restart)
  localStream: null,
  screen: null,
  view: {}, // elements of the current screen
  scanner: null,
  placing: false,
  rejected: new Map(), // order code -> time it was refused (the scanner does not retry it at once)
  timers: new Set(),
  replaced: false,
};

// -- provisioning ------------------------------------------------------------------------------

/** Take kiosk_id/secret (and idle_after) from the link into localStorage, then off the URL. */
function provision() {
  const url = new URL(window.location.href);
  const id = url.searchParams.get("kiosk_id");
  const secret = url.searchParams.get("secret");
  const idleAfter = url.searchParams.get("idle_after");
  if (id && secret) {
    localStorage.setItem(STORE.id, id);
    localStorage.setItem(STORE.secret, secret);
  }
  if (idleAfter && Number(idleAfter) > 0) localStorage.setItem(STORE.idleAfter, String(Number(idleAfter)));
  if (url.searchParams.has("secret") || url.searchParams.has("kiosk_id") || url.searchParams.has("idle_after")) {
    for (const key of ["kiosk_id", "secret", "idle_after"]) url.searchParams.delete(key);
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  }
  kiosk.id = localStorage.getItem(STORE.id);
  kiosk.secret = localStorage.getItem(STORE.secret);
}

function idleAfterSeconds() {
  return Number(localStorage.getItem(STORE.idleAfter)) || DEFAULT_IDLE_AFTER;
}

function forgetProvisioning() {
  localStorage.removeItem(STORE.id);
  localStorage.removeItem(STORE.secret);
  kiosk.id = null;
  kiosk.secret = null;
}

// -- helpers -----------------------------------------------------------------------------------

function later(ms, fn) {
  const timer = setTimeout(() => {
    kiosk.timers.delete(timer);
    fn();
  }, ms);
  kiosk.timers.add(timer);
  return timer;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function setBanner(text) {
  banner.textContent = text || "";
  banner.hidden = !text;
}

/** The claims of a JWT (unverified: only to time the renewal). */
function claimsOf(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch (err) {
    return {};
  }
}

function formatWait(seconds) {
  if (seconds === null || seconds === undefined) return "Waiting for a pharmacist to become free.";
  if (seconds < 60) return "Estimated wait: less than a minute.";
  const minutes = Math.round(seconds / 60);
  return `Estimated wait: about ${minutes} minute${minutes === 1 ? "" : "s"}.`;
}

function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function bigButton(label, { class: extra = "", ...attrs } = {}) {
  return el("button", { type: "button", class: `big ${extra}`.trim(), ...attrs }, label);
}

/** Replace the screen with `section`; its elements with ids go into kiosk.view. The focus goes to
 * the element with id `focusId`, else the heading. */
function show(screen, section, focusId) {
  if (kiosk.screen === "idle" && screen !== "idle") stopScanner();
  kiosk.screen = screen;
  document.body.dataset.screen = screen;
  main.replaceChildren(section);
  kiosk.view = {};
  for (const node of [section, ...section.querySelectorAll("[id]")]) if (node.id) kiosk.view[node.id] = node;
  const target = (focusId && kiosk.view[focusId]) || section.querySelector("h1");
  if (target) {
    if (target.tagName === "H1") target.tabIndex = -1;
    target.focus({ preventScroll: true });
  }
}

// -- screens: setup, problems --------------------------------------------------------------------

function showSetup(problem) {
  const idInput = el("input", { id: "setup-id", name: "kiosk_id", autocomplete: "off", required: true, value: kiosk.id || "" });
  const secretInput = el("input", { id: "setup-secret", name: "secret", type: "password", autocomplete: "off", required: true });
  const form = el(
    "form",
    { class: "setup-form" },
    el("label", { for: "setup-id" }, "Kiosk id"),
    idInput,
    el("label", { for: "setup-secret" }, "Device secret"),
    secretInput,
    el("button", { type: "submit", class: "big primary" }, "Save and start"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(STORE.id, idInput.value.trim());
    localStorage.setItem(STORE.secret, secretInput.value.trim());
    window.location.reload();
  });
  show(
    "setup",
    el(
      "section",
      { class: "kiosk-panel setup" },
      el("h1", {}, "Set up this kiosk"),
      problem ? el("p", { class: "message error", role: "alert" }, problem) : null,
      el("p", {}, "For pharmacy staff: enter the kiosk id and device secret from the registration."),
      form,
    ),
  );
}

function showProblem(headline, advice, { code, retry } = {}) {
  const section = el(
    "section",
    { class: "kiosk-panel fatal", role: "alert", dataset: { code: code || "" } },
    el("h1", {}, headline),
    el("p", { class: "lead" }, advice),
  );
  if (retry) section.append(bigButton(retry.label, { onclick: retry.action, class: "primary" }));
  setBanner(""); // the screen says what is wrong; no "Reconnecting…" over it
  show("problem", section);
}

function outOfService() {
  closeSocket();
  showProblem("This kiosk is out of service.", "Please ask at the pharmacy counter for help.", { code: "hotline.kiosk_disabled" });
  // An admin may enable it again: check now and then.
  later(30000, () => start());
}

function notSetUp() {
  closeSocket();
  showSetup("This kiosk is not set up correctly (unknown kiosk or wrong secret). Staff: enter its details again.");
}

// -- kiosk tokens --------------------------------------------------------------------------------

/**
 * Get a kiosk token for the stored id and secret, retrying with backoff while the server cannot be
 * reached. Returns false (after showing why) when the kiosk cannot get one.
 */
async function fetchToken() {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const reply = await api(`/api/kiosks/${encodeURIComponent(kiosk.id)}/token`, {
        method: "POST",
        json: { secret: kiosk.secret },
      });
      kiosk.token = reply.token;
      scheduleRenewal(reply.token);
      if (!kiosk.socket || kiosk.online) setBanner("");
      return true;
    } catch (err) {
      if (err.code === "hotline.bad_kiosk_secret" || err.code === "invalid_payload" || err.status === 404) {
        notSetUp();
        return false;
      }
      if (err.code === "hotline.kiosk_disabled") {
        outOfService();
        return false;
      }
      const delay = Math.min(15000, 1000 * 2 ** (attempt - 1));
      setBanner(`Cannot reach the pharmacy service. Retrying in ${Math.round(delay / 1000)} s…`);
      await sleep(delay);
    }
  }
}

/** Renew at 60% of the token's lifetime (measured from its own iat/exp, so clock skew does not matter). */
function scheduleRenewal(token) {
  clearTimeout(kiosk.renewTimer);
  const { iat, exp } = claimsOf(token);
  const lifetime = typeof iat === "number" && typeof exp === "number" ? exp - iat : 300;
  kiosk.renewTimer = setTimeout(renewToken, Math.max(10, lifetime * 0.6) * 1000);
}

async function renewToken() {
  if (!(await fetchToken())) return;
  // The open socket keeps the token it connected with; reconnect it with the new one while that
  // interrupts nothing (no open call). During a call, it is reconnected when the call ends.
  if (!kiosk.call) reconnectSocket();
  else kiosk.staleSocket = true;
}

// -- socket ----------------------------------------------------------------------------------------

function closeSocket() {
  if (kiosk.socket) {
    kiosk.socket.removeAllListeners();
    kiosk.socket.io.removeAllListeners();
    kiosk.socket.disconnect();
    kiosk.socket = null;
  }
  kiosk.online = false;
}

function reconnectSocket() {
  kiosk.staleSocket = false;
  if (!kiosk.socket) return;
  kiosk.socket.disconnect();
  kiosk.socket.connect();
}

function openSocket() {
  const socket = connect("/hotline", () => kiosk.token, onStatus);
  kiosk.socket = socket;
  socket.on("hotline.call", (view) => applyCall(view));
  socket.on("hotline.position", (data) => {
    if (!kiosk.call || data.call_id !== kiosk.call.call_id) return;
    kiosk.position = data.position;
    kiosk.estimate = data.estimated_wait_seconds;
    updateWaiting();
  });
  socket.on("hotline.callback_offer", (data) => {
    if (!kiosk.call || data.call_id !== kiosk.call.call_id) return;
    kiosk.callbackOffered = true;
    updateWaiting();
    announce("You can ask for a pharmacist to call you back instead of waiting.");
  });
  socket.on("hotline.replaced", () => {
    kiosk.replaced = true;
  });
  socket.on("hotline.disabled", () => {
    kiosk.disabled = true;
  });
  socket.on("disconnect", (reason) => {
    kiosk.online = false;
    if (reason !== "io server disconnect") return; // network loss: socket.io reconnects by itself
    if (kiosk.disabled) {
      kiosk.disabled = false;
      stopMedia();
      kiosk.call = null;
      outOfService();
    } else if (kiosk.replaced) {
      stopMedia();
      showProblem("This kiosk is open on another screen.", "Only one screen can be the kiosk at a time.", {
        code: "hotline.replaced",
        retry: { label: "Use this screen", action: () => window.location.reload() },
      });
    } else {
      // The token expired or was cut off: get a new one and come back (the call keeps its place).
      setBanner("Reconnecting…");
      fetchToken().then((ok) => ok && kiosk.socket && kiosk.socket.connect());
    }
  });
}

function onStatus(status) {
  document.body.dataset.online = String(status.state === "connected"); // for staff tools and tests
  if (status.state === "connected") {
    kiosk.online = true;
    setBanner("");
    onConnected();
    return;
  }
  if (status.state === "reconnecting" || status.state === "offline") {
    kiosk.online = false;
    setBanner(
      kiosk.call
        ? "Connection lost. Reconnecting… You keep your place."
        : "Connection lost. Reconnecting…",
    );
    if (kiosk.view["wait-note"] && kiosk.call) kiosk.view["wait-note"].textContent = "Reconnecting… You keep your place in line.";
    if (kiosk.view["remote-status"]) {
      kiosk.view["remote-status"].hidden = false;
      kiosk.view["remote-status"].textContent = "Reconnecting…";
    }
    return;
  }
  // refused: the connect was turned down
  kiosk.online = false;
  const code = status.code || "";
  if (code === "hotline.kiosk_disabled") outOfService();
  else if (code === "hotline.unknown_kiosk") notSetUp();
  else if (code.startsWith("auth.") || code === "forbidden") {
    // an expired or revoked kiosk token: trade the secret for a new one
    fetchToken().then((ok) => ok && kiosk.socket && kiosk.socket.connect());
  } else {
    setBanner("Cannot reach the pharmacy service. Retrying…");
    later(3000, () => kiosk.socket && kiosk.socket.connect());
  }
}

/** (Re)connected: pick up the open call, if any (hotline.resume), else the idle screen. */
async function onConnected() {
  const socket = kiosk.socket;
  let reply;
  try {
    reply = await call(socket, "hotline.resume");
  } catch (err) {
    later(2000, () => socket === kiosk.socket && socket.connected && onConnected());
    return;
  }
  if (socket !== kiosk.socket) return;
  if (reply && reply.call) {
    kiosk.iceServers = reply.ice_servers || [];
    if (kiosk.call && kiosk.call.call_id === reply.call.call_id && reply.call.state === "queued") {
      kiosk.note = "Reconnected. You kept your place in line.";
    }
    applyCall(reply.call, { resumed: true });
  } else if (kiosk.call) {
    // Our call ended while we were away (the grace ran out).
    const ended = { ...kiosk.call, state: kiosk.call.state === "connected" ? "completed" : "abandoned", end_reason: "kiosk_disconnected" };
    applyCall(ended);
  } else if (kiosk.screen !== "idle" && kiosk.screen !== "thanks") {
    showIdle();
  }
}

// -- the call ----------------------------------------------------------------------------------

const ENDED = new Set(["completed", "abandoned", "callback"]);

function applyCall(view, { resumed = false } = {}) {
  if (!view) return;
  if (kiosk.call && view.call_id !== kiosk.call.call_id && ENDED.has(view.state)) return; // an old call
  const previous = kiosk.call;
  if (ENDED.has(view.state)) {
    kiosk.call = null;
    stopMedia();
    showThanks(view);
    if (kiosk.staleSocket) reconnectSocket();
    return;
  }
  kiosk.call = view;
  if (view.position !== null && view.position !== undefined) kiosk.position = view.position;
  if (view.estimated_wait_seconds !== undefined && view.position !== null && view.position !== undefined) {
    kiosk.estimate = view.estimated_wait_seconds;
  }
  kiosk.callbackOffered = kiosk.callbackOffered || Boolean(view.callback_offered);
  if (view.state === "queued" || view.state === "ringing") {
    if (previous && previous.state === "ringing" && view.state === "queued" && !resumed) {
      kiosk.note = "The pharmacist could not answer. You are still at the front of the line.";
      announce(kiosk.note);
    }
    if (kiosk.screen !== "waiting") showWaiting();
    updateWaiting();
    if (!previous) announce(`Call placed. ${positionText()}`);
    if (view.state === "ringing" && (!previous || previous.state !== "ringing")) announce("Connecting you to a pharmacist.");
  } else if (view.state === "connected") {
    if (kiosk.screen !== "call") {
      showCall();
      announce("You are connected to a pharmacist.");
    }
    if (kiosk.mediaSocketId !== kiosk.socket.id) startMedia();
  }
}

function positionText() {
  if (!kiosk.position) return "You are in line.";
  return kiosk.position === 1 ? "You are next in line." : `You are number ${kiosk.position} in line.`;
}

async function placeCall(orderToken, source) {
  const code = (orderToken || "").trim();
  if (kiosk.placing || kiosk.screen !== "idle") return;
  if (!code) {
    idleMessage("Enter the code printed under the QR code on your receipt.");
    return;
  }
  if (!kiosk.socket || !kiosk.socket.connected) {
    idleMessage("The kiosk is reconnecting. Please try again in a moment.");
    return;
  }
  kiosk.placing = true;
  setIdleBusy(true);
  try {
    const reply = await call(kiosk.socket, "hotline.call", { order_token: code });
    kiosk.iceServers = reply.ice_servers || [];
    kiosk.note = "";
    kiosk.callbackOffered = false;
    kiosk.position = null;
    kiosk.estimate = null;
    applyCall(reply.call);
  } catch (err) {
    if (err.code === "hotline.already_calling") {
      onConnected();
    } else if (err.code === "hotline.kiosk_disabled") {
      outOfService();
    } else {
      if (source === "scan") kiosk.rejected.set(code, Date.now());
      idleMessage(...orderProblem(err.code));
    }
  } finally {
    kiosk.placing = false;
    setIdleBusy(false);
  }
}

function orderProblem(code) {
  switch (code) {
    case "hotline.order_expired":
      return ["This order code has expired.", "Please ask at the pharmacy counter for a new receipt."];
    case "hotline.order_invalid":
    case "invalid_payload":
      return ["This is not a valid order code.", "Scan the QR code on your pharmacy receipt, or ask at the counter."];
    case "hotline.queue_full":
      return ["All pharmacists are busy and the line is full.", "Please try again in a few minutes."];
    case "timeout":
    case "network":
      return ["The pharmacy service did not answer.", "Please try again in a moment."];
    default:
      return ["The call could not be placed.", "Please try again, or ask at the pharmacy counter."];
  }
}

async function cancelCall() {
  if (!kiosk.call) return;
  try {
    const view = await call(kiosk.socket, "hotline.end");
    applyCall(view);
  } catch (err) {
    if (err.code === "hotline.no_call" || err.code === "hotline.call_ended") {
      applyCall({ ...kiosk.call, state: "abandoned", end_reason: "caller_cancelled" });
    } else {
      announce("Could not end the call. Please try again.");
    }
  }
}

async function takeCallback() {
  try {
    applyCall(await call(kiosk.socket, "hotline.callback"));
  } catch (err) {
    announce("The callback could not be requested. You are still in line.");
  }
}

// -- media -----------------------------------------------------------------------------------------

async function startMedia() {
  const socket = kiosk.socket;
  kiosk.mediaSocketId = socket.id;
  if (!kiosk.localStream) {
    const { stream } = await getLocalMedia();
    kiosk.localStream = stream;
    if (!stream) setRemoteStatus("Your camera and microphone are not available. The pharmacist cannot see or hear you.");
    else if (!stream.getVideoTracks().length) setRemoteStatus("Your camera is not available: audio only.");
  }
  if (!kiosk.call || kiosk.call.state !== "connected" || socket !== kiosk.socket) return;
  if (kiosk.view.self && kiosk.localStream) attach(kiosk.view.self, kiosk.localStream);
  if (!kiosk.peer) {
    kiosk.peer = new SfuPeer(socket, {
      iceServers: kiosk.iceServers,
      localStream: kiosk.localStream,
      onStreams: showRemote,
      onState: mediaState,
    });
  }
  try {
    await kiosk.peer.start(Boolean(kiosk.peer.pc));
  } catch (err) {
    kiosk.mediaSocketId = null;
    if (kiosk.call && kiosk.call.state === "connected") later(2000, () => socket.connected && !kiosk.mediaSocketId && startMedia());
  }
}

function mediaState(state) {
  if (state === "connected") return;
  if (state === "failed" || state === "disconnected") {
    const peer = kiosk.peer;
    later(state === "failed" ? 500 : 4000, () => {
      if (peer !== kiosk.peer || !peer.pc || !kiosk.socket || !kiosk.socket.connected) return;
      if (peer.pc.connectionState === "failed" || peer.pc.connectionState === "disconnected") startMedia();
    });
  }
}

function showRemote(streams) {
  const video = kiosk.view.remote;
  if (!video || !kiosk.call) return;
  const stream = streams.get(kiosk.call.peer_session_id) || streams.values().next().value;
  if (stream) {
    attach(video, stream);
  }
}

function setRemoteStatus(text) {
  const status = kiosk.view["remote-status"];
  if (!status) return;
  status.textContent = text;
  status.hidden = !text;
}

function stopMedia() {
  if (kiosk.peer) kiosk.peer.close();
  kiosk.peer = null;
  kiosk.mediaSocketId = null;
  if (kiosk.localStream) for (const track of kiosk.localStream.getTracks()) track.stop();
  kiosk.localStream = null;
}

// -- QR scanning -----------------------------------------------------------------------------------

const scanCanvas = document.createElement("canvas");

/** Decode a QR code from an image source (video, image, canvas) of the given size: its text or null. */
export function decodeQr(source, width, height) {
  if (!width || !height) return null;
  const scale = Math.min(1, SCAN_MAX_SIDE / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale));
  const h = Math.max(1, Math.round(height * scale));
  scanCanvas.width = w;
  scanCanvas.height = h;
  const context = scanCanvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(source, 0, 0, w, h);
  const image = context.getImageData(0, 0, w, h);
  const found = jsQR(image.data, w, h, { inversionAttempts: "attemptBoth" });
  return found && found.data ? found.data.trim() : null;
}

function onScanned(code) {
  const refused = kiosk.rejected.get(code);
  if (refused && Date.now() - refused < 8000) return; // the same bad code held up: do not hammer
  announce("Code scanned. Calling a pharmacist…");
  placeCall(code, "scan");
}

async function startScanner() {
  const video = kiosk.view["scan-video"];
  const status = kiosk.view["scan-status"];
  if (!video || !navigator.mediaDevices) return;
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: false,
      video: { facingMode: "environment", width: { ideal: 640 }, height: { ideal: 480 } },
    });
  } catch (err) {
    if (status) status.textContent = "The camera is not available. Type the code instead.";
    if (kiosk.view["manual-toggle"] && kiosk.view["manual-form"] && kiosk.view["manual-form"].hidden) toggleManual();
    return;
  }
  if (kiosk.screen !== "idle" || kiosk.view["scan-video"] !== video) {
    for (const track of stream.getTracks()) track.stop();
    return;
  }
  attach(video, stream);
  const timer = setInterval(() => {
    if (kiosk.placing || video.readyState < 2) return;
    const code = decodeQr(video, video.videoWidth, video.videoHeight);
    if (code) onScanned(code);
  }, SCAN_EVERY_MS);
  kiosk.scanner = { stream, timer };
}

function stopScanner() {
  if (!kiosk.scanner) return;
  clearInterval(kiosk.scanner.timer);
  for (const track of kiosk.scanner.stream.getTracks()) track.stop();
  kiosk.scanner = null;
}

/** Scan a picture (URL or data URL) as if the camera had seen it; the decoded text or null.
 * Used for diagnostics and tests (window.carelineKiosk.scanImage). */
async function scanImage(url) {
  const image = new Image();
  image.src = url;
  await image.decode();
  const code = decodeQr(image, image.naturalWidth, image.naturalHeight);
  if (code) onScanned(code);
  return code;
}

// -- screens: idle, waiting, call, thanks ------------------------------------------------------------

function showIdle() {
  kiosk.call = null;
  const form = el(
    "form",
    { id: "manual-form", class: "manual-form", hidden: true },
    el("label", { for: "order-code" }, "Order code"),
    el("textarea", { id: "order-code", rows: "3", autocomplete: "off", autocapitalize: "off", spellcheck: "false" }),
    el("button", { type: "submit", id: "call-button", class: "big primary" }, "Call a pharmacist"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    placeCall(kiosk.view["order-code"].value, "typed");
  });
  show(
    "idle",
    el(
      "section",
      { class: "kiosk-panel idle", id: "idle" },
      el("h1", {}, "Talk to a pharmacist"),
      el("p", { class: "lead" }, "Hold the QR code on your pharmacy receipt up to the camera."),
      el(
        "div",
        { class: "scan" },
        el("video", { id: "scan-video", muted: true, playsinline: true, autoplay: true, "aria-label": "Camera view for scanning the code" }),
        el("div", { class: "scan-frame", "aria-hidden": "true" }),
      ),
      el("p", { id: "scan-status", class: "scan-status" }, "Looking for a code…"),
      el("div", { id: "idle-message", class: "message error", role: "alert", hidden: true }),
      el(
        "button",
        { type: "button", id: "manual-toggle", class: "big", "aria-expanded": "false", "aria-controls": "manual-form", onclick: toggleManual },
        "Type the code instead",
      ),
      form,
    ),
  );
  const video = kiosk.view["scan-video"];
  video.muted = true;
  startScanner();
}

/** Show or hide the typed-code form (it takes the scanner's place, so the screen still fits). */
function toggleManual() {
  const form = kiosk.view["manual-form"];
  const toggle = kiosk.view["manual-toggle"];
  form.hidden = !form.hidden;
  toggle.setAttribute("aria-expanded", String(!form.hidden));
  toggle.textContent = form.hidden ? "Type the code instead" : "Scan the QR code instead";
  kiosk.view.idle.classList.toggle("typing", !form.hidden);
  if (!form.hidden) kiosk.view["order-code"].focus();
}

function idleMessage(headline, advice) {
  const box = kiosk.view["idle-message"];
  if (!box) return;
  box.replaceChildren(el("strong", {}, headline), advice ? el("span", {}, " " + advice) : "");
  box.hidden = false;
  announce(`${headline} ${advice || ""}`.trim());
}

function setIdleBusy(busy) {
  const button = kiosk.view["call-button"];
  if (button) {
    button.disabled = busy;
    button.textContent = busy ? "Calling…" : "Call a pharmacist";
  }
  const status = kiosk.view["scan-status"];
  if (status && busy) status.textContent = "Calling a pharmacist…";
  else if (status && kiosk.scanner) status.textContent = "Looking for a code…";
  if (busy && kiosk.view["idle-message"]) kiosk.view["idle-message"].hidden = true;
}

function showWaiting() {
  show(
    "waiting",
    el(
      "section",
      { class: "kiosk-panel waiting", id: "waiting" },
      el("p", { class: "order" }, "Order ", el("strong", { id: "order-id" }, kiosk.call.order_id)),
      el("h1", { id: "wait-title" }, "You are in line"),
      el("p", { id: "wait-estimate", class: "lead" }),
      el("p", { id: "wait-note", class: "note", role: "status" }),
      el("div", { class: "spinner", "aria-hidden": "true" }),
      el(
        "div",
        { id: "callback", class: "callback", hidden: true },
        el("p", {}, "Waiting a long time? A pharmacist can call you back instead."),
        bigButton("Call me back instead", { id: "callback-button", onclick: takeCallback }),
      ),
      bigButton("Cancel call", { id: "cancel-button", class: "danger", onclick: cancelCall }),
    ),
  );
}

function updateWaiting() {
  if (kiosk.screen !== "waiting" || !kiosk.call) return;
  const { view } = kiosk;
  const ringing = kiosk.call.state === "ringing";
  view.waiting.dataset.state = kiosk.call.state;
  view["wait-title"].textContent = ringing ? "Connecting you to a pharmacist…" : positionText();
  view["wait-estimate"].textContent = ringing ? "Please stay in front of the screen." : formatWait(kiosk.estimate);
  view["wait-note"].textContent = kiosk.online || !kiosk.socket ? kiosk.note : "Reconnecting… You keep your place in line.";
  view.callback.hidden = !kiosk.callbackOffered || ringing;
}

function showCall() {
  const remote = el("video", { id: "remote", autoplay: true, playsinline: true, "aria-label": "The pharmacist" });
  const self = el("video", { id: "self", class: "self", muted: true, autoplay: true, playsinline: true, "aria-label": "You" });
  self.muted = true;
  remote.addEventListener("playing", () => setRemoteStatus(""));
  show(
    "call",
    el(
      "section",
      { class: "kiosk-call" },
      el("h1", { class: "visually-hidden" }, "Call with a pharmacist"),
      el("div", { class: "remote" }, remote, el("p", { id: "remote-status", class: "remote-status", role: "status" }, "Connecting video…"), self),
      el(
        "div",
        { class: "call-bar" },
        el("p", { class: "order" }, "Order ", el("strong", { id: "order-id" }, kiosk.call.order_id)),
        el("p", { id: "call-timer", class: "call-timer", "aria-label": "Call length" }, "0:00"),
        bigButton("Mute", { id: "mute-button", "aria-pressed": "false", onclick: toggleMute }),
        bigButton("End call", { id: "end-button", class: "danger", onclick: cancelCall }),
      ),
    ),
    "end-button",
  );
  const started = Date.now();
  const tick = setInterval(() => {
    if (kiosk.screen !== "call") return clearInterval(tick);
    kiosk.view["call-timer"].textContent = clock((Date.now() - started) / 1000);
  }, 1000);
}

function toggleMute() {
  const button = kiosk.view["mute-button"];
  const muted = button.getAttribute("aria-pressed") !== "true";
  if (kiosk.localStream) for (const track of kiosk.localStream.getAudioTracks()) track.enabled = !muted;
  button.setAttribute("aria-pressed", String(muted));
  button.textContent = muted ? "Unmute" : "Mute";
  announce(muted ? "Microphone off." : "Microphone on.");
}

const THANKS = {
  caller_cancelled: ["Your call was cancelled.", "You can call again at any time."],
  kiosk_hangup: ["Thank you for calling.", "The call has ended."],
  pharmacist_hangup: ["Thank you for calling.", "The pharmacist ended the call."],
  pharmacist_disconnected: ["The call was cut off.", "The pharmacist's connection was lost. If you still need help, please call again."],
  kiosk_disconnected: ["The call was cut off.", "This kiosk lost its connection. If you still need help, please call again."],
  callback: ["A pharmacist will call you back.", "You can leave the kiosk now."],
};

function showThanks(view) {
  const [headline, detail] = THANKS[view.end_reason] || THANKS[view.state] || ["Thank you.", "The call has ended."];
  let left = idleAfterSeconds();
  const countdown = el("p", { id: "thanks-countdown", class: "muted" });
  const render = () => {
    countdown.textContent = `This screen returns to the start in ${left} s.`;
  };
  render();
  show(
    "thanks",
    el(
      "section",
      { class: "kiosk-panel thanks", dataset: { reason: view.end_reason || view.state } },
      el("h1", {}, headline),
      el("p", { class: "lead" }, detail),
      countdown,
      bigButton("Done", { id: "done-button", class: "primary", onclick: () => showIdle() }),
    ),
  );
  announce(`${headline} ${detail}`);
  const tick = setInterval(() => {
    if (kiosk.screen !== "thanks") return clearInterval(tick);
    left -= 1;
    if (left <= 0) {
      clearInterval(tick);
      showIdle();
    } else {
      render();
    }
  }, 1000);
}

// -- start -----------------------------------------------------------------------------------------

async function start() {
  for (const timer of kiosk.timers) clearTimeout(timer);
  kiosk.timers.clear();
  if (!kiosk.id || !kiosk.secret) {
    showSetup();
    return;
  }
  show("starting", el("section", { class: "kiosk-panel" }, el("h1", {}, "Starting…"), el("p", { class: "lead" }, "Connecting to the pharmacy service.")));
  if (!(await fetchToken())) return;
  if (!kiosk.socket) openSocket();
  else kiosk.socket.connect();
}

/** The connection is lost or stalled: drop it now, so socket.io starts reconnecting (and the
 * screen says so) instead of waiting for engine.io's ping timeout (up to 45 s). */
function networkLost() {
  if (kiosk.socket && kiosk.socket.connected) kiosk.socket.io.engine.close();
}

/** Heartbeat: an acked hotline.resume every 3 s on a call, 8 s in the queue, 30 s when idle. No answer in time means the connection is stalled (a network that drops
 * packets without closing the socket; also how browsers emulate "offline"): reconnect. Only
 * liveness is taken from the reply; the call's state comes from pushes and from resume after a
 * reconnect, so a late reply cannot undo a newer push. */
async function heartbeat() {
  const socket = kiosk.socket;
  if (!socket || !socket.connected || kiosk.beating) return;
  kiosk.beating = true;
  try {
    await call(socket, "hotline.resume", undefined, HEARTBEAT_TIMEOUT_MS);
  } catch (err) {
    if (err.code === "timeout" && socket === kiosk.socket && socket.connected) networkLost();
  } finally {
    kiosk.beating = false;
  }
}

/** Every second: beat if the interval for the current state has passed since the last beat, so
 * placing a call (idle -> queue) shortens the wait for the next beat at once. */
let lastBeat = performance.now();
function heartbeatTick() {
  const state = kiosk.call && kiosk.call.state;
  const every = state === "connected" ? HEARTBEAT_CALL_MS : state ? HEARTBEAT_QUEUE_MS : HEARTBEAT_IDLE_MS;
  if (performance.now() - lastBeat < every) return;
  lastBeat = performance.now();
  heartbeat();
}
window.addEventListener("offline", networkLost);
setInterval(heartbeatTick, 1000);
window.carelineKiosk = { scanImage, decodeQr, forgetProvisioning };

provision();
start();
