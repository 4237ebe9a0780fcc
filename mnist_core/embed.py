"""2-D and 3-D maps of MNIST: PCA, t-SNE (openTSNE) and UMAP, of raw pixels or a network's features.

t-SNE uses openTSNE rather than scikit-learn's: its FFT-accelerated gradients scale linearly in the
number of points (scikit-learn's Barnes-Hut is O(n log n) with a much larger constant and single
threaded), which is what makes all 70,000 digits feasible on a laptop CPU.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import safetensors.numpy
import torch
import torch.nn as nn

from .checkpoints import SHIPPED_DIR, shared_runs_dir
from .data import Mnist
from .fields import check as check_fields
from .fields import setting
from .files import atomic_write
from .reporter import NULL_REPORTER, Reporter

METHODS = ("pca", "tsne", "umap")
MIN_POINTS, MAX_POINTS = 1_000, 70_000
PCA_BEFORE = 50  # t-SNE and UMAP run on the first 50 principal components: less noise, much faster
Progress = Callable[[float, str], None]  # (fraction done, what is happening)
log = logging.getLogger(__name__)


class EmbeddingError(ValueError):
    """Parameters that cannot work for this subset, said in the user's terms."""


class EmbedStopped(Exception):
    """A map whose computation was asked to stop; raised at its next progress report (nothing is saved)."""


@dataclass(frozen=True)
class EmbedSpec:
    # Each setting's help, range and choices sit next to it (mnist_core.fields): the `embed` CLI flags, the
    # Embeddings page's widgets and validate() are generated from them.
    method: str = setting(
        "umap",
        "PCA: linear, global, instant. t-SNE: keeps neighbourhoods, distances between "
        "clusters mean little. UMAP: neighbourhoods and more of the global shape.",
        choices=METHODS,
    )
    points: int = setting(
        10_000,
        "Drawn from all 70,000 (training + test) in class proportions.",
        label="subset size",
        title="images (stratified by class)",
        min=MIN_POINTS,
        max=MAX_POINTS,
        step=1000,
    )
    seed: int = setting(0, "Fixes the subset and the layout.", min=0, max=2**32 - 1)
    dataset: str = setting(
        "mnist",
        "The data set mapped: mnist, fashion-mnist or own:NAME for one you imported.",
        label="data set",
        ui=False,
    )
    dims: int = setting(2, "2, or 3 for PCA.", label="dimensions", choices=(2, 3), applies={"method": ("pca",)})
    source: str = setting(
        "pixels",
        "Raw pixels (pixels), or the features a checkpoint (its name) computes just "
        "before its last layer: how a trained network separates digits that overlap "
        "in pixel space.",
        label="input",
    )
    perplexity: float = setting(
        30.0,
        "t-SNE: about how many neighbours each point keeps close. 5-50 is usual; larger shows more global structure.",
        min=2,
        max=500,
        applies={"method": ("tsne",)},
    )
    iterations: int = setting(
        500,
        "t-SNE: optimization steps after the 250 early-exaggeration steps.",
        label="t-SNE iterations",
        title="iterations",
        min=250,
        max=5000,
        step=250,
        applies={"method": ("tsne",)},
    )
    n_neighbors: int = setting(
        15,
        "UMAP: size of the neighbourhood it preserves: small favours local detail, large the global shape.",
        label="n_neighbors",
        title="neighbours (n_neighbors)",
        min=2,
        max=200,
        applies={"method": ("umap",)},
    )
    min_dist: float = setting(
        0.1,
        "UMAP: how tightly points may pack: 0 gives tight clumps, 1 an even spread.",
        label="min_dist",
        title="minimum distance (min_dist)",
        min=0,
        max=1,
        step=0.05,
        applies={"method": ("umap",)},
    )

    def validate(self) -> None:
        check_fields(self, EmbeddingError)  # each field's type, choices and range, from its metadata
        if self.dims == 3 and self.method != "pca":
            raise EmbeddingError("3-D maps are offered for PCA only")
        # Each point's neighbourhood is 3 x perplexity points (openTSNE's rule): it must fit in the subset.
        if self.perplexity > (self.points - 1) / 3:
            raise EmbeddingError(
                f"perplexity {self.perplexity:g} is too large for {self.points:,} points: it must be at most "
                f"(points - 1) / 3 = {(self.points - 1) / 3:.0f}; typical values are 5-50"
            )

    def relevant(self) -> dict:
        """The settings that change this method's result (the cache key ignores the others)."""
        keep = {"method", "points", "seed", "source", *METHOD_SETTINGS[self.method]}
        if self.dataset != "mnist":  # MNIST's maps keep the keys they had before there were other data sets
            keep.add("dataset")
        return {k: v for k, v in asdict(self).items() if k in keep}


