"""fireproof: make bare-metal Kubernetes clusters survive hardware failure."""
