// The Draw tab's answers: js_on_load of the gr.HTML #answers (ui/draw_tab.py).
// Shows one /predict answer ("model": "all", "include_input": true) in words and bars:
// the verdict over all models in #verdict, then per model its top digit, a caption
// (#caption-<model>) and the ten probabilities (#probabilities-<model>), and the 28x28
// model input (#model-input img).
// Answers come from the canvas (a "digit-studio:answer" event, no server round trip
// through Gradio) or from Python (an upload: this component's value, {"status", "answer"}).
(() => {
  const HINT = element.querySelector("#verdict").dataset.hint;
  const cards = [...element.querySelectorAll(".ds-card")];
  const preview = element.querySelector("#model-input img");
  const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const percent = (p) => `${Math.round(100 * p)}%`;
  const milliseconds = (ms) => (ms < 1 ? ms.toFixed(2) : ms.toFixed(1)) + " ms";

  // Before the verdict field exists on the server, every answer counts as a plain "digit".
  function judged(prediction) {
    const ranked = prediction.probabilities.map((p, digit) => [p, digit]).sort((a, b) => b[0] - a[0]);
    const verdict = prediction.verdict || "digit";
    const candidates = prediction.candidates && prediction.candidates.length
      ? prediction.candidates : ranked.slice(0, 2).map(([, digit]) => digit);
    return {verdict, candidates, digit: prediction.prediction};
  }

  function either(candidates) {
    return candidates.length > 1
      ? `${candidates.slice(0, -1).join(", ")} or ${candidates[candidates.length - 1]}` : String(candidates[0]);
  }

  function caption(prediction) {
    const {verdict, candidates, digit} = judged(prediction);
    if (verdict === "not_a_digit") return "That doesn't look like a digit";
    if (verdict === "unsure") return `Not sure: ${either(candidates)}?`;
    return `Reads <b>${digit}</b> · ${percent(prediction.probabilities[digit])} sure · ` +
           milliseconds(prediction.latency_ms);
  }

  // One phrase per model; the same phrase for every model is said once.
  function phrase(prediction) {
    const {verdict, candidates, digit} = judged(prediction);
    if (verdict === "not_a_digit") return ["see no digit", "sees no digit"];
    if (verdict === "unsure") return [`are not sure: ${either(candidates)}?`, `is not sure: ${either(candidates)}?`];
    return [`read <b>${digit}</b>`, `reads <b>${digit}</b>`];
  }

  function verdictLine(predictions, titles) {
    const names = Object.keys(predictions);
    if (!names.length) return "No model could read it: see below why.";
    const phrases = names.map((name) => phrase(predictions[name]));
    if (names.length > 1 && phrases.every((p) => p[0] === phrases[0][0])) {
      if (judged(predictions[names[0]]).verdict === "not_a_digit") return "That doesn't look like a digit.";
      const all = names.length === 2 ? "Both models" : `All ${names.length} models`;  // issue 21: any number
      return `${all} ${phrases[0][0]}${phrases[0][0].endsWith("?") ? "" : "."}`;
    }
    // Models saying the same thing are named together ("Models 1 and 2 are not sure: 9 or 4? · Model 3
    // reads 4"): one model per phrase took three lines on a 390 px phone and pushed the cards under the
    // sticky correction bar.
    const groups = new Map();
    names.forEach((name, i) => {
      if (!groups.has(phrases[i][0])) groups.set(phrases[i][0], {phrase: phrases[i], names: []});
      groups.get(phrases[i][0]).names.push(name);
    });
    return [...groups.values()].map(({phrase: p, names: group}) =>
      group.length === 1 ? `${titles[group[0]]} ${p[1]}` : `${together(group.map((name) => titles[name]))} ${p[0]}`
    ).join(" · ");
  }

  // "Model 1", "Model 2" -> "Models 1 and 2"; other titles -> "A and B", "A, B and C".
  function together(titles) {
    const numbered = titles.map((title) => /^Model (\S+)$/.exec(title));
    const items = numbered.every(Boolean) ? numbered.map((match) => match[1]) : titles;
    const list = items.length === 2 ? items.join(" and ") : `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
    return numbered.every(Boolean) ? `Models ${list}` : list;
  }

  function bars(probabilities, top) {
    return probabilities.map((p, digit) =>
      `<div class="ds-bar${digit === top ? " ds-top-bar" : ""}"><span class="ds-bar-digit">${digit}</span>` +
      `<span class="ds-bar-track"><span class="ds-bar-fill" style="width:${(100 * p).toFixed(1)}%"></span></span>` +
      `<span class="ds-bar-value">${percent(p)}</span></div>`).join("");
  }

  function reset(card, text) {
    card.querySelector(".ds-digit").textContent = "–";
    card.dataset.verdict = "";
    card.querySelector(".ds-caption").innerHTML = text ? escape(text) : "";
    card.querySelector(".ds-probabilities").innerHTML = "";
  }

  function render({version = 0, answer = null, status = 0, hint = false} = {}) {
    const verdict = element.querySelector("#verdict");
    const titles = Object.fromEntries(cards.map((card) => [card.dataset.model, card.dataset.short]));
    for (const card of cards) card.querySelector(".ds-caption").dataset.version = String(version);
    preview.dataset.version = String(version);
    if (hint || !answer) {
      verdict.innerHTML = escape(HINT);
      cards.forEach((card) => reset(card, ""));
      preview.removeAttribute("src");
      return;
    }
    if (answer.error || !answer.predictions) {
      // A blank canvas (everything erased) is a hint, not a fault.
      // Errors come worded for the page (ui/draw.py words an upload's; the server words the rest).
      verdict.innerHTML = escape(status === 422 && /blank|empty|speck/i.test(answer.error || "")
        ? `${answer.error} ${HINT}` : answer.error || "No answer from the server: draw again.");
      verdict.classList.toggle("ds-error", status !== 422);
      cards.forEach((card) => reset(card, ""));
      preview.removeAttribute("src");
      return;
    }
    verdict.classList.remove("ds-error");
    verdict.innerHTML = verdictLine(answer.predictions, titles);
    for (const card of cards) {
      const prediction = answer.predictions[card.dataset.model];
      if (!prediction) {
        reset(card, `Not available: ${(answer.unavailable || {})[card.dataset.model] || "no answer"}`);
        continue;
      }
      const {verdict: kind} = judged(prediction);
      card.dataset.verdict = kind;
      card.querySelector(".ds-digit").textContent = String(prediction.prediction);
      card.querySelector(".ds-caption").innerHTML = caption(prediction);
      card.querySelector(".ds-probabilities").innerHTML = bars(prediction.probabilities, prediction.prediction);
    }
    if (answer.model_input) preview.src = answer.model_input;
  }

  document.addEventListener("digit-studio:answer", (event) => render(event.detail));
  // An upload's answer comes from Python as this component's value.
  watch("value", () => {
    const value = props.value;
    if (value && typeof value === "object") {
      render({version: value.version || 0, answer: value.answer, status: value.status || 0, hint: !value.answer});
      // corrections.js: the answer shown is an upload's, not the canvas's (a cleared upload shows none).
      if (value.answer) document.dispatchEvent(new CustomEvent("digit-studio:upload-answer"));
    }
  });
  render({hint: true});
})();
