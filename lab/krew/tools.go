//go:build tools

// Package tools records the one command this module builds (krew, the kubectl plugin manager
// the plugin test installs fireproof's single-binary plugin with), so `go mod tidy` keeps its
// dependencies in go.sum.
package tools

import (
	_ "sigs.k8s.io/krew/cmd/krew"
)
