"""Test-session setup: a non-interactive matplotlib backend for the pytest process itself."""

import matplotlib

matplotlib.use("Agg")