# The settings only one method reads (their applies= metadata); the cache key and the Embeddings page leave out
# the other methods'.
METHOD_SETTINGS = {
    method: tuple(f.name for f in fields(EmbedSpec) if method in f.metadata.get("applies", {}).get("method", ()))
    for method in METHODS
}


@dataclass
class Embedding:
    spec: EmbedSpec
    coords: np.ndarray  # (points, dims) float32
    indices: np.ndarray  # (points,) into the 70,000 digits: 0-59,999 training, 60,000-69,999 test
    labels: np.ndarray  # (points,)
    seconds: float = 0.0
    explained_variance: np.ndarray | None = None  # PCA: the share of variance of each of the first 50 components
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------- inputs


def all_labels(mnist: Mnist) -> np.ndarray:
    return torch.cat([mnist.train_labels, mnist.test_labels]).numpy()


def stratified_subset(labels: np.ndarray, points: int, seed: int) -> np.ndarray:
    """Sorted indices of `points` digits with the classes in the data set's proportions, drawn with a seed."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / counts.sum() * points).astype(int)
    for i in np.argsort(-(counts / counts.sum() * points - quota))[: points - quota.sum()]:
        quota[i] += 1  # hand the rounding remainder to the classes that lost the most to it
    picked = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def digits(mnist: Mnist, indices: np.ndarray) -> torch.Tensor:
    """uint8 images (n, 28, 28) by index into the 70,000 (training first, then test), without copying all."""
    indices = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    n_train = len(mnist.train_labels)
    out = torch.empty((len(indices), 28, 28), dtype=torch.uint8)
    is_train = indices < n_train
    out[is_train] = mnist.train_images[indices[is_train]]
    out[~is_train] = mnist.test_images[indices[~is_train] - n_train]
    return out


def pixel_inputs(mnist: Mnist, indices: np.ndarray) -> np.ndarray:
    return digits(mnist, indices).reshape(len(indices), -1).float().div_(255.0).numpy()


def last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise EmbeddingError("this model has no final linear layer to take features from")
    return linears[-1]


@torch.no_grad()
def feature_inputs(
    model: nn.Module,
    mnist: Mnist,
    indices: np.ndarray,
    batch_size: int = 1000,
    progress: Progress | None = None,
    share: float = 1.0,
) -> np.ndarray:
    """What the classifier's last linear layer receives: the network's learned representation.

    progress(fraction, stage) after each batch, fractions running up to `share` (the rest of the map's work
    comes after); a caller can stop the computation there by raising.
    """
    images = digits(mnist, indices)  # uint8, standardized chunk by chunk: a float copy of 70,000 is 220 MB
    model = copy.deepcopy(model)  # the hook goes on a private copy: the app shares one model between sessions
    captured: list[torch.Tensor] = []
    hook = last_linear(model).register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach().cpu()))
    device = next(model.parameters()).device
    try:
        model.eval()
        for i, chunk in enumerate(images.split(batch_size)):
            if progress:
                progress(
                    share * i * batch_size / len(images),
                    f"features of digits {i * batch_size:,} to {min((i + 1) * batch_size, len(images)):,} "
                    f"of {len(images):,}",
                )
            model(mnist.normalize(chunk).to(device))
    finally:
        hook.remove()
    return torch.cat(captured).float().numpy()


# ---------------------------------------------------------------- methods


def pca(x: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """(projection onto the first `components` axes, variance share of each), by eigendecomposition.

    Signs are fixed (largest loading positive) so the same data always gives the same picture.
    """
    xt = torch.as_tensor(x, dtype=torch.float32)
    xt = xt - xt.mean(0)
    # The big product in float32 (fast), the small eigenproblem in float64 (accurate).
    cov = (xt.T @ xt).double() / max(len(xt) - 1, 1)
    values, vectors = torch.linalg.eigh(cov)
    order = torch.argsort(values, descending=True)[:components]
    values, vectors = values[order], vectors[:, order]
    flip = torch.sign(vectors[vectors.abs().argmax(0), torch.arange(vectors.shape[1])])
    vectors = vectors * torch.where(flip == 0, 1.0, flip)
    share = (values / torch.linalg.eigvalsh(cov).clamp(min=0).sum()).numpy()
    return (xt @ vectors.float()).numpy(), share


def tsne(x: np.ndarray, spec: EmbedSpec, progress: Progress | None = None) -> np.ndarray:
    from openTSNE import TSNE  # imported here: it loads numba-compiled code, slow to import

    total = spec.iterations + 250  # openTSNE's early-exaggeration phase is 250 steps

    class Report:
        done = 0

        def __call__(self, iteration, error, embedding):
            Report.done += 50
            if progress:
                progress(min(0.1 + 0.9 * Report.done / total, 0.99), f"t-SNE step {Report.done} of {total}")

    if progress:
        progress(0.12, "t-SNE: finding each point's neighbours")
    # ints_in_interval=3: a coarser FFT grid once the map has spread out; on 70,000 digits the default (1)
    # made the main phase several times slower with the same 10-NN accuracy (0.976).
    model = TSNE(
        n_components=2,
        perplexity=spec.perplexity,
        n_iter=spec.iterations,
        random_state=spec.seed,
        n_jobs=os.cpu_count() or 1,
        ints_in_interval=3,
        callbacks=Report(),
        callbacks_every_iters=50,
        verbose=False,
    )
    return np.asarray(model.fit(x), dtype=np.float32)


def numba_cache_dir() -> Path:
    """Where numba keeps UMAP's compiled code: beside the maps, one folder per set of versions.

    numba checks a cached function against its own source file only, not against the functions it
    inlined from other packages, so an upgrade of any of them starts a fresh folder instead.
    """
    import sys
    from importlib.metadata import version

    tag = "-".join(
        [f"py{sys.version_info[0]}{sys.version_info[1]}"]
        + [f"{name}{version(name)}" for name in ("numba", "umap-learn", "pynndescent")]
    )
    return cache_dir() / "numba" / tag


def _use_numba_cache() -> Path | None:
    """Point numba's disk cache at numba_cache_dir() before umap-learn is imported; None when it cannot be written.

    An unwritable folder leaves numba's own default (the package folders or none): the map is still
    computed, its functions compiled in this process, and the log says why.
    """
    import numba

    if numba.config.CACHE_DIR:  # already chosen in this process (or by the NUMBA_CACHE_DIR variable)
        return Path(numba.config.CACHE_DIR)
    folder = numba_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # a unique name: two threads of one process (the warm-up and a visitor's map) probe at once
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as error:
        log.warning("numba cache folder %s is not writable (%s): UMAP compiles its code in this process", folder, error)
        return None
    numba.config.CACHE_DIR = str(folder)
    return folder


def _cache_compiled_functions() -> int:
    """Turn on numba's disk cache for umap-learn's and pynndescent's functions that were not given cache=True.

    Dispatcher.enable_caching is what numba's own cache=True does; doing it after import (before their
    first call) caches the layout, the fuzzy graph and the tree code, which otherwise compile in every
    process. Returns how many functions it turned on.
    """
    import sys

    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    turned_on = 0
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in ("umap", "pynndescent"):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, Dispatcher) and isinstance(value._cache, NullCache):
                try:
                    value.enable_caching()
                    turned_on += 1
                except RuntimeError:  # no cache location numba can use: this one compiles as before
                    pass
    return turned_on


def exact_neighbours(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each point's k nearest points (itself first, at distance 0) and their Euclidean distances.

    UMAP is given these instead of searching with pynndescent: its search (nn_descent) takes the
    distance as a function argument, which numba cannot cache, so it recompiled in every process
    (40-100 s of the first map here). An exact search on 50 principal components is a few seconds
    even for all 70,000 digits, and exact neighbours are at least as good as approximate ones.
    """
    from sklearn.neighbors import NearestNeighbors

    distances, indices = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(x).kneighbors(x)
    rows = np.arange(len(x))
    for i in np.flatnonzero(indices[:, 0] != rows):  # a duplicate digit may come before itself: put itself first
        others = indices[i][indices[i] != i][: k - 1]
        indices[i] = np.concatenate([[i], others])
        distances[i] = np.concatenate([[0.0], np.linalg.norm(x[others] - x[i], axis=1)])
    distances[:, 0] = 0.0
    return indices.astype(np.int32), distances.astype(np.float32)


