from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand


class Command(DbWorkerCommand):
    help = (
        "Run background jobs (syncs) from the queue in the database. Start as many as you "
        "like, on as many machines as share the database; each job runs once, and each "
        "company's syncs run one at a time. --batch runs what is queued, then exits."
    )
