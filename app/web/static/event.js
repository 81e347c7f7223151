// Event page: live availability per section.
import {api} from "./app.js";

const table = document.querySelector("table.sections");
async function update() {
  const r = await api(`/api/events/${table.dataset.event}`);
  if (r.status !== 200) return;
  for (const s of r.body.sections) {
    const cell = table.querySelector(`tr[data-section="${s.id}"] .available`);
    if (cell) cell.textContent = s.available > 0 ? `${s.available} / ${s.capacity}` : window.T.sold_out;
  }
}
update();
setInterval(update, 3000);
