// The message-visits page: the list of threads (a parent's own, a clinician's queue and threads,
// an admin's all), starting a thread, routing between /threads and /threads/{id}, the /threads
// socket (pushes, resync on every connect), and the outbox that delivers unsent messages.
import { api } from "../common/api.js";
import { CarelineError, isFatalAuth } from "../common/errors.js";
import { dropToken } from "../common/session.js";
import { call, connect } from "../common/socket.js";
import { announce, connectionBanner, el, showFatal } from "../common/status.js";
import { Conversation } from "./conversation.js";
import { Outbox, newClientId } from "./outbox.js";
import { errorText, isTransient, stateLabel, timeLabel } from "./text.js";

const LIST_PAGE = 50;
const TOKEN_KEY = "careline.threads";

export class ThreadsApp {
  constructor(token, me, banner) {
    this.token = token;
    this.me = me;
    this.bannerElement = banner;
    this.banner = connectionBanner(banner);
    this.threads = new Map(); // thread_id -> ThreadView (with read_seq, unread)
    this.listHasMore = false;
    this.conversation = null;
    this.images = new Map(); // attachment url -> Promise<blob: URL>
    this.fatal = false;
    this.outbox = new Outbox(`careline.threads.outbox.${me.sub}`, {
      deliver: (entry, photo) => this._deliver(entry, photo),
      onChange: (entry) => this._outboxChanged(entry),
      onFatal: (err) => this.die(err.code, err.message),
    });
  }

  // -- start -----------------------------------------------------------------------------------

  async start() {
    this._renderShell();
    this.socket = connect("/threads", () => this.token, (status) => this._status(status));
    this.socket.on("thread.message", (data) => this._onMessage(data));
    this.socket.on("thread.updated", (data) => this._onUpdated(data.thread));
    this.socket.on("thread.read", (data) => this._onRead(data));
    this.socket.on("thread.typing", (data) => {
      if (this.conversation && this.conversation.thread.thread_id === data.thread_id) this.conversation.onTyping(data);
    });
    this.socket.on("session.expired", () => this.die("auth.expired"));
    this.socket.on("session.revoked", () => this.die("auth.revoked"));
    window.addEventListener("popstate", () => this.route());
    // The browser knows about a lost network long before socket.io's ping timeout (45 s): go
    // offline at once (banner, pending messages wait), and reconnect as soon as it is back.
    window.addEventListener("offline", () => this._browserOffline());
    window.addEventListener("online", () => this._browserOnline());
    setInterval(() => {
      if (this.browserOffline && navigator.onLine) this._browserOnline();
    }, 15000);
    // Admins get no pushes (they are nobody's member and not in the queue room): poll instead.
    if (this.me.role === "admin") setInterval(() => this.socketConnected() && this._resync(), 20000);
    try {
      const { threads } = await this.http(`/api/threads?limit=${LIST_PAGE}`);
      this._refreshList(threads, LIST_PAGE);
    } catch (err) {
      if (this.fatal) return;
      this.listError.hidden = false;
      this.listError.textContent = errorText(err.code, err.message);
    }
    await this.route();
    this.outbox.run();
  }

  /** Replace the page with an explanation (expired, revoked or invalid link). */
  die(code, message) {
    if (this.fatal) return;
    this.fatal = true;
    if (this.conversation) this.conversation.close();
    if (this.socket) this.socket.close();
    if (this.bannerElement) this.bannerElement.hidden = true;
    if (code && code.startsWith("auth.")) dropToken(TOKEN_KEY);
    showFatal(code, message);
  }

  // -- transport -------------------------------------------------------------------------------

  /** HTTP API with this page's token; an unusable token ends the page. */
  async http(path, options = {}) {
    try {
      return await api(path, { token: this.token, ...options });
    } catch (err) {
      if (isFatalAuth(err.code)) this.die(err.code, err.message);
      throw err;
    }
  }

  /** A socket event with an ack; refused with "network" while disconnected. */
  async call(event, payload, timeoutMs = 10000) {
    if (!this.socket.connected) throw new CarelineError("network", "not connected");
    try {
      return await call(this.socket, event, payload, timeoutMs);
    } catch (err) {
      if (isFatalAuth(err.code)) this.die(err.code, err.message);
      // No answer from a server that answers in milliseconds: the connection is dead but does
      // not know it yet (engine.io would notice after 45 s). Drop it; socket.io reconnects.
      if (err.code === "timeout" && this.socket.connected) this.socket.io.engine.close();
      throw err;
    }
  }