def _fit_umap(x: np.ndarray, spec: EmbedSpec) -> np.ndarray:
    import umap as umap_learn  # imported here: loading its compiled code takes seconds

    _cache_compiled_functions()
    knn = exact_neighbours(x, spec.n_neighbors)
    reducer = umap_learn.UMAP(
        n_neighbors=spec.n_neighbors,
        min_dist=spec.min_dist,
        random_state=spec.seed,
        n_components=2,
        precomputed_knn=(*knn, None),
    )
    with warnings.catch_warnings():  # a seed makes umap-learn single-threaded, and it warns; that is the deal
        warnings.filterwarnings("ignore", message="n_jobs value")
        return np.asarray(reducer.fit_transform(x), dtype=np.float32)


def _from_numba_cache(error: BaseException) -> bool:
    """Whether an error was raised while numba read its disk cache (a damaged or foreign file)."""
    import traceback

    return any(
        frame.f_code.co_filename.replace("\\", "/").endswith("numba/core/caching.py")
        for frame, _ in traceback.walk_tb(error.__traceback__)
    )


def umap(x: np.ndarray, spec: EmbedSpec, progress: Progress | None = None) -> np.ndarray:
    folder = _use_numba_cache()
    if progress:
        progress(0.1, "UMAP: building the neighbour graph and optimizing the layout")
    try:
        return _fit_umap(x, spec)
    except Exception as error:
        if folder is None or not _from_numba_cache(error):
            raise
        # A damaged cache must not cost the map: empty the folder and compile afresh (numba then rewrites it).
        log.warning("numba cache in %s could not be read (%s): removed, compiling again", folder, error)
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        return _fit_umap(x, spec)


