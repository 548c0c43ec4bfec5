"""Installed package releases, as recorded in the published files."""

from __future__ import annotations

from importlib import metadata


def package_version(package: str) -> str | None:
    """The installed release, without a local build label (`2.13.0+cpu` -> `2.13.0`): the label
    names the wheel a machine happened to install, not the code, and must not change lineage or
    an ONNX file's producer_version. None when the package is not installed."""
    try:
        return metadata.version(package).split("+")[0]
    except metadata.PackageNotFoundError:
        return None
