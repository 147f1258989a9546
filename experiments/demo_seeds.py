"""How much NC1 falls after the TPT onset in the demo's run, over several seeds.

Run:  python experiments/demo_seeds.py [--seeds 0 1 2] [--out runs/demo-seeds]
      python experiments/demo_seeds.py --loss ce --weight-decay 5e-4
      python experiments/demo_seeds.py --milestones 0.3333 0.6667 --per-class 0

Trains the `nclab demo` configuration once per seed (the seed draws the initialization
and the sample order; the data set is the same), optionally with another loss, weight
decay, number of epochs, learning-rate milestones or training-set size (``--per-class 0``:
the whole generated training split), and prints, for each, the TPT onset, train NC1 at the onset
and at the end, their ratio, the largest rise of NC1 between two logged epochs after the
onset (1x when it only falls; a large rise means the collapse was partly undone) and the
final test error.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nclab.report import load_run
from nclab.studies.demo import DEMO_CONFIG, DEMO_THREADS
from nclab.train import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--loss", default=DEMO_CONFIG.loss)
    parser.add_argument("--weight-decay", type=float, default=DEMO_CONFIG.weight_decay)
    parser.add_argument("--epochs", type=int, default=DEMO_CONFIG.epochs)
    parser.add_argument("--milestones", type=float, nargs="*",
                        default=list(DEMO_CONFIG.lr_milestones))
    parser.add_argument("--per-class", type=int, default=DEMO_CONFIG.per_class,
                        help="training samples per class; 0: all")
    parser.add_argument("--out", type=Path, default=Path("runs/demo-seeds"))
    args = parser.parse_args()
    torch.set_num_threads(DEMO_THREADS)
    base = DEMO_CONFIG.updated(loss=args.loss, weight_decay=args.weight_decay,
                               epochs=args.epochs, lr_milestones=tuple(args.milestones),
                               per_class=args.per_class or None)
    milestones = ",".join(f"{m:g}" for m in args.milestones)
    tag = (f"{args.loss}-wd{args.weight_decay:g}-{args.epochs}-lr@{milestones}"
           f"-pc{args.per_class or 'all'}")
    print(f"{tag}\n{'seed':>4} {'TPT onset':>9} {'NC1 at onset':>12} {'at end':>9} "
          f"{'drop':>6} {'largest rise':>12} {'test error':>10}")
    for seed in args.seeds:
        run_dir = args.out / f"{tag}-seed{seed}"
        resume = (run_dir / "config.json").is_file()
        s = Trainer(base.updated(seed=seed), run_dir, progress=False).fit(resume=resume)
        epochs, nc1 = load_run(run_dir).series("train_nc1")
        after = nc1[epochs >= s["tpt_onset"]]
        rise = max(1.0, float((after[1:] / after[:-1]).max()))
        print(f"{seed:>4} {s['tpt_onset']:>9} {s['nc1_at_onset']:>12.4g} {s['nc1_final']:>9.4g} "
              f"{s['nc1_drop']:>5.0f}x {rise:>11.1f}x {s['final']['test_error']:>10.3f}",
              flush=True)


if __name__ == "__main__":
    main()
