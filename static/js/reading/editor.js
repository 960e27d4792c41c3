// The text in the editor: findings, impression and finding flags, read from and put into the form; which
// source it came from; read-only or not; invalid fields.
import { findingsBox, flagsBox, impressionBox, reasonBox, sourceLabel } from "./elements.js";
import { keepText } from "./storage.js";

function flagInputs() {
  return Array.from(flagsBox.querySelectorAll("input[type=checkbox]"));
}

export function currentText() {
  const flags = {};
  for (const box of flagInputs()) flags[box.value] = box.checked;
  return { findings: findingsBox.value, impression: impressionBox.value, finding_flags: flags };
}

export function putText(text) {
  findingsBox.value = text?.findings || "";
  impressionBox.value = text?.impression || "";
  const flags = text?.finding_flags || {};
  for (const box of flagInputs()) box.checked = flags[box.value] === true;
}

// The flags that are on, one name a line, sorted.
const flagsOn = (f) =>
  Object.keys(f || {})
    .filter((k) => f[k])
    .sort()
    .join("\n");
const norm = (s) => (s || "").replace(/\r\n/g, "\n");

// The same words and the same flags (line ends aside).
export function sameText(a, b) {
  return (
    !!a &&
    !!b &&
    norm(a.findings) === norm(b.findings) &&
    norm(a.impression) === norm(b.impression) &&
    flagsOn(a.finding_flags) === flagsOn(b.finding_flags)
  );
}

// Keeps the text on screen in this browser until the server has it (what it continues: c.baseVersion).
export function keepLocally(c) {
  keepText(c.id, { ...currentText(), base_version: c.baseVersion, edited_at: new Date().toISOString() });
}

export function buildFlags(findings) {
  flagsBox.replaceChildren();
  findings.forEach((name, i) => {
    const wrap = document.createElement("div");
    wrap.className = "form-check";
    const box = document.createElement("input");
    box.className = "form-check-input";
    box.type = "checkbox";
    box.id = `flag-${i}`;
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

export function setEditable(editable) {
  findingsBox.readOnly = !editable;
  impressionBox.readOnly = !editable;
  for (const box of flagInputs()) box.disabled = !editable;
}

function span(className, text) {
  const s = document.createElement("span");
  s.className = className;
  s.textContent = text;
  return s;
}

// The label above the editor: a badge (e.g. "AI draft — edit freely") and a note, either may be null.
export function setSource(badge, note) {
  sourceLabel.replaceChildren();
  if (badge) sourceLabel.appendChild(span("badge text-bg-info", badge));
  if (note) sourceLabel.appendChild(span("text-body-secondary ms-2", note));
}

export function clearInvalid() {
  for (const box of [impressionBox, reasonBox, findingsBox]) box.classList.remove("is-invalid");
}

export function markInvalid(box, message) {
  const feedback = box.parentElement.querySelector(".invalid-feedback");
  if (feedback && message) feedback.textContent = message;
  box.classList.add("is-invalid");
  box.focus();
}
