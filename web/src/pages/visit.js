// The video visit page (/visit/{visit_id}?token=...): device check, waiting room, the call, the
// clinician's controls. Protocol: docs/protocol.md "Video visits"; behaviour: docs/web.md.
import { signIn } from "../common/session.js";
import { connect, call } from "../common/socket.js";
import { CarelineError } from "../common/errors.js";
import { announce, showFatal, el } from "../common/status.js";
import { SfuPeer, getLocalMedia } from "../common/media.js";

const KIND = {
  parent: "Parent",
  second_parent: "Second parent",
  interpreter: "Interpreter",
  clinician: "Clinician",
};
const QUALITY_WORD = ["no connection", "bad", "poor", "fair", "good", "excellent"];
const STATE_WORD = {
  invited: "not here yet",
  waiting: "in the waiting room",
  admitted: "joining",
  connected: "in the visit",
  reconnecting: "reconnecting",
  left: "left",
  denied: "turned away",
  removed: "removed",
};
const STATS_EVERY_MS = 3000;
const RESTART_AFTER_MS = 5000; // a peer connection "disconnected" this long gets a media.restart
const MAX_MOVES = 3; // visit.wrong_node redirects followed by one join before giving up
const MOVE_CONNECT_MS = 5000; // how long a connect to another node (or back to the page's) may take
const REJOIN_FAST_MS = 15000; // after a lost socket: retry the join every second this long, then back off

/** Everything the page knows; one visit per page. */
const S = {
  token: null,
  me: null,
  visitId: decodeURIComponent(window.location.pathname.split("/")[2] || ""),
  socket: null,
  nodeUrl: "", // the node the socket talks to; "" = this page's own server
  moving: false, // the page is replacing its socket (a redirect or a failover)
  rejoining: false,
  phase: "check", // check -> waiting -> call -> over
  everConnected: false,
  participantId: null,
  iceServers: [],
  roster: new Map(), // participant_id -> {kind, state}
  waiting: [],
  quality: new Map(), // participant_id -> level
  streams: new Map(), // publisher -> MediaStream
  local: null, // MediaStream or null
  mediaNote: "", // why the page sends less than camera + microphone
  peer: null,
  pcState: "new",
  restartTimer: null,
  restarting: false,
  statsTimer: null,
  stats: {},
  meter: null, // {stop}
  devicesDone: false,
  armed: new Map(), // confirm buttons waiting for their second click: id -> until
  ui: {},
};

const banner = document.getElementById("banner");
const main = document.getElementById("main");
const isClinician = () => S.me && S.me.role === "clinician";

start();

async function start() {
  const session = await signIn("careline.visit", banner);
  if (!session) return; // signIn showed why (expired, wrong link...)
  S.token = session.token;
  S.me = session.me;
  if (S.me.role !== "parent" && S.me.role !== "clinician") {
    showFatal("forbidden");
    return;
  }
  if (!S.visitId) {
    showFatal("not_found");
    return;
  }
  renderCheck();
  openSocket();
  await checkDevices();
}

// -- socket: connection, reconnects, server events ------------------------------------------------

/** A /visit socket to `base` (another node's URL, or "" for this page's server). Events of a
 * socket the page has since replaced are ignored. */
function openSocket(base = "") {
  const socket = connect("/visit", () => S.token, (status) => socket === S.socket && onSocketStatus(status), base);
  S.socket = socket;
  S.nodeUrl = base;
  document.body.dataset.visitNode = base; // which server the page talks to ("" = its own)
  const on = (event, handler) => socket.on(event, (...args) => socket === S.socket && handler(...args));
  on("visit.admitted", () => {
    if (S.phase === "waiting") {
      announce("The clinician let you in. Joining the visit.");
      enterCall();
    }
  });
  on("visit.roster", (data) => {
    updateRoster(data.participants || [], true);
  });
  on("visit.waiting_room", (data) => {
    const before = new Set(S.waiting);
    S.waiting = data.waiting || [];
    const arrived = S.waiting.filter((pid) => !before.has(pid));
    if (arrived.length) announce(`${arrived.map(nameOf).join(", ")} ${arrived.length > 1 ? "are" : "is"} waiting to be let in.`);
    renderClinicianPanel();
  });
  on("visit.quality", (data) => {
    S.quality.set(data.participant_id, data.level);
    renderQuality();
  });
  on("visit.denied", () => finish("denied"));
  on("visit.removed", () => finish("removed"));
  on("visit.ended", () => finish("ended"));
  on("visit.replaced", () => finish("replaced"));
  on("visit.moved", (data) => followMove(data));
  on("session.expired", () => finish("auth.expired"));
  on("session.revoked", () => finish("auth.revoked"));
  on("disconnect", (reason) => {
    // The server cut this socket off on purpose; the event that says why usually came first.
    if (reason === "io server disconnect" && S.phase !== "over") {
      setTimeout(() => S.phase !== "over" && finish("disconnected"), 500);
    }
  });
}

