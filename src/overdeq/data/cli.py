"""``overdeq data``: fetch and verify raw files, or prepare a data set into an .npz.

    overdeq data fetch   --data mnist|cifar10 [--data-root data] [--[no-]download]
    overdeq data prepare --data NAME --n N --data-seed S [--classes 0 1] [--labels uniform]
                         [--data-root data] [--[no-]download] --out FILE.npz

Downloads happen only for missing raw files, and only when allowed: ``--download`` or
``--no-download`` decides when given, else the environment (``OVERDEQ_OFFLINE=1`` forbids).

``prepare`` derives its seeds exactly as ``overdeq train`` does (``seeding.data_seeds``:
``derive_seed(data_seed, "data")`` for the subset, ``"labels"`` for the targets), so
``overdeq train --data-file FILE.npz`` and ``overdeq train --data NAME`` with the same flags
see identical arrays. The .npz is written atomically and only after every check passed: a
failed run leaves a previously prepared file untouched.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from ..argtypes import positive_int
from ..seeding import data_seeds
from .core import DATASETS, LABEL_KINDS, Dataset, DataSpec, load_dataset
from .download import network_allowed

__all__ = ["configure", "add_selection_args", "FETCHABLE"]

FETCHABLE = ("mnist", "cifar10")


def add_selection_args(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--d, --classes and --labels, with DataSpec's defaults (train and data prepare)."""
    p.add_argument(
        "--d",
        type=positive_int("--d"),
        default=None,
        help="input dimension of the synthetic data sets: gaussian needs it (default: none; "
        "identity: d = n)",
    )
    p.add_argument(
        "--classes",
        type=int,
        nargs="+",
        default=list(DataSpec.classes),
        help="the classes a labelled data set (digits, mnist, cifar10) keeps",
    )
    p.add_argument(
        "--labels",
        choices=list(LABEL_KINDS),
        default=DataSpec.labels,
        help="uniform: y ~ U(0,1) as in the paper; pm1: -1/+1 for the two classes",
    )


def _add_source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root",
        default=DataSpec.root,
        help="folder holding raw/mnist/ and raw/cifar-10/",
    )
    p.add_argument(
        "--download",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="download missing raw files; --no-download only uses and verifies files already "
        "in place (default: download, unless the environment sets OVERDEQ_OFFLINE=1)",
    )


DESCRIPTION = (
    "Fetch and verify the raw files of a data set, or prepare a data set into an .npz that "
    "'overdeq train --data-file' reads. Downloads happen only for missing raw files, and "
    "only when allowed."
)

EPILOG = """\
examples:
  overdeq data fetch --data mnist --data-root data
  overdeq data prepare --data mnist --n 1000 --data-seed 0 --out data/mnist1000.npz
  overdeq data prepare --data gaussian --n 50 --d 10 --data-seed 3 --out data/g50.npz
"""


def configure(p: argparse.ArgumentParser) -> None:
    """Give ``p`` (the parser of ``overdeq data``) the subcommands fetch and prepare."""
    p.description, p.epilog = DESCRIPTION, EPILOG
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    fmt = p.formatter_class

    text = "download (or verify in place) the raw files"
    f = data_sub.add_parser("fetch", help=text, description=text, formatter_class=fmt)
    f.add_argument("--data", required=True, choices=list(FETCHABLE), help="data set to fetch")
    _add_source_args(f)
    f.set_defaults(func=_cmd_fetch)

    text = "select, normalise and label a data set; write .npz"
    q = data_sub.add_parser("prepare", help=text, description=text, formatter_class=fmt)
    q.add_argument("--data", required=True, choices=list(DATASETS), help="data set to prepare")
    q.add_argument("--n", type=positive_int("--n"), required=True, help="number of samples")
    add_selection_args(q)
    q.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the subset and the labels (same meaning as in 'train')",
    )
    _add_source_args(q)
    q.add_argument("--out", type=Path, required=True, help="prepared file to write (.npz)")
    q.set_defaults(func=_cmd_prepare)


def _network(download: bool | None) -> contextlib.AbstractContextManager:
    """--download / --no-download when given; otherwise OVERDEQ_OFFLINE decides."""
    return contextlib.nullcontext() if download is None else network_allowed(download)


def _cmd_fetch(args: argparse.Namespace) -> int:
    from .cifar10 import fetch_cifar10
    from .mnist import fetch_mnist

    with _network(args.download):
        if args.data == "mnist":
            files = list(fetch_mnist(args.data_root).values())
        else:
            files = [fetch_cifar10(args.data_root)]
    for f in files:
        print(f"{f.path}\tsha256 {f.digests.sha256}\tverified")
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    if args.out.suffix != ".npz":
        raise ValueError(f"--out {args.out} must end in .npz (it is written with numpy.savez)")
    spec = DataSpec(
        name=args.data,
        n=args.n,
        d=args.d,
        **data_seeds(args.data_seed),
        labels=args.labels,
        classes=tuple(args.classes),
        root=args.data_root,
    )
    with _network(args.download):
        ds = load_dataset(spec)  # every check (files, checksums, classes, n) happens here
    ds = Dataset(X=ds.X, y=ds.y, name=ds.name, meta={**ds.meta, "data_seed": args.data_seed})
    ds.save_npz(args.out)
    files = [f.get("sha256") or f.get("content_sha256") for f in ds.meta.get("files", [])]
    print(
        json.dumps(
            {"out": str(args.out), "name": ds.name, "n": ds.n, "d": ds.d, "source_sha256": files}
        ),
        file=sys.stderr,
    )
    return 0
