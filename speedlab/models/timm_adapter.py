"""Any timm model by name, with the run's number of classes and no pretrained download."""

from __future__ import annotations

import difflib

from torch import nn

from speedlab.errors import SpeedlabError


def check_name(name: str) -> None:
    """Fail on a name timm does not know, listing the closest names it does."""
    import timm  # imported here: timm is slow to import and only this path needs it

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f"close matches: {', '.join(close)}" if close else "see timm.list_models() for the valid names"
        raise SpeedlabError(f"model.timm_name={name!r} is not a timm model; {hint}")


def create(name: str, num_classes: int) -> nn.Module:
    import timm

    check_name(name)
    return timm.create_model(name, pretrained=False, num_classes=num_classes)
