// The Draw tab's correction controls: js_on_load of the gr.HTML #correction-controls (ui/corrections.py).
// The buttons follow the canvas's answers (the "digit-studio:answer" event of canvas.js): "Right"
// names the digit it confirms (Model 2's answer, whatever Model 1 read) and is disabled without one;
// the ten digits need a drawing. A click triggers this component's `click` event with
// {label, version}; Python saves the canvas value (`sketch`) and answers with this component's
// value {saved, label, version, message}, shown on the line under the buttons.
(() => {
  const root = element.querySelector(".ds-corrections");
  const right = element.querySelector("#correct-right");
  const picks = [...element.querySelectorAll(".ds-pick")];
  const note = element.querySelector("#correction-note");
  const HINT = note.dataset.hint;
  const MODEL = root.dataset.model;  // whose answer "Right" confirms

  let shown = {version: -1, image: false, digit: null};  // the drawing whose answer is on the page
  let saving = false;
  let savedVersion = -1;  // this drawing is saved: no second copy from a double click

  const canvasVersion = () => Number((document.querySelector("#sketchpad canvas") || {dataset: {}}).dataset.version);

  function topDigit(answer) {
    const predictions = (answer && answer.predictions) || {};
    const prediction = predictions[MODEL] || Object.values(predictions)[0];
    return prediction && Number.isInteger(prediction.prediction) ? prediction.prediction : null;
  }

  function update() {
    const done = savedVersion === shown.version;
    const usable = shown.image && !saving && !done;
    right.disabled = !usable || shown.digit === null;
    right.textContent = shown.digit === null ? "Right" : `Right: it's a ${shown.digit}`;
    right.title = shown.digit === null ? "The models have not read a digit yet"
                                       : `Save this drawing as a ${shown.digit}`;
    picks.forEach((pick) => { pick.disabled = !usable; });
  }

  function say(text, kind = "") {
    note.textContent = text;
    note.dataset.kind = kind;
  }

  document.addEventListener("digit-studio:answer", ({detail}) => {
    if (detail.version === shown.version) return;
    shown = {version: detail.version, image: Boolean(detail.image), digit: detail.image ? topDigit(detail.answer) : null};
    saving = false;
    say(shown.image ? "" : HINT);  // a new drawing: the last one's "Saved" or warning no longer applies
    update();
  });
  // An upload's answer replaces the canvas's on the page: these buttons save canvas drawings only.
  document.addEventListener("digit-studio:upload-answer", () => {
    shown = {version: shown.version, image: false, digit: null};
    say("To correct the models, draw the digit on the canvas.");
    update();
  });

  function choose(label) {
    if (canvasVersion() !== shown.version) {  // the pen moved since this answer: its drawing is not sent yet
      say("Wait for the models' answer to your drawing, then choose again.", "warning");
      return;
    }
    saving = true;
    say(`Saving as a ${label}…`);
    update();
    trigger("click", {label, version: shown.version});
  }
  right.addEventListener("click", () => { if (shown.digit !== null) choose(shown.digit); });
  picks.forEach((pick) => pick.addEventListener("click", () => choose(Number(pick.dataset.digit))));

  watch("value", () => {
    const value = props.value;
    if (!value || typeof value !== "object") return;
    if (value.version === shown.version) {
      saving = false;
      if (value.saved) savedVersion = value.version;
    }
    say(value.message || "", value.saved ? "saved" : "warning");
    update();
  });
  update();
})();
