// The scoring and adjudication screens: show the item's radiograph in the reading viewer (viewer.js).
// The image description comes from a JSON data block (json_script), never from inline script: the pages
// run under a Content-Security-Policy without 'unsafe-inline'. Everything else on these pages is a plain form.
import { create } from "./viewer.js";

const data = document.getElementById("item-image");
const box = document.getElementById("viewer");
if (data && box) {
  const app = box.closest(".read-app");
  if (app) {
    // Fill the window under the navbar, as the reading screen does.
    const fit = () => {
      app.style.height = `${window.innerHeight - app.getBoundingClientRect().top - 8}px`;
    };
    fit();
    window.addEventListener("resize", fit);
  }
  const viewer = create(box, { label: "Chest radiograph" });
  viewer.load(JSON.parse(data.textContent)).then(
    () => {
      box.dataset.shown = "true"; // for tests and for the curious: the image is on screen
    },
    () => {
      /* the viewer says so on screen */
    },
  );
}
