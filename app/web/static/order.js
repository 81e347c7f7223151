// The order page's refund: asked once (the API gives the same refund on a repeat), then the page
// shows the order as it now is.
import {api, T} from "./app.js";

const form = document.getElementById("refund");
if (form) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = document.getElementById("refund-button");
    button.disabled = true;
    const r = await api(`/api/tickets/${form.dataset.reservation}/refund`, {method: "POST"});
    if (r.status === 200 || r.status === 201) {
      window.location.reload();
      return;
    }
    document.getElementById("refund-message").textContent = (r.body && r.body.message) || T.error;
    button.disabled = false;
  });
}
