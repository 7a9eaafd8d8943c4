#!/usr/bin/env python3
"""Submits the job in a job.json file, follows it to its end, and optionally
cancels it after a while.

    client/python/examples/submit_watch_cancel.py examples/fine_tune.json \\
      --server 127.0.0.1:50051 --cancel-after 60

with the package installed (pip install client/python), or from the build
tree with PYTHONPATH=client/python:build/client/python/gen.

Exit status (as tlctl's): 0 the job succeeded, 1 a call failed, 2 bad input,
3 the job failed, 4 it was cancelled.
"""
import argparse
import getpass
import os
import sys
import threading

from tl_client import CallError, Client, JobSpecError, load_job_file, state_name
from tl_client import jobs_pb2

EXIT_BY_STATE = {jobs_pb2.Job.SUCCEEDED: 0, jobs_pb2.Job.FAILED: 3, jobs_pb2.Job.CANCELLED: 4}


def describe(event, validated: bool = True) -> str:
    """One line for the event; `validated` False: the job holds out no validation images, so
    its epochs' validation figures are zeros that measured nothing."""
    kind = event.WhichOneof("event")
    if kind == "job":
        job = event.job
        line = f"job {job.id}: {state_name(job.state)} (attempt {job.attempt})"
        return line + (f": {job.error}" if job.error else "")
    if kind == "epoch":
        e = event.epoch
        figures = (f"val loss {e.val_loss:.4f}, val accuracy {e.val_accuracy:.4f}" if validated
                   else f"train accuracy {e.train_accuracy:.4f}")
        return (f"epoch {e.epoch}: train loss {e.train_loss:.4f}, {figures}, "
                f"{e.images_per_second:.0f} images/s")
    p = event.progress
    what = "auto probe run" if p.phase == jobs_pb2.Progress.AUTO_PROBE else "epoch"
    return f"  {what} {p.epoch}/{p.epochs} batch {p.batch}/{p.batches} loss {p.loss:.4f}"


def cancel_quietly(client: Client, job_id: str) -> None:
    try:
        client.cancel(job_id, reason="cancelled by submit_watch_cancel")
    except CallError as error:  # the job may have ended first
        print(f"submit_watch_cancel: cancel: {error}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("job_file", help="proto3 JSON form of tl.v1.JobSpec")
    parser.add_argument("--server", default=os.environ.get("TL_SERVER", "127.0.0.1:50051"))
    parser.add_argument("--owner", default=None,
                        help="who owns the job; default: the token's principal, or your user "
                             "name without a token (a user token may submit only as itself)")
    parser.add_argument("--token", default=os.environ.get("TL_TOKEN"),
                        help="bearer token sent with every call (default: $TL_TOKEN)")
    parser.add_argument("--cancel-after", type=float, metavar="SECONDS",
                        help="cancel the job this long after submitting it")
    parser.add_argument("--progress", action="store_true", help="print progress events too")
    args = parser.parse_args()
    if args.owner is None:
        # As tlctl does: a server with tokens takes the owner from the token.
        args.owner = "" if args.token else getpass.getuser()

    try:
        spec = load_job_file(args.job_file)
    except JobSpecError as error:
        print(f"submit_watch_cancel: {error}", file=sys.stderr)
        return 2

    with Client(args.server, token=args.token) as client:
        try:
            job = client.submit(spec, owner=args.owner)
            print(f"submitted {job.id} ({job.spec.name or 'unnamed'})", flush=True)
            timer = None
            if args.cancel_after is not None:
                timer = threading.Timer(args.cancel_after, cancel_quietly, args=(client, job.id))
                timer.start()
            last_state = job.state
            validated = True  # until the job's dataset is known
            try:
                for event in client.watch(job.id):
                    if event.WhichOneof("event") == "progress" and not args.progress:
                        continue
                    if event.WhichOneof("event") == "job":
                        last_state = event.job.state
                        result = event.job.result
                        validated = (not result.HasField("dataset")
                                     or result.dataset.val_images > 0)
                    print(describe(event, validated), flush=True)
            finally:
                if timer is not None:
                    timer.cancel()
                    timer.join()
        except CallError as error:
            print(f"submit_watch_cancel: {error}", file=sys.stderr)
            return 2 if error.code.name == "INVALID_ARGUMENT" else 1
    return EXIT_BY_STATE.get(last_state, 1)


if __name__ == "__main__":
    sys.exit(main())
