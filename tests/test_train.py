import dataclasses
import math
import threading

import pytest
import torch
from saved_runs import save_unloadable_run

from mnist_core.presets import PRESETS, preset
from mnist_core.reporter import Reporter
from mnist_core.train import OPTIMIZERS, SCHEDULES, ConfigError, TrainConfig, evaluate, fit

SMALL_MLP = {"depth": 1, "width": 32}


def losses_of(config, data):
    losses = []
    result = fit(config, data, Reporter(lambda kind, d: kind == "batch" and losses.append(d["loss"])))
    return result, losses


def test_fast_preset_clears_97_percent_in_one_epoch_and_stops_at_its_target(data):
    config = dataclasses.replace(preset("fast"), epochs=2, target_accuracy=0.97)
    result = fit(config, data)
    assert result.status == "target_reached", result.message
    assert len(result.history) == 1  # the target was met after the first epoch, so the second never ran
    assert result.test_accuracy >= 0.97


def test_same_seed_gives_same_weights_and_losses(data):
    config = TrainConfig(arch="mlp", model=SMALL_MLP, max_batches=30, seed=7, rotation=5, shift=1)
    (a, losses_a), (b, losses_b) = losses_of(config, data), losses_of(config, data)
    assert losses_a == losses_b and len(losses_a) == 30
    for (name, wa), wb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(wa, wb), name
    _, losses_c = losses_of(dataclasses.replace(config, seed=8), data)
    assert losses_c != losses_a


def test_stop_from_another_thread_ends_the_run_within_one_batch(data):
    stop, seen, latest = threading.Event(), threading.Event(), {"step": 0}

    def on_event(kind, d):
        if kind == "batch":
            latest["step"] = d["step"]
            if d["step"] >= 5:
                seen.set()

    holder = {}
    config = TrainConfig(arch="mlp", model=SMALL_MLP, epochs=3)
    worker = threading.Thread(target=lambda: holder.update(result=fit(config, data, Reporter(on_event, stop))))
    worker.start()
    assert seen.wait(60)
    stop.set()
    step_when_stopped = latest["step"]  # read after set(): the batch in flight may still finish, no more
    worker.join(60)
    result = holder["result"]
    assert result.status == "stopped"
    assert result.steps <= step_when_stopped + 1
    assert result.steps < 3 * math.ceil(60000 / 128)
    assert "stopped by request" in result.message


def test_divergence_stops_with_a_learning_rate_hint_and_keeps_finite_weights(data):
    errors = []
    config = TrainConfig(arch="mlp", model=SMALL_MLP, optimizer="sgd", lr=1e6, epochs=1)
    result = fit(config, data, Reporter(lambda kind, d: kind == "error" and errors.append(d["message"])))
    assert result.status == "failed"
    assert "learning rate" in result.message and "too high" in result.message
    assert errors == [result.message]
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_sparse_connections_stay_exactly_zero_through_training(data):
    config = TrainConfig(
        arch="sparsenet", model={"depth": 2, "width": 128}, optimizer="adamw", weight_decay=0.01, max_batches=40
    )
    model = fit(config, data).model
    for layer in (model[1], model[3]):
        assert bool((layer.weight[layer.mask == 0] == 0).all())
        assert bool((layer.weight[layer.mask == 1] != 0).any())


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_optimizer_lowers_the_loss(optimizer, data):
    lr = {"sgd": 0.05, "adadelta": 1.0, "adagrad": 0.01}.get(optimizer, 1e-3)
    config = TrainConfig(arch="mlp", model=SMALL_MLP, optimizer=optimizer, lr=lr, momentum=0.0, max_batches=60)
    _, losses = losses_of(config, data)
    assert sum(losses[-10:]) < sum(losses[:10])


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_shape_the_learning_rate(schedule, data):
    config = TrainConfig(
        arch="mlp",
        model=SMALL_MLP,
        schedule=schedule,
        epochs=2,
        step_size=1,
        lr=0.01,
        batch_size=1000,
        max_batches=2 * 60 - 1,
    )
    lrs = []
    fit(config, data, Reporter(lambda kind, d: kind == "batch" and lrs.append(d["lr"])))
    if schedule == "none":
        assert set(lrs) == {0.01}
    elif schedule == "step":
        assert lrs[0] == pytest.approx(0.01) and lrs[-1] == pytest.approx(0.001)
    elif schedule == "cosine":
        assert lrs[0] == pytest.approx(0.01) and lrs[-1] < 1e-4
    else:
        assert lrs[0] < 0.001 and max(lrs) == pytest.approx(0.01, rel=0.01) and lrs[-1] < 1e-5


