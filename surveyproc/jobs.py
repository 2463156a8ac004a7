"""Job files: one YAML file describes a whole run, validated into a typed model.

Values are layered: the defaults below, then the job file, then environment
variables ``SURVEYPROC__SECTION__KEY=value`` (double underscores between
levels, e.g. ``SURVEYPROC__RAY__ADDRESS=ray://head:10001``), then the
command line's ``--set section.key=value``.  Override values are parsed as
YAML scalars, so ``--set store.synth.n=5000`` gives an integer.  Unknown keys
and wrong types are errors that name the key, with a suggestion for typos.

The same file runs on a laptop and on a cluster: only ``ray.address``,
``dask.address``, ``resources`` and the URLs change.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import JobSpecError

__all__ = ["JobSpec", "load_job", "parse_assignment"]

ENV_PREFIX = "SURVEYPROC__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SynthSection(_Section):
    """Create the store from the synthetic survey when it does not exist yet."""

    n: int = Field(2000, ge=1, description="Number of galaxies.")
    size: int = Field(64, ge=8, le=512, description="Cutout side in pixels.")
    bands: list[str] = Field(default_factory=lambda: ["g", "r", "i", "z"],
                             description="Bands to draw, from u g r i z y.")
    seed: int = Field(0, description="Survey seed; same seed, same pixels.")
    pixel_scale: float | None = Field(None, gt=0, description="Arcsec per pixel "
                                      "(default 16.8 / size).")
    z_max: float = Field(0.4, gt=0, description="Largest redshift.")
    chunk: int = Field(256, ge=1, description="Objects per chunk.")
    shard_chunks: int | None = Field(None, ge=1, description="Chunks per Zarr shard.")
    compression: Literal["zstd", "blosc", "none"] = "zstd"
    dtype: Literal["float32", "float16"] = "float32"


class StoreSection(_Section):
    """The input survey store."""

    url: str = Field(description="fsspec URL or path of the Zarr store.")
    storage_options: dict[str, Any] = Field(default_factory=dict,
                                            description="fsspec options (no secrets: use "
                                            "the environment's credential chain).")
    synth: SynthSection | None = Field(None, description="Synthesise the store if missing.")


class OutputSection(_Section):
    """Where results go."""

    dir: str = Field(description="Directory or URL for checkpoints, catalog and report.")
    storage_options: dict[str, Any] = Field(default_factory=dict)


class RaySection(_Section):
    """Ray: absent address = start an embedded local Ray for the command."""

    address: str | None = Field(None, description="ray://host:10001 or host:6379; "
                                "None starts a local Ray.")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the embedded Ray "
                                 "(default: all).")
    dashboard: bool = Field(False, description="Start the Ray dashboard (embedded only).")


class DaskSection(_Section):
    """Dask: absent address = a local cluster."""

    address: str | None = Field(None, description="tcp://scheduler:8786; None = local.")
    n_workers: int = Field(2, ge=1, description="Workers of the local cluster.")


class ResourcesSection(_Section):
    """Compute resources of the distributed stages."""

    actors: int = Field(1, ge=1, description="Inference actors (model replicas).")
    cpus_per_actor: float = Field(1.0, gt=0, description="Fractional values leave CPU "
                                  "for readers.")
    gpus_per_actor: float = Field(0.0, ge=0)
    batch_size: int = Field(256, ge=1)


class JobSpec(_Section):
    """A whole surveyproc run."""

    name: str = Field(description="Run name, used in output paths and metrics labels.")
    store: StoreSection
    output: OutputSection
    ray: RaySection = Field(default_factory=RaySection)
    dask: DaskSection = Field(default_factory=DaskSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)

    @model_validator(mode="after")
    def _name_is_a_path_component(self) -> JobSpec:
        if not self.name or any(c in self.name for c in "/\\ "):
            msg = f"name {self.name!r} must be non-empty, without spaces or slashes"
            raise ValueError(msg)
        return self


# -- loading ----------------------------------------------------------------------------------


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (["a", "b", "c"], parsed value).

    Examples
    --------
    >>> parse_assignment("store.synth.n=5000")
    (['store', 'synth', 'n'], 5000)
    >>> parse_assignment("ray.address=null")
    (['ray', 'address'], None)
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        msg = f"override {text!r} must look like section.key=value"
        raise JobSpecError(msg)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return [part.strip() for part in key.strip().split(".")], value


def _assign(tree: dict[str, Any], path: Sequence[str], value: Any, origin: str) -> None:
    node = tree
    for depth, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            dotted = ".".join(path[: depth + 1])
            msg = f"{origin}: cannot set {'.'.join(path)}: {dotted} is not a section"
            raise JobSpecError(msg)
        node = child
    node[path[-1]] = value


def _suggest(loc: Sequence[Any]) -> str:
    """' (did you mean ...?)' for a misspelt key, from the model's field names at that level."""
    model: Any = JobSpec
    for part in loc[:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        annotation = field.annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,))
                      if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            return ""
        model = candidates[0]
    names = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f" (did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?)" if close else ""


def _one_line(error: ValidationError, origin: str) -> str:
    first = error.errors()[0]
    loc = list(first["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{key}'{_suggest(loc)}"
    if first["type"] == "missing":
        return f"{origin}: required key '{key}' is missing"
    got = first.get("input")
    shown = f" (got {got!r})" if not isinstance(got, dict | list) else ""
    message = first["msg"].removeprefix("Value error, ")
    more = len(error.errors()) - 1
    tail = f"; and {more} more problem(s)" if more else ""
    return f"{origin}: {key}: {message}{shown}{tail}"


def load_job(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> JobSpec:
    """Read, layer and validate a job file.

    Raises
    ------
    JobSpecError
        The file is missing, is not YAML, or does not validate; the message
        names the key.
    """
    origin = f"job {path}"
    try:
        text = Path(path).read_text()
    except OSError as error:
        msg = f"{origin}: cannot read the file ({error.strerror or error})"
        raise JobSpecError(msg) from None
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        msg = f"{origin}: not valid YAML{where}: {getattr(error, 'problem', error)}"
        raise JobSpecError(msg) from None
    if not isinstance(tree, dict):
        msg = f"{origin}: the top level must be a mapping of sections, got {type(tree).__name__}"
        raise JobSpecError(msg)
    env = os.environ if environ is None else environ
    for name in sorted(env):
        if name.startswith(ENV_PREFIX):
            keys = [k.lower() for k in name[len(ENV_PREFIX):].split("__")]
            _assign(tree, keys, parse_assignment(f"x={env[name]}")[1], f"{origin} ({name})")
    for text_override in overrides:
        keys, value = parse_assignment(text_override)
        _assign(tree, keys, value, f"{origin} (--set {text_override})")
    try:
        return JobSpec.model_validate(tree)
    except ValidationError as error:
        raise JobSpecError(_one_line(error, origin)) from None
