"""Gunicorn settings for the `web` process (Procfile)."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "1"))
# gthread, even with one thread: the worker's main thread tells the arbiter it is alive while a request runs, so a
# streamed export of a million households (minutes) is not killed at `timeout` as a sync worker's would be.
worker_class = "gthread"
timeout = 30
graceful_timeout = 20
# Log the path without its query string: callback URLs carry the token as ?token=.
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'
