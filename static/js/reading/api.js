// Talking to the reading API: JSON both ways, the CSRF token, a time limit, and one shape of answer whatever
// happens (a refusal, a server error, no network, a login page instead of JSON).

export function csrfToken() {
  // The cookie first: it is renewed at login, while the page's hidden input may be older.
  const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (m) return decodeURIComponent(m[1]);
  const input = document.querySelector("#read-app input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

// Resolves (never rejects) to {ok, status, data, offline}; offline means "no usable answer, try later".
// options: {timeoutMs (default 15 s), keepalive (the request outlives the page)}.
export async function api(method, url, body, options = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), options.timeoutMs || 15000);
  const headers = { Accept: "application/json", "X-CSRFToken": csrfToken() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    const res = await fetch(url, {
      method,
      headers,
      credentials: "same-origin",
      keepalive: !!options.keepalive,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
    });
    let data = null;
    if ((res.headers.get("Content-Type") || "").includes("json")) {
      try {
        data = await res.json();
      } catch {
        data = null;
      }
    }
    if (res.ok && data === null) {
      // A login page instead of JSON: the session has expired.
      return {
        ok: false,
        status: res.status,
        data: { detail: "The server did not answer as expected: are you still logged in? Your text is kept in this browser." },
        offline: false,
      };
    }
    return { ok: res.ok, status: res.status, data: data || {}, offline: res.status >= 500 };
  } catch {
    return { ok: false, status: 0, data: {}, offline: true };
  } finally {
    clearTimeout(timer);
  }
}
