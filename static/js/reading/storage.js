// The browser's own storage: the reader's text, kept offline until the server has it (localStorage), and
// small notes of this tab (sessionStorage). Either may be missing (disabled, or full): then the functions
// here do nothing and return nothing, and the screen works without them.

function probe(name) {
  try {
    const s = window[name];
    s.setItem("cxr-trial:probe", "1");
    s.removeItem("cxr-trial:probe");
    return s;
  } catch {
    return null; // disabled or full: we work without it
  }
}
export const local = probe("localStorage");
export const session = probe("sessionStorage");

export function getJSON(store, key) {
  if (!store) return null;
  try {
    return JSON.parse(store.getItem(key) || "null");
  } catch {
    return null;
  }
}

export function setJSON(store, key, value) {
  if (!store) return;
  try {
    store.setItem(key, JSON.stringify(value));
  } catch {
    /* quota: nothing better to do */
  }
}

// ---- the text of a read not yet confirmed saved ---------------------------------------------------------------
const KEPT_PREFIX = "cxr-trial:read:"; // localStorage, per read; suffix ":correction" for a correction in progress

export function keptText(id, suffix = "") {
  return getJSON(local, KEPT_PREFIX + id + suffix);
}

export function keepText(id, text, suffix = "") {
  setJSON(local, KEPT_PREFIX + id + suffix, text);
}

export function dropKept(id, suffix = "") {
  if (local) local.removeItem(KEPT_PREFIX + id + suffix);
}

// ---- the last worklist click, so that the reading screen can time the radiograph from it ---------------------
const CLICK_KEY = "cxr-trial:clicked"; // sessionStorage: {href, at} of the last worklist click

export function rememberClick(href) {
  setJSON(session, CLICK_KEY, { href, at: Date.now() });
}

// The last click ({href, at}) or null; read once.
export function takeClick() {
  const clicked = getJSON(session, CLICK_KEY);
  if (clicked) session.removeItem(CLICK_KEY);
  return clicked;
}
