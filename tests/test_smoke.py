"""What every Airflow line the package declares must do, run in every leg of ``make test``.

The newest Airflow 3 and Airflow 2.11 run the whole suite; Airflow 3.0, 3.1 and 3.2 run this file alone,
against the package installed from its built wheel (``SIRO_TESTS_FROM_WHEEL=1``), as a user gets it: the
provider imports, refuses an Airflow below its floor, shows its connection form, and uploads a file in a
real ``dag.test()`` run against the offline Siro server.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import pkgutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from airflow_compat import AIRFLOW_3, AIRFLOW_VERSION
from packaging.version import Version
from upload_support import endpoints, return_value, task_instances, write_audio

import airflow_provider_siro

ROOT = Path(__file__).resolve().parents[1]
FORM_EXTRAS = {"org_token", "client_id", "client_secret", "user_id", "scope", "auth_host", "timeout"}


def public_modules() -> list[str]:
    return sorted(
        module.name
        for module in pkgutil.walk_packages(airflow_provider_siro.__path__, "airflow_provider_siro.")
        if not any(part.startswith("_") and part != "__main__" for part in module.name.split("."))
        and not module.name.endswith(".__main__")
    )


def test_the_provider_imported_is_the_installed_distribution():
    """The wheel legs test the wheel's copy in site-packages; the full-suite legs the source tree (an
    editable install)."""
    dist = metadata.distribution("airflow-provider-siro")
    assert dist.version == airflow_provider_siro.__version__
    package_dir = Path(airflow_provider_siro.__file__).resolve().parent
    if os.environ.get("SIRO_TESTS_FROM_WHEEL") == "1":
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
        assert "archive_info" in direct and direct["url"].endswith(".whl"), direct
        assert package_dir == Path(dist.locate_file("airflow_provider_siro")).resolve()
        assert package_dir != ROOT / "airflow_provider_siro"
        assert (package_dir / "py.typed").is_file()  # the package data made it into the wheel
    else:
        assert package_dir == ROOT / "airflow_provider_siro"


def test_every_public_module_imports():
    modules = public_modules()
    # The roles of the house (README): each has its module, so a lost package shows here.
    for role in ("hooks.siro", "operators.siro", "operators.bulk", "sensors.siro", "triggers.siro"):
        assert f"airflow_provider_siro.{role}" in modules
    for name in modules:
        importlib.import_module(name)


def test_every_compat_name_resolves_on_this_airflow():
    from airflow_provider_siro import compat

    assert compat.AIRFLOW_VERSION == AIRFLOW_VERSION
    assert compat.AIRFLOW_V_3_0_PLUS is AIRFLOW_3
    for name in compat.__all__:
        assert getattr(compat, name) is not None, name


def _import_with_airflow_faked_at(
    version: str, tmp_path: Path, module: str
) -> subprocess.CompletedProcess[str]:
    """Import ``module`` in a fresh interpreter that finds an ``apache-airflow`` distribution of
    ``version`` first on its path, as if pip had installed that Airflow."""
    fake = tmp_path / f"airflow-{version}"
    info = fake / f"apache_airflow-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: apache-airflow\nVersion: {version}\n")
    path = os.pathsep.join(filter(None, [str(fake), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", f"import {module}; print('imported')"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
    )


@pytest.mark.parametrize("module", ["airflow_provider_siro", "airflow_provider_siro.operators.siro"])
def test_an_airflow_below_the_floor_is_refused_naming_both_versions(tmp_path: Path, module: str):
    result = _import_with_airflow_faked_at("2.10.5", tmp_path, module)

    assert result.returncode != 0
    assert "imported" not in result.stdout
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == (
        "RuntimeError: airflow-provider-siro 0.1.0 needs Apache Airflow 2.11.0 or newer; "
        "the installed Airflow is 2.10.5. Upgrade Airflow to use it."
    )


def test_the_floor_itself_and_its_prereleases_are_accepted(tmp_path: Path):
    for version in ("2.11.0", "2.11.0rc1"):
        result = _import_with_airflow_faked_at(version, tmp_path, "airflow_provider_siro")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "imported"


def test_the_declared_floor_is_the_one_enforced():
    requires = metadata.requires("airflow-provider-siro") or []
    declared = [r for r in requires if r.replace(" ", "").startswith("apache-airflow>=")]
    assert declared == [f"apache-airflow>={airflow_provider_siro.MIN_AIRFLOW_VERSION}"]
    assert Version(AIRFLOW_VERSION) >= Version(airflow_provider_siro.MIN_AIRFLOW_VERSION)


def test_the_connection_form_as_this_airflows_ui_builds_it(airflow_db: Path):
    """Airflow 2.11's web server builds the form from the hook's widgets; Airflow 3's API server serves
    ``/ui/connections/hook_meta`` from ``HookMetaService``, called here as the endpoint calls it."""
    providers = {ep.value for ep in metadata.entry_points(group="apache_airflow_provider")}
    assert "airflow_provider_siro.get_provider_info:get_provider_info" in providers
    if not AIRFLOW_3:
        from airflow.providers_manager import ProvidersManager

        manager = ProvidersManager()
        assert manager.hooks["siro"].hook_class_name == "airflow_provider_siro.hooks.siro.SiroHook"
        behaviour = manager.field_behaviours["siro"]
        assert behaviour["relabeling"] == {"host": "Siro API URL", "password": "Access token"}
        widgets = {name.removeprefix("extra__siro__") for name in manager.connection_form_widgets}
        assert widgets >= FORM_EXTRAS
        return

    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    siro = next(hook for hook in HookMetaService.hook_meta_data() if hook.connection_type == "siro")
    assert siro.hook_name == "Siro"
    assert siro.hook_class_name == "airflow_provider_siro.hooks.siro.SiroHook"
    if Version(AIRFLOW_VERSION) < Version("3.1"):
        # Airflow 3.0's API server builds a provider's fields from its Flask-AppBuilder widgets, and
        # only where Flask-AppBuilder is installed (3.1 no longer needs it): without, it offers its
        # generic form (host, login, password, extra as JSON) for every provider, Siro's included.
        assert (siro.standard_fields, siro.extra_fields) == (None, None)
        return
    assert siro.standard_fields is not None and siro.extra_fields is not None
    standard = siro.standard_fields.model_dump()
    assert standard["host"]["title"] == "Siro API URL"
    assert standard["password"]["title"] == "Access token"
    assert standard["login"]["hidden"] is True
    extra = siro.extra_fields
    assert set(extra) >= FORM_EXTRAS
    assert extra["org_token"]["schema"]["title"] == "Organization API token"
    assert extra["org_token"]["schema"]["format"] == "password"


def test_a_dag_test_run_uploads_a_file_to_the_offline_server(run_dag, siro_server, siro_connection, tmp_path):
    audio = tmp_path / "call.mp3"
    digest = write_audio(audio, 64_000)

    dag_run = run_dag(
        "siro_test_upload_params",
        {"source_path": str(audio), "title": "Smoke test call", "user_email": "ae@acme.io"},
    )

    assert dag_run.state == "success"
    upload = task_instances(dag_run)[("upload", -1)]
    assert (upload.state, upload.try_number) == ("success", 1)
    recording_id = return_value(dag_run, "upload")
    assert endpoints(siro_server) == ["signed_urls", "upload_put", "create_recording"]
    assert list(siro_server.recordings) == [recording_id]
    recording = siro_server.recordings[recording_id]
    assert recording.sha256 == digest == hashlib.sha256(audio.read_bytes()).hexdigest()
    assert recording.body["title"] == "Smoke test call"


@pytest.mark.parametrize("through_airflow", [False, True], ids=["python -m", "airflow siro"])
def test_the_ledger_command_answers_on_this_airflow(airflow_db: Path, tmp_path: Path, through_airflow: bool):
    """``python -m airflow_provider_siro ledger`` everywhere; ``airflow siro ledger`` where this Airflow
    loads providers' CLI commands (3.2 and newer), and on older lines no such command, as documented."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    prefix = ["-m", "airflow", "siro"] if through_airflow else ["-m", "airflow_provider_siro"]
    done = subprocess.run(
        [sys.executable, *prefix, "ledger", "list", str(ledger), "--json"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=600,
    )
    if through_airflow and Version(AIRFLOW_VERSION) < Version("3.2"):
        assert done.returncode != 0
        assert "invalid choice: 'siro'" in done.stderr, done.stderr[-3000:]
        return
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == []
