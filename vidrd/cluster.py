"""``vidrd cluster wait``: block until a Ray cluster runs jobs.

Right after ``ray start --head`` (or ``ray up``, or a KubeRay head pod turning Ready) the dashboard answers before
its job agent has registered, and ``ray job submit`` fails with "No available agent to submit job". A launcher
script calls ``vidrd cluster wait --address http://HEAD:8265`` between the two: it submits a probe job (``true``)
until one is accepted and succeeds, within a time limit, then returns; past the limit it exits 1 with the last
error. With ``--nodes N`` it also waits for N alive nodes (a worker still joining takes none of the first tasks).
"""

from __future__ import annotations

import argparse
import sys
import time


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``vidrd cluster``."""
    p = sub.add_parser("cluster", help="Ray cluster tooling: wait until a cluster accepts jobs")
    kinds = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    w = kinds.add_parser(
        "wait",
        help="wait (bounded) until the cluster at --address runs a job",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    w.add_argument("--address", required=True, help="the head's dashboard, e.g. http://HEAD:8265 (as for ray job)")
    w.add_argument("--timeout", type=float, default=180.0, help="seconds to wait at most (default 180)")
    w.add_argument("--nodes", type=int, default=1, help="also wait for this many alive nodes (default 1)")
    w.set_defaults(func=run_wait)


def run_wait(args: argparse.Namespace) -> int:
    try:
        waited = wait_for_jobs(args.address, args.timeout, args.nodes)
    except TimeoutError as e:
        print(f"vidrd cluster wait: {e}", file=sys.stderr)
        return 1
    print(f"{args.address}: accepts jobs ({args.nodes} node(s) alive) after {waited:.1f} s")
    return 0


def wait_for_jobs(address: str, timeout: float = 180.0, nodes: int = 1, poll: float = 1.0) -> float:
    """Seconds until the cluster at ``address`` has ``nodes`` alive nodes and ran a probe job to success;
    TimeoutError with the last reason when ``timeout`` passes first."""
    from ray.job_submission import JobStatus, JobSubmissionClient
    from ray.util.state import list_nodes

    t0 = time.monotonic()
    last = "nothing answered"
    while time.monotonic() - t0 < timeout:
        try:
            alive = [n for n in list_nodes(address=address, timeout=10) if n.state == "ALIVE"]
            if len(alive) < nodes:
                last = f"{len(alive)} of {nodes} nodes alive"
            else:
                client = JobSubmissionClient(address)
                job = client.submit_job(entrypoint="true")
                status = client.get_job_status(job)
                while not status.is_terminal() and time.monotonic() - t0 < timeout:
                    time.sleep(poll / 2)
                    status = client.get_job_status(job)
                if status == JobStatus.SUCCEEDED:
                    return time.monotonic() - t0
                last = f"the probe job ended {status.value}" if status.is_terminal() else "the probe job hung"
        except Exception as e:  # refused connections, "No available agent to submit job": not ready yet
            last = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
        time.sleep(poll)
    raise TimeoutError(f"{address} did not run a job within {timeout:g} s ({last})")
