"""Module wrappers of the ranking-based losses, with the task-balancing rules of thesis Ch 7 and 8.

Taught in: chapters "aLRP Loss" and "Rank & Sort Loss".
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from lrpbook.losses.functional import _check_finite, _mode, alrp_loss, ap_loss, rank_sort_loss

__all__ = ["APLoss", "ALRPLoss", "RankSortLoss", "value_balance"]


def value_balance(main: Tensor, *others: Tensor) -> list[Tensor]:
    """Value-based task balancing of RS Loss (thesis Sec. 8.4.2): rescale each loss to ``main``'s value.

    .. math::

        \\lambda_t = \\frac{\\mathcal{L}_{RS}}{\\mathcal{L}_t}\\ (\\text{both detached}),\\qquad
        \\mathcal{L} = \\mathcal{L}_{RS} + \\sum_t \\lambda_t \\mathcal{L}_t .

    Args:
        main: the ranking-based loss (e.g. ``ranking + sorting``), a scalar tensor.
        others: the losses of the other heads (box, mask, ...), scalar tensors.

    Returns:
        The rescaled ``others``: each has the value of ``main`` and the gradient of ``lambda_t * L_t``.
        A loss whose value is 0 is returned unchanged (its weight would be undefined).

    Note:
        The thesis writes the value-based weight both as :math:`\\mathcal{L}_{box}/\\mathcal{L}_{RS}`
        (Sec. 8.4.2) and, for the other architectures, as :math:`\\mathcal{L}_{RS}/\\mathcal{L}_t`
        (Sec. 8.4.3); only the latter gives every head the value of the RS Loss, as the official code
        does, and it is the one used here.

    Example:
        >>> import torch
        >>> box = torch.tensor(0.2, requires_grad=True)
        >>> (scaled,) = value_balance(torch.tensor(0.8), box)
        >>> round(scaled.item(), 6), torch.autograd.grad(scaled, box)[0].item()
        (0.8, 4.0)

    Taught in: chapter "Rank & Sort Loss" (``notebooks/07_rank_sort_loss.md``).
    """
    out = []
    for loss in others:
        value = loss.detach()
        weight = torch.where(value != 0, main.detach() / torch.where(value != 0, value, 1.0), 1.0)
        out.append(loss * weight)
    return out


class APLoss(nn.Module):
    """:func:`~lrpbook.losses.ap_loss` as a module.

    Args:
        delta: smoothing of the step (default 1.0).
        check_values: value checks, as in :func:`~lrpbook.losses.ap_loss` (default None: eager on the
            CPU, asynchronous device-side asserts elsewhere).

    Taught in: chapter "Identity update" (``notebooks/05_identity_update.md``).
    """

    def __init__(self, delta: float = 1.0, check_values: bool | None = None) -> None:
        super().__init__()
        self.delta = delta
        self.check_values = check_values

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Return ``ap_loss(logits, targets, delta)`` (a scalar)."""
        return ap_loss(logits, targets, self.delta, check_values=self.check_values)


