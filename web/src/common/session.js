// Tokens arrive in the page link (?token=...); they are kept in sessionStorage and removed from
// the address bar so they do not end up in history, bookmarks or screenshots.
import { api } from "./api.js";
import { showFatal } from "./status.js";

/** The token from the link (stored under `key`), else the one stored earlier, else null. */
export function takeToken(key) {
  const url = new URL(window.location.href);
  const fromLink = url.searchParams.get("token");
  if (fromLink) {
    sessionStorage.setItem(key, fromLink);
    url.searchParams.delete("token");
    window.history.replaceState(null, "", url.pathname + url.search + url.hash);
    return fromLink;
  }
  return sessionStorage.getItem(key);
}

/** Forget a stored token (it expired or was revoked). */
export function dropToken(key) {
  sessionStorage.removeItem(key);
}

/** The identity behind a token: {sub, role, expires_at, visit_id, thread_id}; throws CarelineError. */
export function whoami(token) {
  return api("/api/session", { token });
}

/**
 * Sign the page in: the token from the link or storage, checked with the server.
 * Returns {token, me}, or null after replacing the page with an explanation (no token, expired,
 * revoked, not valid). While the server cannot be reached it retries with backoff (1 s doubling
 * to 15 s), saying so in `banner`.
 */
export async function signIn(key, banner) {
  const token = takeToken(key);
  if (!token) {
    showFatal("auth.missing");
    return null;
  }
  for (let attempt = 1; ; attempt += 1) {
    try {
      const me = await whoami(token);
      if (banner) banner.hidden = true;
      return { token, me };
    } catch (err) {
      if (err.code === "network" || err.code === "store_unavailable" || err.status >= 500) {
        const delay = Math.min(15000, 1000 * 2 ** (attempt - 1));
        if (banner) {
          banner.hidden = false;
          banner.textContent = `Cannot reach the server. Retrying in ${Math.round(delay / 1000)} s…`;
        }
        await new Promise((resolve) => setTimeout(resolve, delay));
        continue;
      }
      dropToken(key);
      showFatal(err.code, err.message);
      return null;
    }
  }
}
