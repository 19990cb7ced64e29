//go:build tools

// Package tools records the commands this module builds: Pebble, Let's Encrypt's test ACME
// server, and pebble-challtestsrv, its DNS server for challenges (the lab's ACME exchange).
package tools

import (
	_ "github.com/letsencrypt/pebble/v2/cmd/pebble"
	_ "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv"
)
