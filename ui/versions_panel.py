"""Model versions on the page (issue 12): the Models tab's list with a Serve button per version, and
the Train tab's "what a run replaces" line and restore offer.

Thin handlers over training/model_versions.py; REST offers the same
(GET /models/{model}/versions, POST /models/{model}/versions/{n}/serve). Serving needs the
training token when the server has one, as in REST.
"""

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from training import lineup
from training.model_versions import VersionError, VersionsUnavailableError
from training.registry import MODELS, ModelSpec
from ui import views
from ui.context import PRIVATE, AppContext
from ui.refusals import Refused
from ui.training import token_matches


def version_line(version: dict[str, Any]) -> str:
    """One version as a line: number, where it came from, accuracy, drawings accuracy, when, how."""
    options = version.get("options") or {}
    how = ("fine-tuned on drawings" if options.get("fine_tune") else
           "with drawings" if options.get("include_drawings") else version.get("source") or "")
    drawings = version.get("drawings_accuracy")
    parts = [f"**v{version['version']}**" + (" · serving" if version.get("serving") else ""),
             f"MNIST test {views.format_percent(version.get('accuracy'))}",
             f"held-out drawings {views.format_percent(drawings, 0)}" if drawings is not None else None,
             how, views.format_when(version.get("trained_at"))]
    return " · ".join(part for part in parts if part)


def serve(ctx: AppContext, name: str, version: int | None, token: str | None) -> Refused | None:
    """Serve `version`; None when done, else why not (also shown as a warning), with REST's status."""
    if not token_matches(token, ctx.train_token):
        problem = Refused("Serving another version needs this server's training token.", 403)
    elif version is None:
        problem = Refused("No such version.", 404)
    else:
        try:
            ctx.versions.serve(name, int(version))
            ctx.predictor.reload(name)
            return None
        except VersionsUnavailableError as error:  # the database of the versions is down
            problem = Refused(str(error), 503)
        except VersionError as error:
            problem = Refused(str(error), 404)
    gr.Warning(problem.message)
    return problem


def replaces_line(ctx: AppContext, name: str) -> str:
    """What a run of `name` would replace, for the Train tab; in words when the versions cannot be listed
    (the database is down): the tab opens as usual, the REST list says 503."""
    try:
        listed = ctx.versions.list(name)
    except VersionError as error:
        return (f"The kept versions cannot be listed right now ({error}). A run still keeps the model it "
                f"replaces.")
    serving = next((v for v in listed if v["serving"]), None)
    if serving is None:
        return "A run becomes the first kept version of this model."
    return (f"A run replaces the serving {version_line(serving)}. It stays kept: serve it again from "
            f"**Models → Versions** or with the restore button that appears after the run.")


# -- the Models tab ---------------------------------------------------------------

@dataclass
class VersionsList:
    lines: list[gr.Markdown]
    buttons: list[gr.Button]
    shown: gr.State  # the version numbers in the slots, newest first

    @property
    def outputs(self) -> list[Any]:
        return [*self.lines, *self.buttons, self.shown]


def slots(ctx: AppContext) -> int:
    # Pruning leaves at most `keep` versions, or 3 when the shipped, best and serving are all older.
    return max(ctx.versions.keep, 3)


def build_list(ctx: AppContext, spec: ModelSpec) -> VersionsList:
    """A fixed number of rows (version line + Serve button), filled by `list_values`."""
    lines, buttons = [], []
    gr.Markdown("#### Versions\nEvery successful run is kept; the shipped model is version 1 and is never deleted.")
    for slot in range(slots(ctx)):
        with gr.Row(equal_height=True):
            lines.append(gr.Markdown(visible=False, elem_id=f"version-{spec.name}-{slot}"))
            buttons.append(gr.Button("Serve", size="sm", scale=0, min_width=120, visible=False,
                                     elem_id=f"serve-{spec.name}-{slot}"))
    return VersionsList(lines, buttons, gr.State([]))


def list_values(ctx: AppContext, name: str, count: int) -> list[Any]:
    listed = ctx.versions.list(name)[:count]
    lines = [gr.Markdown(version_line(v), visible=True) for v in listed]
    buttons = [gr.Button("Serving" if v["serving"] else f"Serve v{v['version']}", visible=True,
                         interactive=not v["serving"], variant="secondary" if v["serving"] else "primary")
               for v in listed]
    hidden = count - len(listed)
    return [*lines, *[gr.Markdown(visible=False)] * hidden, *buttons, *[gr.Button(visible=False)] * hidden,
            [v["version"] for v in listed]]


def build_models_section(ctx: AppContext, tab: gr.Tab, refresh: gr.Button, cards: list[gr.Markdown],
                         figures: dict[str, tuple[Callable[[], list[Any]], list[Any]]] | None = None) -> None:
    """Per model, the versions list under its card, refreshed with the tab; Serve updates list and card,
    then the model's figures (`figures[name]`: the handler and its outputs) follow the served version."""
    from inference.status import model_status_report

    token = gr.Textbox("", label="Training token", type="password", visible=bool(ctx.train_token),
                       info="Serving another version needs this server's TRAIN_TOKEN.", elem_id="versions-token")
    with gr.Row(equal_height=False):
        for (name, spec), card in zip(MODELS.items(), cards):
            with gr.Column(variant="panel", min_width=360):
                gr.Markdown(f"### {spec.title}")
                versions = build_list(ctx, spec)
            count = len(versions.buttons)
            gr.on([tab.select, refresh.click], lambda n=name, c=count: list_values(ctx, n, c), None,
                  versions.outputs, api_name=f"versions_{name}", show_progress="hidden", **PRIVATE)
            for slot, button in enumerate(versions.buttons):
                def serve_slot(tok: str, shown: list[int], n=name, s=slot, c=count) -> list[Any]:
                    serve(ctx, n, shown[s] if s < len(shown) else None, tok)
                    return [*list_values(ctx, n, c), views.model_card(model_status_report(ctx.predictor, ctx.jobs)[n])]

                served = button.click(serve_slot, [token, versions.shown], [*versions.outputs, card],
                                      api_name=f"serve_{name}_slot{slot}", **PRIVATE)
                if figures and name in figures:
                    served.then(figures[name][0], None, figures[name][1], api_name=f"figures_{name}_slot{slot}",
                                **PRIVATE)

    def serve_version(model: str, version: int, token: str = "") -> dict[str, Any]:
        """Serve a kept version of one of the models (see GET /models/{model}/versions); returns it."""
        if model not in MODELS:
            raise Refused(f"Unknown model {str(model)[:40]!r}: choose one of {', '.join(MODELS)}.", 404)
        # Whole numbers only, as in REST: gr.api passes the JSON value as sent, and int() would take
        # "1", 1.5 and true as version 1 (issue 18 item 13).
        if type(version) is not int:  # noqa: E721 (bool is an int subclass: true must be refused too)
            raise Refused(f"'version' must be a whole number like 3, got {str(version)[:20]!r}.", 422)
        problem = serve(ctx, model, version, token)
        if problem:
            raise problem
        return ctx.versions.describe(model, int(version))

    serve_version.__doc__ = serve_version.__doc__.replace("one of the models", lineup.model_choices(MODELS, with_all=False))
    gr.api(serve_version, api_name="serve_version")
