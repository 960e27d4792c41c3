// Opening a read: from the data embedded in the page or from the API; leaving the one on screen first (saved,
// and said to be off screen); filling the screen in; choosing the text to start from; the radiographs (every image
// of the case's study, study.js: the primary one's paint is the "image shown" of the read's timing).
import { api } from "./api.js";
import { save } from "./autosave.js";
import { showConflict } from "./conflict.js";
import { buildFlags, clearInvalid, putText, sameText, setEditable, setSource } from "./editor.js";
import {
  actionError,
  app,
  banner,
  byId,
  conflictBox,
  correctButton,
  correctionSubmit,
  loadError,
  nextButton,
  reasonBox,
  submitButton,
} from "./elements.js";
import { closeConfirm, showActions, showReport } from "./report.js";
import { screen } from "./state.js";
import { setSaveState } from "./status.js";
import { dropKept, keptText } from "./storage.js";
import { resetActivity, sendEvent } from "./timing.js";
import { createStudy } from "../study.js";

export const study = createStudy(byId("viewer"), { label: "Chest radiograph" });
export const viewer = study.primary; // the primary image's viewer

let loadSeq = 0;

function setLoading(loading) {
  app.dataset.state = loading ? "loading" : "ready";
  for (const b of [submitButton, nextButton, correctButton, correctionSubmit]) b.disabled = loading;
  if (loading) setEditable(false);
}

function showLoadError(res, retry) {
  loadError.replaceChildren();
  const text = document.createElement("span");
  text.textContent = res.offline
    ? "The server did not answer. "
    : `${res.data.detail || `This case could not be opened (HTTP ${res.status}).`} `;
  loadError.appendChild(text);
  if (res.offline) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "btn btn-sm btn-outline-light ms-2";
    b.textContent = "Try again";
    b.addEventListener("click", retry);
    loadError.appendChild(b);
  }
  const a = document.createElement("a");
  a.href = app.dataset.worklistUrl;
  a.className = "ms-2";
  a.textContent = "Back to the worklist";
  loadError.appendChild(a);
  loadError.hidden = false;
}

async function leaveCurrent() {
  const c = screen.cur;
  if (!c) return;
  closeConfirm();
  if (c.mode === "edit") {
    // Save first (waiting a little: the local copy covers a slow or absent server), then say the read is
    // off screen, so that the server does not see the save (a sign of activity) after "hidden".
    await Promise.race([save(), new Promise((r) => setTimeout(r, 3000))]);
    sendEvent("hidden");
  }
  screen.cur = null;
}

function resetPanel() {
  putText(null);
  reasonBox.value = "";
  clearInvalid();
  setSource(null, null);
  conflictBox.hidden = true;
  banner.hidden = true;
  loadError.hidden = true;
  actionError.hidden = true;
  showActions("edit");
  submitButton.disabled = false;
  nextButton.classList.replace("btn-primary", "btn-outline-light");
  byId("case-code").textContent = "…";
  byId("case-position").textContent = "";
  byId("clinical-history").textContent = "";
}

// how: {push (a new history entry), t0 (performance.now() of the click that asked for this read), source (what
// the click was)}.
export async function openRead(apiUrl, how) {
  const seq = ++loadSeq;
  setLoading(true); // no typing into, or double click on, the read being left
  await leaveCurrent();
  if (seq !== loadSeq) return;
  study.clear(); // never show the previous case's radiographs next to the new case
  delete app.dataset.imageShownMs;
  resetPanel();
  setLoading(true);
  const res = await api("GET", apiUrl);
  if (seq !== loadSeq) return;
  if (!res.ok) {
    setLoading(false);
    setEditable(false);
    submitButton.disabled = true;
    showLoadError(res, () => openRead(apiUrl, how));
    return;
  }
  const read = res.data;
  const state = { apiUrl };
  if (how.push) history.pushState(state, "", read.page_url);
  else history.replaceState(state, "", read.page_url || location.href);
  show(read, how);
}

