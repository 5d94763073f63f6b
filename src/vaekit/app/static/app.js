// vaekit live explorer: the page's logic. Plain JavaScript, no libraries.
//
// The server owns the model; this script draws the scatter of /api/points,
// asks /api/decode for the image of the point under the mouse (or the pinned
// point), and calls /api/interpolate and /api/encode for the other panels.
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

const $ = (id) => document.getElementById(id);

const state = {
  info: null,
  points: null,
  view: null,          // plane -> canvas transform
  base: null,          // offscreen canvas holding the points
  pinned: null,        // {x, y}: the current point
  hover: null,         // {x, y} under the mouse, or null
  offsets: {},         // unit -> slider offset
  marks: {A: null, B: null},
  encoded: null,       // {x, y} of the last uploaded image
  path: null,          // [[x, y], ...] of the last interpolation
};

function classColour(k) {
  return k < PALETTE.length ? PALETTE[k] : `hsl(${(k * 137.5) % 360}, 60%, 45%)`;
}

// ------------------------------------------------------------------ errors and requests

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function checked(response) {
  if (response.ok) return response;
  let message = `${response.status} ${response.statusText}`;
  try { message = (await response.json()).error || message; } catch (e) { /* not JSON */ }
  throw new Error(message);
}

async function getJSON(url, options) {
  return (await checked(await fetch(url, options))).json();
}

// ------------------------------------------------------------------ the scatter

function makeView(canvas, xs, ys) {
  const lo = (a) => a.reduce((m, v) => Math.min(m, v), Infinity);
  const hi = (a) => a.reduce((m, v) => Math.max(m, v), -Infinity);
  let [x0, x1, y0, y1] = [lo(xs), hi(xs), lo(ys), hi(ys)];
  const span = Math.max(x1 - x0, y1 - y0, 1e-6) * 1.1;  // equal aspect, 5% margins
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  const size = canvas.width;
  return {
    toCanvas: (x, y) => [(x - cx) / span * size + size / 2, size / 2 - (y - cy) / span * size],
    toPlane: (px, py) => [(px - size / 2) / size * span + cx, (size / 2 - py) / size * span + cy],
  };
}

function drawBase() {
  const canvas = $("scatter");
  const base = document.createElement("canvas");
  base.width = canvas.width;
  base.height = canvas.height;
  const ctx = base.getContext("2d");
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, base.width, base.height);
  // Axes through the plane's origin.
  const [ox, oy] = state.view.toCanvas(0, 0);
  ctx.strokeStyle = "#e4e7ec";
  ctx.beginPath();
  ctx.moveTo(ox, 0); ctx.lineTo(ox, base.height);
  ctx.moveTo(0, oy); ctx.lineTo(base.width, oy);
  ctx.stroke();
  const {x, y, labels} = state.points;
  ctx.globalAlpha = 0.55;
  for (let i = 0; i < x.length; i++) {
    const [px, py] = state.view.toCanvas(x[i], y[i]);
    ctx.fillStyle = classColour(labels[i]);
    ctx.fillRect(px - 1.5, py - 1.5, 3, 3);
  }
  ctx.globalAlpha = 1;
  state.base = base;
}

function marker(ctx, point, colour, label, shape) {
  if (!point) return;
  const [px, py] = state.view.toCanvas(point.x, point.y);
  ctx.strokeStyle = colour;
  ctx.fillStyle = colour;
  ctx.lineWidth = 2;
  ctx.beginPath();
  if (shape === "cross") {
    ctx.moveTo(px - 8, py); ctx.lineTo(px + 8, py);
    ctx.moveTo(px, py - 8); ctx.lineTo(px, py + 8);
  } else if (shape === "diamond") {
    ctx.moveTo(px, py - 8); ctx.lineTo(px + 8, py); ctx.lineTo(px, py + 8); ctx.lineTo(px - 8, py); ctx.closePath();
  } else {
    ctx.arc(px, py, 7, 0, 2 * Math.PI);
  }
  ctx.stroke();
  if (label) {
    ctx.font = "bold 13px system-ui, sans-serif";
    ctx.fillText(label, px + 9, py - 9);
  }
}

