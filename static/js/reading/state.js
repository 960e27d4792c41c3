// What the modules of the reading screen share.
//
// screen.cur is the read on screen: {read (the API's data), id, mode: "edit" | "submitted" | "correct" |
// "reloading", baseVersion, dirty, editSeq (counts edits), saving (promise of the save in flight), savingSeq
// (the edit it sends), conflict, lastSaveTry, refusedSeq (the edit the server refused), events (a promise chain
// that keeps events in order), firstEditSent}; null while a read loads. A module that awaits keeps its own `c`
// and checks `c === screen.cur` before touching the screen.
export const screen = {
  cur: null,
  offline: false, // the server did not answer the last request
  saveState: { kind: "none" }, // what the save status line says (status.js)
};

// Reloading the read on screen (when the server says another tab submitted it) is main.js's business; the
// modules below it ask for it here.
let reloader = () => {};

export function onReload(fn) {
  reloader = fn;
}

export function reloadCurrent() {
  reloader();
}
