import os
import stat

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def keep_sqlite_files_private(sender, connection, **kwargs) -> None:
    """Make a SQLite database (users, encrypted secrets) readable by this user only. SQLite
    creates its -wal and -shm files with the database file's permissions, so they follow."""
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return
    name = str(connection.settings_dict["NAME"])
    for path in (name, f"{name}-wal", f"{name}-shm", f"{name}-journal"):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                os.chmod(path, mode & 0o700)
        except OSError:
            # Not there (yet), or not ours to change: the data folder is 0700 anyway.
            continue


class DataflowConfig(AppConfig):
    name = "learnexa.dataflow"
    label = "dataflow"
    verbose_name = "Platform processes"

    def ready(self):
        connection_created.connect(keep_sqlite_files_private, dispatch_uid="learnexa-sqlite-0600")
