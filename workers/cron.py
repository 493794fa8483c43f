"""Periodic jobs for `rq cron workers/cron.py` (the Procfile's `clock`).

Every job is idempotent per period, so a second clock process does no harm.
"""

from rq import cron

from workers.clock_jobs import book_subsidies, expire_requests
from workers.maintenance import record_heartbeat
from workers.reconcile import sweep_stuck_payments
from workers.sms import sweep_outbox

cron.register(record_heartbeat, queue_name="default", interval=60)
cron.register(sweep_outbox, queue_name="default", interval=300)
cron.register(sweep_stuck_payments, queue_name="default", interval=300)
cron.register(expire_requests, queue_name="default", interval=600)
# Hourly, so each scheme's new local day is booked within the hour wherever its timezone is.
cron.register(book_subsidies, queue_name="default", interval=3600)
