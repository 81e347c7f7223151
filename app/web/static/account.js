// Account: log in (cookies), register, verify the e-mail, manage channels, log out.
import {api, T} from "./app.js";

const $ = (id) => document.getElementById(id);
const say = (text) => { $("account-message").textContent = text || ""; };

async function show() {
  const session = await api("/api/auth/session");
  const user = session.status === 200 && session.body.authenticated ? session.body.user : null;
  $("me").hidden = !user;
  $("anon").hidden = !!user;
  if (!user) return;
  $("me-email").textContent = user.email;
  $("verify").hidden = !!user.email_verified;
  $("verified").hidden = !user.email_verified;
  $("notify-by-email").checked = !!user.notify_by_email;
  const channels = await api("/api/notifications/devices");
  $("channels").replaceChildren(...((channels.body && channels.body.items) || channels.body || []).map(channelItem));
}

// one channel: its kind, a code field while unverified, and a remove button
function channelItem(d) {
  const li = document.createElement("li");
  li.append(`${T["channel_" + d.channel] || d.channel} ${d.verified ? "✓" : ""} `);
  if (!d.verified) {
    const form = document.createElement("form");
    const input = document.createElement("input");
    input.inputMode = "numeric";
    input.required = true;
    input.setAttribute("aria-label", T.code);
    const ok = document.createElement("button");
    ok.type = "submit";
    ok.textContent = T.verify;
    form.append(input, " ", ok);
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const r = await api(`/api/notifications/devices/${d.device_id}/verify`, {method: "POST", body: {code: input.value}});
      say(r.status === 200 ? "✓" : (r.body && r.body.message) || T.error);
      show();
    });
    li.append(form);
  }
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = T.remove;
  remove.addEventListener("click", async () => {
    await api(`/api/notifications/devices/${d.device_id}`, {method: "DELETE"});
    show();
  });
  li.append(" ", remove);
  return li;
}

async function login(email, password) {
  const r = await api("/api/auth/session", {method: "POST", body: {email, password}});
  if (r.status !== 200) { say((r.body && r.body.message) || T.error); return false; }
  const next = $("login").dataset.next || "/";
  window.location.href = next;
  return true;
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  login($("login-email").value, $("login-password").value);
});

$("register").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = {name: $("reg-name").value, email: $("reg-email").value, password: $("reg-password").value,
    locale: window.LOCALE};
  for (const field of ["name", "email", "password"]) $(`reg-${field}-error`).textContent = "";
  $("register-message").textContent = "";
  const r = await api("/api/auth/register", {method: "POST", body});
  if (r.status !== 201) {
    // each field's own reason next to it (e.g. why a password is too easy to guess); the rest below the form
    const errors = (r.body && r.body.errors) || {};
    let placed = false;
    for (const [field, messages] of Object.entries(errors)) {
      const slot = document.getElementById(`reg-${field}-error`);
      if (slot) { slot.textContent = [].concat(messages).join(" "); placed = true; }
    }
    if (!placed) $("register-message").textContent = (r.body && r.body.message) || T.error;
    return;
  }
  login(body.email, body.password);
});

$("verify").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await api("/api/auth/verify-email", {method: "POST", body: {code: $("code").value}});
  say(r.status === 200 ? T.email_verified : (r.body && r.body.message) || T.error);
  show();
});

$("resend").addEventListener("click", async () => {
  const r = await api("/api/auth/verify-email/code", {method: "POST"});
  say(r.status < 300 ? T.code_sent : (r.body && r.body.message) || T.error);
});

$("add-channel").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await api("/api/notifications/register", {method: "POST",
    body: {channel: "email", address: $("channel-email").value}});
  say(r.status < 300 ? "✓" : (r.body && r.body.message) || T.error);
  show();
});

$("notify-by-email").addEventListener("change", async (e) => {
  const r = await api("/api/auth/me", {method: "PATCH", body: {notify_by_email: e.target.checked}});
  say(r.status === 200 ? "" : (r.body && r.body.message) || T.error);
});

$("logout").addEventListener("click", async () => {
  await api("/api/auth/session", {method: "DELETE"});
  window.location.href = "/account";
});

show();
