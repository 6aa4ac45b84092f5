"""What the encoder folders triage builds record, shared by :mod:`triage.models.encoders` (which reads
them) and :mod:`triage.models.e5_rebuild` (which writes them)."""

from __future__ import annotations

E5_QUERY_PREFIX = "query: "
"""E5 models expect this before classification inputs."""
BUILD_INFO = "triage-encoder.json"
"""Written into folders triage builds: records how it was built and the query prefix to use."""
