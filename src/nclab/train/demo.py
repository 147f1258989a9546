"""The configuration of ``nclab demo`` (also timed by benchmarks/tracking_overhead.py)."""

from nclab.train.config import TrainConfig

#: MNIST-1D, placeholder until measured.
DEMO_CONFIG = TrainConfig(
    dataset="mnist1d", per_class=100, model="mlp", model_options={"batch_norm": True},
    epochs=300, lr=0.1, weight_decay=5e-3,
)
DEMO_RUN_DIR = "runs/demo"
#: One thread: the model is small enough that a second one barely helps, and on cores
#: shared with other work two threads spin-wait for each other and run many times slower.
DEMO_THREADS = 1
