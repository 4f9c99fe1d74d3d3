// Careline error codes (docs/protocol.md) -> what a person should read and do.

/** An error from the server (HTTP error body, socket.io error ack or refused connect). */
export class CarelineError extends Error {
  constructor(code, message, status = 0) {
    super(message || code);
    this.name = "CarelineError";
    this.code = code;
    this.status = status;
  }
}

const LINK_ADVICE = "Ask your clinic or pharmacy for a new link.";

const HUMAN = {
  "auth.missing": ["This page needs a sign-in link.", LINK_ADVICE],
  "auth.expired": ["This link has expired.", LINK_ADVICE],
  "auth.revoked": ["This link is no longer valid.", LINK_ADVICE],
  "auth.malformed": ["This link is not valid.", "Check that you opened the whole link. " + LINK_ADVICE],
  "auth.bad_signature": ["This link is not valid.", LINK_ADVICE],
  "auth.bad_algorithm": ["This link is not valid.", LINK_ADVICE],
  "auth.invalid_claims": ["This link is not valid.", LINK_ADVICE],
  "auth.not_yet_valid": ["This link is not valid yet.", "Try again at the time of your appointment."],
  "auth.invalid": ["This link is not valid.", LINK_ADVICE],
  forbidden: ["You do not have access to this page.", LINK_ADVICE],
  not_found: ["This page or visit does not exist.", LINK_ADVICE],
  store_unavailable: ["The service is busy.", "We will keep trying."],
  network: ["Cannot reach the server.", "Check your connection. We will keep trying."],
  timeout: ["The server did not answer in time.", "We will keep trying."],
  rate_limited: ["You are sending too fast.", "Wait a moment and try again."],
};

/** [headline, advice] for an error code. */
export function describe(code, fallbackMessage) {
  if (HUMAN[code]) return HUMAN[code];
  if (code && code.startsWith("auth.")) return HUMAN["auth.invalid"];
  return [fallbackMessage || "Something went wrong.", "Try again in a moment."];
}

/** Whether the error means the credentials are unusable (retrying cannot help). */
export function isFatalAuth(code) {
  return typeof code === "string" && (code.startsWith("auth.") || code === "forbidden");
}
