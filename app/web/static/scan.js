// The door: a ticket's code from the camera (BarcodeDetector, where the browser has it) or typed
// in; a big green or red answer; the running count checked in / sold.
import {api, requireUser, T} from "./app.js";

const eventId = Number(document.getElementById("scanner").dataset.event);
const $ = (id) => document.getElementById(id);
let lastCode = "";
let lastAt = 0;

async function counts() {
  const r = await api(`/api/events/${eventId}/checkin`);
  if (r.status !== 200) return;
  $("checked-in").textContent = r.body.checked_in;
  $("sold").textContent = r.body.sold;
}

function time(iso) {
  return new Intl.DateTimeFormat(window.LOCALE || "en", {timeStyle: "medium"}).format(new Date(iso));
}

async function check(code) {
  const r = await api(`/api/events/${eventId}/checkin`, {method: "POST", body: {code, gate: $("gate").value || "main"}});
  const box = $("result");
  box.hidden = false;
  if (r.status !== 200) {
    box.className = "bad";
    box.textContent = (r.body && r.body.message) || T.error;
    $("detail").textContent = "";
    return;
  }
  const b = r.body;
  box.className = b.admitted ? "ok" : "bad";
  box.textContent = T["scan_" + b.result] || b.result;
  const parts = [];
  if (b.ticket) parts.push(`${b.ticket.section} · ${b.ticket.label}`);
  if (b.result === "already_used" && b.checked_in_at) parts.push(`${time(b.checked_in_at)} ${T.scan_at} ${b.gate}`);
  $("detail").textContent = parts.join(" — ");
  counts();
}

$("manual").addEventListener("submit", async (e) => {
  e.preventDefault();
  const code = $("code").value.trim();
  if (!code) return;
  await check(code);
  $("code").value = "";
  $("code").focus();
});

async function camera() {
  const video = $("camera");
  video.srcObject = await navigator.mediaDevices.getUserMedia({video: {facingMode: "environment"}});
  video.hidden = false;
  await video.play();
  const detector = new window.BarcodeDetector({formats: ["qr_code"]});
  setInterval(async () => {
    const found = await detector.detect(video).catch(() => []);
    const code = found.length ? found[0].rawValue : "";
    // the same ticket held in front of the camera is one scan, not one per frame
    if (code && (code !== lastCode || Date.now() - lastAt > 5000)) {
      lastCode = code;
      lastAt = Date.now();
      check(code);
    }
  }, 300);
}

async function start() {
  if (!(await requireUser())) return;
  if ("BarcodeDetector" in window && navigator.mediaDevices) {
    $("camera-on").hidden = false;
    $("camera-on").addEventListener("click", () => camera().catch(() => { $("camera-on").hidden = true; }));
  }
  counts();
  setInterval(counts, 5000);
  $("code").focus();
}
start();
