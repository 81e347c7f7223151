// The waiting room: join, then live updates over SSE, falling back to polling the serving figures.
import {api, duration, proofOfWork, requireUser, T} from "./app.js";

const box = document.getElementById("queue");
const eventId = box.dataset.event;
const $ = (id) => document.getElementById(id);
let firstAhead = null;
let done = false;
let user = null;

function show(view) {
  const state = $("state");
  $("figures").hidden = view.status !== "waiting";
  $("countdown").hidden = view.reason !== "pre_queue";
  // an access code put the fan in a priority lane: position and wait are that lane's
  $("lane").hidden = !view.lane;
  if (view.lane) $("lane").textContent = `${T.lane} ${view.lane}`;
  if (view.status === "admitted") {
    done = true;
    state.textContent = `${T.admitted} ${T.admitted_body}`;
    $("go").hidden = false;
    $("leave").hidden = true;  // nothing to wait for any more: what matters is what to do now
    document.querySelector(".progress").hidden = true;
    $("mode").textContent = "";
    showAdmissionEnd(view.admitted_until);
    setBar(100);
    if (document.hidden) {
      document.title = `✅ ${T.turn_title}`;
      if ("Notification" in window && Notification.permission === "granted") {
        new Notification(T.turn_title, {body: T.admitted_body, tag: `queue-${eventId}`});
      }
    }
    return;
  }
  if (view.status === "expired") {
    done = true;
    state.textContent = T.expired;
    return;
  }
  if (view.reason === "pre_queue") {
    $("countdown").textContent = `${T.opens_in} ${duration(view.eta_seconds)}`;
  }
  state.textContent = view.paused ? T.paused : "";
  state.classList.toggle("paused", !!view.paused);
  $("position").textContent = view.position ?? "–";
  $("ahead").textContent = view.ahead ?? "–";
  $("eta").textContent = view.paused ? "–" : duration(view.eta_seconds);
  if (firstAhead === null && view.ahead) firstAhead = view.ahead;
  if (firstAhead) setBar(100 * (1 - view.ahead / firstAhead));
}

// how long the admission lasts: a countdown to its end, then the page says it is over
function showAdmissionEnd(until) {
  const end = until ? Date.parse(until) : NaN;
  if (isNaN(end)) return;
  const box = $("admission-left");
  box.hidden = false;
  const tick = () => {
    const left = (end - Date.now()) / 1000;
    $("admission-timer").textContent = duration(left);
    if (left <= 0) {
      clearInterval(timer);
      $("state").textContent = T.expired;
      $("go").hidden = true;
    }
  };
  const timer = setInterval(tick, 1000);
  tick();
}

function setBar(percent) {
  const p = Math.max(0, Math.min(100, Math.round(percent)));
  $("bar").style.width = p + "%";
  document.querySelector(".progress").setAttribute("aria-valuenow", String(p));
}

// Polling: the exact status only now and then (it is also the heartbeat that keeps the place) and
// when the line reaches this fan; in between, the sale's public serving figures, which a cache in
// front answers for everyone. The position worked out from them is never lower than the true one
// (docs/waiting-room.md, "Status from the serving figures").
let exact = null;  // the last exact status: line number and position
let heartbeat = 60;  // the sale's heartbeat timeout, seconds (from the serving figures)

function estimate(view, figures) {
  const position = Math.max(1, Math.min(view.position, view.line_number - figures.served_up_to));
  const measured = figures.admit_rate_per_second > 0;
  const rate = measured ? figures.admit_rate_per_second : figures.configured_admit_per_minute / 60;
  // a line not open yet (the general one while a presale runs) moves from its opening
  const untilOpen = Math.max(0, (Date.parse(figures.opens_at) - Date.now()) / 1000) || 0;
  const expected = untilOpen + (position - 0.5) / Math.max(rate, 1e-6);
  return {...view, position, ahead: position - 1, paused: figures.paused,
    eta_seconds: figures.paused ? null : Math.max(1, Math.ceil(expected))};
}

