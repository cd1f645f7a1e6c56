// Every request the console makes: same origin, the key in the X-API-Key header (never in a URL,
// where history and proxy logs would keep it). A 401 asks for a key once, keeps it in
// localStorage and retries; concurrent 401s share one prompt.

const KEY_ITEM = "rdio.apiKey";
let pendingPrompt = null;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}

export function storedKey() {
  return localStorage.getItem(KEY_ITEM) || "";
}

export function forgetKey() {
  localStorage.removeItem(KEY_ITEM);
}

/** Show the key dialog; resolves once a key is saved. `reason` explains why it is asked again. */
export function askForKey(reason = "") {
  if (pendingPrompt) {
    // Concurrent requests share one dialog; a request that knows why must not lose that to one
    // that does not (a refused key is forgotten by the first 401, so later ones sent no key).
    if (reason) document.getElementById("key-error").textContent = reason;
    return pendingPrompt;
  }
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  document.getElementById("key-error").textContent = reason;
  pendingPrompt = new Promise((resolve) => {
    const onCancel = (event) => event.preventDefault(); // nothing works without a key: stay open
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) return;
      localStorage.setItem(KEY_ITEM, key);
      input.value = "";
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("cancel", onCancel);
      dialog.close();
      pendingPrompt = null;
      resolve(key);
    };
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", onCancel);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
  return pendingPrompt;
}

async function errorText(response) {
  const text = await response.text();
  try {
    const detail = JSON.parse(text).detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  } catch {
    // not JSON: the plain text is the message
  }
  return text.trim() || `HTTP ${response.status}`;
}

/**
 * fetch() with the key. Returns the parsed JSON, or the Response itself with `raw: true` (audio,
 * event stream). Throws ApiError with the server's `detail` on any other status than 2xx.
 */
export async function api(path, { method = "GET", json, headers = {}, signal, raw = false } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const sent = storedKey();
    const h = new Headers(headers);
    if (sent) h.set("X-API-Key", sent);
    const init = { method, headers: h, signal };
    if (json !== undefined) {
      h.set("Content-Type", "application/json");
      init.body = JSON.stringify(json);
    }
    const response = await fetch(path, init);
    if (response.status === 401 && attempt < 5) {
      // Another request may already have replaced a refused key: retry with that one first.
      if (storedKey() !== sent) continue;
      const reason = sent ? "That key was refused: " + (await errorText(response)) : "";
      if (sent && storedKey() === sent) forgetKey();
      await askForKey(reason);
      continue;
    }
    if (!response.ok) throw new ApiError(response.status, await errorText(response));
    return raw ? response : response.json();
  }
}

/** A query string from the non-empty values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "" && value !== false) q.set(name, String(value));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}
