"""The audio watermark: pattern, streaming embedder, detector, payload, and per-stream stamping.

See docs/watermark.md for the method and its measured robustness.
"""
