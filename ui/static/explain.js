// The Draw tab's Explain view: js_on_load of the gr.HTML #explain-view (ui/explain_view.py).
// Closed (the <details> element), it does nothing at all. Open, it follows the canvas's answers
// (the "digit-studio:answer" event of canvas.js): after an answer to drawing version v arrives,
// it POSTs the same image to /predict with "explain": true, so the answers never wait for the
// explanations. One request in flight; when it returns and a newer drawing has been answered,
// that one is asked next (older ones are skipped). While the pen is down it asks at most every
// DRAWING_INTERVAL_MS; once the pen lifts, at once: fewer explanations while drawing leave the
// cores to the answers and make a request already in flight at pen-up (which the final drawing's
// would wait behind) less likely. A busy server (429/503) keeps the maps shown
// and is asked again at the next answer, or after its Retry-After.
// Each model's section shows its maps (top digit, runner-up, top rather than runner-up), its
// weight images with the drawing's score against each (a linear model: "templates"), its layer
// activations (a CNN: "layers"); a section's data-version is the drawing version it shows.
(() => {
  const details = element.querySelector("#explain");
  const status = element.querySelector(".ds-explain-status");
  const sections = [...element.querySelectorAll(".ds-explain-model")];
  const HINT = status.dataset.hint;
  const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const number = (value) => (value >= 0 ? "+" : "−") + Math.abs(value).toFixed(1);

  let latest = null;  // the newest answered drawing: {version, image, answer, status, url}
  let shownVersion = -1;
  let inFlight = false;
  let retryTimer = null;
  let upload = false;  // an uploaded picture's answer is on the page, not the canvas's
  const DRAWING_INTERVAL_MS = 300;
  let penDown = false;
  let lastAsked = -Infinity;
  let drawingTimer = null;

  function say(text) { status.textContent = text; }

  function clearSections(text) {
    for (const section of sections) {
      section.querySelector(".ds-explain-caption").textContent = text || "";
      section.querySelector(".ds-explain-maps").innerHTML = "";
      section.querySelector(".ds-explain-extra").innerHTML = "";
      section.querySelector(".ds-explain-method").textContent = "";
    }
  }

  function figure(item, caption, extraClass = "") {
    return `<figure class="ds-map ${extraClass}"><img src="${item.image}" width="28" height="28" ` +
           `alt="${escape(caption)}"><figcaption>${caption}</figcaption></figure>`;
  }

  function templates(explanation, top) {
    const cells = explanation.templates.map((t) =>
      `<figure class="ds-template${t.digit === top ? " ds-top" : ""}"><img src="${t.image}" width="28" height="28" ` +
      `alt="Model weights for ${t.digit}"><figcaption><b>${t.digit}</b> ${number(t.score)}</figcaption></figure>`);
    return `<h4>What it thinks each digit looks like (its weights: blue adds to the digit's score, orange ` +
           `takes away), and this drawing's score against each</h4><div class="ds-templates">${cells.join("")}</div>`;
  }

  function layers(explanation) {
    const blocks = explanation.layers.map((layer) =>
      `<figure class="ds-layer"><img src="${layer.image}" alt="${escape(layer.title)} activations" ` +
      `style="aspect-ratio: ${layer.columns * (layer.size[1] + 1) - 1} / ` +
      `${Math.ceil(layer.channels / layer.columns) * (layer.size[0] + 1) - 1}">` +
      `<figcaption>${escape(layer.title)}: ${layer.channels} maps of ${layer.size[0]}×${layer.size[1]}, ` +
      `strongest first</figcaption></figure>`);
    return `<h4>What its layers see in this drawing (white: strong activation)</h4>` +
           `<div class="ds-layers">${blocks.join("")}</div>`;
  }

  function renderSection(section, prediction, version) {
    const caption = section.querySelector(".ds-explain-caption");
    const maps = section.querySelector(".ds-explain-maps");
    const extra = section.querySelector(".ds-explain-extra");
    const method = section.querySelector(".ds-explain-method");
    section.dataset.version = String(version);
    const explanation = prediction && prediction.explanation;
    if (!explanation || explanation.error) {
      caption.textContent = explanation ? explanation.error : "Not available.";
      maps.innerHTML = extra.innerHTML = "";
      method.textContent = "";
      return;
    }
    const [top, runner, contrast] = explanation.maps;
    const unsure = prediction.verdict === "unsure";
    section.dataset.verdict = prediction.verdict || "digit";
    if (unsure) {
      caption.innerHTML = `<b>Not sure: ${top.digit} or ${runner.digit}?</b> Side by side: what makes it a ` +
                          `${top.digit}, and what makes it a ${runner.digit}.`;
    } else if (prediction.verdict === "not_a_digit") {
      caption.innerHTML = `It sees no digit; its best guess is ${top.digit}, then ${runner.digit}.`;
    } else {
      caption.innerHTML = `Reads <b>${top.digit}</b>: where the drawing argues for ${top.digit}, for its ` +
                          `runner-up ${runner.digit}, and for ${top.digit} rather than ${runner.digit}.`;
    }
    maps.classList.toggle("ds-candidates", unsure);
    maps.innerHTML =
      figure(top, unsure ? `what makes it a <b>${top.digit}</b>` : `for <b>${top.digit}</b>`, "ds-first") +
      figure(runner, unsure ? `what makes it a <b>${runner.digit}</b>` : `for ${runner.digit} (runner-up)`,
             "ds-second") +
      figure(contrast, `${contrast.digit} rather than ${contrast.against}`, "ds-contrast");
    extra.innerHTML = (explanation.templates ? templates(explanation, top.digit) : "") +
                      (explanation.layers ? layers(explanation) : "");
    method.textContent = `How: ${explanation.method_text}. The maps lie over ${explanation.space_text}.`;
  }

  function render(entry, answer) {
    if (upload || entry.version < shownVersion) return;  // an upload is shown, or an older drawing's explanation
    shownVersion = entry.version;
    const predictions = answer.predictions || {};
    for (const section of sections) renderSection(section, predictions[section.dataset.model], entry.version);
    say("Each model's evidence for the drawing as it is now.");
  }

  async function ask() {
    if (!details.open || inFlight || !latest || latest.version <= shownVersion) return;
    const wait = penDown ? lastAsked + DRAWING_INTERVAL_MS - performance.now() : 0;
    if (wait > 0) {
      if (drawingTimer === null) drawingTimer = setTimeout(() => { drawingTimer = null; ask(); }, wait);
      return;
    }
    const entry = latest;
    inFlight = true;
    lastAsked = performance.now();
    let retryAfter = 0;
    try {
      const response = await fetch(entry.url, {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({image: entry.image, model: "all", explain: true}),
      });
      const answer = await response.json();
      if (response.ok && answer.predictions) {
        render(entry, answer);
      } else if (response.status === 429 || response.status === 503) {
        retryAfter = 1000 * (Number(response.headers.get("Retry-After")) || 1);
        say(answer.error || "The server is busy: the maps follow in a moment.");
      } else if (entry.version >= shownVersion) {
        say(answer.error || "No explanation for this drawing.");
      }
    } catch (error) {
      say(`Could not reach the server (${error.message}).`);
    } finally {
      inFlight = false;
    }
    if (retryAfter) {
      clearTimeout(retryTimer);
      retryTimer = setTimeout(ask, retryAfter);
    } else {
      ask();  // a newer drawing answered meanwhile: explain that one now
    }
  }

  document.addEventListener("digit-studio:answer", (event) => {
    const detail = event.detail || {};
    upload = false;
    if (!detail.image || !detail.answer || detail.answer.error || !detail.answer.predictions || !detail.url) {
      if (detail.version >= shownVersion) {  // a blank canvas or an error: nothing to explain
        latest = null;
        shownVersion = detail.version;
        clearSections();
        say(detail.hint || !detail.answer ? HINT : "Nothing to explain: the models gave no answer.");
      }
      return;
    }
    latest = {version: detail.version, image: detail.image, url: detail.url};
    ask();
  });
  // An uploaded picture's answer replaces the canvas's on the page; the maps follow the canvas only.
  document.addEventListener("digit-studio:upload-answer", () => {
    latest = null;
    upload = true;  // until the canvas answers again
    clearSections();
    say("The Explain view follows the canvas: draw there to see why each model reads it.");
  });
  details.addEventListener("toggle", () => { if (details.open) ask(); });
  // The pen's state on the canvas (capture: canvas.js handles the events themselves).
  document.addEventListener("pointerdown", (event) => {
    if (event.target.closest && event.target.closest("#sketchpad canvas")) penDown = true;
  }, true);
  const lifted = () => {
    penDown = false;
    if (drawingTimer !== null) { clearTimeout(drawingTimer); drawingTimer = null; }
  };
  document.addEventListener("pointerup", lifted, true);
  document.addEventListener("pointercancel", lifted, true);
})();