def warm_up() -> float:
    """Compile (or load from numba's disk cache) UMAP's code on throw-away data; returns the seconds it took.

    After the first map on a machine the cache in numba_cache_dir() makes this a matter of seconds, so
    the app no longer runs it; `python -m mnist_core embed` and the benchmarks use it to fill the cache.
    """
    import time

    start = time.perf_counter()
    x = np.random.default_rng(0).normal(size=(1_000, PCA_BEFORE)).astype(np.float32)
    umap(x, EmbedSpec(method="umap", points=1_000))
    return time.perf_counter() - start


def compute(
    spec: EmbedSpec, mnist: Mnist, model: nn.Module | None = None, reporter: Reporter = NULL_REPORTER
) -> Embedding:
    """One map, from the subset to the coordinates. `model` is needed when the source is a checkpoint.

    The reporter gets "stage" and "progress" (a fraction of the map) events; once reporter.stop is set,
    the next progress report raises EmbedStopped.
    """
    import time

    spec.validate()

    def progress(fraction: float, stage: str) -> None:
        if reporter.stopping:
            raise EmbedStopped(f"stopped at {fraction:.0%} ({stage})")
        reporter.progress(fraction, 1.0, stage=stage)

    start = time.perf_counter()
    labels = all_labels(mnist)
    if spec.points > len(labels):
        raise EmbeddingError(
            f"{mnist.title} has {len(labels):,} images (training and test); map at most that many, not {spec.points:,}"
        )
    indices = stratified_subset(labels, spec.points, spec.seed)
    if spec.source == "pixels":
        x = pixel_inputs(mnist, indices)
    elif model is None:
        raise EmbeddingError(f"the map of {spec.source!r}'s features needs that checkpoint's model")
    else:
        # Features are nearly all of a PCA's time and a fair part of the others' before their own steps start.
        x = feature_inputs(model, mnist, indices, progress=progress, share=0.9 if spec.method == "pca" else 0.1)
    progress(0.9 if spec.method == "pca" else 0.1, "principal components")
    reduced, share = pca(x, min(PCA_BEFORE, x.shape[1]))
    if spec.method == "pca":
        coords = reduced[:, : spec.dims]
    elif spec.method == "tsne":
        coords = tsne(reduced, spec, progress)
    else:
        coords = umap(reduced, spec, progress)
    return Embedding(
        spec,
        np.ascontiguousarray(coords, dtype=np.float32),
        indices,
        labels[indices],
        time.perf_counter() - start,
        share if spec.method == "pca" else None,
    )


