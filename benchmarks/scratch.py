"""The NumPy graph engine (mnist_core.scratch) against PyTorch on the same fully connected net.

Both start from the same initial weights (the engine's, copied into nn.Linear layers), see the same
batches in the same order (epoch_order) and use the same optimizer and learning-rate decay; only
dropout masks would differ, and this net has none. Prints each epoch of both, then the comparison.
Targets: the engine reaches >= 98.0% test accuracy, within 0.3 points of PyTorch's, and takes no more
than 3x PyTorch's seconds per epoch.

    python benchmarks/scratch.py                      # 784-512-256-10 ReLU, Adam decayed x0.6 per epoch, 6 epochs
    python benchmarks/scratch.py --epochs 2 --widths 128   # a quick look
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mnist_core.reporter import Reporter  # noqa: E402
from mnist_core.scratch import Net, NetConfig, TrainSettings, epoch_order, load_arrays, train  # noqa: E402
from mnist_core.scratch.torch_bridge import to_torch  # noqa: E402


def train_torch(model, data, s: TrainSettings) -> tuple[list[float], list[float]]:
    """The same loop as the engine's, in PyTorch: (test accuracy per epoch, seconds per epoch)."""
    opt = (
        torch.optim.Adam(model.parameters(), lr=s.lr)
        if s.optimizer == "adam"
        else torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum)
    )
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=s.lr_decay)
    x, y = torch.from_numpy(np.asarray(data.train_x)), torch.from_numpy(data.train_y)
    tx, ty = torch.from_numpy(data.test_x), torch.from_numpy(data.test_y)
    accs, secs = [], []
    for epoch in range(1, s.epochs + 1):
        start = time.perf_counter()
        model.train()
        order = torch.from_numpy(epoch_order(len(x), s.seed, epoch))
        for i in range(0, len(x), s.batch_size):
            idx = order[i : i + s.batch_size]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        secs.append(time.perf_counter() - start)
        model.eval()
        with torch.no_grad():
            acc = (model(tx).argmax(1) == ty).double().mean().item()
        accs.append(acc)
        print(f"  pytorch epoch {epoch}: test acc {acc:.2%}, {secs[-1]:.1f}s", flush=True)
    return accs, secs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="512,256")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-decay", type=float, default=0.6)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    data = load_arrays("float32")
    net = Net(NetConfig(widths=widths, activation="relu", seed=args.seed))
    model = to_torch(net)  # the same initial weights, before the engine trains
    s = TrainSettings(
        optimizer="adam",
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr_decay=args.lr_decay,
        seed=args.seed,
    )
    print(
        f"net 784-{'-'.join(map(str, widths))}-10 relu, {net.n_params:,} parameters; adam lr {args.lr:g}, "
        f"x{args.lr_decay:g} per epoch, batch {args.batch_size}, {args.epochs} epochs; "
        f"torch {torch.__version__} on {torch.get_num_threads()} threads, numpy {np.__version__}"
    )
    print(f"machine: {os.cpu_count()} CPUs (timings are noisy when the CPU is shared)", flush=True)

    ours_secs: list[float] = []
    last = [0.0]

    def on_event(kind, e):
        if kind == "epoch":
            ours_secs.append(e["elapsed"] - last[0])  # includes nothing but the training steps' epoch...
            last[0] = e["elapsed"]
            print(f"  engine  epoch {e['epoch']}: test acc {e['test_accuracy']:.2%}, {ours_secs[-1]:.1f}s", flush=True)

    started = time.perf_counter()
    result = train(net, data, s, Reporter(on_event))
    ours_wall = time.perf_counter() - started
    started = time.perf_counter()
    torch_accs, torch_secs = train_torch(model, data, s)
    torch_wall = time.perf_counter() - started

    ours_acc, torch_acc = result.test_accuracy, torch_accs[-1]
    ours_epoch, torch_epoch = float(np.median(ours_secs)), float(np.median(torch_secs))
    print()
    print(f"{'':10} {'test acc':>9} {'s/epoch (median)':>17} {'wall s':>8}")
    print(f"{'engine':10} {ours_acc:9.2%} {ours_epoch:17.1f} {ours_wall:8.1f}")
    print(f"{'pytorch':10} {torch_acc:9.2%} {torch_epoch:17.1f} {torch_wall:8.1f}")
    gap, ratio = (torch_acc - ours_acc) * 100, ours_epoch / torch_epoch
    print(
        f"engine >= 98.0%: {'yes' if ours_acc >= 0.98 else 'NO'} | gap to pytorch {gap:+.2f} points (target "
        f"within 0.3): {'yes' if abs(gap) <= 0.3 else 'NO'} | time per epoch {ratio:.2f}x pytorch's "
        f"(target <= 3x): {'yes' if ratio <= 3 else 'NO'}"
    )
    print("(the engine's epoch time includes its test-set evaluation; PyTorch's does not)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
