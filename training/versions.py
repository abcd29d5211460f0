"""Installed package versions, for model metadata, /env and benchmark reports."""
from __future__ import annotations

import importlib.metadata
from typing import Iterable


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """{package: version} for those of `packages` that are installed (never imports them)."""
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions
