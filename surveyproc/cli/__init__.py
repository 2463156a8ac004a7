"""The ``surveyproc`` command: parses arguments and delegates to the library.

A :class:`~surveyproc.errors.SurveyprocError` becomes one line on stderr and
exit code 2 (a traceback only with ``--debug``); argparse usage errors also
exit 2.  Results go to stdout, progress and logs to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .. import __version__
from ..errors import SurveyprocError, credentials_problem
from ._common import (
    add_job_arguments,
    add_layout_options,
    add_storage_option,
    bands,
    layout_kwargs,
    storage_options,
)
from .cluster import add_cluster_commands
from .ingest import add_ingest_commands

__all__ = ["main"]

log = logging.getLogger("surveyproc")


# -- commands ---------------------------------------------------------------------------------


def _band_values(text: str) -> dict[str, float]:
    """``g=0.0074,r=0.0089`` -> ``{"g": 0.0074, "r": 0.0089}``."""
    values = {}
    for item in text.split(","):
        band, sep, value = item.partition("=")
        try:
            values[band.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not band.strip():
            msg = f"{text!r} must look like g=0.0074,r=0.0089"
            raise argparse.ArgumentTypeError(msg) from None
    return values


#: Options of ``surveyproc synth`` taken from :class:`SynthConfig` (same defaults and ranges
#: as a job file's ``store.synth``); the layout options are shared with ingest.
_SYNTH_FIELDS: dict[str, Callable[[str], Any]] = {
    "n": int, "size": int, "bands": bands, "seed": int, "pixel_scale": float, "z_max": float,
    "sky_noise": _band_values, "seeing": float, "noise_scale": float, "noise_seed": int}
#: What ``synth --like STORE`` copies from a real store, unless given on the command line.
_LIKE_FIELDS = ("size", "bands", "pixel_scale", "sky_noise", "seeing")


def _synth_options(parser: argparse.ArgumentParser) -> None:
    from ..store.synth.settings import SynthConfig

    for name, parse in _SYNTH_FIELDS.items():
        field = SynthConfig.model_fields[name]
        default = field.default
        shown = ",".join(default) if isinstance(default, tuple) else default
        parser.add_argument(f"--{name.replace('_', '-')}", type=parse, default=None,
                            help=f"{(field.description or '').rstrip('.')} ({shown})")
    parser.add_argument("--like", metavar="STORE", default=None,
                        help="take bands, cutout size, pixel scale, sky noise and seeing from "
                             "this (ingested) store, so a model trained on the synthetic "
                             "survey fits it; options given explicitly win")


def _synth_values(args: argparse.Namespace) -> dict[str, Any]:
    """The synth options given, completed from ``--like STORE`` where asked."""
    values = {name: getattr(args, name) for name in _SYNTH_FIELDS
              if getattr(args, name) is not None}
    if args.like:
        from ..store import open_store

        like = open_store(args.like, storage_options(args.storage_option))
        calibration = like.attrs.get("calibration") or {}
        noise = calibration.get("noise") or {}
        psf = [float(v) for v in (calibration.get("psf_fwhm") or {}).values() if v]
        found = {"size": like.layout.height, "bands": tuple(like.bands),
                 "pixel_scale": float(like.attrs["pixel_scale"]),
                 "sky_noise": noise if noise and all(v for v in noise.values()) else None,
                 "seeing": statistics.median(psf) if psf else None}
        for name in _LIKE_FIELDS:
            if name not in values and found[name] is not None:
                values[name] = found[name]
        log.info("synth like %s: %s", like.url,
                 ", ".join(f"{k}={values.get(k)}" for k in _LIKE_FIELDS))
    return values


def _cmd_synth(args: argparse.Namespace) -> int:
    from ..ops.ray_runtime import ray_runtime
    from ..store.synth import synthesize
    from ..store.synth.settings import synth_config

    config = synth_config(**_synth_values(args))
    with ray_runtime(args.ray_address, num_cpus=args.num_cpus):
        store = synthesize(args.url, config, **layout_kwargs(args))
    print(f"wrote {store.n_objects:,} synthetic galaxies ({', '.join(store.bands)}; "
          f"{config.size}x{config.size}, {config.arcsec_per_pixel:.4g} arcsec/pixel) to "
          f"{store.url}")
    return 0


def _cmd_kinds(args: argparse.Namespace) -> int:
    from ..kinds import get_kind, load_plugins, registered_kinds

    load_plugins(args.plugin)
    for name in registered_kinds():
        kind = get_kind(name)
        own = [f for f in kind.settings.model_fields if f not in ("name", "kind")]
        print(f"{name:16s} {kind.description}\n{'':16s} settings: {', '.join(own)}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from ..store import open_store
    from ..store.describe import describe_store, format_description

    store = open_store(args.url, storage_options(args.storage_option))
    description = describe_store(store)
    if args.json:
        print(json.dumps(description, indent=2))
    else:
        print(format_description(description))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from ..jobs import load_job
    from ..run import run_job

    job = load_job(args.job, args.set)
    if args.dry_run:
        print(json.dumps(job.model_dump(), indent=2))
        return 0
    result = run_job(job)
    print(f"store:   {result.store}")
    for name, where in result.artifacts.items():
        print(f"{name}: {where}")
    print(f"results: {result.output}")
    print(f"summary: {result.summary}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from ..jobs import load_job
    from ..run import format_metrics, prepare_store
    from ..train import train_job

    job = load_job(args.job, args.set)
    store = prepare_store(job)
    for trained in train_job(job, store, force=args.force, resume=args.resume):
        state = "up to date" if trained.reused else "trained"
        print(f"{trained.name}: {state}, model {trained.model_id}, {trained.url}")
        print(f"    validation: {format_metrics(trained.metrics, 'val')}")
        if trained.metrics.get("test"):
            print(f"    test:       {format_metrics(trained.metrics, 'test')}")
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from ..infer import plan_inference, run_inference
    from ..jobs import load_job
    from ..ops.ray_runtime import job_ray
    from ..run import prepare_store

    overrides = list(args.set)
    if args.store:
        overrides.append(f"store.url={args.store}")
    if args.catalog:
        overrides.append(f"infer.catalog={args.catalog}")
    job = load_job(args.job, overrides)
    # store and checkpoints before Ray starts: a wrong URL or a missing model fails fast
    store = prepare_store(job, synthesise=False)
    plan = plan_inference(job, store)
    with job_ray(job):
        result = run_inference(job, store, plan)
    print(format_infer(result))
    return 0 if result.complete or job.infer.stop_after_shards else 1


def _cmd_translate(args: argparse.Namespace) -> int:
    from ..infer.translate import plan_translation, run_translation
    from ..jobs import load_job
    from ..ops.ray_runtime import job_ray
    from ..run import prepare_store

    job = load_job(args.job, args.set)
    store = prepare_store(job, synthesise=False)
    plan = plan_translation(job, store, args.model, args.to, overwrite=args.overwrite)
    with job_ray(job):
        result = run_translation(job, store, plan, overwrite=args.overwrite)
    state = "complete" if result.complete else "partial: run again to continue"
    print(f"translated store: {result.catalog} ({state})\n"
          f"    this run: {result.objects_run:,} objects in {result.shards_run} shards, "
          f"{result.shards_skipped} shards already written; "
          f"{result.cutouts_per_s:,.0f} cutouts/s over {result.seconds:.1f} s")
    return 0 if result.complete else 1


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from ..jobs import load_job
    from ..run import prepare_store
    from ..stats import aggregate_job

    job = load_job(args.job, args.set)
    result = aggregate_job(job, prepare_store(job, synthesise=False))
    print(f"report: {result.report} ({result.rows:,} galaxies in {result.seconds:.1f} s)")
    if (warning := result.warning()) is not None:
        print(warning)
    return 0


def format_infer(result) -> str:
    """Two lines about an inference run, for people."""
    state = ("complete" if result.complete
             else f"partial: {result.shards_run + result.shards_skipped} of {result.n_shards} "
                  "shards committed; run again to continue")
    text = (f"catalog: {result.catalog} ({state})\n"
            f"    this run: {result.objects_run:,} objects in {result.shards_run} shards, "
            f"{result.shards_skipped} shards already committed; "
            f"{result.cutouts_per_s:,.0f} cutouts/s over {result.seconds:.1f} s")
    if result.quarantined:
        text += "\n" + quarantine_warning(result)
    return text + ("\n" + ood_warning(result) if result.out_of_distribution else "")


def quarantine_warning(result) -> str:
    """The chunks whose pixels stayed unreadable (their objects are written, flagged)."""
    shown = "; ".join(result.quarantined[:5])
    more = f"; and {len(result.quarantined) - 5} more" if len(result.quarantined) > 5 else ""
    return (f"warning: {result.quarantined_objects:,} objects in {len(result.quarantined)} "
            f"unreadable chunk(s) are written flagged UNREADABLE with no estimate: {shown}{more}")


def ood_warning(result) -> str:
    """One line saying how many objects lie outside the training domain, and where."""
    share = result.out_of_distribution / max(result.objects_run, 1)
    top = sorted(result.ood_reasons.items(), key=lambda item: -item[1])[:3]
    where = ", ".join(f"{reason} ({count:,})" for reason, count in top)
    return (f"warning: {result.out_of_distribution:,} of {result.objects_run:,} objects "
            f"({share:.1%}) lie outside the models' training distribution and are flagged "
            f"OUT_OF_DISTRIBUTION (outside in: {where})")


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surveyproc",
        description="Physical estimates, calibrated PDFs and sparse features for every galaxy "
                    "of a survey, on Ray and Dask.",
    )
    parser.add_argument("--version", action="version", version=f"surveyproc {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or logs")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    synth = commands.add_parser("synth", help="write a synthetic survey with known physics",
                                description="Write a synthetic survey (docs/synthetic.md) "
                                            "into a new store, in parallel on Ray.")
    synth.add_argument("url", help="path or fsspec URL of the new store (e.g. s3://b/s.zarr)")
    _synth_options(synth)
    add_storage_option(synth)
    add_layout_options(synth)
    synth.set_defaults(func=_cmd_synth)

    info = commands.add_parser("info", help="describe a store: bands, shape, chunking, labels",
                               description="Validate a store and describe it.")
    info.add_argument("url", help="path or fsspec URL of the store")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    add_storage_option(info)
    info.set_defaults(func=_cmd_info)

    add_ingest_commands(commands)

    kinds = commands.add_parser("kinds", help="list the model kinds a job file can name",
                                description="List registered model kinds (built-in, "
                                            "installed plug-ins, and --plugin modules) with "
                                            "their job-file settings.")
    kinds.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                       help="also import this plug-in (module name or .py path)")
    kinds.set_defaults(func=_cmd_kinds)

    train = commands.add_parser("train", help="train the job's models on its store",
                                description="Train every model a job file names -- in this "
                                            "process, or data-parallel on Ray Train when "
                                            "train.workers is set -- and save checkpoints "
                                            "under <output.dir>/checkpoints/.")
    add_job_arguments(train, "train.epochs=3")
    train.add_argument("--force", action="store_true",
                       help="retrain even when an up-to-date checkpoint exists")
    train.add_argument("--resume", default=None, metavar="URL",
                       help="continue Ray Train training from this checkpoint (a directory "
                            "with state.pt under <output.dir>/ray_train/, or its state.pt)")
    train.set_defaults(func=_cmd_train)

    infer = commands.add_parser("infer", help="run the job's trained models over its store",
                                description="Infer every object of the store with the job's "
                                            "trained models on Ray actors and write the "
                                            "catalog (Parquet, one part per shard). A re-run "
                                            "skips committed shards.")
    add_job_arguments(infer, "infer.objects_per_shard=2048")
    infer.add_argument("--store", default=None, metavar="URL",
                       help="run the job's trained models on this store instead of the job's "
                            "(same as --set store.url=URL; never synthesised)")
    infer.add_argument("--catalog", default=None, metavar="URL",
                       help="write the catalog here (same as --set infer.catalog=URL)")
    infer.set_defaults(func=_cmd_infer)

    translate = commands.add_parser(
        "translate", help="write the store translated by a trained translator model",
        description="Translate every cutout of the job's store (survey A) with a trained "
                    "translator model (kind translator) on Ray actors and write the "
                    "translated survey as a store in the target survey's layout (default "
                    "<output.dir>/translated/<model>.zarr), which 'surveyproc infer --store' "
                    "reads like any other. A re-run skips shards already written.")
    add_job_arguments(translate, "resources.actors=2")
    translate.add_argument("--model", default=None,
                           help="the translator model (default: the job's only one)")
    translate.add_argument("--to", default=None, metavar="URL",
                           help="write the translated store here")
    translate.add_argument("--overwrite", action="store_true",
                           help="replace a store already at the output")
    translate.set_defaults(func=_cmd_translate)

    aggregate = commands.add_parser("aggregate", help="statistics and report of the catalog",
                                    description="Stream the job's catalog and the store's "
                                                "labels through Dask (local, or dask.address) "
                                                "into sparse-feature and calibration "
                                                "statistics, figures and an HTML report.")
    add_job_arguments(aggregate, "dask.n_workers=4")
    aggregate.set_defaults(func=_cmd_aggregate)

    run = commands.add_parser("run", help="run every stage of a job file",
                              description="Run a job file end to end on the embedded default "
                                          "(local Ray, local Dask) or the cluster it names.")
    add_job_arguments(run, "store.synth.n=5000")
    run.add_argument("--dry-run", action="store_true",
                     help="validate and print the job with every default filled in")
    run.set_defaults(func=_cmd_run)
    add_cluster_commands(commands)
    _accept_global_options(parser)
    return parser


def _accept_global_options(parser: argparse.ArgumentParser) -> None:
    """Let ``--debug`` and ``-q`` follow the command too (``surveyproc info URL -q``):
    every subcommand parser, nested ones included, accepts them without a default of
    its own, so the value given anywhere reaches the namespace."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                                 help="show tracebacks and debug logs")
                sub.add_argument("-q", "--quiet", action="store_true",
                                 default=argparse.SUPPRESS, help="no progress bars or logs")
                _accept_global_options(sub)


def _configure_logging(debug: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("surveyproc: %(message)s"))
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    if quiet:
        os.environ["SURVEYPROC_PROGRESS"] = "0"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``surveyproc`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.debug, args.quiet)
    try:
        return int(args.func(args))
    except SurveyprocError as error:
        if args.debug:
            raise
        print(f"surveyproc: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("surveyproc: interrupted; finished units are kept", file=sys.stderr)
        return 130
    except Exception as error:
        problem = credentials_problem(error)
        if problem is None or args.debug:
            raise
        print(f"surveyproc: error: {problem}", file=sys.stderr)
        return 2

