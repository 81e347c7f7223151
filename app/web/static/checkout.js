// Checkout: pick a section (and seats), reserve with the admission pass and a fresh
// Idempotency-Key, watch pending -> held with a countdown, pay with the fake provider.
import {api, duration, requireUser, T, uuid} from "./app.js";

const root = document.getElementById("checkout");
const eventId = Number(root.dataset.event);
const $ = (id) => document.getElementById(id);
const picked = new Set();
let pass = null;
let reservation = null;
let timer = null;
let maxPerUser = 4;

function say(text) { $("message").textContent = text || ""; }

function section() {
  const input = document.querySelector('input[name="section"]:checked');
  return {id: Number(input.value), seated: input.dataset.kind === "seated"};
}

async function loadSeats() {
  const s = section();
  $("seatmap").hidden = !s.seated;
  $("ga").hidden = s.seated;
  if (!s.seated) return;
  const r = await api(`/api/events/${eventId}/sections/${s.id}/seats`);
  if (r.status !== 200) return;
  const box = $("seats");
  box.replaceChildren();
  for (const seat of r.body.seats) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "seat";
    b.dataset.seat = seat.id;
    b.textContent = seat.label;
    const free = seat.state === "available";
    if (!free) picked.delete(seat.id);
    b.classList.add(picked.has(seat.id) ? "mine" : free ? "free" : "taken");
    b.disabled = !free;
    b.setAttribute("aria-pressed", picked.has(seat.id) ? "true" : "false");
    b.addEventListener("click", () => {
      if (picked.has(seat.id)) picked.delete(seat.id);
      else if (picked.size < maxPerUser) picked.add(seat.id);
      b.classList.toggle("mine", picked.has(seat.id));
      b.classList.toggle("free", !picked.has(seat.id));
      b.setAttribute("aria-pressed", picked.has(seat.id) ? "true" : "false");
    });
    box.append(b);
  }
}

async function start() {
  const user = await requireUser();
  if (!user) return;
  const detail = await api(`/api/events/${eventId}`);
  if (detail.status === 200) maxPerUser = detail.body.max_per_user || maxPerUser;
  const status = await api(`/api/queue/${eventId}/status`);
  if (status.status === 200 && status.body.status === "admitted") {
    pass = status.body.admission_token;
    $("reserve").disabled = false;  // not before: a reserve needs the pass
  } else {
    say(T.login_needed);
    const link = document.createElement("a");
    link.href = `/events/${eventId}/queue`;
    link.textContent = document.querySelector("h1").textContent;
    $("message").append(" ", link);
  }
  for (const input of document.querySelectorAll('input[name="section"]')) input.addEventListener("change", loadSeats);
  await loadSeats();
  setInterval(() => { if (!reservation) loadSeats(); }, 3000);
}

$("pick").addEventListener("submit", async (e) => {
  e.preventDefault();
  const s = section();
  const body = {event_id: eventId, section_id: s.id};
  if (s.seated) {
    if (!picked.size) { say(T.pick_seats); return; }
    body.seat_ids = [...picked];
  } else {
    body.quantity = Number($("quantity").value);
  }
  $("reserve").disabled = true;
  say(T.pending);
  const r = await api("/api/tickets/reserve", {method: "POST", body,
    headers: {"X-Admission-Token": pass, "Idempotency-Key": uuid()}});
  if (r.status !== 202) {
    $("reserve").disabled = false;
    say((r.body && r.body.message) || T.error);
    if (r.body && r.body.links && r.body.links.waitlist) say(`${T.sold_out}`);
    return;
  }
  reservation = r.body;
  follow();
});

async function follow() {
  for (;;) {
    const r = await api(`/api/tickets/status/${reservation.reservation_id}`);
    if (r.status === 200 && r.body.status !== "pending") { reservation = r.body; break; }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  if (reservation.status === "held") return showHold();
  $("reserve").disabled = false;
  const taken = reservation.reason === "seats_unavailable";
  say(taken ? T.taken : `${T.rejected}: ${reservation.reason || ""}`);
  picked.clear();
  reservation = null;
  loadSeats();
}

function showHold() {
  say("");
  $("pick").hidden = true;
  $("hold").hidden = false;
  $("hold-state").textContent = T.held;
  const until = Date.parse(reservation.hold_expires_at);
  const tick = () => {
    const left = (until - Date.now()) / 1000;
    $("hold-timer").textContent = duration(left);
    if (left <= 0) {
      clearInterval(timer);
      $("hold-state").textContent = T.hold_expired;
      $("pay-button").disabled = true;
      say(T.hold_expired);
    }
  };
  tick();
  timer = setInterval(tick, 1000);
}

$("pay").addEventListener("submit", async (e) => {
  e.preventDefault();
  const r = await api(`/api/tickets/${reservation.reservation_id}/confirm`, {method: "POST",
    body: {payment_token: $("card").value}});
  if (r.status === 200) {
    clearInterval(timer);
    $("hold").hidden = true;
    $("done").hidden = false;
    say(T.confirmed);
  } else if (r.status === 402) {
    say(T.declined);
  } else {
    say((r.body && r.body.message) || T.error);
  }
});

start();