# Rough seconds per 1,000 digits on a 2-core CPU (benchmarks/results/embeddings.txt: UMAP of 10,000 in 12.8 s;
# t-SNE's fixed costs weigh more on the small maps a visitor starts with than on all 70,000 there).
SECONDS_PER_1000 = {"pca": 0.05, "tsne": 4.0, "umap": 1.2}
FEATURES_PER_1000 = 1.4  # a checkpoint's features (99 s for all 70,000 through `best` on a loaded 2-core CPU)


def estimated_seconds(spec: EmbedSpec) -> float:
    """About how long computing this map takes on a 2-core CPU, said before it starts."""
    per_1000 = SECONDS_PER_1000[spec.method] + (FEATURES_PER_1000 if spec.source != "pixels" else 0.0)
    return per_1000 * spec.points / 1000


def quick(spec: EmbedSpec) -> bool:
    """Whether the map is done within seconds, so worth computing while the visitor waits rather than as a job.

    PCA of pixels is 1.1 s even for all 70,000 digits; anything through a network or a neighbour search is not.
    """
    return spec.method == "pca" and spec.source == "pixels"


def source_version(source: str) -> str:
    """The version of a map's source: "" for pixels, else the content hash of the checkpoint's weights."""
    if source == "pixels":
        return ""
    from .checkpoints import find

    return file_digest(find(source).weights_path)


def turned(coords: np.ndarray, turn: float, tilt: float) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D map seen from an angle: (screen x-y (n, 2), depth (n,), larger = nearer the viewer).

    turn (degrees) spins the cloud about the screen's vertical axis, then tilt about its horizontal one;
    at 0, 0 the view is the first two components, the 2-D map.
    """
    t, a = np.radians(turn), np.radians(tilt)
    x, y, z = coords[:, 0], coords[:, 1], coords[:, 2]
    sx, d = np.cos(t) * x + np.sin(t) * z, -np.sin(t) * x + np.cos(t) * z
    sy, depth = np.cos(a) * y - np.sin(a) * d, np.sin(a) * y + np.cos(a) * d
    return np.stack([sx, sy], 1).astype(np.float32), depth.astype(np.float32)


# ---------------------------------------------------------------- separation


@dataclass
class Separation:
    accuracy: float  # leave-one-out k-NN accuracy in the map
    per_class: np.ndarray  # (10,)
    confusions: list[tuple[int, int, int]]  # (true, voted, count), most frequent first
    k: int


def knn_separation(coords: np.ndarray, labels: np.ndarray, k: int = 10) -> Separation:
    """How well the map separates the classes: each point's class voted by its k nearest neighbours."""
    from sklearn.neighbors import NearestNeighbors

    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords, return_distance=False)[:, 1:]
    votes = np.apply_along_axis(lambda row: np.bincount(row, minlength=10), 1, labels[neighbours])
    voted = votes.argmax(1)
    right = voted == labels
    per_class = np.array([right[labels == c].mean() if (labels == c).any() else np.nan for c in range(10)])
    pairs: dict[tuple[int, int], int] = {}
    for t, v in zip(labels[~right], voted[~right]):
        pairs[(int(t), int(v))] = pairs.get((int(t), int(v)), 0) + 1
    confusions = sorted(((t, v, n) for (t, v), n in pairs.items()), key=lambda item: -item[2])
    return Separation(float(right.mean()), per_class, confusions, k)


