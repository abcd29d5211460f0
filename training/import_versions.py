"""Bring the model versions of another data location into this one: moving onto PostgreSQL.

    DATABASE_URL=postgresql://... python -m training.import_versions ~/.local/share/digit-studio
    python -m training.import_versions OLD_DATA_DIR --models model1 --keep-serving

Who needs it: an app run on one machine keeps its trained versions as folders in its data location
(`DATA_DIR/versions/<model>/<n>/`). Set DATABASE_URL to PostgreSQL later (replicas, [Deploy] in the
README) and the versions are the database's: the old folders are not read. This copies every trained
version of the old location into the target, the data location and database this process would use
(the same environment as `python app.py`): PostgreSQL when DATABASE_URL names it, else DATA_DIR's
folders. The drawings move with Drawings -> Export / Import (drawings/archive.py).

What it does, per model of the registry, oldest version first (the one that served last, so that it
is the newest and pruning never takes it):
- each version's ONNX file is checked against the SHA-256 its run recorded; a damaged one, one whose
  record cannot be read or whose file cannot be read is skipped and said so, nothing of it copied;
- a version the target holds already (same ONNX SHA-256) is not copied again, so running it twice,
  or after a partial run, copies each version once;
- the copy gets the target's next number (numbers are the database's: replicas never reuse one),
  its record and metadata keep when and how it was trained, and it does not serve while copied;
- afterwards, the version that served in the old location serves in the target (every replica
  follows), unless --keep-serving; a location that served the shipped version 1 changes nothing.
The target keeps MODEL_VERSIONS_KEEP versions as always: beyond that the oldest are pruned (never
the newest, the best or the serving one). Prints one line per version; exit 0, or 2 with one line
saying what is wrong: a refusal copies nothing; a failure on the way (the database gone) keeps what
was copied, each version whole, and running the command again copies the rest.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from store.errors import StoreError
from training.artifacts import read_metadata
from training.model_versions import SHIPPED_VERSION, ModelVersions, VersionError


class CannotImport(ValueError):
    """The import cannot start (the message is for the operator)."""


@dataclass
class Copied:
    model: str
    old: int  # its number in the old location
    new: int | None  # its number in the target; None when skipped
    note: str  # what happened, in words

    def line(self) -> str:
        arrow = f"version {self.new}" if self.new is not None else "not copied"
        return f"{self.model}: version {self.old} -> {arrow} ({self.note})"


def import_versions(source_dir: str | Path, target: ModelVersions, *, models: Sequence[str] | None = None,
                    serve: bool = True) -> list[Copied]:
    """Copy the trained versions of the data location `source_dir` into `target`; see the module doc."""
    source_dir = Path(source_dir).expanduser()
    same_folder = (target.catalog is None and source_dir.resolve() == target.data_dir.resolve())
    if same_folder:
        raise CannotImport(f"{source_dir} is the target's own data location; set DATA_DIR or DATABASE_URL to "
                           f"the new one")
    if not (source_dir / "versions").is_dir():
        raise CannotImport(f"{source_dir} holds no model versions (no versions/ folder): name the old DATA_DIR")
    names = list(models) if models else list(target.models)
    unknown = [name for name in names if name not in target.models]
    if unknown:
        raise CannotImport(f"unknown model {unknown[0]!r}; choose from: {', '.join(target.models)}")
    source = ModelVersions(data_dir=source_dir, shipped_dir=target.shipped_dir, models=target.models,
                           database=None)
    done: list[Copied] = []
    for name in names:
        done.extend(_import_model(name, source, target, serve))
    return done


def _import_model(name: str, source: ModelVersions, target: ModelVersions, serve: bool) -> list[Copied]:
    held = {entry["onnx_sha256"]: entry["version"] for entry in target.list(name) if entry.get("onnx_sha256")}
    listed = source.list(name)
    served_before = next((entry["version"] for entry in listed if entry["serving"]), None)
    entries = sorted((entry for entry in listed if entry["version"] != SHIPPED_VERSION),
                     key=lambda entry: (entry["version"] == served_before, entry["version"]))
    done, numbers = [], {}
    for entry in entries:
        old = entry["version"]
        if not entry.get("onnx_sha256"):
            done.append(Copied(name, old, None, "no SHA-256 recorded to check its ONNX file against: its "
                                                "version.json is unreadable"))
            continue
        files = source.files(name, old)
        try:
            onnx = files["onnx"].read_bytes()
        except OSError as error:
            done.append(Copied(name, old, None, f"its ONNX file cannot be read ({error.strerror or error})"))
            continue
        digest = hashlib.sha256(onnx).hexdigest()
        if digest != entry["onnx_sha256"]:
            done.append(Copied(name, old, None, "damaged: its ONNX file is not the one its run wrote"))
            continue
        if digest in held:
            numbers[old] = held[digest]
            done.append(Copied(name, old, held[digest], "held already"))
            continue
        metadata = read_metadata(files["metadata"]) or {}
        with target.writer(name, source=entry.get("source") or "trained", serve=False) as writer:
            writer.stage_bytes("onnx", onnx)
            if files["native"].is_file():
                writer.stage_bytes("native", files["native"].read_bytes())
            writer.stage_json("metadata", {**metadata, "imported_from": f"version {old} of another data location"})
            writer.commit()
        numbers[old] = held[digest] = writer.version
        accuracy = entry.get("accuracy")
        done.append(Copied(name, old, writer.version, "copied" + (f", MNIST test {accuracy:.2%}" if accuracy else "")))
    if serve and served_before is not None and served_before in numbers:
        target.serve(name, numbers[served_before])
        done.append(Copied(name, served_before, numbers[served_before], "serves, as it did in the old location"))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.import_versions",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("source", help="the old data location (its DATA_DIR, holding versions/)")
    parser.add_argument("--models", default="", help="comma-separated models (default: every model)")
    parser.add_argument("--keep-serving", action="store_true",
                        help="copy the versions but leave what serves in the target as it is")
    args = parser.parse_args(argv)
    models = [name.strip() for name in args.models.split(",") if name.strip()]
    target = ModelVersions()
    try:
        where = "the database at DATABASE_URL" if target.catalog is not None else f"{target.data_dir}"
        done = import_versions(args.source, target, models=models, serve=not args.keep_serving)
    except (CannotImport, VersionError, StoreError, OSError) as error:
        print(f"import_versions: {error}", file=sys.stderr)
        return 2
    for item in done:
        print(item.line())
    copied = sum(1 for item in done if item.note.startswith("copied"))
    print(f"{copied} version(s) copied into {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
