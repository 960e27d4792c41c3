// Polls a progress endpoint (JSON with ready/pending/running/failed/missing/total) every 2 s and
// updates the bar, until nothing is pending or running.
(function () {
  "use strict";
  const box = document.getElementById("draft-progress");
  if (!box) return;
  const bar = document.getElementById("draft-progress-bar");
  const text = document.getElementById("draft-progress-text");

  function render(p) {
    const pct = p.total ? Math.round((100 * p.ready) / p.total) : 0;
    bar.style.width = pct + "%";
    bar.textContent = pct + " %";
    bar.parentElement.setAttribute("aria-valuenow", String(pct));
    text.textContent = p.ready + " ready, " + p.pending + " pending, " + p.running + " running, " +
      p.failed + " failed, " + p.missing + " without a draft, of " + p.total + " cases.";
    return p.pending + p.running > 0;
  }

  function poll() {
    fetch(box.dataset.api, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (p) { if (render(p)) setTimeout(poll, 2000); })
      .catch(function () { setTimeout(poll, 5000); });
  }
  poll();
})();
