// Analysis run page: polls the run's progress endpoint (JSON: status, progress, stage, error, done) every
// second and moves the bar; reloads the page once the run is done so that the report shows.
(function () {
  "use strict";
  const box = document.getElementById("run-progress");
  if (!box) return;
  const bar = document.getElementById("run-progress-bar");
  const text = document.getElementById("run-progress-text");

  function render(p) {
    const pct = Math.max(0, Math.min(100, p.progress || 0));
    bar.style.width = pct + "%";
    bar.textContent = pct + " %";
    bar.parentElement.setAttribute("aria-valuenow", String(pct));
    text.textContent = p.status + ": " + (p.stage || "") + (p.error ? " — " + p.error : "");
    if (p.status === "failed") bar.classList.add("bg-danger");
  }

  function poll() {
    fetch(box.dataset.api, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (p) {
        render(p);
        if (p.status === "done") { window.location.reload(); return; }
        if (!p.done) setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  bar.style.width = (bar.dataset.progress || "0") + "%";
  if (box.dataset.status !== "failed") poll();
})();
