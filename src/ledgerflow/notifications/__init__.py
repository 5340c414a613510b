"""Notifications by email (SMTP) and webhook, each recorded in the notification log."""
