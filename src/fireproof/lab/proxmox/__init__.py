"""A Proxmox VE API emulator: the lab's hypervisors, spoken to over HTTPS by real clients."""
