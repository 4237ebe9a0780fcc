"""Embedding maps on real MNIST: shapes, determinism, separation, validation, the cache, background tasks."""

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from mnist_core import embed
from mnist_core.checkpoints import load
from mnist_core.embed import EmbeddingError, EmbedSpec
from mnist_core.reporter import Reporter
from mnist_core.runner import HostLimits, JobRefused, Runner

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def labels(mnist):
    return embed.all_labels(mnist)


def test_a_subset_is_stratified_seeded_and_exact(labels):
    picked = embed.stratified_subset(labels, 5_000, seed=3)
    assert len(picked) == len(np.unique(picked)) == 5_000
    expected = np.bincount(labels) / len(labels) * 5_000
    assert np.abs(np.bincount(labels[picked]) - expected).max() <= 1
    assert (picked == embed.stratified_subset(labels, 5_000, seed=3)).all()
    assert not (picked == embed.stratified_subset(labels, 5_000, seed=4)).all()


def test_pca_matches_scikit_learn_and_is_deterministic(mnist, labels):
    from sklearn.decomposition import PCA

    x = embed.pixel_inputs(mnist, embed.stratified_subset(labels, 2_000, 0))
    coords, share = embed.pca(x, 3)
    reference = PCA(3).fit(x)
    assert coords.shape == (2_000, 3)
    assert share == pytest.approx(reference.explained_variance_ratio_, rel=1e-3)
    assert np.abs(np.abs(coords) - np.abs(reference.transform(x))).max() < 1e-3  # equal up to each axis's sign
    assert (embed.pca(x, 3)[0] == coords).all()


@pytest.mark.parametrize("method, points", [("pca", 1_000), ("tsne", 1_000)])
def test_each_method_gives_one_point_per_digit_the_same_for_a_seed(mnist, method, points):
    spec = EmbedSpec(method=method, points=points, seed=1, iterations=250)
    first, second = embed.compute(spec, mnist), embed.compute(spec, mnist)
    assert first.coords.shape == (points, 2) and len(first.labels) == points
    assert np.array_equal(first.coords, second.coords)


def test_umap_of_5000_digits_separates_the_classes_and_repeats_for_a_seed(mnist):
    spec = EmbedSpec(method="umap", points=5_000, seed=0)
    first = embed.compute(spec, mnist)
    assert first.coords.shape == (5_000, 2)
    separation = embed.knn_separation(first.coords, first.labels)
    assert separation.accuracy >= 0.9  # chance is 0.1
    assert np.array_equal(first.coords, embed.compute(spec, mnist).coords)


def test_a_trained_network_separates_digits_that_pca_of_pixels_mixes(mnist):
    pixels = embed.compute(EmbedSpec(method="pca", points=2_000), mnist)
    features = embed.compute(EmbedSpec(method="pca", points=2_000, source="best"), mnist, load("best")[0])
    raw, learned = (embed.knn_separation(e.coords, e.labels).accuracy for e in (pixels, features))
    assert raw < 0.6 and learned > 0.75  # measured: 0.43 and 0.81 in two PCA dimensions


@pytest.mark.parametrize(
    "spec, message",
    [
        (EmbedSpec(method="tsne", points=1_000, perplexity=400), "perplexity 400 is too large for 1,000 points"),
        (EmbedSpec(points=500), "between 1,000 and 70,000"),
        (EmbedSpec(method="umap", dims=3), "3-D maps are offered for PCA only"),
        (EmbedSpec(method="umap", points=1_000, n_neighbors=1), "n_neighbors must be between 2"),
        (EmbedSpec(method="umap", min_dist=2.0), "min_dist must be between 0 and 1"),
    ],
)
def test_impossible_parameters_are_refused_with_what_to_do(spec, message):
    with pytest.raises(EmbeddingError, match=message):
        spec.validate()


