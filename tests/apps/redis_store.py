"""The echo app's Redis nonce store, for the multi-process tests.

``tests/apps/echo_app.py`` calls :func:`store` when started with
``HMACGUARD_TEST_NONCE_STORE=tests.apps.redis_store:store``. It reads:

================================  ==================================================
``HMACGUARD_REDIS_URL``           the Redis URL (required), e.g. ``redis://127.0.0.1:6379/0``
``HMACGUARD_TEST_REDIS_TIMEOUT``  the store's ``timeout`` in seconds (default: the store's)
================================  ==================================================
"""

from __future__ import annotations

import os

from hmacguard import RedisNonceStore


def store() -> RedisNonceStore:
    """A RedisNonceStore on ``HMACGUARD_REDIS_URL``, shared by every server given that URL."""
    url = os.environ.get("HMACGUARD_REDIS_URL")
    if not url:
        raise RuntimeError("HMACGUARD_REDIS_URL is not set: the Redis URL the servers share")
    timeout = os.environ.get("HMACGUARD_TEST_REDIS_TIMEOUT")
    if timeout:
        return RedisNonceStore(url, timeout=float(timeout))
    return RedisNonceStore(url)
