// The scoring and adjudication screens: show every image of the item's study in the reading viewer (study.js,
// viewer.js), and open a scoring item. The images' description comes from a JSON data block (json_script), never
// from inline script: the pages run under a Content-Security-Policy without 'unsafe-inline'. Everything else is a
// plain form.
import { createStudy, fillWindow } from "./study.js";

function csrfToken(root) {
  // The cookie first: it is renewed at login, while the page's hidden input may be older.
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (m) return decodeURIComponent(m[1]);
  const input = root.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

// Opening an item starts the time its expert spends on it: a POST, sent once as the page runs (loading the page
// or the item changes nothing). Resolves either way: a failed open leaves that time unknown, nothing else.
function openItem(root) {
  const url = root?.dataset.openUrl;
  if (!url) return Promise.resolve();
  return fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: { Accept: "application/json", "X-CSRFToken": csrfToken(root) },
  }).then(
    (response) => {
      if (response.ok) root.dataset.opened = "true";
    },
    () => {
      /* no network: the answer form still works */
    },
  );
}

const opened = openItem(document.getElementById("score-app"));
const data = document.getElementById("item-images");
const box = document.getElementById("viewer");
if (data && box) {
  fillWindow(box);
  // Every image of the case's study, the primary first.
  const study = createStudy(box, { label: "Chest radiograph" });
  Promise.all([study.load(JSON.parse(data.textContent)), opened]).then(
    () => {
      box.dataset.shown = "true"; // for tests and for the curious: the primary image is on screen (and the item open)
    },
    () => {
      /* the viewer says so on screen */
    },
  );
  window.CxrStudy = study; // for tests
}