function onSocketStatus(status) {
  if (S.phase === "over") return;
  if (status.state === "refused") {
    stopEverything();
    S.phase = "over";
    showFatal(status.code, status.message);
    return;
  }
  if (S.moving && status.state !== "refused") return; // switchSocket waits for this socket itself
  if (status.state === "connected") {
    const again = S.everConnected;
    S.everConnected = true;
    if (S.phase === "check") {
      setCheck("server", "ok", "Connected to Careline.");
      updateJoinButton();
      hideBanner();
    } else if (again) {
      showBanner("Connection is back. Rejoining the visit…", "rejoining");
      rejoin();
    }
    return;
  }
  // reconnecting or offline: socket.io retries by itself (1 s doubling to 10 s)
  const text =
    status.state === "offline"
      ? "Connection lost. Cannot reach the server, retrying…"
      : `Connection lost. Reconnecting${status.attempt > 0 ? ` (attempt ${status.attempt})` : ""}…`;
  if (banner.hidden) announce("Connection lost. Reconnecting.");
  showBanner(text, "reconnecting");
  if (S.phase === "check") {
    setCheck("server", "pending", "Cannot reach Careline yet. Retrying…");
    updateJoinButton();
  } else if (S.nodeUrl) {
    // The socket to the node holding the visit is lost: that node may be dead. Rejoin through
    // this page's own server at once (it places the visit on a live node) rather than waiting
    // for socket.io to reach the lost node again.
    rejoin();
  }
}

/** Replace the socket by one to `base` ("" = this page's server) and wait until it is connected
 * (at most `withinMs`, and only until its first failed attempt: the caller decides what next).
 * Throws CarelineError "network" when it could not connect. */
async function switchSocket(base, withinMs = MOVE_CONNECT_MS) {
  const old = S.socket;
  S.moving = true;
  try {
    if (old) old.disconnect();
    openSocket(base);
    if (S.peer) S.peer.setSocket(S.socket);
    const socket = S.socket;
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new CarelineError("network", "no connection in time")), withinMs);
      const done = (err) => {
        clearTimeout(timer);
        socket.off("connect", onConnect);
        socket.off("connect_error", onError);
        if (err) reject(err);
        else resolve();
      };
      const onConnect = () => done(null);
      const onError = (err) => done(new CarelineError((err && err.data && err.data.code) || "network", err && err.message));
      if (socket.connected) return done(null);
      socket.on("connect", onConnect);
      socket.on("connect_error", onError);
    });
  } finally {
    S.moving = false;
  }
}

/** `visit.moved`: the node this page talked to was cut off from the others for a while and the
 * visit now lives on another node. Go there (the old socket's events are ignored from now on),
 * join again (no new admit) and start new media, as after a reconnect. */
async function followMove(data) {
  const nodeUrl = data && typeof data.node_url === "string" ? data.node_url : "";
  if (!nodeUrl || S.phase === "over") return;
  try {
    await switchSocket(nodeUrl);
  } catch (err) {
    await switchSocket("").catch(() => {});
  }
  rejoin();
}

/** `visit.join`, following `visit.wrong_node` to the node that holds the visit (at most MAX_MOVES
 * times; docs/protocol.md "Several nodes"). If a node it was sent to cannot be reached, the page
 * goes back to its own server and the error is thrown. */
async function joinVisit() {
  for (let moves = 0; ; moves += 1) {
    try {
      return await call(S.socket, "visit.join", { visit_id: S.visitId });
    } catch (err) {
      const nodeUrl = err && err.code === "visit.wrong_node" && err.details && err.details.node_url;
      if (!nodeUrl || typeof nodeUrl !== "string") throw err;
      if (moves >= MAX_MOVES) throw new CarelineError("visit.too_many_moves", "the visit kept moving between servers");
      try {
        await switchSocket(nodeUrl);
      } catch (moveErr) {
        if (S.phase !== "over") await switchSocket("").catch(() => {});
        throw moveErr;
      }
    }
  }
}

function showBanner(text, state) {
  banner.textContent = text;
  banner.dataset.state = state;
  banner.hidden = false;
}

