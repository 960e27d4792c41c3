// The reader's pages.
//
// Worklist: remembers when a case was clicked, so the reading screen can tell how long the radiograph took
// to appear (console and data-image-shown-ms on #read-app).
//
// Reading screen: shows the read embedded in the page (the next ones come from the API), fills the editor (the
// reader's saved text, else the AI draft in the assisted arm, else nothing: the same screen in both arms),
// autosaves, sends the timing events the server measures reading time from, submits with a confirmation,
// corrects a submitted report as a new version, and moves to the next case without reloading the page.
//
// Nothing typed may be lost: every keystroke is kept in localStorage (per read) until the server has it, and
// an autosave refused because another tab saved first is shown side by side, never silently overwritten.
(function () {
  "use strict";

  const CLICK_KEY = "cxr-trial:clicked";            // sessionStorage: {href, at} of the last worklist click
  const TAB_KEY = "cxr-trial:tab-id";               // sessionStorage: this tab's id (survives a reload)
  const LOCAL_PREFIX = "cxr-trial:read:";           // localStorage: text of a read not yet confirmed saved
  const FIRST_EDIT_PREFIX = "cxr-trial:first-edit:";// sessionStorage: first_edit already sent (per read, per tab)
  const OFFLINE_TEXT = "Offline — your text is kept in this browser and will be sent when the server is back";
  const INPUT_EVENTS = ["pointermove", "pointerdown", "keydown", "wheel", "touchstart"];

  function storage(name) {
    try {
      const s = window[name];
      s.setItem("cxr-trial:probe", "1");
      s.removeItem("cxr-trial:probe");
      return s;
    } catch (err) {
      return null;   // disabled or full: we work without it
    }
  }
  const local = storage("localStorage");
  const session = storage("sessionStorage");

  function getJSON(store, key) {
    if (!store) return null;
    try { return JSON.parse(store.getItem(key) || "null"); } catch (err) { return null; }
  }
  function setJSON(store, key, value) {
    if (!store) return;
    try { store.setItem(key, JSON.stringify(value)); } catch (err) { /* quota: nothing better to do */ }
  }

  // ---- worklist page -------------------------------------------------------------------------------
  const worklist = document.getElementById("worklist");
  if (worklist) {
    worklist.addEventListener("click", function (e) {
      const link = e.target.closest("a[data-read-link]");
      if (link && session) setJSON(session, CLICK_KEY, { href: link.href, at: Date.now() });
    });
  }

  const app = document.getElementById("read-app");
  if (!app) return;

  // ---- elements --------------------------------------------------------------------------------------
  const $ = function (id) { return document.getElementById(id); };
  const form = $("report-form");
  const findingsBox = $("findings");
  const impressionBox = $("impression");
  const flagsBox = $("finding-flags");
  const reasonBox = $("correction-reason");
  const correctionBlock = $("correction");
  const sourceLabel = $("text-source");
  const saveStatus = $("save-status");
  const actionError = $("action-error");
  const submitButton = $("submit-button");
  const correctButton = $("correct-button");
  const correctionSubmit = $("correction-submit");
  const correctionCancel = $("correction-cancel");
  const nextButton = $("next-button");
  const banner = $("report-banner");
  const conflictBox = $("conflict");
  const loadError = $("load-error");
  const modalEl = $("confirm-modal");
  const confirmButton = $("confirm-button");
  const confirmError = $("confirm-error");
  const worklistUrl = app.dataset.worklistUrl;

  // ---- identity of this tab ----------------------------------------------------------------------------
  function randomId() {
    // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }
  let tabId = (session && session.getItem(TAB_KEY)) || randomId();
  if (session) session.setItem(TAB_KEY, tabId);
  // "Duplicate tab" copies sessionStorage, and with it the id: ask the other tabs whether ours is taken.
  if ("BroadcastChannel" in window) {
    const nonce = randomId();
    const channel = new BroadcastChannel("cxr-trial-tabs");
    channel.onmessage = function (e) {
      const m = e.data || {};
      if (m.type === "probe" && m.id === tabId && m.nonce !== nonce) channel.postMessage({ type: "taken", nonce: m.nonce });
      else if (m.type === "taken" && m.nonce === nonce) {
        tabId = randomId();
        if (session) session.setItem(TAB_KEY, tabId);
      }
    };
    channel.postMessage({ type: "probe", id: tabId, nonce: nonce });
  }

  // ---- talking to the server --------------------------------------------------------------------------------
  function csrfToken() {
    // The cookie first: it is renewed at login, while the page's hidden input may be older.
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (m) return decodeURIComponent(m[1]);
    const input = app.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  // Resolves (never rejects) to {ok, status, data, offline}; offline means "no usable answer, try later".
  async function api(method, url, body, options) {
    options = options || {};
    const controller = new AbortController();
    const timer = setTimeout(function () { controller.abort(); }, options.timeoutMs || 15000);
    const headers = { Accept: "application/json", "X-CSRFToken": csrfToken() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      const res = await fetch(url, {
        method: method, headers: headers, credentials: "same-origin", keepalive: !!options.keepalive,
        body: body === undefined ? undefined : JSON.stringify(body), signal: controller.signal,
      });
      let data = null;
      if ((res.headers.get("Content-Type") || "").includes("json")) {
        try { data = await res.json(); } catch (err) { data = null; }
      }
      if (res.ok && data === null) {
        // A login page instead of JSON: the session has expired.
        return { ok: false, status: res.status, data: { detail: "The server did not answer as expected: are you still logged in? Your text is kept in this browser." }, offline: false };
      }
      return { ok: res.ok, status: res.status, data: data || {}, offline: res.status >= 500 };
    } catch (err) {
      return { ok: false, status: 0, data: {}, offline: true };
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- state -------------------------------------------------------------------------------------------------
  // `cur` is the read on screen: {read, id, mode: "edit" | "submitted" | "correct", baseVersion, dirty,
  // editSeq (counts edits), saving (promise of the save in flight), conflict, lastSaveTry, events (a promise
  // chain that keeps events in order)}.
  let cur = null;
  let loadSeq = 0;
  let offline = false;
  let saveState = { kind: "none" };
  let idle = false;
  let lastInput = Date.now();
  let lastBeat = Date.now();
  let submitting = false;
  let statusTimer = 0;

  const viewer = window.CxrViewer.create($("viewer"), { label: "Chest radiograph" });
  const modal = window.bootstrap ? window.bootstrap.Modal.getOrCreateInstance(modalEl) : null;

  // ---- text in the editor ----------------------------------------------------------------------------------------
  function flagInputs() { return Array.from(flagsBox.querySelectorAll("input[type=checkbox]")); }

  function currentText() {
    const flags = {};
    flagInputs().forEach(function (box) { flags[box.value] = box.checked; });
    return { findings: findingsBox.value, impression: impressionBox.value, finding_flags: flags };
  }

  function putText(text) {
    findingsBox.value = (text && text.findings) || "";
    impressionBox.value = (text && text.impression) || "";
    const flags = (text && text.finding_flags) || {};
    flagInputs().forEach(function (box) { box.checked = flags[box.value] === true; });
  }

  function sameFlags(a, b) {
    const on = function (f) { return Object.keys(f || {}).filter(function (k) { return f[k]; }).sort().join("\n"); };
    return on(a) === on(b);
  }
  function sameText(a, b) {
    const norm = function (s) { return (s || "").replace(/\r\n/g, "\n"); };
    return !!a && !!b && norm(a.findings) === norm(b.findings) && norm(a.impression) === norm(b.impression) &&
      sameFlags(a.finding_flags, b.finding_flags);
  }

  function buildFlags(findings) {
    flagsBox.replaceChildren();
    findings.forEach(function (name, i) {
      const wrap = document.createElement("div");
      wrap.className = "form-check";
      const box = document.createElement("input");
      box.className = "form-check-input";
      box.type = "checkbox";
      box.id = "flag-" + i;
      box.value = name;
      const label = document.createElement("label");
      label.className = "form-check-label";
      label.htmlFor = box.id;
      label.textContent = name;
      wrap.append(box, label);
      flagsBox.appendChild(wrap);
    });
    if (!findings.length) flagsBox.textContent = "—";
  }

  function setEditable(editable) {
    findingsBox.readOnly = !editable;
    impressionBox.readOnly = !editable;
    flagInputs().forEach(function (box) { box.disabled = !editable; });
  }

  function setSource(badge, note) {
    sourceLabel.replaceChildren();
    if (badge) {
      const b = document.createElement("span");
      b.className = "badge text-bg-info";
      b.textContent = badge;
      sourceLabel.appendChild(b);
    }
    if (note) {
      const n = document.createElement("span");
      n.className = "text-body-secondary ms-2";
      n.textContent = note;
      sourceLabel.appendChild(n);
    }
  }

  function clearInvalid() {
    [impressionBox, reasonBox, findingsBox].forEach(function (box) { box.classList.remove("is-invalid"); });
  }
  function markInvalid(box, message) {
    const feedback = box.parentElement.querySelector(".invalid-feedback");
    if (feedback && message) feedback.textContent = message;
    box.classList.add("is-invalid");
    box.focus();
  }

  // ---- local copy (nothing lost) -------------------------------------------------------------------------------------
  function localKey(id, suffix) { return LOCAL_PREFIX + id + (suffix || ""); }

  function keepLocally(c) {
    setJSON(local, localKey(c.id), Object.assign(currentText(), { base_version: c.baseVersion, edited_at: new Date().toISOString() }));
  }
  function dropLocal(id, suffix) { if (local) local.removeItem(localKey(id, suffix)); }

  // ---- save status line -------------------------------------------------------------------------------------------------
  function clock(iso) {
    const d = iso ? new Date(iso) : new Date();
    return isNaN(d) ? "" : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  }

  function dateTime(iso) {
    // Unambiguous across sites: 2025-06-02 09:14:03 (local time).
    const d = new Date(iso);
    if (isNaN(d)) return "";
    const pad = function (n) { return String(n).padStart(2, "0"); };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " + clock(iso);
  }

  function showStatus() {
    clearTimeout(statusTimer);
    saveStatus.classList.toggle("offline", offline);
    saveStatus.classList.toggle("error", !offline && saveState.kind === "error");
    let text = "";
    if (offline) text = OFFLINE_TEXT;
    else if (saveState.kind === "saved") text = "Saved " + clock(saveState.at);
    else if (saveState.kind === "dirty") text = "Editing · " + (saveState.at ? "last saved " + clock(saveState.at) : "not saved yet");
    else if (saveState.kind === "error") text = "Not saved: " + saveState.detail + " Your text is kept in this browser.";
    else if (saveState.kind === "submitted") text = "Submitted " + clock(saveState.at);
    else if (saveState.kind === "conflict") text = "Not saved: choose which text to keep (above).";
    else if (saveState.kind === "saving") {
      // Only say "Saving…" when it takes a moment, so a fast save does not flicker.
      text = saveStatus.textContent;
      statusTimer = setTimeout(function () { if (saveState.kind === "saving" && !offline) saveStatus.textContent = "Saving…"; }, 300);
    }
    saveStatus.textContent = text;
  }
  function setSaveState(state) { saveState = state; showStatus(); }
  function setOffline(value) {
    if (offline === value) return;
    offline = value;
    showStatus();
    // Back online: send what is waiting at once.
    if (!value && cur && cur.dirty) save();
  }
  function lastSavedAt() { return saveState.at || (cur && cur.read.saved && cur.read.saved.saved_at) || null; }

  // ---- timing events -----------------------------------------------------------------------------------------------------
  // The server stamps each event with its own clock; client_time is only a cross-check. Events are not
  // retried when the server does not answer: a late event would carry a wrong server time.
  function sendEvent(kind, options) {
    const c = cur;
    if (!c || c.mode !== "edit" || !c.read.urls.events) return Promise.resolve();
    const body = { kind: kind, client_time: new Date().toISOString(), tab_id: tabId };
    const send = function () {
      return api("POST", c.read.urls.events, body, { keepalive: options && options.keepalive }).then(function (res) {
        if (res.offline) setOffline(true);
        else {
          setOffline(false);
          if (res.status === 409 && res.data.code === "already_submitted" && c === cur) reloadCurrent();
        }
      });
    };
    // Leaving the page: send now, not behind slower requests. Otherwise keep the order of events.
    if (options && options.keepalive) return send();
    c.events = c.events.then(send);
    return c.events;
  }

  function noteFirstEdit(c) {
    const key = FIRST_EDIT_PREFIX + c.id;
    if (c.firstEditSent || (session && session.getItem(key))) return;
    c.firstEditSent = true;
    if (session) session.setItem(key, "1");
    sendEvent("first_edit");
  }

  function onInput() {
    lastInput = Date.now();
    if (idle) {
      idle = false;
      lastBeat = Date.now();
      sendEvent("resumed");
    }
  }
  INPUT_EVENTS.forEach(function (type) { window.addEventListener(type, onInput, { capture: true, passive: true }); });

  function tick() {
    const c = cur;
    if (!c) return;
    const now = Date.now();
    const read = c.read;
    const visible = document.visibilityState === "visible";
    if (c.mode === "edit" && c.dirty && !c.saving && !c.conflict && c.refusedSeq !== c.editSeq &&
        now - c.lastSaveTry >= read.autosave_every_seconds * 1000) save();
    if (c.mode !== "edit" || !visible) return;
    if (!idle && now - lastInput >= read.idle_after_seconds * 1000) {
      idle = true;
      sendEvent("idle");
    }
    if (!idle && now - lastBeat >= read.heartbeat_seconds * 1000) {
      lastBeat = now;
      sendEvent("heartbeat");
    }
  }
  setInterval(tick, 1000);

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") {
      sendEvent("hidden", { keepalive: true });
      save({ keepalive: true });
    } else {
      idle = false;
      lastInput = lastBeat = Date.now();
      sendEvent("visible");
    }
  });
  window.addEventListener("pagehide", function () { save({ keepalive: true }); });
  window.addEventListener("online", function () { if (cur && cur.dirty) save(); });

  // ---- autosave ---------------------------------------------------------------------------------------------------------------
  function save(options) {
    const c = cur;
    const keepalive = !!(options && options.keepalive);
    if (!c || c.mode !== "edit" || !c.dirty || c.conflict) return Promise.resolve();
    if (c.saving) {
      // One save at a time (the base version must follow); a page being closed still has its local copy.
      if (!keepalive) return c.saving;
      if (c.savingSeq === c.editSeq) return c.saving;
      return c.saving.then(function () { return save(); });
    }
    const seq = c.editSeq;
    const body = Object.assign(currentText(), { base_version: c.baseVersion, tab_id: tabId });
    c.lastSaveTry = Date.now();
    c.savingSeq = seq;
    if (!offline) setSaveState({ kind: "saving", at: lastSavedAt() });
    c.saving = api("PUT", c.read.urls.autosave, body, { keepalive: keepalive }).then(function (res) {
      c.saving = null;
      if (res.ok) {
        c.baseVersion = res.data.version;
        c.read.saved = Object.assign({}, body, { version: res.data.version, saved_at: res.data.saved_at });
        if (c.editSeq === seq) { c.dirty = false; dropLocal(c.id); } else if (c === cur) keepLocally(c);
        setOffline(false);
        if (c === cur) setSaveState({ kind: c.dirty ? "dirty" : "saved", at: res.data.saved_at });
      } else if (res.offline) {
        setOffline(true);
      } else {
        setOffline(false);
        if (c !== cur) return;   // left already: the local copy stays and comes back when the read is reopened
        if (res.status === 409 && res.data.current) showConflict(currentText(), res.data.current, res.data.detail);
        else if (res.status === 409 && res.data.code === "already_submitted") reloadCurrent();
        else {
          // Refused. A 403 (session expired) may pass later: keep retrying at the autosave pace.
          let detail = res.data.detail || ("HTTP " + res.status + ".");
          if (res.status === 401 || res.status === 403) detail += " If you were logged out, log in again in another tab: the text will then be sent.";
          else c.refusedSeq = seq;   // e.g. 400: the same text would be refused again; wait for an edit
          setSaveState({ kind: "error", detail: detail, at: lastSavedAt() });
        }
      }
    });
    return c.saving;
  }

  // ---- two tabs, one read ------------------------------------------------------------------------------------------------------
  function showConflict(mine, theirs, detail) {
    const c = cur;
    if (sameText(mine, theirs)) {
      // The same words: nothing to choose, follow the newer version.
      c.baseVersion = theirs.version;
      c.dirty = false;
      dropLocal(c.id);
      setSaveState({ kind: "saved", at: theirs.saved_at });
      return;
    }
    c.conflict = { theirs: theirs };
    const fmt = function (t) {
      const flags = Object.keys(t.finding_flags || {}).filter(function (k) { return t.finding_flags[k]; });
      return "FINDINGS\n" + (t.findings || "—") + "\n\nIMPRESSION\n" + (t.impression || "—") + (flags.length ? "\n\nPresent: " + flags.join(", ") : "");
    };
    $("conflict-text").textContent = (detail || "Another tab saved a different text of this report.") +
      " Saved there at " + clock(theirs.saved_at) + ". Nothing was overwritten: choose which text to keep.";
    $("conflict-mine").textContent = fmt(mine);
    $("conflict-theirs").textContent = fmt(theirs);
    conflictBox.hidden = false;
    submitButton.disabled = true;
    setSaveState({ kind: "conflict" });
  }

  function resolveConflict(keepMine) {
    const c = cur;
    if (!c || !c.conflict) return;
    const theirs = c.conflict.theirs;
    c.conflict = null;
    conflictBox.hidden = true;
    submitButton.disabled = false;
    c.baseVersion = theirs.version;
    if (keepMine) {
      c.dirty = true;
      c.editSeq++;
      keepLocally(c);
      save();
    } else {
      putText(theirs);
      c.read.saved = theirs;
      c.dirty = false;
      dropLocal(c.id);
      setSaveState({ kind: "saved", at: theirs.saved_at });
    }
  }
  $("conflict-keep").addEventListener("click", function () { resolveConflict(true); });
  $("conflict-take").addEventListener("click", function () { resolveConflict(false); });

  // ---- editing -----------------------------------------------------------------------------------------------------------------
  form.addEventListener("input", function (e) {
    const c = cur;
    if (!c) return;
    if (e.target.classList.contains("is-invalid") && e.target.value.trim()) e.target.classList.remove("is-invalid");
    if (c.mode === "correct") {
      setJSON(local, localKey(c.id, ":correction"), Object.assign(currentText(), { reason: reasonBox.value }));
      return;
    }
    if (c.mode !== "edit") return;
    c.dirty = true;
    c.editSeq++;
    keepLocally(c);
    noteFirstEdit(c);
    if (!c.conflict && saveState.kind !== "saving") setSaveState({ kind: "dirty", at: lastSavedAt() });
  });
  form.addEventListener("submit", function (e) { e.preventDefault(); });

  // ---- submitted report, corrections -------------------------------------------------------------------------------------------
  function showReport(report) {
    const c = cur;
    c.mode = "submitted";
    c.dirty = false;
    putText(report);
    setEditable(false);
    setSource(null, null);
    clearInvalid();
    correctionBlock.hidden = true;
    const when = dateTime(report.submitted_at);
    banner.textContent = (report.version > 1 ? "Corrected — version " + report.version + "," : "Submitted") +
      (when ? " " + when : "") + ". The report can no longer be edited." +
      (report.version > 1 && report.reason ? " Reason: " + report.reason : "");
    banner.hidden = false;
    submitButton.hidden = true;
    correctButton.hidden = false;
    correctionSubmit.hidden = true;
    correctionCancel.hidden = true;
    conflictBox.hidden = true;
    setSaveState({ kind: "submitted", at: report.submitted_at });
    nextButton.classList.replace("btn-outline-light", "btn-primary");
  }

  function enterCorrection() {
    const c = cur;
    if (!c || c.mode !== "submitted") return;
    c.mode = "correct";
    const kept = getJSON(local, localKey(c.id, ":correction"));
    putText(kept || c.read.report);
    reasonBox.value = (kept && kept.reason) || "";
    setEditable(true);
    correctionBlock.hidden = false;
    correctButton.hidden = true;
    correctionSubmit.hidden = false;
    correctionCancel.hidden = false;
    banner.textContent = "Correcting version " + c.read.report.version + ": the submitted version is kept; this makes a new one.";
    findingsBox.focus();
  }
  correctButton.addEventListener("click", enterCorrection);
  correctionCancel.addEventListener("click", function () {
    if (!cur || cur.mode !== "correct") return;
    dropLocal(cur.id, ":correction");
    showReport(cur.read.report);
  });

  // ---- confirm and submit ------------------------------------------------------------------------------------------------------------
  let pending = null;   // {kind, text, reason} shown in the dialog: exactly what will be sent
  let focusAfterModal = null;

  function openConfirm(kind) {
    const c = cur;
    if (!c || submitting || (modalEl.classList.contains("show"))) return;
    if (kind === "submit" && (c.mode !== "edit" || c.conflict)) return;
    if (kind === "correct" && c.mode !== "correct") return;
    clearInvalid();
    actionError.hidden = true;
    const text = currentText();
    // The server decides; this only spares a round trip.
    if (!text.impression.trim()) { markInvalid(impressionBox, "An impression is required."); return; }
    const reason = reasonBox.value.trim();
    if (kind === "correct" && !reason) { markInvalid(reasonBox, "Say why the report is corrected."); return; }
    pending = { kind: kind, text: text, reason: reason };
    const present = Object.keys(text.finding_flags).filter(function (k) { return text.finding_flags[k]; });
    $("confirm-title").textContent = kind === "submit" ? "Submit this report?" : "Submit this correction?";
    $("confirm-note").textContent = kind === "submit"
      ? "Once submitted, the report cannot be changed; a correction makes a new version with a reason."
      : "The submitted version is kept; this becomes version " + (c.read.report.version + 1) + ".";
    $("confirm-findings").textContent = text.findings.trim() || "—";
    $("confirm-impression").textContent = text.impression.trim();
    $("confirm-flags").textContent = present.length ? present.join(", ") : "None checked.";
    $("confirm-reason").textContent = reason;
    $("confirm-reason-block").hidden = kind !== "correct";
    confirmButton.textContent = kind === "submit" ? "Submit report" : "Submit correction";
    confirmButton.disabled = false;
    confirmError.hidden = true;
    focusAfterModal = document.activeElement;
    if (modal) modal.show();
    else if (window.confirm("Submit?")) confirmPending();
  }

  modalEl.addEventListener("shown.bs.modal", function () { confirmButton.focus(); });
  modalEl.addEventListener("hidden.bs.modal", function () {
    const target = cur && cur.mode === "submitted" ? nextButton : focusAfterModal;
    if (target && target.focus && !target.hidden) target.focus();
  });

  function confirmFailed(message) {
    confirmError.textContent = message;
    confirmError.hidden = false;
    confirmButton.disabled = false;
  }

  async function confirmPending() {
    const c = cur;
    if (!c || !pending || submitting) return;
    submitting = true;
    confirmButton.disabled = true;
    const p = pending;
    try {
      let res;
      if (p.kind === "submit") {
        if (c.saving) await c.saving;   // its answer moves the base version
        res = await api("POST", c.read.urls.submit, Object.assign({}, p.text, { base_version: c.baseVersion, tab_id: tabId }));
      } else {
        res = await api("POST", c.read.urls.correct, Object.assign({}, p.text, { reason: p.reason }));
      }
      if (c !== cur) return;
      if (res.ok) {
        setOffline(false);
        const report = res.data.report || res.data;
        c.read.report = report;
        c.read.status = "submitted";
        dropLocal(c.id);
        dropLocal(c.id, ":correction");
        pending = null;
        showReport(report);
        if (modal) modal.hide();
        return;
      }
      if (res.offline) {
        setOffline(true);
        confirmFailed("The server did not answer; nothing was submitted. Your text is kept in this browser: try again in a moment.");
        return;
      }
      setOffline(false);
      const detail = res.data.detail || ("The server refused (HTTP " + res.status + ").");
      if (res.status === 400 && res.data.field) {
        if (modal) modal.hide();
        const box = { impression: impressionBox, findings: findingsBox, reason: reasonBox }[res.data.field];
        if (box) markInvalid(box, detail);
        else { actionError.textContent = detail; actionError.hidden = false; }
        return;
      }
      if (res.status === 409 && res.data.current) {
        if (modal) modal.hide();
        showConflict(p.text, res.data.current, detail);
        return;
      }
      if (res.status === 409 && res.data.code === "already_submitted") {
        if (modal) modal.hide();
        reloadCurrent();
        return;
      }
      confirmFailed(detail);
    } finally {
      submitting = false;
    }
  }
  confirmButton.addEventListener("click", confirmPending);
  submitButton.addEventListener("click", function () { openConfirm("submit"); });
  correctionSubmit.addEventListener("click", function () { openConfirm("correct"); });

  document.addEventListener("keydown", function (e) {
    if (!(e.ctrlKey || e.metaKey) || e.key !== "Enter" || !cur) return;
    e.preventDefault();
    if (modalEl.classList.contains("show")) confirmPending();
    else openConfirm(cur.mode === "correct" ? "correct" : "submit");
  });

  // ---- loading a read -------------------------------------------------------------------------------------------------------------
  function setLoading(loading) {
    app.dataset.state = loading ? "loading" : "ready";
    [submitButton, nextButton, correctButton, correctionSubmit].forEach(function (b) { b.disabled = loading; });
    if (loading) setEditable(false);
  }

  function showLoadError(res, retry) {
    loadError.replaceChildren();
    const text = document.createElement("span");
    text.textContent = res.offline ? "The server did not answer. " : (res.data.detail || "This case could not be opened (HTTP " + res.status + ").") + " ";
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
    a.href = worklistUrl;
    a.className = "ms-2";
    a.textContent = "Back to the worklist";
    loadError.appendChild(a);
    loadError.hidden = false;
  }

  async function leaveCurrent() {
    const c = cur;
    if (!c) return;
    if (modal && modalEl.classList.contains("show")) modal.hide();
    if (c.mode === "edit") {
      // Save first (waiting a little: the local copy covers a slow or absent server), then say the read is
      // off screen, so that the server does not see the save (a sign of activity) after "hidden".
      await Promise.race([save(), new Promise(function (r) { setTimeout(r, 3000); })]);
      sendEvent("hidden");
    }
    cur = null;
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
    correctionBlock.hidden = true;
    submitButton.hidden = false;
    correctButton.hidden = true;
    correctionSubmit.hidden = true;
    correctionCancel.hidden = true;
    submitButton.disabled = false;
    nextButton.classList.replace("btn-primary", "btn-outline-light");
    $("case-code").textContent = "…";
    $("case-position").textContent = "";
    $("clinical-history").textContent = "";
  }

  // t0: performance.now() of the click that asked for this read; source: what the click was.
  async function openRead(apiUrl, how) {
    const seq = ++loadSeq;
    setLoading(true);   // no typing into, or double click on, the read being left
    await leaveCurrent();
    if (seq !== loadSeq) return;
    viewer.clear();   // never show the previous radiograph next to the new case
    delete app.dataset.imageShownMs;
    resetPanel();
    setLoading(true);
    const res = await api("GET", apiUrl);
    if (seq !== loadSeq) return;
    if (!res.ok) {
      setLoading(false);
      setEditable(false);
      submitButton.disabled = true;
      showLoadError(res, function () { openRead(apiUrl, how); });
      return;
    }
    const read = res.data;
    const state = { apiUrl: apiUrl };
    if (how.push) history.pushState(state, "", read.page_url);
    else history.replaceState(state, "", read.page_url || location.href);
    show(read, how);
  }

  function reloadCurrent() {
    if (!cur) return;
    const apiUrl = (history.state && history.state.apiUrl) || app.dataset.apiUrl;
    cur.mode = "reloading";   // nothing more to save or send for this copy
    openRead(apiUrl, { push: false, t0: performance.now(), source: "reload" });
  }

  function show(read, how) {
    const c = {
      read: read, id: read.id, mode: read.report ? "submitted" : "edit",
      baseVersion: read.saved ? read.saved.version : null, dirty: false, editSeq: 0, saving: null, savingSeq: -1,
      conflict: null, lastSaveTry: 0, refusedSeq: -1, events: Promise.resolve(), firstEditSent: false,
    };
    cur = c;
    app.dataset.readId = String(read.id);
    $("case-code").textContent = read.case;
    $("case-position").textContent = read.position && read.of ? read.position + " of " + read.of : "";
    document.title = read.case + " · Reading · CXR-Trial";
    $("clinical-history").textContent = read.clinical_history || "None given.";
    buildFlags(read.findings || []);
    setLoading(false);

    nextButton.textContent = read.next ? "Next case →" : "Back to worklist";
    nextButton.title = read.next ? "Open the next case on your worklist" : "No further case available now";

    if (read.report) {
      dropLocal(read.id);
      showReport(read.report);
    } else {
      setEditable(true);
      chooseText(c);
      idle = false;
      lastInput = lastBeat = Date.now();
      sendEvent("opened");
    }

    viewer.setLabel("Chest radiograph, case " + read.case);
    viewer.load(read.image).then(function (shown) {
      if (c !== cur) return;
      const ms = Math.round(shown.at - how.t0);
      app.dataset.imageShownMs = String(ms);
      console.log("[cxr-trial] case " + read.case + ": radiograph painted " + ms + " ms after " + how.source);
      document.dispatchEvent(new CustomEvent("cxr:image-shown", { detail: { readId: read.id, ms: ms, source: how.source } }));
      sendEvent("image_shown");
      prefetchNext(read);
    }, function () { /* the viewer says so on screen */ });
  }

  // The text to start from: unsent text of this browser (if it continues the server's version), else the
  // saved text, else the AI draft (assisted arm), else nothing.
  function chooseText(c) {
    const read = c.read;
    const saved = read.saved;
    const draft = read.draft;
    const fromServer = saved || (draft ? { findings: draft.findings, impression: draft.impression, finding_flags: {} } : null);
    const draftBadge = draft ? (draft.label || "AI draft") + " — edit freely" : null;
    putText(fromServer);
    if (saved) setSaveState({ kind: "saved", at: saved.saved_at });
    else setSaveState({ kind: "none" });
    const mine = getJSON(local, localKey(read.id));
    if (mine && !sameText(mine, fromServer || { findings: "", impression: "", finding_flags: {} })) {
      const serverVersion = saved ? saved.version : null;
      putText(mine);
      c.dirty = true;
      c.editSeq++;
      const base = mine.base_version === undefined ? null : mine.base_version;
      if (base === serverVersion || !saved) {
        setSource(draftBadge, "Restored your unsent text from this browser.");
        setSaveState({ kind: "dirty", at: saved ? saved.saved_at : null });
        c.lastSaveTry = 0;   // send it at the next tick
      } else {
        setSource(draftBadge, null);
        showConflict(mine, saved, "This browser kept text that was never saved, and a newer text was saved elsewhere.");
      }
      return;
    }
    if (mine) dropLocal(read.id);
    setSource(draftBadge, saved ? "Your saved text, restored." : null);
  }

  // Warm the browser cache for the next radiograph, if the API names it (optional field).
  function prefetchNext(read) {
    const next = read.next;
    if (!next || !next.display_url) return;
    fetch(next.display_url, { credentials: "same-origin" }).catch(function () {});
  }

  nextButton.addEventListener("click", function () {
    if (!cur) return;
    if (!cur.read.next) { window.location.href = worklistUrl; return; }
    openRead(cur.read.next.api_url, { push: true, t0: performance.now(), source: "next case" });
  });

  window.addEventListener("popstate", function (e) {
    if (e.state && e.state.apiUrl) openRead(e.state.apiUrl, { push: false, t0: performance.now(), source: "history" });
  });

  // Keep the screen exactly as tall as the window below the navbar (wide layout only).
  function fitHeight() {
    if (window.innerWidth <= 900) { app.style.height = ""; return; }
    const top = app.getBoundingClientRect().top + window.scrollY;
    app.style.height = Math.max(480, window.innerHeight - top - 8) + "px";
  }
  window.addEventListener("resize", fitHeight);
  fitHeight();

  // ---- start -------------------------------------------------------------------------------------------------------------------------
  // Time from the worklist click (previous page), if this page was opened by one; else from navigation start.
  let start = { push: false, t0: 0, source: "page load" };
  const clicked = getJSON(session, CLICK_KEY);
  if (clicked && session) {
    session.removeItem(CLICK_KEY);
    const age = Date.now() - clicked.at;
    if (clicked.href === location.href && age >= 0 && age < 60000) {
      start = { push: false, t0: performance.now() - age, source: "worklist click" };
    }
  }
  // The page embeds the read (the same data as the API's): show it at once, no round trip before the image.
  const embedded = document.getElementById("read-data");
  let initial = null;
  if (embedded) {
    try { initial = JSON.parse(embedded.textContent); } catch (err) { initial = null; }
  }
  if (initial && initial.id) {
    history.replaceState({ apiUrl: app.dataset.apiUrl }, "", initial.page_url || location.href);
    show(initial, start);
  } else {
    openRead(app.dataset.apiUrl, start);
  }

  // For tests and benchmarks.
  window.CxrReading = {
    viewer: viewer,
    tabId: function () { return tabId; },
    current: function () { return cur ? { id: cur.id, mode: cur.mode, dirty: cur.dirty, baseVersion: cur.baseVersion, conflict: !!cur.conflict } : null; },
    saveNow: function () { if (cur) cur.lastSaveTry = 0; return save(); },
  };
})();
