"""nclab inside other training stacks, each behind an optional extra.

Nothing here is imported by ``import nclab``: each integration imports its library only
when it is itself imported.

==========================================  ===============================  =============
module                                      what                             extra
==========================================  ===============================  =============
``nclab.integrations.lightning``            ``CollapseCallback``             lightning
``nclab.integrations.transformers``         ``CollapseCallback``             hf
``nclab.integrations.torchmetrics``         ``NeuralCollapse``               torchmetrics
``nclab.integrations.loggers``              ``make_loggers`` (nclab train)   tensorboard,
                                                                             wandb, mlflow
==========================================  ===============================  =============
"""