function hideBanner() {
  banner.hidden = true;
  banner.textContent = "";
  banner.dataset.state = "connected";
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** After the socket came back, or the socket to another node was lost: join again (through this
 * page's own server when the node is lost), then new media (docs/protocol.md "Reconnects",
 * "Several nodes"). Retries every second for REJOIN_FAST_MS (a dead node's visits are re-placed
 * after its lease, 6 s by default), then with backoff up to 10 s, saying so in the banner. */
async function rejoin() {
  if (S.phase === "over" || S.rejoining) return;
  S.rejoining = true;
  const started = Date.now();
  let delay = 1000;
  let joined = null;
  try {
    while (S.phase !== "over") {
      try {
        if (S.nodeUrl && !S.socket.connected) await switchSocket("");
        if (!S.socket.connected) return; // socket.io retries this page's server; "connected" rejoins
        joined = await joinVisit();
        break;
      } catch (err) {
        if (handleJoinError(err)) return;
      }
      const slow = Date.now() - started > REJOIN_FAST_MS;
      showBanner(slow ? "Still cannot get back into the visit. Retrying…" : "Could not rejoin the visit yet. Retrying…", "reconnecting");
      await sleep(delay);
      if (slow) delay = Math.min(delay * 2, 10000);
    }
  } finally {
    S.rejoining = false;
  }
  if (!joined || S.phase === "over") return;
  applyJoin(joined);
  if (joined.state === "waiting") {
    const wasInCall = S.phase === "call";
    if (S.peer) {
      S.peer.close();
      S.peer = null;
    }
    renderWaiting(wasInCall ? "You were away too long, so the clinician needs to let you in again." : "");
    hideBanner();
    return;
  }
  if (S.phase === "waiting") {
    enterCall();
    hideBanner();
    return;
  }
  await restartMedia("rejoined");
  hideBanner();
  announce("Reconnected to the visit.");
}

// -- device check -------------------------------------------------------------------------------

function renderCheck() {
  const preview = el("video", {
    id: "preview",
    class: "preview",
    muted: true,
    playsinline: true,
    autoplay: true,
    "aria-label": "Your camera preview",
  });
  preview.muted = true;
  const meter = el("meter", { id: "mic-level", min: "0", max: "1", low: "0.05", optimum: "0.5", value: "0" });
  const checks = el(
    "ul",
    { class: "checks" },
    checkItem("camera", "Camera", "Asking for your camera…"),
    checkItem("microphone", "Microphone", "Asking for your microphone…"),
    checkItem("server", "Connection", "Connecting to Careline…"),
    checkItem("network", "Video path", "Testing…"),
  );
  const join = el("button", { id: "join", class: "primary", type: "button", disabled: true, onclick: join_ }, "Join the visit");
  const note = el("p", { id: "media-note", class: "note", hidden: true });
  main.replaceChildren(
    el(
      "section",
      { class: "check", "aria-labelledby": "check-title" },
      el("h1", { id: "check-title" }, "Before you join"),
      el("p", { class: "muted" }, "Check that others will see and hear you. Nobody sees you until you join."),
      el(
        "div",
        { class: "check-grid" },
        el("div", { class: "check-preview" }, preview, el("p", { id: "preview-off", class: "tile-off", hidden: true }, "No camera")),
        el(
          "div",
          { class: "check-side" },
          checks,
          el("label", { for: "mic-level", class: "meter-label" }, "Microphone level (speak to test)"),
          meter,
          el(
            "div",
            { class: "speaker" },
            el("button", { id: "speaker-test", type: "button", onclick: playTestTone }, "Play test sound"),
            el("span", { id: "speaker-result", class: "muted", "aria-live": "polite" }),
          ),
          note,
          join,
          el("p", { id: "join-hint", class: "muted" }, "Connecting…"),
        ),
      ),
    ),
  );
  S.ui = { preview, meter, join, note };
  main.querySelector("h1").focus();
}

function checkItem(id, label, text) {
  return el(
    "li",
    { id: `check-${id}`, dataset: { state: "pending" } },
    el("span", { class: "check-icon", "aria-hidden": "true" }),
    el("strong", {}, `${label}: `),
    el("span", { class: "check-text" }, text),
  );
}

function setCheck(id, state, text) {
  const item = document.getElementById(`check-${id}`);
  if (!item) return;
  item.dataset.state = state;
  item.querySelector(".check-text").textContent = text;
}

async function checkDevices() {
  const { stream, error } = await localMedia();
  S.local = stream;
  const hasVideo = !!(stream && stream.getVideoTracks().length);
  const hasAudio = !!(stream && stream.getAudioTracks().length);
  const why = error ? reasonOf(error) : "not found";
  setCheck("camera", hasVideo ? "ok" : "bad", hasVideo ? "Working." : `Not available (${why}).`);
  setCheck("microphone", hasAudio ? "ok" : "bad", hasAudio ? "Working." : `Not available (${why}).`);
  if (hasVideo && hasAudio) S.mediaNote = "";
  else if (hasAudio) S.mediaNote = "Your camera is not available, so you will join with sound only: others will hear you but not see you.";
  else if (hasVideo) S.mediaNote = "Your microphone is not available, so others will see you but not hear you.";
  else S.mediaNote = "Your camera and microphone are not available, so you will join to watch and listen only: others will not see or hear you.";
  if (S.mediaNote && error && error.name === "NotAllowedError") {
    S.mediaNote += " To change this, allow the camera and microphone in your browser's settings for this site, then reload the page.";
  }
  if (S.ui.note) {
    S.ui.note.textContent = S.mediaNote;
    S.ui.note.hidden = !S.mediaNote;
    S.ui.note.setAttribute("role", S.mediaNote ? "alert" : "note");
  }
  if (stream && S.ui.preview) {
    S.ui.preview.srcObject = hasVideo ? stream : null;
    S.ui.preview.play().catch(() => {});
  }
  if (!hasVideo && document.getElementById("preview-off")) document.getElementById("preview-off").hidden = false;
  if (hasAudio) startMeter(stream);
  S.devicesDone = true;
  updateJoinButton();
  const ice = await iceCheck([]);
  setCheck(
    "network",
    ice.candidates > 0 ? "ok" : "bad",
    ice.candidates > 0 ? "Your browser can make video connections." : "Your browser found no network path for video.",
  );
}

/** Camera and microphone, falling back to sound only, then camera only, then nothing. */
async function localMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    return { stream: null, error: { name: "NotSupportedError" } };
  }
  const first = await getLocalMedia();
  if (first.stream) return first;
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: false, video: true });
    return { stream, error: first.error };
  } catch (err) {
    return { stream: null, error: first.error || err };
  }
}

