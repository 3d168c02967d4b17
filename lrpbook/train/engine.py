"""The training engine: data, optimisation, logging, checkpoints, exact resume, evaluation, DDP.

Multi-GPU: launch with ``torchrun --nproc_per_node=N -m lrpbook.train ...``. Every process trains on
its own ``batch_size / N`` images (``DistributedSampler``) and DDP averages the gradients. The loss
normalisers are **per process**: RS Loss and aLRP Loss rank the anchors x classes of the process'
own images and divide by that process' number of positives :math:`|\\mathcal{P}|`, exactly as the
official implementations (4 GPUs x 4 images in the thesis); the ranking of one GPU never sees the
examples of another, so changing the number of GPUs at a fixed total batch changes the loss slightly.
The Focal Loss baseline divides by the number of positives averaged over the processes (as in
mmdetection's ATSS). Detections are gathered to process 0, which evaluates and writes the files.

Taught in: chapter "Detectors trained with ranking-based losses".
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from lrpbook.train.config import TrainConfig, save_config

__all__ = ["NonFiniteLossError", "TrainResult", "train", "evaluate_model", "predict", "plot_log"]


class NonFiniteLossError(RuntimeError):
    """Raised when a loss is NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Fields:

    * ``out_dir``: the output folder (``log.csv``, ``last.pt``, ``metrics.json``, ``thresholds.json``,
      ``loss.png``, ``config.yaml``).
    * ``iterations``: iterations done in total (including those before a resume).
    * ``history``: the rows of ``log.csv`` of this run (dicts of floats).
    * ``metrics``: the evaluator's ``stats`` (``AP``, ``oLRP``, ...) or ``{}`` without evaluation.
    * ``model``: the trained model (unwrapped from DDP), in eval mode.
    """

    out_dir: Path
    iterations: int
    history: list[dict[str, float]]
    metrics: dict[str, float] = field(default_factory=dict)
    model: Any = None


# ----------------------------------------------------------------------------------- data
def _ssd_augment(image, target, size: int, g: torch.Generator):
    """SSD-style augmentation (thesis Sec. 7.4, as in aLRP Loss' 512 x 512 setting).

    Photometric distortion (brightness, contrast, saturation), zoom-out onto a canvas of the mean
    colour (ratio 1-4, half of the time), a random crop whose IoU with every kept box is at least
    one of (0.1, 0.3, 0.5, 0.7, 0.9) (or no crop), keeping the boxes whose centres fall inside, and
    a resize to ``size x size``. Everything random comes from ``g``.
    """
    import torch.nn.functional as F
    from torchvision.ops import box_iou

    def u(lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=g))

    img = image.float()
    if u(0, 1) < 0.5:
        img = img + u(-32, 32) / 255
    if u(0, 1) < 0.5:
        img = img * u(0.5, 1.5)
    if u(0, 1) < 0.5:
        grey = img.mean(0, keepdim=True)
        img = grey + (img - grey) * u(0.5, 1.5)
    img = img.clamp(0, 1)
    boxes = target["boxes"].float().clone()
    labels = target["labels"].clone()
    _, h, w = img.shape
    if u(0, 1) < 0.5:
        r = u(1, 4)
        nh, nw = int(h * r), int(w * r)
        top, left = int(u(0, nh - h)), int(u(0, nw - w))
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        canvas = mean.expand(3, nh, nw).clone()
        canvas[:, top : top + h, left : left + w] = img
        img, h, w = canvas, nh, nw
        boxes += torch.tensor([left, top, left, top], dtype=boxes.dtype)
    modes = (1.0, 0.1, 0.3, 0.5, 0.7, 0.9)
    mode = modes[int(torch.randint(len(modes), (), generator=g))]
    if mode < 1 and len(boxes):
        for _ in range(50):
            cw, ch = u(0.3, 1) * w, u(0.3, 1) * h
            if not 0.5 <= ch / cw <= 2:
                continue
            x0, y0 = int(u(0, w - cw)), int(u(0, h - ch))
            cw, ch = max(1, int(cw)), max(1, int(ch))
            patch = torch.tensor([[x0, y0, x0 + cw, y0 + ch]], dtype=boxes.dtype)
            if box_iou(patch, boxes).min() < mode:
                continue
            c = (boxes[:, :2] + boxes[:, 2:]) / 2
            inside = (c > patch[:, :2]).all(1) & (c < patch[:, 2:]).all(1)
            if not inside.any():
                continue
            boxes, labels = boxes[inside], labels[inside]
            boxes[:, 0::2] = boxes[:, 0::2].clamp(x0, x0 + cw) - x0
            boxes[:, 1::2] = boxes[:, 1::2].clamp(y0, y0 + ch) - y0
            img = img[:, y0 : y0 + ch, x0 : x0 + cw]
            h, w = img.shape[-2:]
            break
    img = F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False)[0]
    boxes *= torch.tensor([size / w, size / h, size / w, size / h], dtype=boxes.dtype)
    keep = (boxes[:, 2:] - boxes[:, :2] > 1e-3).all(1)
    target = dict(target)
    target["boxes"], target["labels"] = boxes[keep], labels[keep]
    for key in ("area", "iscrowd"):
        if key in target and torch.is_tensor(target[key]) and len(target[key]) == len(keep):
            target[key] = target[key][keep] if key == "iscrowd" else target[key][keep] * 0
    target.pop("masks", None)
    return img, target


class _FlipDataset(Dataset):
    """Random flip (and SSD-style crops) decided by ``(seed, epoch, index)``: exact resume."""

    def __init__(
        self, base: Dataset, seed: int, enabled: bool, ssd_crop: int | None = None
    ) -> None:
        self.base, self.seed, self.enabled, self.epoch = base, seed, enabled, 0
        self.ssd_crop = ssd_crop

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, target = self.base[index]
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 7919 + index)
        if self.ssd_crop:
            image, target = _ssd_augment(image, target, self.ssd_crop, g)
        if self.enabled:
            if torch.rand((), generator=g) < 0.5:
                w = image.shape[-1]
                image = image.flip(-1)
                target = dict(target)
                b = target["boxes"].clone()
                b[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
                target["boxes"] = b
                if "masks" in target:
                    target["masks"] = target["masks"].flip(-1)
        return image, target


class _SkipSampler(Sampler):
    """Skip the first ``skip`` indices of a sampler's epoch (to resume in the middle of an epoch)."""

    def __init__(self, sampler: Sampler, skip: int = 0) -> None:
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        for i, idx in enumerate(self.sampler):
            if i >= self.skip:
                yield idx

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def _datasets(cfg: TrainConfig, out_dir: Path, rank: int, masks: bool):
    from lrpbook.data import CocoDetection, make_synthetic_coco

    if cfg.synthetic:
        roots = {}
        for split, seed in (("train", cfg.seed), ("val", cfg.seed + 1)):
            root = out_dir / "data" / split
            ann = root / "annotations" / f"instances_{split}.json"
            if rank == 0 and not ann.is_file():
                make_synthetic_coco(
                    root,
                    num_images=cfg.synthetic_images,
                    num_classes=cfg.synthetic_classes,
                    image_size=cfg.image_size,
                    seed=seed,
                    split=split,
                    scale=(0.2, 0.5),
                    objects_per_image=(1, 3),
                    overwrite=True,
                )
            roots[split] = (root / "images" / split, ann)
        if dist.is_initialized():
            dist.barrier()
        (ti, ta), (vi, va) = roots["train"], roots["val"]
    else:
        if not cfg.data_root:
            raise ValueError("a data root is needed (`--data-root DIR`), or use `--synthetic`")
        root = Path(cfg.data_root)
        ti, ta = root / cfg.train_images, root / cfg.train_ann
        vi, va = root / cfg.val_images, root / cfg.val_ann
    train_ds = CocoDetection(ti, ta, with_masks=masks)
    val_ds = CocoDetection(vi, va, with_masks=False) if Path(va).is_file() else None
    return train_ds, val_ds


def _collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]