def test_the_cache_round_trips_and_ignores_what_the_method_does_not_use(mnist, labels, tmp_path):
    spec = EmbedSpec(method="pca", points=1_000, dims=3)
    result = embed.compute(spec, mnist)
    key = embed.cache_key(spec)
    embed.save_cached(result, key, tmp_path)
    again = embed.load_cached(key, labels, tmp_path)
    assert np.array_equal(again.coords, result.coords) and np.array_equal(again.labels, result.labels)
    assert again.explained_variance == pytest.approx(result.explained_variance)
    assert embed.cache_key(EmbedSpec(method="pca", points=1_000, dims=3, perplexity=5)) == key
    assert embed.cache_key(EmbedSpec(method="pca", points=1_000, dims=2)) != key
    assert embed.cache_key(spec, source_version="other weights") != key
    (tmp_path / f"{key}.safetensors").write_bytes(b"damaged")
    assert embed.load_cached(key, labels, tmp_path) is None  # recomputed, never trusted


@pytest.fixture
def runner(runs):
    """Maps as the Embeddings page runs them: jobs on the job runner (threads: the test watches the model)."""
    made = Runner(HostLimits(max_jobs=1), backend="threads", runs_dir=runs)
    yield made
    made.shutdown()


def test_maps_run_one_at_a_time_queue_in_order_and_keep_their_errors(runner, data, runs):
    from saved_runs import save_unloadable_run

    save_unloadable_run(data, runs, "no-load", {"depth": 1, "width": 16})  # listed; its weights do not load
    first = runner.submit("a", "embed", {"method": "pca", "points": 2_000, "source": "mlp"})
    second = runner.submit("b", "embed", {"method": "pca", "points": 1_000})
    assert second.status == "queued" and second.position == 1  # one map at a time on this host: b waits its turn
    with pytest.raises(JobRefused, match="already have a map"):
        runner.submit("a", "embed", {"method": "pca", "points": 1_000})
    assert runner.wait(first.id, 120).status == "done" and runner.wait(second.id, 120).status == "done"
    failed = runner.wait(runner.submit("a", "embed", {"method": "pca", "points": 1_000, "source": "no-load"}).id, 120)
    assert failed.status == "failed" and "no-load" in failed.message and "wrong shape" in failed.message


def test_digits_are_found_by_index_across_both_splits(mnist):
    picked = embed.digits(mnist, np.array([59_999, 60_000, 3]))
    assert (picked[0] == mnist.train_images[59_999]).all()
    assert (picked[1] == mnist.test_images[0]).all() and (picked[2] == mnist.train_images[3]).all()


def test_a_checkpoint_map_reports_feature_progress_stops_in_the_middle_and_can_start_again(mnist):
    model = load("mlp")[0]
    stages, stop = [], threading.Event()

    def on_event(name, data):
        if name == "stage":
            stages.append(data["stage"])
        if name == "progress":
            stages.append(data["done"] / data["total"])
            if len(stages) == 6:
                stop.set()

    spec = EmbedSpec(method="pca", points=20_000, source="mlp")
    with pytest.raises(embed.EmbedStopped, match=r"stopped at \d+% \(features of digits"):
        embed.compute(spec, mnist, model, Reporter(on_event, stop))
    assert stages[0] == "features of digits 0 to 1,000 of 20,000"
    fractions = [f for f in stages if isinstance(f, float)]
    assert fractions == sorted(fractions) and fractions[-1] < 0.9
    assert not model._forward_pre_hooks and not any(m._forward_pre_hooks for m in model.modules())
    assert embed.compute(spec, mnist, model).coords.shape == (20_000, 2)  # a stopped map does not block the next


def test_a_turned_view_of_a_3d_map_is_a_rotation_that_starts_at_the_2d_map():
    coords = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    flat, depth = embed.turned(coords, 0, 0)
    assert np.allclose(flat, coords[:, :2]) and np.allclose(depth, coords[:, 2])
    xy, depth = embed.turned(coords, 35, -20)
    assert np.allclose(np.linalg.norm(np.column_stack([xy, depth]), axis=1), np.linalg.norm(coords, axis=1), atol=1e-5)
    side, _ = embed.turned(coords, 90, 0)
    assert np.allclose(side[:, 0], coords[:, 2], atol=1e-6)  # turned a quarter: the third component across


