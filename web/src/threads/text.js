// Words of the message-visits page: states, senders, system entries, times, and what a person
// should read for each message-visit error code (docs/protocol.md "Message-visit error codes").
import { describe } from "../common/errors.js";

/** Photos the server accepts (it checks the bytes; this is only the early, client-side check). */
export const PHOTO_TYPES = ["image/jpeg", "image/png", "image/heic", "image/heif"];
/** The server's default threads.max_attachment_bytes; a lower configured limit answers 413. */
export const MAX_PHOTO_BYTES = 10 * 1024 * 1024;

const STATE_FOR_FAMILY = {
  open: "Waiting for a clinician",
  assigned: "A clinician is on it",
  answered: "Answered",
  closed: "Closed",
};
const STATE_FOR_STAFF = {
  open: "In the queue",
  assigned: "Picked up, to answer",
  answered: "Answered, waiting for the family",
  closed: "Closed",
};

/** A thread state as this role reads it. */
export function stateLabel(state, role) {
  const table = role === "parent" ? STATE_FOR_FAMILY : STATE_FOR_STAFF;
  return table[state] || state;
}

/** Who wrote an entry, from the reader's point of view (subs are opaque: roles only). */
export function senderLabel(message, me) {
  if (message.sender === me.sub) return "You";
  if (message.sender_role === "clinician") return "Clinician";
  if (message.sender_role === "parent") return me.role === "parent" ? "Your family" : "Family";
  if (message.sender_role === "admin") return "Care team";
  return message.sender_role;
}

/** The sentence shown for a system entry. */
export function systemText(message, me) {
  const byMe = message.sender === me.sub;
  switch (message.event) {
    case "opened":
      return byMe ? "You started this message visit." : "The message visit was started.";
    case "assigned":
      if (message.subject === me.sub) return "You picked this up.";
      return me.role === "parent" ? "A clinician picked up your question." : "A clinician picked this up.";
    case "closed":
      return byMe ? "You closed this message visit." : "The message visit was closed.";
    case "reopened":
      return byMe ? "You reopened this message visit." : "The message visit was reopened.";
    default:
      return `(${message.event})`;
  }
}

/** "14:05", or "3 Mar, 14:05" when not today. */
export function timeLabel(seconds) {
  const date = new Date(seconds * 1000);
  const now = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (date.toDateString() === now.toDateString()) return time;
  return `${date.toLocaleDateString([], { day: "numeric", month: "short" })}, ${time}`;
}

/** "1.2 MB" */
export function sizeLabel(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

const THREAD_ERRORS = {
  "thread.forbidden": "You cannot do this in message visits.",
  "thread.not_granted": "This link is for another message visit.",
  "thread.not_found": "This message visit does not exist or is no longer available to you.",
  "thread.not_assigned": "Pick this thread up before answering.",
  "thread.already_assigned": "Another clinician already picked this thread up.",
  "thread.closed": "This message visit is closed.",
  "thread.bad_transition": "This cannot be done in the thread's current state.",
  "thread.bad_state": "This cannot be done in the thread's current state.",
  "thread.stale": "The thread changed meanwhile. Try again.",
  "thread.reopen_window_passed": "This message visit was closed too long ago to reopen. Start a new one.",
  "thread.duplicate_mismatch": "This message clashes with one sent before. Discard it and write it again.",
  "thread.text_too_large": "The message is too long. Shorten it or split it in two.",
  "thread.attachment_too_large": "The photo is too large for the server. Choose a smaller photo.",
  "thread.unsupported_attachment":
    "The server refused this file: it is not a JPEG, PNG or HEIC photo (whatever its name says).",
  "thread.empty_message": "Write a message or add a photo.",
  "thread.too_many_attachments": "Too many photos in one message.",
  "thread.duplicate_attachment": "The same photo is attached twice.",
  "thread.attachment_not_found": "The photo is no longer available. Attach it again.",
  "thread.attachment_in_use": "The photo was already sent in another message. Attach it again.",
  "thread.message_not_found": "That message does not exist.",
  "thread.not_editable": "That entry cannot be changed.",
  "thread.not_sender": "Only the sender can change a message.",
  "thread.message_deleted": "That message was deleted.",
  "thread.seq_out_of_range": "The page is out of date. Reload it.",
  "thread.rate_limited": "You are sending too fast. Retrying in a moment.",
  photo_lost: "The photo had not reached the server when the page closed. Discard this message and attach the photo again.",
  invalid_payload: "The server refused this request as malformed.",
  payload_too_large: "This is too large for the server.",
};

/** One sentence for an error code (thread codes here, the rest from common/errors.js). */
export function errorText(code, fallback) {
  if (THREAD_ERRORS[code]) return THREAD_ERRORS[code];
  const [headline, advice] = describe(code, fallback);
  return `${headline} ${advice}`;
}

/** Errors worth retrying as they are (the network, a busy store, the rate limit). */
export function isTransient(code, status = 0) {
  return (
    code === "network" ||
    code === "timeout" ||
    code === "store_unavailable" ||
    code === "internal" ||
    code === "thread.rate_limited" ||
    code === "rate_limited" ||
    code === "thread.stale" ||
    status >= 500
  );
}
