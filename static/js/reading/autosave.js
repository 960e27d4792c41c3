// Autosave: the text goes to the server at the read's autosave pace, one save at a time (each continues the
// version the last one made); until the server has it, it is kept in this browser, so nothing typed is lost
// when the server is away, the session has expired or the tab is closed.
import { api } from "./api.js";
import { showConflict } from "./conflict.js";
import { currentText, keepLocally } from "./editor.js";
import { reloadCurrent, screen } from "./state.js";
import { lastSavedAt, setSaveState, showStatus } from "./status.js";
import { dropKept } from "./storage.js";
import { tabId } from "./tab.js";

// Whether the server answers (any module that talks to it says so here).
export function setOffline(value) {
  if (screen.offline === value) return;
  screen.offline = value;
  showStatus();
  // Back online: send what is waiting at once.
  if (!value && screen.cur?.dirty) save();
}

// An edit of the read on screen: to be saved, and kept in this browser meanwhile.
export function noteEdit(c) {
  c.dirty = true;
  c.editSeq++;
  keepLocally(c);
  if (!c.conflict && screen.saveState.kind !== "saving") setSaveState({ kind: "dirty", at: lastSavedAt() });
}

// Saves the read on screen if it has unsaved edits. options.keepalive: the page is going away.
export function save(options = {}) {
  const c = screen.cur;
  const keepalive = !!options.keepalive;
  if (c?.mode !== "edit" || !c.dirty || c.conflict) return Promise.resolve();
  if (c.saving) {
    // One save at a time (the base version must follow); a page being closed still has its local copy.
    if (!keepalive) return c.saving;
    if (c.savingSeq === c.editSeq) return c.saving;
    return c.saving.then(() => save());
  }
  const seq = c.editSeq;
  const body = { ...currentText(), base_version: c.baseVersion, tab_id: tabId() };
  c.lastSaveTry = Date.now();
  c.savingSeq = seq;
  if (!screen.offline) setSaveState({ kind: "saving", at: lastSavedAt() });
  c.saving = api("PUT", c.read.urls.autosave, body, { keepalive }).then((res) => {
    c.saving = null;
    if (res.ok) {
      c.baseVersion = res.data.version;
      c.read.saved = { ...body, version: res.data.version, saved_at: res.data.saved_at };
      if (c.editSeq === seq) {
        c.dirty = false;
        dropKept(c.id);
      } else if (c === screen.cur) keepLocally(c);
      setOffline(false);
      if (c === screen.cur) setSaveState({ kind: c.dirty ? "dirty" : "saved", at: res.data.saved_at });
    } else if (res.offline) {
      setOffline(true);
    } else {
      setOffline(false);
      if (c !== screen.cur) return; // left already: the local copy stays and comes back when the read is reopened
      if (res.status === 409 && res.data.current) showConflict(currentText(), res.data.current, res.data.detail);
      else if (res.status === 409 && res.data.code === "already_submitted") reloadCurrent();
      else {
        // Refused. A 403 (session expired) may pass later: keep retrying at the autosave pace.
        let detail = res.data.detail || `HTTP ${res.status}.`;
        if (res.status === 401 || res.status === 403) {
          detail += " If you were logged out, log in again in another tab: the text will then be sent.";
        } else c.refusedSeq = seq; // e.g. 400: the same text would be refused again; wait for an edit
        setSaveState({ kind: "error", detail, at: lastSavedAt() });
      }
    }
  });
  return c.saving;
}

// Called every second: saves when the autosave pace says so.
export function autosaveTick(now) {
  const c = screen.cur;
  if (c?.mode !== "edit" || !c.dirty || c.saving || c.conflict || c.refusedSeq === c.editSeq) return;
  if (now - c.lastSaveTry >= c.read.autosave_every_seconds * 1000) save();
}

// The page is going away (its text is sent with keepalive), or the network is back.
export function startAutosave() {
  window.addEventListener("pagehide", () => save({ keepalive: true }));
  window.addEventListener("online", () => {
    if (screen.cur?.dirty) save();
  });
}
