// Pharmacist console (docs/web.md "Pharmacist console"): presence, incoming call ring with
// accept/decline and the ring deadline, the video call with the order id, end call, wrap-up timer,
// the queue and figures. Speaks /hotline (docs/protocol.md "Pharmacist hotline").
import { api } from "../common/api.js";
import { connect, call } from "../common/socket.js";
import { announce, connectionBanner, el, showFatal } from "../common/status.js";
import { signIn } from "../common/session.js";
import { SfuPeer, getLocalMedia, attach } from "../common/media.js";

const TOKEN_KEY = "careline.pharmacist";
const STATS_EVERY_MS = 15000;

const main = document.getElementById("main");
const banner = document.getElementById("banner");

const PRESENCE_LABEL = {
  offline: "Offline",
  away: "Away",
  available: "Available",
  ringing: "Ringing",
  busy: "On a call",
  wrap_up: "Wrap-up",
};

const WITHDRAWN = {
  ring_timeout: "The call was not answered in time and went back to the queue. You are now away.",
  declined: "You declined the call. It went back to the queue.",
  pharmacist_disconnected: "The call went back to the queue (your connection dropped).",
  abandoned: "The caller hung up before you answered.",
  callback: "The caller asked for a callback instead.",
  requeued: "The call went back to the queue.",
};

const END_REASON = {
  kiosk_hangup: "the caller hung up",
  pharmacist_hangup: "you ended the call",
  kiosk_disconnected: "the kiosk lost its connection",
  pharmacist_disconnected: "your connection dropped",
  kiosk_disabled: "the kiosk was taken out of service",
  caller_cancelled: "the caller cancelled",
  callback: "the caller asked for a callback",
};

const state = {
  token: null,
  me: null,
  socket: null,
  presence: null,
  offer: null, // the call ringing for us
  accepting: null, // call id of an accept waiting for its ack
  call: null, // the connected call
  lastCall: null, // the call that just ended
  endNote: "",
  iceServers: [],
  peer: null,
  mediaSocketId: null,
  mediaLink: null, // media-only socket on the node holding the call's media (hotline.wrong_node)
  localStream: null,
  queue: { queue_length: 0, longest_wait_seconds: null, at: 0 },
  stats: null,
  clockOffset: null, // server time - local time, estimated from server timestamps (see serverNow)
  view: {},
  audio: null,
};

// -- helpers -----------------------------------------------------------------------------------

function localNow() {
  return Date.now() / 1000;
}

/** Note a server timestamp that is at most "now" on the server (since, offered_at): server time is
 * at least that far from ours. The largest such gap is the best estimate of the clock offset. */
function observeServerTime(at) {
  if (typeof at !== "number") return;
  const gap = at - localNow();
  if (state.clockOffset === null || gap > state.clockOffset) state.clockOffset = gap;
}

function serverNow() {
  return localNow() + (state.clockOffset || 0);
}

