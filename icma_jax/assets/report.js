// icma-jax report: renders the example rows a page at a time from the JSON in <script id=data>.
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const PAGE = 20;
const KEYS = D.task === "mol2cap"
  ? [["bleu4", "BLEU-4"], ["meteor", "METEOR"]]
  : [["morgan", "Morgan Tanimoto"], ["exact", "exact match"], ["valid", "validity"]];
const [W, H] = D.mol_size;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const fmt = (v) => (v === null || v === undefined ? "-" : v.toFixed(3));
let view = [], page = 0;

function mol(id, smiles) {
  if (id >= 0) return `<svg class="mol" viewBox="0 0 ${W} ${H}" role="img">${D.mols[id]}</svg>`;
  const why = smiles.trim() ? "invalid SMILES" : "empty output";
  return `<svg class="mol invalid" viewBox="0 0 ${W} ${H}" role="img"><rect x="2" y="2" width="${W - 4}" ` +
    `height="${H - 4}"/><text x="${W / 2}" y="${H / 2}" text-anchor="middle">${why}</text></svg>`;
}

function marked(text, spans) {
  const words = text.split(/\s+/).filter((w) => w.length);
  const on = new Array(words.length).fill(false);
  for (let k = 0; k < spans.length; k += 2) for (let j = spans[k]; j < spans[k + 1]; j++) on[j] = true;
  return words.map((w, j) => (on[j] ? `<mark>${esc(w)}</mark>` : esc(w))).join(" ") || "<i>(empty)</i>";
}

function context(r) {
  const figs = r.ctx.map(([e, score]) => {
    const [cid, smiles, text, id] = D.db[e];
    return `<figure class="ctx">${mol(id, smiles)}<figcaption><span class="sc">${score}</span> ` +
      `CID ${cid}: ${esc(text)}</figcaption></figure>`;
  });
  const others = r.cand.map(([cid, score]) => `${cid} (${score})`).join(", ");
  return [figs.join(""), others ? `<div class="others">other retrieved candidates (CID, score): ${others}</div>` : ""];
}

function head(r) {
  const s = KEYS.map(([k, label]) => `${label} <span class="score">${fmt(r.s[k])}</span>`).join(" · ");
  return `<div class="head"><b>#${r.i + 1}</b><span>line ${r.line}</span><span>${s}</span></div>`;
}

function row(r) {
  const [ctxFigs, others] = context(r);
  if (D.task === "mol2cap") {
    return `<div class="ex">${head(r)}<div class="grid2"><figure class="query">${mol(r.q, r.src)}<figcaption>` +
      `query <code>${esc(r.src)}</code></figcaption></figure>${ctxFigs}<div class="texts">` +
      `<p class="ref"><span class="lab">reference</span>${marked(r.ref, r.d[0])}</p>` +
      `<p class="out"><span class="lab">prediction</span>${marked(r.out, r.d[1])}</p></div></div>${others}</div>`;
  }
  const flag = (ok, yes, no) => `<span class="flag ${ok ? "ok" : "bad"}">${ok ? yes : no}</span>`;
  return `<div class="ex">${head(r)}<div class="texts"><p><span class="lab">query caption</span>${esc(r.src)}</p></div>` +
    `<div class="grid2">${ctxFigs}<figure class="query">${mol(r.q, r.ref)}<figcaption>reference ` +
    `<code>${esc(r.ref)}</code></figcaption></figure><figure class="query">${mol(r.p, r.out)}<figcaption>prediction ` +
    `${flag(r.s.valid > 0, "valid", "invalid")} ${flag(r.s.exact > 0, "exact match", "different")} ` +
    `<code>${esc(r.out)}</code></figcaption></figure></div>${others}</div>`;
}

function pager() {
  const pages = Math.max(1, Math.ceil(view.length / PAGE));
  const near = [...new Set([0, page - 2, page - 1, page, page + 1, page + 2, pages - 1])].filter((p) => p >= 0 && p < pages);
  const html = near.map((p) => `<button data-p="${p}" class="${p === page ? "on" : ""}">${p + 1}</button>`).join("");
  for (const el of document.querySelectorAll(".pager")) el.innerHTML = `${html} <span>of ${pages}</span>`;
}

function show() {
  $("rows").innerHTML = view.slice(page * PAGE, (page + 1) * PAGE).map(row).join("");
  $("count").textContent = `${view.length} of ${D.rows.length} examples`;
  pager();
}

function refresh() {
  const key = $("key").value, order = $("order").value, q = $("q").value.trim().toLowerCase();
  const lo = parseFloat($("lo").value), hi = parseFloat($("hi").value);
  const val = (r) => r.s[key] ?? 0;
  view = D.rows.filter((r) => {
    const v = val(r);
    if (!(Number.isNaN(lo) || v >= lo) || !(Number.isNaN(hi) || v <= hi)) return false;
    return !q || (r.src + "\n" + r.ref + "\n" + r.out).toLowerCase().includes(q);
  });
  if (order !== "file") view.sort((a, b) => (order === "asc" ? 1 : -1) * (val(a) - val(b)) || a.i - b.i);
  page = 0;
  show();
}

const CONTROLS = ["key", "order", "lo", "hi", "q"];
$("key").innerHTML = KEYS.map(([k, label]) => `<option value="${k}">${label}</option>`).join("");
// The view is also set by the address, e.g. report.html#key=meteor&order=asc&lo=0.5 (links to a view).
for (const [k, v] of new URLSearchParams(location.hash.slice(1))) if (CONTROLS.includes(k)) $(k).value = v;
for (const id of CONTROLS) $(id).addEventListener("input", () => {
  history.replaceState(null, "", "#" + new URLSearchParams(CONTROLS.map((k) => [k, $(k).value])));
  refresh();
});
document.addEventListener("click", (ev) => {
  const p = ev.target.dataset && ev.target.dataset.p;
  if (p !== undefined) { page = Number(p); show(); $("examples").scrollIntoView(); }
});
refresh();
document.documentElement.dataset.firstPageMs = String(Math.round(performance.now()));
