"""The app shares one loaded model between every visitor's session (st.cache_resource), and Streamlit runs each
session's script in its own thread. Every path the pages run on such a shared model must give, from many
threads at once, exactly what it gives alone."""

import threading

import numpy as np
import pytest
import torch

from mnist_core import evaluation
from mnist_core.checkpoints import load
from mnist_core.data import to_tanh_range
from mnist_core.saliency import dense_activations, explain, feature_maps, grad_cam, integrated_gradients

THREADS = 16
CALLS = 4


def _run(model, x, target: int) -> dict:
    """Everything Inspect, Draw and Transfer compute on one digit with a shared model."""
    out = {
        "explain": explain(model, x, target)[1],
        "maps": [(m.name, m.maps) for m in feature_maps(model, x)],
        "dense": dense_activations(model, x),
    }
    if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        out["cam_other"] = grad_cam(model, x, (target + 3) % 10)  # a second target: a different backward
    else:
        out["ig"] = integrated_gradients(model, x, target, steps=8)
    return out


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        if key in ("maps", "dense"):
            if len(a[key]) != len(b[key]) or any(
                na != nb or not np.allclose(va, vb, atol=1e-5) for (na, va), (nb, vb) in zip(a[key], b[key])
            ):
                return False
        elif not np.allclose(a[key], b[key], atol=1e-5):
            return False
    return True


@pytest.mark.parametrize("checkpoint", ["fast", "conv2_fc2", "mlp"])
def test_saliency_paths_give_the_same_answers_from_many_threads_on_one_shared_model(data, checkpoint):
    model, _ = load(checkpoint)
    params_before = {k: v.clone() for k, v in model.state_dict().items()}
    digits = [(data.test.images[i : i + 1], int(data.test.labels[i])) for i in range(THREADS)]
    expected = [_run(model, x, t) for x, t in digits]
    barrier = threading.Barrier(THREADS)
    failures: list[str] = []

    def worker(k: int):
        try:
            barrier.wait()
            for call in range(CALLS):
                i = (k + call) % THREADS  # every thread walks different digits and targets
                if not _same(_run(model, *digits[i]), expected[i]):
                    failures.append(f"thread {k}, digit {i}: a different answer than alone")
        except Exception as exc:  # noqa: BLE001 - a crash in a thread is the failure we look for
            failures.append(f"thread {k}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, f"{len(failures)} failures, e.g. {failures[:3]}"
    # The shared model is left exactly as it was: no hooks, no gradients, still in eval mode, same weights.
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    assert not any(m.training for m in model.modules())
    assert all(torch.equal(v, params_before[k]) for k, v in model.state_dict().items())


def test_test_set_scoring_from_many_threads_matches_scoring_alone(data):
    model, _ = load("fast")
    split = data.test.take(torch.arange(300))
    expected = evaluation.test_probabilities(model, split, batch_size=100)
    results: list[np.ndarray] = [None] * 8
    barrier = threading.Barrier(8)

    def worker(k: int):
        barrier.wait()
        results[k] = evaluation.test_probabilities(model, split, batch_size=100)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and np.allclose(r, expected, atol=1e-6) for r in results)
    assert not any(m.training for m in model.modules())


def test_a_result_kept_for_the_whole_server_is_computed_once_when_sessions_ask_together():
    from labui.shared_results import SharedMemory

    memory, calls, barrier = SharedMemory(max_entries=2), [], threading.Barrier(12)
    answers: list = [None] * 12

    def slow(key):
        calls.append(key)
        threading.Event().wait(0.2)  # long enough for every other thread to ask meanwhile
        return f"value of {key}"

    def worker(k: int):
        barrier.wait()
        answers[k] = memory.get_or_compute(k % 2, lambda: slow(k % 2))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(calls) == [0, 1] and answers == [f"value of {k % 2}" for k in range(12)]
    memory.get_or_compute(2, lambda: "third")  # over max_entries: the oldest goes
    assert memory.get(2) == "third" and [memory.get(k) is None for k in (0, 1)].count(True) == 1
    assert memory.get_or_compute(3, lambda: None) is None and memory.get(3) is None  # None is not kept


def test_the_gan_judge_scores_from_many_threads_as_it_does_alone(mnist):
    from mnist_core.gan import Judge

    judge = Judge(load("fast")[0], mnist)  # one judge, shared by every session's GAN job
    batches = [to_tanh_range(mnist.test_images[i * 200 : (i + 1) * 200]).unsqueeze(1) for i in range(6)]
    alone = [judge.features(x)[0] for x in batches]
    together: dict[int, list[np.ndarray]] = {i: [] for i in range(len(batches))}

    def score(i: int) -> None:
        for _ in range(3):
            together[i].append(judge.features(batches[i])[0])

    threads = [threading.Thread(target=score, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, results in together.items():
        assert all(np.allclose(r, alone[i], atol=1e-5) for r in results), f"batch {i} got another batch's features"
    assert not any(m._forward_pre_hooks for m in judge.model.modules())  # nothing left on the shared model
