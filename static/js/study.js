// Every image of a case's study, for the reading, scoring and adjudication screens: the primary image (the frontal
// film the AI drafts from) first, then the study's other images (a lateral…), each in its own viewer (viewer.js)
// with its own window/level (presets, drag, reset), zoom and inversion, and its view position as a caption.
// Side by side where each image has room enough, else one at a time with a strip of buttons to switch between
// them; the strip's "Side by side" button overrides the choice.
//
//   const study = createStudy(sectionElement, {label: "Chest radiograph"});
//   study.load(images).then((shown) => { ... });
//
// images: the API's "images" (each an "image" of the reading API with position and view_position), primary first.
// load() resolves when the primary image is painted (as viewer.load does): the screens time that paint, as before a
// case had more images. The others are asked for once the primary is on screen, so that they never slow it down;
// the container's data-images-shown counts the images painted. A case with one image looks as it always did.
import { create } from "./viewer.js";

const MIN_PANE_WIDTH = 320; // CSS px per image: below it, one image at a time

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function captionOf(image, count) {
  const view = image.view_position || "";
  if (count < 2) return view;
  return view ? `${image.position} · ${view}` : String(image.position);
}

export function createStudy(container, options) {
  options = options || {};
  let label = options.label || "Radiograph";

  // Fills the container: the strip (several images only) above the panes, one pane per image.
  const wrap = el("div", "position-absolute top-0 start-0 w-100 h-100 d-flex flex-column");
  // (shown and hidden by Bootstrap's d-flex / d-none: the hidden attribute loses to d-flex)
  const strip = el("div", "d-none flex-wrap align-items-center gap-1 p-1 flex-shrink-0 cxr-strip");
  strip.setAttribute("role", "toolbar");
  strip.setAttribute("aria-label", "Images of the study");
  const choices = el("div", "btn-group btn-group-sm");
  choices.setAttribute("role", "group");
  choices.setAttribute("aria-label", "Image");
  const layoutButton = el("button", "btn btn-sm btn-outline-light ms-auto", "Side by side");
  layoutButton.type = "button";
  layoutButton.title = "Show the images side by side, or one at a time";
  strip.append(choices, layoutButton);
  const panes = el("div", "d-flex flex-grow-1");
  wrap.append(strip, panes);
  container.append(wrap);

  const primaryPane = el("div", "flex-fill");
  panes.append(primaryPane);
  const primary = create(primaryPane, { label });
  let others = []; // [{pane, viewer}]: the images after the primary, made for each case
  let images = [];
  let selected = 0; // the image shown alone (one at a time), and the one whose button is pressed
  let chosen = null; // "all" or "one" once the user chose; null: by the room there is
  let loadSeq = 0;

  function pane(i) {
    return i === 0 ? primaryPane : others[i - 1].pane;
  }

  function viewerAt(i) {
    return i === 0 ? primary : others[i - 1].viewer;
  }

  function layout() {
    if (images.length < 2) return "all";
    if (chosen) return chosen;
    return container.clientWidth / images.length < MIN_PANE_WIDTH ? "one" : "all";
  }

  function arrange() {
    const mode = layout();
    const count = Math.max(images.length, 1);
    strip.classList.toggle("d-flex", count > 1);
    strip.classList.toggle("d-none", count < 2);
    for (let i = 0; i < count; i++) pane(i).hidden = mode === "one" && i !== selected;
    Array.from(choices.children).forEach((b, i) => {
      b.classList.toggle("active", i === selected);
      b.setAttribute("aria-pressed", String(i === selected));
    });
    layoutButton.classList.toggle("active", mode === "all");
    layoutButton.setAttribute("aria-pressed", String(mode === "all"));
    container.dataset.layout = mode;
  }

  function select(i) {
    if (i < 0 || i >= images.length) return;
    selected = i;
    arrange();
    viewerAt(i).activate();
  }

  layoutButton.addEventListener("click", () => {
    chosen = layout() === "all" ? "one" : "all";
    arrange();
  });
  // A click or focus in an image makes it the selected one (its button pressed), as the viewer makes it active.
  const follow = (e) => {
    const i = [primaryPane, ...others.map((o) => o.pane)].findIndex((p) => p.contains(e.target));
    if (i >= 0 && i !== selected) {
      selected = i;
      arrange();
    }
  };
  panes.addEventListener("pointerdown", follow);
  panes.addEventListener("focusin", follow);
  new ResizeObserver(() => {
    if (!chosen) arrange();
  }).observe(container);

  function labelViewers() {
    const count = images.length;
    for (let i = 0; i < Math.max(count, 1); i++) {
      const view = images[i]?.view_position;
      viewerAt(i).setLabel(count < 2 ? label : `${label}, image ${i + 1} of ${count}${view ? `, ${view}` : ""}`);
    }
  }

  function dropOthers() {
    for (const o of others) {
      o.viewer.destroy();
      o.pane.remove();
    }
    others = [];
  }

  function shownCount(n) {
    container.dataset.imagesShown = String(n);
  }

  function clear() {
    loadSeq++;
    primary.clear();
    primary.setCaption("");
    dropOthers();
    images = [];
    selected = 0;
    choices.replaceChildren();
    delete container.dataset.imagesShown;
    arrange();
  }

  function load(list) {
    clear();
    const seq = loadSeq;
    if (!list?.length) return Promise.reject(new Error("No image to show."));
    images = list.slice();
    const count = images.length;
    for (let i = 1; i < count; i++) {
      const p = el("div", "flex-fill border-start border-secondary");
      panes.append(p);
      others.push({ pane: p, viewer: create(p, { label, caption: captionOf(images[i], count) }) });
    }
    primary.setCaption(captionOf(images[0], count));
    if (count > 1) {
      images.forEach((image, i) => {
        const b = el("button", "btn btn-outline-light", captionOf(image, count));
        b.type = "button";
        b.title = `Image ${i + 1} of ${count}${image.view_position ? ` (${image.view_position})` : ""}`;
        b.addEventListener("click", () => {
          select(i);
        });
        choices.append(b);
      });
    }
    labelViewers();
    arrange();
    primary.activate();
    let painted = 0;
    const onePainted = () => {
      if (seq === loadSeq) shownCount(++painted);
    };
    const shown = primary.load(images[0]);
    const rest = () => {
      if (seq !== loadSeq) return;
      others.forEach((o, i) => {
        o.viewer.load(images[i + 1]).then(onePainted, () => {
          /* the viewer says so on screen */
        });
      });
    };
    shown.then(
      () => {
        onePainted();
        rest();
      },
      rest,
    );
    return shown;
  }

  return {
    load,
    clear,
    primary,
    viewers: () => images.map((_, i) => viewerAt(i)),
    select,
    setLabel: (text) => {
      label = text;
      labelViewers();
    },
    layout: () => layout(),
  };
}

// A screen built around the viewer fills the window under the navbar (and any message above it), as the reading
// screen does, and keeps filling it when the window is resized.
export function fillWindow(box) {
  const app = box.closest(".read-app");
  if (!app) return;
  const fit = () => {
    app.style.height = `${window.innerHeight - app.getBoundingClientRect().top - 8}px`;
  };
  fit();
  window.addEventListener("resize", fit);
}
