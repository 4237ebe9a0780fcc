"""mnist_core: the engine of the MNIST laboratory (data, models, training, checkpoints), free of any UI."""

__version__ = "0.1.0"