function reasonOf(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "permission was refused";
    case "NotFoundError":
    case "OverconstrainedError":
      return "none found";
    case "NotReadableError":
      return "in use by another program";
    case "NotSupportedError":
      return "this browser cannot use it here";
    default:
      return "not found";
  }
}

function startMeter(stream) {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return;
  const ctx = new Ctx();
  const source = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 512;
  source.connect(analyser);
  const data = new Float32Array(analyser.fftSize);
  let running = true;
  const tick = () => {
    if (!running) return;
    analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const x of data) sum += x * x;
    const level = Math.min(1, Math.sqrt(sum / data.length) * 4);
    if (S.ui.meter) S.ui.meter.value = level;
    requestAnimationFrame(tick);
  };
  // Browsers start audio only after a click: resume on the first one if needed.
  if (ctx.state === "suspended") {
    ctx.resume().catch(() => {});
    document.addEventListener("pointerdown", () => ctx.resume().catch(() => {}), { once: true });
  }
  tick();
  S.meter = {
    stop() {
      running = false;
      ctx.close().catch(() => {});
    },
  };
}

function playTestTone() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  const result = document.getElementById("speaker-result");
  if (!Ctx) return;
  const ctx = new Ctx();
  const osc = ctx.createOscillator();
  const gain = ctx.createGain();
  osc.frequency.value = 440;
  gain.gain.value = 0.15;
  osc.connect(gain).connect(ctx.destination);
  osc.start();
  osc.stop(ctx.currentTime + 1);
  osc.onended = () => ctx.close().catch(() => {});
  if (result) result.textContent = "Playing a tone. If you did not hear it, check your volume or headphones.";
}

/** Gather ICE candidates with these servers: how many and of which types (a short, honest test). */
async function iceCheck(iceServers, timeoutMs = 4000) {
  const found = { candidates: 0, host: 0, srflx: 0, relay: 0 };
  let pc;
  try {
    pc = new RTCPeerConnection({ iceServers });
    pc.createDataChannel("check");
    const done = new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      pc.onicecandidate = (event) => {
        if (!event.candidate) {
          clearTimeout(timer);
          resolve();
          return;
        }
        found.candidates += 1;
        const type = event.candidate.type || (/ typ (\w+)/.exec(event.candidate.candidate) || [])[1];
        if (type in found) found[type] += 1;
      };
    });
    await pc.setLocalDescription(await pc.createOffer());
    await done;
  } catch (err) {
    // no WebRTC: zero candidates says it
  } finally {
    if (pc) pc.close();
  }
  return found;
}

function updateJoinButton() {
  const join = S.ui.join;
  const hint = document.getElementById("join-hint");
  if (!join || S.phase !== "check") return;
  const ready = S.socket && S.socket.connected && S.devicesDone;
  join.disabled = !ready;
  if (hint) {
    hint.textContent = !S.devicesDone
      ? "Checking your camera and microphone…"
      : !(S.socket && S.socket.connected)
        ? "Waiting for the connection to Careline…"
        : isClinician()
          ? "You will enter the visit at once."
          : "After you join, you wait until the clinician lets you in.";
  }
}

// -- join, waiting room --------------------------------------------------------------------------

async function join_() {
  S.ui.join.disabled = true;
  let joined;
  try {
    joined = await joinVisit();
  } catch (err) {
    if (!handleJoinError(err)) {
      S.ui.join.disabled = false;
      document.getElementById("join-hint").textContent = "Could not join yet. Try again in a moment.";
    }
    return;
  }
  if (S.meter) {
    S.meter.stop();
    S.meter = null;
  }
  applyJoin(joined);
  if (joined.state === "waiting") renderWaiting("");
  else enterCall();
  if (S.iceServers.length) networkCheckWithServers();
}

