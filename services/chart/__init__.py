"""What the Helm chart (charts/medic) is generated from: the plugins' own declarations."""
