"""The numpy forward pass of an exported torch MLP (no torch in the server).

Weights come from an artifact's ``weights.npz``: ``mean``/``scale`` (feature
standardisation fitted at training time), then ``W0, b0, W1, b1, ...`` for
``Linear`` layers (``W`` stored as (in, out), i.e. torch's weight
transposed) with ReLU between them and a linear output. The output is the
model's target transform (log expected latency in ms for ``advanced-ml``).

Two forward passes over the same arrays: :meth:`NumpyMLP.forward` /
:meth:`NumpyMLP.predict` for a batch, and :meth:`NumpyMLP.predict_one` for one
row on the request path, where numpy's per-call overhead, not the arithmetic,
is the cost (a 19-64-64-1 net is ~5k multiply-adds).

A hidden layer whose weights are block-diagonal (an ensemble's, see
:func:`ensemble_arrays`: its members side by side) is kept as its blocks and
multiplied block by block, one stacked ``matmul``: the dense product spent two
thirds of a three-member layer's arithmetic on zeros.
"""

from __future__ import annotations

import struct
import threading

import numpy as np


class MLPError(ValueError):
    pass


class NumpyMLP:
    __slots__ = ("mean", "inv_scale", "layers", "n_in", "n_out", "_pack", "_input", "_steps", "_last", "_lock")

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
        layers[0] = (w0 * self.inv_scale[:, None], b0 - (mean * self.inv_scale) @ w0)
        # THE weights, one array per layer: W with b as one more input row ([W; b],
        # (in + 1, out)). The batched forward reads the W and b views of it; the
        # single-row one multiplies [h, 1] by the whole, so the bias costs no call.
        # A block-diagonal hidden layer is instead its blocks, (n, in/n, out/n), and its b.
        augmented = []
        for k, (w, b) in enumerate(layers):
            n = diagonal_blocks(w) if 0 < k < len(layers) - 1 else 1
            if n > 1:
                i, o = w.shape[0] // n, w.shape[1] // n
                augmented.append((np.stack([w[j * i:(j + 1) * i, j * o:(j + 1) * o] for j in range(n)]), b.copy()))
                continue
            a = np.empty((w.shape[0] + 1, w.shape[1]))
            a[:-1] = w
            a[-1] = b
            augmented.append(a)
        self.layers = tuple(a if isinstance(a, tuple) else (a[:-1], a[-1]) for a in augmented)
        self.n_in = mean.shape[0]
        self.n_out = layers[-1][0].shape[1]
        # single-row state: the input and each hidden layer's output as [h, 1]
        # buffers; per hidden layer (its [in, 1] buffer, [W; b] or (blocks, b), where
        # h goes in the next buffer, zeros for the ReLU); the last layer's [in, 1]
        # buffer and first output column (what predict returns)
        bufs = [np.ones(self._inputs(k) + 1) for k in range(len(self.layers))]
        self._pack = struct.Struct(f"{self.n_in}d").pack_into
        self._input = bufs[0]
        self._steps = tuple((bufs[k], augmented[k], bufs[k + 1][:-1], np.zeros(self._outputs(k)))
                            for k in range(len(augmented) - 1))
        self._last = (bufs[-1], augmented[-1][:, 0])  # a view (contiguous for one output)
        self._lock = threading.Lock()  # the buffers are shared: one single-row pass at a time

    def _inputs(self, k: int) -> int:
        w = self.layers[k][0]
        return w.shape[0] * w.shape[1] if w.ndim == 3 else w.shape[0]

    def _outputs(self, k: int) -> int:
        w = self.layers[k][0]
        return w.shape[0] * w.shape[2] if w.ndim == 3 else w.shape[1]

    def forward(self, x) -> np.ndarray:
        """(n, n_in) → (n, n_out); a 1-D row gives (n_out,)."""
        x = np.asarray(x, dtype=np.float64)
        h = x.reshape(-1, self.n_in)
        last = len(self.layers) - 1
        for k, (w, b) in enumerate(self.layers):
            if w.ndim == 3:  # blocks: (n, rows, in/n) @ (n, in/n, out/n), back to (rows, out)
                n, i, o = w.shape
                h = np.matmul(h.reshape(-1, n, i).transpose(1, 0, 2), w).transpose(1, 0, 2).reshape(-1, n * o)
            else:
                h = h @ w
            h += b
            if k < last:
                np.maximum(h, 0.0, out=h)
        return h[0] if x.ndim == 1 else h

    def predict(self, x) -> np.ndarray:
        """First output as a flat array (one value per row)."""
        out = self.forward(x)
        return out[..., 0]

    def predict_one(self, row) -> float:
        """``predict`` of one row (a sequence of ``n_in`` numbers) as a float, in
        preallocated buffers: the row is packed into the input buffer (no array
        built from a list), each layer is one ``np.dot`` into the next buffer
        (bias included) and one in-place ReLU. Equal to ``predict`` to rounding
        (the bias is added inside the dot product instead of after it)."""
        if not self._lock.acquire(False):  # another thread is in the buffers: the batched pass
            return float(self.forward(np.array([row], dtype=np.float64))[0, 0])
        try:
            self._pack(self._input, 0, *row)
            dot, maximum = np.dot, np.maximum
            for x, a, h, zeros in self._steps:
                if type(a) is tuple:  # blocks: (n, 1, in/n) @ (n, in/n, out/n) into h as (n, 1, out/n), then b
                    blocks, b = a
                    n, i, o = blocks.shape
                    np.matmul(x[:-1].reshape(n, 1, i), blocks, out=h.reshape(n, 1, o))
                    h += b
                else:
                    dot(x, a, out=h)
                maximum(h, zeros, out=h)
            x, a = self._last
            return float(dot(x, a))
        finally:
            self._lock.release()