function applyJoin(joined) {
  S.participantId = joined.participant_id;
  S.iceServers = joined.ice_servers || [];
  if (S.peer) S.peer.iceServers = S.iceServers;
  updateRoster((joined.visit && joined.visit.participants) || [], false);
}

/** Errors of visit.join that end the page; false for the ones worth retrying. */
function handleJoinError(err) {
  const code = err && err.code;
  const ending = { "visit.denied": "denied", "visit.removed": "removed", "visit.ended": "ended", "visit.too_many_moves": "moves" }[code];
  if (ending) {
    finish(ending);
    return true;
  }
  if (code === "forbidden" || code === "not_found" || (code && code.startsWith("auth."))) {
    stopEverything();
    S.phase = "over";
    showFatal(code, err.message);
    return true;
  }
  return false;
}

/** With the server's STUN/TURN servers (known after joining): is a relay reachable? */
async function networkCheckWithServers() {
  const wantsRelay = S.iceServers.some((s) => [].concat(s.urls || []).some((u) => /^turns?:/.test(u)));
  const result = await iceCheck(S.iceServers);
  const line = document.getElementById("net-check");
  if (!line) return;
  if (wantsRelay && result.relay === 0) {
    line.textContent = "The relay server could not be reached: video may not get through strict networks.";
    line.hidden = false;
  }
}

function renderWaiting(extra) {
  S.phase = "waiting";
  const self = el("video", { id: "waiting-self", class: "preview", muted: true, playsinline: true, autoplay: true, "aria-label": "Your camera" });
  self.muted = true;
  const heading = el("h1", { id: "waiting-title", tabindex: "-1" }, "You are in the waiting room");
  main.replaceChildren(
    el(
      "section",
      { class: "waiting", "aria-labelledby": "waiting-title", dataset: { phase: "waiting" } },
      heading,
      el("p", { class: "lead" }, "The clinician will let you in shortly. Please keep this page open."),
      extra ? el("p", { class: "note" }, extra) : null,
      S.mediaNote ? el("p", { class: "note" }, S.mediaNote) : null,
      el("div", { class: "waiting-preview" }, self),
      el("p", { id: "net-check", class: "note", hidden: true }),
      el("button", { type: "button", class: "danger", onclick: leave }, "Leave"),
    ),
  );
  if (S.local && S.local.getVideoTracks().length) {
    self.srcObject = S.local;
    self.play().catch(() => {});
  } else {
    self.hidden = true;
  }
  heading.focus();
  announce("You are in the waiting room. The clinician will let you in shortly.");
}

// -- the call ------------------------------------------------------------------------------------

function enterCall() {
  S.phase = "call";
  renderCall();
  S.peer = new SfuPeer(S.socket, {
    iceServers: S.iceServers,
    localStream: S.local,
    onStreams: (streams) => {
      S.streams = streams;
      renderTiles();
    },
    onState: onPcState,
  });
  restartMedia("start");
  if (isClinician()) startStats();
  announce(isClinician() ? "You are in the visit." : "You are in the visit with the clinician.");
}

/** media.start (first time) or media.restart (after a reconnect or a failed connection). */
async function restartMedia(why) {
  if (!S.peer || S.restarting) return;
  S.restarting = true;
  clearTimeout(S.restartTimer);
  S.restartTimer = null;
  try {
    await S.peer.start(why !== "start");
  } catch (err) {
    if (err && err.code === "visit.not_admitted") {
      // we lost our place (e.g. the grace window ran out): join again decides where we are
      S.restarting = false;
      return rejoin();
    }
    if (S.socket.connected && S.phase === "call") {
      S.restartTimer = setTimeout(() => restartMedia("retry"), 2000);
    }
  } finally {
    S.restarting = false;
  }
}

function onPcState(state) {
  S.pcState = state;
  const self = document.getElementById("self-tile");
  if (self) self.dataset.pc = state;
  clearTimeout(S.restartTimer);
  S.restartTimer = null;
  if (state === "connected") {
    if (banner.dataset.state === "media") hideBanner();
    return;
  }
  if ((state === "failed" || state === "disconnected") && S.phase === "call") {
    // Recover by ourselves: a new peer connection if this one does not come back soon. While the
    // socket is down, the rejoin after the reconnect restarts media anyway.
    const wait = state === "failed" ? 0 : RESTART_AFTER_MS;
    S.restartTimer = setTimeout(() => {
      if (S.socket.connected && S.peer && S.peer.pc && ["failed", "disconnected"].includes(S.peer.pc.connectionState)) {
        showBanner("Video connection lost. Reconnecting the video…", "media");
        announce("Video connection lost. Reconnecting.");
        restartMedia("failed");
      }
    }, wait);
  }
}

