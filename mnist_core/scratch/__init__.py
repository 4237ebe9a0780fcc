"""Under the hood: a computational-graph engine written from scratch in NumPy, trained on MNIST.

graph.py  nodes, operations (each with its own local gradient), topological order, forward, backward
optim.py  SGD with momentum, Adam
net.py    fully connected nets, He/Xavier init, MNIST as NumPy arrays, the training loop
torch_bridge.py  the only module here that imports torch: export to a checkpoint, PyTorch's gradients beside ours
cli.py    python -m mnist_core scratch
"""

from .graph import (
    Add,
    Dropout,
    Graph,
    GraphError,
    Input,
    MatMul,
    Mean,
    Mul,
    Node,
    Parameter,
    ReLU,
    Sigmoid,
    SoftmaxCrossEntropy,
    Tanh,
    topological_order,
)
from .net import (
    ACTIVATIONS,
    Arrays,
    Net,
    NetConfig,
    ScratchError,
    TrainResult,
    TrainSettings,
    epoch_order,
    load_arrays,
    train,
)
from .optim import SGD, Adam
