// Timing events: the server measures a read's active and wall time from them (opened, image_shown, first_edit,
// idle, resumed, heartbeat, hidden, visible). The server stamps each event with its own clock; client_time is
// only a cross-check. Events are not retried when the server does not answer: a late event would carry a wrong
// server time.
import { api } from "./api.js";
import { save, setOffline } from "./autosave.js";
import { reloadCurrent, screen } from "./state.js";
import { session } from "./storage.js";
import { tabId } from "./tab.js";

const FIRST_EDIT_PREFIX = "cxr-trial:first-edit:"; // sessionStorage: first_edit already sent (per read, per tab)
const INPUT_EVENTS = ["pointermove", "pointerdown", "keydown", "wheel", "touchstart"];

let idle = false;
let lastInput = Date.now();
let lastBeat = Date.now();

// options.keepalive: the page is going away; send now, not behind slower requests.
export function sendEvent(kind, options = {}) {
  const c = screen.cur;
  if (c?.mode !== "edit" || !c.read.urls.events) return Promise.resolve();
  const body = { kind, client_time: new Date().toISOString(), tab_id: tabId() };
  const send = () =>
    api("POST", c.read.urls.events, body, { keepalive: options.keepalive }).then((res) => {
      if (res.offline) setOffline(true);
      else {
        setOffline(false);
        if (res.status === 409 && res.data.code === "already_submitted" && c === screen.cur) reloadCurrent();
      }
    });
  // Leaving the page: send now, not behind slower requests. Otherwise keep the order of events.
  if (options.keepalive) return send();
  c.events = c.events.then(send);
  return c.events;
}

// first_edit once per read and tab, even across reloads.
export function noteFirstEdit(c) {
  const key = FIRST_EDIT_PREFIX + c.id;
  if (c.firstEditSent || session?.getItem(key)) return;
  c.firstEditSent = true;
  if (session) session.setItem(key, "1");
  sendEvent("first_edit");
}

// The reader is here now (a read was opened, the tab came back): not idle, and the heartbeat starts over.
export function resetActivity() {
  idle = false;
  lastInput = lastBeat = Date.now();
}

function onInput() {
  lastInput = Date.now();
  if (idle) {
    idle = false;
    lastBeat = Date.now();
    sendEvent("resumed");
  }
}

// Called every second: idle after a while without input, a heartbeat while active (visible tabs only).
export function timingTick(now) {
  const c = screen.cur;
  if (c?.mode !== "edit" || document.visibilityState !== "visible") return;
  const read = c.read;
  if (!idle && now - lastInput >= read.idle_after_seconds * 1000) {
    idle = true;
    sendEvent("idle");
  }
  if (!idle && now - lastBeat >= read.heartbeat_seconds * 1000) {
    lastBeat = now;
    sendEvent("heartbeat");
  }
}

export function startTiming() {
  for (const type of INPUT_EVENTS) window.addEventListener(type, onInput, { capture: true, passive: true });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") {
      sendEvent("hidden", { keepalive: true });
      save({ keepalive: true });
    } else {
      resetActivity();
      sendEvent("visible");
    }
  });
}
