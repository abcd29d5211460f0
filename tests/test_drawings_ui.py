"""Issue 12 through the UI's events against the real app: corrections saved with gradio_client's
`save_drawing`, a training with "Include my drawings", versions served from the Models tab's endpoint,
and the Drawings tab's handlers (token rules, import of an uploaded zip only through Gradio's upload folder)."""
from __future__ import annotations

import httpx
import pytest

from tests.app_server import copy_exports, running_app
from tests.segments import segment_digit

pytestmark = pytest.mark.slow
TOKEN = "ui-token"


@pytest.fixture(scope="module")
def server(exports_copy, tmp_path_factory):
    folder = tmp_path_factory.mktemp("drawings_ui")
    exports = copy_exports(exports_copy, folder / "exports")
    with running_app(exports, folder / "app.log", DATA_DIR=str(folder / "data"), TRAIN_TOKEN=TOKEN,
                     PREDICT_WORKERS="0", DRAWINGS_RATE_PER_MINUTE="1000") as running:
        from gradio_client import Client

        client = Client(running.url, verbose=False)
        yield running.url, client, folder
        client.close()


def png_file(folder, digit: int, seed: int):
    path = folder / f"seg-{digit}-{seed}.png"
    path.write_bytes(segment_digit(digit, seed))
    return path


def test_save_drawing_then_train_with_drawings_and_serve_back(server, mnist_dir):
    from gradio_client import handle_file

    url, client, folder = server
    ids = [client.predict(handle_file(str(png_file(folder, digit, seed))), digit, api_name="/save_drawing")
           for seed in range(3) for digit in range(10)]
    assert len(set(ids)) == 30
    listed = httpx.get(f"{url}drawings", params={"limit": 500}, headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert listed["total"] == 30 and {d["label"] for d in listed["drawings"]} == set(range(10))
    assert httpx.get(f"{url}drawings/{ids[0]}/image",
                     headers={"Authorization": f"Bearer {TOKEN}"}).content == segment_digit(0, 0)

    with pytest.raises(Exception, match="0 to 9"):
        client.predict(handle_file(str(png_file(folder, 1, 9))), 11, api_name="/save_drawing")

    job = client.submit(2, 200, 0.1, 2000, TOKEN, True, api_name="/train_model1")  # include_drawings
    updates = list(job)
    assert updates[-1][1].startswith("Done: test accuracy"), updates[-1][1]
    assert "Your drawings:" in updates[-1][4] and "held out" in updates[-1][4]
    status = client.predict(api_name="/model_status")["model1"]
    assert status["version"] == 2 and status["drawings_accuracy"] is not None

    with pytest.raises(Exception, match="training token"):
        client.predict("model1", 1, "", api_name="/serve_version")
    served = client.predict("model1", 1, TOKEN, api_name="/serve_version")
    assert served["version"] == 1 and served["serving"]
    assert client.predict(api_name="/model_status")["model1"]["version"] == 1


def test_drawings_tab_handlers_follow_the_token(monkeypatch, tmp_path):
    """The tab's private events, called as Gradio calls them: without the token no gallery, no delete,
    no export, no import; with it all four work; an upload must come from Gradio's upload folder."""
    import zipfile

    import gradio as gr

    from drawings.corrections import save_correction
    from drawings.store import DrawingStore
    from inference.image_io import gradio_upload_folder
    from inference.predictor import Predictor
    from training.jobs import JobManager
    from ui import drawings_tab
    from ui.context import AppContext

    store = DrawingStore(tmp_path / "tab.sqlite3")
    predictor = Predictor()
    for digit in (3, 3, 8):
        save_correction(store, predictor, segment_digit(digit, digit), digit)
    ctx = AppContext(predictor, JobManager(), train_token="t", drawings=store)
    with gr.Blocks() as blocks:
        drawings_tab.build(ctx)
    handler = {fn.api_name: fn.fn for fn in blocks.fns.values()}
    show, delete, export, import_ = (handler[name] for name in
                                     ("show_drawings", "delete_drawing", "export_drawings", "import_drawings"))

    summary, gallery, ids, note, _ = show("", "All")
    assert "**3 drawings** saved" in summary and "| Drawings | 0 | 0 | 0 | 2 |" in summary
    assert gallery == [] and "Enter the token" in note
    summary, gallery, ids, note, _ = show("t", "3")
    assert len(gallery) == 2 and ids == [2, 1] and gallery[0][1].startswith("#2: 3")

    with pytest.warns(UserWarning, match="token"):
        assert delete("wrong", 1, "All") == [gr.skip()] * 5
    with pytest.warns(UserWarning, match="token"):
        assert export("") is None
    assert store.count() == 3
    assert delete("t", 1, "All")[2] == [3, 2] and store.count() == 2

    exported = export("t")
    assert sorted(zipfile.ZipFile(exported).namelist()) == ["3/2.png", "8/3.png", "drawings.csv"]
    outside = tmp_path / "drawings.zip"
    outside.write_bytes(open(exported, "rb").read())
    with pytest.warns(UserWarning, match="not uploaded through this page"):
        assert import_({"path": str(outside)}, "t", "All")[0].startswith("**Not imported")
    uploaded = gradio_upload_folder() / "test-drawings-ui" / "drawings.zip"
    uploaded.parent.mkdir(parents=True, exist_ok=True)
    uploaded.write_bytes(outside.read_bytes())
    try:
        with pytest.warns(UserWarning, match="token"):
            import_({"path": str(uploaded)}, "", "All")
        store.delete(2)
        text = import_({"path": str(uploaded)}, "t", "All")[0]
        assert text.startswith("**Imported 1**, skipped 1") and store.count() == 2
    finally:
        uploaded.unlink()
