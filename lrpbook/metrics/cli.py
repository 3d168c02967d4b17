"""``lrpbook-eval``: COCO AP + oLRP, LVIS and panoptic LRP from the command line.

Usage::

    lrpbook-eval coco GT DT --iou-type bbox|segm|keypoints [--out result.json] [--per-class]
                            [--thresholds-out thr.json]
    lrpbook-eval lvis GT DT [--out result.json] [--per-class] [--thresholds-out thr.json]
    lrpbook-eval panoptic GT_JSON PRED_JSON --gt-dir DIR --pred-dir DIR [--out result.json]
    lrpbook-eval apply-thresholds RESULTS THRESHOLDS --out kept.json [--default THR]
    lrpbook-eval --version

Also ``python -m lrpbook.metrics ...``. The summary goes to stdout; ``--out`` writes
``{"stats": {...}, "per_class": [...]}`` with NaN as ``null``. Exit status 0 on success and 2 on
bad input, with one line on stderr naming the file and the problem; an output path that is (or
resolves to) an input is refused the same way, and outputs are written atomically (a temporary
file in the same folder, then a rename), so an interrupted run leaves the previous file intact. A progress bar is shown on
stderr when it is a terminal (``--progress`` / ``--no-progress`` to force).

Taught in: chapter "LRP Error".
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

__all__ = ["main", "console_main"]

PROG = "lrpbook-eval"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="COCO AP and the optimal LRP Error (oLRP) with its components; LVIS; panoptic.",
    )
    from lrpbook import __version__

    p.add_argument("--version", action="version", version=f"{PROG} (lrpbook) {__version__}")
    sub = p.add_subparsers(dest="command", required=True,
                           metavar="{coco,lvis,panoptic,apply-thresholds}")  # fmt: skip

    def common(sp: argparse.ArgumentParser, thresholds: bool = True) -> None:
        sp.add_argument("--out", type=Path, help="write the results as JSON (NaN as null)")
        sp.add_argument("--per-class", action="store_true", help="print the per-class table")
        if thresholds:
            sp.add_argument("--thresholds-out", type=Path,
                            help="write the per-class LRP-optimal thresholds as JSON")  # fmt: skip
        prog = sp.add_mutually_exclusive_group()
        prog.add_argument("--progress", dest="progress", action="store_true", default=None,
                          help="show a progress bar on stderr (default: when stderr is a terminal)")  # fmt: skip
        prog.add_argument("--no-progress", dest="progress", action="store_false")

    c = sub.add_parser("coco", help="COCO-style bbox / segm / keypoints evaluation")
    c.add_argument("gt", type=Path, help="ground truth, COCO .json or .json.gz")
    c.add_argument("dt", type=Path, help="detections, COCO results .json or .json.gz")
    c.add_argument("--iou-type", default="bbox", choices=["bbox", "segm", "keypoints"])
    common(c)

    lv = sub.add_parser("lvis", help="LVIS (federated) evaluation, 300 detections per image")
    lv.add_argument("gt", type=Path)
    lv.add_argument("dt", type=Path)
    lv.add_argument("--max-dets", type=int, default=300)
    common(lv)

    pa = sub.add_parser("panoptic", help="panoptic PQ and LRP from PNG + JSON pairs")
    pa.add_argument("gt_json", type=Path)
    pa.add_argument("pred_json", type=Path)
    pa.add_argument("--gt-dir", type=Path, required=True)
    pa.add_argument("--pred-dir", type=Path, required=True)
    common(pa, thresholds=False)

    ap = sub.add_parser("apply-thresholds",
                        help="keep the detections that reach their class' saved threshold")  # fmt: skip
    ap.add_argument("results", type=Path, help="COCO results .json or .json.gz")
    ap.add_argument("thresholds", type=Path, help="thresholds written by --thresholds-out")
    ap.add_argument("--out", type=Path, required=True, help="where to write the kept results")
    ap.add_argument("--default", type=float, default=None,
                    help="threshold for classes without one (default: keep them)")  # fmt: skip
    return p


def _run_apply(args: argparse.Namespace) -> tuple[str, Any, Any]:
    from lrpbook.metrics._io import load_json
    from lrpbook.metrics.thresholds import apply_thresholds, load_thresholds

    dets = load_json(args.results, what="results")
    if not isinstance(dets, list):
        raise ValueError(f"results file {args.results}: expected a JSON array of detections")
    kept = apply_thresholds(dets, load_thresholds(args.thresholds), default=args.default)
    text = f"kept {len(kept)} of {len(dets)} detections"
    return text, kept, None


def _run_coco(args: argparse.Namespace) -> tuple[str, dict, Any]:
    from lrpbook.metrics.coco import evaluate

    res = evaluate(args.gt, args.dt, args.iou_type, progress=args.progress)
    return res.summary(per_class=args.per_class), res.to_dict(), res


def _run_lvis(args: argparse.Namespace) -> tuple[str, dict, Any]:
    from lrpbook.metrics.lvis import evaluate_lvis

    res = evaluate_lvis(args.gt, args.dt, max_dets=args.max_dets, progress=args.progress)
    text = res.summary(per_class=args.per_class)
    keys = (
        "category_id",
        "name",
        "oLRP",
        "oLRP_Loc",
        "oLRP_FP",
        "oLRP_FN",
        "threshold",
        "frequency",
    )
    out = {"stats": dict(res.stats),
           "per_class": [{k: r[k] for k in keys if k in r} for r in res.per_class]}  # fmt: skip
    from lrpbook.metrics._io import nan_to_none

    return text, nan_to_none(out), res


def _run_panoptic(args: argparse.Namespace) -> tuple[str, dict, Any]:
    from lrpbook.metrics.panoptic import evaluate_panoptic

    res = evaluate_panoptic(args.gt_json, args.pred_json, args.gt_dir, args.pred_dir)
    return res.summary(per_class=args.per_class), res.to_dict(), res


_INPUTS = ("gt", "dt", "gt_json", "pred_json", "gt_dir", "pred_dir", "results", "thresholds")
_OUTPUTS = ("out", "thresholds_out")


def _opt(name: str) -> str:
    return name if name in ("gt", "dt", "gt_json", "pred_json", "results") else (
        "--" + name.replace("_", "-"))  # fmt: skip


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    return {_opt(k): getattr(args, k) for k in _INPUTS if getattr(args, k, None) is not None}


def _outputs(args: argparse.Namespace) -> dict[str, Any]:
    return {_opt(k): getattr(args, k) for k in _OUTPUTS if getattr(args, k, None) is not None}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``lrpbook-eval``; returns the exit status (0 ok, 2 bad input).

    Args:
        argv (list[str], optional): the arguments (default ``sys.argv[1:]``).

    Returns:
        int: 0 on success, 2 on bad input or bad arguments.

    Example:
        >>> main(["coco", "gt.json", "dt.json", "--out", "res.json"])  # doctest: +SKIP
        0

    Taught in: chapter "LRP Error".
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its usage message
        return int(exc.code or 0)
    if getattr(args, "progress", False) is None:
        args.progress = sys.stderr.isatty()
    runner = {"coco": _run_coco, "lvis": _run_lvis, "panoptic": _run_panoptic,
              "apply-thresholds": _run_apply}[args.command]  # fmt: skip
    # imported here (numpy with it), so that console_main can set up the process first
    from lrpbook.metrics._io import check_outputs, write_atomic

    try:
        check_outputs(_inputs(args), _outputs(args))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            text, out, res = runner(args)
        for w in caught:
            print(f"{PROG}: warning: {w.message}", file=sys.stderr)
        if args.out is not None:
            indent = None if args.command == "apply-thresholds" else 1
            write_atomic(args.out, json.dumps(out, indent=indent))
        if getattr(args, "thresholds_out", None) is not None:
            from lrpbook.metrics.thresholds import save_thresholds

            save_thresholds(res, args.thresholds_out)
    except (ValueError, TypeError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2
    print(text)
    return 0


#: Modules that the ``lrpbook-eval`` process keeps numba from importing, none of which the
#: evaluator's kernels use: SciPy (numba imports it at start-up only to check its version, and
#: its BLAS/LAPACK wrappers when it first loads a compiled kernel: about 0.2 s of CPU), cffi
#: (numba's typing of cffi functions builds a C parser: about 10 ms) and coverage.py (numba's
#: line-coverage hook: about 40 ms; a process started under coverage has it already and keeps it).
#: Also multiprocessing, which tqdm imports for a cross-process lock (about 20 ms; without it
#: tqdm uses its thread lock alone) and numba only for its parallel back-ends.
_NOT_IN_CLI = (
    "scipy", "scipy.linalg.cython_blas", "scipy.linalg.cython_lapack", "cffi", "coverage",
    "multiprocessing",
)  # fmt: skip


def console_main() -> int:
    """The ``lrpbook-eval`` console script and ``python -m lrpbook.metrics``: :func:`main` in a
    process of its own, started without the imports that the evaluator does not need.

    Only the command-line process is changed this way (no user code runs in it); calling
    :func:`main` from Python changes nothing. PyYAML, which numba imports to read a
    ``.numba_config.yaml``, is kept out too unless the working folder has such a file. OpenBLAS
    runs single-threaded (``OPENBLAS_NUM_THREADS=1`` unless set): the evaluator calls no BLAS
    routine, and starting OpenBLAS' thread pool when numpy is imported costs about 0.1 s of CPU.

    Returns:
        int: the exit status of :func:`main`.
    """
    import os

    if "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if "numba.np.arraymath" not in sys.modules:  # no kernel loaded yet in this process
        skip = _NOT_IN_CLI + (() if os.path.isfile(".numba_config.yaml") else ("yaml",))
        for name in skip:
            sys.modules.setdefault(name, None)  # type: ignore[assignment]
    return main()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(console_main())
