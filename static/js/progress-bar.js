// The progress bars of the pages that wait on the server (drafts, analysis runs, uploads): a Bootstrap bar set
// to a percentage, and the poll of a JSON progress endpoint that moves it.

// `bar` is Bootstrap's .progress-bar; its parent .progress carries the ARIA value.
export function setBar(bar, pct) {
  bar.style.width = `${pct}%`;
  bar.textContent = `${pct} %`;
  bar.parentElement.setAttribute("aria-valuenow", String(pct));
}

// GETs `url` as JSON and hands the answer to `onData`; asks again after `everyMs` for as long as onData returns
// true, and after `retryMs` when the request (or onData) fails.
export function poll(url, onData, { everyMs, retryMs }) {
  const ask = () => {
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => r.json())
      .then((p) => {
        if (onData(p)) setTimeout(ask, everyMs);
      })
      .catch(() => setTimeout(ask, retryMs));
  };
  ask();
}
