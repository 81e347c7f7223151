// The web push service worker: a notice ("your turn", an offer, a refund) shows even when no tab
// of the site is open, and a click opens the page it is about.
self.addEventListener("push", (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch { data = {body: event.data && event.data.text()}; }
  event.waitUntil(self.registration.showNotification(data.title || "Tickets", {
    body: data.body || "", tag: `${data.type || "notice"}-${data.event_id || ""}`, data: {url: data.url || "/"},
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(self.clients.openWindow(event.notification.data.url));
});
