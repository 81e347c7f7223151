// The draw page (and the lottery page's draw): checks the published draw in the browser (the algorithm of
// app/queue/verify_draw.py: SHA-256(seed) is the commitment, the order is the entrant ids sorted
// by HMAC-SHA256(seed, id)), and shows the fan their own entrant id and place.
import {api} from "./app.js";

const root = document.getElementById("draw");
const eventId = root.dataset.event;
// the document checked: the pre-queue's draw, or (data-doc) the sale's registration lottery
const documentUrl = root.dataset.doc || `/api/queue/${eventId}/draw`;
const enc = new TextEncoder();
const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
const bytes = (h) => new Uint8Array(h.match(/../g).map((b) => parseInt(b, 16)));

async function entrants(url) {
  const all = [];
  while (url) {
    const r = await api(url);
    if (r.status !== 200) throw new Error(`${url}: ${r.status}`);
    all.push(...r.body.items);
    url = r.body.next;
  }
  return all;
}

async function problems(draw, listed) {
  const found = [];
  if (hex(await crypto.subtle.digest("SHA-256", bytes(draw.seed))) !== draw.commitment) {
    found.push("the seed does not match the commitment");
  }
  if (listed.length !== draw.entrants) found.push(`${listed.length} entrants listed, ${draw.entrants} announced`);
  if (hex(await crypto.subtle.digest("SHA-256", enc.encode(listed.join("\n")))) !== draw.entrants_digest) {
    found.push("the list does not match the announced digest");
  }
  const key = await crypto.subtle.importKey("raw", bytes(draw.seed), {name: "HMAC", hash: "SHA-256"}, false, ["sign"]);
  const keyed = await Promise.all(listed.map(async (id) => [hex(await crypto.subtle.sign("HMAC", key, enc.encode(id))), id]));
  const sorted = [...keyed].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : 1));
  const first = sorted.findIndex(([, id], i) => id !== listed[i]);
  if (first >= 0) found.push(`the list is not in the seed's order (first difference at place ${first + 1})`);
  // an empty draw (a sale opened at its creation with nobody in the pre-queue) has no order to prove
  if (listed.length && !(new Date(draw.committed_at) < new Date(draw.opens_at))) found.push(root.dataset.late);
  return found;
}

async function verify() {
  const verdict = document.getElementById("verdict");
  verdict.textContent = root.dataset.checking;
  const r = await api(documentUrl);
  const found = await problems(r.body, await entrants(r.body.entrants_url));
  verdict.textContent = found.length ? `${root.dataset.failed} ${found.join("; ")}` : root.dataset.verified;
  verdict.className = found.length ? "error" : "ok";
}

async function mine() {
  const r = await api("/api/auth/session");  // anonymous: no entry to show, and no failed request
  if (!(r.status === 200 && r.body.authenticated)) return;
  const me = await api(`/api/queue/${eventId}/draw/me`);
  if (me.status !== 200) return;
  document.getElementById("entrant").textContent = me.body.entrant_id;
  document.getElementById("mine").hidden = false;
  if (me.body.state === "drawn") {
    document.getElementById("place").textContent = me.body.place
      ? `${me.body.place} / ${me.body.entrants}` : root.dataset.notEntrant;
    document.getElementById("my-place").hidden = false;
  }
}

if (!root.dataset.doc) mine();  // the lottery page shows the fan's entry itself (lottery.js)
if (root.dataset.state === "drawn") verify();