# ---------------------------------------------------------------- cache


def cache_dir() -> Path:
    return Path(
        os.environ.get("MNIST_CACHE_DIR") or shared_runs_dir() / "embeddings"
    )  # server-wide: alike for every visitor


def file_digest(path: Path) -> str:
    """The version of a checkpoint's weights: a content hash, so it survives a fresh clone (mtimes do not)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def shipped_cache_dir() -> Path:
    return SHIPPED_DIR / "embeddings"


def cache_key(spec: EmbedSpec, source_version: str = "") -> str:
    """A digest of everything that changes the result; source_version tells two versions of a checkpoint apart."""
    from .datasets import cache_tag

    # The cache is the server's: a set of your own is told apart by its folder and version, not its name.
    data_version = {"data_version": tag} if (tag := cache_tag(spec.dataset)) else {}
    text = json.dumps({**spec.relevant(), "source_version": source_version, **data_version}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def save_cached(embedding: Embedding, key: str, directory: Path | None = None) -> None:
    directory = directory or cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"coords": embedding.coords, "indices": embedding.indices.astype(np.int64)}
    if embedding.explained_variance is not None:
        arrays["explained_variance"] = embedding.explained_variance.astype(np.float64)
    # Two sessions can compute the same map at once: unique temporaries, the JSON (what readers look for) last.
    atomic_write(directory / f"{key}.safetensors", lambda tmp: safetensors.numpy.save_file(arrays, tmp))
    meta = {"spec": asdict(embedding.spec), "seconds": embedding.seconds}
    atomic_write(directory / f"{key}.json", lambda tmp: Path(tmp).write_text(json.dumps(meta)))


def load_cached(key: str, labels: np.ndarray, directory: Path | None = None) -> Embedding | None:
    """The stored map, or None when absent or unreadable (then it is simply computed again)."""
    directory = directory or cache_dir()
    weights, meta_path = directory / f"{key}.safetensors", directory / f"{key}.json"
    if not (weights.exists() and meta_path.exists()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        arrays = safetensors.numpy.load_file(str(weights))
        spec = EmbedSpec(**meta["spec"])
        coords, indices = arrays["coords"], arrays["indices"]
        if coords.shape != (spec.points, spec.dims) or indices.shape != (spec.points,) or indices.max() >= len(labels):
            return None
    except Exception:  # safetensors raises its own error types for damaged files; any damage means "recompute"
        return None
    return Embedding(
        spec,
        coords,
        indices,
        labels[indices],
        meta.get("seconds", 0.0),
        arrays.get("explained_variance"),
        {"cached": True},
    )


def find_cached(key: str, labels: np.ndarray) -> Embedding | None:
    """A map computed before: from the server's cache, else from the maps shipped with the lab, else None.

    The server's own cache first: it holds what this server computed; the shipped maps spare a fresh install
    the wait for the usual ones.
    """
    return load_cached(key, labels, cache_dir()) or load_cached(key, labels, shipped_cache_dir())
