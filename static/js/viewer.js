// A small canvas viewer for one chest radiograph, an ES module that the reading, scoring and adjudication
// screens import:
//
//   const viewer = create(containerElement, {label: "Chest radiograph"});
//   viewer.load(imageInfo).then((shown) => { ... shown.at is performance.now() of the first paint ... });
//
// imageInfo is the "image" object of the reading API: display_url (an 8-bit windowed PNG, painted first,
// because it is small and already looks right), values_url (the modality values at the same size, packed as
// 16 bits in an RGB PNG: value = R * 256 + G), width, height and windows {file, auto, lung, mediastinum, bone}
// as [center, width] in the units of values_url.
//
// Window/level is computed from the 16-bit values through a 65,536-entry lookup table of packed RGBA pixels,
// so each change is one pass over the image (one table read per pixel), redrawn at most once per animation
// frame. Until the reader changes the window, the server-rendered display PNG stays on screen (it may use the
// file's own non-linear VOI LUT, which a linear window only approximates).
//
// Mouse: left drag = window (horizontal: width, vertical: center); right or middle drag, or shift + drag = pan;
// wheel = zoom at the pointer; double click = fit. Keys (when no text field has the focus): 1-5 presets,
// + / - zoom, F fit, I invert, R or 0 reset, ? help.
//
// Several viewers may share a page (the images of a study side by side, study.js): each has its own window,
// zoom and inversion, and the keys act on one of them only, the active one (the last one clicked or focused, or
// the one activate() names). options.caption: a short label in the toolbar (the image's view position).
export const PRESETS = [
  { name: "file", label: "File", key: "1", title: "The file's own window" },
  { name: "auto", label: "Auto", key: "2", title: "Automatic window from the image histogram" },
  { name: "lung", label: "Lung", key: "3", title: "Lung window" },
  { name: "mediastinum", label: "Mediast.", key: "4", title: "Mediastinum window" },
  { name: "bone", label: "Bone", key: "5", title: "Bone window" },
];
const MAX_DEVICE_ZOOM = 16;      // device pixels per image pixel, at most
const MIN_FIT_FRACTION = 0.25;   // zooming out stops at a quarter of the fitted size
const NEAREST_ABOVE = 2;         // device pixels per image pixel above which pixels are drawn square
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

function grey(v) {
  // One opaque grey pixel as a 32-bit word in the byte order of the platform (RGBA in memory).
  return LITTLE_ENDIAN ? ((0xff000000 | (v << 16) | (v << 8) | v) >>> 0) : (((v << 24) | (v << 16) | (v << 8) | 0xff) >>> 0);
}

const NOT_TEXT = ["checkbox", "radio", "button", "submit", "reset", "range", "color", "file", "image"];
function isTyping(target) {
  if (!target?.tagName) return false;
  const tag = target.tagName;
  if (tag === "INPUT") return !NOT_TEXT.includes(target.type);
  return tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
}

// Every viewer on the page, each with the function that shows whether it is the active one (the one the keys act
// on). With a single viewer the keys act on it, as they always did.
const live = new Map();
let activeViewer = null;

