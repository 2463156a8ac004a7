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


def _path_component(name: str, what: str) -> None:
    """Names become file and metric names: no spaces, no slashes."""
    if not name or any(c in name for c in "/\\ "):
        msg = f"{what} {name!r} must be non-empty, without spaces or slashes"
        raise ValueError(msg)


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
    gpus_per_actor: float = Field(0.0, ge=0, description="GPUs per actor (> 0 runs the "
                                  "models on CUDA with bf16 autocast).")
    threads_per_actor: int | None = Field(None, ge=1, description="torch CPU threads per "
                                          "actor (default: cpus_per_actor rounded up).")
    batch_size: int = Field(256, ge=1, description="Cutouts per model call.")


class GridSection(_Section):
    """Bins of a density model's target."""

    low: float = Field(description="Lower edge of the grid.")
    high: float = Field(description="Upper edge of the grid.")
    n_bins: int = Field(ge=2, description="Number of equal bins.")

    @model_validator(mode="after")
    def _ordered(self) -> GridSection:
        if not self.high > self.low:
            msg = f"grid high ({self.high}) must be above low ({self.low})"
            raise ValueError(msg)
        return self


class ModelSection(_Section):
    """One model to train (and later to run): a registry kind, its targets and settings."""

    name: str = Field(description="Model name: its checkpoint is checkpoints/<name>.pt.")
    kind: str = Field(description="Registry kind: sfnet, dense_cnn, binned_density.")
    targets: list[str] = Field(min_length=1, description="Labels, or log_<label> (log10, "
                               "S/N >= 3).")
    k: int | None = Field(None, ge=1, description="Active features per galaxy (sfnet).")
    width: int = Field(64, ge=4, description="Channels of the first ResNet stage.")
    grid: GridSection | None = Field(None, description="Target bins (binned_density).")

    @model_validator(mode="after")
    def _kind_settings(self) -> ModelSection:
        from .models.registry import registered

        if self.kind not in registered():
            msg = f"unknown kind {self.kind!r}; known kinds: {', '.join(registered())}"
            raise ValueError(msg)
        _path_component(self.name, "model name")
        if (self.kind == "sfnet") != (self.k is not None):
            msg = "k is required for kind sfnet and only for it"
            raise ValueError(msg)
        if self.kind == "binned_density" and (self.grid is None or len(self.targets) != 1):
            msg = "kind binned_density needs a grid and exactly one target"
            raise ValueError(msg)
        if self.kind != "binned_density" and self.grid is not None:
            msg = f"grid is only for kind binned_density, not {self.kind}"
            raise ValueError(msg)
        return self

    def build_config(self, in_bands: int) -> dict[str, Any]:
        """Keyword arguments of :func:`surveyproc.models.get_model` for this section."""
        config: dict[str, Any] = {"in_bands": in_bands, "n_targets": len(self.targets),
                                  "width": self.width}
        if self.k is not None:
            config["k"] = self.k
        if self.grid is not None:
            config.update(low=self.grid.low, high=self.grid.high, n_bins=self.grid.n_bins)
        return config


class TrainSection(_Section):
    """Single-process (and, later, distributed) training settings."""

    epochs: int = Field(10, ge=1, description="Maximum epochs.")
    batch_size: int = Field(128, ge=2)
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-4, ge=0)
    flat_fraction: float = Field(0.7, ge=0, le=1, description="Share of steps at full "
                                 "learning rate before the cosine decay.")
    patience: int = Field(3, ge=1, description="Epochs without validation improvement "
                          "before stopping.")
    seed: int = 0
    augment: bool = Field(True, description="Random flips and 90-degree rotations.")
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="Share of objects (by id "
                                "hash) held out for validation.")
    test_fraction: float = Field(0.1, ge=0, lt=0.5, description="Share held out for test.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: torch's).")
    workers: int | None = Field(None, ge=1, description="Ray Train data-parallel workers "
                                "(TorchTrainer, DDP); None trains in this process.")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per Ray Train worker.")
    use_gpu: bool = Field(False, description="One GPU per worker; bf16 autocast, channels_last.")
    accumulate: int = Field(1, ge=1, description="Micro-batches per optimiser step "
                            "(gradient accumulation).")
    scale_lr: bool = Field(False, description="Each worker takes batch_size samples per "
                           "micro-batch and lr is multiplied by the workers (linear scaling); "
                           "otherwise batch_size is the global batch, split across workers.")
    max_failures: int = Field(2, ge=0, description="Worker failures survived by restarting "
                              "from the last checkpoint.")


class InferSection(_Section):
    """Inference over the whole store into the catalog."""

    models: list[str] | None = Field(None, description="Names of the job's models to run "
                                     "(default: all), read once, inferred together.")
    catalog: str | None = Field(None, description="Catalog URL (default <output.dir>/catalog).")
    objects_per_shard: int | None = Field(None, ge=1, description="Objects per shard, rounded "
                                          "up to whole chunks (default: about 4,096).")
    prefetch: int = Field(2, ge=0, description="Chunks each actor reads ahead of its models.")
    overwrite: bool = Field(False, description="Delete an existing catalog that was made "
                            "from other models or another store, instead of refusing.")
    stop_after_shards: int | None = Field(None, ge=1, description="Stop after committing "
                                          "this many shards (a later run resumes).")


class MetricsSection(_Section):
    """Prometheus exposition of the running job."""

    enabled: bool = True
    host: str = Field("127.0.0.1", description="Address the /metrics server binds to.")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port (printed).")


class JobSpec(_Section):
    """A whole surveyproc run."""

    name: str = Field(description="Run name, used in output paths and metrics labels.")
    store: StoreSection
    output: OutputSection
    ray: RaySection = Field(default_factory=RaySection)
    dask: DaskSection = Field(default_factory=DaskSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    models: list[ModelSection] = Field(default_factory=list, description="Models to train "
                                       "and run, in order.")
    train: TrainSection = Field(default_factory=TrainSection)
    infer: InferSection = Field(default_factory=InferSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)

    @model_validator(mode="after")
    def _name_is_a_path_component(self) -> JobSpec:
        _path_component(self.name, "name")
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            msg = f"model names must be unique, got {names}"
            raise ValueError(msg)
        unknown = [n for n in self.infer.models or [] if n not in names]
        if unknown:
            msg = f"infer.models names {unknown}, which the models section does not define"
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
        if isinstance(part, int):  # an index into a list of sections
            continue
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
