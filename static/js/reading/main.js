// The reading screen (templates/reading/read.html): shows the read embedded in the page (the next ones come from
// the API), fills the editor (the reader's saved text, else the AI draft in the assisted arm, else nothing: the
// same screen in both arms), autosaves, sends the timing events the server measures reading time from, submits
// with a confirmation, corrects a submitted report as a new version, and moves to the next case without
// reloading the page.
//
// Nothing typed may be lost: every keystroke is kept in localStorage (per read) until the server has it, and
// an autosave refused because another tab saved first is shown side by side, never silently overwritten.
//
// This module wires the others together: storage.js (the browser's storage), api.js (the server), tab.js (this
// tab's id), state.js (what they share), elements.js, editor.js (the text in the form), status.js (the save
// status line), autosave.js, conflict.js (two tabs, one read), timing.js (events, idle, heartbeat, visibility),
// report.js (confirm, submit, correct) and loader.js (opening a read).
import { autosaveTick, noteEdit, save, startAutosave } from "./autosave.js";
import { keepMine, takeTheirs } from "./conflict.js";
import { app, byId, correctButton, correctionCancel, correctionSubmit, confirmButton, form, nextButton, submitButton } from "./elements.js";
import { openRead, reloadCurrent, show, study, viewer } from "./loader.js";
import {
  cancelCorrection,
  confirmOpen,
  confirmPending,
  enterCorrection,
  keepCorrection,
  openConfirm,
  startConfirm,
} from "./report.js";
import { onReload, screen } from "./state.js";
import { takeClick } from "./storage.js";
import { tabId } from "./tab.js";
import { noteFirstEdit, startTiming, timingTick } from "./timing.js";

onReload(reloadCurrent);

// ---- every second: autosave and timing ----------------------------------------------------------------------------
startTiming();
setInterval(() => {
  const now = Date.now();
  autosaveTick(now);
  timingTick(now);
}, 1000);
startAutosave();

// ---- two tabs, one read ---------------------------------------------------------------------------------------------
byId("conflict-keep").addEventListener("click", () => {
  if (keepMine()) save();
});
byId("conflict-take").addEventListener("click", takeTheirs);

// ---- editing --------------------------------------------------------------------------------------------------------
form.addEventListener("input", (e) => {
  const c = screen.cur;
  if (!c) return;
  if (e.target.classList.contains("is-invalid") && e.target.value.trim()) e.target.classList.remove("is-invalid");
  if (c.mode === "correct") {
    keepCorrection(c);
    return;
  }
  if (c.mode !== "edit") return;
  noteEdit(c);
  noteFirstEdit(c);
});
form.addEventListener("submit", (e) => e.preventDefault());

// ---- submit, correct ------------------------------------------------------------------------------------------------
correctButton.addEventListener("click", enterCorrection);
correctionCancel.addEventListener("click", cancelCorrection);
startConfirm();
confirmButton.addEventListener("click", confirmPending);
submitButton.addEventListener("click", () => openConfirm("submit"));
correctionSubmit.addEventListener("click", () => openConfirm("correct"));

document.addEventListener("keydown", (e) => {
  if (!(e.ctrlKey || e.metaKey) || e.key !== "Enter" || !screen.cur) return;
  e.preventDefault();
  if (confirmOpen()) confirmPending();
  else openConfirm(screen.cur.mode === "correct" ? "correct" : "submit");
});

// ---- moving between reads -------------------------------------------------------------------------------------------
nextButton.addEventListener("click", () => {
  const c = screen.cur;
  if (!c) return;
  if (!c.read.next) {
    window.location.href = app.dataset.worklistUrl;
    return;
  }
  openRead(c.read.next.api_url, { push: true, t0: performance.now(), source: "next case" });
});

window.addEventListener("popstate", (e) => {
  if (e.state?.apiUrl) openRead(e.state.apiUrl, { push: false, t0: performance.now(), source: "history" });
});

// Keep the screen exactly as tall as the window below the navbar (wide layout only).
function fitHeight() {
  if (window.innerWidth <= 900) {
    app.style.height = "";
    return;
  }
  const top = app.getBoundingClientRect().top + window.scrollY;
  app.style.height = `${Math.max(480, window.innerHeight - top - 8)}px`;
}
window.addEventListener("resize", fitHeight);
fitHeight();

// ---- start ----------------------------------------------------------------------------------------------------------
// Time from the worklist click (previous page), if this page was opened by one; else from navigation start.
let start = { push: false, t0: 0, source: "page load" };
const clicked = takeClick();
if (clicked) {
  const age = Date.now() - clicked.at;
  if (clicked.href === location.href && age >= 0 && age < 60000) {
    start = { push: false, t0: performance.now() - age, source: "worklist click" };
  }
}
// The page embeds the read (the same data as the API's): show it at once, no round trip before the image.
const embedded = byId("read-data");
let initial = null;
if (embedded) {
  try {
    initial = JSON.parse(embedded.textContent);
  } catch {
    initial = null;
  }
}
if (initial?.id) {
  history.replaceState({ apiUrl: app.dataset.apiUrl }, "", initial.page_url || location.href);
  show(initial, start);
} else {
  openRead(app.dataset.apiUrl, start);
}

// For tests and benchmarks.
window.CxrReading = {
  viewer,
  study,
  tabId,
  current: () => {
    const c = screen.cur;
    return c ? { id: c.id, mode: c.mode, dirty: c.dirty, baseVersion: c.baseVersion, conflict: !!c.conflict } : null;
  },
  saveNow: () => {
    if (screen.cur) screen.cur.lastSaveTry = 0;
    return save();
  },
};
