// The Draw tab's canvas: js_on_load of the gr.HTML #sketchpad (ui/draw_tab.py).
// Gradio runs this body with `element` (the component's root), `props` (props.value is
// the component's value, sent to Python events that take it as input) and `trigger`.
//
// Why our own canvas: Gradio's Sketchpad uploaded every layer of every stroke (21 POSTs)
// before its prediction event even started: 960 ms from pen-up to answer. Here the page
// POSTs the canvas PNG (a few KB) to the REST route /predict with "model": "all", which
// the server spreads over its prediction workers, and shows both answers itself.
//
// props.value after every answer: {"image": PNG data URL of the 280x280 canvas or null,
// "answer": the /predict JSON (or null), "version": drawing version it answers}.
(() => {
  const UNITS = 280;  // canvas pixels; brush sizes are in these units, whatever the size on screen
  const THROTTLE_MS = 120;  // at most one prediction this often while the pen moves
  const MAX_IN_FLIGHT = 2;  // a pen-up never waits behind more than one live prediction
  const COLOURS = {normal: {ink: "#000000", paper: "#ffffff"}, inverted: {ink: "#ffffff", paper: "#000000"}};

  const canvas = element.querySelector("canvas");
  const context = canvas.getContext("2d", {willReadFrequently: false});
  const brush = element.querySelector("#brush-size input");
  const brushValue = element.querySelector("#brush-size output");
  const eraser = element.querySelector("#eraser");
  const invert = element.querySelector("#invert");
  const predictUrl = endpoint("predict");

  let strokes = [];  // {points: [[x, y], ...], width, erase}: redrawn for Undo and Invert
  let current = null;  // the stroke under the pen
  let version = 0;  // bumped by every change to the drawing; answers older than the shown one are dropped
  let shownVersion = -1;
  let inFlight = 0;
  let lastSent = 0;
  let timer = null;
  let pendingVersion = -1;  // a change not sent yet because MAX_IN_FLIGHT requests were out

  canvas.width = UNITS;
  canvas.height = UNITS;
  redraw();

  function endpoint(route) {
    // The REST routes sit beside Gradio's root (app.py mounts Gradio at "/"). Under a proxy's
    // root path (a Hugging Face Space, or root_path) Gradio's config.root carries that path;
    // the page's own origin is used, as Gradio does when the host names match, so the
    // request never leaves the origin the page came from.
    const config = window.gradio_config || {};
    const root = new URL(config.root || "./", location.href);
    const path = root.hostname === location.hostname ? root.pathname : new URL("./", location.href).pathname;
    return new URL(path.replace(/\/?$/, "/") + route, location.origin).href;
  }

  function colours() {
    return invert.getAttribute("aria-pressed") === "true" ? COLOURS.inverted : COLOURS.normal;
  }

  function paint(stroke, from) {
    const {ink, paper} = colours();
    context.strokeStyle = context.fillStyle = stroke.erase ? paper : ink;
    context.lineWidth = stroke.width;
    context.lineCap = context.lineJoin = "round";
    const points = stroke.points;
    if (points.length === 1) {
      context.beginPath();
      context.arc(points[0][0], points[0][1], stroke.width / 2, 0, 2 * Math.PI);
      context.fill();
      return;
    }
    context.beginPath();
    const start = Math.max(0, from - 1);
    context.moveTo(points[start][0], points[start][1]);
    for (let i = start + 1; i < points.length; i++) context.lineTo(points[i][0], points[i][1]);
    context.stroke();
  }

  function redraw() {
    context.fillStyle = colours().paper;
    context.fillRect(0, 0, UNITS, UNITS);
    for (const stroke of strokes) paint(stroke, 0);
    if (current) paint(current, 0);
    canvas.dataset.version = String(version);
  }

  function changed() {
    version += 1;
    canvas.dataset.version = String(version);
  }

  function at(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * UNITS / box.width, (event.clientY - box.top) * UNITS / box.height];
  }

  // -- pointer input: mouse, pen and touch alike ------------------------------------
  canvas.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    if (current) return;  // a second finger does not start a second stroke
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    current = {points: [at(event)], width: Number(brush.value), erase: eraser.getAttribute("aria-pressed") === "true",
               pointer: event.pointerId};
    paint(current, 0);
    changed();
    schedule();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!current || event.pointerId !== current.pointer) return;
    event.preventDefault();
    const before = current.points.length;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) current.points.push(at(e));
    paint(current, before);
    changed();
    schedule();
  });
  const finish = (event) => {
    if (!current || event.pointerId !== current.pointer) return;
    strokes.push({points: current.points, width: current.width, erase: current.erase});
    current = null;
    // Painted piece by piece, a stroke's antialiased edges overlap; redrawn whole, the canvas is
    // exactly what Undo and Invert redraw, so a drawing reads the same however it was made.
    redraw();
    predictNow();  // the pen lifted: answer now, not at the next throttle tick
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);

  // -- tools ----------------------------------------------------------------------------
  const showBrush = () => { brushValue.textContent = brush.value; };
  brush.addEventListener("input", showBrush);
  showBrush();
  const toggle = (button) => button.setAttribute("aria-pressed", String(button.getAttribute("aria-pressed") !== "true"));
  eraser.addEventListener("click", () => toggle(eraser));
  // Invert swaps the canvas's colours (white ink on black) for those who prefer it. The
  // server finds the ink's polarity from the image's border by itself, so the request
  // does not say "invert": the same digit reads the same in both colour schemes.
  invert.addEventListener("click", () => {
    toggle(invert);
    redraw();
    changed();
    predictNow();
  });
  element.querySelector("#undo").addEventListener("click", () => {
    if (!strokes.length) return;
    strokes.pop();
    redraw();
    changed();
    predictNow();
  });
  element.querySelector("#clear").addEventListener("click", () => {
    strokes = [];
    current = null;
    redraw();
    changed();
    predictNow();
  });
  element.querySelector("#predict").addEventListener("click", () => predictNow());

  // -- predictions ------------------------------------------------------------------
  function schedule() {
    if (timer !== null) return;
    timer = setTimeout(() => { timer = null; send(); }, Math.max(0, lastSent + THROTTLE_MS - performance.now()));
  }

  function predictNow() {
    if (timer !== null) { clearTimeout(timer); timer = null; }
    send();
  }

  function publish(detail) {
    if (detail.version < shownVersion) return;  // an older drawing's answer arrived late
    shownVersion = detail.version;
    document.dispatchEvent(new CustomEvent("digit-studio:answer", {detail}));
    props.value = {image: detail.image, answer: detail.answer, version: detail.version};
  }

  async function send() {
    const sentVersion = version;
    if (!strokes.length && !current) {
      publish({version: sentVersion, image: null, answer: null, status: 0, hint: true});
      return;
    }
    if (inFlight >= MAX_IN_FLIGHT) { pendingVersion = sentVersion; return; }
    const image = canvas.toDataURL("image/png");
    inFlight += 1;
    lastSent = performance.now();
    let status = 0, answer = null;
    try {
      const response = await fetch(predictUrl, {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify({image, model: "all", include_input: true}),
      });
      status = response.status;
      answer = await response.json();
    } catch (error) {
      answer = {error: `Could not reach the server (${error.message}); check the connection and draw again.`};
    } finally {
      inFlight -= 1;
    }
    publish({version: sentVersion, image, answer, status, url: predictUrl});  // url: explain.js asks there too
    if (pendingVersion > sentVersion) { pendingVersion = -1; predictNow(); }
  }
})();
