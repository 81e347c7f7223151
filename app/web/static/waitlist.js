// The fan's waitlist places of an event: position and tickets ahead, or an offer with its
// countdown and a Buy button that goes straight to checkout with the offer's pass.
import {api, duration, requireUser, T} from "./app.js";

const eventId = document.getElementById("waitlist").dataset.event;
const timers = [];

function card(section, place) {
  const item = document.getElementById("place").content.cloneNode(true);
  item.querySelector(".section").textContent = section.name;
  const decline = item.querySelector(".decline");
  decline.textContent = T.decline;
  decline.addEventListener("click", async () => {
    await api(`/api/events/${eventId}/sections/${section.id}/waitlist`, {method: "DELETE"});
    load();
  });
  if (place.status === "offered") {
    item.querySelector(".state").textContent = `${T.offer_for} ${place.offer.quantity}`;
    const offer = item.querySelector(".offer");
    offer.hidden = false;
    const timer = offer.querySelector(".timer");
    const buy = item.querySelector(".buy");
    buy.hidden = false;
    buy.textContent = T.buy_now;
    buy.href = `/events/${eventId}/checkout?offer_section=${section.id}`;
    const end = Date.parse(place.offer.expires_at);
    const tick = () => {
      const left = (end - Date.now()) / 1000;
      timer.textContent = `${T.offer_expires} ${duration(left)}`;
      if (left <= 0) load();
    };
    tick();
    timers.push(setInterval(tick, 1000));
  } else {
    const eta = place.eta_seconds === null ? "" : ` · ${T.eta} ${duration(place.eta_seconds)}`;
    item.querySelector(".state").textContent =
      `${T.waiting_position}: ${place.position} · ${place.units_ahead} ${T.units_ahead}${eta}`;
  }
  return item;
}

async function load() {
  while (timers.length) clearInterval(timers.pop());
  const detail = await api(`/api/events/${eventId}`);
  const list = document.getElementById("places");
  const items = [];
  for (const section of (detail.body && detail.body.sections) || []) {
    if (section.kind !== "general") continue;
    const r = await api(`/api/events/${eventId}/sections/${section.id}/waitlist`);
    if (r.status === 200) items.push(card(section, r.body));
  }
  list.replaceChildren(...items);
  document.getElementById("none").hidden = items.length > 0;
}

async function start() {
  if (!(await requireUser())) return;
  await load();
  setInterval(load, 10000);  // an offer made meanwhile shows without a reload
}
start();
