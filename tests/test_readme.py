"""README.md cannot rot: its examples run as written against a live server, and its measured
figures are the ones in benchmarks/results.json.

The REST, gradio_client, examples/client.py and MCP snippets are taken from the README's fenced
code blocks, the default port 7860 replaced by the test server's, and run from the repository
root (bash blocks with `bash -e`, python blocks with this interpreter as `python`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from benchmarks import readme as generator
from tests.app_server import ROOT, git_status, running_app

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


def section(text: str, heading: str) -> str:
    """The text under a `### heading` (or `## heading`) up to the next heading of that level or above
    (a line starting with "#" inside a code block is a comment, not a heading)."""
    level = len(heading.split(" ")[0])
    lines = text.splitlines(keepends=True)
    start = lines.index(heading + "\n")
    in_fence = False
    for end in range(start + 1, len(lines)):
        line = lines[end]
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and re.match(rf"#{{1,{level}}} ", line):
            break
    else:
        end = len(lines)
    return "".join(lines[start:end])


def blocks(text: str, heading: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block in a section."""
    return FENCE.findall(section(text, heading))


def test_the_snippet_sections_have_their_blocks():
    text = README.read_text()
    assert [lang for lang, _ in blocks(text, "### REST")] == ["bash"]
    assert [lang for lang, _ in blocks(text, "### gradio_client")] == ["python", "bash"]
    assert [lang for lang, _ in blocks(text, "### Drawings, corrections and versions")] == ["bash"]
    assert [lang for lang, _ in blocks(text, "### Training from the command line")] == ["bash"]
    assert [lang for lang, _ in blocks(text, "### MCP (Model Context Protocol)")] == ["json", "json", "python"]
    assert "digit.png" in section(text, "## Quick start") and (ROOT / "examples" / "digit.png").is_file()


def test_mcp_client_settings_name_the_served_endpoint():
    from ui.mcp_tools import MCP_PATH

    configs = [json.loads(code) for lang, code in blocks(README.read_text(), "### MCP (Model Context Protocol)")
               if lang == "json"]
    urls = [server.get("url") or server["args"][-1] for config in configs for server in config["mcpServers"].values()]
    assert urls == [f"http://127.0.0.1:7860{MCP_PATH}/"] * 2


def test_readme_figures_agree_with_results_json():
    """`python -m benchmarks.readme` wrote the README's tables from the committed results.json."""
    text = README.read_text()
    document = json.loads(generator.RESULTS.read_text())
    assert generator.render(text, document) == text, "README.md disagrees with results.json: run python -m benchmarks.readme"
    for name in generator.REGIONS:
        region = text.split(f"<!-- begin:{name} -->")[1].split(f"<!-- end:{name} -->")[0]
        assert document["command"] in region and document["machine"]["cpu"] in region, name
    # The training times quoted are the benchmark's, to the tenth of a second.
    training = document["sections"]["training"]["data"]
    for model in ("model1", "model2"):
        assert f"**{training[model]['train_seconds']:.1f} s**" in text, model


def test_readme_generator_refuses_a_quick_run_and_a_missing_region():
    document = json.loads(generator.RESULTS.read_text())
    with pytest.raises(generator.ReadmeError, match="quick run"):
        generator.render(README.read_text(), {**document, "quick": True})
    with pytest.raises(generator.ReadmeError, match="begin:model-table"):
        generator.render("# no regions here\n", document)


