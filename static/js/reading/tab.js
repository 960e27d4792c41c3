// This tab's id, sent with every save, submit and event: the server tells two tabs on one read apart by it.
import { session } from "./storage.js";

const TAB_KEY = "cxr-trial:tab-id"; // sessionStorage: this tab's id (survives a reload)

function randomId() {
  // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

let id = session?.getItem(TAB_KEY) || randomId();
if (session) session.setItem(TAB_KEY, id);

// "Duplicate tab" copies sessionStorage, and with it the id: ask the other tabs whether ours is taken.
if ("BroadcastChannel" in window) {
  const nonce = randomId();
  const channel = new BroadcastChannel("cxr-trial-tabs");
  channel.onmessage = (e) => {
    const m = e.data || {};
    if (m.type === "probe" && m.id === id && m.nonce !== nonce) channel.postMessage({ type: "taken", nonce: m.nonce });
    else if (m.type === "taken" && m.nonce === nonce) {
      id = randomId();
      if (session) session.setItem(TAB_KEY, id);
    }
  };
  channel.postMessage({ type: "probe", id, nonce });
}

export function tabId() {
  return id;
}
