"""People and machines: users with roles, API tokens with scopes, console sessions with
CSRF protection, sign-in lockout, single sign-on behind a trusted proxy, and the audit log.
"""
