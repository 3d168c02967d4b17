"""Module wrappers of the ranking-based losses, with the task-balancing rules of thesis Ch 7 and 8.

Taught in: chapters "aLRP Loss" and "Rank & Sort Loss".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lrpbook.losses.functional import alrp_loss, ap_loss, rank_sort_loss

__all__ = ["APLoss", "ALRPLoss", "RankSortLoss", "value_balance"]


def value_balance(main: Tensor, *others: Tensor) -> list[Tensor]:
    """Value-based task balancing of RS Loss (thesis Sec. 8.3.3): rescale each loss to ``main``'s value.

    .. math::

        \\lambda_t = \\frac{\\mathcal{L}_{RS}}{\\mathcal{L}_t}\\ (\\text{both detached}),\\qquad
        \\mathcal{L} = \\mathcal{L}_{RS} + \\sum_t \\lambda_t \\mathcal{L}_t .

    Args:
        main: the ranking-based loss (e.g. ``ranking + sorting``), a scalar tensor.
        others: the losses of the other heads (box, mask, ...), scalar tensors.

    Returns:
        The rescaled ``others``: each has the value of ``main`` and the gradient of ``lambda_t * L_t``.
        A loss whose value is 0 is returned unchanged (its weight would be undefined).

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
    """:func:`~lrpbook.losses.ap_loss` as a module. Args: ``delta`` (default 1.0).

    Taught in: chapter "Identity update" (``notebooks/05_identity_update.md``).
    """

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Return ``ap_loss(logits, targets, delta)`` (a scalar)."""
        return ap_loss(logits, targets, self.delta)


class ALRPLoss(nn.Module):
    """aLRP Loss with self-balance (thesis Sec. 7.3.2 and App K.3).

    The total loss is :math:`\\mathcal{L}_{cls} + w_{SB} \\mathcal{L}_{loc}`, where the self-balance
    weight :math:`w_{SB}` is the ratio :math:`\\overline{\\mathcal{L}_{aLRP}} / \\overline{\\mathcal{L}_{loc}}`
    of the averages over the previous epoch (:math:`\\mathcal{L}_{aLRP} = \\mathcal{L}_{cls} +
    \\mathcal{L}_{loc}`), and 50 in the first epoch. Call :meth:`end_epoch` at the end of every epoch.
    The weight and the running sums are buffers, so ``state_dict`` saves them for an exact resume.

    Args:
        delta: smoothing of the step (default 1.0).
        sb_init: the weight of the first epoch (default 50, as in the thesis).

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

    def __init__(self, delta: float = 1.0, sb_init: float = 50.0) -> None:
        super().__init__()
        self.delta = delta
        self.register_buffer("sb_weight", torch.tensor(float(sb_init), dtype=torch.float64))
        self.register_buffer("epoch_sums", torch.zeros(3, dtype=torch.float64))  # cls, loc, count

    def forward(self, logits: Tensor, targets: Tensor, loc_errors: Tensor) -> dict[str, Tensor]:
        """Return ``{"loss", "cls", "loc", "sb_weight"}``; ``loss = cls + sb_weight * loc``."""
        cls, loc = alrp_loss(logits, targets, loc_errors, self.delta)
        if self.training:
            self.epoch_sums += torch.stack(
                [
                    cls.detach().double().cpu(),
                    loc.detach().double().cpu(),
                    torch.ones((), dtype=torch.float64),
                ]
            ).to(self.epoch_sums.device)
        weight = self.sb_weight.to(loc.dtype)
        return {
            "loss": cls + weight * loc,
            "cls": cls,
            "loc": loc,
            "sb_weight": self.sb_weight.clone(),
        }

    def end_epoch(self) -> float:
        """Update the self-balance weight from this epoch's averages and reset them; returns the weight."""
        cls_sum, loc_sum, count = self.epoch_sums.tolist()
        if count > 0 and loc_sum > 0:
            self.sb_weight.fill_((cls_sum + loc_sum) / loc_sum)
        self.epoch_sums.zero_()
        return float(self.sb_weight)


class RankSortLoss(nn.Module):
    """Rank & Sort Loss as a module, with optional value-based balancing of other heads.

    Args:
        delta: smoothing of the step (default 0.5).

    ``forward(logits, targets, *other_losses)`` returns ``{"loss", "ranking", "sorting", "others"}``
    where ``loss = ranking + sorting + sum(value_balance(ranking + sorting, *other_losses))``.

    Taught in: chapter "Rank & Sort Loss" (``notebooks/07_rank_sort_loss.md``).
    """

    def __init__(self, delta: float = 0.5) -> None:
        super().__init__()
        self.delta = delta

    def forward(self, logits: Tensor, targets: Tensor, *other_losses: Tensor) -> dict:
        """Return ``{"loss", "ranking", "sorting", "others"}`` (see the class docstring)."""
        ranking, sorting = rank_sort_loss(logits, targets, self.delta)
        main = ranking + sorting
        others = value_balance(main, *other_losses)
        total = main + sum(others) if others else main
        return {"loss": total, "ranking": ranking, "sorting": sorting, "others": others}
