"""The classification losses of the trainer: see :mod:`nclab.core.losses`.

They live in ``core`` so that the unconstrained-features models (``nclab.ufm``, a layer
below ``train``) use the same definitions; this module keeps the trainer's import path.
"""

from nclab.core.losses import SYNTAX, ClassificationLoss

__all__ = ["SYNTAX", "ClassificationLoss"]