  socketConnected() {
    return Boolean(this.socket && this.socket.connected);
  }

  upload(threadId, file) {
    return this.http(`/api/threads/${encodeURIComponent(threadId)}/attachments`, { method: "POST", body: file });
  }

  /** A blob: URL for an attachment (fetched with the bearer token; img cannot send it). */
  attachmentUrl(url) {
    let found = this.images.get(url);
    if (!found) {
      found = this.http(url).then((blob) => {
        if (!(blob instanceof Blob)) throw new CarelineError("internal", "not an image");
        return URL.createObjectURL(blob);
      });
      found.catch(() => this.images.delete(url));
      this.images.set(url, found);
    }
    return found;
  }

  _status(status) {
    if (this.fatal) return;
    if (status.state === "refused") {
      if (isFatalAuth(status.code)) {
        this.die(status.code, status.message);
        return;
      }
      // Refused for another reason (the store was unavailable): try again a little later.
      this.banner({ state: "offline" });
      setTimeout(() => this.socket.connect(), 5000);
      return;
    }
    this.banner(status);
    document.body.dataset.connection = status.state;
    if (status.state === "connected") {
      this._resync();
    } else if (status.state === "reconnecting" && status.attempt === 0) {
      announce("Connection lost. Reconnecting…");
    }
    if (this.conversation) this.conversation.renderPending();
  }

  _browserOffline() {
    if (this.fatal) return;
    this.browserOffline = true;
    this.socket.disconnect();
    this.bannerElement.hidden = false;
    this.bannerElement.dataset.state = "offline";
    this.bannerElement.textContent = "You are offline. What you write is kept and sent when the connection is back.";
    document.body.dataset.connection = "offline";
    announce("You are offline.");
    if (this.conversation) this.conversation.renderPending();
  }

  _browserOnline() {
    if (this.fatal || !this.browserOffline) return;
    this.browserOffline = false;
    this.banner({ state: "reconnecting", attempt: 0 });
    this.socket.connect();
    this.outbox.kick();
  }

  /** After every (re)connect: the list, the open thread's missed entries, unsent messages. */
  async _resync() {
    this.outbox.kick();
    try {
      const { threads } = await this.call("thread.list", { limit: LIST_PAGE });
      this._refreshList(threads, LIST_PAGE);
      if (this.conversation) {
        const fresh = this.threads.get(this.conversation.thread.thread_id);
        if (fresh) this.conversation.updateThread(fresh);
        await this.conversation.sync();
        this.conversation.flushRead();
      }
    } catch (err) {
      // The connection dropped again; the next connect resyncs.
    }
  }

  // -- sending ---------------------------------------------------------------------------------

  async _deliver(entry, photo) {
    if (entry.attachment_ids === null) {
      if (!photo) throw new CarelineError("photo_lost", "the photo is gone");
      const id = await photo.upload((file) => this.upload(entry.thread_id, file));
      entry.attachment_ids = [id];
      this.outbox.persist();
    }
    const body = { client_msg_id: entry.client_msg_id, text: entry.text, attachment_ids: entry.attachment_ids };
    let reply;
    if (this.socketConnected()) {
      reply = await this.call("thread.send", { thread_id: entry.thread_id, ...body }, 5000);
    } else {
      reply = await this.http(`/api/threads/${encodeURIComponent(entry.thread_id)}/messages`, { method: "POST", json: body });
    }
    this._sent(reply);
    return reply;
  }

  _sent(reply) {
    const thread = { ...reply.thread, read_seq: reply.message.seq };
    this._upsert(thread);
    const conv = this.conversation;
    if (conv && conv.thread.thread_id === reply.message.thread_id) {
      conv.apply(reply.message);
      conv.ownHorizon(reply.message.seq);
      conv.updateThread(reply.thread);
      conv._scrollToEnd();
    }
  }

  _outboxChanged(entry) {
    const conv = this.conversation;
    if (conv && conv.thread.thread_id === entry.thread_id) conv.renderPending();
    if (entry.status === "failed") announce(`Message not sent: ${errorText(entry.error)}`);
    if (entry.status === "sent") announce("Message sent.");
  }