# ------------------------------------------------------------------------------ helpers
def _dist_info() -> tuple[int, int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0))
    return 0, 1, 0


def _device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if cfg.device.startswith("cuda") and dist.is_initialized():
        return torch.device(f"cuda:{local_rank}")
    return torch.device(cfg.device)


def _lr_factor(cfg: TrainConfig, iters_per_epoch: int):
    steps = [s * iters_per_epoch for s in cfg.lr_steps]

    def factor(it: int) -> float:
        f = cfg.gamma ** sum(it >= s for s in steps)
        if it < cfg.warmup_iters:
            f *= cfg.warmup_ratio + (1 - cfg.warmup_ratio) * it / cfg.warmup_iters
        return f

    return factor


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _to_device(images, targets, device):
    images = [i.to(device, non_blocking=True) for i in images]
    targets = [
        {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in t.items()}
        for t in targets
    ]
    return images, targets


def build_model(cfg: TrainConfig, num_classes: int):
    """The model of a configuration (``lrpbook.models.build``); a hook for tests."""
    from lrpbook.models import build

    return build(
        cfg.model,
        num_classes,
        backbone=cfg.backbone,
        weights_backbone=cfg.weights_backbone,
        **cfg.model_options,
    )


# ---------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict(
    model, dataset, device: torch.device | str = "cpu", batch_size: int = 4, indices=None
) -> list[dict]:
    """COCO results (``image_id``, ``category_id``, ``bbox`` xywh, ``score``) of ``model`` on ``dataset``.

    Args:
        model: a detector of :func:`lrpbook.models.build` (set to eval mode here).
        dataset: a :class:`lrpbook.data.CocoDetection`.
        device: where to run.
        batch_size: images per forward pass.
        indices: the dataset items to run on (all by default).

    Returns:
        list[dict]: detections in the COCO results format, category ids of the dataset.
    """
    model.eval()
    idx = list(range(len(dataset))) if indices is None else list(indices)
    out: list[dict] = []
    for start in range(0, len(idx), batch_size):
        items = [dataset[i] for i in idx[start : start + batch_size]]
        images = [im.to(device) for im, _ in items]
        for (_, target), det in zip(items, model(images)):
            boxes = det["boxes"].float().cpu()
            rles = _encode_masks(det["masks"]) if "masks" in det else None
            for k, (box, score, label) in enumerate(
                zip(boxes.tolist(), det["scores"].tolist(), det["labels"].tolist())
            ):
                x1, y1, x2, y2 = box
                item = {
                    "image_id": int(target["image_id"]),
                    "category_id": int(dataset.label_to_cat_id[int(label)]),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
                if rles is not None:
                    item["segmentation"] = rles[k]
                out.append(item)
    return out


def _encode_masks(masks) -> list[dict]:
    """Compressed RLEs (COCO results format) of mask probabilities ``[N, 1, H, W]`` thresholded at 0.5."""
    from pycocotools import mask as mask_utils

    binary = (masks[:, 0] > 0.5).cpu().numpy().astype(np.uint8)
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0))) if len(binary) else []
    return [{"size": r["size"], "counts": r["counts"].decode("ascii")} for r in rles]


