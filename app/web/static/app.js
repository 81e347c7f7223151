// Shared helpers of the pages: API calls with the session cookies and the CSRF header.
export const T = window.T || {};

function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

async function refresh() {
  const r = await fetch("/api/auth/refresh", {
    method: "POST", credentials: "same-origin", headers: {"X-CSRF-TOKEN": cookie("csrf_refresh_token")},
  });
  return r.ok;
}

// fetch + JSON; a stale access cookie is refreshed once. Returns {status, body, headers}.
export async function api(path, {method = "GET", body, headers = {}, retry = true} = {}) {
  const init = {method, credentials: "same-origin", headers: {...headers}};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET") init.headers["X-CSRF-TOKEN"] = cookie("csrf_access_token");
  const r = await fetch(path, init);
  let data = null;
  if (r.status !== 204) {
    try { data = await r.json(); } catch { data = null; }
  }
  if (r.status === 401 && retry && data && data.reason === "token_expired" && (await refresh())) {
    return api(path, {method, body, headers, retry: false});
  }
  return {status: r.status, body: data, headers: r.headers};
}

// the logged-in user, or a redirect to the account page (then null)
export async function requireUser() {
  const r = await api("/api/auth/session");  // a 200 for nobody too: no error logged on anonymous pages
  if (r.status === 200 && r.body.authenticated) return r.body.user;
  window.location.href = "/account?next=" + encodeURIComponent(window.location.pathname);
  return null;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return T.eta_unknown;
  const s = Math.max(0, Math.round(seconds));
  const m = Math.floor(s / 60);
  return m ? `${m} ${T.minutes} ${s % 60} ${T.seconds}` : `${s} ${T.seconds}`;
}

// integer minor units as money in the page's language (KRW has no minor unit: 45000 is ₩45,000)
export function money(minor, currency) {
  const format = new Intl.NumberFormat(window.LOCALE || "en", {style: "currency", currency});
  return format.format(minor / 10 ** format.resolvedOptions().maximumFractionDigits);
}

export function uuid() {
  return crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(16).slice(2);
}

// a solved proof of work for a sale that asks one (docs/security.md): SHA-1("<event>:<user>:<nonce>")
export async function proofOfWork(eventId, userId, difficulty) {
  const enc = new TextEncoder();
  for (let n = 0; ; n++) {
    const nonce = n.toString(16);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", enc.encode(`${eventId}:${userId}:${nonce}`)));
    let bits = 0;
    for (const byte of digest) {
      if (byte === 0) { bits += 8; continue; }
      bits += Math.clz32(byte) - 24;
      break;
    }
    if (bits >= difficulty) return nonce;
  }
}

// the header's language buttons: the choice is kept on the account too (the server keeps it in
// the `lang` cookie for the next pages), then the page reloads in it
const langForm = document.querySelector("form.lang");
if (langForm) {
  langForm.addEventListener("submit", async (e) => {
    const locale = e.submitter && e.submitter.value;
    if (!locale || !cookie("csrf_access_token")) return;  // logged out: the plain GET sets the cookie
    e.preventDefault();
    await api("/api/auth/me", {method: "PATCH", body: {locale}});
    const url = new URL(window.location.href);
    url.searchParams.set("lang", locale);
    window.location.href = url.toString();
  });
}
