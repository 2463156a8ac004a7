from __future__ import annotations

from pathlib import Path

import pytest

from surveyproc.errors import JobSpecError
from surveyproc.jobs import load_job

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


MINIMAL = """
name: t
store: {url: s.zarr}
output: {dir: out}
"""


@pytest.mark.parametrize("name", ["quickstart.yaml", "cluster.example.yaml", "posteriors.yaml",
                                  "interpretability.yaml", "sdss_photoz.yaml",
                                  "translation.yaml"])
def test_shipped_job_files_validate(name):
    job = load_job(JOBS / name, environ={})
    assert job.name


def test_defaults_fill_in(tmp_path):
    job = load_job(_write(tmp_path, MINIMAL), environ={})
    assert job.ray.address is None and job.dask.address is None
    assert job.resources.batch_size == 256
    assert job.store.synth is None


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    path = _write(tmp_path, MINIMAL + "resources: {batchsize: 12}\n")
    with pytest.raises(JobSpecError, match=r"unknown key 'resources.batchsize' \(did you mean "
                                           r"'resources.batch_size'\?\)"):
        load_job(path, environ={})


def test_wrong_type_names_the_key_and_the_value(tmp_path):
    path = _write(tmp_path, MINIMAL.replace("s.zarr}", "s.zarr, synth: {n: many}}"))
    with pytest.raises(JobSpecError, match=r"store.synth.n: .*integer.* \(got 'many'\)"):
        load_job(path, environ={})


def test_missing_required_key(tmp_path):
    with pytest.raises(JobSpecError, match="required key 'output' is missing"):
        load_job(_write(tmp_path, "name: t\nstore: {url: s}\n"), environ={})


def test_layering_file_then_environment_then_set(tmp_path):
    path = _write(tmp_path, MINIMAL + "resources: {actors: 2}\n")
    env = {"SURVEYPROC__RESOURCES__ACTORS": "3", "SURVEYPROC__RAY__ADDRESS": "ray://h:10001",
           "SURVEYPROC_PROGRESS": "0"}
    job = load_job(path, ["resources.actors=5", "store.synth.n=77"], environ=env)
    assert job.resources.actors == 5
    assert job.ray.address == "ray://h:10001"
    assert job.store.synth is not None and job.store.synth.n == 77
    assert load_job(path, environ=env).resources.actors == 3


def test_bad_files_give_one_line(tmp_path):
    with pytest.raises(JobSpecError, match="cannot read the file"):
        load_job(tmp_path / "absent.yaml")
    with pytest.raises(JobSpecError, match="not valid YAML at line 2"):
        load_job(_write(tmp_path, "name: t\n  bad: [\n"), environ={})
    with pytest.raises(JobSpecError, match="top level must be a mapping"):
        load_job(_write(tmp_path, "- a\n- b\n"), environ={})
    with pytest.raises(JobSpecError, match=r"must look like section\.key=value"):
        load_job(_write(tmp_path, MINIMAL), ["novalue"], environ={})
    with pytest.raises(JobSpecError, match="name 'a b' must be non-empty, without spaces"):
        load_job(_write(tmp_path, MINIMAL.replace("name: t", "name: a b")), environ={})


def test_misspelt_keys_inside_model_and_target_entries_get_suggestions(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("name: x\nstore: {url: s}\noutput: {dir: o}\n"
                    "models: [{name: a, kind: sfnet, kk: 4, targets: [redshift]}]\n")
    with pytest.raises(JobSpecError, match=r"unknown key 'models\.0\.kk' \(did you mean "
                                           r"'models\.0\.k'\?\)"):
        load_job(path)
    path.write_text("name: x\nstore: {url: s}\noutput: {dir: o}\n"
                    "targets: {redshift: {outlierz: [0.1]}}\n")
    with pytest.raises(JobSpecError, match=r"did you mean 'targets\.redshift\.outliers'"):
        load_job(path)
    path.write_text("name: x\nstore: {url: s}\noutput: {dir: o}\n"
                    "models: [{name: a, kind: dense_cnn, k: 4, targets: [redshift]}]\n")
    with pytest.raises(JobSpecError, match=r"unknown key 'models\.0\.k'"):
        load_job(path)


def test_local_tests_need_a_target_queries_and_a_known_model(tmp_path):
    with pytest.raises(JobSpecError, match="needs a target and at least one query"):
        load_job(_write(tmp_path, MINIMAL + "aggregate: {local_tests: {enabled: true}}"),
                 environ={})
    text = MINIMAL + ("models: [{name: a, kind: sfnet, k: 4, targets: [redshift]}]\n"
                      "aggregate: {local_tests: {enabled: true, model: b, target: redshift, "
                      "queries: [dust_av]}}")
    with pytest.raises(JobSpecError, match=r"local_tests\.model 'b' is not a model of the job"):
        load_job(_write(tmp_path, text), environ={})
    job = load_job(_write(tmp_path, text.replace("model: b", "model: a")), environ={})
    assert job.aggregate.local_tests.k == 100
