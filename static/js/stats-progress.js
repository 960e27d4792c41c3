// Analysis run page: polls the run's progress endpoint (JSON: status, progress, stage, error, done) every
// second and moves the bar; reloads the page once the run is done so that the report shows.
import { poll, setBar } from "./progress-bar.js";

const box = document.getElementById("run-progress");
if (box) {
  const bar = document.getElementById("run-progress-bar");
  const text = document.getElementById("run-progress-text");
  bar.style.width = `${bar.dataset.progress || "0"}%`;
  if (box.dataset.status !== "failed") {
    poll(
      box.dataset.api,
      (p) => {
        setBar(bar, Math.max(0, Math.min(100, p.progress || 0)));
        text.textContent = `${p.status}: ${p.stage || ""}${p.error ? ` — ${p.error}` : ""}`;
        if (p.status === "failed") bar.classList.add("bg-danger");
        if (p.status === "done") {
          window.location.reload();
          return false;
        }
        return !p.done;
      },
      { everyMs: 1000, retryMs: 3000 },
    );
  }
}
