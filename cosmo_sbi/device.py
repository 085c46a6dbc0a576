"""The torch device of a process, from the config's ``training.device``: one choice shared
by training and evaluation."""

from __future__ import annotations

import torch

from cosmo_sbi.config import ConfigError


def select_device(choice: str, local_rank: int) -> torch.device:
    """training.device (auto | cpu | cuda) -> the torch device of this process."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device: 'cuda' requested but no CUDA device is available")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", local_rank)