async function poll(after) {
  let lastExact = Date.now();
  while (!done) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(after, 2000)));
    // the exact status is also the heartbeat: at half the sale's heartbeat timeout
    const due = Date.now() - lastExact >= Math.max(5000, heartbeat * 500);
    if (!due && exact && exact.status === "waiting" && exact.line_number != null) {
      const s = await fetch(`/api/queue/${eventId}/serving`).catch(() => null);
      if (s && s.ok) {
        const figures = await s.json();
        heartbeat = figures.heartbeat_timeout_seconds || heartbeat;
        if (figures.served_up_to < exact.line_number) {
          exact = estimate(exact, figures);
          show(exact);
          continue;
        }
      }
    }
    const r = await api(`/api/queue/${eventId}/status`);
    if (r.status !== 200) { after = 2000; continue; }
    lastExact = Date.now();
    exact = r.body;
    show(r.body);
    after = r.body.poll_after_ms || 2000;
  }
}

function stream(fallbackAfter) {
  if (!("EventSource" in window)) return poll(fallbackAfter);
  // the signed place opens the stream without a status call of its own
  const place = exact && exact.place ? `?place=${encodeURIComponent(exact.place)}` : "";
  const source = new EventSource(`/api/queue/${eventId}/stream${place}`, {withCredentials: true});
  $("mode").textContent = T.live;
  source.addEventListener("status", (e) => {
    exact = JSON.parse(e.data);
    show(exact);
    if (done) source.close();
  });
  source.onerror = () => {  // the stream ended or is not served here: poll instead
    source.close();
    if (!done) {
      $("mode").textContent = T.polling;
      poll(fallbackAfter);
    }
  };
}

async function join() {
  user = await requireUser();
  if (!user) return;
  // an access code from the event page's form or an invite link (?code=...)
  const code = new URLSearchParams(location.search).get("code");
  const body = code ? {code} : undefined;
  let r = await api(`/api/queue/${eventId}/join`, {method: "POST", body});
  // the sale asks a proof of work (again, if an adaptive one rose meanwhile: docs/security.md)
  for (let tries = 0; r.status === 428 && tries < 3; tries++) {
    $("state").textContent = T.solving;
    const nonce = await proofOfWork(eventId, user.id, r.body.errors.difficulty);
    r = await api(`/api/queue/${eventId}/join`, {method: "POST", body, headers: {"X-Proof-Of-Work": nonce}});
  }
  if (r.status !== 202) {
    $("state").textContent = (r.body && r.body.message) || T.error;
    // a refused code leaves the general line open to the fan
    $("code-refused").hidden = !(code && r.body && String(r.body.reason || "").startsWith("access_code_"));
    return;
  }
  exact = r.body;
  show(r.body);
  if (!done) stream(r.body.poll_after_ms || 2000);
}

$("notify-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const channel = $("notify-channel").value;
  const target = $("notify-target").value.trim();
  const body = channel === "sms" ? {channel, phone: target} : {channel, address: target};
  const r = await api("/api/notifications/register", {method: "POST", body});
  $("notify-result").textContent = r.status < 300 ? `${T.notify_on} ${target}` : (r.body && r.body.message) || T.error;
});

// "Also notify me in this browser": a web push subscription where the browser and the server
// support it (heard even after the tab is closed), else a notification while the page is open
async function subscribeWebPush() {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) return false;
  const config = await api("/api/notifications/webpush");
  if (config.status !== 200 || !config.body.enabled) return false;
  const registration = await navigator.serviceWorker.register("/sw.js");
  const key = Uint8Array.from(atob(config.body.public_key.replace(/-/g, "+").replace(/_/g, "/")),
    (c) => c.charCodeAt(0));
  const subscription = await registration.pushManager.subscribe({userVisibleOnly: true, applicationServerKey: key});
  const r = await api("/api/notifications/register", {method: "POST",
    body: {channel: "webpush", subscription: subscription.toJSON()}});
  return r.status === 200 || r.status === 201;
}

$("browser-notify").addEventListener("click", async () => {
  if ("Notification" in window && Notification.permission === "default") await Notification.requestPermission();
  if ("Notification" in window && Notification.permission !== "granted") return;
  const pushed = await subscribeWebPush().catch(() => false);
  $("notify-result").textContent = pushed ? T.webpush_on : T.browser_notify_on;
});

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && done) document.title = document.title.replace(/^✅ /, "");
});

join();