def test_sessions_saving_the_same_map_at_once_leave_one_whole_map(mnist, labels, tmp_path):
    import threading

    spec = EmbedSpec(method="pca", points=1_000, dims=2)
    result, key = embed.compute(spec, mnist), embed.cache_key(spec)
    errors: list[BaseException] = []

    def save() -> None:
        try:
            for _ in range(20):
                embed.save_cached(result, key, tmp_path)
        except BaseException as exc:  # a shared temporary name: one writer renames it from under another
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:1]
    assert np.array_equal(embed.load_cached(key, labels, tmp_path).coords, result.coords)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{key}.json", f"{key}.safetensors"]  # no leftovers


def test_a_map_is_found_in_the_servers_cache_first_then_among_the_shipped_ones(labels, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_CACHE_DIR", str(tmp_path))
    key = embed.cache_key(EmbedSpec())  # the default map (UMAP of 10,000 pixels) ships with the lab
    shipped = embed.find_cached(key, labels)
    assert shipped is not None and shipped.spec == EmbedSpec()
    assert embed.find_cached("no-such-map", labels) is None
    redone = dataclasses.replace(shipped, coords=shipped.coords * 2, seconds=1.5)
    embed.save_cached(redone, key)
    found = embed.find_cached(key, labels)
    assert found.seconds == 1.5 and np.array_equal(found.coords, redone.coords)


def measured_seconds() -> dict[tuple[str, int], float]:
    """(method, points) -> seconds from benchmarks/embeddings.py's last run (benchmarks/results/embeddings.txt)."""
    rows = {}
    for line in (ROOT / "benchmarks/results/embeddings.txt").read_text().splitlines():
        parts = line.split()
        if (
            len(parts) > 3
            and parts[1] in embed.METHODS
            and parts[2].replace(",", "").isdigit()
            and "cached" not in line
        ):
            rows[(parts[1], int(parts[2].replace(",", "")))] = float(parts[3])
    return rows


def test_the_time_said_before_a_map_starts_is_near_the_benchmarks():
    measured = measured_seconds()
    assert {("umap", 10_000), ("umap", 70_000), ("tsne", 70_000)} <= set(measured)
    for (method, points), seconds in measured.items():
        if method != "pca":  # PCA of pixels is computed while the visitor waits: no estimate is shown
            estimate = embed.estimated_seconds(EmbedSpec(method=method, points=points))
            assert seconds / 2.5 <= estimate <= seconds * 2.5, (method, points, estimate, seconds)
    pixels, features = (embed.estimated_seconds(EmbedSpec(method="umap", source=s)) for s in ("pixels", "best"))
    assert features > pixels  # a checkpoint's features are computed first


def test_only_a_pca_of_pixels_is_quick_enough_to_wait_for():
    assert measured_seconds()[("pca", 70_000)] < 3
    assert embed.quick(EmbedSpec(method="pca", points=70_000))
    assert not embed.quick(EmbedSpec(method="pca", source="best"))
    assert not any(embed.quick(EmbedSpec(method=m)) for m in ("tsne", "umap"))


def test_each_method_reads_its_own_settings_and_the_cache_key_only_those():
    for method, names in embed.METHOD_SETTINGS.items():
        spec = EmbedSpec(method=method)
        assert set(spec.relevant()) == {"method", "points", "seed", "source", *names}
        others = {n for m, ns in embed.METHOD_SETTINGS.items() if m != method for n in ns}
        changed = dataclasses.replace(spec, **{n: EMBED_OTHER[n] for n in others})
        assert embed.cache_key(changed) == embed.cache_key(spec), method


EMBED_OTHER = {"dims": 3, "perplexity": 10.0, "iterations": 1000, "n_neighbors": 30, "min_dist": 0.5}
