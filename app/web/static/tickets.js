// My tickets: each order with its number, total and refund, and one QR code per ticket with its
// event, date, venue, section, seat and price.
import {api, money, requireUser, T} from "./app.js";

function when(iso) {
  return new Intl.DateTimeFormat(window.LOCALE || "en", {dateStyle: "full", timeStyle: "short"}).format(new Date(iso));
}

async function load() {
  if (!(await requireUser())) return;
  const r = await api("/api/orders?page_size=50");
  const list = document.getElementById("orders");
  list.replaceChildren();
  const orders = (r.body && r.body.items) || [];
  document.getElementById("empty").hidden = orders.length > 0;
  for (const o of orders) {
    const box = document.getElementById("order").content.cloneNode(true);
    box.querySelector(".event").textContent = o.event.name;
    box.querySelector(".when").textContent = `${when(o.event.starts_at)} · ${o.event.venue}`;
    const number = box.querySelector(".number");
    number.textContent = o.number;
    number.href = `/orders/${o.number}`;
    box.querySelector(".total").textContent = money(o.total_cents, o.currency);
    box.querySelector(".refund").textContent = T["refund_" + o.refund_state] || "";
    const tickets = box.querySelector(".tickets");
    for (const t of o.tickets) {
      const item = document.getElementById("ticket").content.cloneNode(true);
      item.querySelector(".label").textContent = t.seat ? `${T.seat} ${t.seat}` : t.label;
      item.querySelector(".section").textContent = `${T.section}: ${t.section}`;
      item.querySelector(".price").textContent = money(t.price_cents, t.currency);
      item.querySelector(".state").textContent = t.status === "refunded" ? T.refunded
        : t.checked_in_at ? T.checked_in : T.valid;
      const img = item.querySelector(".qr");
      if (t.status === "refunded") img.remove();
      else {
        img.src = t.qr_url;
        img.alt = `QR ${o.event.name} ${t.label}`;
      }
      item.querySelector(".print").href = t.print_url;
      tickets.append(item);
    }
    list.append(box);
  }
}
load();
