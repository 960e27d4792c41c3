// Two tabs, one read: when the server refuses a save or a submit because another tab saved a different text
// first, both texts are shown side by side and the reader chooses; nothing is overwritten silently.
import { keepLocally, putText, sameText } from "./editor.js";
import { byId, conflictBox, submitButton } from "./elements.js";
import { screen } from "./state.js";
import { clock, setSaveState } from "./status.js";
import { dropKept } from "./storage.js";

// The text as the reader sees it in the comparison.
function described(t) {
  const flags = Object.keys(t.finding_flags || {}).filter((k) => t.finding_flags[k]);
  return `FINDINGS\n${t.findings || "—"}\n\nIMPRESSION\n${t.impression || "—"}${flags.length ? `\n\nPresent: ${flags.join(", ")}` : ""}`;
}

// mine: the text of this tab; theirs: the server's current saved text ({findings, …, version, saved_at}).
export function showConflict(mine, theirs, detail) {
  const c = screen.cur;
  if (sameText(mine, theirs)) {
    // The same words: nothing to choose, follow the newer version.
    c.baseVersion = theirs.version;
    c.dirty = false;
    dropKept(c.id);
    setSaveState({ kind: "saved", at: theirs.saved_at });
    return;
  }
  c.conflict = { theirs };
  byId("conflict-text").textContent =
    `${detail || "Another tab saved a different text of this report."} Saved there at ${clock(theirs.saved_at)}. ` +
    "Nothing was overwritten: choose which text to keep.";
  byId("conflict-mine").textContent = described(mine);
  byId("conflict-theirs").textContent = described(theirs);
  conflictBox.hidden = false;
  submitButton.disabled = true;
  setSaveState({ kind: "conflict" });
}

// Closes the comparison; the read continues the server's version either way. Returns the read, or null.
function endConflict() {
  const c = screen.cur;
  if (!c?.conflict) return null;
  const theirs = c.conflict.theirs;
  c.conflict = null;
  conflictBox.hidden = true;
  submitButton.disabled = false;
  c.baseVersion = theirs.version;
  return c;
}

// The reader keeps the text on screen: it becomes an edit of theirs, to be saved (the caller saves). Returns
// whether there was a choice to make.
export function keepMine() {
  const c = endConflict();
  if (!c) return false;
  c.dirty = true;
  c.editSeq++;
  keepLocally(c);
  return true;
}

// The reader takes the other tab's text: it replaces the text on screen, already saved.
export function takeTheirs() {
  const c = screen.cur;
  const theirs = c?.conflict?.theirs;
  if (!endConflict()) return;
  putText(theirs);
  c.read.saved = theirs;
  c.dirty = false;
  dropKept(c.id);
  setSaveState({ kind: "saved", at: theirs.saved_at });
}