def evaluate_model(
    model, dataset, device: torch.device | str = "cpu", out_dir: str | Path | None = None
):
    """Run ``model`` on ``dataset`` and evaluate COCO AP and oLRP with :func:`lrpbook.metrics.evaluate`.

    Under DDP every process predicts its share of the images and process 0 gathers the detections
    and evaluates (the other processes return ``None``). With ``out_dir``, process 0 writes
    ``metrics.json`` (the evaluator's ``stats``), ``thresholds.json`` (LRP-optimal thresholds,
    :func:`lrpbook.metrics.save_thresholds`) and ``detections.json``; for a model with masks also
    ``metrics_segm.json`` and ``thresholds_segm.json`` (mask AP and oLRP).

    Returns:
        EvalResult | None: the evaluation (``.stats`` has ``AP`` and ``oLRP``).
    """
    from lrpbook.metrics import evaluate, save_thresholds

    rank, world, _ = _dist_info()
    dets = predict(model, dataset, device, indices=range(rank, len(dataset), world))
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, dets)
        dets = [d for part in gathered for d in part]
    if rank != 0:
        return None
    result = evaluate(dataset.coco.dataset, dets)
    segm = None
    if dets and "segmentation" in dets[0]:
        segm = evaluate(dataset.coco.dataset, dets, "segm")
    if out_dir is not None:
        out_dir = Path(out_dir)
        (out_dir / "metrics.json").write_text(json.dumps(result.stats, indent=1))
        save_thresholds(result, out_dir / "thresholds.json")
        (out_dir / "detections.json").write_text(json.dumps(dets))
        if segm is not None:
            (out_dir / "metrics_segm.json").write_text(json.dumps(segm.stats, indent=1))
            save_thresholds(segm, out_dir / "thresholds_segm.json")
    return result


