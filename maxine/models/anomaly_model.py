"""The learned anomaly signal: a torch-trained autoencoder served in numpy.

The ``anomaly`` artifact (``models/anomaly/<version>/``) is an MLP that maps
a node's feature row (:data:`maxine.models.features.FEATURES`, THE row the
server builds) through a narrow bottleneck back to the standardised row. A
row unlike the healthy rows it was trained on reconstructs badly; its score is
the mean squared reconstruction error (in standard deviations²) divided by
the threshold in the artifact's metadata (a high quantile of the training
rows' error), so a score above 1 is anomalous.

The hub scores the nodes it visits, in one batched forward per round, in its
worker thread; nothing here runs on ``/discover``. numpy only.
"""

from __future__ import annotations

import numpy as np

MODEL = "anomaly"


def reconstruction_error(mlp, x) -> np.ndarray:
    """Mean squared error per row between the standardised row and its reconstruction."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    target = (x - mlp.mean) * mlp.inv_scale
    return np.mean((mlp.forward(x) - target) ** 2, axis=1)


def threshold_of(loaded) -> float:
    return float(loaded.metadata["threshold"])


def score_many(loaded, rows) -> np.ndarray:
    """Reconstruction error / threshold per row (> 1: anomalous)."""
    return reconstruction_error(loaded.mlp, rows) / threshold_of(loaded)
