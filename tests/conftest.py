"""Suite-wide test settings.

Most tests run tiny networks where torch's intra-op threading costs more than it gains (and on a
loaded 2-core machine, much more), so each test process computes single-threaded; pytest-xdist
spreads test files over the cores instead.
"""

import torch

torch.set_num_threads(1)