def plot_log(log_csv: str | Path, out_png: str | Path | None = None):
    """Plot the columns of a ``log.csv`` against the iteration (total loss and components).

    Returns:
        matplotlib.figure.Figure: the figure (also saved to ``out_png`` when given).
    """
    from matplotlib.figure import Figure

    with open(log_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    fig = Figure(figsize=(6, 3.2))
    ax = fig.add_subplot()
    if rows:
        its = [float(r["iteration"]) for r in rows]
        skip = {"iteration", "epoch", "lr", "sec_per_iter", "sb_weight"}
        for key in rows[0]:
            if key not in skip:
                ax.plot(its, [float(r[key]) for r in rows], label=key, lw=2 if key == "loss" else 1)
        ax.legend(fontsize=7)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    fig.tight_layout()
    if out_png is not None:
        fig.savefig(out_png, dpi=100)
    return fig


# --------------------------------------------------------------------------------- train
def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train the detector of ``config`` and (optionally) evaluate it; the engine of ``lrpbook-train``.

    The schedule is iteration based: ``epochs`` passes over the data (``max_iters`` stops earlier),
    SGD with linear warm-up and step decay, gradient clipping where configured, mixed precision
    on CUDA. Every
    ``log_every`` iterations a row goes to ``log.csv`` (``iteration, epoch, lr, loss``, the loss
    components, ``sec_per_iter``); every ``ckpt_every`` iterations and at the end ``last.pt`` is written
    atomically (temporary file, then ``os.replace``). ``resume=True`` continues from ``last.pt``
    exactly: model (with loss-balancing buffers such as aLRP's self-balance weight), optimiser,
    scheduler, AMP scaler, RNG states and the position in the epoch's data order.

    Args:
        config: the run's :class:`~lrpbook.train.config.TrainConfig`.
        out_dir: the output folder (created).
        resume: continue from ``out_dir/last.pt``.
        progress: show a tqdm bar with the loss components and speed (process 0).

    Returns:
        TrainResult: iterations, the log rows, the metrics and the model.

    Raises:
        NonFiniteLossError: when a loss is NaN/inf (``last.pt`` keeps the last good state).
        FileNotFoundError: ``resume=True`` without ``last.pt``.
    """
    torch.set_flush_denormal(True)
    cfg = config
    out_dir = Path(out_dir)
    rank, world, local_rank = _dist_info()
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    device = _device(cfg, local_rank)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)  # noqa: NPY002 - seeds third-party code that uses the legacy RNG
    masks = cfg.model == "rs_mask_rcnn"
    train_ds, val_ds = _datasets(cfg, out_dir, rank, masks)
    model = build_model(cfg, len(train_ds.cat_ids)).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    per_proc = max(1, cfg.batch_size // world)
    flip_ds = _FlipDataset(train_ds, cfg.seed, cfg.hflip, cfg.ssd_crop)
    sampler = DistributedSampler(
        flip_ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
    )
    iters_per_epoch = max(1, len(sampler) // per_proc)
    total = cfg.epochs * iters_per_epoch
    if cfg.max_iters is not None:
        total = min(total, cfg.max_iters)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(cfg, iters_per_epoch))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    iteration = 0
    ckpt = out_dir / "last.pt"
    log_path = out_dir / "log.csv"
    if resume:
        if not ckpt.is_file():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {ckpt}")
        state = torch.load(ckpt, map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        iteration = int(state["iteration"])
        torch.set_rng_state(state["rng_torch"])
        if torch.cuda.is_available() and "rng_cuda" in state:
            torch.cuda.set_rng_state_all(list(state["rng_cuda"]))
        if rank == 0 and log_path.is_file():  # drop rows logged after the checkpoint
            with open(log_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if float(r["iteration"]) <= iteration]
            if rows:
                with open(log_path, "w", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(rows[0]))
                    w.writeheader()
                    w.writerows(rows)
            else:
                log_path.unlink()
    elif rank == 0 and log_path.exists():
        log_path.unlink()
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def save() -> None:
        if rank != 0:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "iteration": iteration,
            "rng_torch": torch.get_rng_state(),
            "config": json.dumps(cfg.to_dict()),
        }
        if torch.cuda.is_available():
            state["rng_cuda"] = torch.cuda.get_rng_state_all()
        _atomic_save(state, ckpt)

    history: list[dict[str, float]] = []
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=iteration, desc=cfg.model, dynamic_ncols=True)
    writer_fields: list[str] | None = None
    if rank == 0 and log_path.is_file():
        with open(log_path, newline="") as f:
            writer_fields = next(csv.reader(f), None)
    last_saved = iteration
    model.train()
    while iteration < total:
        epoch, in_epoch = divmod(iteration, iters_per_epoch)
        sampler.set_epoch(epoch)
        flip_ds.epoch = epoch
        loader = DataLoader(
            flip_ds,
            batch_size=per_proc,
            sampler=_SkipSampler(sampler, in_epoch * per_proc),
            num_workers=cfg.num_workers,
            collate_fn=_collate,
            drop_last=True,
            pin_memory=device.type == "cuda",
        )
        for images, targets in loader:
            if iteration >= total:
                break
            tic = time.perf_counter()
            images, targets = _to_device(images, targets, device)
            with torch.autocast(device.type, enabled=use_amp):
                losses = net(images, targets)
            loss = sum(losses.values())
            values = {k: float(v.detach()) for k, v in losses.items()}
            lval = float(loss.detach())
            if not math.isfinite(lval) or not all(math.isfinite(v) for v in values.values()):
                if bar is not None:
                    bar.close()
                raise NonFiniteLossError(
                    f"non-finite loss at iteration {iteration + 1}: {lval} (components {values}); "
                    f"training stopped, the last good checkpoint (iteration {last_saved}) is kept at {ckpt}. "
                    "Try a lower learning rate or gradient clipping."
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            iteration += 1
            dt = time.perf_counter() - tic
            if rank == 0 and (iteration % cfg.log_every == 0 or iteration == total):
                row = {"iteration": iteration, "epoch": epoch, "lr": lr, "loss": lval, **values}
                if getattr(model, "loss_name", None) == "alrp":
                    row["sb_weight"] = float(model.alrp_loss.sb_weight)
                row["sec_per_iter"] = dt
                history.append(row)
                new = not log_path.is_file()
                if writer_fields is None:
                    writer_fields = list(row)
                with open(log_path, "a", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=writer_fields, extrasaction="ignore")
                    if new:
                        w.writeheader()
                    w.writerow(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    {k: f"{v:.3f}" for k, v in {"loss": lval, **values}.items()}, refresh=False
                )
            if iteration % iters_per_epoch == 0:
                hook = getattr(model, "end_epoch", None)
                if hook is not None:
                    hook()
                if cfg.eval_every_epoch and val_ds is not None and iteration < total:
                    res = evaluate_model(model, val_ds, device)
                    if res is not None:
                        path = out_dir / f"metrics_epoch{epoch + 1:03d}.json"
                        path.write_text(json.dumps(res.stats, indent=1))
                    model.train()
            if cfg.ckpt_every and iteration % cfg.ckpt_every == 0:
                save()
                last_saved = iteration
    if bar is not None:
        bar.close()
    save()
    metrics: dict[str, float] = {}
    if rank == 0 and log_path.is_file():
        plot_log(log_path, out_dir / "loss.png")
    if cfg.eval_at_end and val_ds is not None:
        result = evaluate_model(model, val_ds, device, out_dir if rank == 0 else None)
        if result is not None:
            metrics = dict(result.stats)
    model.eval()
    return TrainResult(out_dir, iteration, history, metrics, model)
