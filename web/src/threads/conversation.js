// One open thread: its header and actions, the timeline (latest page first, older pages on
// demand, resync with after_seq), unsent messages from the outbox, read receipts, typing, and
// the composer with its photo. The store is the truth: pushes are applied when they follow what
// is shown (seq = highest applied + 1); anything else triggers a thread.sync.
import { el, announce } from "../common/status.js";
import { PendingPhoto, newClientId } from "./outbox.js";
import {
  MAX_PHOTO_BYTES,
  PHOTO_TYPES,
  errorText,
  isTransient,
  senderLabel,
  sizeLabel,
  stateLabel,
  systemText,
  timeLabel,
} from "./text.js";

const PAGE = 50;
const TYPING_SEND_EVERY_MS = 3000;
const TYPING_IDLE_MS = 4000;
const TYPING_SHOWN_MS = 7000;
const STUB_KINDS = new Set(["edit", "delete"]);

/** " (limit: 20 KB)" from the server's "limited to N bytes" message, when it says so. */
const limitOf = (err) => {
  const found = /limited to (\d+) bytes/.exec((err && err.message) || "");
  return found && err.code === "thread.attachment_too_large" ? ` (limit: ${sizeLabel(Number(found[1]))})` : "";
};

/** The UTF-8 length of a string. */
const utf8Length = (text) => new TextEncoder().encode(text).length;

export class Conversation {
  /** `app`: me, call(), http(), attachmentUrl(), outbox, socketConnected(), onThread(). */
  constructor(app, thread) {
    this.app = app;
    this.me = app.me;
    this.thread = thread;
    this.entries = new Map(); // seq -> MessageView
    this.nodes = new Map(); // seq -> element
    this.applied = 0; // every entry from `oldest` to `applied` is known
    this.oldest = null;
    this.hasOlder = false;
    this.readSeq = thread.read_seq || 0;
    this.otherRead = 0; // the other side's horizon, as pushed (thread.read) during this visit
    this.syncing = null;
    this.syncAgain = false;
    this.readTimer = null;
    this.readCandidate = 0;
    this.typingSentAt = 0;
    this.typingIdle = null;
    this.typers = new Map(); // sub -> timer
    this.photo = null;
    this.closed = false;
    this.root = this._render();
  }

  // -- DOM -------------------------------------------------------------------------------------

  _render() {
    this.heading = el("h2", { id: "thread-heading", tabindex: "-1" });
    this.stateLine = el("p", { class: "thread-state", dataset: { testid: "thread-state" } });
    this.actions = el("div", { class: "thread-actions" });
    this.back = el(
      "a",
      { class: "button back", href: "/threads", onclick: (e) => this.app.linkClick(e, null) },
      "All message visits",
    );
    const header = el("header", { class: "thread-head" }, this.back, el("div", { class: "thread-title" }, this.heading, this.stateLine), this.actions);

    this.olderButton = el("button", { type: "button", class: "older", hidden: true, onclick: () => this.loadOlder() }, "Load earlier messages");
    this.log = el("div", {
      class: "log",
      role: "log",
      "aria-live": "polite",
      "aria-relevant": "additions",
      "aria-label": "Messages",
      "aria-busy": "true",
    });
    this.pending = el("div", { class: "pending-list", "aria-label": "Messages not yet sent" });
    this.typing = el("p", { class: "typing muted", hidden: true });
    this.scroller = el(
      "div",
      { class: "scroller", tabindex: "0", role: "region", "aria-label": "Conversation" },
      this.olderButton,
      this.log,
      this.pending,
    );
    this.composer = this._renderComposer();
    this.root = el(
      "section",
      { class: "conversation", "aria-labelledby": "thread-heading", dataset: { threadId: this.thread.thread_id } },
      header,
      this.scroller,
      this.typing,
      this.composer,
    );
    this.observer = new IntersectionObserver((items) => this._seen(items), { root: this.scroller, threshold: 0.6 });
    this.olderObserver = new IntersectionObserver(
      (items) => {
        if (items.some((i) => i.isIntersecting) && this.hasOlder && this.oldest !== null) this.loadOlder();
      },
      { root: this.scroller },
    );
    this.olderObserver.observe(this.olderButton);
    this._renderHeader();
    return this.root;
  }