function redraw() {
  const canvas = $("scatter");
  const ctx = canvas.getContext("2d");
  ctx.drawImage(state.base, 0, 0);
  // Class means, labelled.
  ctx.font = "12px system-ui, sans-serif";
  state.info.classes.forEach((c, k) => {
    if (!c.mean) return;
    const [px, py] = state.view.toCanvas(c.mean[0], c.mean[1]);
    ctx.fillStyle = classColour(k);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 3;
    ctx.strokeText(c.name, px + 4, py - 4);
    ctx.fillText(c.name, px + 4, py - 4);
  });
  if (state.path) {
    ctx.strokeStyle = "#111";
    ctx.lineWidth = 1.5;
    ctx.setLineDash([4, 3]);
    ctx.beginPath();
    state.path.forEach(([x, y], i) => {
      const [px, py] = state.view.toCanvas(x, y);
      i ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
    });
    ctx.stroke();
    ctx.setLineDash([]);
  }
  marker(ctx, state.marks.A, "#111", "A", "circle");
  marker(ctx, state.marks.B, "#111", "B", "circle");
  marker(ctx, state.encoded, "#c11574", "upload", "diamond");
  marker(ctx, state.pinned, "#000", "", "cross");
  if (state.hover) marker(ctx, state.hover, "#2f6fde", "", "circle");
}

function planePoint(event) {
  const canvas = $("scatter");
  const rect = canvas.getBoundingClientRect();
  const px = (event.clientX - rect.left) * canvas.width / rect.width;
  const py = (event.clientY - rect.top) * canvas.height / rect.height;
  const [x, y] = state.view.toPlane(px, py);
  return {x, y};
}

// ------------------------------------------------------------------ decoding, one request at a time

const decoder = {busy: false, next: null, url: null};

function decode(point) {
  decoder.next = point;
  if (!decoder.busy) pump();
}

async function pump() {
  const point = decoder.next;
  if (!point) return;
  decoder.next = null;
  decoder.busy = true;
  const params = new URLSearchParams({x: point.x, y: point.y});
  for (const [unit, value] of Object.entries(state.offsets)) {
    if (value) params.append("offset", `${unit}:${value}`);
  }
  try {
    const blob = await (await checked(await fetch(`/api/decode?${params}`))).blob();
    const img = $("decoded");
    const url = URL.createObjectURL(blob);
    img.onload = () => {
      if (decoder.url) URL.revokeObjectURL(decoder.url);
      decoder.url = url;
      img.dataset.point = `${point.x},${point.y}`;  // which point is shown (read by the tests)
    };
    img.src = url;
    $("coords").textContent = `${state.info.plane.labels[0]} = ${point.x.toFixed(3)}, ` +
                              `${state.info.plane.labels[1]} = ${point.y.toFixed(3)}`;
    showError("");
  } catch (error) {
    showError(error.message);
  } finally {
    decoder.busy = false;
    if (decoder.next) pump();
  }
}

function shownPoint() {
  return state.hover && $("follow").checked ? state.hover : state.pinned;
}

// ------------------------------------------------------------------ sliders

function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  const span = state.info.slider_span;
  for (const {unit, kl} of state.info.units) {
    const row = document.createElement("div");
    row.className = "slider";
    const label = document.createElement("span");
    label.className = "mono";
    label.textContent = `z[${unit}]  KL ${kl.toFixed(2)}`;
    const input = document.createElement("input");
    Object.assign(input, {type: "range", min: -span, max: span, step: 0.01, value: 0});
    input.dataset.unit = unit;
    const value = document.createElement("span");
    value.className = "mono";
    value.textContent = "0.00";
    input.addEventListener("input", () => {
      state.offsets[unit] = Number(input.value);
      value.textContent = Number(input.value).toFixed(2);
      decode(state.pinned);
    });
    row.append(label, input, value);
    box.append(row);
  }
}

function setSliders(offsets) {
  const span = state.info.slider_span;
  for (const input of $("sliders").querySelectorAll("input")) {
    const v = Math.max(-span, Math.min(span, offsets[input.dataset.unit] || 0));
    input.value = v;
    input.nextElementSibling.textContent = v.toFixed(2);
    state.offsets[input.dataset.unit] = v;
  }
}

// ------------------------------------------------------------------ interpolation

function buildEndSelects() {
  for (const [id, preset] of [["from", 0], ["to", 1]]) {
    const select = $(id);
    select.replaceChildren();
    for (const mark of ["A", "B"]) select.append(new Option(`point ${mark}`, `mark:${mark}`));
    state.info.classes.forEach((c, k) => {
      if (c.mean) select.append(new Option(`class mean: ${c.name}`, `class:${c.name}`));
    });
    const classes = [...select.options].filter((o) => o.value.startsWith("class:"));
    if (classes.length) select.value = classes[Math.min(preset, classes.length - 1)].value;
  }
}

