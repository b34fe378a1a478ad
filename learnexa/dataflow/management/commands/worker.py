from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from learnexa.ops import heartbeat


class Command(DbWorkerCommand):
    help = (
        "Run background jobs (syncs) from the queue in the database. Start as many as you "
        "like, on as many machines as share the database; each job runs once, and each "
        "company's syncs run one at a time. --batch runs what is queued, then exits."
    )

    def handle(self, *args, **options):
        # A heartbeat row while it runs (`learnexa status`, /metrics); removed on a clean exit.
        with heartbeat.for_worker(options):
            return super().handle(*args, **options)
