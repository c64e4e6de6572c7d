"""What every Medic service stands on: the bus, settings, logging, metrics, health, kube client.

Knows NATS and Kubernetes clients; knows nothing about Helm, Flux or Slack (those are plugins).
"""
