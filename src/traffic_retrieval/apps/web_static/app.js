// Search page: every change of the query or of a control asks /api/search and redraws the grid.
// All text from the server or the user is set with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const form = $("search");
let pending = null; // AbortController of the request in flight
let timer = null;

function params() {
  const asked = new URLSearchParams({
    q: $("q").value,
    kind: form.elements.kind.value,
    k: $("k").value,
    prompt: $("prompt").checked ? "1" : "0",
  });
  for (const name of ["camera", "after", "before"]) {  // only where the gallery has metadata and one is typed
    if (!$("filters").hidden && $(name).value.trim()) asked.set(name, $(name).value.trim());
  }
  return asked;
}

function figure(hit) {
  const link = document.createElement("a");
  link.href = hit.url;
  link.target = "_blank";
  link.rel = "noopener";
  link.className = "hit";
  link.title = hit.name;
  const img = document.createElement("img");
  img.src = hit.url;
  img.alt = hit.name;
  img.loading = "lazy";
  const caption = document.createElement("span");
  caption.textContent = `${hit.rank}. ${hit.score.toFixed(3)}`;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = hit.name;
  link.append(img, caption, name);
  return link;
}

async function search() {
  const query = $("q").value.trim();
  if (!query) {
    $("results").replaceChildren();
    $("status").textContent = "";
    $("encoded").textContent = "";
    return;
  }
  if (pending) pending.abort();
  pending = new AbortController();
  try {
    const response = await fetch(`/api/search?${params()}`, { signal: pending.signal });
    const body = await response.json();
    if (!response.ok) {
      $("status").textContent = `error: ${body.error || response.status}`;
      $("results").replaceChildren();
      return;
    }
    $("status").textContent =
      `${body.results.length} results, treated as ${body.kind}` +
      (body.filter === "auto" ? "" : ` (${body.filter} images only)`) +
      (body.where && body.where !== "none" ? `, ${body.where}` : "") + `, ${body.ms} ms`;
    $("encoded").textContent = `encoded: ${body.text}`;
    $("results").replaceChildren(...body.results.map(figure));
  } catch (err) {
    if (err.name !== "AbortError") $("status").textContent = `error: ${err.message}`;
  }
}

function soon() {
  clearTimeout(timer);
  timer = setTimeout(search, 250);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(timer);
  search();
});
$("q").addEventListener("input", soon);
form.addEventListener("change", search);

fetch("/api/info")
  .then((r) => r.json())
  .then((info) => {
    $("info").textContent = `${info.images} images · ${info.model}`;
    $("prompt").parentElement.title = `append "${info.vehicle_prompt}" to vehicle queries`;
    $("k").max = info.max_k;
    $("q").maxLength = info.max_query;
    if (info.metadata > 0) {
      $("filters").hidden = false;
      $("cameras").replaceChildren(...info.cameras.map((name) => {
        const option = document.createElement("option");
        option.value = name;
        return option;
      }));
    }
  });
