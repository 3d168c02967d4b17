"""Ranking-based losses optimised with the identity update (thesis Ch 6-8).

- :func:`ap_loss`: AP Loss (Ch 6).
- :func:`alrp_loss`: aLRP Loss, classification and localisation in one ranking (Ch 7);
  :class:`ALRPLoss` adds the self-balance weight.
- :func:`rank_sort_loss`: Rank & Sort Loss (Ch 8); :class:`RankSortLoss` and :func:`value_balance`
  add value-based task balancing.
- :mod:`lrpbook.losses.identity_update`: the framework; :mod:`lrpbook.losses.reference`: loop versions.

Taught in: chapters "Identity update", "aLRP Loss" and "Rank & Sort Loss".
"""

from lrpbook.losses.functional import alrp_localisation_loss, alrp_loss, ap_loss, rank_sort_loss
from lrpbook.losses.identity_update import (
    IdentityUpdate,
    identity_update,
    identity_update_from_primary_terms,
)
from lrpbook.losses.modules import ALRPLoss, APLoss, RankSortLoss, value_balance

__all__ = [
    "ap_loss",
    "alrp_loss",
    "alrp_localisation_loss",
    "rank_sort_loss",
    "APLoss",
    "ALRPLoss",
    "RankSortLoss",
    "value_balance",
    "IdentityUpdate",
    "identity_update",
    "identity_update_from_primary_terms",
]
