// The live-sale console: the admin endpoints, polled every 2 s, with a sparkline per figure.
import {api, money, T} from "./app.js";

const root = document.getElementById("console");
const eventId = root.dataset.event;
const history = {};
let lastAdmitted = null;
let lastAt = null;

function spark(key, value) {
  const points = (history[key] = [...(history[key] || []), Number(value) || 0].slice(-60));
  const max = Math.max(1, ...points);
  const step = 120 / Math.max(1, points.length - 1);
  const coords = points.map((v, i) => `${i * step},${30 - (v / max) * 28 - 1}`).join(" ");
  root.querySelector(`figure[data-key="${key}"] polyline`).setAttribute("points", coords);
  root.querySelector(`figure[data-key="${key}"] output`).textContent = value ?? "–";
}

async function update() {
  const r = await api(`/api/queue/${eventId}/stats`);
  const state = document.getElementById("console-state");
  if (r.status !== 200) { state.textContent = (r.body && r.body.message) || T.error; return; }
  const s = r.body;
  const now = Date.now();
  const perMinute = lastAt ? Math.round(((s.admitted_total - lastAdmitted) * 60000) / (now - lastAt)) : 0;
  lastAdmitted = s.admitted_total;
  lastAt = now;
  state.textContent = s.paused ? T.console_paused : T.console_running;
  for (const [key, value] of Object.entries({waiting: s.waiting, active: s.active, admitted_per_minute: perMinute,
    // the rate is measured on the line's delivery: with nobody waiting there is nothing to
    // measure, and the last figure (kept for the next ETA) would read as admissions happening now
    admit_rate_per_minute: s.waiting ? s.admit_rate_per_minute : null, oldest_wait_seconds: s.oldest_wait_seconds,
    last_eta_seconds: s.last_eta_seconds, holds_expiring: s.holds_expiring_60s,
    outbox_lag_seconds: s.outbox_lag_seconds, pow_difficulty: s.pow_difficulty,
    join_attempts_per_second: s.join_attempts_per_second})) spark(key, value);
  const door = await api(`/api/events/${eventId}/checkin`);
  const checkedIn = new Map(door.status === 200 ? door.body.sections.map((d) => [d.section_id, d.checked_in]) : []);
  document.getElementById("sections").replaceChildren(...s.sections.map((sec) => {
    const tr = document.createElement("tr");
    for (const v of [sec.name, sec.sold, sec.held, sec.capacity, `${checkedIn.get(sec.id) ?? 0} / ${sec.sold}`]) {
      const td = document.createElement("td");
      td.textContent = v;
      tr.append(td);
    }
    return tr;
  }));
  showWaitlists(s.waitlists || [], new Map(s.sections.map((sec) => [sec.id, sec.name])));
  const admit = document.getElementById("admit");
  const maxActive = document.getElementById("max-active");
  if (!admit.value) admit.value = s.configured_admit_per_minute;
  if (!maxActive.value) maxActive.value = s.max_active;
  const powThreshold = document.getElementById("pow-threshold");
  const powMax = document.getElementById("pow-max");
  if (!powThreshold.value) powThreshold.value = s.pow_adaptive_threshold;
  if (!powMax.value) powMax.value = s.pow_max_difficulty;
}

function row(values) {
  const tr = document.createElement("tr");
  for (const v of values) {
    const td = document.createElement("td");
    if (v instanceof Node) td.append(v); else td.textContent = v;
    tr.append(td);
  }
  return tr;
}

function showWaitlists(waitlists, names) {
  const table = document.getElementById("waitlists");
  table.hidden = waitlists.length === 0;
  document.getElementById("no-waitlist").hidden = waitlists.length > 0;
  table.querySelector("tbody").replaceChildren(...waitlists.map((w) => row([names.get(w.section_id) || w.section_id,
    w.waiting, w.offers_out, w.offers_made, w.offers_claimed, w.offers_expired, w.offers_declined])));
}

