"""The configuration of ``nclab demo``: collapse that comes with generalization.

MNIST-1D, 200 training samples per class (2,000 of the generated training split; the
whole 1,000-sample test split), the 1-D CNN (``cnn1d``: three strided convolutions with
batch normalization, one 256-unit ReLU layer whose output is the feature), squared-error
loss to one-hot targets, SGD with momentum 0.9 and batch 128, 500 epochs.

Where it departs from Papyan et al.'s recipe, and why (docs/training.md has the numbers):

- squared error instead of cross-entropy (Han et al., 2022): with cross-entropy this
  network reaches zero training error too, but its NC1 falls only a few times;
- weight decay 2e-3 instead of 5e-4: weight decay acts on a time scale of
  (1 - momentum) / (lr x weight decay) steps, and this run has 8,000 steps where
  Papyan et al.'s CIFAR runs have over 100,000;
- the learning rate drops by 10 at 60% and 85% of the run instead of 1/3 and 2/3: the
  longer first phase is where most of the collapse after the TPT onset happens.

The network fits the training set at about epoch 20 and generalizes (test error about
0.04); train NC1 then falls by more than two orders of magnitude.
"""

from nclab.train.config import TrainConfig

DEMO_CONFIG = TrainConfig(
    dataset="mnist1d", per_class=200, model="cnn1d", loss="mse",
    epochs=500, lr=0.05, weight_decay=2e-3, lr_milestones=(0.6, 0.85),
)
DEMO_RUN_DIR = "runs/demo"
#: One thread: the model is small enough that a second one barely helps, and on cores
#: shared with other work two threads spin-wait for each other and run many times slower.
DEMO_THREADS = 1
