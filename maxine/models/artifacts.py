"""Versioned model artifacts, validation, and a hot-reloading loader.

Layout::

    models/<model>/<version>/weights.npz     numpy export the server loads
    models/<model>/<version>/model.pt        torch state_dict (for retraining / inspection)
    models/<model>/<version>/metadata.json   features, scaling, data range, rows, metrics,
                                             library versions, git commit, sha256 of weights.npz
    models/<model>/PROMOTED                  the version the server serves (one line)

Three models use this layout (:data:`INPUTS`): ``advanced-ml`` (latency, one
output), ``anomaly`` (an autoencoder: as many outputs as inputs) and
``forecast`` (a node's latency a horizon ahead, from its row now and its row
:data:`~maxine.models.features.LAG_S` ago; one output).

Without a ``PROMOTED`` file the newest version (by name) is served. An
artifact is refused — with a logged reason, keeping the previous model — when
its metadata is unreadable, its features differ from what the server builds
for that model (:data:`INPUTS`), the weights' checksum or shapes are wrong, or
a probe forward pass is not finite. Swapping the served model is a
single reference assignment, so a request in flight never sees half a model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .features import FEATURE_VERSION, FEATURES, LAGGED_FEATURES, RELATIVE_FEATURES
from .mlp import MLPError, NumpyMLP

log = logging.getLogger("maxine.models")

WEIGHTS = "weights.npz"
TORCH = "model.pt"
METADATA = "metadata.json"
PROMOTED = "PROMOTED"


# model name -> (the input features the server builds for it, outputs; None = as many as inputs)
INPUTS: dict[str, tuple[tuple[str, ...], int | None]] = {
    "advanced-ml": (RELATIVE_FEATURES, 1),
    "anomaly": (FEATURES, None),
    "forecast": (LAGGED_FEATURES, 1),
}


def inputs_of(model: str) -> tuple[str, ...]:
    return INPUTS.get(model, (FEATURES, 1))[0]


class ArtifactError(Exception):
    """Why an artifact cannot be served."""


def default_root() -> Path:
    """``$MAXINE_MODELS_DIR``, else the ``models/`` directory of this checkout."""
    env = os.environ.get("MAXINE_MODELS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "models"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def _git_commit() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parents[2],
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def lib_versions() -> dict:
    import platform

    versions = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        import torch

        versions["torch"] = torch.__version__
    except ImportError:
        pass
    return versions


def new_version() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


def write_artifact(root, model: str, version: str, arrays: dict, metadata: dict, state_dict=None) -> Path:
    """Write ``root/model/version/`` atomically (a temp dir renamed into place)."""
    root = Path(root)
    final = root / model / version
    if final.exists():
        raise ArtifactError(f"{final} already exists")
    tmp = root / model / f".{version}.tmp-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=False)
    np.savez(tmp / WEIGHTS, **{k: np.asarray(v, dtype=np.float64) for k, v in arrays.items()})
    if state_dict is not None:
        import torch

        torch.save(state_dict, tmp / TORCH)
    meta = dict(metadata)
    meta.update({
        "model": model, "version": version, "feature_version": FEATURE_VERSION,
        "features": list(meta.get("features", inputs_of(model))),
        "trained_at": meta.get("trained_at", time.time()),
        "libraries": meta.get("libraries", lib_versions()),
        "git_commit": meta.get("git_commit", _git_commit()),
        "weights_sha256": _sha256(tmp / WEIGHTS),
    })
    (tmp / METADATA).write_text(json.dumps(meta, indent=1, default=float) + "\n")
    os.replace(tmp, final)
    return final


@dataclass
class LoadedModel:
    name: str
    version: str
    path: str
    mlp: NumpyMLP
    metadata: dict
    loaded_at: float = field(default_factory=time.time)

    @property
    def trained_at(self) -> float | None:
        return self.metadata.get("trained_at")


def load_artifact(path, model: str | None = None) -> LoadedModel:
    """Load and validate one version directory of ``model`` (default: the
    directory's parent name); :class:`ArtifactError` says why not."""
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"{path}: no such artifact directory")
    try:
        meta = json.loads((path / METADATA).read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable {METADATA} ({exc})") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path}: {METADATA} is not an object")
    model = model or path.parent.name
    features, outputs = INPUTS.get(model, (FEATURES, 1))
    if list(meta.get("features", [])) != list(features):
        raise ArtifactError(f"{path}: features do not match the server's "
                            f"(artifact {len(meta.get('features', []))}, server {len(features)} "
                            f"feature version {FEATURE_VERSION})")
    weights = path / WEIGHTS
    try:
        digest = _sha256(weights)
    except OSError as exc:
        raise ArtifactError(f"{path}: unreadable {WEIGHTS} ({exc})") from None
    if meta.get("weights_sha256") and meta["weights_sha256"] != digest:
        raise ArtifactError(f"{path}: {WEIGHTS} checksum mismatch (corrupt or modified)")
    try:
        with np.load(weights, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        mlp = NumpyMLP(arrays)
    except (OSError, ValueError, MLPError, EOFError) as exc:
        raise ArtifactError(f"{path}: bad weights ({exc})") from None
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise ArtifactError(f"{path}: bad weights ({type(exc).__name__}: {exc})") from None
    if mlp.n_in != len(features):
        raise ArtifactError(f"{path}: model takes {mlp.n_in} inputs, server has {len(features)} features")
    if mlp.n_out != (outputs or mlp.n_in):
        raise ArtifactError(f"{path}: model has {mlp.n_out} outputs, {model} needs {outputs or mlp.n_in}")
    probe = mlp.predict(np.zeros((1, mlp.n_in)) + mlp.mean)
    if not np.all(np.isfinite(probe)):
        raise ArtifactError(f"{path}: probe forward pass is not finite")
    return LoadedModel(meta.get("model", model), meta.get("version", path.name), str(path), mlp, meta)


def versions(root, model: str) -> list[str]:
    d = Path(root) / model
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))


