// The ncrefs map page: pick a dataset or file, a variable and a time step; tiles come from this
// server's TiTiler routes (/tiles, /statistics, /point), MapLibre GL from the server itself.
"use strict";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { url: null, variable: null, dim: null, step: null, rescale: null, units: "" };

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

async function getJSON(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

function query(extra = {}) {
  const q = new URLSearchParams({ url: state.url, variable: state.variable });
  if (state.dim && state.step !== null) q.append("sel", `${state.dim}=${state.step}`);
  for (const [k, v] of Object.entries(extra)) q.append(k, v);
  return q.toString();
}

const map = new maplibregl.Map({
  container: "map",
  // No basemap: a plain background (tests and air-gapped use need no network but this server).
  style: { version: 8, sources: {}, layers: [{ id: "background", type: "background", paint: { "background-color": "#dde3ea" } }] },
  center: [0, 15], zoom: 0.55, renderWorldCopies: false, attributionControl: false,
});
window.ncrefsMap = map;
map.addControl(new maplibregl.NavigationControl(), "top-right");

async function loadSources() {
  const select = $("source");
  const [datasets, references] = await Promise.all([getJSON("/datasets"), getJSON("/references")]);
  select.innerHTML = "";
  const group = (label, items) => {
    const g = document.createElement("optgroup");
    g.label = label;
    for (const [value, text] of items) g.append(new Option(text, value));
    if (items.length) select.append(g);
  };
  group("Datasets", datasets.map((d) => [d.name, d.name]));
  group("Files (references)", references.map((r) => [r.url, r.name]));
  const wanted = params.get("url");
  if (wanted && ![...select.options].some((o) => o.value === wanted)) select.prepend(new Option(wanted, wanted));
  if (wanted) select.value = wanted;
  if (!select.value && select.options.length) select.selectedIndex = 0;
  if (!select.options.length) setStatus("No datasets or references yet.");
  else await chooseSource(select.value);
}

async function chooseSource(url) {
  state.url = url;
  setStatus(`opening ${url} …`);
  const info = await getJSON(`/variables?url=${encodeURIComponent(url)}`);
  const select = $("variable");
  select.innerHTML = "";
  for (const v of info.variables) select.append(new Option(v.long_name ? `${v.name} (${v.long_name})` : v.name, v.name));
  select._variables = info.variables;
  if (params.get("variable")) select.value = params.get("variable");
  if (!info.variables.length) return setStatus("No variable on a lat/lon grid here.", true);
  await chooseVariable(select.value || info.variables[0].name);
}

async function chooseVariable(name) {
  const v = $("variable")._variables.find((x) => x.name === name);
  state.variable = name;
  state.dim = v.dim;
  state.units = v.units || "";
  const steps = $("step");
  steps.innerHTML = "";
  for (const s of v.steps) steps.append(new Option(s.replace("T00:00:00.000000000", ""), s));
  steps.disabled = !v.steps.length;
  const wanted = params.get("step");
  if (wanted && v.steps.includes(wanted)) steps.value = wanted;
  state.step = v.steps.length ? steps.value : null;
  await draw();
}

async function draw() {
  setStatus("computing the colour range …");
  // The colour range of this variable at this step (min/max over the whole grid).
  const world = { type: "Feature", properties: {}, geometry: { type: "Polygon",
    coordinates: [[[-180, -85], [180, -85], [180, 85], [-180, 85], [-180, -85]]] } };
  const stats = await getJSON(`/statistics?${query({ max_size: 512 })}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(world) });
  const band = Object.values(stats.properties.statistics)[0];
  state.rescale = [band.min, band.max];
  $("vmin").textContent = format(band.min);
  $("vmax").textContent = format(band.max);
  $("units").textContent = state.units;
  const colormap = $("colormap").value;
  $("colorbar").src = `/colorMaps/${colormap}?f=png&width=256&height=14&orientation=horizontal`;
  const tiles = `${location.origin}/tiles/WebMercatorQuad/{z}/{x}/{y}.png?` +
    query({ rescale: `${band.min},${band.max}`, colormap_name: colormap });
  if (map.getLayer("data")) map.removeLayer("data");
  if (map.getSource("data")) map.removeSource("data");
  map.addSource("data", { type: "raster", tiles: [tiles], tileSize: 256 });
  map.addLayer({ id: "data", type: "raster", source: "data", paint: { "raster-resampling": "nearest" } });
  setStatus(`${state.url}\n${state.variable}${state.step ? " at " + state.step : ""}`);
  document.body.dataset.ready = "true";
}

function format(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  return Math.abs(x) >= 1000 || (Math.abs(x) < 0.01 && x !== 0) ? x.toExponential(3) : x.toFixed(3);
}

// The value under the cursor, from /point (one request at a time, the latest position wins).
let pending = null, busy = false;
async function pointValue() {
  if (busy || !pending || !state.variable) return;
  const { lng, lat } = pending;
  pending = null;
  busy = true;
  try {
    const p = await getJSON(`/point/${lng.toFixed(4)},${lat.toFixed(4)}?${query()}`);
    const value = Array.isArray(p.values) ? p.values[0] : null;
    $("value").textContent = value === null ? "no data" : `${format(value)} ${state.units}`;
    $("where").textContent = `(${lng.toFixed(2)}, ${lat.toFixed(2)})`;
  } catch (error) {
    $("value").textContent = "—";
    $("where").textContent = "";
  } finally {
    busy = false;
    if (pending) pointValue();
  }
}
map.on("mousemove", (e) => { pending = e.lngLat.wrap(); pointValue(); });

$("source").addEventListener("change", (e) => chooseSource(e.target.value).catch((err) => setStatus(err.message, true)));
$("variable").addEventListener("change", (e) => chooseVariable(e.target.value).catch((err) => setStatus(err.message, true)));
$("step").addEventListener("change", (e) => { state.step = e.target.value; draw().catch((err) => setStatus(err.message, true)); });
$("colormap").addEventListener("change", () => draw().catch((err) => setStatus(err.message, true)));
map.on("load", () => loadSources().catch((err) => setStatus(err.message, true)));
