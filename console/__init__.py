"""The Django project: settings, URLs, Celery app, accounts, regions and the audit log."""

from .celery import app as celery_app

__all__ = ("celery_app",)
