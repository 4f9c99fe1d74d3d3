// Messages written but not yet acknowledged by the server. Each gets its client_msg_id once,
// when the person presses Send, and keeps it (in localStorage, per signed-in subject) until the
// server acknowledges it, so a retry after a lost ack, a reconnect or a page reload is the same
// message and the server stores it exactly once (docs/protocol.md "Sending, idempotency").
import { isTransient } from "./text.js";

/** A random UUID (crypto.randomUUID needs a secure context; getRandomValues does not). */
export function newClientId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function" && window.isSecureContext) {
    return window.crypto.randomUUID();
  }
  const bytes = window.crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A photo chosen in the composer: the File (in memory only), its preview, its upload. */
export class PendingPhoto {
  constructor(file) {
    this.file = file;
    this.previewUrl = URL.createObjectURL(file);
    this.attachmentId = null;
    this._upload = null;
  }

  /** Upload once (concurrent callers share the request); resolve with the attachment id. */
  upload(uploadFn) {
    if (this.attachmentId) return Promise.resolve(this.attachmentId);
    if (!this._upload) {
      this._upload = uploadFn(this.file)
        .then((reply) => {
          this.attachmentId = reply.attachment_id;
          return this.attachmentId;
        })
        .finally(() => {
          this._upload = null;
        });
    }
    return this._upload;
  }

  release() {
    URL.revokeObjectURL(this.previewUrl);
  }
}

const sleep = (ms, wake) =>
  new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake.then(() => {
      clearTimeout(timer);
      resolve();
    });
  });

/**
 * The outbox. `deliver(entry, photo)` sends one entry (uploading its photo first if needed) and
 * resolves with the server's reply; `onChange(entry)` hears every status change ("sending",
 * "waiting": retrying after a transient error, "failed": needs the person, "sent": acknowledged).
 */
export class Outbox {
  constructor(storageKey, { deliver, onChange, onFatal }) {
    this.key = storageKey;
    this.deliverFn = deliver;
    this.onChange = onChange;
    this.onFatal = onFatal;
    this.photos = new Map(); // client_msg_id -> PendingPhoto (lost on reload)
    this.running = false;
    this._wake();
    this.entries = this._load();
  }

  _load() {
    let list = [];
    try {
      list = JSON.parse(localStorage.getItem(this.key) || "[]");
    } catch (err) {
      list = [];
    }
    if (!Array.isArray(list)) list = [];
    for (const entry of list) {
      // A photo that had not reached the server before the page closed cannot be resent.
      if (entry.photo && !entry.attachment_ids) {
        entry.status = "failed";
        entry.error = "photo_lost";
      } else if (entry.status !== "failed") {
        entry.status = "sending";
      }
    }
    return list;
  }

  persist() {
    const kept = this.entries.map(({ client_msg_id, thread_id, text, attachment_ids, photo, created_at, status, error }) => ({
      client_msg_id,
      thread_id,
      text,
      attachment_ids,
      photo,
      created_at,
      status,
      error,
    }));
    try {
      localStorage.setItem(this.key, JSON.stringify(kept));
    } catch (err) {
      // Storage full or disabled: the message still goes out while the page stays open.
    }
  }

  _wake() {
    this.wakeUp = new Promise((resolve) => {
      this._wakeResolve = resolve;
    });
  }

  /** Retry now (the connection came back). */
  kick() {
    const resolve = this._wakeResolve;
    this._wake();
    resolve();
    this.run();
  }

  /** Unacknowledged entries of a thread, oldest first. */
  forThread(threadId) {
    return this.entries.filter((e) => e.thread_id === threadId);
  }

  find(clientMsgId) {
    return this.entries.find((e) => e.client_msg_id === clientMsgId);
  }

  /** A new message: stored at once, then delivered. */
  add(threadId, text, photo) {
    const entry = {
      client_msg_id: newClientId(),
      thread_id: threadId,
      text,
      attachment_ids: photo ? (photo.attachmentId ? [photo.attachmentId] : null) : [],
      photo: photo ? { name: photo.file.name, size: photo.file.size, type: photo.file.type } : null,
      created_at: Date.now() / 1000,
      status: "sending",
      error: null,
    };
    if (photo) this.photos.set(entry.client_msg_id, photo);
    this.entries.push(entry);
    this.persist();
    this.onChange(entry);
    this.run();
    return entry;
  }

  /** The server has the message (an ack, or the entry seen in a sync or a push). */
  acknowledged(clientMsgId) {
    const entry = this.find(clientMsgId);
    if (!entry) return;
    this.entries = this.entries.filter((e) => e !== entry);
    this.persist();
    const photo = this.photos.get(clientMsgId);
    this.photos.delete(clientMsgId);
    entry.status = "sent";
    this.onChange(entry);
    if (photo) photo.release();
  }

  /** Try a failed message again (same client_msg_id). */
  retry(clientMsgId) {
    const entry = this.find(clientMsgId);
    if (!entry || entry.status !== "failed" || entry.error === "photo_lost") return;
    entry.status = "sending";
    entry.error = null;
    this.persist();
    this.onChange(entry);
    this.run();
  }

  /** Give a message up. */
  discard(clientMsgId) {
    const entry = this.find(clientMsgId);
    if (!entry) return;
    this.entries = this.entries.filter((e) => e !== entry);
    this.persist();
    const photo = this.photos.get(clientMsgId);
    this.photos.delete(clientMsgId);
    if (photo) photo.release();
    entry.status = "discarded";
    this.onChange(entry);
  }

  /** Deliver entries one by one, in the order they were written. */
  async run() {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        const entry = this.entries.find((e) => e.status !== "failed");
        if (!entry) break;
        await this._deliver(entry);
      }
    } finally {
      this.running = false;
    }
  }

  async _deliver(entry) {
    for (let attempt = 0; this.find(entry.client_msg_id) === entry && entry.status !== "failed"; attempt += 1) {
      try {
        const reply = await this.deliverFn(entry, this.photos.get(entry.client_msg_id));
        if (reply) this.acknowledged(entry.client_msg_id);
        return;
      } catch (err) {
        const code = (err && err.code) || "internal";
        if (code.startsWith("auth.")) {
          this.onFatal(err);
          return;
        }
        if (!isTransient(code, err && err.status)) {
          entry.status = "failed";
          entry.error = code;
          this.persist();
          this.onChange(entry);
          return;
        }
        if (entry.status !== "waiting" || entry.error !== code) {
          entry.status = "waiting";
          entry.error = code;
          this.onChange(entry);
        }
        const delay = Math.min(15000, 1000 * 2 ** Math.min(attempt, 4)) * (0.75 + Math.random() / 2);
        await sleep(delay, this.wakeUp);
      }
    }
  }
}
