"""Cost: parameter and FLOP counting, latency backends and tables."""