  _renderComposer() {
    this.formError = el("p", { class: "form-error", role: "alert", hidden: true, id: "composer-error" });
    this.preview = el("div", { class: "photo-preview", hidden: true });
    this.text = el("textarea", {
      id: "composer-text",
      rows: "2",
      "aria-describedby": "composer-hint composer-error",
      onkeydown: (e) => {
        if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          this.submit();
        }
      },
      oninput: () => this._typed(),
    });
    this.fileInput = el("input", {
      type: "file",
      id: "composer-photo",
      accept: `${PHOTO_TYPES.join(",")},.heic,.heif`,
      hidden: true,
      "aria-label": "Photo to attach",
      onchange: () => this._pickPhoto(),
    });
    this.photoButton = el("button", { type: "button", class: "photo-button", onclick: () => this.fileInput.click() }, "Add photo");
    this.sendButton = el("button", { type: "submit", class: "primary" }, "Send");
    this.composerNote = el("p", { class: "composer-note muted", id: "composer-hint" }, "Enter sends; Shift+Enter starts a new line. Photos: JPEG, PNG or HEIC, up to 10 MB.");
    this.writeArea = el(
      "div",
      { class: "write" },
      el("label", { for: "composer-text" }, "Your message"),
      this.text,
      el("div", { class: "composer-actions" }, this.photoButton, this.fileInput, this.sendButton),
    );
    this.readOnly = el("p", { class: "read-only", hidden: true });
    return el(
      "form",
      {
        class: "composer",
        "aria-label": "Write a message",
        onsubmit: (e) => {
          e.preventDefault();
          this.submit();
        },
      },
      this.readOnly,
      this.formError,
      this.preview,
      this.writeArea,
      this.composerNote,
    );
  }

  _renderHeader() {
    const t = this.thread;
    const me = this.me;
    this.heading.textContent = `Patient reference ${t.patient_ref}`;
    this.stateLine.textContent = stateLabel(t.state, me.role);
    this.stateLine.dataset.state = t.state;
    this.root && (this.root.dataset.state = t.state);
    const buttons = [];
    const mine = t.assigned_to === me.sub;
    if (me.role === "clinician") {
      if (t.state === "open") buttons.push(this._action("Pick up", "assign", "primary"));
      else if (mine && t.state !== "closed") buttons.push(this._action("Close", "close"));
      else if (mine && t.state === "closed") buttons.push(this._action("Reopen", "reopen"));
    } else if (me.role === "parent" && t.state === "closed") {
      buttons.push(this._action("Reopen", "reopen"));
    }
    this.actions.replaceChildren(...buttons);
    const why = this._whyReadOnly();
    this.readOnly.hidden = why === null;
    this.readOnly.textContent = why || "";
    this.writeArea.hidden = why !== null;
    this.composerNote.hidden = why !== null;
    this.preview.hidden = why !== null || !this.photo;
  }

  _whyReadOnly() {
    const t = this.thread;
    const me = this.me;
    if (me.role === "admin") return "Admins read message visits; only the family and the assigned clinician write.";
    if (t.state === "closed") {
      return me.role === "parent"
        ? "This message visit is closed. Reopen it to write again (within 7 days of closing), or start a new one."
        : "This message visit is closed.";
    }
    if (me.role === "clinician" && t.state === "open") return "Pick this thread up to answer the family.";
    if (me.role === "clinician" && t.assigned_to !== me.sub) return "Another clinician is answering this thread.";
    return null;
  }

  _action(label, verb, cls = "") {
    return el(
      "button",
      {
        type: "button",
        class: cls,
        onclick: async (e) => {
          const button = e.currentTarget;
          button.disabled = true;
          this._error(null);
          try {
            const reply = await this.app.http(`/api/threads/${encodeURIComponent(this.thread.thread_id)}/${verb}`, {
              method: "POST",
              json: {},
            });
            if (reply.message) this.apply(reply.message);
            this.updateThread(reply.thread);
            const said = { assign: "You picked this thread up.", close: "Message visit closed.", reopen: "Message visit reopened." };
            announce(said[verb]);
            if (verb === "assign" && !this.writeArea.hidden) this.text.focus();
            else if (!this.root.contains(document.activeElement)) this.heading.focus();
          } catch (err) {
            const lost = verb === "assign" && (err.code === "thread.not_found" || err.code === "thread.already_assigned");
            this._error(lost ? "Another clinician picked this thread up first." : errorText(err.code, err.message));
            if (err.code === "thread.not_found" || err.code === "thread.already_assigned") this.app.refreshThread(this.thread.thread_id);
          } finally {
            button.disabled = false;
          }
        },
      },
      label,
    );
  }

  _error(text) {
    this.formError.hidden = !text;
    this.formError.textContent = text || "";
  }

  // -- loading and applying ------------------------------------------------------------------

  /** Load the latest page (the thread view is already known). */
  async open() {
    const id = encodeURIComponent(this.thread.thread_id);
    const page = await this.app.http(`/api/threads/${id}/messages?before_seq=${this.thread.last_seq + 1}&limit=${PAGE}`);
    const first = page.messages.length ? page.messages[0].seq : this.thread.last_seq + 1;
    this.oldest = first;
    this.applied = first - 1;
    this.hasOlder = page.has_more;
    this._applyPage(page);
    this.readSeq = Math.max(this.readSeq, page.read_seq);
    this.olderButton.hidden = !this.hasOlder;
    this.log.setAttribute("aria-busy", "false");
    this.renderPending();
    this._scrollToEnd();
    if (page.last_seq > this.applied) this.sync();
  }

  _applyPage(page) {
    for (const message of page.messages) this.apply(message);
    for (const target of page.targets) this.apply(target, { targetOnly: true });
  }

  /** Apply one entry (an ack, a push, a page row). `targetOnly`: update it only if shown. */
  apply(message, { targetOnly = false } = {}) {
    if (targetOnly && !this.entries.has(message.seq)) return;
    if (this.oldest !== null && message.seq < this.oldest && !targetOnly) {
      return; // older than what is loaded: scrolling back will fetch it
    }
    const isNew = !this.entries.has(message.seq);
    this.entries.set(message.seq, message);
    if (message.seq === this.applied + 1) {
      this.applied = message.seq;
      while (this.entries.has(this.applied + 1)) this.applied += 1;
    }
    if (message.sender === this.me.sub && this.app.outbox.find(message.client_msg_id)) {
      this.app.outbox.acknowledged(message.client_msg_id);
    }
    if (STUB_KINDS.has(message.kind)) {
      // Not shown (the target carries the change): read as soon as what precedes it was read.
      if (this.readCandidate >= message.seq - 1 && document.visibilityState === "visible") {
        this.readCandidate = message.seq;
        this._scheduleRead();
      }
      return;
    }
    const node = this._entryNode(message);
    const old = this.nodes.get(message.seq);
    if (old) {
      this.observer.unobserve(old);
      old.replaceWith(node);
    } else {
      this._insert(message.seq, node);
    }
    this.nodes.set(message.seq, node);
    this.observer.observe(node);
    if (isNew && message.seq > this.readSeq && message.sender !== this.me.sub && message.kind === "message") {
      node.classList.add("unseen");
    }
  }

  _insert(seq, node) {
    let after = null;
    for (const child of this.log.children) {
      if (Number(child.dataset.seq) > seq) {
        after = child;
        break;
      }
    }
    this.log.insertBefore(node, after);
  }

  _entryNode(m) {
    const me = this.me;
    if (m.kind === "system") {
      return el(
        "div",
        { class: "entry system", dataset: { seq: String(m.seq), kind: "system" } },
        el("p", {}, systemText(m, me), " ", el("time", { datetime: new Date(m.created_at * 1000).toISOString() }, timeLabel(m.created_at))),
      );
    }
    const mine = m.sender === me.sub;
    const who = senderLabel(m, me);
    const meta = el(
      "p",
      { class: "meta" },
      el("span", { class: "who" }, who),
      " · ",
      el("time", { datetime: new Date(m.created_at * 1000).toISOString() }, timeLabel(m.created_at)),
      m.edited_at && !m.deleted ? el("span", { class: "edited" }, ` · edited ${timeLabel(m.edited_at)}`) : null,
    );
    const body = [];
    if (m.deleted) {
      body.push(el("p", { class: "text deleted" }, mine ? "You deleted this message." : "This message was deleted."));
    } else {
      if (m.text) body.push(el("p", { class: "text" }, m.text));
      if (m.attachments.length) {
        body.push(el("div", { class: "photos" }, m.attachments.map((a) => this._photo(a, who))));
      }
    }
    const node = el(
      "div",
      {
        class: `entry msg ${mine ? "mine" : "theirs"}`,
        dataset: { seq: String(m.seq), kind: "message", cmid: m.client_msg_id, sender: mine ? "me" : m.sender_role },
      },
      meta,
      body,
    );
    if (mine) {
      const receipt = el("p", { class: "receipt" });
      node.append(receipt);
      this._receipt(node, m.seq);
      if (!m.deleted && this.thread.state !== "closed") node.append(this._ownTools(m));
    }
    return node;
  }

  _photo(attachment, who) {
    const img = el("img", { alt: `Photo from ${who === "You" ? "you" : who.toLowerCase()}`, class: "photo", loading: "lazy" });
    const holder = el("figure", { class: "photo-frame", dataset: { attachmentId: attachment.attachment_id } }, img);
    this.app
      .attachmentUrl(attachment.url)
      .then((url) => {
        img.src = url;
        holder.dataset.state = "loaded";
      })
      .catch((err) => {
        holder.dataset.state = "error";
        holder.append(el("figcaption", { class: "muted" }, `The photo could not be loaded (${errorText(err.code, err.message)})`));
      });
    return holder;
  }

  _ownTools(m) {
    const edit = el("button", { type: "button", class: "link", onclick: () => this._editMessage(m) }, "Edit");
    const remove = el("button", { type: "button", class: "link", onclick: () => this._deleteMessage(m) }, "Delete");
    edit.setAttribute("aria-label", `Edit your message of ${timeLabel(m.created_at)}`);
    remove.setAttribute("aria-label", `Delete your message of ${timeLabel(m.created_at)}`);
    return el("p", { class: "own-tools" }, m.text ? edit : null, remove);
  }

  async _editMessage(m) {
    const node = this.nodes.get(m.seq);
    if (!node) return;
    const area = el("textarea", { rows: "2", "aria-label": "New text of your message" });
    area.value = m.text || "";
    const cancel = () => this.apply(this.entries.get(m.seq));
    const form = el(
      "form",
      {
        class: "edit-form",
        onsubmit: async (e) => {
          e.preventDefault();
          await this._change("thread.edit", "edit", m.seq, { text: area.value });
        },
      },
      area,
      el("button", { type: "submit", class: "primary" }, "Save"),
      el("button", { type: "button", onclick: cancel }, "Cancel"),
    );
    node.querySelector(".text")?.replaceWith(form);
    node.querySelector(".own-tools")?.remove();
    area.focus();
  }

  async _deleteMessage(m) {
    if (!window.confirm("Delete this message? Its text and photos are removed for everyone.")) return;
    await this._change("thread.delete", "delete", m.seq, {});
  }

  /** Edit or delete: a stub with its own client_msg_id; the reply carries the changed target. */
  async _change(event, verb, seq, extra) {
    this._error(null);
    const clientMsgId = newClientId();
    const id = this.thread.thread_id;
    for (let attempt = 0; attempt < 4; attempt += 1) {
      try {
        const reply = await this.app.http(`/api/threads/${encodeURIComponent(id)}/messages/${seq}/${verb}`, {
          method: "POST",
          json: { client_msg_id: clientMsgId, ...extra },
        });
        this.apply(reply.message);
        if (reply.target) this.apply(reply.target);
        this.updateThread(reply.thread);
        announce(verb === "edit" ? "Message edited." : "Message deleted.");
        return;
      } catch (err) {
        if (!isTransient(err.code, err.status) || attempt === 3) {
          this._error(errorText(err.code, err.message));
          const shown = this.entries.get(seq);
          if (shown) this.apply(shown);
          return;
        }
        await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
      }
    }
  }

  _receipt(node, seq) {
    const receipt = node.querySelector(".receipt");
    if (!receipt) return;
    const read = this.otherRead >= seq;
    receipt.textContent = read ? "Read" : "Sent";
    receipt.dataset.state = read ? "read" : "sent";
  }

  /** New thread view (from an ack, a push, an action). */
  updateThread(thread) {
    if (!thread || thread.thread_id !== this.thread.thread_id) return;
    if (thread.version < this.thread.version || thread.last_seq < this.thread.last_seq) {
      if (thread.version <= this.thread.version && thread.last_seq <= this.thread.last_seq) return;
    }
    const before = this.thread.state;
    this.thread = { ...this.thread, ...thread, read_seq: this.readSeq };
    this._renderHeader();
    if (before !== thread.state) {
      announce(`This message visit is now: ${stateLabel(thread.state, this.me.role)}.`);
      for (const [seq, m] of this.entries) {
        if (m.sender === this.me.sub && m.kind === "message") this.apply(this.entries.get(seq));
      }
    }
    this.app.onThread(this.thread);
    if (thread.last_seq > this.applied) this.sync();
  }

  /** A `thread.message` push for this thread. */
  onPush({ message, thread, target }) {
    const gap = message.seq > this.applied + 1;
    const atEnd = this._nearEnd();
    this.apply(message);
    if (target) this.apply(target, { targetOnly: true });
    if (message.sender !== this.me.sub) this._typingStopped(message.sender);
    this.updateThread(thread);
    if (gap) this.sync();
    if (atEnd) this._scrollToEnd();
  }

  /** Fetch everything after the highest applied entry (after a reconnect or a gap). */
  sync() {
    if (this.oldest === null || this.closed) return Promise.resolve();
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        do {
          this.syncAgain = false;
          for (;;) {
            const atEnd = this._nearEnd();
            const page = await this.app.call("thread.sync", { thread_id: this.thread.thread_id, after_seq: this.applied, limit: 100 });
            const before = this.applied;
            this._applyPage(page);
            if (atEnd) this._scrollToEnd();
            if (!page.has_more || this.applied === before) break;
          }
        } while (this.syncAgain);
      } catch (err) {
        // Offline or refused: the next connect syncs again.
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  async loadOlder() {
    if (this.loadingOlder || !this.hasOlder || this.oldest === null) return;
    this.loadingOlder = true;
    this.olderButton.disabled = true;
    this.log.setAttribute("aria-busy", "true");
    try {
      const id = encodeURIComponent(this.thread.thread_id);
      const page = await this.app.http(`/api/threads/${id}/messages?before_seq=${this.oldest}&limit=${PAGE}`);
      const height = this.scroller.scrollHeight;
      const top = this.scroller.scrollTop;
      if (page.messages.length) this.oldest = page.messages[0].seq;
      this.hasOlder = page.has_more;
      for (const m of page.messages) this.apply(m);
      for (const t of page.targets) this.apply(t, { targetOnly: true });
      this.scroller.scrollTop = top + (this.scroller.scrollHeight - height);
      this.olderButton.hidden = !this.hasOlder;
    } catch (err) {
      this._error(errorText(err.code, err.message));
    } finally {
      this.loadingOlder = false;
      this.olderButton.disabled = false;
      this.log.setAttribute("aria-busy", "false");
    }
  }

  _nearEnd() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  _scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  // -- read receipts ---------------------------------------------------------------------------

  _seen(items) {
    if (document.visibilityState !== "visible") return;
    for (const item of items) {
      if (!item.isIntersecting) continue;
      let seq = Number(item.target.dataset.seq);
      item.target.classList.remove("unseen");
      while (this.entries.has(seq + 1) && STUB_KINDS.has(this.entries.get(seq + 1).kind)) seq += 1;
      this.readCandidate = Math.max(this.readCandidate, seq);
    }
    this._scheduleRead();
  }

  _scheduleRead() {
    if (this.readCandidate > this.readSeq && !this.readTimer) {
      this.readTimer = setTimeout(() => {
        this.readTimer = null;
        this.flushRead();
      }, 300);
    }
  }

  /** Tell the server how far this reader has read (when visible and connected). */
  async flushRead() {
    const seq = Math.min(this.readCandidate, this.thread.last_seq);
    if (seq <= this.readSeq || this.closed || !this.app.socketConnected()) return;
    try {
      const reply = await this.app.call("thread.read", { thread_id: this.thread.thread_id, seq });
      this.ownHorizon(reply.read_seq);
    } catch (err) {
      // retried at the next visible entry or reconnect
    }
  }

  /** My read horizon moved (this device or another of mine). */
  ownHorizon(seq) {
    if (seq <= this.readSeq) return;
    this.readSeq = seq;
    this.thread = { ...this.thread, read_seq: seq };
    this.app.onThread(this.thread);
  }

  /** A `thread.read` push: someone's horizon moved. */
  onRead({ sub, read_seq: seq }) {
    if (sub === this.me.sub) {
      this.ownHorizon(seq);
      return;
    }
    if (seq <= this.otherRead) return;
    this.otherRead = seq;
    for (const [s, node] of this.nodes) this._receipt(node, s);
  }

  // -- typing ----------------------------------------------------------------------------------

  _typed() {
    if (this._whyReadOnly() !== null || !this.app.socketConnected()) return;
    const now = Date.now();
    if (now - this.typingSentAt > TYPING_SEND_EVERY_MS) {
      this.typingSentAt = now;
      this.app.call("thread.typing", { thread_id: this.thread.thread_id, typing: true }).catch(() => {});
    }
    clearTimeout(this.typingIdle);
    this.typingIdle = setTimeout(() => this._stopTyping(), TYPING_IDLE_MS);
  }

  _stopTyping() {
    clearTimeout(this.typingIdle);
    if (!this.typingSentAt) return;
    this.typingSentAt = 0;
    if (this.app.socketConnected() && this.thread.state !== "closed") {
      this.app.call("thread.typing", { thread_id: this.thread.thread_id, typing: false }).catch(() => {});
    }
  }

  /** A `thread.typing` push. */
  onTyping({ sub, typing }) {
    if (sub === this.me.sub) return;
    clearTimeout(this.typers.get(sub));
    if (typing) {
      this.typers.set(sub, setTimeout(() => this._typingStopped(sub), TYPING_SHOWN_MS));
    } else {
      this.typers.delete(sub);
    }
    this._renderTyping();
  }

  _typingStopped(sub) {
    if (!this.typers.has(sub)) return;
    clearTimeout(this.typers.get(sub));
    this.typers.delete(sub);
    this._renderTyping();
  }

  _renderTyping() {
    const who = this.me.role === "parent" ? "The clinician" : "The family";
    this.typing.hidden = this.typers.size === 0;
    this.typing.textContent = this.typers.size ? `${who} is typing…` : "";
  }

  // -- composer --------------------------------------------------------------------------------

  _pickPhoto() {
    const file = this.fileInput.files && this.fileInput.files[0];
    this.fileInput.value = "";
    if (!file) return;
    this._error(null);
    const typeOk = PHOTO_TYPES.includes(file.type) || (!file.type && /\.(heic|heif)$/i.test(file.name));
    if (!typeOk) {
      this._error(`“${file.name}” is not a photo we can send. Choose a JPEG, PNG or HEIC photo.`);
      return;
    }
    if (file.size > MAX_PHOTO_BYTES) {
      this._error(`“${file.name}” is ${sizeLabel(file.size)}: photos are limited to ${sizeLabel(MAX_PHOTO_BYTES)}. Choose a smaller photo.`);
      return;
    }
    if (file.size === 0) {
      this._error(`“${file.name}” is empty.`);
      return;
    }
    this._setPhoto(new PendingPhoto(file));
    // Upload at once: the server judges the bytes, and its answer is shown before sending.
    const photo = this.photo;
    this._photoStatus("Uploading…");
    photo
      .upload((f) => this.app.upload(this.thread.thread_id, f))
      .then(() => {
        if (this.photo === photo) this._photoStatus("Ready to send");
      })
      .catch((err) => {
        if (this.photo !== photo) return;
        if (isTransient(err.code, err.status)) {
          this._photoStatus("Will upload when the connection is back");
        } else {
          this._setPhoto(null);
          this._error(`“${photo.file.name}”: ${errorText(err.code, err.message)}${limitOf(err)}`);
          photo.release();
        }
      });
  }

  _setPhoto(photo) {
    this.photo = photo;
    this.photoButton.textContent = photo ? "Change photo" : "Add photo";
    if (!photo) {
      this.preview.hidden = true;
      this.preview.replaceChildren();
      return;
    }
    this.photoState = el("span", { class: "photo-state" });
    const remove = el(
      "button",
      {
        type: "button",
        onclick: () => {
          const p = this.photo;
          this._setPhoto(null);
          if (p) p.release();
          this.photoButton.focus();
        },
      },
      "Remove photo",
    );
    this.preview.replaceChildren(
      el("img", { src: photo.previewUrl, alt: `Photo to send: ${photo.file.name}` }),
      el("div", {}, el("p", {}, `${photo.file.name} · ${sizeLabel(photo.file.size)}`), this.photoState, remove),
    );
    this.preview.hidden = false;
  }

  _photoStatus(text) {
    if (this.photoState) this.photoState.textContent = text;
    if (this.photo) this.preview.dataset.state = text;
  }

  /** Send what the composer holds: it goes to the outbox at once and shows as pending. */
  submit() {
    if (this._whyReadOnly() !== null) return;
    const text = this.text.value.trim();
    if (!text && !this.photo) {
      this._error(errorText("thread.empty_message"));
      this.text.focus();
      return;
    }
    if (utf8Length(text) > 8192) {
      this._error(errorText("thread.text_too_large"));
      return;
    }
    this._error(null);
    this.app.outbox.add(this.thread.thread_id, text, this.photo);
    this.text.value = "";
    this._setPhoto(null);
    this._stopTyping();
    this._scrollToEnd();
    this.text.focus();
  }

  /** Show this thread's unsent messages (called on every outbox change). */
  renderPending() {
    const entries = this.app.outbox.forThread(this.thread.thread_id);
    const nodes = entries.map((entry) => this._pendingNode(entry));
    this.pending.replaceChildren(...nodes);
  }

  _pendingNode(entry) {
    const photo = this.app.outbox.photos.get(entry.client_msg_id);
    const status = {
      sending: "Sending…",
      waiting: this.app.socketConnected() ? "Not sent yet, retrying…" : "Waiting for the connection: it will be sent automatically.",
      failed: `Not sent: ${errorText(entry.error)}`,
    }[entry.status];
    const tools = [];
    if (entry.status === "failed") {
      if (entry.error !== "photo_lost") {
        tools.push(el("button", { type: "button", onclick: () => this.app.outbox.retry(entry.client_msg_id) }, "Try again"));
      }
      tools.push(el("button", { type: "button", onclick: () => this.app.outbox.discard(entry.client_msg_id) }, "Discard"));
    }
    return el(
      "div",
      {
        class: `entry msg mine pending ${entry.status}`,
        dataset: { cmid: entry.client_msg_id, status: entry.status },
      },
      el("p", { class: "meta" }, el("span", { class: "who" }, "You"), " · ", timeLabel(entry.created_at)),
      entry.text ? el("p", { class: "text" }, entry.text) : null,
      photo
        ? el("div", { class: "photos" }, el("figure", { class: "photo-frame" }, el("img", { class: "photo", src: photo.previewUrl, alt: "Photo you are sending" })))
        : entry.photo
          ? el("p", { class: "muted" }, `Photo: ${entry.photo.name}`)
          : null,
      el("p", { class: entry.status === "failed" ? "receipt error" : "receipt", role: entry.status === "failed" ? "alert" : null }, status),
      tools.length ? el("p", { class: "own-tools" }, tools) : null,
    );
  }

  /** Leaving the thread view. */
  close() {
    this.closed = true;
    this._stopTyping();
    this.observer.disconnect();
    this.olderObserver.disconnect();
    for (const timer of this.typers.values()) clearTimeout(timer);
    clearTimeout(this.readTimer);
    if (this.photo) this.photo.release();
  }
}
