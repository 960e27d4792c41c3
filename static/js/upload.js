// Uploads the chosen DICOM files one at a time through the API, with a progress bar and a verdict per
// file (the server's reason when a file is refused). One at a time keeps memory flat and errors clear.
import { setBar } from "./progress-bar.js";

const form = document.getElementById("upload-form");
if (form) {
  const bar = document.getElementById("overall-progress");
  const summary = document.getElementById("upload-summary");
  const results = document.querySelector("#upload-results tbody");
  const button = document.getElementById("upload-button");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  const setProgress = (fraction) => setBar(bar, Math.round(fraction * 100));

  const addRow = (name, ok, text) => {
    const row = results.insertRow();
    row.className = ok ? "table-success" : "table-danger";
    row.insertCell().textContent = name;
    row.insertCell().textContent = text;
  };

  const uploadOne = (file, onProgress) =>
    new Promise((resolve) => {
      const data = new FormData();
      data.append("file", file);
      data.append("site", form.site.value);
      data.append("clinical_history", form.clinical_history.value);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.dataset.api);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress(e.loaded / e.total);
      };
      xhr.onload = () => {
        let body = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          body = {};
        }
        if (xhr.status === 201) resolve({ ok: true, text: `Enrolled as ${body.code}` });
        // a case is a study: another view waits for a frontal image of its study
        else if (xhr.status === 202) resolve({ ok: true, text: body.detail });
        else resolve({ ok: false, text: body.detail || JSON.stringify(body) || `HTTP ${xhr.status}` });
      };
      xhr.onerror = () => resolve({ ok: false, text: "Network error: the file was not uploaded." });
      xhr.send(data);
    });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const files = Array.from(form.files.files);
    if (!files.length) return;
    button.disabled = true;
    results.innerHTML = "";
    let enrolled = 0;
    for (let i = 0; i < files.length; i++) {
      const result = await uploadOne(files[i], (f) => setProgress((i + f) / files.length));
      if (result.ok) enrolled++;
      addRow(files[i].name, result.ok, result.text);
      setProgress((i + 1) / files.length);
    }
    summary.textContent = `${enrolled} of ${files.length} files enrolled; ${files.length - enrolled} refused.`;
    button.disabled = false;
  });
  form.dataset.ready = "true"; // uploads go through the API from now on (a click before this submits nothing useful)
}
