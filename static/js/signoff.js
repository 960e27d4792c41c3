// The senior's sign-off screen and report-of-record page: every image of the study in the reading viewer (study.js,
// viewer.js), the primary first, each with its own window/level, beside the report and its signature (a plain form).
// The images' description comes from a JSON data block (json_script), never from inline script: the page runs under a
// Content-Security-Policy without 'unsafe-inline'.
import { createStudy, fillWindow } from "./study.js";

const data = document.getElementById("study-images");
const box = document.getElementById("viewer");
if (data && box) {
  fillWindow(box);
  const study = createStudy(box, { label: "Chest radiograph" });
  study.load(JSON.parse(data.textContent)).then(
    () => {
      box.dataset.shown = "true"; // for tests: the primary image is on screen
    },
    () => {
      /* the viewer says so on screen */
    },
  );
  window.CxrStudy = study; // for tests
}
