"""The numpy forward pass of an exported torch MLP (no torch in the server).

Weights come from an artifact's ``weights.npz``: ``mean``/``scale`` (feature
standardisation fitted at training time), then ``W0, b0, W1, b1, ...`` for
``Linear`` layers (``W`` stored as (in, out), i.e. torch's weight
transposed) with ReLU between them and a linear output. The output is the
model's target transform (log expected latency in ms for ``advanced-ml``).
"""

from __future__ import annotations

import numpy as np


class MLPError(ValueError):
    pass


class NumpyMLP:
    __slots__ = ("mean", "inv_scale", "layers", "n_in", "n_out")

    def __init__(self, arrays: dict):
        try:
            mean = np.asarray(arrays["mean"], dtype=np.float64)
            scale = np.asarray(arrays["scale"], dtype=np.float64)
        except KeyError as exc:
            raise MLPError(f"weights lack {exc.args[0]!r}") from None
        layers = []
        k = 0
        while f"W{k}" in arrays:
            if f"b{k}" not in arrays:
                raise MLPError(f"weights lack b{k}")
            w = np.ascontiguousarray(arrays[f"W{k}"], dtype=np.float64)
            b = np.asarray(arrays[f"b{k}"], dtype=np.float64)
            if w.ndim != 2 or b.shape != (w.shape[1],):
                raise MLPError(f"layer {k}: bad shapes W{w.shape} b{b.shape}")
            if layers and layers[-1][0].shape[1] != w.shape[0]:
                raise MLPError(f"layer {k}: input {w.shape[0]} != previous output {layers[-1][0].shape[1]}")
            layers.append((w, b))
            k += 1
        if not layers:
            raise MLPError("weights have no layers (W0, b0, ...)")
        if mean.shape != (layers[0][0].shape[0],) or scale.shape != mean.shape:
            raise MLPError(f"scaling shapes {mean.shape}/{scale.shape} do not match {layers[0][0].shape[0]} inputs")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise MLPError("scaling has non-finite or non-positive values")
        for w, b in layers:
            if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
                raise MLPError("weights have non-finite values")
        self.mean = mean
        self.inv_scale = 1.0 / scale
        # fold the standardisation into the first layer: one op less per call
        w0, b0 = layers[0]
        layers[0] = (np.ascontiguousarray(w0 * self.inv_scale[:, None]), b0 - (mean * self.inv_scale) @ w0)
        self.layers = tuple(layers)
        self.n_in = mean.shape[0]
        self.n_out = layers[-1][0].shape[1]

    def forward(self, x) -> np.ndarray:
        """(n, n_in) → (n, n_out); a 1-D row gives (n_out,)."""
        h = np.asarray(x, dtype=np.float64)
        last = len(self.layers) - 1
        for k, (w, b) in enumerate(self.layers):
            h = h @ w
            h += b
            if k < last:
                np.maximum(h, 0.0, out=h)
        return h

    def predict(self, x) -> np.ndarray:
        """First output as a flat array (one value per row)."""
        out = self.forward(x)
        return out[..., 0]
