"""The serving-only install: requirements-serve.txt holds everything the app imports, and no TensorFlow.

`.ci/run` also builds a virtualenv from requirements-serve.txt and runs the suite's non-TensorFlow
part in it; these checks run in any install and say which file is wrong.
"""
from __future__ import annotations

import importlib.metadata
import json
import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.app_server import ROOT, run_python

TENSORFLOW_ONLY = {"tensorflow", "tf2onnx", "keras", "tensorflow-metal"}
# Imported when present, never needed: every virtualenv's setuptools (_distutils_hack, at start-up) and
# charset-normalizer, which numpy.f2py tries when some other package happened to install it.
IMPORTED_IF_PRESENT = {"setuptools", "pip", "charset-normalizer"}


def requirement_lines(name: str) -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / name).read_text().splitlines()]
    return [line for line in lines if line]


def test_requirements_txt_is_the_serving_set_plus_tensorflow():
    serve = {canonicalize_name(Requirement(line).name) for line in requirement_lines("requirements-serve.txt")}
    assert not serve & TENSORFLOW_ONLY
    assert {"gradio", "onnxruntime", "scikit-learn", "skl2onnx", "mcp"} <= serve
    full = requirement_lines("requirements.txt")
    assert full[0] == "-r requirements-serve.txt"
    assert {canonicalize_name(Requirement(line).name) for line in full[1:]} == {"tensorflow", "tf2onnx"}
    assert requirement_lines("requirements-dev.txt") == ["-r requirements.txt", "-r requirements-test.txt"]
    assert not any(line.startswith("-r") for line in requirement_lines("requirements-test.txt"))
    gradio = next(Requirement(line) for line in requirement_lines("requirements-serve.txt") if line.startswith("gradio"))
    assert "mcp" in gradio.extras and str(gradio.specifier).startswith("==")


def _closure(lines: list[str]) -> set[str]:
    """Every distribution the requirement lines install, following installed metadata (with extras)."""
    seen: set[str] = set()
    pending = [(Requirement(line), ()) for line in lines]
    while pending:
        requirement, _ = pending.pop()
        name = canonicalize_name(requirement.name)
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        key = name + "[" + ",".join(sorted(requirement.extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        try:
            needs = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for need in needs:
            dependency = Requirement(need)
            marker = dependency.marker
            wanted = marker is None or any(marker.evaluate({"extra": extra}) for extra in ("", *requirement.extras))
            if wanted:
                pending.append((Requirement(re.sub(r";.*", "", need)), ()))
    return {key.split("[")[0] for key in seen}


def test_the_app_imports_only_what_requirements_serve_installs():
    """Start-up imports no module outside the serving set (TensorFlow, Keras, pytest, ...)."""
    result = run_python("import json, sys\nimport app\nprint(json.dumps(sorted(sys.modules)))", timeout=300,
                        env={"MNIST_DOWNLOAD": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    providers = importlib.metadata.packages_distributions()
    allowed = _closure(requirement_lines("requirements-serve.txt"))
    used = {canonicalize_name(dist) for module in modules for dist in providers.get(module.split(".")[0], [])}
    outside = sorted(used - allowed - IMPORTED_IF_PRESENT)
    assert not outside, f"app.py imports modules from distributions requirements-serve.txt does not install: {outside}"
    assert not used & TENSORFLOW_ONLY
