"""A local simulator of a Microsoft Dynamics 365 (Dataverse) organization and its Entra ID
tenant.  See ``dataverse_sim.server.Simulator`` and ``python -m dataverse_sim --help``."""

from __future__ import annotations

__all__ = ["Simulator"]


def __getattr__(name: str):
    if name == "Simulator":
        from .server import Simulator

        return Simulator
    raise AttributeError(name)
