// Creating a sale without curl: the event, its sale window and limits, its refund policy, and its
// sections (general admission by capacity, seated by rows × seats), through the admin API.
import {api, T} from "./app.js";

const $ = (id) => document.getElementById(id);
const say = (text) => { $("new-message").textContent = text || ""; };

function addSection(kind) {
  const box = $("section").content.cloneNode(true);
  const spec = box.querySelector(".section-spec");
  spec.dataset.kind = kind;
  spec.querySelector(".kind").textContent = kind === "seated" ? T.seated_section : T.ga_section;
  for (const el of spec.querySelectorAll(kind === "seated" ? ".ga" : ".seated")) el.remove();
  for (const input of spec.querySelectorAll(kind === "seated" ? ".s-rows, .s-per-row" : ".s-capacity")) {
    input.required = true;
  }
  spec.querySelector(".s-remove").addEventListener("click", () => spec.remove());
  $("section-list").append(box);
}

// a datetime-local value (the organiser's clock) as an ISO instant; "" stays null
const instant = (value) => (value ? new Date(value).toISOString() : null);

// a price typed in major units (e.g. 45000 won, 50.00 euros) as integer minor units
function minorUnits(value, currency) {
  const digits = new Intl.NumberFormat("en", {style: "currency", currency}).resolvedOptions().maximumFractionDigits;
  return Math.round(Number(value) * 10 ** digits);
}

function errorText(r) {
  const errors = (r.body && r.body.errors) || {};
  const details = Object.entries(errors).map(([k, v]) => `${k}: ${[].concat(v).join(" ")}`).join("; ");
  return `${(r.body && r.body.message) || T.error}${details ? " (" + details + ")" : ""}`;
}

$("add-ga").addEventListener("click", () => addSection("general"));
$("add-seated").addEventListener("click", () => addSection("seated"));

$("new-event").addEventListener("submit", async (e) => {
  e.preventDefault();
  const specs = [...document.querySelectorAll(".section-spec")];
  if (!specs.length) { say(T.add_a_section); return; }
  $("create").disabled = true;
  const event = {
    name: $("ev-name").value, venue: $("ev-venue").value, starts_at: instant($("ev-starts").value),
    sale_opens_at: instant($("ev-opens").value), sale_closes_at: instant($("ev-closes").value),
    admit_per_minute: Number($("ev-rate").value), max_active: Number($("ev-active").value),
    max_per_user: Number($("ev-per-user").value), hold_seconds: Number($("ev-hold").value),
    refund_deadline: instant($("ev-refund-deadline").value), refund_fee_percent: Number($("ev-refund-fee").value),
  };
  const created = await api("/api/events", {method: "POST", body: event});
  if (created.status !== 201) { say(errorText(created)); $("create").disabled = false; return; }
  const id = created.body.id;
  for (const spec of specs) {
    const currency = spec.querySelector(".s-currency").value.toUpperCase();
    const body = {name: spec.querySelector(".s-name").value, currency,
      price_cents: minorUnits(spec.querySelector(".s-price").value, currency)};
    if (spec.dataset.kind === "seated") {
      body.rows = Number(spec.querySelector(".s-rows").value);
      body.seats_per_row = Number(spec.querySelector(".s-per-row").value);
    } else {
      body.capacity = Number(spec.querySelector(".s-capacity").value);
    }
    const r = await api(`/api/events/${id}/sections`, {method: "POST", body});
    if (r.status !== 201) {
      say(`${body.name}: ${errorText(r)}`);
      $("create").disabled = false;
      return;
    }
  }
  window.location.href = `/console/events/${id}`;
});
