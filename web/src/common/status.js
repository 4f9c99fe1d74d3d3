// Status for people: a live region for changes (read out by screen readers), a connection
// banner, and a whole-page message for errors that retrying cannot fix.
import { describe } from "./errors.js";

/** Announce a change to screen readers (and show it in the page's caption line). */
export function announce(text) {
  const caption = document.getElementById("caption");
  if (caption) caption.textContent = text;
}

/** The connection banner: hidden when connected, else says what is happening. */
export function connectionBanner(element) {
  return (status) => {
    let text = "";
    if (status.state === "reconnecting") {
      text = status.attempt > 0 ? `Reconnecting (attempt ${status.attempt})…` : "Reconnecting…";
    } else if (status.state === "offline") {
      text = "Cannot reach the server. Retrying…";
    }
    element.textContent = text;
    element.hidden = text === "";
    element.dataset.state = status.state;
  };
}

/** Replace the page's main content with an explanation of `code` and what to do. */
export function showFatal(code, message) {
  const [headline, advice] = describe(code, message);
  const main = document.querySelector("main");
  main.replaceChildren();
  const box = document.createElement("section");
  box.className = "fatal";
  box.setAttribute("role", "alert");
  box.dataset.code = code;
  const h = document.createElement("h1");
  h.textContent = headline;
  const p = document.createElement("p");
  p.textContent = advice;
  box.append(h, p);
  main.append(box);
  h.tabIndex = -1;
  h.focus();
}

/** Create an element with attributes and children (text or nodes). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