  // -- pushes ----------------------------------------------------------------------------------

  _onMessage(data) {
    this._upsert(data.thread);
    const conv = this.conversation;
    if (conv && conv.thread.thread_id === data.thread_id) {
      conv.onPush(data);
    } else if (data.message.sender !== this.me.sub && data.message.kind === "message") {
      const t = this.threads.get(data.thread_id);
      announce(`New message in message visit ${t ? t.patient_ref : ""}.`);
    }
  }

  _onUpdated(thread) {
    this._upsert(thread, { announceNew: true });
    const conv = this.conversation;
    if (conv && conv.thread.thread_id === thread.thread_id) conv.updateThread(thread);
  }

  _onRead(data) {
    if (data.sub === this.me.sub) {
      const t = this.threads.get(data.thread_id);
      if (t) this._upsert({ ...t, read_seq: Math.max(t.read_seq || 0, data.read_seq) });
    }
    const conv = this.conversation;
    if (conv && conv.thread.thread_id === data.thread_id) conv.onRead(data);
  }

  /** The open conversation changed its thread (state, horizon). */
  onThread(thread) {
    this._upsert(thread);
  }

  async refreshThread(threadId) {
    try {
      const thread = await this.http(`/api/threads/${encodeURIComponent(threadId)}`);
      this._upsert(thread);
      if (this.conversation && this.conversation.thread.thread_id === threadId) this.conversation.updateThread(thread);
    } catch (err) {
      if (err.code === "thread.not_found") {
        this.threads.delete(threadId);
        this._renderList();
      }
    }
  }

  // -- the list --------------------------------------------------------------------------------

  /** Whether this reader lists a thread (a clinician: the queue and its own threads). */
  _listed(thread) {
    if (this.me.role !== "clinician") return true;
    return thread.state === "open" || thread.assigned_to === this.me.sub;
  }

  _upsert(thread, { announceNew = false } = {}) {
    if (!thread) return;
    const old = this.threads.get(thread.thread_id);
    if (old && thread.version < old.version) return; // an older view arriving late
    const merged = { ...(old || {}), ...thread };
    if (old) {
      // Pushes may overtake each other: activity only moves forward.
      merged.last_seq = Math.max(old.last_seq, thread.last_seq);
      merged.updated_at = Math.max(old.updated_at, thread.updated_at);
    }
    merged.read_seq = Math.max((old && old.read_seq) || 0, thread.read_seq || 0);
    merged.unread = Math.max(0, merged.last_seq - merged.read_seq);
    if (!this._listed(merged)) {
      this.threads.delete(thread.thread_id);
    } else {
      this.threads.set(thread.thread_id, merged);
      if (!old && announceNew && this.me.role === "clinician" && merged.state === "open") {
        announce(`New message visit in the queue: ${merged.patient_ref}.`);
      }
    }
    this._renderList();
  }

  /** A fresh first page from the server: threads it no longer lists in that range are gone. */
  _refreshList(threads, limit) {
    const cutoff = threads.length >= limit ? Math.min(...threads.map((t) => t.updated_at)) : -Infinity;
    const present = new Set(threads.map((t) => t.thread_id));
    for (const [id, t] of this.threads) {
      if (t.updated_at >= cutoff && !present.has(id)) this.threads.delete(id);
    }
    for (const t of threads) {
      const old = this.threads.get(t.thread_id);
      const merged = { ...(old || {}), ...t };
      if (this._listed(merged)) this.threads.set(t.thread_id, merged);
      else this.threads.delete(t.thread_id);
    }
    if (this.listHasMore === false) this.listHasMore = threads.length >= limit;
    this._renderList();
  }

  async _loadMoreThreads() {
    const all = [...this.threads.values()];
    if (!all.length) return;
    const before = Math.min(...all.map((t) => t.updated_at));
    this.moreButton.disabled = true;
    try {
      const { threads } = await this.http(`/api/threads?limit=${LIST_PAGE}&before=${before}`);
      for (const t of threads) if (this._listed(t)) this.threads.set(t.thread_id, t);
      this.listHasMore = threads.length >= LIST_PAGE;
      this._renderList();
    } catch (err) {
      this.listError.hidden = false;
      this.listError.textContent = errorText(err.code, err.message);
    } finally {
      this.moreButton.disabled = false;
    }
  }

