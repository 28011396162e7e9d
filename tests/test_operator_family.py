"""One operator family (issue 22): the single and bulk upload operators share one base that declares
every recording field as a keyword parameter, so ``default_args`` and ``partial()``/``expand()`` reach
the create call. Real ``dag.test()`` runs against the offline Siro server."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from airflow_compat import AIRFLOW_3
from upload_support import return_value, task_instances, write_audio

from airflow_provider_siro.operators.base import SiroUploadBaseOperator
from airflow_provider_siro.operators.bulk import SiroUploadRecordingsOperator
from airflow_provider_siro.operators.siro import SiroUploadRecordingOperator
from airflow_provider_siro.payload import RECORDING_FIELD_ARGS


def keyword_parameters(function: object) -> list[str]:
    return [
        name
        for name, p in inspect.signature(function).parameters.items()  # type: ignore[arg-type]
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]


def test_the_base_declares_exactly_the_payload_field_list_in_its_order():
    declared = [
        name for name in keyword_parameters(SiroUploadBaseOperator.__init__) if name in RECORDING_FIELD_ARGS
    ]
    assert tuple(declared) == RECORDING_FIELD_ARGS
    # ...and nothing else in the base is a recording field under another name.
    others = set(keyword_parameters(SiroUploadBaseOperator.__init__)) - set(RECORDING_FIELD_ARGS)
    assert others == {
        "siro_conn_id",
        "source_conn_id",
        "file_type",
        "ledger_path",
        "ledger_conn_id",
        "claim_timeout",
        "reconcile",
        "reconcile_polls",
        "reconcile_interval",
        "map_index_template",
    }


def test_both_operators_template_every_recording_field_and_neither_redeclares_one():
    for operator in (SiroUploadRecordingOperator, SiroUploadRecordingsOperator):
        assert issubclass(operator, SiroUploadBaseOperator)
        assert set(RECORDING_FIELD_ARGS) <= set(operator.template_fields), operator
        assert not set(RECORDING_FIELD_ARGS) & set(keyword_parameters(operator.__init__)), operator


def test_partial_takes_recording_fields_on_both_operators():
    # partial() checks its arguments against the __init__ chain: a field hidden in **kwargs was refused.
    SiroUploadRecordingsOperator.partial(task_id="bulk", user_email="a@b.co", result="closed").expand(
        source_paths=[["/a.mp3"]]
    )
    SiroUploadRecordingOperator.partial(task_id="one", user_email="a@b.co", discoverable=True).expand(
        source_path=["/a.mp3"]
    )


def test_the_bulk_operator_is_still_importable_from_the_single_operators_module():
    from airflow_provider_siro.operators import siro

    assert siro.SiroUploadRecordingsOperator is SiroUploadRecordingsOperator


def test_recording_fields_in_default_args_reach_the_create_body_single_and_bulk(
    siro_server, siro_connection, run_dag, tmp_path
):
    single = tmp_path / "single.mp3"
    write_audio(single, 3000)
    many = [str(tmp_path / f"many-{i}.mp3") for i in range(3)]
    for path in many:
        write_audio(Path(path), 2000)

    dag_run = run_dag(
        "siro_test_default_args",
        conf={"single": str(single), "many": many, "user_email": "ae@acme.io"},
    )

    assert dag_run.state == "success"
    assert len(siro_server.recordings) == 4
    for recording in siro_server.recordings.values():
        assert recording.body["userEmail"] == "ae@acme.io"
        assert recording.body["title"] == "From default_args"
        assert recording.body["conversationType"] == "discovery"
    assert set(return_value(dag_run, "bulk")) == set(many)
    assert return_value(dag_run, "single") in siro_server.recordings


def test_the_bulk_operator_mapped_over_lists_and_over_folders(
    siro_server, siro_connection, run_dag, tmp_path
):
    lists = []
    for batch in range(2):
        paths = [str(tmp_path / f"list-{batch}-{i}.mp3") for i in range(2)]
        for path in paths:
            write_audio(Path(path), 1500)
        lists.append(paths)
    folders = []
    for team in ("team-a", "team-b", "team-c"):
        folder = tmp_path / team
        folder.mkdir()
        write_audio(folder / "call-1.mp3", 1200)
        write_audio(folder / "call-2.mp3", 1200)
        (folder / "notes.txt").write_text("not audio")
        folders.append(f"{folder}/")

    dag_run = run_dag(
        "siro_test_bulk_mapped", conf={"lists": lists, "folders": folders, "user_email": "ae@acme.io"}
    )

    assert dag_run.state == "success"
    tis = task_instances(dag_run)
    for index, paths in enumerate(lists):
        assert set(return_value(dag_run, "by_list", index)) == set(paths)
        # Each mapped instance is named by its sources, not by its index (Airflow 2.11's dag.test() does
        # not render map_index_template; its scheduler does).
        if AIRFLOW_3:
            assert tis[("by_list", index)].rendered_map_index == f"{paths[0]} and 1 more"
    for index, folder in enumerate(folders):
        ids = return_value(dag_run, "by_folder", index)
        assert sorted(Path(p).name for p in ids) == ["call-1.mp3", "call-2.mp3"]
        if AIRFLOW_3:
            assert tis[("by_folder", index)].rendered_map_index == f"{folder.rstrip('/')}/*.mp3"
    assert len(siro_server.recordings) == 4 + 6
    titles = sorted(r.body["title"] for r in siro_server.recordings.values())
    assert titles == ["Mapped folder"] * 6 + ["Mapped list"] * 4
    assert {r.body["userEmail"] for r in siro_server.recordings.values()} == {"ae@acme.io"}


def test_the_mapping_example_uploads_each_folder_then_finds_every_batch_in_the_ledger(
    siro_server, siro_connection, run_dag, tmp_path
):
    folders = []
    for team in ("team-a", "team-b"):
        folder = tmp_path / team
        folder.mkdir()
        for i in range(3):
            write_audio(folder / f"call-{i}.mp3", 1000)
        folders.append(f"{folder}/")

    dag_run = run_dag(
        "siro_mapped_uploads",
        conf={"folders": folders, "batch_size": 2, "ledger_path": str(tmp_path / "ledger")},
    )

    assert dag_run.state == "success"
    assert len(siro_server.recordings) == 6  # the batches found every file in the ledger
    by_folder = {**return_value(dag_run, "upload_folder", 0), **return_value(dag_run, "upload_folder", 1)}
    by_batch: dict[str, str] = {}
    for index in range(3):
        by_batch.update(return_value(dag_run, "upload_batch", index))
    assert by_batch == by_folder and set(by_folder.values()) == set(siro_server.recordings)
    for recording in siro_server.recordings.values():
        assert recording.body["conversationType"] == "discovery"  # from the example's default_args


def test_claim_timeout_reaches_the_ledger_of_both_operators(siro_connection, tmp_path):
    single = SiroUploadRecordingOperator(
        task_id="one", source_path="/a.mp3", user_id="u", ledger_path=str(tmp_path), claim_timeout=90
    )
    bulk = SiroUploadRecordingsOperator(
        task_id="many", source_paths=["/a.mp3"], user_id="u", ledger_path=str(tmp_path), claim_timeout=120.5
    )
    assert single._ledger({}, None).claim_timeout == 90.0
    assert bulk._ledger({}, None).claim_timeout == 120.5


@pytest.mark.parametrize("value", [0, -5, "ten", True])
def test_a_bad_claim_timeout_is_refused_when_the_dag_is_parsed(value):
    with pytest.raises(ValueError, match=r"'many': claim_timeout must be a number of seconds > 0, got "):
        SiroUploadRecordingsOperator(task_id="many", source_paths=["/a.mp3"], claim_timeout=value)
