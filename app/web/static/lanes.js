// The console's presale lanes and access codes (docs/waiting-room.md, "Presale codes and lanes"):
// each lane's figures, a new lane, a batch of codes shown once, and "open now" / "release now".
import {api, T} from "./app.js";

const panel = document.getElementById("lanes-panel");
const eventId = panel.dataset.event;
const $ = (id) => document.getElementById(id);
const when = (local) => (local ? new Date(local).toISOString() : null);
const shown = (iso) => (iso ? new Date(iso).toLocaleString(window.LOCALE) : "–");

function cell(content) {
  const td = document.createElement("td");
  td.append(content);
  return td;
}

function action(label, change) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = label;
  button.addEventListener("click", change);
  return button;
}

async function change(lane, body) {
  const r = await api(`/api/events/${eventId}/lanes/${lane.name}`, {method: "PATCH", body});
  $("lanes-message").textContent = r.status === 200 ? T.saved : (r.body && r.body.message) || T.error;
  await load();
}

async function load() {
  const r = await api(`/api/events/${eventId}/lanes`);
  if (r.status !== 200) return;
  $("no-lanes").hidden = r.body.length > 0;
  $("lanes").hidden = r.body.length === 0;
  $("lanes").querySelector("tbody").replaceChildren(...r.body.map((lane) => {
    const tr = document.createElement("tr");
    tr.dataset.lane = lane.name;
    const actions = document.createElement("span");
    actions.append(action(T.lane_open_now, () => change(lane, {opens_at: new Date().toISOString()})));
    if (lane.sections.length) {
      actions.append(" ", action(T.lane_release_now, () => change(lane, {sections_released_at: new Date().toISOString()})));
    }
    tr.append(cell(lane.name), cell(`${lane.share_percent} %`), cell(shown(lane.opens_at)),
      cell(lane.sections.length ? shown(lane.sections_released_at) : "–"), cell(`${lane.codes} (${lane.uses})`),
      cell(String(lane.redeemed)), cell(String(lane.waiting)), cell(String(lane.admitted)), cell(actions));
    return tr;
  }));
  for (const select of [$("codes-lane"), $("lottery-lane")]) {
    const chosen = select.value;
    select.replaceChildren(...r.body.map((lane) => new Option(lane.name, lane.name)));
    if (chosen) select.value = chosen;
  }
  await loadLottery();
}

// the registration lottery: a form until one is opened, then its figures and actions
async function loadLottery() {
  const r = await api(`/api/events/${eventId}/lottery`);
  $("new-lottery").hidden = r.status !== 404;
  $("lottery-actions").hidden = r.status !== 200;
  if (r.status !== 200) {
    $("lottery-state").textContent = "";
    return;
  }
  const l = r.body;
  $("lottery-state").textContent = l.state === "drawn"
    ? `${T.lottery_drawn}: ${l.entrants} · ${T.lottery_winners} ${l.winners} · ${T.lottery_promoted} ${l.promoted}`
    : `${T.lottery_open} ${shown(l.closes_at)} · ${T.lottery_registered_count} ${l.registered}`;
  $("lottery-draw").hidden = l.state === "drawn";
  $("lottery-promote").disabled = !(l.state === "drawn" && l.losers === "waitlist");
}

async function lotteryAction(path, body) {
  const r = await api(`/api/events/${eventId}/lottery/${path}`, {method: "POST", body});
  $("lanes-message").textContent = r.status === 200 ? T.saved : (r.body && r.body.message) || T.error;
  await loadLottery();
}

$("new-lottery").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = {lane: $("lottery-lane").value, winners: Number($("lottery-winners").value),
    closes_at: when($("lottery-closes").value), losers: $("lottery-losers").value};
  const r = await api(`/api/events/${eventId}/lottery`, {method: "POST", body});
  $("lanes-message").textContent = r.status === 201 ? T.saved : (r.body && r.body.message) || T.error;
  await loadLottery();
});
$("lottery-draw").addEventListener("click", () => lotteryAction("draw"));
$("lottery-promote").addEventListener("click", () => lotteryAction("promote", {count: Number($("promote-count").value)}));

$("new-lane").addEventListener("submit", async (e) => {
  e.preventDefault();
  const sections = [...$("lane-sections").querySelectorAll("input:checked")].map((box) => Number(box.value));
  const body = {name: $("lane-name").value.trim(), share_percent: Number($("lane-share").value),
    opens_at: when($("lane-opens").value), sections, sections_released_at: when($("lane-release").value)};
  const r = await api(`/api/events/${eventId}/lanes`, {method: "POST", body});
  $("lanes-message").textContent = r.status === 201 ? T.saved : (r.body && r.body.message) || T.error;
  if (r.status === 201) e.target.reset();
  await load();
});

$("new-codes").addEventListener("submit", async (e) => {
  e.preventDefault();
  const emails = $("codes-emails").value.split(/\s+/).filter(Boolean);
  const body = {lane: $("codes-lane").value, uses: Number($("codes-uses").value),
    valid_until: when($("codes-until").value)};
  if (emails.length) body.emails = emails; else body.count = Number($("codes-count").value);
  if ($("codes-limit").value) body.ticket_limit = Number($("codes-limit").value);
  const r = await api(`/api/events/${eventId}/codes`, {method: "POST", body});
  if (r.status !== 201) {
    $("lanes-message").textContent = (r.body && r.body.message) || T.error;
    return;
  }
  const lines = r.body.codes.map((c) => (c.email ? `${c.code},${c.email}` : c.code));
  $("codes-text").value = lines.join("\n");
  $("codes-csv").href = URL.createObjectURL(new Blob([`code,email\n${r.body.codes.map((c) => `${c.code},${c.email || ""}`).join("\n")}\n`],
    {type: "text/csv"}));
  $("codes-made").hidden = false;
  $("lanes-message").textContent = T.saved;
  await load();
});

load();
setInterval(load, 5000);
