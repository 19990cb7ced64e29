"""The lab: a local replica cluster with a real control plane and simulated machines."""