function renderCall() {
  const grid = el("div", { id: "grid", class: "grid", role: "list", "aria-label": "Participants' video" });
  const mute = el("button", { id: "mute", type: "button", "aria-pressed": "false", onclick: toggleMute }, "Mute");
  const camera = el("button", { id: "camera", type: "button", "aria-pressed": "false", onclick: toggleCamera }, "Stop camera");
  const hasAudio = !!(S.local && S.local.getAudioTracks().length);
  const hasVideo = !!(S.local && S.local.getVideoTracks().length);
  if (!hasAudio) {
    mute.disabled = true;
    mute.textContent = "No microphone";
  }
  if (!hasVideo) {
    camera.disabled = true;
    camera.textContent = "No camera";
  }
  const controls = el(
    "div",
    { class: "controls", role: "group", "aria-label": "Call controls" },
    mute,
    camera,
    el("button", { id: "leave", type: "button", class: "danger", onclick: leave }, "Leave"),
    isClinician() ? confirmButton("end", "End visit", "Confirm: end for everyone", endVisit) : null,
  );
  const heading = el("h1", { id: "call-title", tabindex: "-1" }, "Video visit");
  const stage = el(
    "section",
    { class: "stage", "aria-labelledby": "call-title" },
    el("div", { class: "call-head" }, heading, el("p", { id: "visit-state", class: "muted" })),
    S.mediaNote ? el("p", { id: "media-note", class: "note" }, S.mediaNote) : null,
    el("p", { id: "net-check", class: "note", hidden: true }),
    grid,
    controls,
  );
  const layout = el("div", { class: "call", dataset: { phase: "call" } }, stage);
  if (isClinician()) layout.append(el("aside", { id: "panel", class: "panel", "aria-label": "Visit management" }));
  main.replaceChildren(layout);
  S.ui = { grid, mute, camera };
  renderTiles();
  renderClinicianPanel();
  renderVisitState();
  heading.focus();
}

/** A button that asks for a second click before doing something that cannot be undone. */
function confirmButton(id, label, confirmLabel, action) {
  // The armed state lives in S.armed (id -> until), so a re-rendered panel keeps it.
  const button = el("button", { id, type: "button", class: "danger" }, label);
  const show = () => {
    const armed = (S.armed.get(id) || 0) > Date.now();
    button.dataset.armed = armed ? "1" : "";
    button.textContent = armed ? confirmLabel : label;
  };
  button.addEventListener("click", () => {
    if ((S.armed.get(id) || 0) > Date.now()) {
      S.armed.delete(id);
      show();
      action();
      return;
    }
    S.armed.set(id, Date.now() + 5000);
    show();
    announce(`Press again to confirm: ${confirmLabel}.`);
    setTimeout(() => button.isConnected && show(), 5100);
  });
  show();
  return button;
}

function toggleMute() {
  const tracks = S.local ? S.local.getAudioTracks() : [];
  if (!tracks.length) return;
  const muted = tracks[0].enabled; // enabled now -> mute
  for (const t of tracks) t.enabled = !muted;
  S.ui.mute.setAttribute("aria-pressed", String(muted));
  S.ui.mute.textContent = muted ? "Unmute" : "Mute";
  announce(muted ? "Microphone muted." : "Microphone on.");
}

function toggleCamera() {
  const tracks = S.local ? S.local.getVideoTracks() : [];
  if (!tracks.length) return;
  const off = tracks[0].enabled;
  for (const t of tracks) t.enabled = !off;
  S.ui.camera.setAttribute("aria-pressed", String(off));
  S.ui.camera.textContent = off ? "Start camera" : "Stop camera";
  renderTiles();
  announce(off ? "Camera off." : "Camera on.");
}

function nameOf(pid) {
  if (pid === S.participantId) return "You";
  const p = S.roster.get(pid);
  return p ? KIND[p.kind] || p.kind : "Participant";
}

function updateRoster(participants, announceChanges) {
  const before = S.roster;
  S.roster = new Map(participants.map((p) => [p.participant_id, { kind: p.kind, state: p.state }]));
  if (announceChanges) {
    for (const [pid, p] of S.roster) {
      const old = before.get(pid);
      if (pid === S.participantId || !old || old.state === p.state) continue;
      const who = KIND[p.kind] || "A participant";
      if (p.state === "connected" && old.state !== "connected") announce(`${who} joined the call.`);
      else if (p.state === "reconnecting") announce(`${who} lost the connection and is reconnecting.`);
      else if (p.state === "left") announce(`${who} left.`);
      else if (p.state === "removed") announce(`${who} was removed.`);
    }
  }
  renderTiles();
  renderClinicianPanel();
  renderVisitState();
}

