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