def test_readme_generator_check_reports_a_stale_readme(tmp_path):
    stale = tmp_path / "README.md"
    shipped = json.loads(generator.RESULTS.read_text())["sections"]["accuracy"]["data"]["model1"]["accuracy"]
    figure = f"**{generator.pct(shipped)}**"
    assert figure in README.read_text()
    stale.write_text(README.read_text().replace(figure, "**12.34%**", 1))
    result = subprocess.run([sys.executable, "-m", "benchmarks.readme", "--check", "--readme", str(stale)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "-| MNIST test accuracy (shipped models) | **12.34%**" in result.stdout
    assert subprocess.run([sys.executable, "-m", "benchmarks.readme", "--readme", str(stale)], cwd=ROOT,
                          capture_output=True, timeout=60).returncode == 0
    assert stale.read_text() == README.read_text()


# --------------------------------------------------------------------------- the snippets, run


@pytest.fixture(scope="module")
def live(tmp_path_factory, mnist_dir, shipped_models_available):
    """`python app.py` as a reader starts it: the shipped exports/ of this checkout and the default data
    location (DATA_DIR unset; $XDG_DATA_HOME points at a temporary folder, so the test writes nothing of
    the developer's). Yields the port and the environment the snippets run in (the same settings, so a
    `python -m training` snippet writes into the running app's data location)."""
    if not shipped_models_available:
        pytest.skip("exports/ has no shipped models")
    folder = tmp_path_factory.mktemp("readme")
    settings = {"XDG_DATA_HOME": str(folder / "xdg"), "MNIST_DIR": str(mnist_dir)}
    unset = dict.fromkeys(("EXPORTS_DIR", "DATA_DIR", "DRAWINGS_DB", "GRADIO_TEMP_DIR", "MNIST_CACHE", "SPACE_ID"))
    with running_app(ROOT / "exports", folder / "app.log", **unset, **settings) as app:
        port = app.url.rstrip("/").rsplit(":", 1)[1]
        environment = {key: value for key, value in os.environ.items() if key not in unset}
        yield port, {**environment, **settings}, folder / "xdg" / "digit-studio"


def run_snippet(lang: str, code: str, port: str, env: dict[str, str] | None = None) -> str:
    """Run one README block as a reader would, against the test server; returns its output."""
    code = code.replace("7860", port)
    env = {**(env if env is not None else os.environ),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "DIGIT_STUDIO_URL": f"http://127.0.0.1:{port}/", "PYTHONUNBUFFERED": "1"}
    command = ["bash", "-e", "-o", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"README {lang} block failed:\n{code}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def get_json(port: str, path: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return json.load(response)


def wait_until_idle(port: str) -> None:
    """Let a training that one block started (or cancelled) end before the next block trains."""
    deadline = time.monotonic() + 300
    while get_json(port, "/train_status/model1")["running"]:
        assert time.monotonic() < deadline, "training did not end in 300 s"
        time.sleep(0.2)


def shown(block: str, command: str) -> str:
    """The output the README shows for a command: the `# ...` comment on its line (or the next)."""
    lines = block.splitlines()
    index = next(i for i, line in enumerate(lines) if command in line)
    for line in lines[index:index + 2]:
        if "# " in line:
            return line.split("# ", 1)[1]
    raise AssertionError(f"the README shows no output for {command!r}")


def files_of(folder: Path) -> dict[str, str]:
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())
            if path.is_file()}


@pytest.mark.slow
def test_readme_examples_run_as_written_and_leave_the_checkout_clean(live, tmp_path):
    """Every README example that predicts, trains or stores, run as written against the shipped
    exports/ and the default data location (issue 20): the outputs are the ones the README shows, the
    training CLI's run is the served version at once, and `git status` is what it was before."""
    port, env, data = live
    text = README.read_text()
    status_before, shipped = git_status(), files_of(ROOT / "exports")

    quick_start = [code for lang, code in blocks(text, "## Quick start") if "examples/client.py" in code]
    assert len(quick_start) == 1
    assert "digit.png: 3 (model2, " in run_snippet("bash", quick_start[0], port, env)

    (lang, rest), = blocks(text, "### REST")
    out = run_snippet(lang, rest, port, env)
    lines = [json.loads(line) for line in out.strip().splitlines()]
    assert len(lines) == 6, out
    environment, status, prediction, started, training, cancelled = lines
    assert "tf_available" in environment and status["model2"]["available"] is True
    # The README shows today's outputs: the shipped Model 1's accuracy and version, every key of an answer.
    assert f'"accuracy":{status["model1"]["accuracy"]},' in shown(rest, "/model_status")
    assert '"version":1' in shown(rest, "/model_status") and status["model1"]["version"] == 1
    assert prediction["prediction"] == 3 and prediction["model"] == "model2" and len(prediction["probabilities"]) == 10
    assert prediction["verdict"] == "digit"
    assert [key for key in prediction if f'"{key}":' not in shown(rest, "-d \"{\\\"image")] == []
    assert started["started"] is True and started["status_url"] == "/train_status/model1"
    assert training["model"] == "model1" and "state" in training
    assert cancelled["model"] == "model1" and ("cancelled" in cancelled or "error" in cancelled)
    wait_until_idle(port)

    (lang, gradio_snippet), (cli_lang, cli) = blocks(text, "### gradio_client")
    out = run_snippet(lang, gradio_snippet, port, env)
    assert re.search(r"^3 \(\d+\.\d% sure, verdict: digit\)$", out, re.M), out
    assert re.search(r"100\.0%  Done: test accuracy \d+\.\d+% in ", out), out
    wait_until_idle(port)
    out = run_snippet(cli_lang, cli, port, env)
    assert re.search(r"^digit\.png: 3 \(model2, .*\n(.*\n)?digit\.png: 3 \(model1, ", out, re.M), out

    (lang, drawings), = blocks(text, "### Drawings, corrections and versions")
    lines = [json.loads(line) for line in run_snippet(lang, drawings, port, env).strip().splitlines()]
    assert len(lines) == 3, lines
    saved, listed, versions = lines
    assert isinstance(saved["id"], int) and listed["total"] >= 1 and saved == {"id": saved["id"], "label": 3}
    assert "HTTP 201: {\"id\":1,\"label\":3}" in drawings
    assert saved["id"] in [drawing["id"] for drawing in listed["drawings"] if drawing["label"] == 3]
    assert [entry["version"] for entry in versions if entry["serving"]], versions

    (lang, mcp_snippet), = [(lang, code) for lang, code in blocks(text, "### MCP (Model Context Protocol)")
                            if lang == "python"]
    out = run_snippet(lang, mcp_snippet, port, env)
    assert out.splitlines()[0] == "['recognize_digit', 'explain_digit', 'model_status']", out
    assert "'digit': 3" in out and "'verdict': " in out

    # The training CLI while the app runs: its Model 1 lines (Model 2's full run takes minutes of
    # TensorFlow). The full `python -m training model1` runs with --quick added: the same code path
    # (a new version in the data location), seconds instead of minutes on a cold canvas cache.
    (lang, training_block), = blocks(text, "### Training from the command line")
    commands = [line.split("#")[0].strip() for line in training_block.splitlines()
                if line.startswith("python -m training") and "model2" not in line]
    assert commands == ["python -m training --list", "python -m training model1",
                        "python -m training model1 --quick --exports-dir /tmp/try"], commands
    assert "model1\t" in run_snippet(lang, commands[0], port, env)
    result = json.loads(run_snippet(lang, commands[1] + " --quick", port, env).strip().splitlines()[-1][len("RESULT:"):])
    number = result["metadata"]["version"]
    assert Path(result["paths"]["onnx"]).parent == data / "versions" / "model1" / str(number)
    served = get_json(port, "/model_status")["model1"]  # at once: no restart, no reload call
    assert served["version"] == number and served["accuracy"] == pytest.approx(result["test_accuracy"], abs=1e-6)
    assert number == max(entry["version"] for entry in get_json(port, "/models/model1/versions"))
    tried = tmp_path / "try"
    run_snippet(lang, commands[2].replace("/tmp/try", str(tried)), port, env)
    assert sorted(files_of(tried)) == ["model1.joblib", "model1.json", "model1.onnx"]

    # Everything above wrote into the data location, nothing into the checkout.
    assert (data / "drawings.sqlite3").is_file() and (data / "versions" / "model1" / "serving.json").is_file()
    assert files_of(ROOT / "exports") == shipped
    if status_before is None:
        pytest.skip("not a git checkout: the shipped exports/ are unchanged, `git status` cannot be compared")
    assert git_status() == status_before
