"""Shared test configuration: CPU, deterministic, offline."""

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
