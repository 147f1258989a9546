"""The configuration of ``nclab demo`` (also timed by benchmarks/tracking_overhead.py).

MNIST-1D, 100 training samples per class (the 1,000-sample balanced subset; the whole
1,000-sample test split), a 3 x 256 ReLU MLP with batch normalization, squared-error
loss to one-hot targets, SGD with momentum 0.9 and Papyan et al.'s schedule (lr / 10 at
1/3 and 2/3 of the run). The weight decay is 2e-3 rather than 5e-4: weight decay acts
on a time scale of (1 - momentum) / (lr x weight decay) steps, and this run has 4,800
steps where Papyan et al.'s CIFAR runs have over 100,000. The batch-normalized network fits
the training set within about 12 epochs, and NC1 then falls by more than two orders of
magnitude (docs/training.md has the measured numbers).
"""

from nclab.train.config import TrainConfig

DEMO_CONFIG = TrainConfig(
    dataset="mnist1d", per_class=100, model="mlp",
    model_options={"widths": [256, 256, 256], "batch_norm": True}, loss="mse",
    epochs=600, lr=0.05, weight_decay=2e-3,
)
DEMO_RUN_DIR = "runs/demo"
#: One thread: the model is small enough that a second one barely helps, and on cores
#: shared with other work two threads spin-wait for each other and run many times slower.
DEMO_THREADS = 1
