// My tickets: confirmed ones with their QR code; pending, held and expired ones too.
import {api, requireUser, T} from "./app.js";

async function load() {
  if (!(await requireUser())) return;
  const r = await api("/api/tickets/status?page_size=100");
  const list = document.getElementById("tickets");
  const template = document.getElementById("ticket");
  list.replaceChildren();
  for (const t of (r.body && r.body.items) || []) {
    const item = template.content.cloneNode(true);
    item.querySelector(".title").textContent = `#${t.reservation_id.slice(0, 8)} · ${t.quantity}`;
    const seats = (t.seats || []).map((s) => s.label).join(", ");
    item.querySelector(".status").textContent = `${T[t.status] || t.status}${seats ? " · " + seats : ""}`;
    if (t.status === "confirmed") {
      const img = item.querySelector(".qr");
      img.src = `/tickets/${t.reservation_id}/qr.svg`;
      img.alt = `QR ${t.reservation_id.slice(0, 8)}`;
      img.hidden = false;
    }
    list.append(item);
  }
}
load();