function endOf(select) {
  const split = select.value.indexOf(":");
  const [kind, name] = [select.value.slice(0, split), select.value.slice(split + 1)];
  if (kind === "class") return {class: name};
  const point = state.marks[name];
  if (!point) throw new Error(`point ${name} is not marked yet: pin a point, then press ${name}`);
  return {x: point.x, y: point.y};
}

async function interpolate() {
  try {
    const body = {from: endOf($("from")), to: endOf($("to")), method: $("method").value,
                  steps: Number($("steps").value), offsets: state.offsets};
    const result = await getJSON("/api/interpolate", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    const strip = $("strip");
    strip.replaceChildren();
    result.images.forEach((src, i) => {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.className = "pixels";
      img.src = src;
      const caption = document.createElement("figcaption");
      caption.textContent = `x = ${result.x[i].toFixed(2)}`;
      figure.append(img, caption);
      strip.append(figure);
    });
    state.path = result.path;
    redraw();
    showError("");
  } catch (error) {
    showError(error.message);
  }
}

function mark(name) {
  state.marks[name] = {...state.pinned};
  redraw();
}

// ------------------------------------------------------------------ encoding an upload

async function encodeFile(file) {
  if (!file) return;
  $("enc-status").textContent = `encoding ${file.name}…`;
  try {
    const invert = $("invert").checked ? 1 : 0;
    const result = await getJSON(`/api/encode?invert=${invert}`, {
      method: "POST", body: file,
      headers: {"Content-Type": "application/octet-stream", "X-File-Name": encodeURIComponent(file.name)}});
    $("enc-input").src = result.input;
    $("enc-recon").src = result.reconstruction;
    $("enc-status").textContent = `${file.name}: lands at (${result.x.toFixed(3)}, ${result.y.toFixed(3)})`;
    state.encoded = {x: result.x, y: result.y};
    state.pinned = {x: result.x, y: result.y};
    setSliders(result.offsets);
    redraw();
    decode(state.pinned);
    showError("");
  } catch (error) {
    $("enc-status").textContent = "";
    showError(error.message);
  }
}

// ------------------------------------------------------------------ wiring

function wire() {
  const canvas = $("scatter");
  canvas.addEventListener("mousemove", (event) => {
    state.hover = planePoint(event);
    if ($("follow").checked) decode(state.hover);
    redraw();
  });
  canvas.addEventListener("mouseleave", () => {
    state.hover = null;
    decode(state.pinned);
    redraw();
  });
  canvas.addEventListener("click", (event) => {
    state.pinned = planePoint(event);
    decode(state.pinned);
    redraw();
  });
  document.addEventListener("keydown", (event) => {
    if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return;
    const key = event.key.toUpperCase();
    if (key === "A" || key === "B") mark(key);
  });
  $("mark-a").addEventListener("click", () => mark("A"));
  $("mark-b").addEventListener("click", () => mark("B"));
  $("run-interp").addEventListener("click", interpolate);
  $("reset-sliders").addEventListener("click", () => { setSliders({}); decode(state.pinned); });
  $("file").addEventListener("change", (event) => encodeFile(event.target.files[0]));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    encodeFile(event.dataTransfer.files[0]);
  });
}

async function main() {
  try {
    const [info, points] = await Promise.all([getJSON("/api/info"), getJSON("/api/points")]);
    state.info = info;
    state.points = points;
    const plane = info.plane;
    $("run-info").textContent = `${info.run} · ${info.dataset} · ${info.count.toLocaleString()} ${info.split} ` +
      `images · latent dim ${info.latent_dim} · image ${info.image_shape.join("×")}`;
    $("map-title").textContent = plane.pca
      ? `PCA plane of the latent means (PC 1 ${(100 * plane.explained[0]).toFixed(0)}%, ` +
        `PC 2 ${(100 * plane.explained[1]).toFixed(0)}% of the variance)`
      : "Latent means of the test images";
    const legend = $("legend");
    info.classes.forEach((c, k) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = classColour(k);
      item.append(swatch, c.name);
      legend.append(item);
    });
    state.view = makeView($("scatter"), points.x, points.y);
    drawBase();
    state.pinned = {x: 0, y: 0};
    buildSliders();
    buildEndSelects();
    wire();
    redraw();
    decode(state.pinned);
    document.body.dataset.ready = "1";  // the scatter is drawn (read by the tests)
  } catch (error) {
    showError(`cannot load the explorer: ${error.message}`);
  }
}

main();
