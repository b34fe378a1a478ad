"""Benchmarks for dataverse_sim.

    uv run python benchmarks/sim_bench.py [--users 100000] [--select fullname,...]
    uv run python benchmarks/sim_bench.py --startup 1000000

The first form starts a simulator, then reads every user over HTTPS in pages of 5000
(following @odata.nextLink), once with $select and once with all columns.  The second
form only measures generating the store: time and peak resident memory.
"""

from __future__ import annotations

import argparse
import functools
import gc
import resource
import ssl
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from dataverse_sim.data import Store  # noqa: E402
from dataverse_sim.server import Simulator  # noqa: E402
from learnexa.demo.simulator import app_token  # noqa: E402


def read_all(client: httpx.Client, url: str) -> tuple[int, int, float]:
    started = time.perf_counter()
    rows = pages = 0
    headers = {"Prefer": "odata.maxpagesize=5000"}
    while url:
        resp = client.get(url, headers=headers)
        resp.raise_for_status()
        body = resp.json()
        rows += len(body["value"])
        pages += 1
        url = body.get("@odata.nextLink")
    return rows, pages, time.perf_counter() - started


def bench_paging(users: int, select: str) -> None:
    with tempfile.TemporaryDirectory() as state:
        t0 = time.perf_counter()
        sim = Simulator(users=users, seed=1, port=0, state_dir=state)
        sim.start()
        print(f"start with {users} users: {time.perf_counter() - t0:.2f}s")
        info = sim.info
        ctx = ssl.create_default_context(cafile=info["ca_bundle"])
        token = app_token(info, functools.partial(httpx.post, verify=ctx))
        base = f"{info['organization_uri']}/api/data/v9.2/systemusers"
        with httpx.Client(
            verify=ctx, headers={"Authorization": f"Bearer {token}"}, timeout=120
        ) as client:
            for label, url in (
                (f"$select={select}", f"{base}?$select={select}"),
                ("$select + $filter", f"{base}?$select={select}&$filter=isdisabled eq false"),
                ("all columns", base),
            ):
                rows, pages, elapsed = read_all(client, url)
                print(f"{label:>40}: {rows} rows in {pages} pages, {elapsed:.2f}s")
        sim.close()


def bench_startup(users: int) -> None:
    t0 = time.perf_counter()
    store = Store(users=users, seed=1)
    elapsed = time.perf_counter() - t0
    gc.collect()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"generated {store.count_users()} users in {elapsed:.1f}s; peak RSS {peak:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument(
        "--select", default="fullname,internalemailaddress,isdisabled,modifiedon,accessmode"
    )
    parser.add_argument("--startup", type=int, metavar="USERS", help="only measure generation")
    args = parser.parse_args()
    if args.startup:
        bench_startup(args.startup)
    else:
        bench_paging(args.users, args.select)


if __name__ == "__main__":
    main()