function renderVisitState() {
  const line = document.getElementById("visit-state");
  if (!line) return;
  const others = [...S.roster.entries()].filter(([pid, p]) => pid !== S.participantId && ["admitted", "connected", "reconnecting"].includes(p.state));
  if (!others.length) {
    line.textContent = isClinician() ? "Nobody else is in the visit yet." : "Waiting for the others to connect…";
  } else {
    line.textContent = `With ${others.map(([pid]) => nameOf(pid)).join(", ")}.`;
  }
}

function renderTiles() {
  const grid = S.ui.grid;
  if (!grid || S.phase !== "call") return;
  const wanted = [["self", S.local]].concat([...S.streams.entries()].filter(([pid]) => pid !== S.participantId));
  const keep = new Set(wanted.map(([pid]) => pid));
  for (const tile of [...grid.children]) {
    if (!keep.has(tile.dataset.participant)) tile.remove();
  }
  for (const [pid, stream] of wanted) {
    let tile = grid.querySelector(`[data-participant="${CSS.escape(pid)}"]`);
    if (!tile) {
      tile = makeTile(pid);
      grid.append(tile);
    }
    const video = tile.querySelector("video");
    const hasVideo = !!(stream && stream.getVideoTracks().length);
    // A publisher keeps its MediaStream when its tracks are swapped (a restart), and the element
    // follows the stream's tracks by itself; reassigning it would restart playback.
    const source = stream && (pid !== "self" || hasVideo) ? stream : null;
    if (video.srcObject !== source) video.srcObject = source;
    if (source && video.paused) video.play().catch(() => {});
    video.dataset.tracks = stream ? stream.getTracks().map((t) => t.id).join(",") : "";
    tile.dataset.video = hasVideo ? "on" : "off";
    const p = S.roster.get(pid);
    tile.dataset.state = pid === "self" ? "self" : (p && p.state) || "";
    const status = tile.querySelector(".tile-status");
    const cameraOff = pid === "self" && (!hasVideo || !stream.getVideoTracks()[0].enabled);
    status.textContent = cameraOff
      ? "Your camera is off"
      : !hasVideo
        ? "No video"
        : tile.dataset.state === "reconnecting"
          ? "Reconnecting…"
          : "";
    status.hidden = status.textContent === "";
    tile.querySelector(".tile-name").textContent = pid === "self" ? "You" : nameOf(pid);
    video.setAttribute("aria-label", pid === "self" ? "Your camera" : `Video of ${nameOf(pid)}`);
  }
  grid.dataset.count = String(Math.min(grid.children.length, 9));
  renderQuality();
}

function makeTile(pid) {
  const video = el("video", { playsinline: true, autoplay: true });
  if (pid === "self") video.muted = true;
  return el(
    "div",
    { class: "tile", id: pid === "self" ? "self-tile" : undefined, role: "listitem", dataset: { participant: pid } },
    video,
    el("p", { class: "tile-status", hidden: true }),
    el("div", { class: "tile-bar" }, el("span", { class: "tile-name" }), qualityBadge()),
  );
}

function qualityBadge() {
  const badge = el("span", { class: "quality", role: "img", dataset: { level: "" } });
  for (let i = 1; i <= 5; i += 1) badge.append(el("i", { dataset: { bar: String(i) } }));
  return badge;
}

function renderQuality() {
  if (!S.ui.grid) return;
  for (const tile of S.ui.grid.children) {
    const pid = tile.dataset.participant === "self" ? S.participantId : tile.dataset.participant;
    const badge = tile.querySelector(".quality");
    const level = S.quality.get(pid);
    badge.dataset.level = level === undefined ? "" : String(level);
    const label = level === undefined ? "Network quality: measuring" : `Network quality: ${QUALITY_WORD[level]} (${level} of 5)`;
    badge.setAttribute("aria-label", label);
    badge.title = label;
  }
}

// -- clinician: waiting room, participants, stats ------------------------------------------------