export function reloadCurrent() {
  if (!screen.cur) return;
  const apiUrl = history.state?.apiUrl || app.dataset.apiUrl;
  screen.cur.mode = "reloading"; // nothing more to save or send for this copy
  openRead(apiUrl, { push: false, t0: performance.now(), source: "reload" });
}

// Puts `read` (the API's data) on screen; `how` as for openRead.
export function show(read, how) {
  const c = {
    read,
    id: read.id,
    mode: read.report ? "submitted" : "edit",
    baseVersion: read.saved ? read.saved.version : null,
    dirty: false,
    editSeq: 0,
    saving: null,
    savingSeq: -1,
    conflict: null,
    lastSaveTry: 0,
    refusedSeq: -1,
    events: Promise.resolve(),
    firstEditSent: false,
  };
  screen.cur = c;
  app.dataset.readId = String(read.id);
  byId("case-code").textContent = read.case;
  byId("case-position").textContent = read.position && read.of ? `${read.position} of ${read.of}` : "";
  document.title = `${read.case} · Reading · CXR-Trial`;
  byId("clinical-history").textContent = read.clinical_history || "None given.";
  buildFlags(read.findings || []);
  setLoading(false);

  nextButton.textContent = read.next ? "Next case →" : "Back to worklist";
  nextButton.title = read.next ? "Open the next case on your worklist" : "No further case available now";

  if (read.report) {
    dropKept(read.id);
    showReport(read.report);
  } else {
    setEditable(true);
    chooseText(c);
    resetActivity();
    sendEvent("opened");
  }

  study.setLabel(`Chest radiograph, case ${read.case}`);
  // The primary image first (an older payload has no "images"); the others load once it is painted.
  study.load(read.images?.length ? read.images : [read.image]).then(
    (shown) => {
      if (c !== screen.cur) return;
      const ms = Math.round(shown.at - how.t0);
      app.dataset.imageShownMs = String(ms);
      console.log(`[cxr-trial] case ${read.case}: radiograph painted ${ms} ms after ${how.source}`);
      document.dispatchEvent(new CustomEvent("cxr:image-shown", { detail: { readId: read.id, ms, source: how.source } }));
      sendEvent("image_shown");
      prefetchNext(read);
    },
    () => {
      /* the viewer says so on screen */
    },
  );
}

// The text to start from: unsent text of this browser (if it continues the server's version), else the
// saved text, else the AI draft (assisted arm), else nothing.
function chooseText(c) {
  const read = c.read;
  const saved = read.saved;
  const draft = read.draft;
  const fromServer = saved || (draft ? { findings: draft.findings, impression: draft.impression, finding_flags: {} } : null);
  const draftBadge = draft ? `${draft.label || "AI draft"} — edit freely` : null;
  putText(fromServer);
  if (saved) setSaveState({ kind: "saved", at: saved.saved_at });
  else setSaveState({ kind: "none" });
  const mine = keptText(read.id);
  if (mine && !sameText(mine, fromServer || { findings: "", impression: "", finding_flags: {} })) {
    const serverVersion = saved ? saved.version : null;
    putText(mine);
    c.dirty = true;
    c.editSeq++;
    const base = mine.base_version === undefined ? null : mine.base_version;
    if (base === serverVersion || !saved) {
      setSource(draftBadge, "Restored your unsent text from this browser.");
      setSaveState({ kind: "dirty", at: saved ? saved.saved_at : null });
      c.lastSaveTry = 0; // send it at the next tick
    } else {
      setSource(draftBadge, null);
      showConflict(mine, saved, "This browser kept text that was never saved, and a newer text was saved elsewhere.");
    }
    return;
  }
  if (mine) dropKept(read.id);
  setSource(draftBadge, saved ? "Your saved text, restored." : null);
}

// Warm the browser cache for the next radiograph, if the API names it (optional field).
function prefetchNext(read) {
  const next = read.next;
  if (!next?.display_url) return;
  fetch(next.display_url, { credentials: "same-origin" }).catch(() => {});
}
