"""Migrations of a cluster's risky state to a safe one: Traefik's ``acme.json`` on a
ReadWriteOnce volume to TLS Secrets under cert-manager, so that Traefik is stateless and runs
several replicas (the report's third failure)."""
