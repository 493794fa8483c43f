"""Periodic jobs for `rq cron workers/cron.py` (the Procfile's `clock`).

Every job is idempotent per period, so a second clock process does no harm. The batched jobs (reminders, expiry,
subsidies, network payouts) work at most `CLOCK_RUN_SECONDS` a run and hand the rest to a continuation; a run that
finds another part of its job still working does nothing (`workers.clock_runs`).
"""

from rq import cron

from workers import runtime
from workers.clock_jobs import book_subsidies, expire_requests, pay_networks, send_collector_days, snapshot_reports
from workers.clock_runs import job_timeout
from workers.maintenance import record_heartbeat
from workers.reconcile import sweep_stuck_payments
from workers.reminders import send_reminders
from workers.sms import sweep_outbox

DEFAULT_QUEUE = runtime.settings().RQ_QUEUE
BATCHED_TIMEOUT = job_timeout()
RECONCILE_QUEUE = runtime.settings().RECONCILE_QUEUE

cron.register(record_heartbeat, queue_name=DEFAULT_QUEUE, interval=60)
cron.register(sweep_outbox, queue_name=DEFAULT_QUEUE, interval=300)
# Every minute on the reconciliation queue: a payment whose drain died is reconciled within two minutes.
cron.register(sweep_stuck_payments, queue_name=RECONCILE_QUEUE, interval=60)
# Hourly, not daily: a run outside a scheme's daytime hours sends nothing and the next daytime run catches up;
# each reminder is sent once per household, kind and period whatever the number of runs.
cron.register(send_reminders, queue_name=DEFAULT_QUEUE, interval=3600, job_timeout=BATCHED_TIMEOUT)
cron.register(expire_requests, queue_name=DEFAULT_QUEUE, interval=600, job_timeout=BATCHED_TIMEOUT)
# Hourly, so each scheme's new local day is booked within the hour wherever its timezone is.
cron.register(book_subsidies, queue_name=DEFAULT_QUEUE, interval=3600, job_timeout=BATCHED_TIMEOUT)
# Hourly too: a network's money pays its households as their cover comes within the reminder window.
cron.register(pay_networks, queue_name=DEFAULT_QUEUE, interval=3600, job_timeout=BATCHED_TIMEOUT)
# Every 15 minutes: each scheme's collectors get the summary of their day once its local `collector_sms_at` (19:00
# unless its scheme file says) has come, within a quarter of an hour, once per collector and day whatever the runs.
cron.register(send_collector_days, queue_name=DEFAULT_QUEUE, interval=900)
# Hourly: the scheme reports' months counted ahead (`models.views.report_snapshots`); at a million households a month
# takes minutes, and a first run counts two years of them, each committed as it is done.
cron.register(snapshot_reports, queue_name=DEFAULT_QUEUE, interval=3600, job_timeout=3 * 3600)
