"""Which container images the lab runs for real (all others are simulated)."""

OWN_IMAGE_REPOSITORY = "ghcr.io/fireproof/fireproof"
"""fireproof's own image (the chart's default ``image.repository``): its containers run as
real processes in the lab; ``fireproof lab up --own-image`` names another."""
