"""The benchmarks: scripts grouped by topic (latency, quality, search, distill), run as modules from the
repository root (``.venv/bin/python -m benchmarks.quality.proxy_designs``); results in ``results/<experiment>/``
with a ``manifest.json`` naming the command, commit, host and date of every file."""