  _renderShell() {
    const me = this.me;
    const roleName = { parent: "family", clinician: "clinician", admin: "administrator (read only)" }[me.role] || me.role;
    this.layout = el("div", { class: "threads-layout", dataset: { view: "list" } });
    this.listPane = el("nav", { class: "list-pane", "aria-labelledby": "list-heading" });
    this.threadPane = el("div", { class: "thread-pane" });
    this.layout.append(this.listPane, this.threadPane);
    const main = document.querySelector("main");
    main.replaceChildren(
      el(
        "header",
        { class: "page-head" },
        el("h1", {}, "Message visits"),
        el("p", { class: "muted", dataset: { testid: "who" } }, `Signed in as ${roleName}.`),
      ),
      this.layout,
    );

    const heading = { parent: "Your message visits", clinician: "Threads", admin: "All message visits" }[me.role] || "Message visits";
    this.listError = el("p", { class: "form-error", role: "alert", hidden: true });
    this.lists = el("div", { class: "lists" });
    this.moreButton = el("button", { type: "button", hidden: true, onclick: () => this._loadMoreThreads() }, "Show older message visits");
    const parts = [el("h2", { id: "list-heading" }, heading)];
    if (me.role === "parent" && !me.thread_id) parts.push(this._newThreadForm());
    parts.push(this.listError, this.lists, this.moreButton);
    this.listPane.append(...parts);
    this._emptyThreadPane();
  }

  _emptyThreadPane() {
    const hint = {
      parent: "Choose a message visit, or start a new one to ask your clinic a question.",
      clinician: "Choose a thread from the queue to read it and pick it up.",
      admin: "Choose a message visit to read it.",
    }[this.me.role];
    this.threadPane.replaceChildren(el("p", { class: "empty muted" }, hint || "Choose a message visit."));
  }

