"""Sphinx configuration for the airflow-provider-siro documentation (``make docs``)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# autodoc imports the provider, and with it Airflow: give Airflow a throw-away home, so building the
# docs never reads or writes the user's ~/airflow, and never loads Airflow's own example DAGs.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="siro-docs-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_provider_siro import __version__  # noqa: E402

project = "airflow-provider-siro"
author = "The airflow-provider-siro authors"
copyright = "The airflow-provider-siro authors; Apache License 2.0"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "myst_parser",  # CHANGELOG.md is Markdown, included as it is
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
    "member-order": "bysource",
}
autodoc_typehints = "description"
autodoc_class_signature = "separated"
# Sphinx resolves the names of the type hints; those that live in Airflow, requests or the standard
# library have no page here, and cross-reference misses are not warnings unless nitpicky is on.
nitpicky = False

html_theme = "alabaster"
html_title = f"airflow-provider-siro {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "Apache Airflow provider for Siro",
    "fixed_sidebar": True,
}