function activate(viewer) {
  if (!live.has(viewer)) return;
  activeViewer = viewer;
  const several = live.size > 1;
  live.forEach((mark, v) => {
    mark(several && v === activeViewer);
  });
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Decode without any colour management when exact, so the bytes of the PNG are the bytes we read back.
// exact: for the packed values; the display PNG (untagged grey) decodes faster with the defaults.
async function decodeBitmap(url, signal, exact) {
  const response = await fetch(url, { credentials: "same-origin", signal: signal });
  if (!response.ok) throw new Error(`HTTP ${response.status} for ${url}`);
  const blob = await response.blob();
  return exact ? createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" }) : createImageBitmap(blob);
}

function newCanvas(w, h) {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(w, h);
  return Object.assign(document.createElement("canvas"), { width: w, height: h });
}

function unpackValues(bitmap) {
  const w = bitmap.width, h = bitmap.height;
  const canvas = newCanvas(w, h);
  const ctx = canvas.getContext("2d", { colorSpace: "srgb", willReadFrequently: true });
  ctx.drawImage(bitmap, 0, 0);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const n = w * h;
  const values = new Uint16Array(n);
  for (let i = 0, j = 0; i < n; i++, j += 4) values[i] = (rgba[j] << 8) | rgba[j + 1];
  return { width: w, height: h, values: values };
}

export function create(container, options) {
  options = options || {};
  container.classList.add("cxr-viewer");
  container.tabIndex = -1;

  const canvas = el("canvas", "cxr-canvas");
  canvas.tabIndex = 0;
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", options.label || "Radiograph");
  const ctx = canvas.getContext("2d", { alpha: false });

  // Toolbar: presets, invert, fit, reset, help.
  const toolbar = el("div", "cxr-toolbar btn-toolbar gap-1");
  toolbar.setAttribute("role", "toolbar");
  toolbar.setAttribute("aria-label", "Image tools");
  const presetGroup = el("div", "btn-group btn-group-sm");
  presetGroup.setAttribute("role", "group");
  presetGroup.setAttribute("aria-label", "Window presets");
  const presetButtons = {};
  PRESETS.forEach((p) => {
    const b = el("button", "btn btn-outline-light", p.label);
    b.type = "button";
    b.title = `${p.title} (${p.key})`;
    b.dataset.preset = p.name;
    b.setAttribute("aria-pressed", "false");
    b.setAttribute("aria-keyshortcuts", p.key);
    b.addEventListener("click", () => { setPreset(p.name); });
    presetButtons[p.name] = b;
    presetGroup.appendChild(b);
  });
  const viewGroup = el("div", "btn-group btn-group-sm");
  viewGroup.setAttribute("role", "group");
  viewGroup.setAttribute("aria-label", "View");
  function toolButton(label, title, key, action) {
    const b = el("button", "btn btn-outline-light", label);
    b.type = "button";
    b.title = `${title} (${key})`;
    b.setAttribute("aria-keyshortcuts", key);
    b.addEventListener("click", action);
    viewGroup.appendChild(b);
    return b;
  }
  const invertButton = toolButton("Invert", "Invert grey scale", "I", () => { toggleInvert(); });
  invertButton.setAttribute("aria-pressed", "false");
  toolButton("Fit", "Fit the image to the window", "F", () => { fit(); });
  toolButton("Reset", "Reset window, zoom and inversion", "R", () => { reset(); });
  const helpButton = el("button", "btn btn-sm btn-outline-light cxr-help", "?");
  helpButton.type = "button";
  helpButton.setAttribute("aria-label", "Keyboard and mouse shortcuts");
  const helpHtml = "<div class='text-start small'><b>Mouse</b><br>Left drag: window (↔ width, ↕ level)<br>" +
    "Right / middle / shift drag: pan<br>Wheel: zoom · Double click: fit<br><b>Keys</b> (outside text fields)<br>" +
    "1–5: File, Auto, Lung, Mediastinum, Bone<br>+ / −: zoom · F: fit · I: invert<br>R or 0: reset · ?: this help<br>" +
    "With several images: the keys act on the one last clicked<br>Ctrl+Enter: submit the report</div>";
  const helpText = "Left drag: window (horizontal width, vertical level). Right, middle or shift drag: pan. Wheel: zoom. " +
    "Double click: fit. Keys outside text fields: 1 to 5 presets, plus and minus zoom, F fit, I invert, R or 0 reset, question mark help. " +
    "With several images, the keys act on the one last clicked. Control Enter: submit.";
  let helpTip = null;
  if (window.bootstrap?.Tooltip) {
    helpTip = window.bootstrap.Tooltip.getOrCreateInstance(helpButton, {
      title: helpHtml, html: true, placement: "bottom", trigger: "hover focus", customClass: "cxr-help-tip",
    });
    helpButton.setAttribute("aria-description", helpText);
  } else {
    helpButton.title = helpText;
  }
  // The image's caption (its view position), first in the toolbar; highlighted on the active one of several viewers.
  const caption = el("span", "badge text-bg-secondary align-self-center cxr-caption");
  caption.hidden = true;
  function setCaption(text) {
    caption.textContent = text || "";
    caption.hidden = !text;
  }
  setCaption(options.caption);
  toolbar.append(caption, presetGroup, viewGroup, helpButton);

  // Corner overlays: window/level and zoom; a status line for loading and errors.
  const overlay = el("div", "cxr-overlay");
  overlay.setAttribute("aria-hidden", "true");
  const wlText = el("div", "cxr-wl");
  const zoomText = el("div", "cxr-zoom");
  overlay.append(wlText, zoomText);
  const status = el("div", "cxr-status");
  status.setAttribute("role", "status");
  const spinner = el("div", "spinner-border spinner-border-sm text-light cxr-spinner");
  spinner.setAttribute("aria-hidden", "true");

  container.append(canvas, toolbar, overlay, status, spinner);

  // ---- state ----------------------------------------------------------------------------------
  let info = null;            // the imageInfo being shown
  let display = null;         // ImageBitmap of the display PNG
  let levels = null;          // [full, half]: the values and their windowed pixels (see makeLevel)
  let loadId = 0;             // invalidates older loads when a new image is loaded
  let aborter = null;
  let width = 0, height = 0;  // image size in image pixels
  const view = { scale: 1, x: 0, y: 0, fitted: true };   // CSS px per image px, and the image origin in CSS px
  const win = { center: 0, width: 1, preset: null, initial: null, invert: false };
  let winStamp = 0;           // bumped at every window or inversion change
  let lutStamp = -1;          // the winStamp the lookup table was built for
  let useValues = false;      // true once the reader changed the window (then we render from the values)
  let wins = {};              // the windows of this image ({file, auto, lung, mediastinum, bone}: [c, w] or null)
  let displayUnits = false;   // true when window/level works on the display PNG's 8-bit grey (no values PNG)
  let raf = 0;
  let interacting = false;    // during a drag or a burst of wheel events: draw fast, then once well
  let settleTimer = 0;
  let dragMode = null;
  let cssW = 0, cssH = 0, dpr = window.devicePixelRatio || 1;
  let destroyed = false;
  let painted = null;         // resolves the load() promise on the first paint
  const lut32 = new Uint32Array(65536);

  // ---- window/level -----------------------------------------------------------------------------
  function windows() { return wins; }

  // The 0.5th to 99.5th percentile of the values, when the server gave no automatic window.
  function autoWindow(values) {
    const hist = new Uint32Array(65536);
    for (let i = 0; i < values.length; i++) hist[values[i]]++;
    const lowCount = values.length * 0.005, highCount = values.length * 0.995;
    let seen = 0, lo = 0, hi = 65535;
    for (let v = 0; v < 65536; v++) { seen += hist[v]; if (seen > lowCount) { lo = v; break; } }
    seen = 0;
    for (let v = 0; v < 65536; v++) { seen += hist[v]; if (seen >= highCount) { hi = v; break; } }
    return [(lo + hi + 1) / 2, Math.max(1, hi - lo + 1)];
  }

  function buildLut() {
    // The DICOM linear VOI function (PS3.3 C.11.2.1.2.1), to 8 bits.
    const c = win.center, w = Math.max(win.width, 1);
    const low = c - 0.5 - (w - 1) / 2, high = c - 0.5 + (w - 1) / 2;
    const scale = 255 / Math.max(w - 1, 1);
    for (let x = 0; x < 65536; x++) {
      let v;
      if (x <= low) v = 0;
      else if (x > high) v = 255;
      else v = Math.round((x - low) * scale);
      if (v > 255) v = 255; else if (v < 0) v = 0;
      lut32[x] = grey(win.invert ? 255 - v : v);
    }
    lutStamp = winStamp;
  }

  // A level: values and an offscreen canvas with their windowed pixels. The half-size level (2×2 means)
  // serves whenever the image is drawn at half size or less, which is the usual fitted view: a quarter of
  // the pixels to window and to draw, and no visible difference.
  function makeLevel(values, w, h) {
    const canvas = newCanvas(w, h);
    const lctx = canvas.getContext("2d");
    const imageData = lctx.createImageData(w, h);
    return { w: w, h: h, values: values, canvas: canvas, ctx: lctx, imageData: imageData,
      out32: new Uint32Array(imageData.data.buffer), stamp: -1 };
  }

  function halve(full) {
    const w = full.w >> 1, h = full.h >> 1, src = full.values, W = full.w;
    const out = new Uint16Array(w * h);
    for (let y = 0; y < h; y++) {
      let i = 2 * y * W, o = y * w;
      for (let x = 0; x < w; x++, i += 2, o++) out[o] = (src[i] + src[i + 1] + src[i + W] + src[i + W + 1] + 2) >> 2;
    }
    return makeLevel(out, w, h);
  }

  function windowed(level) {
    if (level.stamp !== winStamp) {
      if (lutStamp !== winStamp) buildLut();
      const values = level.values, out = level.out32, n = values.length;
      for (let i = 0; i < n; i++) out[i] = lut32[values[i]];   // the one pass per change
      level.ctx.putImageData(level.imageData, 0, 0);
      level.stamp = winStamp;
    }
    return level.canvas;
  }

  function sameWindow(a, b) { return a && b && Math.abs(a[0] - b[0]) < 0.5 && Math.abs(a[1] - b[1]) < 0.5; }

  function matchPreset() {
    const ws = windows();
    const here = [win.center, win.width];
    const found = PRESETS.find((p) => ws[p.name] && sameWindow(ws[p.name], here));
    return found ? found.name : null;
  }

  function setWindow(center, widthValue, preset) {
    win.center = center;
    win.width = Math.max(1, widthValue);
    win.preset = preset === undefined ? matchPreset() : preset;
    useValues = true;
    winStamp++;
    scheduleRender();
  }

  function setPreset(name) {
    const w = windows()[name];
    if (!w || !info) return;
    setWindow(w[0], w[1], name);
  }

  function toggleInvert() {
    win.invert = !win.invert;
    winStamp++;
    scheduleRender();
  }

  // ---- geometry -------------------------------------------------------------------------------------
  function fitScale() { return width && cssW ? Math.min(cssW / width, cssH / height) : 1; }

  function fit() {
    if (!width) return;
    view.scale = fitScale();
    view.x = (cssW - width * view.scale) / 2;
    view.y = (cssH - height * view.scale) / 2;
    view.fitted = true;
    scheduleRender();
  }

  function zoomAt(factor, px, py) {
    if (!width) return;
    const min = fitScale() * MIN_FIT_FRACTION, max = MAX_DEVICE_ZOOM / dpr;
    const next = Math.min(max, Math.max(min, view.scale * factor));
    if (px === undefined) { px = cssW / 2; py = cssH / 2; }
    view.x = px - (px - view.x) * (next / view.scale);
    view.y = py - (py - view.y) * (next / view.scale);
    view.scale = next;
    view.fitted = false;
    interact();
    scheduleRender();
  }

  function reset() {
    if (!info) return;
    if (win.initial) { win.center = win.initial[0]; win.width = win.initial[1]; }
    win.preset = matchPreset();
    win.invert = false;
    winStamp++;
    useValues = !display && !!levels;   // back to the server's rendering when we have it
    fit();
  }

  function resize() {
    const rect = container.getBoundingClientRect();
    const newDpr = window.devicePixelRatio || 1;
    if (rect.width === cssW && rect.height === cssH && newDpr === dpr) return;
    // Keep the image point at the centre of the view where it was.
    const cx = (cssW / 2 - view.x) / view.scale, cy = (cssH / 2 - view.y) / view.scale;
    cssW = rect.width; cssH = rect.height; dpr = newDpr;
    canvas.width = Math.max(1, Math.round(cssW * dpr));
    canvas.height = Math.max(1, Math.round(cssH * dpr));
    if (view.fitted) fit();
    else { view.x = cssW / 2 - cx * view.scale; view.y = cssH / 2 - cy * view.scale; }
    render();   // synchronously: a resized canvas is blank until drawn
  }

  // ---- drawing ------------------------------------------------------------------------------------
  function scheduleRender() {
    if (!raf && !destroyed) raf = requestAnimationFrame(() => { raf = 0; render(); });
  }

  // While the reader drags or zooms, frames are drawn with cheap smoothing; once things settle, one more
  // frame is drawn with high-quality smoothing.
  function interact() {
    interacting = true;
    clearTimeout(settleTimer);
    settleTimer = setTimeout(() => { interacting = false; scheduleRender(); }, 160);
  }

  function render() {
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const s = view.scale * dpr;   // device pixels per image pixel
    let source = null;
    if (useValues && levels) {
      const half = levels[1] && (s <= 0.5 || (interacting && dragMode === "wl" && s <= 1));
      source = windowed(half ? levels[1] : levels[0]);
    } else if (display) {
      source = display;
    }
    if (source) {
      ctx.imageSmoothingEnabled = s <= NEAREST_ABOVE;
      ctx.imageSmoothingQuality = interacting ? "low" : "high";
      // The display PNG is drawn without the lookup table: invert it with a filter instead.
      ctx.filter = source === display && win.invert ? "invert(1)" : "none";
      ctx.setTransform(s, 0, 0, s, view.x * dpr, view.y * dpr);
      ctx.drawImage(source, 0, 0, width, height);
      ctx.filter = "none";
      if (painted) { const done = painted; painted = null; afterPaint(done); }
    }
    updateOverlay();
  }

  // Resolves once the frame with the image has been handed to the compositor: the next frame's callback.
  function afterPaint(resolve) {
    requestAnimationFrame(() => { resolve({ at: performance.now() }); });
  }

  function fmt(n) { return String(Math.round(n)); }

  function updateOverlay() {
    if (!info) { wlText.textContent = ""; zoomText.textContent = ""; return; }
    const presetLabel = win.preset ? ` · ${PRESETS.find((p) => p.name === win.preset).label}` : "";
    wlText.textContent = (Number.isNaN(win.width) ? "" : `W ${fmt(win.width)}  L ${fmt(win.center)}${displayUnits ? " (8-bit)" : ""}`) +
      presetLabel + (win.invert ? " · Inverted" : "");
    zoomText.textContent = `Zoom ${Math.round(view.scale * 100)} %${view.fitted ? " (fit)" : ""}`;
    PRESETS.forEach((p) => {
      const b = presetButtons[p.name];
      const active = win.preset === p.name;
      b.classList.toggle("active", active);
      b.setAttribute("aria-pressed", String(active));
    });
    invertButton.classList.toggle("active", win.invert);
    invertButton.setAttribute("aria-pressed", String(win.invert));
  }

  function setStatus(text) {
    status.textContent = text || "";
    status.hidden = !text;
  }

  // ---- loading ----------------------------------------------------------------------------------------
  function clear() {
    // Never leave the previous patient's image on screen while the next one loads.
    display?.close?.();
    display = null; levels = null;
    info = null; width = 0; height = 0; useValues = false;
    render();
  }

  function adoptValues(values, w, h) {
    const full = makeLevel(values, w, h);
    levels = [full, full.w >= 512 && full.h >= 512 ? halve(full) : null];
    if (!wins.auto) wins.auto = autoWindow(values);
    if (!win.initial) {
      win.initial = wins.file || wins.auto;
      if (!useValues) { win.center = win.initial[0]; win.width = win.initial[1]; win.preset = matchPreset(); winStamp++; }
    }
    PRESETS.forEach((p) => { presetButtons[p.name].disabled = !wins[p.name]; });
    if (!width) { width = full.w; height = full.h; fit(); }
    if (!display) { useValues = true; spinner.hidden = true; }
    setStatus("");
    scheduleRender();
  }

  // Without a values PNG, window/level still works on the display PNG's grey levels (0-255): coarser,
  // and only the identity window ("Auto") makes sense there.
  function adoptDisplayGrey() {
    if (!display) return;
    const c = newCanvas(display.width, display.height);
    const g = c.getContext("2d", { willReadFrequently: true });
    g.drawImage(display, 0, 0);
    const rgba = g.getImageData(0, 0, display.width, display.height).data;
    const values = new Uint16Array(display.width * display.height);
    for (let i = 0, j = 0; i < values.length; i++, j += 4) values[i] = rgba[j];
    displayUnits = true;
    wins = { file: null, auto: [128, 256], lung: null, mediastinum: null, bone: null };
    win.initial = [128, 256];
    if (!useValues) { win.center = 128; win.width = 256; win.preset = "auto"; winStamp++; }
    adoptValues(values, display.width, display.height);
  }

  function loadValues(imageInfo, id, signal) {
    if (!imageInfo.values_url) { adoptDisplayGrey(); return; }
    decodeBitmap(imageInfo.values_url, signal, true).then((bitmap) => {
      if (id !== loadId) { bitmap.close(); return; }
      const unpacked = unpackValues(bitmap);
      bitmap.close();
      if (id !== loadId) return;
      adoptValues(unpacked.values, unpacked.width, unpacked.height);
    }).catch(() => {
      if (id !== loadId || signal.aborted) return;
      adoptDisplayGrey();
      if (!levels) setStatus("Window/level unavailable: the image values could not be loaded.");
    });
  }

  function load(imageInfo) {
    const id = ++loadId;
    if (aborter) aborter.abort();
    aborter = new AbortController();
    const signal = aborter.signal;
    clear();
    info = imageInfo;
    width = imageInfo.width || 0; height = imageInfo.height || 0;
    wins = Object.assign({}, imageInfo.windows || {});
    displayUnits = false;
    win.initial = wins.file || wins.auto || null;   // null: known once the values are loaded
    win.center = win.initial ? win.initial[0] : NaN;
    win.width = win.initial ? win.initial[1] : NaN;
    win.preset = matchPreset();
    win.invert = false;
    winStamp++;
    PRESETS.forEach((p) => { presetButtons[p.name].disabled = !wins[p.name] || !imageInfo.values_url; });
    spinner.hidden = false;
    setStatus("");
    view.fitted = true;
    fit();

    // The values are fetched once the display image is on screen, so that they do not compete with it.
    let valuesStarted = false;
    const startValues = () => {
      if (valuesStarted || id !== loadId) return;
      valuesStarted = true;
      loadValues(imageInfo, id, signal);
    };
    const shown = new Promise((resolve, reject) => {
      painted = (result) => { resolve(result); startValues(); };
      decodeBitmap(imageInfo.display_url, signal, false).then((bitmap) => {
        if (id !== loadId) { bitmap.close(); return; }
        display = bitmap;
        if (!width) { width = bitmap.width; height = bitmap.height; fit(); }
        spinner.hidden = true;
        interact();   // a fast first frame, then a smooth one
        render();     // paint now rather than at the next frame
      }).catch((err) => {
        if (id !== loadId || signal.aborted) return;
        spinner.hidden = true;
        setStatus("The image could not be loaded.");
        painted = null;
        startValues();
        reject(err);
      });
    });
    return shown;
  }

  // ---- input ---------------------------------------------------------------------------------------------
  let drag = null;

  canvas.addEventListener("focus", () => { activate(api); });
  canvas.addEventListener("pointerdown", (e) => {
    activate(api);
    if (!info) return;
    canvas.focus({ preventScroll: true });
    const pan = e.button === 1 || e.button === 2 || (e.button === 0 && e.shiftKey);
    const wl = e.button === 0 && !e.shiftKey;
    if (!pan && !wl) return;
    if (wl && !levels) { setStatus("Loading the image values…"); return; }
    drag = { mode: pan ? "pan" : "wl", x: e.clientX, y: e.clientY, id: e.pointerId };
    dragMode = drag.mode;
    canvas.setPointerCapture(e.pointerId);
    canvas.classList.toggle("cxr-panning", pan);
    e.preventDefault();
  });

  canvas.addEventListener("pointermove", (e) => {
    if (!drag || e.pointerId !== drag.id) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    drag.x = e.clientX; drag.y = e.clientY;
    interact();
    if (drag.mode === "pan") {
      view.x += dx; view.y += dy; view.fitted = false;
      scheduleRender();
    } else {
      // Sensitivity follows the image's own dynamic range: a drag across ~400 px spans the automatic width.
      const auto = wins.auto || win.initial || [32768, 65536];
      const step = Math.max(auto[1], 16) / 400;
      setWindow(win.center + dy * step, win.width + dx * step);
    }
  });

  function endDrag(e) {
    if (!drag || e.pointerId !== drag.id) return;
    drag = null;
    dragMode = null;
    canvas.classList.remove("cxr-panning");
    if (canvas.hasPointerCapture(e.pointerId)) canvas.releasePointerCapture(e.pointerId);
  }
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("contextmenu", (e) => { e.preventDefault(); });
  canvas.addEventListener("dblclick", () => { fit(); });
  canvas.addEventListener("wheel", (e) => {
    if (!info) return;
    e.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const unit = e.deltaMode === 1 ? 16 : (e.deltaMode === 2 ? cssH : 1);
    zoomAt(Math.exp(-e.deltaY * unit * 0.0015), e.clientX - rect.left, e.clientY - rect.top);
  }, { passive: false });

  function onKey(e) {
    if (destroyed || !info || e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    if (live.size > 1 && activeViewer !== api) return;   // another image of the study has the keys
    if (isTyping(e.target) || document.querySelector(".modal.show")) return;
    const k = e.key;
    const preset = PRESETS.find((p) => p.key === k);
    if (preset) setPreset(preset.name);
    else if (k === "+" || k === "=") zoomAt(1.25);
    else if (k === "-" || k === "_") zoomAt(0.8);
    else if (k === "f" || k === "F") fit();
    else if (k === "i" || k === "I") toggleInvert();
    else if (k === "r" || k === "R" || k === "0") reset();
    else if (k === "?") { if (helpTip) helpTip.toggle(); else helpButton.focus(); }
    else return;
    e.preventDefault();
  }
  document.addEventListener("keydown", onKey);

  const observer = new ResizeObserver(() => { resize(); });
  observer.observe(container);
  // A change of devicePixelRatio (browser zoom, moving to another screen) does not always resize the box.
  window.addEventListener("resize", resize);
  resize();

  function destroy() {
    destroyed = true;
    live.delete(api);
    if (activeViewer === api) activeViewer = live.keys().next().value || null;
    if (activeViewer) activate(activeViewer);
    if (aborter) aborter.abort();
    observer.disconnect();
    window.removeEventListener("resize", resize);
    document.removeEventListener("keydown", onKey);
    if (helpTip) helpTip.dispose();
    container.replaceChildren();
  }

  function markActive(on) {
    caption.classList.toggle("text-bg-primary", on);
    caption.classList.toggle("text-bg-secondary", !on);
    container.dataset.active = String(on);
  }

  const api = {
    load: load,
    clear: () => { loadId++; if (aborter) aborter.abort(); clear(); spinner.hidden = true; setStatus(""); },
    setLabel: (text) => { canvas.setAttribute("aria-label", text); },
    setCaption: setCaption,
    // Make this the viewer the keys act on (with several on the page).
    activate: () => { activate(api); },
    setPreset: setPreset,
    setWindow: (center, w) => { setWindow(center, w); },
    invert: toggleInvert,
    zoom: (factor) => { zoomAt(factor); },
    fit: fit,
    reset: reset,
    focus: () => { canvas.focus({ preventScroll: true }); },
    destroy: destroy,
    // For tests and benchmarks.
    state: () => ({
      center: win.center, width: win.width, preset: win.preset, invert: win.invert, scale: view.scale,
      fitted: view.fitted, valuesLoaded: !!levels, renderingValues: useValues && !!levels, imageWidth: width, imageHeight: height,
    }),
    valueAt: (x, y) => (levels ? levels[0].values[y * levels[0].w + x] : null),
    timeWindowing: (half) => {
      if (!levels) return null;
      const t0 = performance.now(); winStamp++; windowed(levels[half && levels[1] ? 1 : 0]); return performance.now() - t0;
    },
  };
  live.set(api, markActive);
  activate(activeViewer || api);   // the first viewer of a page keeps the keys until another one is used
  return api;
}