function renderClinicianPanel() {
  const panel = document.getElementById("panel");
  if (!panel || !isClinician()) return;
  const focused = document.activeElement && panel.contains(document.activeElement) ? document.activeElement.id : null;
  const waitingList = el("ul", { class: "people", id: "waiting-list" });
  for (const pid of S.waiting) {
    waitingList.append(
      el(
        "li",
        { dataset: { participant: pid } },
        el("span", { class: "who" }, nameOf(pid)),
        el("span", { class: "actions" },
          el("button", { id: `admit-${pid}`, type: "button", class: "primary", onclick: () => decide("visit.admit", pid), "aria-label": `Let in ${nameOf(pid)}` }, "Admit"),
          el("button", { id: `deny-${pid}`, type: "button", onclick: () => decide("visit.deny", pid), "aria-label": `Turn away ${nameOf(pid)}` }, "Deny"),
        ),
      ),
    );
  }
  const people = el("ul", { class: "people", id: "participant-list" });
  for (const [pid, p] of S.roster) {
    if (["waiting", "denied", "removed"].includes(p.state)) continue;
    const stats = S.stats[pid];
    const item = el(
      "li",
      { dataset: { participant: pid, state: p.state } },
      el("span", { class: "who" }, pid === S.participantId ? `${KIND[p.kind]} (you)` : KIND[p.kind] || p.kind),
      el("span", { class: "muted state" }, STATE_WORD[p.state] || p.state),
      pid !== S.participantId && ["admitted", "connected", "reconnecting", "invited", "left"].includes(p.state)
        ? confirmButton(`remove-${pid}`, "Remove", "Confirm remove", () => decide("visit.remove", pid))
        : null,
      stats ? el("p", { class: "stats" }, statsText(stats)) : null,
    );
    people.append(item);
  }
  panel.replaceChildren(
    el("h2", { id: "waiting-title" }, `Waiting room (${S.waiting.length})`),
    S.waiting.length ? waitingList : el("p", { class: "muted" }, "Nobody is waiting."),
    el("h2", {}, "Participants"),
    people,
    el("p", { class: "muted small" }, `Connection figures refresh every ${STATS_EVERY_MS / 1000} s.`),
  );
  if (focused) {
    const again = document.getElementById(focused);
    if (again) again.focus();
  }
}

function statsText(s) {
  const parts = [
    `quality ${s.quality}/5`,
    `${Math.round(s.bitrate_in_kbps)} kbps`,
    `loss ${(s.packet_loss * 100).toFixed(1)} %`,
    s.rtt_ms == null ? "RTT –" : `RTT ${Math.round(s.rtt_ms)} ms`,
    `frames in ${s.frames_in}, sent to them ${s.frames_forwarded}, dropped ${s.frames_dropped}`,
    `link ${s.state}`,
  ];
  return parts.join(" · ");
}

async function decide(event, pid) {
  const who = nameOf(pid);
  try {
    await call(S.socket, event, { participant_id: pid });
    const done = { "visit.admit": "let in", "visit.deny": "turned away", "visit.remove": "removed" }[event];
    announce(`${who} ${done}.`);
  } catch (err) {
    announce(`Could not do that: ${err.message}`);
  }
}

function startStats() {
  const poll = async () => {
    if (S.phase !== "call") return;
    if (S.socket.connected) {
      try {
        S.stats = await call(S.socket, "visit.stats", undefined, 5000);
        renderClinicianPanel();
      } catch (err) {
        // the next round will tell
      }
    }
    S.statsTimer = setTimeout(poll, STATS_EVERY_MS);
  };
  clearTimeout(S.statsTimer);
  S.statsTimer = setTimeout(poll, 1000);
}

async function endVisit() {
  try {
    await call(S.socket, "visit.end");
  } catch (err) {
    announce(`Could not end the visit: ${err.message}`);
    return;
  }
  finish("ended");
}

// -- leaving, and the pages that end a visit -----------------------------------------------------

function leave() {
  finish("left");
}

function stopEverything() {
  clearTimeout(S.statsTimer);
  clearTimeout(S.restartTimer);
  if (S.meter) S.meter.stop();
  S.meter = null;
  if (S.peer) S.peer.close();
  S.peer = null;
  if (S.socket) S.socket.disconnect();
  if (S.local) for (const t of S.local.getTracks()) t.stop();
  S.local = null;
}

const ENDINGS = {
  left: ["You left the visit.", "You can rejoin while the visit is open.", "Rejoin"],
  ended: ["The visit has ended.", "Thank you. You can close this page.", null],
  denied: ["The clinician could not let you in.", "If you think this is a mistake, contact your clinic.", null],
  removed: ["You were removed from the visit.", "If you think this is a mistake, contact your clinic.", null],
  replaced: ["This visit is open on another device or tab.", "You joined from somewhere else, so this page stopped.", "Use this device instead"],
  disconnected: ["The server ended your connection.", "You can try to join again.", "Rejoin"],
  moves: ["Could not reach the server that holds this visit.", "The visit kept moving between servers. Try again in a moment.", "Try again"],
};

function finish(why) {
  if (S.phase === "over") return;
  S.phase = "over";
  stopEverything();
  hideBanner();
  if (!ENDINGS[why]) {
    showFatal(why);
    return;
  }
  const [headline, advice, again] = ENDINGS[why];
  const heading = el("h1", { tabindex: "-1" }, headline);
  main.replaceChildren(
    el(
      "section",
      { class: "fatal", role: "alert", dataset: { code: why } },
      heading,
      el("p", {}, advice),
      again ? el("button", { type: "button", class: "primary", onclick: () => window.location.reload() }, again) : null,
    ),
  );
  heading.focus();
}
