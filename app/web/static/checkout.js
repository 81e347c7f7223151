// Checkout: pick a section (and seats), reserve with the admission pass and a fresh
// Idempotency-Key, watch pending -> held with a countdown and the order summary, pay (Stripe.js
// with its 3-D Secure step, or the fake provider's test cards under `make run`), and show the
// order number.
import {api, duration, money, requireUser, T, uuid} from "./app.js";

const root = document.getElementById("checkout");
const eventId = Number(root.dataset.event);
const $ = (id) => document.getElementById(id);
const picked = new Set();
let pass = null;
let reservation = null;
let timer = null;
let maxPerUser = 4;
let sections = [];
const stripe = root.dataset.provider === "stripe" && window.Stripe ? window.Stripe(root.dataset.key) : null;
let cardElement = null;
if (stripe) {
  cardElement = stripe.elements().create("card");
  cardElement.mount("#card-element");
}

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
  // one line per row, in the venue's order, facing the stage (drawn above by the template)
  const lines = new Map();
  for (const seat of r.body.seats) {
    if (!lines.has(seat.row)) {
      const line = document.createElement("div");
      line.className = "seat-row";
      line.setAttribute("role", "group");
      line.setAttribute("aria-label", `${T.row} ${seat.row}`);
      const name = document.createElement("span");
      name.className = "row-label";
      name.textContent = seat.row;
      line.append(name);
      lines.set(seat.row, line);
      box.append(line);
    }
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
    lines.get(seat.row).append(b);
  }
}

let offerToken = null;

// a sold-out section stays selectable (its waitlist is reached from it) but says so
function markSoldOut() {
  for (const s of sections) {
    const input = document.querySelector(`input[name="section"][value="${s.id}"]`);
    const gone = s.available === 0 || (s.figures && s.figures.available === 0);
    if (input && gone && !input.parentElement.querySelector(".sold-out")) {
      const tag = document.createElement("strong");
      tag.className = "sold-out";
      tag.textContent = ` · ${T.sold_out}`;
      input.parentElement.append(tag);
    }
  }
}

// checkout from a waitlist offer: its section and quantity, reserved with the offer's pass
async function useOffer(sectionId) {
  const r = await api(`/api/events/${eventId}/sections/${sectionId}/waitlist`);
  if (r.status !== 200 || r.body.status !== "offered") return false;
  offerToken = r.body.offer.offer_token;
  const input = document.querySelector(`input[name="section"][value="${sectionId}"]`);
  if (input) input.checked = true;
  $("quantity").value = r.body.offer.quantity;
  $("quantity").readOnly = true;
  say(`${T.offer_for} ${r.body.offer.quantity}`);
  $("reserve").disabled = false;
  return true;
}

async function joinWaitlist(url) {
  const quantity = Number($("quantity").value) || 1;
  const r = await api(url, {method: "POST", body: {quantity}});
  if (r.status === 200 || r.status === 201) {
    window.location.href = `/events/${eventId}/waitlist`;
    return;
  }
  say((r.body && r.body.message) || T.error);
}

async function start() {
  let status = null;
  const user = await requireUser();
  if (!user) return;
  const detail = await api(`/api/events/${eventId}`);
  if (detail.status === 200) {
    maxPerUser = detail.body.max_per_user || maxPerUser;
    sections = detail.body.sections || [];
  }
  markSoldOut();
  const offerSection = Number(new URLSearchParams(window.location.search).get("offer_section"));
  if (offerSection && (await useOffer(offerSection))) {
    // a waitlist offer is the pass: no waiting room
  } else if ((status = await api(`/api/queue/${eventId}/status`)).status === 200
             && status.body.status === "admitted") {
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
  const pass_ = offerToken ? {"X-Offer-Token": offerToken} : {"X-Admission-Token": pass};
  const r = await api("/api/tickets/reserve", {method: "POST", body,
    headers: {...pass_, "Idempotency-Key": uuid()}});
  if (r.status !== 202) {
    $("reserve").disabled = false;
    say((r.body && r.body.message) || T.error);
    const waitlist = r.body && r.body.links && r.body.links.waitlist;
    $("waitlist-join").hidden = !waitlist;
    if (waitlist) {
      say(T.sold_out_waitlist);
      $("waitlist-button").onclick = () => joinWaitlist(waitlist);
    }
    return;
  }
  $("waitlist-join").hidden = true;
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

function showSummary() {
  const r = reservation;
  const s = sections.find((x) => x.id === r.section_id) || {};
  const seats = (r.seats || []).map((x) => x.label).join(", ");
  $("sum-section").textContent = s.name || "";
  $("sum-seats").textContent = seats || `${T.general_admission} × ${r.quantity}`;
  $("sum-unit").textContent = `${r.quantity} × ${money(Math.floor(r.amount_cents / r.quantity), r.currency)}`;
  $("sum-amount").textContent = money(r.amount_cents, r.currency);
  $("sum-fees").textContent = money(0, r.currency);
  $("sum-total").textContent = money(r.amount_cents, r.currency);
}

function showHold() {
  say("");
  $("pick").hidden = true;
  $("hold").hidden = false;
  $("hold-state").textContent = T.held;
  showSummary();
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

function declined(reason) {
  return T["decline_" + reason] || `${T.declined} (${reason || "payment_declined"})`;
}

// the card as a PaymentMethod id (Stripe.js); localstripe's test Stripe.js has no
// createPaymentMethod, so there the card of a token stands in (docs/payments.md)
async function stripeCard() {
  const made = await stripe.createPaymentMethod({type: "card", card: cardElement});
  if (made && (made.paymentMethod || made.error)) return made.error ? {error: made.error} : {id: made.paymentMethod.id};
  const token = await stripe.createToken(cardElement);
  return token.error ? {error: token.error} : {id: token.token.card.id};
}

function showDone(r) {
  clearInterval(timer);
  say("");
  $("hold").hidden = true;
  $("done").hidden = false;
  $("order-number").textContent = r.order_number || "";
  if (r.order_number) $("order-link").href = `/orders/${r.order_number}`;
}

// the answer of confirm or of /complete: 200 confirmed, 402 declined, 202 3-D Secure or processing
async function settle(r) {
  for (let tries = 0; r.status === 202 && tries < 30; tries++) {
    if (r.body.status === "requires_action" && stripe && tries === 0) {
      say(T.authenticating);
      await stripe.confirmCardPayment(r.body.client_secret);  // the bank's challenge
    } else {
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    r = await api(r.body.complete_url, {method: "POST"});
  }
  if (r.status === 200) showDone(r.body);
  else if (r.status === 402) say(declined(r.body && r.body.reason));
  else say((r.body && r.body.message) || T.error);
  $("pay-button").disabled = r.status === 200;
}

$("pay").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("pay-button").disabled = true;
  say(T.paying);
  let token = null;
  if (stripe) {
    const card = await stripeCard();
    if (card.error) {
      say(card.error.message || T.error);
      $("pay-button").disabled = false;
      return;
    }
    token = card.id;
  } else {
    token = $("card").value;
  }
  const r = await api(`/api/tickets/${reservation.reservation_id}/confirm`, {method: "POST",
    body: {payment_token: token}});
  await settle(r);
});

start();
