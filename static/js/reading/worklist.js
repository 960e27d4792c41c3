// The reader's worklist: remembers when a case was clicked, so that the reading screen can tell how long the
// radiograph took to appear (console and data-image-shown-ms on #read-app).
import { rememberClick } from "./storage.js";

const worklist = document.getElementById("worklist");
if (worklist) {
  worklist.addEventListener("click", (e) => {
    const link = e.target.closest("a[data-read-link]");
    if (link) rememberClick(link.href);
  });
}

// A prospective trial's worklist is live: new cases appear (and drafts become ready) without a reload. The page asks
// itself again every `data-live-every` seconds while it is visible, and swaps in the new rows, progress and resume
// link; nothing the reader typed lives on this page, so nothing can be lost by the swap.
const every = Number(worklist?.dataset.liveEvery || 0);
if (worklist && every > 0) {
  // the duty switch too: an investigator may change it from the site's roster
  const parts = ["worklist-rows", "worklist-resume", "worklist-progress", "worklist-duty"];
  const refresh = async () => {
    if (document.visibilityState !== "visible") return;
    try {
      const response = await fetch(window.location.href, { headers: { "X-Requested-With": "fetch" }, cache: "no-store" });
      if (!response.ok) return;
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const id of parts) {
        const fresh = page.getElementById(id);
        const current = document.getElementById(id);
        if (fresh && current && fresh.innerHTML !== current.innerHTML) current.innerHTML = fresh.innerHTML;
      }
    } catch {
      // offline for a moment: the next tick tries again
    }
  };
  setInterval(refresh, every * 1000);
  document.addEventListener("visibilitychange", refresh);
}
