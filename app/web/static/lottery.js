// The registration lottery page: enter it, then the outcome (a winner's code and the way into the
// presale, a standby place, or not this time). The draw itself is checked by draw.js.
import {api, T} from "./app.js";

const root = document.getElementById("lottery");
const eventId = root.dataset.event;
const $ = (id) => document.getElementById(id);

function show(entry) {
  const enter = $("enter");
  if (enter) enter.hidden = entry.state !== "not_registered";
  if (entry.state === "not_registered") return;
  $("entrant").textContent = entry.entrant_id;
  $("my-entrant").hidden = false;
  if (entry.place) {
    $("place").textContent = entry.place;
    $("my-place").hidden = false;
  }
  if (entry.state === "won") {
    $("entry").textContent = T.lottery_won;
    $("code").textContent = entry.code;
    $("join-presale").href = `/events/${eventId}/queue?code=${encodeURIComponent(entry.code)}`;
    $("my-code").hidden = false;
  } else {
    $("entry").textContent = {registered: T.lottery_registered, lost: T.lottery_lost,
      standby: `${T.lottery_standby} ${entry.standby_place}`}[entry.state] || "";
  }
}

async function load() {
  const session = await api("/api/auth/session");  // anonymous: nothing to show, no failed request
  if (!(session.status === 200 && session.body.authenticated)) {
    if ($("enter")) $("enter").hidden = true;
    return;
  }
  const r = await api(`/api/events/${eventId}/lottery/me`);
  if (r.status === 200) show(r.body);
}

$("enter")?.addEventListener("click", async () => {
  const r = await api(`/api/events/${eventId}/lottery/entries`, {method: "POST"});
  if (r.status === 201 || r.status === 200) {
    show(r.body);
    $("registered").textContent = Number($("registered").textContent) + (r.status === 201 ? 1 : 0);
  } else {
    $("entry").textContent = (r.body && r.body.message) || T.error;
  }
});

load();
