"""Bad input is refused before any work: one line naming the problem, exit 2, nothing written.

Each case starts from a job that would run, spoils one thing, runs
``surveyproc infer`` and checks the message, the exit code, and that no file
under the test's folder was created, changed or removed.  None of them gets as
far as starting Ray.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from surveyproc.cli import main
from surveyproc.models import save_checkpoint
from surveyproc.testing import seeded_checkpoint, tiny_store

SECRET = "wJalrXUtnFEMI-not-a-real-secret"


@pytest.fixture
def setup(tmp_path):
    """A store, a fitting checkpoint and a job file that would run."""
    store = tiny_store(n=64, chunk=16, size=8, url=str(tmp_path / "store.zarr"))
    save_checkpoint(seeded_checkpoint(store, "sfnet", ["redshift"], k=2),
                    str(tmp_path / "out/checkpoints/sf.pt"))
    job = {"name": "bad", "store": {"url": str(tmp_path / "store.zarr")},
           "output": {"dir": str(tmp_path / "out")},
           "models": [{"name": "sf", "kind": "sfnet", "k": 2, "width": 8,
                       "targets": ["redshift"]}],
           "metrics": {"enabled": False}}
    return tmp_path, store, job


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _spoil_yaml(root, store, job):
    (root / "job.yaml").write_text("name: bad\nstore: {url: [unclosed\n")


def _unknown_key(root, store, job):
    job["infer"] = {"objects_per_shrd": 16}


def _wrong_type(root, store, job):
    job["resources"] = {"actors": "many"}


def _missing_store(root, store, job):
    job["store"]["url"] = str(root / "nowhere.zarr")


def _unreadable_store(root, store, job):
    (root / "store.zarr" / "zarr.json").write_bytes(b"\x00\xff not json")


def _malformed_store(root, store, job):
    (root / "store.zarr" / "ra" / "zarr.json").unlink()


def _other_bands(root, store, job):
    other = tiny_store(n=16, chunk=16, size=8, bands=3)
    save_checkpoint(seeded_checkpoint(other, "sfnet", ["redshift"], k=2),
                    str(root / "out/checkpoints/sf.pt"))


def _other_architecture(root, store, job):
    checkpoint = seeded_checkpoint(store, "sfnet", ["redshift"], k=2, width=16)
    checkpoint.config = seeded_checkpoint(store, "sfnet", ["redshift"], k=2).config
    save_checkpoint(checkpoint, str(root / "out/checkpoints/sf.pt"))


class _Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def _not_weights_only(root, store, job):
    buffer = io.BytesIO()
    torch.save({"kind": "sfnet", "payload": _Payload()}, buffer,
               pickle_protocol=pickle.HIGHEST_PROTOCOL)
    (root / "out/checkpoints/sf.pt").write_bytes(buffer.getvalue())


def _another_run_in_the_output(root, store, job):
    catalog = root / "out" / "catalog"
    catalog.mkdir(parents=True)
    (catalog / "_catalog.json").write_text('{"store": {"url": "elsewhere"}, "shards": {}, '
                                           '"models": []}')


def _escaping_name(root, store, job):
    job["models"][0]["name"] = "../../etc/sf"


def _credentials_in_options(root, store, job):
    job["store"]["storage_options"] = {"key": "AKIAEXAMPLE", "secret": SECRET}


def _credentials_in_url(root, store, job):
    job["output"]["dir"] = f"s3://AKIAEXAMPLE:{SECRET}@bucket/out"


CASES: dict[str, tuple[Callable, str]] = {
    "malformed YAML": (_spoil_yaml, "not valid YAML"),
    "misspelt key": (_unknown_key, "did you mean 'infer.objects_per_shard'"),
    "wrong type": (_wrong_type, "resources.actors"),
    "missing store": (_missing_store, "no Zarr group found"),
    "unreadable store": (_unreadable_store, "store.zarr"),
    "malformed store": (_malformed_store, "array 'ra' is missing"),
    "bands of another store": (_other_bands, "band"),
    "checkpoint of another architecture": (_other_architecture, "do not fit"),
    "checkpoint not weights-only": (_not_weights_only, "weights"),
    "output holding another run": (_another_run_in_the_output, "was made with other store"),
    "name escaping the output": (_escaping_name, "without spaces or slashes"),
    "credentials in storage_options": (_credentials_in_options, "do not belong in a job file"),
    "credentials in a URL": (_credentials_in_url, "carries credentials (user:password@)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_exit_2_and_nothing_written(setup, case, capsys):
    root, store, job = setup
    spoil, expected = CASES[case]
    (root / "job.yaml").write_text(yaml.safe_dump(job))
    spoil(root, store, job)
    if spoil is not _spoil_yaml:
        (root / "job.yaml").write_text(yaml.safe_dump(job))
    before = _snapshot(root)
    assert main(["infer", str(root / "job.yaml")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("surveyproc: error:")]
    assert len(errors) == 1, lines  # other lines are logged warnings, not the error
    err = errors[0]
    assert expected in err, err
    assert SECRET not in err
    assert _snapshot(root) == before