  _newThreadForm() {
    const input = el("input", {
      id: "patient-ref",
      name: "patient_ref",
      required: true,
      autocomplete: "off",
      spellcheck: "false",
      maxlength: "128",
      pattern: "[A-Za-z0-9_.:\\-]{1,128}",
      "aria-describedby": "patient-ref-help",
    });
    const error = el("p", { class: "form-error", role: "alert", hidden: true });
    const button = el("button", { type: "submit", class: "primary" }, "Start message visit");
    let clientThreadId = null; // one per attempt, so a retried submit opens one thread
    let lastRef = null;
    const form = el(
      "form",
      {
        class: "new-thread",
        "aria-labelledby": "new-thread-heading",
        onsubmit: async (e) => {
          e.preventDefault();
          const ref = input.value.trim();
          error.hidden = true;
          if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(ref)) {
            error.hidden = false;
            error.textContent = "Type the reference exactly as your clinic gave it: letters, digits and - _ . : only, no spaces, no names.";
            input.focus();
            return;
          }
          if (ref !== lastRef || !clientThreadId) {
            clientThreadId = newClientId();
            lastRef = ref;
          }
          button.disabled = true;
          try {
            const reply = await this._createThread(ref, clientThreadId);
            clientThreadId = null;
            input.value = "";
            this._upsert(reply.thread);
            this.navigate(reply.thread.thread_id);
          } catch (err) {
            error.hidden = false;
            error.textContent = errorText(err.code, err.message);
          } finally {
            button.disabled = false;
          }
        },
      },
      el("h3", { id: "new-thread-heading" }, "Ask a new question"),
      el("label", { for: "patient-ref" }, "Patient reference"),
      input,
      el(
        "p",
        { id: "patient-ref-help", class: "help muted" },
        "The code your clinic gave you for your child, for example on the appointment letter. It is a reference, not a name: never type a name or a birth date here.",
      ),
      error,
      button,
    );
    return form;
  }

  async _createThread(ref, clientThreadId) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.http("/api/threads", { method: "POST", json: { patient_ref: ref, client_thread_id: clientThreadId } });
      } catch (err) {
        if (!isTransient(err.code, err.status) || attempt >= 3) throw err;
        await new Promise((r) => setTimeout(r, 1000 * 2 ** attempt));
      }
    }
  }

  _renderList() {
    if (!this.lists) return;
    const sorted = [...this.threads.values()].sort((a, b) => b.updated_at - a.updated_at);
    const openId = this.conversation ? this.conversation.thread.thread_id : null;
    const groups =
      this.me.role === "clinician"
        ? [
            ["Queue: waiting to be picked up", sorted.filter((t) => t.state === "open"), "queue", "The queue is empty."],
            ["Your threads", sorted.filter((t) => t.state !== "open"), "mine", "You have not picked up any thread yet."],
          ]
        : [[null, sorted, "all", this.me.role === "parent" ? "No message visits yet." : "No message visits."]];
    const sections = groups.map(([title, items, key, empty]) => {
      const list = el(
        "ul",
        { class: "thread-list", dataset: { list: key }, "aria-label": title || "Message visits" },
        items.map((t) => this._item(t, t.thread_id === openId)),
      );
      return el(
        "section",
        { class: "list-group" },
        title ? el("h3", {}, title, " ", el("span", { class: "count" }, `(${items.length})`)) : null,
        items.length ? list : el("p", { class: "muted empty-list" }, empty),
      );
    });
    this.lists.replaceChildren(...sections);
    this.moreButton.hidden = !this.listHasMore;
  }

  _item(t, current) {
    const unread = t.unread || 0;
    return el(
      "li",
      {},
      el(
        "a",
        {
          class: "thread-item",
          href: `/threads/${encodeURIComponent(t.thread_id)}`,
          "aria-current": current ? "page" : null,
          dataset: { threadId: t.thread_id, state: t.state },
          onclick: (e) => this.linkClick(e, t.thread_id),
        },
        el("span", { class: "ref" }, t.patient_ref),
        el("span", { class: "state" }, stateLabel(t.state, this.me.role)),
        el("span", { class: "when" }, timeLabel(t.updated_at)),
        unread > 0 ? el("span", { class: "unread", dataset: { testid: "unread" } }, String(unread), el("span", { class: "visually-hidden" }, " unread")) : null,
      ),
    );
  }

  // -- routing ---------------------------------------------------------------------------------

  linkClick(event, threadId) {
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    this.navigate(threadId);
  }

  navigate(threadId) {
    const path = threadId ? `/threads/${encodeURIComponent(threadId)}` : "/threads";
    if (window.location.pathname !== path) window.history.pushState(null, "", path);
    this.route();
  }

  async route() {
    if (this.fatal) return;
    const match = window.location.pathname.match(/^\/threads\/([^/]+)\/?$/);
    const threadId = match ? decodeURIComponent(match[1]) : this.me.thread_id;
    if (!threadId) {
      if (this.conversation) this.conversation.close();
      this.conversation = null;
      this.layout.dataset.view = "list";
      this._emptyThreadPane();
      this._renderList();
      document.title = "Message visits · Careline";
      return;
    }
    if (this.conversation && this.conversation.thread.thread_id === threadId) return;
    await this._openThread(threadId);
  }

  async _openThread(threadId) {
    if (this.conversation) this.conversation.close();
    this.conversation = null;
    this.layout.dataset.view = "thread";
    this.threadPane.replaceChildren(el("p", { class: "muted" }, "Loading the conversation…"));
    let thread;
    try {
      thread = await this.http(`/api/threads/${encodeURIComponent(threadId)}`);
    } catch (err) {
      if (this.fatal) return;
      this.threadPane.replaceChildren(
        el(
          "section",
          { class: "thread-missing", role: "alert" },
          el("h2", { tabindex: "-1" }, errorText(err.code, err.message)),
          el("a", { href: "/threads", onclick: (e) => this.linkClick(e, null) }, "Back to your message visits"),
        ),
      );
      this.threadPane.querySelector("h2").focus();
      return;
    }
    this._upsert(thread);
    const conv = new Conversation(this, thread);
    this.conversation = conv;
    this.threadPane.replaceChildren(conv.root);
    this._renderList();
    document.title = `${thread.patient_ref} · Message visits · Careline`;
    try {
      await conv.open();
    } catch (err) {
      if (this.fatal || this.conversation !== conv) return;
      conv._error(errorText(err.code, err.message));
    }
    if (this.conversation === conv) conv.heading.focus();
  }
}
