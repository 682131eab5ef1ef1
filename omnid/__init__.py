"""omnid: a headless realtime voice + vision daemon for Qwen-Omni-Realtime."""

__version__ = "0.1.0"
