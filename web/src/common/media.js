// The browser side of Careline's SFU (docs/protocol.md "Media negotiation"): the server always
// offers, the page answers. Shared by the visit page, the kiosk and the pharmacist console.
import { call } from "./socket.js";

/** Wait until ICE gathering is complete (no trickle ICE: the answer carries every candidate). */
function gathered(pc, timeoutMs = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener("icegatheringstatechange", done);
      resolve();
    }, timeoutMs);
    pc.addEventListener("icegatheringstatechange", done);
  });
}

/**
 * One participant's peer connection to the SFU.
 *
 * Callbacks: onStreams(Map publisher -> MediaStream) whenever what arrives changes (slots reused,
 * renegotiation); onState(state) with the browser-side connection state.
 * `localStream` may be null or lack a kind: that m-line is answered inactive.
 */
export class SfuPeer {
  constructor(socket, { iceServers = [], localStream = null, onStreams = () => {}, onState = () => {} }) {
    this.socket = socket;
    this.iceServers = iceServers;
    this.localStream = localStream;
    this.onStreams = onStreams;
    this.onState = onState;
    this.pc = null;
    this.tracks = new Map(); // mid -> {publisher, kind}
    this.publish = {};
    this.queue = Promise.resolve(); // offers are answered one at a time, in order
    this.closed = false;
    this.handlers = {
      "media.offer": (offer) => this.enqueue(() => this.answer(offer)),
      "media.tracks": (data) => {
        this.setTracks(data.tracks);
        this.emitStreams();
      },
    };
    for (const [event, handler] of Object.entries(this.handlers)) socket.on(event, handler);
  }

  /** Open the peer connection (`media.start`), or a new one (`media.restart`) after a network change. */
  start(restart = false) {
    return this.enqueue(async () => {
      const offer = await call(this.socket, restart || this.pc ? "media.restart" : "media.start");
      this.closePc();
      await this.answer(offer);
    });
  }

  /** Use another socket from now on (the page moved to another server); the next start() goes there. */
  setSocket(socket) {
    for (const [event, handler] of Object.entries(this.handlers)) {
      this.socket.off(event, handler);
      socket.on(event, handler);
    }
    this.socket = socket;
  }

  /** Replace the local camera/microphone (e.g. after the device check or a device change). */
  async setLocalStream(stream) {
    this.localStream = stream;
    if (!this.pc) return;
    for (const transceiver of this.pc.getTransceivers()) {
      const kind = this.kindOfPublishMid(transceiver.mid);
      if (kind) await transceiver.sender.replaceTrack(this.localTrack(kind));
    }
  }

  /** Browser statistics summary: {bytesSent, bytesReceived, packetsLost, rttMs}. */
  async stats() {
    const out = { bytesSent: 0, bytesReceived: 0, packetsLost: 0, rttMs: null };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    report.forEach((entry) => {
      if (entry.type === "outbound-rtp") out.bytesSent += entry.bytesSent || 0;
      if (entry.type === "inbound-rtp") {
        out.bytesReceived += entry.bytesReceived || 0;
        out.packetsLost += entry.packetsLost || 0;
      }
      if (entry.type === "candidate-pair" && entry.nominated && entry.currentRoundTripTime != null) {
        out.rttMs = entry.currentRoundTripTime * 1000;
      }
    });
    return out;
  }

  close() {
    this.closed = true;
    for (const [event, handler] of Object.entries(this.handlers)) this.socket.off(event, handler);
    this.closePc();
    this.tracks.clear();
    this.emitStreams();
  }

  // -- internals -------------------------------------------------------------------------------

  enqueue(task) {
    const next = this.queue.then(() => (this.closed ? undefined : task()));
    this.queue = next.catch(() => {});
    return next;
  }

  closePc() {
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.ontrack = null;
      this.pc.close();
      this.pc = null;
    }
  }

  kindOfPublishMid(mid) {
    for (const [kind, publishMid] of Object.entries(this.publish)) {
      if (publishMid === mid) return kind;
    }
    return null;
  }

  localTrack(kind) {
    if (!this.localStream) return null;
    const tracks = kind === "audio" ? this.localStream.getAudioTracks() : this.localStream.getVideoTracks();
    return tracks[0] || null;
  }

  setTracks(tracks) {
    this.tracks = new Map((tracks || []).map((t) => [t.mid, { publisher: t.publisher, kind: t.kind }]));
  }

  async answer(offer) {
    if (!this.pc) {
      const pc = new RTCPeerConnection({ iceServers: this.iceServers, bundlePolicy: "max-bundle" });
      pc.onconnectionstatechange = () => this.onState(pc.connectionState);
      pc.ontrack = () => this.emitStreams();
      this.pc = pc;
    }
    const pc = this.pc;
    this.publish = offer.publish || {};
    this.setTracks(offer.tracks);
    await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    for (const transceiver of pc.getTransceivers()) {
      if (transceiver.stopped || transceiver.mid === null) continue;
      const kind = this.kindOfPublishMid(transceiver.mid);
      if (kind) {
        const track = this.localTrack(kind);
        transceiver.direction = track ? "sendonly" : "inactive";
        await transceiver.sender.replaceTrack(track);
      } else {
        transceiver.direction = "recvonly";
      }
    }
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc);
    await call(this.socket, "media.answer", { sdp: pc.localDescription.sdp });
    this.emitStreams();
  }

  /** Group what arrives by publisher, following the current track map. A publisher keeps the
   * same MediaStream object while it stays (its tracks are swapped), so video elements keep playing. */
  emitStreams() {
    const wanted = new Map();
    if (this.pc) {
      for (const transceiver of this.pc.getTransceivers()) {
        const slot = this.tracks.get(transceiver.mid);
        if (!slot || transceiver.stopped) continue;
        if (!wanted.has(slot.publisher)) wanted.set(slot.publisher, []);
        wanted.get(slot.publisher).push(transceiver.receiver.track);
      }
    }
    this.streams = this.streams || new Map();
    for (const publisher of [...this.streams.keys()]) {
      if (!wanted.has(publisher)) this.streams.delete(publisher);
    }
    for (const [publisher, tracks] of wanted) {
      let stream = this.streams.get(publisher);
      if (!stream) {
        stream = new MediaStream();
        this.streams.set(publisher, stream);
      }
      for (const track of stream.getTracks()) {
        if (!tracks.includes(track)) stream.removeTrack(track);
      }
      for (const track of tracks) {
        if (!stream.getTracks().includes(track)) stream.addTrack(track);
      }
    }
    this.onStreams(new Map(this.streams));
  }
}

/** Ask for camera and microphone; fall back to audio only, then to nothing. Returns {stream, error}. */
export async function getLocalMedia() {
  const attempts = [
    { audio: true, video: { width: { ideal: 640 }, height: { ideal: 480 } } },
    { audio: true, video: false },
  ];
  let lastError = null;
  for (const constraints of attempts) {
    try {
      return { stream: await navigator.mediaDevices.getUserMedia(constraints), error: lastError };
    } catch (err) {
      lastError = err;
    }
  }
  return { stream: null, error: lastError };
}

/** Attach a stream to a video element (muted autoplay is allowed everywhere; sound via a click). */
export function attach(video, stream) {
  if (video.srcObject !== stream) {
    video.srcObject = stream;
    video.play().catch(() => {});
  }
}