def test_time_cap_stops_a_run(data):
    result = fit(TrainConfig(arch="mlp", model=SMALL_MLP, epochs=5, max_seconds=1.0), data)
    assert result.status == "stopped" and "time cap" in result.message
    assert result.seconds < 10


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lr": 0}, "learning rate must be a positive number"),
        ({"lr": float("nan")}, "learning rate must be a positive number"),
        ({"batch_size": 70000}, "larger than the 60000 training images"),
        ({"epochs": 0}, "epochs must be between 1 and 200"),
        ({"optimizer": "lion"}, "unknown optimizer 'lion'"),
        ({"nesterov": True, "optimizer": "adam"}, "Nesterov momentum needs the sgd optimizer"),
        ({"model": {"depth": -1}}, r"depth must be between 0 and 8 \(got -1\)"),
    ],
)
def test_impossible_settings_are_refused_before_training(change, message, data):
    with pytest.raises(ValueError, match=message):
        fit(dataclasses.replace(TrainConfig(arch="mlp"), **change), data)


def test_every_preset_is_a_valid_config():
    for name in PRESETS:
        preset(name).validate()
    with pytest.raises(ConfigError):
        TrainConfig(arch="mlp", label_smoothing=1.0).validate()


def test_a_run_at_its_batch_cap_finished_it_was_not_stopped(data):
    result = fit(TrainConfig(arch="mlp", model=SMALL_MLP, max_batches=12, record=False), data)
    assert result.status == "finished" and result.steps == 12
    assert "12-batch cap" in result.message


def test_weights_that_do_not_load_fail_the_run_instead_of_raising(data, runs):
    from types import SimpleNamespace

    from mnist_core import kinds
    from mnist_core.checkpoints import CheckpointError
    from mnist_core.starting import check_starting_point, load_starting_point

    save_unloadable_run(data, runs, "to-break", SMALL_MLP)
    config = TrainConfig(arch="mlp", model=SMALL_MLP, init_checkpoint="to-break", max_batches=3)
    check_starting_point(config)  # listed, of the right architecture: only reading the weights finds the fault
    with pytest.raises(CheckpointError, match="does not match"):
        load_starting_point(config)
    job = SimpleNamespace(
        id="t", kind="train", owner="me", config=config.to_dict(), name="tuned", overwrite=False, runs_dir=str(runs)
    )
    result = kinds.work_train(job, Reporter())
    assert result["status"] == "failed" and "does not match" in result["message"]
    assert not (runs / "tuned.json").exists()


def test_fit_refuses_a_start_its_settings_name_but_it_was_not_given(data):
    # Trained from a seeded init (or without the drawings), the run would be saved as a fine-tune it was not.
    with pytest.raises(ConfigError, match="given no model"):
        fit(TrainConfig(arch="mlp", model=SMALL_MLP, init_checkpoint="anything", max_batches=1), data)
    with pytest.raises(ConfigError, match="given no drawings"):
        fit(TrainConfig(arch="mlp", model=SMALL_MLP, drawings_share=0.25, max_batches=1), data)


def test_a_run_that_blows_up_keeps_its_best_weights_not_merely_finite_ones(data):
    config = TrainConfig(
        arch="mlp", model=SMALL_MLP, optimizer="sgd", lr=1.0, momentum=0.9, max_batches=300, record=False
    )
    result = fit(config, data)
    assert result.status == "failed"
    assert "learning rate" in result.message and "best weights" in result.message
    kept = evaluate(result.model, data.test)
    assert kept["loss"] < 3.0  # about chance (2.30) or better; the last finite weights scored ~1e30


def test_a_batchnorm_net_at_an_absurd_learning_rate_is_told_it_stopped_learning(data):
    config = TrainConfig(
        arch="cnn", model={"channels": [4, 8]}, optimizer="sgd", lr=1000.0, momentum=0.0, max_batches=200, record=False
    )
    result = fit(config, data)
    assert result.status == "failed", result.message
    assert ("stopped learning" in result.message or "diverged" in result.message) and "learning rate" in result.message


def test_the_likely_cause_names_weight_decay_when_it_is_the_culprit():
    from mnist_core.train import likely_cause

    assert "weight decay" in likely_cause(TrainConfig(optimizer="sgd", lr=0.05, weight_decay=50.0))
    assert "learning rate" in likely_cause(TrainConfig(optimizer="sgd", lr=5.0))


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"weight_decay": float("inf")}, "weight decay"),
        ({"weight_decay": float("nan")}, "weight decay"),
        ({"grad_clip": float("inf")}, "gradient clipping"),
        ({"lr": float("nan")}, "learning rate"),
        ({"seed": 99999999999999999999999}, "seed"),
        ({"seed": -1}, "seed"),
    ],
)
def test_settings_that_are_not_numbers_or_out_of_range_are_refused_before_training(changes, words):
    with pytest.raises(ConfigError, match=words):
        TrainConfig(arch="mlp", model=SMALL_MLP, **changes).validate()


def test_a_run_the_host_cannot_hold_is_refused_with_the_figures():
    from mnist_core.train import check_fits_in_memory

    huge = TrainConfig(arch="cnn", model={"channels": [512, 512, 512]}, batch_size=60000)
    with pytest.raises(ConfigError, match=r"needs about \d+\.\d GB .* 8\.0 GB free"):
        check_fits_in_memory(huge, available=8 * 2**30)
    check_fits_in_memory(TrainConfig(arch="fast"), available=8 * 2**30)  # a normal run passes
