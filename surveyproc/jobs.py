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
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from .errors import InvalidParameterError, JobSpecError
from .kinds import ModelSettings, get_kind, load_plugins, registered_kinds
from .outputs import OutputLayout
from .store.synth.settings import SynthConfig

__all__ = ["JobSpec", "load_job", "parse_assignment"]

ENV_PREFIX = "SURVEYPROC__"


def _path_component(name: str, what: str) -> None:
    """Names become file and metric names: no spaces, no slashes."""
    if not name or any(c in name for c in "/\\ "):
        msg = f"{what} {name!r} must be non-empty, without spaces or slashes"
        raise ValueError(msg)


#: storage_options keys that carry secrets (fsspec, s3fs, gcsfs, adlfs spellings), lower case.
_SECRET_KEYS = {"key", "secret", "token", "password", "session_token", "access_key",
                "secret_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
                "account_key", "sas_token", "client_secret", "connection_string"}
_CREDENTIALS_BELONG = ("credentials do not belong in a job file (it is shared, logged and "
                       "shipped to the cluster); use the environment's chain: "
                       "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance "
                       "or pod role (Kubernetes: a Secret mounted as environment variables)")


def _refuse_secrets(options: Any, where: str) -> None:
    """Raise (naming the key, never its value) if ``options`` holds a credential."""
    if isinstance(options, dict):
        for key, value in options.items():
            if str(key).lower() in _SECRET_KEYS:
                msg = f"{where}.{key}: {_CREDENTIALS_BELONG}"
                raise ValueError(msg)
            _refuse_secrets(value, f"{where}.{key}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @model_validator(mode="after")
    def _no_credentials(self) -> _Section:
        options = getattr(self, "storage_options", None)
        if options:
            _refuse_secrets(options, "storage_options")
        return self


class StoreSection(_Section):
    """The input survey store."""

    url: str = Field(description="fsspec URL or path of the Zarr store.")
    storage_options: dict[str, Any] = Field(default_factory=dict,
                                            description="fsspec options (no secrets: use "
                                            "the environment's credential chain).")
    synth: SynthConfig | None = Field(None, description="Synthesise the store if missing.")


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


def _model_settings(value: Any, handler: ValidatorFunctionWrapHandler) -> ModelSettings:
    """Validate one ``models:`` entry with the settings class of its ``kind``."""
    if isinstance(value, ModelSettings):
        return value
    if not isinstance(value, dict):
        return handler(value)  # pydantic's own message for a non-mapping
    kind = value.get("kind")
    if kind is None:
        msg = "required key 'kind' is missing"
        raise ValueError(msg)
    known = registered_kinds()
    if kind not in known:
        close = difflib.get_close_matches(str(kind), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        msg = f"unknown kind {kind!r}{hint}; known kinds: {', '.join(known)}"
        raise ValueError(msg)
    return get_kind(kind).settings.model_validate(value)


#: One entry of ``models:``: validated by the settings class of its kind, kept as that class.
AnyModelSettings = Annotated[SerializeAsAny[ModelSettings], WrapValidator(_model_settings)]


class TrainSection(_Section):
    """Training settings: in the driver's process, or on Ray Train with ``workers``."""

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
                           "optimiser step and lr is multiplied by the workers (linear "
                           "scaling); otherwise batch_size is the global batch, split across "
                           "workers (and their accumulate micro-batches).")
    max_failures: int = Field(2, ge=0, description="Worker failures survived by restarting "
                              "from the last checkpoint.")


class InferSection(_Section):
    """Inference over the whole store into the catalog."""

    models: list[str] | None = Field(None, description="Names of the job's models to run "
                                     "(default: all), read once, inferred together.")
    catalog: str | None = Field(None, description="Catalog URL (default <output.dir>/catalog).")
    objects_per_shard: int | None = Field(None, ge=1, description="Objects per shard, rounded "
                                          "up to whole chunks (default: about 4,096).")
    prefetch: int = Field(2, ge=0, description="Reader threads per actor, and read units "
                          "(whole chunks, about batch_size objects) each shard in flight "
                          "reads ahead of the models; 0 reads in the models' thread.")
    overwrite: bool = Field(False, description="Delete an existing catalog that was made "
                            "from other models or another store, instead of refusing.")
    stop_after_shards: int | None = Field(None, ge=1, description="Stop after committing "
                                          "this many shards (a later run resumes).")
    pixel_scale_tolerance: float = Field(0.02, ge=0.0, description="Largest relative "
                                         "difference between the store's pixel scale and "
                                         "the one a model was trained at; beyond it infer "
                                         "refuses the store.")


class TargetSettings(_Section):
    """How a target's estimates are judged in the report: a property of the quantity, set
    per target (``targets: {redshift: {relative_error: true, outliers: [0.15, 0.05]}}``)."""

    relative_error: bool = Field(False, description="Errors are (estimate - truth) / "
                                 "(1 + truth), as for photometric redshifts; otherwise "
                                 "estimate - truth in the target's unit.")
    outliers: list[float] = Field(default_factory=list, description="Report the fraction "
                                  "of |error| above each threshold (e.g. [0.15, 0.05] for "
                                  "photo-z); none by default.")
    point: Literal["mean", "q50", "mode"] = Field("mode", description="Point estimate of a "
                                                  "PDF target: mean, median (q50) or mode. "
                                                  "The mode stays on one peak of a "
                                                  "two-peaked PDF; the mean falls between.")

    @field_validator("outliers")
    @classmethod
    def _positive(cls, values: list[float]) -> list[float]:
        if any(v <= 0 for v in values):
            msg = f"outlier thresholds must be positive, got {values}"
            raise ValueError(msg)
        return sorted(values, reverse=True)


class CausalSection(_Section):
    """Causal discovery over the store's catalog-level variables (and a sparse model's
    feature activations), in the report."""

    enabled: bool = Field(False, description="Add the causal-discovery section.")
    rows: int = Field(5000, ge=100, description="Objects sampled from the store.")
    resamples: int = Field(20, ge=0, description="Bootstrap resamples (Dask tasks) for each "
                           "edge's confidence.")
    alpha: float = Field(0.01, gt=0, lt=1, description="Level of the Fisher-z tests.")
    labels: list[str] | None = Field(None, description="Labels used (default: all but line "
                                     "fluxes and classes), beside magnitude and colours.")
    features: int = Field(0, ge=0, description="Also the activations of this many of a sparse "
                          "model's most frequent features (read from the catalog).")
    feature_model: str | None = Field(None, description="The sparse model whose features "
                                      "(default: the catalog's first).")


class LocalTestsSection(_Section):
    """Local conditional-independence tests in a model's learned latent, in the report."""

    enabled: bool = Field(False, description="Add the local-tests section.")
    model: str | None = Field(None, description="Model whose latent holds the "
                              "neighbourhoods: an mi_decomposition model (its <model>_latent "
                              "column) or a sparse-feature model (its activations); default "
                              "the first such model of the catalog.")
    target: str | None = Field(None, description="Store label tested (e.g. log_mstar).")
    queries: list[str] = Field(default_factory=list, description="Store labels each tested "
                               "against the target (e.g. cos_inclination, half_light_radius).")
    condition: str | None = Field(None, description="Store label regressed out (a quadratic "
                                  "per neighbourhood) for the conditional tests, e.g. redshift.")
    k: int = Field(100, ge=5, description="Neighbours per neighbourhood.")
    rows: int = Field(20000, ge=100, description="Catalog rows sampled: the neighbour pool.")
    neighbourhoods: int = Field(2000, ge=10, description="Neighbourhoods tested (centred on "
                                "random sampled galaxies).")
    permutations: int = Field(200, ge=10, description="Shuffles of the query per "
                              "neighbourhood for its p-value.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Level of each neighbourhood's test.")

    @model_validator(mode="after")
    def _what_to_test(self) -> LocalTestsSection:
        if self.enabled and (self.target is None or not self.queries):
            msg = "aggregate.local_tests needs a target and at least one query label"
            raise ValueError(msg)
        return self


class AggregateSection(_Section):
    """The statistics and report over the catalog."""

    allow_partial: bool = Field(False, description="Aggregate an unfinished catalog (its "
                                "committed shards); the report says it is partial.")
    causal: CausalSection = Field(default_factory=CausalSection)
    local_tests: LocalTestsSection = Field(default_factory=LocalTestsSection)


class MetricsSection(_Section):
    """Prometheus exposition of the running job."""

    enabled: bool = True
    export: Literal["http", "ray"] = Field(
        "http", description="http: the driver serves /metrics on host:port (a laptop); "
        "ray: every process records through ray.util.metrics and Ray's per-node metrics "
        "export serves them (a cluster: what KubeRay's monitoring scrapes).")
    host: str = Field("127.0.0.1", description="Address the /metrics server binds to "
                      "(export: http).")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port (printed).")


class JobSpec(_Section):
    """A whole surveyproc run."""

    name: str = Field(description="Run name, used in output paths and metrics labels.")
    store: StoreSection
    output: OutputSection
    ray: RaySection = Field(default_factory=RaySection)
    dask: DaskSection = Field(default_factory=DaskSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    plugins: list[str] = Field(default_factory=list, description="Modules (names, or .py "
                               "paths) that register more model kinds; imported before "
                               "'models' is read, and in every worker.")
    models: list[AnyModelSettings] = Field(default_factory=list, description="Models to "
                                           "train and run, in order; each entry's keys are "
                                           "those of its kind.")
    train: TrainSection = Field(default_factory=TrainSection)
    infer: InferSection = Field(default_factory=InferSection)
    targets: dict[str, TargetSettings] = Field(default_factory=dict, description="How each "
                                               "target is judged in the report (by name).")
    aggregate: AggregateSection = Field(default_factory=AggregateSection)
    metrics: MetricsSection = Field(default_factory=MetricsSection)

    @model_validator(mode="before")
    @classmethod
    def _load_plugins_first(cls, data: Any) -> Any:
        """Plug-in kinds must be registered before ``models`` is validated."""
        if isinstance(data, dict) and isinstance(data.get("plugins"), list):
            try:
                load_plugins([str(p) for p in data["plugins"]])
            except InvalidParameterError as error:
                raise ValueError(str(error)) from None
        return data

    @property
    def outputs(self) -> OutputLayout:
        """Every URL this job writes."""
        return OutputLayout(self.output.dir, self.infer.catalog)

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
        local = self.aggregate.local_tests
        if local.enabled and local.model is not None and local.model not in names:
            msg = (f"aggregate.local_tests.model {local.model!r} is not a model of the job "
                   f"({', '.join(names)})")
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


def _section_model(model: Any, part: Any, node: Any) -> Any:
    """The pydantic model one level below ``model`` at key ``part`` (None if not a section)."""
    if part == "models" and model is JobSpec:
        return "models"
    field = getattr(model, "model_fields", {}).get(part)
    if field is None:
        return None
    annotation = field.annotation
    candidates = [a for a in getattr(annotation, "__args__", (annotation,))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
    if not candidates:
        return None
    if getattr(annotation, "__origin__", None) is dict:  # e.g. targets: {name: settings}
        return ("by name", candidates[0])
    return candidates[0]


def _suggest(loc: Sequence[Any], tree: Any) -> str:
    """' (did you mean ...?)' for a misspelt key, from the model's field names at that level;
    inside a ``models:`` entry, from the settings of that entry's kind."""
    model: Any = JobSpec
    node = tree
    for part in loc[:-1]:
        node = node[part] if isinstance(node, dict | list) and (
            isinstance(node, list) or part in node) else None
        if model == "models":  # an index into models: the entry's kind decides its keys
            kind = node.get("kind") if isinstance(node, dict) else None
            try:
                model = get_kind(str(kind)).settings
            except InvalidParameterError:
                return ""
            continue
        if isinstance(part, int):  # an index into another list of sections
            continue
        if isinstance(model, tuple):  # a key of a mapping of sections
            model = model[1]
            continue
        model = _section_model(model, part, node)
        if model is None:
            return ""
    names = list(getattr(model, "model_fields", {}))
    close = difflib.get_close_matches(str(loc[-1]), names, n=1)
    return f" (did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?)" if close else ""


def _one_line(error: ValidationError, origin: str, tree: Any = None) -> str:
    errors = error.errors()
    # a misspelt key also makes the right one "missing": report the misspelling
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = list(first["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{key}'{_suggest(loc, tree)}"
    if first["type"] == "missing":
        return f"{origin}: required key '{key}' is missing"
    got = first.get("input")
    # the value is echoed to help, except when it is the credential being refused
    secret = _CREDENTIALS_BELONG in first["msg"]
    shown = f" (got {got!r})" if not isinstance(got, dict | list) and not secret else ""
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
    if not text.strip():
        msg = (f"{origin}: the file is empty (a job needs at least 'name' and 'store'; "
               "see jobs/quickstart.yaml)")
        raise JobSpecError(msg)
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        msg = f"{origin}: not valid YAML{where}: {getattr(error, 'problem', error)}"
        raise JobSpecError(msg) from None
    if tree is None:  # comments only
        msg = f"{origin}: the file holds no settings (a job needs at least 'name' and 'store')"
        raise JobSpecError(msg)
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
        raise JobSpecError(_one_line(error, origin, tree)) from None
