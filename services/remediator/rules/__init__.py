"""Rules: the declarative format (model), loading with precise errors (loader), the index, and
the pure decision engine. Nothing here does I/O: the service feeds it and carries out decisions.
"""
