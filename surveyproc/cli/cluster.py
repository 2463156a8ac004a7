"""``surveyproc submit|status|logs|stop|list``: jobs on a remote Ray cluster.

The address is the Ray dashboard's Jobs API (``--address`` or
``RAY_API_SERVER_ADDRESS``); the token comes from ``RAY_AUTH_TOKEN`` or the file
``RAY_AUTH_TOKEN_PATH`` names (never an option: see :mod:`surveyproc.ops.submit`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import add_job_arguments

__all__ = ["add_cluster_commands"]


def _jobs(args: argparse.Namespace) -> Any:
    from ..ops.submit import ClusterJobs

    return ClusterJobs(args.address)


def _follow(jobs: Any, job_id: str) -> str:
    """Stream the job's log to stdout until it ends; return its final status."""
    for text in jobs.follow(job_id):
        sys.stdout.write(text)
        sys.stdout.flush()
    return str(jobs.wait(job_id).status)


def _cmd_submit(args: argparse.Namespace) -> int:
    from ..jobs import load_job
    from ..ops.submit import portable_job_text

    job = load_job(args.job, args.set)
    portable_job_text(job)  # a relative path fails here, before any connection
    jobs = _jobs(args)
    job_id = jobs.submit(job, ship_package=not args.no_package, submission_id=args.job_id)
    print(f"submitted {job_id} ({job.name}) to {jobs.address}", flush=True)
    if not args.wait:
        print(f"    follow it: surveyproc logs {job_id} --follow --address {jobs.address}")
        return 0
    status = _follow(jobs, job_id)
    print(f"{job_id}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def _cmd_status(args: argparse.Namespace) -> int:
    state = _jobs(args).state(args.job_id)
    print(state.line())
    return 0


def _cmd_logs(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    if args.follow:
        status = _follow(jobs, args.job_id)
        print(f"{args.job_id}: {status}", file=sys.stderr)
        return 0
    sys.stdout.write(jobs.logs(args.job_id))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    jobs = _jobs(args)
    stopped = jobs.stop(args.job_id)
    if not stopped:
        print(f"{args.job_id} had already finished: {jobs.state(args.job_id).status}")
        return 0
    state = jobs.wait(args.job_id, timeout=args.timeout) if args.wait else jobs.state(args.job_id)
    print(f"{args.job_id}: stop requested; now {state.status}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    for state in _jobs(args).jobs():
        print(state.line())
    return 0


def _address_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None, metavar="URL",
                        help="the Ray dashboard's Jobs API, http://HEAD:8265 (default: "
                             "$RAY_API_SERVER_ADDRESS); the token comes from $RAY_AUTH_TOKEN "
                             "or the file $RAY_AUTH_TOKEN_PATH, never from the command line")


def add_cluster_commands(commands: Any) -> None:
    """Add the remote-cluster subcommands to ``commands`` (argparse sub-parsers)."""
    submit = commands.add_parser(
        "submit", help="run a job file on a remote Ray cluster (Ray Jobs API)",
        description="Validate a job file here, then submit it with this package as a Ray job "
                    "(entrypoint: python -m surveyproc run). Paths in the job file must be "
                    "URLs or absolute paths the cluster can read.")
    add_job_arguments(submit, "resources.actors=8")
    _address_option(submit)
    submit.add_argument("--wait", action="store_true",
                        help="follow the job to its end, streaming its logs; exit 0 when it "
                             "SUCCEEDED, 1 otherwise")
    submit.add_argument("--job-id", default=None, help="submission id (default: Ray's)")
    submit.add_argument("--no-package", action="store_true",
                        help="use the surveyproc installed in the cluster's image instead of "
                             "shipping this one")
    submit.set_defaults(func=_cmd_submit)

    for name, helptext, func in (("status", "state of a submitted job", _cmd_status),
                                 ("logs", "logs of a submitted job", _cmd_logs),
                                 ("stop", "stop a submitted job", _cmd_stop)):
        sub = commands.add_parser(name, help=helptext, description=f"{helptext[0].upper()}"
                                  f"{helptext[1:]} (by the id submit printed).")
        sub.add_argument("job_id", help="the job id submit printed")
        _address_option(sub)
        sub.set_defaults(func=func)
        if name == "logs":
            sub.add_argument("--follow", "-f", action="store_true",
                             help="keep streaming until the job ends")
        if name == "stop":
            sub.add_argument("--wait", action="store_true", help="wait until it has stopped")
            sub.add_argument("--timeout", type=float, default=120.0,
                             help="seconds --wait waits (120)")
    listing = commands.add_parser("list", help="jobs on a Ray cluster",
                                  description="Every job the cluster knows, oldest first.")
    _address_option(listing)
    listing.set_defaults(func=_cmd_list)
