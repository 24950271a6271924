"""Training building blocks that need no Ray: the optimiser and LR schedule (``optim``), one step's
forward and losses (``step``), and the overfit diagnostic (``overfit``)."""