function clock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 100)}%`;
}

function seconds(value) {
  return value === null || value === undefined ? "–" : clock(value);
}

// -- layout ------------------------------------------------------------------------------------

function build() {
  const page = el(
    "div",
    { class: "console" },
    el(
      "header",
      { class: "console-head" },
      el("div", {}, el("h1", {}, "Pharmacist console"), el("p", { class: "muted" }, "Signed in as ", el("strong", {}, state.me.sub))),
      el(
        "div",
        { class: "presence", role: "group", "aria-labelledby": "presence-heading" },
        el("h2", { id: "presence-heading", class: "visually-hidden" }, "Your status"),
        el("p", { class: "presence-now" }, "Status: ", el("span", { id: "presence-state", class: "chip", dataset: { state: "offline" } }, "Connecting…")),
        el(
          "div",
          { class: "presence-buttons" },
          el("button", { type: "button", id: "go-available", class: "presence-button", "aria-pressed": "false", onclick: () => choose("available") }, "Available"),
          el("button", { type: "button", id: "go-away", class: "presence-button", "aria-pressed": "false", onclick: () => choose("away") }, "Away"),
        ),
        el("p", { id: "presence-detail", class: "presence-detail", "aria-live": "polite" }),
      ),
    ),
    el(
      "div",
      { class: "console-grid" },
      el("section", { id: "stage", class: "stage", "aria-labelledby": "stage-heading" }),
      el(
        "aside",
        { class: "side" },
        el(
          "section",
          { class: "card queue", "aria-labelledby": "queue-heading" },
          el("h2", { id: "queue-heading" }, "Queue"),
          el("p", { class: "big-number" }, el("span", { id: "queue-length" }, "0"), " waiting"),
          el("p", {}, "Longest wait: ", el("span", { id: "queue-longest" }, "–")),
        ),
        el(
          "section",
          { class: "card stats", "aria-labelledby": "stats-heading" },
          el("h2", { id: "stats-heading" }, "Figures"),
          el("h3", {}, "You, last hour"),
          el(
            "dl",
            { id: "own-stats" },
            el("dt", {}, "Calls rung to you"),
            el("dd", { id: "own-offered" }, "–"),
            el("dt", {}, "Answered"),
            el("dd", { id: "own-answered" }, "–"),
            el("dt", {}, "Missed"),
            el("dd", { id: "own-missed" }, "–"),
            el("dt", {}, "Average handle time"),
            el("dd", { id: "own-handle" }, "–"),
            el("dt", {}, "Talk time"),
            el("dd", { id: "own-talk" }, "–"),
          ),
          el("h3", {}, "Service, last hour"),
          el(
            "dl",
            { id: "service-stats" },
            el("dt", {}, "Calls"),
            el("dd", { id: "stat-calls" }, "–"),
            el("dt", {}, "Answered"),
            el("dd", { id: "stat-answered" }, "–"),
            el("dt", {}, "Average answer time"),
            el("dd", { id: "stat-asa" }, "–"),
            el("dt", {}, "Abandoned"),
            el("dd", { id: "stat-abandonment" }, "–"),
            el("dt", {}, "Service level"),
            el("dd", { id: "stat-service" }, "–"),
            el("dt", {}, "Pharmacists available"),
            el("dd", { id: "stat-available" }, "–"),
          ),
        ),
      ),
    ),
  );
  main.replaceChildren(page);
  state.view = {};
  for (const node of page.querySelectorAll("[id]")) state.view[node.id] = node;
  renderOwn();
  renderStage();
}

// -- presence ----------------------------------------------------------------------------------

async function choose(wanted) {
  ensureAudio();
  try {
    setPresence(await call(state.socket, "hotline.presence", { state: wanted }));
  } catch (err) {
    if (err.code === "hotline.bad_transition") announce("Answer or end the call first.");
    else announce(`Could not change your status: ${err.message}`);
  }
}

function setPresence(presence) {
  if (!presence) return;
  observeServerTime(presence.since);
  state.presence = presence;
  renderPresence();
}

function renderPresence() {
  const presence = state.presence;
  const { view } = state;
  if (!presence || !view["presence-state"]) return;
  const chip = view["presence-state"];
  const label = PRESENCE_LABEL[presence.state] || presence.state;
  if (chip.dataset.state !== presence.state) announce(`Your status: ${label}.`);
  chip.textContent = label;
  chip.dataset.state = presence.state;
  const locked = presence.state === "ringing" || presence.state === "busy";
  view["go-available"].setAttribute("aria-pressed", String(presence.state === "available"));
  view["go-away"].setAttribute("aria-pressed", String(presence.state === "away"));
  view["go-available"].disabled = locked || presence.state === "available";
  view["go-away"].disabled = locked || presence.state === "away";
  view["go-available"].textContent = presence.state === "wrap_up" ? "Ready for the next call" : "Available";
  let detail = "";
  if (presence.state === "away" && presence.reason === "ring_timeout") {
    detail = "Paused automatically: a call rang out without an answer. Choose Available when you are ready.";
  } else if (presence.state === "away") {
    detail = "You are not taking calls.";
  } else if (presence.state === "available") {
    detail = "Waiting for the next call.";
  } else if (presence.state === "wrap_up") {
    detail = wrapUpText();
  } else if (presence.state === "ringing") {
    detail = "A call is ringing: accept or decline it.";
  } else if (presence.state === "busy") {
    detail = "On a call.";
  }
  view["presence-detail"].textContent = detail;
  view["presence-detail"].dataset.reason = presence.reason || "";
}

function wrapUpText() {
  const until = state.presence && state.presence.wrap_until;
  if (!until) return "Wrap-up.";
  return `Wrap-up: ${clock(until - serverNow())} left before the next call.`;
}

// -- ringing -----------------------------------------------------------------------------------

function onOffer(view) {
  observeServerTime(view.offered_at);
  state.offer = view;
  state.lastCall = null;
  state.endNote = "";
  renderStage();
  announce(`Incoming call for order ${view.order_id}.`);
  startRing();
  document.title = "Incoming call · Pharmacist console";
}

function clearOffer(note) {
  state.offer = null;
  stopRing();
  document.title = "Pharmacist console · Careline";
  if (note) state.endNote = note;
  renderStage();
  if (note) announce(note);
}

async function accept() {
  const offer = state.offer;
  if (!offer) return;
  setRingButtons(true);
  state.accepting = offer.call_id;
  try {
    const reply = await call(state.socket, "hotline.accept", { call_id: offer.call_id });
    state.accepting = null;
    state.iceServers = reply.ice_servers || [];
    state.offer = null;
    stopRing();
    document.title = "On a call · Pharmacist console";
    onConnected(reply.call);
  } catch (err) {
    state.accepting = null;
    const gone = {
      "hotline.not_offered": "The call is no longer ringing for you.",
      "hotline.call_taken": "Another pharmacist answered the call.",
      "hotline.call_ended": "The caller hung up.",
    };
    if (state.offer === offer) clearOffer(gone[err.code] || `The call could not be accepted: ${err.message}`);
  }
}

async function decline() {
  const offer = state.offer;
  if (!offer) return;
  setRingButtons(true);
  // The call may ring again (for us) before this ack arrives: only clear the ring we declined.
  let note = WITHDRAWN.declined;
  try {
    await call(state.socket, "hotline.decline", { call_id: offer.call_id });
  } catch (err) {
    note = "The call is no longer ringing for you.";
  }
  if (state.offer === offer) clearOffer(note);
  else {
    state.endNote = note;
    announce(note);
  }
}

function setRingButtons(disabled) {
  for (const id of ["accept-button", "decline-button"]) if (state.view[id]) state.view[id].disabled = disabled;
}

/** A short two-tone ring every 2 s while ringing (only where the browser lets the page play sound:
 * the audio context is made on a click, e.g. the Available button). */
function ensureAudio() {
  if (state.audio || !window.AudioContext) return;
  try {
    state.audio = { context: new AudioContext(), timer: null };
  } catch (err) {
    state.audio = null;
  }
}

function startRing() {
  const audio = state.audio;
  if (!audio || audio.timer) return;
  const beep = () => {
    const { context } = audio;
    if (context.state !== "running") return;
    for (const [offset, freq] of [[0, 880], [0.25, 660]]) {
      const osc = context.createOscillator();
      const gain = context.createGain();
      osc.frequency.value = freq;
      gain.gain.value = 0.08;
      osc.connect(gain).connect(context.destination);
      osc.start(context.currentTime + offset);
      osc.stop(context.currentTime + offset + 0.2);
    }
  };
  beep();
  audio.timer = setInterval(beep, 2000);
}

function stopRing() {
  if (state.audio && state.audio.timer) {
    clearInterval(state.audio.timer);
    state.audio.timer = null;
  }
}

// -- the call ----------------------------------------------------------------------------------

function onConnected(view) {
  const fresh = !state.call || state.call.call_id !== view.call_id;
  state.call = view;
  if (fresh) {
    renderStage();
    announce(`Connected to order ${view.order_id}.`);
  }
  if (state.mediaSocketId !== state.socket.id) startMedia();
}

function onCallPush(view) {
  if (view.state === "connected") {
    if (state.accepting === view.call_id) return; // the accept's ack (with ice_servers) follows
    if (state.offer && state.offer.call_id === view.call_id) {
      state.offer = null;
      stopRing();
    }
    onConnected(view);
    return;
  }
  if (["completed", "abandoned", "callback"].includes(view.state)) {
    if (state.call && state.call.call_id === view.call_id) callEnded(view);
    else if (state.offer && state.offer.call_id === view.call_id) clearOffer(WITHDRAWN[view.state] || "The call ended.");
  }
}

function callEnded(view) {
  // Both the hang-up's ack and the hotline.call push report the end: count it once.
  if (!state.call || state.call.call_id !== view.call_id) return;
  stopMedia();
  state.call = null;
  state.lastCall = view;
  state.endNote = `The call with order ${view.order_id} ended: ${END_REASON[view.end_reason] || "it ended"}.`;
  document.title = "Pharmacist console · Careline";
  renderStage();
  announce(state.endNote);
  loadStats();
}

async function endCall() {
  if (!state.call) return;
  if (state.view["end-button"]) state.view["end-button"].disabled = true;
  try {
    callEnded(await call(state.socket, "hotline.end"));
  } catch (err) {
    if (err.code === "hotline.no_call" || err.code === "hotline.call_ended") {
      callEnded({ ...state.call, state: "completed", end_reason: "pharmacist_hangup", ended_at: serverNow() });
    } else {
      if (state.view["end-button"]) state.view["end-button"].disabled = false;
      announce(`Could not end the call: ${err.message}`);
    }
  }
}

async function startMedia() {
  const socket = state.socket;
  state.mediaSocketId = socket.id;
  if (!state.localStream) {
    const { stream } = await getLocalMedia();
    state.localStream = stream;
    if (!stream) setVideoNote("Your camera and microphone are not available: the caller cannot see or hear you.");
    else if (!stream.getVideoTracks().length) setVideoNote("Your camera is not available: audio only.");
  }
  if (!state.call || socket !== state.socket) return;
  if (state.view.self && state.localStream) attach(state.view.self, state.localStream);
  if (!state.peer) {
    state.peer = new SfuPeer(socket, {
      iceServers: state.iceServers,
      localStream: state.localStream,
      onStreams: showRemote,
      onState: (s) => {
        if (s === "failed" && state.call && socket.connected) setTimeout(() => state.peer && state.peer.pc && state.peer.pc.connectionState === "failed" && startMedia(), 500);
      },
    });
  }
  try {
    await state.peer.start(Boolean(state.peer.pc));
  } catch (err) {
    // The call's media lives on the caller's node: do it over a media-only socket there.
    const nodeUrl = err && err.code === "hotline.wrong_node" && err.details && err.details.node_url;
    if (nodeUrl && !state.mediaLink && state.peer) {
      try {
        const link = await openMediaLink(nodeUrl);
        if (state.peer && state.mediaLink === link) {
          document.body.dataset.mediaNode = nodeUrl; // where the call's media is ("" = here)
          state.peer.setSocket(link);
          await state.peer.start(false);
          return;
        }
      } catch (moved) {
        // not reachable now: drop the link, try again shortly
        dropPeer();
      }
    } else if (state.mediaLink) {
      // the media node went away (or the call moved): ask the console's node again next time
      dropPeer();
    }
    state.mediaSocketId = null;
    if (state.call) setTimeout(() => state.call && socket.connected && !state.mediaSocketId && startMedia(), 2000);
  }
}

/** A media-only /hotline socket to `url` (`media.*` events only; it replaces no console). */
function openMediaLink(url) {
  const link = connect("/hotline", () => state.token, () => {}, url, { media_only: true });
  state.mediaLink = link;
  return new Promise((resolve, reject) => {
    link.once("connect", () => resolve(link));
    link.once("connect_error", (err) => reject(err));
  });
}

function showRemote(streams) {
  const video = state.view.remote;
  if (!video || !state.call) return;
  const stream = streams.get(state.call.peer_session_id) || streams.values().next().value;
  if (stream) attach(video, stream);
}

function setVideoNote(text) {
  const note = state.view["video-note"];
  if (!note) return;
  note.textContent = text;
  note.hidden = !text;
}

/** Close the peer connection and any media-only socket (the camera stays on). */
function dropPeer() {
  if (state.peer) state.peer.close();
  state.peer = null;
  state.mediaSocketId = null;
  if (state.mediaLink) state.mediaLink.disconnect();
  state.mediaLink = null;
  document.body.dataset.mediaNode = "";
}

/** The caller's kiosk reconnected to another node, which now holds the call's media: start again. */
function onMediaMoved(data) {
  if (!state.call || data.call_id !== state.call.call_id) return;
  dropPeer();
  startMedia();
}

function stopMedia() {
  dropPeer();
  if (state.localStream) for (const track of state.localStream.getTracks()) track.stop();
  state.localStream = null;
}

// -- the stage: idle, ringing, call, after a call ------------------------------------------------

function renderStage() {
  const stage = state.view.stage;
  if (!stage) return;
  const hadFocus = stage.contains(document.activeElement) || document.activeElement === document.body;
  let content;
  if (state.call) {
    const view = state.call;
    const remote = el("video", { id: "remote", autoplay: true, playsinline: true, "aria-label": "The caller at the kiosk" });
    const self = el("video", { id: "self", class: "self", autoplay: true, playsinline: true, muted: true, "aria-label": "You" });
    self.muted = true;
    remote.addEventListener("playing", () => setVideoNote(""));
    content = el(
      "div",
      { class: "on-call", dataset: { callId: view.call_id } },
      el("h2", { id: "stage-heading" }, "On a call"),
      el(
        "dl",
        { class: "call-facts" },
        el("dt", {}, "Order"),
        el("dd", { id: "call-order", class: "order-id" }, view.order_id),
        el("dt", {}, "Kiosk"),
        el("dd", {}, view.kiosk_id),
        el("dt", {}, "Talk time"),
        el("dd", { id: "call-timer" }, "0:00"),
      ),
      el("div", { class: "videos" }, remote, self, el("p", { id: "video-note", class: "video-note", role: "status" }, "Connecting video…")),
      el("div", { class: "actions" }, el("button", { type: "button", id: "end-button", class: "danger", onclick: endCall }, "End call")),
    );
  } else if (state.offer) {
    const view = state.offer;
    content = el(
      "div",
      { class: "ring", role: "alertdialog", "aria-labelledby": "stage-heading", "aria-describedby": "ring-order" },
      el("h2", { id: "stage-heading" }, "Incoming call"),
      el("p", { id: "ring-order", class: "ring-order" }, "Order ", el("strong", { class: "order-id" }, view.order_id), ` · kiosk ${view.kiosk_id}`),
      view.skills && view.skills.length ? el("p", { class: "muted" }, `Needs: ${view.skills.join(", ")}`) : null,
      el("p", { id: "ring-waited", class: "muted" }),
      el("p", { id: "ring-countdown", class: "ring-countdown" }),
      el(
        "div",
        { class: "actions" },
        el("button", { type: "button", id: "accept-button", class: "primary", onclick: accept }, "Accept"),
        el("button", { type: "button", id: "decline-button", onclick: decline }, "Decline"),
      ),
    );
  } else {
    content = el(
      "div",
      { class: "idle" },
      el("h2", { id: "stage-heading" }, "No call"),
      state.endNote ? el("p", { id: "end-note", class: "end-note", role: "status" }, state.endNote) : null,
      el("p", { class: "muted" }, "Calls ring here when you are Available."),
    );
  }
  for (const node of stage.querySelectorAll("[id]")) delete state.view[node.id];
  stage.replaceChildren(content);
  for (const node of content.querySelectorAll("[id]")) state.view[node.id] = node;
  // Move the focus only if it was on the stage (whose content just changed) or nowhere: a ring
  // must not pull the focus from what the pharmacist is doing (it is announced instead).
  if (hadFocus) {
    const target = state.view["accept-button"] || state.view["end-button"] || content.querySelector("h2");
    if (target.tagName === "H2") target.tabIndex = -1;
    target.focus({ preventScroll: true });
  }
  tick();
}

/** Every second: ring countdown, talk time, wrap-up, queue wait. */
function tick() {
  const { view } = state;
  if (state.offer && view["ring-countdown"]) {
    const left = (state.offer.ring_deadline || 0) - serverNow();
    view["ring-countdown"].textContent = left > 0 ? `Rings out in ${Math.ceil(left)} s` : "Ringing out…";
    if (state.offer.enqueued_at) view["ring-waited"].textContent = `Waiting ${clock(serverNow() - state.offer.enqueued_at)}`;
  }
  if (state.call && view["call-timer"] && state.call.accepted_at) {
    view["call-timer"].textContent = clock(serverNow() - state.call.accepted_at);
  }
  if (state.presence && state.presence.state === "wrap_up" && view["presence-detail"]) {
    view["presence-detail"].textContent = wrapUpText();
  }
  if (view["queue-longest"]) {
    const q = state.queue;
    const longest = q.longest_wait_seconds === null || q.longest_wait_seconds === undefined ? null : q.longest_wait_seconds + (localNow() - q.at);
    view["queue-longest"].textContent = q.queue_length > 0 && longest !== null ? clock(longest) : "–";
  }
}

// -- queue and figures ---------------------------------------------------------------------------

function onQueue(data) {
  state.queue = { ...data, at: localNow() };
  if (state.view["queue-length"]) state.view["queue-length"].textContent = String(data.queue_length);
  tick();
}

async function loadStats() {
  try {
    state.stats = await api("/api/hotline/stats", { token: state.token });
  } catch (err) {
    return;
  }
  const s = state.stats;
  const set = (id, text) => {
    if (state.view[id]) state.view[id].textContent = text;
  };
  set("stat-calls", String(s.calls));
  set("stat-answered", String(s.answered));
  set("stat-asa", seconds(s.asa_seconds));
  set("stat-abandonment", percent(s.abandonment_rate));
  set("stat-service", percent(s.service_level));
  set("stat-available", String((s.pharmacists && s.pharmacists.available) || 0));
  renderOwn();
  if (state.queue.at === 0) onQueue({ queue_length: s.queue_length, longest_wait_seconds: s.longest_wait_seconds });
}

/** The pharmacist's own figures, from the server (`mine` of the stats); dashes until loaded. */
function renderOwn() {
  const mine = state.stats && state.stats.mine;
  const set = (id, text) => {
    if (state.view[id]) state.view[id].textContent = text;
  };
  set("own-offered", mine ? String(mine.offered) : "–");
  set("own-answered", mine ? String(mine.answered) : "–");
  set("own-missed", mine ? String(mine.missed) : "–");
  set("own-handle", mine ? seconds(mine.average_handle_seconds) : "–");
  set("own-talk", mine ? clock(mine.talk_seconds) : "–");
}

// -- socket --------------------------------------------------------------------------------------

function openSocket() {
  const showStatus = connectionBanner(banner);
  let cutOff = null;
  const socket = connect("/hotline", () => state.token, (status) => {
    showStatus(status);
    if (status.state === "connected") onSocketConnected();
    if (status.state === "reconnecting" && (state.call || state.offer)) {
      // The server ends our call (or re-queues a ringing one) as soon as our socket is gone.
      if (state.call) callEnded({ ...state.call, state: "completed", end_reason: "pharmacist_disconnected", ended_at: serverNow() });
      if (state.offer) clearOffer(WITHDRAWN.pharmacist_disconnected);
    }
    if (status.state === "refused") {
      const code = status.code || "network";
      if (code.startsWith("auth.") || code === "forbidden" || code === "hotline.forbidden") {
        socket.disconnect();
        stopMedia();
        showFatal(code === "hotline.forbidden" ? "forbidden" : code, status.message);
      } else {
        setTimeout(() => socket.connect(), 3000); // e.g. store_unavailable: try again
      }
    }
  });
  state.socket = socket;
  socket.on("hotline.presence", setPresence);
  socket.on("hotline.offer", onOffer);
  socket.on("hotline.offer_withdrawn", (data) => {
    if (state.offer && state.offer.call_id === data.call_id) clearOffer(WITHDRAWN[data.reason] || WITHDRAWN.requeued);
    loadStats();
  });
  socket.on("hotline.call", onCallPush);
  socket.on("hotline.media_moved", onMediaMoved);
  socket.on("hotline.queue", onQueue);
  socket.on("hotline.replaced", () => {
    cutOff = "replaced";
  });
  socket.on("session.expired", () => {
    cutOff = "auth.expired";
  });
  socket.on("session.revoked", () => {
    cutOff = "auth.revoked";
  });
  socket.on("disconnect", (reason) => {
    if (reason !== "io server disconnect") return;
    stopMedia();
    stopRing();
    if (cutOff === "replaced") {
      main.replaceChildren(
        el(
          "section",
          { class: "fatal", role: "alert", dataset: { code: "hotline.replaced" } },
          el("h1", { tabindex: "-1" }, "The console is open in another window."),
          el("p", {}, "Only one console per pharmacist can take calls."),
          el("button", { type: "button", class: "primary", onclick: () => window.location.reload() }, "Use this window"),
        ),
      );
      main.querySelector("h1").focus();
    } else {
      showFatal(cutOff || "auth.expired");
    }
  });
}

function onSocketConnected() {
  loadStats();
}

async function startConsole() {
  const signed = await signIn(TOKEN_KEY, banner);
  if (!signed) return;
  state.token = signed.token;
  state.me = signed.me;
  if (signed.me.role !== "pharmacist") {
    showFatal("forbidden");
    return;
  }
  build();
  openSocket();
  setInterval(tick, 1000);
  setInterval(loadStats, STATS_EVERY_MS);
}

startConsole();
