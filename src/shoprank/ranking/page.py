# ruff: noqa: E501  (HTML and JavaScript lines)
"""The search page the service serves at /ui: a search box, scored and explained results, click feedback.

The page is sent with a Content-Security-Policy that allows its own inline script and
style by their hashes and nothing else (no other script, no framing: clickjacking), and
the API key a user types stays in the page's memory: it is never stored in the browser.
"""

import base64
import hashlib

STYLE = """
 body { font-family: system-ui, sans-serif; max-width: 54rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
 form { display: flex; gap: .5rem; flex-wrap: wrap; }
 input { padding: .4rem; font-size: 1rem; }
 #q { flex: 1 1 20rem; }
 .result { border-bottom: 1px solid #ddd; padding: .6rem 0; }
 .result a { font-size: 1.05rem; font-weight: 600; color: #1a4fb4; text-decoration: none; cursor: pointer; }
 .meta { color: #555; font-size: .9rem; }
 .reasons { margin: .2rem 0 0 1rem; font-size: .85rem; color: #333; }
 .tag { font-size: .75rem; background: #e9f2ff; border-radius: .3rem; padding: 0 .3rem; margin-left: .3rem; }
 .clicked { color: #0a7a2f; font-size: .85rem; margin-left: .5rem; }
 #status { margin: .8rem 0; color: #555; }
 .degraded { color: #a15c00; }
"""

SCRIPT = """
const $ = (id) => document.getElementById(id);
// the API key lives in the field only (this page's memory): never stored, gone on reload
function headers() {
  const h = {"Content-Type": "application/json"};
  const key = $("api-key").value.trim();
  if (key) h["X-API-Key"] = key;
  return h;
}
function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
async function post(path, body) {
  const r = await fetch(path, {method: "POST", headers: headers(), body: JSON.stringify(body)});
  const data = await r.json().catch(() => ({error: "bad response"}));
  if (!r.ok) throw new Error(data.error || ("HTTP " + r.status));
  return data;
}
async function search(ev) {
  ev.preventDefault();
  const body = {query: $("q").value, k: 10};
  if ($("user").value.trim()) body.user_id = $("user").value.trim();
  const filters = {};
  if ($("category").value.trim()) filters.category = $("category").value.trim();
  if ($("price-max").value.trim()) filters.price_max = Number($("price-max").value);
  if (Object.keys(filters).length) body.filters = filters;
  $("status").textContent = "searching...";
  $("results").innerHTML = "";
  try {
    const data = await post("/search", body);
    const note = data.degraded ? ` <span class="degraded">(degraded: ${esc(data.fallback)})</span>` : "";
    $("status").innerHTML = `${data.results.length} results, intent: ${esc(data.intent || "?")}, model ${esc(data.model_version)}${note}`;
    $("results").innerHTML = data.results.map((r) => `
      <div class="result" data-item="${esc(r.item_id)}">
        <a class="title" data-request="${esc(data.request_id)}" data-item="${esc(r.item_id)}" data-position="${r.position}" data-token="${esc(r.feedback_token)}">${esc(r.title)}</a>
        ${r.new ? '<span class="tag">new</span>' : ""}${r.exploration ? '<span class="tag">exploring</span>' : ""}
        <span class="clicked"></span>
        <div class="meta">${esc(r.item_id)} &middot; ${esc(r.category)} &middot; ${r.price.toFixed(2)} &middot; score <span class="score">${r.score.toFixed(4)}</span></div>
        <ul class="reasons">${r.reasons.map((x) => `<li>${esc(x.text)}</li>`).join("")}</ul>
      </div>`).join("");
    document.querySelectorAll("a.title").forEach((a) => a.addEventListener("click", click));
  } catch (e) {
    $("status").textContent = "error: " + e.message;
  }
}
async function click(ev) {
  const a = ev.currentTarget;
  const mark = a.parentElement.querySelector(".clicked");
  try {
    await post("/feedback", {request_id: a.dataset.request, item_id: a.dataset.item, event: "click",
                             position: Number(a.dataset.position), feedback_token: a.dataset.token});
    mark.textContent = "click recorded";
  } catch (e) {
    mark.textContent = "click not recorded: " + e.message;
  }
}
$("search-form").addEventListener("submit", search);
"""

PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>shoprank search</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>"""
    + STYLE
    + """</style>
</head>
<body>
<h1>shoprank</h1>
<form id="search-form">
  <input id="q" name="q" placeholder="search products, e.g. waterproof tent" autocomplete="off">
  <input id="user" name="user" placeholder="user id (optional)" size="14">
  <input id="category" name="category" placeholder="category" size="12">
  <input id="price-max" name="price-max" placeholder="max price" size="8">
  <input id="api-key" name="api-key" placeholder="API key" size="10" type="password">
  <button id="go" type="submit">Search</button>
</form>
<div id="status"></div>
<div id="results"></div>
<script>"""
    + SCRIPT
    + """</script>
</body>
</html>
"""
)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = "; ".join(
    [
        "default-src 'none'",
        f"script-src {_sha256(SCRIPT)}",
        f"style-src {_sha256(STYLE)}",
        "connect-src 'self'",  # the page calls this service only
        "form-action 'none'",  # the form is handled by the script
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP 3
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