def promoted(root, model: str) -> str | None:
    """The promoted version, else the newest version, else None."""
    f = Path(root) / model / PROMOTED
    try:
        v = f.read_text().strip()
        if v:
            return v
    except OSError:
        pass
    vs = versions(root, model)
    return vs[-1] if vs else None


def promote(root, model: str, version: str) -> LoadedModel:
    """Validate ``version`` and make it the served one (atomic file replace)."""
    loaded = load_artifact(Path(root) / model / version, model)
    f = Path(root) / model / PROMOTED
    tmp = f.with_name(f".{PROMOTED}.tmp-{os.getpid()}")
    tmp.write_text(version + "\n")
    os.replace(tmp, f)
    return loaded


class ModelStore:
    """The served model of one name, reloaded on demand or when the promoted version changes.

    ``current`` is read once per decision; ``reload()`` never raises — a bad
    artifact is refused, logged, remembered in ``last_error``, and the previous
    model keeps serving."""

    def __init__(self, root=None, model: str = "advanced-ml"):
        self.root = Path(root) if root is not None else default_root()
        self.model = model
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.last_check = 0.0
        self.reloads = 0
        self.refusals = 0
        self._seen: tuple | None = None
        self._lock = threading.Lock()

    def _signature(self):
        f = self.root / self.model / PROMOTED
        try:
            st = f.stat()
            p = (st.st_mtime_ns, st.st_size)
        except OSError:
            p = None
        version = promoted(self.root, self.model)
        w = self.root / self.model / version / WEIGHTS if version else None
        try:
            ws = w.stat().st_mtime_ns if w else None
        except OSError:
            ws = None
        return (p, version, ws)

    def reload(self, force: bool = False) -> dict:
        """Load the promoted version if it changed (or ``force``). Returns a status dict."""
        with self._lock:
            self.last_check = time.time()
            try:
                sig = self._signature()
            except OSError as exc:
                sig = None
                self.last_error = f"cannot read {self.root}: {exc}"
                return self.status()
            if not force and sig == self._seen:
                return self.status()
            self._seen = sig
            version = sig[1]
            if version is None:
                if self.current is None:
                    self.last_error = f"no {self.model} model under {self.root}"
                return self.status()
            try:
                loaded = load_artifact(self.root / self.model / version, self.model)
            except ArtifactError as exc:
                self.refusals += 1
                self.last_error = str(exc)
                log.warning("model %s version %s refused, keeping %s: %s", self.model, version,
                            self.current.version if self.current else "none", exc)
                return self.status()
            self.current = loaded  # the swap: one reference assignment
            self.reloads += 1
            self.last_error = None
            log.info("model %s version %s loaded from %s", self.model, loaded.version, loaded.path)
            return self.status()

    def ensure_loaded(self) -> LoadedModel | None:
        if self.current is None and self._seen is None:
            self.reload()
        return self.current

    def status(self) -> dict:
        cur = self.current
        return {
            "name": self.model,
            "kind": f"{cur.metadata.get('kind', 'mlp') if cur else 'mlp'} (torch-trained, numpy-served)",
            "version": cur.version if cur else None,
            "path": cur.path if cur else None,
            "trainedAt": cur.trained_at if cur else None,
            "trainingRows": (cur.metadata.get("data") or {}).get("rows") if cur else None,
            "loadedAt": cur.loaded_at if cur else None,
            "freshnessSeconds": (time.time() - cur.trained_at) if cur and cur.trained_at else None,
            "lastError": self.last_error, "reloads": self.reloads, "refusals": self.refusals,
            "root": str(self.root),
        }


_default_stores: dict[tuple, ModelStore] = {}


def default_store(model: str = "advanced-ml") -> ModelStore:
    """One store per (models root, model) per process, loaded lazily."""
    key = (str(default_root()), model)
    store = _default_stores.get(key)
    if store is None:
        store = _default_stores[key] = ModelStore(default_root(), model)
    return store
