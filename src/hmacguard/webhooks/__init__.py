"""Webhook receivers for Standard Webhooks, Stripe, GitHub and Slack, and a sender.

Each profile verifies one provider's scheme on plain values (headers and the
raw body bytes) and returns a :class:`VerifiedWebhook`, or raises a leaf of
:class:`hmacguard.VerificationError`; ``SignatureMiddleware`` runs them for a
path prefix. Like the core, this package needs only the standard library:
:class:`StandardWebhooksAuth` (``hmacguard[httpx]``) is imported on first use.
"""

from __future__ import annotations

import importlib
import typing

from ._profile import VerifiedWebhook as VerifiedWebhook
from ._profile import WebhookProfile as WebhookProfile
from .github import GitHub as GitHub
from .slack import Slack as Slack
from .standard import StandardWebhooks as StandardWebhooks
from .stripe import Stripe as Stripe

if typing.TYPE_CHECKING:
    from .sender import StandardWebhooksAuth as StandardWebhooksAuth

# Names whose modules import an extra: loaded by __getattr__ on first use, and
# left out of __all__, so that `from hmacguard.webhooks import *` works without extras.
_LAZY = {"StandardWebhooksAuth": ".sender"}


def __getattr__(name: str) -> typing.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hmacguard.webhooks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "GitHub",
    "Slack",
    "StandardWebhooks",
    "Stripe",
    "VerifiedWebhook",
    "WebhookProfile",
]
