"""Feeds: the load log, new feeds detected from it, and (to come) their onboarding."""
