"""Command line ``lrpbook-train`` (also ``python -m lrpbook.train`` and ``torchrun -m lrpbook.train``).

Examples::

    lrpbook-train --model rs_atss --synthetic --max-iters 30 --device cpu --out runs/tiny
    lrpbook-train --model rs_atss --data-root $LRPBOOK_DATA/coco --out runs/rs_atss --preset rs_atss_r50_1x
    torchrun --nproc_per_node=4 -m lrpbook.train --model rs_atss --data-root DIR --out DIR
    lrpbook-train --model rs_atss --data-root DIR --out DIR --resume

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]

_FULL = {"alrp_retinanet": "alrp_retinanet_r50_100e_512"}


def _parser() -> argparse.ArgumentParser:
    from lrpbook.models import MODELS
    from lrpbook.train.config import PRESETS

    p = argparse.ArgumentParser(
        prog="lrpbook-train",
        description="Train a detector of the thesis with a ranking-based loss.",
    )
    p.add_argument(
        "--model", choices=sorted(MODELS), help="detector (default: from the config, rs_atss)"
    )
    p.add_argument(
        "--out", required=True, help="output folder (log.csv, last.pt, metrics.json, ...)"
    )
    p.add_argument(
        "--data-root", help="COCO-format folder (annotations/instances_{train,val}2017.json ...)"
    )
    p.add_argument("--synthetic", action="store_true", help="train on a small generated dataset")
    p.add_argument("--config", help="YAML file of TrainConfig fields (may name a `preset:`)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="start from a named configuration")
    p.add_argument("--max-iters", type=int, help="stop after this many iterations")
    p.add_argument("--epochs", type=int)
    p.add_argument(
        "--batch-size",
        type=int,
        help="images per iteration over all processes (without --lr, lr scales linearly)",
    )
    p.add_argument("--lr", type=float)
    p.add_argument("--backbone")
    p.add_argument("--device", help="auto, cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lrpbook-train``; returns the exit status (0 ok, 1 non-finite loss, 2 usage)."""
    import torch.distributed as dist

    from lrpbook.train.config import TrainConfig, load_config, preset
    from lrpbook.train.engine import NonFiniteLossError, train

    args = _parser().parse_args(argv)
    try:
        if args.config:
            cfg = load_config(args.config)
        elif args.preset:
            cfg = preset(args.preset)
        elif args.synthetic:
            cfg = preset(f"{args.model or 'rs_atss'}_cpu")
        else:
            cfg = preset(_FULL.get(args.model or "rs_atss", f"{args.model}_r50_1x"))
        data = cfg.to_dict()
        if args.model and args.model != cfg.model:
            if args.synthetic and not (args.config or args.preset):
                data = preset(f"{args.model}_cpu").to_dict()
            data["model"] = args.model
        for key, value in (
            ("data_root", args.data_root),
            ("max_iters", args.max_iters),
            ("epochs", args.epochs),
            ("batch_size", args.batch_size),
            ("lr", args.lr),
            ("backbone", args.backbone),
            ("device", args.device),
        ):
            if value is not None:
                data[key] = value
        if args.synthetic:
            data["synthetic"] = True
        if args.no_eval:
            data["eval_at_end"] = False
        if args.batch_size is not None and args.lr is None and args.batch_size != cfg.batch_size:
            # linear scaling rule: the learning rate follows the batch size
            data["lr"] = cfg.lr * args.batch_size / cfg.batch_size
            print(
                f"lrpbook-train: batch {args.batch_size} instead of {cfg.batch_size}: "
                f"lr scaled linearly to {data['lr']:g}",
                file=sys.stderr,
            )
        cfg = TrainConfig.from_dict(data)
        if not cfg.synthetic and not cfg.data_root:
            raise ValueError("give `--data-root DIR` (a COCO-format folder) or `--synthetic`")
    except (ValueError, OSError) as err:
        print(f"lrpbook-train: error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        import torch

        backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        dist.init_process_group(backend)
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    try:
        result = train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    except NonFiniteLossError as err:
        print(f"lrpbook-train: {err}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if result.metrics:
        print(
            json.dumps(
                {k: result.metrics[k] for k in ("AP", "AP50", "oLRP") if k in result.metrics}
            )
        )
    print(f"done: {result.iterations} iterations, outputs in {result.out_dir}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
