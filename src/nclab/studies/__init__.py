"""One module per paper's experiment: the orchestration behind each study command.

- ``demo``: the terminal-phase demo (Papyan, Han & Donoho 2020);
- ``normcompare``: normalized against regularized features (Yaras et al. 2022);
- ``kernel_sweep``: kernel NC1 against trained networks (Kothapalli & Tirer 2024);
- ``regression_sweep``: regression collapse over weight decay (Andriopoulos et al. 2024);
- ``ufm``: unconstrained features models from many random starts;
- ``finegrained``: fine-label recovery after training on superclasses.
"""