// orders: find one by number or e-mail, refund it in full (an admin's refund has no fee)
async function searchOrders() {
  const q = document.getElementById("order-q").value.trim();
  const r = await api(`/api/events/${eventId}/orders?page_size=50${q ? "&q=" + encodeURIComponent(q) : ""}`);
  const body = document.querySelector("#orders tbody");
  if (r.status !== 200) { document.getElementById("orders-message").textContent = T.error; return; }
  body.replaceChildren(...r.body.items.map((o) => {
    let refund = T["refund_" + o.refund_state] || "";
    if (o.refund_state === "none") {
      refund = document.createElement("button");
      refund.type = "button";
      refund.textContent = T.refund;
      refund.dataset.reservation = o.reservation_id;
      refund.addEventListener("click", async () => {
        refund.disabled = true;
        const done = await api(`/api/tickets/${o.reservation_id}/refund`, {method: "POST"});
        document.getElementById("orders-message").textContent = done.status < 300
          ? `${o.number}: ${T.refund_succeeded}` : ((done.body && done.body.message) || T.error);
        searchOrders();
      });
    }
    return row([o.number, o.buyer.email, o.tickets.map((t) => t.label).join(", "), money(o.total_cents, o.currency),
      refund]);
  }));
}

document.getElementById("order-search").addEventListener("submit", (e) => { e.preventDefault(); searchOrders(); });
searchOrders();

document.getElementById("pause").addEventListener("click", async () => {
  await api(`/api/queue/${eventId}/pause`, {method: "POST"});
  update();
});
document.getElementById("resume").addEventListener("click", async () => {
  await api(`/api/queue/${eventId}/resume`, {method: "POST"});
  update();
});
document.getElementById("settings").addEventListener("submit", async (e) => {
  e.preventDefault();
  await api(`/api/queue/${eventId}`, {method: "PATCH", body: {
    admit_per_minute: Number(document.getElementById("admit").value),
    max_active: Number(document.getElementById("max-active").value),
    pow_adaptive_threshold: Number(document.getElementById("pow-threshold").value),
    pow_max_difficulty: Number(document.getElementById("pow-max").value)}});
  update();
});

// the sale window and the event's details (PATCH /api/queue/{id}, PATCH /api/events/{id})
const $ = (id) => document.getElementById(id);
const sayControl = (r) => {
  $("control-message").textContent = r.status === 200 ? T.saved : (r.body && r.body.message) || T.error;
};
// an ISO instant as a datetime-local value in the organiser's clock, and back
const local = (iso) => {
  if (!iso) return "";
  const d = new Date(iso);
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
};
const instant = (value) => (value ? new Date(value).toISOString() : null);

function showWindow() {
  const w = $("window");
  const format = (iso) => new Intl.DateTimeFormat(window.LOCALE || "en",
    {dateStyle: "medium", timeStyle: "short"}).format(new Date(iso));
  w.textContent = `${T.sale_opens} ${format(w.dataset.opens)}` + (w.dataset.closes ? ` · ${T.sale_closes} ${
    format(w.dataset.closes)}` : "");
}

async function setWindow(body) {
  const r = await api(`/api/queue/${eventId}`, {method: "PATCH", body});
  sayControl(r);
  if (r.status === 200) {
    if (body.sale_opens_at) $("window").dataset.opens = body.sale_opens_at;
    if ("sale_closes_at" in body) $("window").dataset.closes = body.sale_closes_at || "";
    showWindow();
  }
  update();
}

$("open-now").addEventListener("click", () => setWindow({sale_opens_at: new Date().toISOString()}));
$("close-now").addEventListener("click", () => setWindow({sale_closes_at: new Date().toISOString()}));

const edit = $("edit-event");
$("edit-starts").value = local(edit.dataset.starts);
$("edit-refund-deadline").value = local(edit.dataset.refundDeadline);
edit.addEventListener("submit", async (e) => {
  e.preventDefault();
  sayControl(await api(`/api/events/${eventId}`, {method: "PATCH", body: {
    name: $("edit-name").value, venue: $("edit-venue").value, starts_at: instant($("edit-starts").value),
    refund_deadline: instant($("edit-refund-deadline").value), refund_fee_percent: Number($("edit-refund-fee").value),
  }}));
});

showWindow();
update();
setInterval(update, 2000);
