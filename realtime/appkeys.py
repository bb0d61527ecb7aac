"""Typed keys for what the app factory wires into the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from realtime.config import AppConfig
from realtime.metrics import Metrics
from session.auth import KeyRing, Principal
from session.voices import VoiceCatalog

CONFIG = web.AppKey("config", AppConfig)
METRICS = web.AppKey("metrics", Metrics)
CATALOG = web.AppKey("catalog", VoiceCatalog)
KEYRING = web.AppKey("keyring", KeyRing)
DEMO_KEY = web.AppKey("demo_key", str)

PRINCIPAL = web.RequestKey("principal", Principal)
