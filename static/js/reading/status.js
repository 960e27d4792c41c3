// The save status line under the editor ("Saved 09:14:03", "Editing · …", "Offline — …") and the clock it
// speaks in. What it says comes from screen.saveState and screen.offline.
import { saveStatus } from "./elements.js";
import { screen } from "./state.js";

const OFFLINE_TEXT = "Offline — your text is kept in this browser and will be sent when the server is back";

let statusTimer = 0;

export function clock(iso) {
  const d = iso ? new Date(iso) : new Date();
  return Number.isNaN(d.getTime())
    ? ""
    : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

export function dateTime(iso) {
  // Unambiguous across sites: 2025-06-02 09:14:03 (local time).
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(iso)}`;
}

export function showStatus() {
  clearTimeout(statusTimer);
  const { offline, saveState } = screen;
  saveStatus.classList.toggle("offline", offline);
  saveStatus.classList.toggle("error", !offline && saveState.kind === "error");
  let text = "";
  if (offline) text = OFFLINE_TEXT;
  else if (saveState.kind === "saved") text = `Saved ${clock(saveState.at)}`;
  else if (saveState.kind === "dirty") text = `Editing · ${saveState.at ? `last saved ${clock(saveState.at)}` : "not saved yet"}`;
  else if (saveState.kind === "error") text = `Not saved: ${saveState.detail} Your text is kept in this browser.`;
  else if (saveState.kind === "submitted") text = `Submitted ${clock(saveState.at)}`;
  else if (saveState.kind === "conflict") text = "Not saved: choose which text to keep (above).";
  else if (saveState.kind === "saving") {
    // Only say "Saving…" when it takes a moment, so a fast save does not flicker.
    text = saveStatus.textContent;
    statusTimer = setTimeout(() => {
      if (screen.saveState.kind === "saving" && !screen.offline) saveStatus.textContent = "Saving…";
    }, 300);
  }
  saveStatus.textContent = text;
}

// state: {kind: "none" | "saving" | "saved" | "dirty" | "error" | "submitted" | "conflict", at (ISO time), detail}
export function setSaveState(state) {
  screen.saveState = state;
  showStatus();
}

export function lastSavedAt() {
  return screen.saveState.at || screen.cur?.read.saved?.saved_at || null;
}