def diagonal_blocks(w: np.ndarray) -> int:
    """The most equal square-grid blocks ``w`` splits into with nothing but zeros off
    the diagonal (1: dense). An ensemble's hidden layer has one per member."""
    rows, cols = w.shape
    for n in range(min(rows, cols), 1, -1):
        if rows % n or cols % n:
            continue
        i, o = rows // n, cols // n
        mask = np.kron(np.eye(n, dtype=bool), np.ones((i, o), dtype=bool))
        if not np.any(w[~mask]):
            return n
    return 1


def ensemble_arrays(members: list[dict]) -> dict:
    """Several nets of one shape, trained on the same rows (so the same
    standardisation), as one net whose output is their mean: the hidden layers
    side by side (block-diagonal weights), the output layer averaging. Served by
    :class:`NumpyMLP` like any other export, in one forward pass that multiplies
    the hidden layers block by block."""
    if not members:
        raise MLPError("an ensemble needs at least one member")
    first = members[0]
    for m in members[1:]:
        if not (np.array_equal(m["mean"], first["mean"]) and np.array_equal(m["scale"], first["scale"])):
            raise MLPError("ensemble members were standardised differently (not trained on the same rows)")
    depth = sum(1 for k in first if k.startswith("W"))
    if depth < 2:
        raise MLPError("an ensemble needs members with a hidden layer")
    out = {"mean": np.asarray(first["mean"], dtype=np.float64), "scale": np.asarray(first["scale"], dtype=np.float64)}
    out["W0"] = np.concatenate([m["W0"] for m in members], axis=1)
    out["b0"] = np.concatenate([m["b0"] for m in members])
    for k in range(1, depth - 1):
        blocks = [m[f"W{k}"] for m in members]
        w = np.zeros((sum(b.shape[0] for b in blocks), sum(b.shape[1] for b in blocks)))
        r = c = 0
        for b in blocks:
            w[r:r + b.shape[0], c:c + b.shape[1]] = b
            r, c = r + b.shape[0], c + b.shape[1]
        out[f"W{k}"] = w
        out[f"b{k}"] = np.concatenate([m[f"b{k}"] for m in members])
    last = depth - 1
    out[f"W{last}"] = np.concatenate([m[f"W{last}"] for m in members], axis=0) / len(members)
    out[f"b{last}"] = np.mean([m[f"b{last}"] for m in members], axis=0)
    return out