class ALRPLoss(nn.Module):
    r"""aLRP Loss with self-balance (thesis Sec. 7.3.2; App K.2 justifies it).

    The total loss is :math:`\mathcal{L}_{cls} + w_{SB} \mathcal{L}_{loc}`, where the self-balance
    weight :math:`w_{SB}` is the ratio :math:`\overline{\mathcal{L}_{aLRP}} / \overline{\mathcal{L}_{loc}}`
    of the averages over the previous epoch (:math:`\mathcal{L}_{aLRP} = \mathcal{L}_{cls} +
    \mathcal{L}_{loc}`), and 50 in the first epoch. Call :meth:`end_epoch` at the end of every epoch.

    The running sums of the epoch stay on the device of the losses (no host-device synchronisation per
    step). They are kept outside the module's buffers, so that ``DistributedDataParallel``
    (``broadcast_buffers=True``) does not overwrite every rank's sums with rank 0's at each forward;
    :meth:`end_epoch` all-reduces them over the ranks (when ``torch.distributed`` is initialised), so
    every rank computes the same weight, from the statistics of all ranks. The weight is a buffer and
    the running sums are saved in ``state_dict`` (as extra state), for an exact resume.

    Args:
        delta: smoothing of the step (default 1.0).
        sb_init: the weight of the first epoch (default 50, as in the thesis).
        check_values: value checks, as in :func:`~lrpbook.losses.alrp_loss`.

    Example:
        >>> import torch
        >>> crit = ALRPLoss()
        >>> s = torch.tensor([2.0, 0.5, 1.0, -3.0], requires_grad=True)
        >>> out = crit(s, torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([0.2, 0.4]))
        >>> out["loss"].backward()
        >>> w = crit.end_epoch()  # the ratio (cls + loc) / loc of this epoch's averages
        >>> round(w, 4) == round((out["cls"].item() + out["loc"].item()) / out["loc"].item(), 4)
        True

    Taught in: chapter "aLRP Loss" (``notebooks/06_alrp_loss.md``).
    """

    def __init__(
        self, delta: float = 1.0, sb_init: float = 50.0, check_values: bool | None = None
    ) -> None:
        super().__init__()
        self.delta = delta
        self.check_values = check_values
        self.register_buffer("sb_weight", torch.tensor(float(sb_init), dtype=torch.float64))
        self.epoch_sums = torch.zeros(3, dtype=torch.float64)  # cls, loc, count: not a buffer

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> ALRPLoss:
        super()._apply(fn, *args, **kwargs)
        moved = fn(self.epoch_sums)  # follow .to(device) / .cuda(), but stay float64
        self.epoch_sums = moved.to(torch.float64) if moved.is_floating_point() else self.epoch_sums
        return self

    def get_extra_state(self) -> Tensor:
        """The running sums of the current epoch (cls, loc, count; saved in ``state_dict``)."""
        return self.epoch_sums.detach().clone()

    def set_extra_state(self, state: Tensor | dict) -> None:
        """Restore the running sums saved by :meth:`get_extra_state`."""
        sums = state["epoch_sums"] if isinstance(state, dict) else state
        self.epoch_sums = sums.to(self.sb_weight.device, torch.float64).clone()

    def _load_from_state_dict(
        self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        legacy = state_dict.pop(prefix + "epoch_sums", None)  # saved as a buffer before
        if legacy is not None and prefix + "_extra_state" not in state_dict:
            state_dict[prefix + "_extra_state"] = legacy
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, logits: Tensor, targets: Tensor, loc_errors: Tensor) -> dict[str, Tensor]:
        """Return ``{"loss", "cls", "loc", "sb_weight"}``; ``loss = cls + sb_weight * loc``."""
        cls, loc = alrp_loss(
            logits, targets, loc_errors, self.delta, check_values=self.check_values
        )
        if self.training:
            if self.epoch_sums.device != cls.device:
                self.epoch_sums = self.epoch_sums.to(cls.device)
            one = torch.ones((), dtype=torch.float64, device=cls.device)
            self.epoch_sums += torch.stack([cls.detach().double(), loc.detach().double(), one])
        weight = self.sb_weight.to(loc.dtype)
        return {
            "loss": cls + weight * loc,
            "cls": cls,
            "loc": loc,
            "sb_weight": self.sb_weight.clone(),
        }

    def end_epoch(self) -> float:
        """Update the self-balance weight from this epoch's averages and reset them; returns the weight.

        Under ``torch.distributed`` the sums are all-reduced first (a collective: call it on every
        rank), so every rank gets the weight of the whole epoch's data.
        """
        sums = self.epoch_sums.clone()
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        cls_sum, loc_sum, count = sums.tolist()  # one synchronisation per epoch
        if count > 0 and loc_sum > 0:
            self.sb_weight.fill_((cls_sum + loc_sum) / loc_sum)
        self.epoch_sums.zero_()
        return float(self.sb_weight)


class RankSortLoss(nn.Module):
    """Rank & Sort Loss as a module, with optional value-based balancing of other heads.

    Args:
        delta: smoothing of the step (default 0.5).
        check_values: value checks, as in :func:`~lrpbook.losses.rank_sort_loss`; they also cover the
            other losses (each must be a finite scalar).

    ``forward(logits, targets, *other_losses)`` returns ``{"loss", "ranking", "sorting", "others"}``
    where ``loss = ranking + sorting + sum(value_balance(ranking + sorting, *other_losses))``
    (value-based task balancing, thesis Sec. 8.4.2).

    Raises:
        ValueError: as :func:`~lrpbook.losses.rank_sort_loss`, and when an other loss is not a
            finite scalar (naming its position).

    Taught in: chapter "Rank & Sort Loss" (``notebooks/07_rank_sort_loss.md``).
    """

    def __init__(self, delta: float = 0.5, check_values: bool | None = None) -> None:
        super().__init__()
        self.delta = delta
        self.check_values = check_values

    def forward(self, logits: Tensor, targets: Tensor, *other_losses: Tensor) -> dict:
        """Return ``{"loss", "ranking", "sorting", "others"}`` (see the class docstring)."""
        mode = _mode(
            self.check_values, logits.device if isinstance(logits, Tensor) else torch.device("cpu")
        )
        for k, other in enumerate(other_losses):
            if not isinstance(other, Tensor) or other.numel() != 1:
                shape = tuple(other.shape) if isinstance(other, Tensor) else type(other).__name__
                raise ValueError(
                    f"other loss {k} (`other_losses[{k}]`) must be a scalar tensor; got {shape}"
                )
            _check_finite(other.detach().reshape(1), f"other_losses[{k}]", (), mode)
        ranking, sorting = rank_sort_loss(
            logits, targets, self.delta, check_values=self.check_values
        )
        main = ranking + sorting
        others = value_balance(main, *other_losses)
        total = main + sum(others) if others else main
        return {"loss": total, "ranking": ranking, "sorting": sorting, "others": others}
