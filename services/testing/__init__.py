"""Test support that ships with Medic, for its own suite and for users testing their rules.

Waiting helpers (poll a condition with a deadline, never sleep a fixed time) and process
managers for real servers (nats-server, etcd). Not imported by any service at run time.
"""
