r"""The identity update: optimising ranking-based losses through their primary terms (thesis Ch 6).

A ranking-based loss (thesis Eq. (6.17)) is :math:`\mathcal{L} = \frac{1}{Z}\sum_i (\ell(i) - \ell^*(i))`,
the error :math:`\ell(i)` of each example against its target :math:`\ell^*(i)`. The *primary terms*
(thesis Eq. (6.18)) distribute that error over the examples :math:`j` that cause it,

.. math::

    L_{ij} = \big(\ell(i) - \ell^*(i)\big)\, p(j \mid i),
    \qquad \mathcal{L} = \frac{1}{Z} \sum_{i} \sum_{j} L_{ij}
    \quad \text{(thesis Theorem 1, Eq. (6.22))},

where :math:`p(j \mid i)` is a probability mass function. The loss is piecewise constant in the
logits, so backpropagation alone gives zero gradients. The primary terms have the target
:math:`L^*_{ij} = 0`, so the error-driven update of the difference transform
:math:`x_{ij} = \hat s_j - \hat s_i` is the primary term itself,
:math:`\Delta x_{ij} = -(L^*_{ij} - L_{ij}) = L_{ij}` (thesis Eq. (6.23)); chained through
:math:`\partial x_{ij} / \partial \hat s_i = -1` and :math:`\partial x_{ij} / \partial \hat s_j = 1`
it gives the *identity update* (thesis Eq. (6.24), Algorithm 3):

.. math::

    \frac{\partial \mathcal{L}}{\partial \hat s_i}
    = \frac{1}{Z}\Big(\sum_j L_{ji} - \sum_j L_{ij}\Big).

Since every :math:`L_{ij}` is added to one example and subtracted from another, the update sums to
zero: positives and negatives receive updates of equal total (thesis Theorem 2, Eq. (6.25), proved in
Sec. 6.2). When, as for AP, aLRP and RS Loss, the errors are computed only on positives, the stricter
Eq. (6.37) holds: the sums of the absolute updates of positives and of negatives are equal.

This module gives the framework in two forms: :func:`identity_update_from_primary_terms` for a dense
matrix of primary terms (clear, O(P·M) memory; used for teaching and tests), and :class:`IdentityUpdate`,
the autograd Function that attaches a precomputed update to a loss value (the losses of
:mod:`lrpbook.losses` use a private variant of it that stores the sorting update on the positives only).

Taught in: chapter "Identity update".
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["IdentityUpdate", "identity_update", "identity_update_from_primary_terms"]


class IdentityUpdate(torch.autograd.Function):
    """Attach error-driven updates to loss values.

    ``forward(logits, values, updates)`` returns ``values`` (a tensor of K loss values); ``backward``
    returns ``sum_k grad_output[k] * updates[k]`` as the gradient w.r.t. ``logits``. ``updates`` has
    shape ``(K, *logits.shape)``: one update vector per output, so the backward of any weighted sum of
    the outputs is exact (the official RS Loss scales all of its update by the first output's upstream
    gradient only).

    Taught in: chapter "Identity update" (``notebooks/05_identity_update.md``).
    """

    @staticmethod
    def forward(ctx: Any, logits: Tensor, values: Tensor, updates: Tensor) -> Tensor:
        """Return a copy of ``values`` and keep ``updates`` for the backward pass."""
        ctx.save_for_backward(updates)
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, None, None]:
        """The identity update: ``sum_k grad_output[k] * updates[k]`` w.r.t. ``logits``."""
        (updates,) = ctx.saved_tensors
        shape = (-1,) + (1,) * (updates.dim() - 1)
        grad = (grad_output.reshape(shape).to(updates.dtype) * updates).sum(0)
        return grad, None, None


def identity_update(logits: Tensor, values: Tensor, updates: Tensor) -> Tensor:
    """Return ``values`` (shape ``(K,)``) in the autograd graph of ``logits`` with the given updates.

    Args:
        logits (Tensor[...]): the tensor the updates are gradients for.
        values (Tensor[K]): the loss values (constants).
        updates (Tensor[K, ...]): ``updates[k]`` is the gradient of ``values[k]`` w.r.t. ``logits``.

    Returns:
        Tensor[K]: equal to ``values``; its backward applies the identity update.

    Taught in: chapter "Identity update" (``notebooks/05_identity_update.md``).
    """
    return IdentityUpdate.apply(logits, values.detach(), updates.detach())


def identity_update_from_primary_terms(
    primary: Tensor, pos_index: Tensor, z: float
) -> tuple[Tensor, Tensor]:
    r"""Loss value and identity-update gradient from a dense matrix of primary terms (thesis Eq. (6.24)).

    .. math::

        \mathcal{L} = \frac{1}{Z}\sum_{i}\sum_{j} L_{ij},\qquad
        \frac{\partial \mathcal{L}}{\partial \hat s_i} = \frac{1}{Z}\Big(\sum_j L_{ji} - \sum_j L_{ij}\Big)

    (thesis Theorem 1 / Eq. (6.22) and the identity update, Eq. (6.24), with
    :math:`\Delta x_{ij} = L_{ij}`, Eq. (6.23); primary terms as in Eq. (6.18)).

    Args:
        primary (Tensor[P, M], float): ``primary[p, j] = L_ij`` for the p-th positive ``i`` and every
            example ``j`` of the flattened input (``M`` examples; zero where the pair does not interact).
        pos_index (Tensor[P], int64): the index in ``0..M-1`` of each positive.
        z: the normaliser ``Z`` (the number of positives for the losses of this package).

    Returns:
        ``(loss, grad)``: ``loss = sum(L_ij) / Z`` and ``grad (Tensor[M])`` with
        ``grad[i] = (sum_j L_ji - sum_j L_ij) / Z``.

    Raises:
        ValueError: on inconsistent shapes or a non-positive ``z``.

    Example:
        >>> import torch
        >>> L = torch.tensor([[0.0, 0.25, 0.5]])  # one positive (index 0), two negatives
        >>> loss, grad = identity_update_from_primary_terms(L, torch.tensor([0]), 1.0)
        >>> loss.item(), grad.tolist()
        (0.75, [-0.75, 0.25, 0.5])

    Taught in: chapter "Identity update" (``notebooks/05_identity_update.md``).
    """
    if primary.dim() != 2 or pos_index.shape != (primary.shape[0],):
        raise ValueError(
            f"`primary` must be (P, M) and `pos_index` (P,); got {tuple(primary.shape)} and {tuple(pos_index.shape)}"
        )
    if not z > 0:
        raise ValueError(f"`z` must be positive; got {z}")
    grad = primary.sum(0) / z  # sum_i L_ij: what j receives
    grad = grad.index_add(0, pos_index, -primary.sum(1) / z)  # what i gives away
    return primary.sum() / z, grad
