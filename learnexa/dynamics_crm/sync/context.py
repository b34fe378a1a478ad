"""What a run works with, built once when it starts and handed to every stage."""

from __future__ import annotations

from dataclasses import dataclass

from learnexa.accounts.models import Company

from ..dataverse import DataverseClient
from ..mapping import Mapping
from ..models import DynamicsCrmSetting
from .fetch import name_reader


@dataclass(eq=False)
class SyncContext:
    """The company's settings as the run loaded them, its company, its mapping (built from
    the settings once) and the client it reads Dynamics with."""

    setting: DynamicsCrmSetting
    company: Company
    mapping: Mapping
    client: DataverseClient

    @classmethod
    def for_run(cls, setting: DynamicsCrmSetting, client: DataverseClient) -> SyncContext:
        """The context of a run of `setting`, which is loaded with its company: planning,
        in a thread of its own, must not query the database."""
        mapping = Mapping.for_setting(setting)
        mapping.read_names_with(name_reader(client))
        return cls(setting, setting.company, mapping, client)

    @property
    def link(self) -> str:
        """The users field linking a user to a record of the table being synced."""
        return self.mapping.source.link_field
