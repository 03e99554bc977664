"""nbval runs the tutorials with the fast switch on.

Kernels inherit the environment of the pytest process, and this file is
imported while pytest collects ``notebooks/``, before any kernel starts.
``DLABEL_FAST=0 pytest --nbval-lax notebooks/`` runs them at full size.
"""

import os

os.environ.setdefault("DLABEL_FAST", "1")
os.environ.setdefault("PYTORCH_LIGHTNING_DISABLE_TIPS", "1")

collect_ignore_glob = [".ipynb_checkpoints/*"]
