// AI drafts page: polls the drafts' progress endpoint (JSON with ready/pending/running/failed/missing/total)
// every 2 s and updates the bar, until nothing is pending or running.
import { poll, setBar } from "./progress-bar.js";

const box = document.getElementById("draft-progress");
if (box) {
  const bar = document.getElementById("draft-progress-bar");
  const text = document.getElementById("draft-progress-text");
  poll(
    box.dataset.api,
    (p) => {
      setBar(bar, p.total ? Math.round((100 * p.ready) / p.total) : 0);
      text.textContent = `${p.ready} ready, ${p.pending} pending, ${p.running} running, ${p.failed} failed, ${p.missing} without a draft, of ${p.total} cases.`;
      return p.pending + p.running > 0;
    },
    { everyMs: 2000, retryMs: 5000 },
  );
}
