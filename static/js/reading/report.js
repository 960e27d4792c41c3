// Submitting: the confirmation dialog (it shows exactly what will be sent), the submit itself, the submitted
// report (read-only, with its banner), and corrections (a new version with a reason; the submitted one is kept).
import { api } from "./api.js";
import { setOffline } from "./autosave.js";
import { showConflict } from "./conflict.js";
import { clearInvalid, currentText, markInvalid, putText, setEditable, setSource } from "./editor.js";
import {
  actionError,
  banner,
  byId,
  confirmButton,
  confirmError,
  conflictBox,
  correctButton,
  correctionBlock,
  correctionCancel,
  correctionSubmit,
  findingsBox,
  impressionBox,
  modalEl,
  nextButton,
  reasonBox,
  submitButton,
} from "./elements.js";
import { reloadCurrent, screen } from "./state.js";
import { dateTime, setSaveState } from "./status.js";
import { dropKept, keepText, keptText } from "./storage.js";
import { tabId } from "./tab.js";

const modal = window.bootstrap ? window.bootstrap.Modal.getOrCreateInstance(modalEl) : null;
let pending = null; // {kind, text, reason} shown in the dialog: exactly what will be sent
let submitting = false;
let focusAfterModal = null;

// The buttons and blocks under the editor for a mode: "edit" (submit), "submitted" (correct), "correct"
// (the reason, submit or cancel the correction).
export function showActions(mode) {
  submitButton.hidden = mode !== "edit";
  correctButton.hidden = mode !== "submitted";
  correctionSubmit.hidden = mode !== "correct";
  correctionCancel.hidden = mode !== "correct";
  correctionBlock.hidden = mode !== "correct";
}

// ---- the submitted report, corrections ------------------------------------------------------------------------------
export function showReport(report) {
  const c = screen.cur;
  c.mode = "submitted";
  c.dirty = false;
  putText(report);
  setEditable(false);
  setSource(null, null);
  clearInvalid();
  const when = dateTime(report.submitted_at);
  banner.textContent =
    (report.version > 1 ? `Corrected — version ${report.version},` : "Submitted") +
    (when ? ` ${when}` : "") +
    ". The report can no longer be edited." +
    (report.version > 1 && report.reason ? ` Reason: ${report.reason}` : "");
  banner.hidden = false;
  showActions("submitted");
  conflictBox.hidden = true;
  setSaveState({ kind: "submitted", at: report.submitted_at });
  nextButton.classList.replace("btn-outline-light", "btn-primary");
}

export function enterCorrection() {
  const c = screen.cur;
  if (c?.mode !== "submitted") return;
  c.mode = "correct";
  const kept = keptText(c.id, ":correction");
  putText(kept || c.read.report);
  reasonBox.value = kept?.reason || "";
  setEditable(true);
  showActions("correct");
  banner.textContent = `Correcting version ${c.read.report.version}: the submitted version is kept; this makes a new one.`;
  findingsBox.focus();
}

export function cancelCorrection() {
  const c = screen.cur;
  if (c?.mode !== "correct") return;
  dropKept(c.id, ":correction");
  showReport(c.read.report);
}

// A correction being written is kept in this browser too, with its reason.
export function keepCorrection(c) {
  keepText(c.id, { ...currentText(), reason: reasonBox.value }, ":correction");
}

// ---- confirm and submit --------------------------------------------------------------------------------------------
export function confirmOpen() {
  return modalEl.classList.contains("show");
}

export function closeConfirm() {
  if (modal && confirmOpen()) modal.hide();
}

// kind: "submit" (a report being written) or "correct" (a correction).
export function openConfirm(kind) {
  const c = screen.cur;
  if (!c || submitting || confirmOpen()) return;
  if (kind === "submit" && (c.mode !== "edit" || c.conflict)) return;
  if (kind === "correct" && c.mode !== "correct") return;
  clearInvalid();
  actionError.hidden = true;
  const text = currentText();
  // The server decides; this only spares a round trip.
  if (!text.impression.trim()) {
    markInvalid(impressionBox, "An impression is required.");
    return;
  }
  const reason = reasonBox.value.trim();
  if (kind === "correct" && !reason) {
    markInvalid(reasonBox, "Say why the report is corrected.");
    return;
  }
  pending = { kind, text, reason };
  const present = Object.keys(text.finding_flags).filter((k) => text.finding_flags[k]);
  byId("confirm-title").textContent = kind === "submit" ? "Submit this report?" : "Submit this correction?";
  byId("confirm-note").textContent =
    kind === "submit"
      ? "Once submitted, the report cannot be changed; a correction makes a new version with a reason."
      : `The submitted version is kept; this becomes version ${c.read.report.version + 1}.`;
  byId("confirm-findings").textContent = text.findings.trim() || "—";
  byId("confirm-impression").textContent = text.impression.trim();
  byId("confirm-flags").textContent = present.length ? present.join(", ") : "None checked.";
  byId("confirm-reason").textContent = reason;
  byId("confirm-reason-block").hidden = kind !== "correct";
  confirmButton.textContent = kind === "submit" ? "Submit report" : "Submit correction";
  confirmButton.disabled = false;
  confirmError.hidden = true;
  focusAfterModal = document.activeElement;
  if (modal) modal.show();
  else if (window.confirm("Submit?")) confirmPending();
}

function confirmFailed(message) {
  confirmError.textContent = message;
  confirmError.hidden = false;
  confirmButton.disabled = false;
}

// Sends what the dialog shows.
export async function confirmPending() {
  const c = screen.cur;
  if (!c || !pending || submitting) return;
  submitting = true;
  confirmButton.disabled = true;
  const p = pending;
  try {
    let res;
    if (p.kind === "submit") {
      if (c.saving) await c.saving; // its answer moves the base version
      res = await api("POST", c.read.urls.submit, { ...p.text, base_version: c.baseVersion, tab_id: tabId() });
    } else {
      res = await api("POST", c.read.urls.correct, { ...p.text, reason: p.reason });
    }
    if (c !== screen.cur) return;
    if (res.ok) {
      setOffline(false);
      const report = res.data.report || res.data;
      c.read.report = report;
      c.read.status = "submitted";
      dropKept(c.id);
      dropKept(c.id, ":correction");
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
    const detail = res.data.detail || `The server refused (HTTP ${res.status}).`;
    if (res.status === 400 && res.data.field) {
      if (modal) modal.hide();
      const box = { impression: impressionBox, findings: findingsBox, reason: reasonBox }[res.data.field];
      if (box) markInvalid(box, detail);
      else {
        actionError.textContent = detail;
        actionError.hidden = false;
      }
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

// Focus: on the dialog's button when it opens; when it closes, on "Next case" after a submit, else back where it was.
export function startConfirm() {
  modalEl.addEventListener("shown.bs.modal", () => confirmButton.focus());
  modalEl.addEventListener("hidden.bs.modal", () => {
    const target = screen.cur?.mode === "submitted" ? nextButton : focusAfterModal;
    if (target?.focus && !target.hidden) target.focus();
  });
}
